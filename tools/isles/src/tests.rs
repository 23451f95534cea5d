//! Host tests. flock is per open file description, so two joins of one
//! isle in this process conflict exactly as two processes would; crashes
//! are real child processes (this test binary, re-run as a holder).

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use hermit_ircce::Region as _;

use super::*;

const SMALL: u64 = REGION_MIN;

/// A fresh isle directory, removed when dropped.
struct TempDir(IsleDir);

impl TempDir {
    fn new() -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "hermit-isles-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        Self(IsleDir::new(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(self.0.path());
    }
}

impl std::ops::Deref for TempDir {
    type Target = IsleDir;
    fn deref(&self) -> &IsleDir {
        &self.0
    }
}

#[test]
fn session_start_creates_a_zeroed_region() {
    let dir = TempDir::new();
    let isle = dir.join(0, Some(SMALL)).unwrap();
    assert_eq!(isle.region_len(), SMALL);
    assert_eq!(dir.region_len(), Some(SMALL));
    let map = isle.map().unwrap();
    assert_eq!(map.len() as u64, SMALL);
    let last = map.len() - 8;
    assert_eq!(map.region().load_u64(last), 0);
    map.region().store_u64(0, 0xfeed);
    map.region().store_u64(last, 0xbeef);
    drop(isle);
    // The old mapping survives leaving and keeps the old session's data.
    assert_eq!(map.region().load_u64(last), 0xbeef);

    // Nobody runs: the next join starts a new session, zeroed, and may
    // choose another size.
    let isle = dir.join(3, Some(2 * SMALL)).unwrap();
    assert_eq!(isle.region_len(), 2 * SMALL);
    let fresh = isle.map().unwrap();
    assert_eq!(fresh.region().load_u64(0), 0);
    assert_eq!(fresh.region().load_u64(last), 0);
    assert_eq!(
        map.region().load_u64(0),
        0xfeed,
        "old mappings are untouched"
    );
    drop(isle);
    assert_eq!(
        dir.join(1, None).unwrap().region_len(),
        REGION_DEFAULT,
        "the default size"
    );
}

#[test]
fn a_second_isle_shares_the_first_isles_region() {
    let dir = TempDir::new();
    let first = dir.join(0, Some(SMALL)).unwrap();
    let a = first.map().unwrap();
    a.region().store_u64(4096, 0x1234_5678_9abc_def0);
    a.region().write(100, b"hello isle");
    // No size: the running session's.
    let second = dir.join(5, None).unwrap();
    assert_eq!(second.region_len(), SMALL);
    let b = second.map().unwrap();
    assert_eq!(b.region().load_u64(4096), 0x1234_5678_9abc_def0);
    let mut text = [0u8; 10];
    b.region().read(100, &mut text);
    assert_eq!(&text, b"hello isle");
    b.region().store_u32(8, 7);
    assert_eq!(a.region().load_u32(8), 7);
    // The first leaving does not end the session: the second still runs.
    drop(first);
    let again = dir.join(0, Some(SMALL)).unwrap();
    assert_eq!(again.map().unwrap().region().load_u32(8), 7);
}

#[test]
fn a_running_isle_is_refused() {
    let dir = TempDir::new();
    let isle = dir.join(2, Some(SMALL)).unwrap();
    let err = dir.join(2, Some(SMALL)).unwrap_err();
    assert!(
        matches!(err, Error::Busy { index: 2, pid: Some(p) } if p == std::process::id()),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        format!("isle 2 is already running (pid {})", std::process::id())
    );
    drop(isle);
    drop(dir.join(2, Some(SMALL)).unwrap());
}

#[test]
fn sizes_and_numbers_are_checked() {
    let dir = TempDir::new();
    let _first = dir.join(0, Some(SMALL)).unwrap();
    let err = dir.join(1, Some(2 * SMALL)).unwrap_err();
    assert!(
        matches!(err, Error::SizeMismatch { existing, requested, .. }
            if existing == SMALL && requested == 2 * SMALL),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains("share a region of 9 MiB, not the 18 MiB"),
        "{text}"
    );
    assert!(
        dir.isle_path(1).is_dir(),
        "the refused isle's directory exists"
    );
    // The refused join released isle 1.
    drop(dir.join(1, None).unwrap());

    for bad in [0, REGION_MIN - PAGE, REGION_MIN + 1, REGION_MAX + PAGE] {
        let err = dir.join(4, Some(bad)).unwrap_err();
        assert!(matches!(err, Error::BadSize(b) if b == bad), "{err:?}");
        assert!(!err.to_string().contains('\n'));
    }
    assert!(check_region_size(REGION_MAX).is_ok());
    let err = dir.join(MAX_ISLES, None).unwrap_err();
    assert!(matches!(err, Error::BadIndex(8)), "{err:?}");
    assert_eq!(
        err.to_string(),
        "there is no isle 8: isles are numbered 0 to 7"
    );
}

#[test]
fn rings_reach_a_waiting_doorbell() {
    let dir = TempDir::new();
    let a = dir.join(0, Some(SMALL)).unwrap();
    let b = dir.join(1, None).unwrap();
    let bell = b.doorbell().unwrap();
    assert!(!bell.wait(Duration::from_millis(1)).unwrap(), "no ring yet");
    let waiter = std::thread::spawn(move || bell.wait(Duration::from_secs(30)).unwrap());
    assert!(a.ring(1));
    assert!(waiter.join().unwrap(), "the ring woke the waiter");

    // A burst is one wake-up; ringing yourself works.
    let own = a.doorbell().unwrap();
    for _ in 0..3 {
        assert!(a.ring(0));
    }
    assert!(own.wait(Duration::from_secs(30)).unwrap());
    assert!(!own.wait(Duration::from_millis(1)).unwrap(), "coalesced");

    // Nodes that never ran, the host without a listener, numbers outside
    // the nodes: silently nothing.
    assert!(!a.ring(4));
    assert!(!a.ring(HOST_NODE));
    assert!(!a.ring(HOST_NODE + 1));
    assert!(!a.ring(u32::MAX));
    // A node that left.
    drop(b);
    assert!(!a.ring(1));
    assert!(dir.doorbell_path(1).is_some_and(|p| !p.exists()));
}

#[test]
fn status_stop_and_clean() {
    let dir = TempDir::new();
    assert_eq!(dir.status().unwrap(), []);
    assert!(!dir.clean().unwrap(), "nothing to clean");
    let isle = dir.join(6, Some(SMALL)).unwrap();
    let me = Some(std::process::id());
    assert_eq!(
        dir.status().unwrap(),
        [IsleStatus {
            index: 6,
            state: IsleState::Running { pid: me }
        }]
    );
    let err = dir.clean().unwrap_err();
    assert!(matches!(&err, Error::StillRunning { running, .. } if running == &[6]));
    assert!(matches!(dir.stop(3), Err(Error::NotRunning(3))));
    assert!(matches!(dir.stop(9), Err(Error::BadIndex(9))));
    drop(isle);
    assert_eq!(
        dir.status().unwrap(),
        [IsleStatus {
            index: 6,
            state: IsleState::Stopped
        }]
    );
    assert!(matches!(dir.stop(6), Err(Error::NotRunning(6))));
    assert!(dir.clean().unwrap());
    assert!(!dir.path().exists());
    // A cleaned directory is made again by the next join.
    drop(dir.join(0, Some(SMALL)).unwrap());
}

#[test]
fn the_log_file_is_truncated_at_join() {
    let dir = TempDir::new();
    let isle = dir.join(0, Some(SMALL)).unwrap();
    let mut log = isle.log_file();
    std::io::Write::write_all(&mut log, b"first run\n").unwrap();
    drop(isle);
    assert_eq!(
        fs::read(dir.log_path(0)).unwrap(),
        b"first run\n",
        "kept after leaving"
    );
    let _isle = dir.join(0, Some(SMALL)).unwrap();
    assert_eq!(fs::read(dir.log_path(0)).unwrap(), b"");
}

const CHILD_DIR: &str = "HERMIT_ISLES_TEST_CHILD_DIR";
const CHILD_INDEX: &str = "HERMIT_ISLES_TEST_CHILD_INDEX";

/// Not a test: the body of the holder processes of
/// `dead_holders_free_their_isle`, which runs this binary with the
/// variables set.
#[test]
#[ignore = "helper process for dead_holders_free_their_isle"]
fn child_holds_an_isle() {
    let (Some(dir), Some(index)) = (std::env::var_os(CHILD_DIR), std::env::var_os(CHILD_INDEX))
    else {
        eprintln!("SKIPPED: child_holds_an_isle: only runs as a helper process");
        return;
    };
    let index: u32 = index.to_str().unwrap().parse().unwrap();
    let _isle = IsleDir::new(dir).join(index, Some(SMALL)).unwrap();
    println!("joined");
    // Killed by the parent; the time limit only guards against orphans.
    std::thread::sleep(Duration::from_secs(120));
}

/// Starts a process that holds isle `index` of `dir` until killed.
fn holder(dir: &IsleDir, index: u32) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "tests::child_holds_an_isle",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir.path())
        .env(CHILD_INDEX, index.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    let start = Instant::now();
    for line in out.lines() {
        if line.unwrap().trim_end().ends_with("joined") {
            return child;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "holder never joined"
        );
    }
    let _ = child.kill();
    panic!(
        "the holder process ended before joining: {:?}",
        child.wait()
    );
}

#[test]
fn dead_holders_free_their_isle() {
    let dir = TempDir::new();
    let mut killed = holder(&dir, 2);
    let pid = killed.id();
    let err = dir.join(2, None).unwrap_err();
    assert!(
        matches!(err, Error::Busy { index: 2, pid: Some(p) } if p == pid),
        "{err:?}"
    );
    // A second isle joins the holder's session and writes to it.
    let other = dir.join(0, None).unwrap();
    other.map().unwrap().region().store_u64(64, 99);

    // Crash: SIGKILL, no cleanup at all. The socket file stays behind;
    // ringing it is silent and the next join of that number replaces it.
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert!(dir.doorbell_path(2).unwrap().exists());
    assert!(!other.ring(2), "a dead node's socket refuses, silently");
    let back = dir.join(2, None).unwrap();
    assert_eq!(
        back.map().unwrap().region().load_u64(64),
        99,
        "isle 0 still runs: same session"
    );
    let bell = back.doorbell().unwrap();
    assert!(other.ring(2));
    assert!(bell.wait(Duration::from_secs(30)).unwrap());
    drop((back, bell));

    // `stop` signals exactly the holder (SIGTERM; the helper dies of it).
    let mut stopped = holder(&dir, 5);
    assert_eq!(dir.stop(5).unwrap(), stopped.id());
    let status = stopped.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGTERM)
    );
    let states: Vec<_> = dir.status().unwrap();
    assert!(states.contains(&IsleStatus {
        index: 5,
        state: IsleState::Stopped
    }));
    assert!(states.contains(&IsleStatus {
        index: 0,
        state: IsleState::Running {
            pid: Some(std::process::id())
        }
    }));
    drop(other);
    // Everybody gone: a new session starts zeroed.
    let fresh = dir.join(2, None).unwrap();
    assert_eq!(fresh.map().unwrap().region().load_u64(64), 0);
}

#[test]
fn sizes_print_in_binary_units() {
    assert_eq!(human(64 << 20), "64 MiB");
    assert_eq!(human(1 << 30), "1 GiB");
    assert_eq!(human(4096), "4 KiB");
    assert_eq!(human(4097), "4097 bytes");
}

#[test]
fn a_running_host_member_keeps_the_session() {
    let dir = TempDir::new();
    assert_eq!(dir.host_state().unwrap(), IsleState::Stopped);
    let host = dir.join_host(Some(SMALL)).unwrap();
    assert_eq!(host.index(), HOST_NODE);
    assert!(dir.doorbell_path(HOST_NODE).unwrap().exists());
    assert!(matches!(
        dir.host_state().unwrap(),
        IsleState::Running { pid: Some(p) } if p == std::process::id()
    ));
    host.map().unwrap().region().store_u32(64, 99);
    // An isle that joins and leaves while the host runs: no new session.
    drop(dir.join(0, None).unwrap());
    let isle = dir.join(3, None).unwrap();
    assert_eq!(isle.map().unwrap().region().load_u32(64), 99);
    // One host member at a time.
    let err = dir.join_host(None).unwrap_err();
    assert!(matches!(err, Error::HostBusy { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("the host's mmnif end is already running")
    );
    drop(isle);
    let err = dir.clean().unwrap_err();
    assert!(err.to_string().contains("host (mmnif)"), "{err}");
    drop(host);
    assert_eq!(dir.host_state().unwrap(), IsleState::Stopped);
    assert!(!dir.doorbell_path(HOST_NODE).unwrap().exists());
    // Nobody runs: the next join starts afresh.
    let fresh = dir.join(0, None).unwrap();
    assert_eq!(fresh.map().unwrap().region().load_u32(64), 0);
}

#[test]
fn drain_counts_queued_rings() {
    let dir = TempDir::new();
    let isle = dir.join(1, Some(SMALL)).unwrap();
    let bell = isle.doorbell().unwrap();
    assert_eq!(bell.drain(), 0);
    let ringer = dir.ringer().unwrap();
    assert!(ringer.ring(1) && ringer.ring(1));
    assert_eq!(bell.drain(), 2);
}
