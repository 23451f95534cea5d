use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};

use hermit_interface::fs::file_type::{S_IFDIR, S_IFREG};

use super::*;

const RW: OpenFlags = OpenFlags::RDWR;
const CREATE: OpenFlags = OpenFlags::RDWR.union(OpenFlags::CREAT);

fn create(fs: &MemFs, path: &str, data: &[u8]) -> Arc<dyn File> {
    let f = fs.open(path, CREATE, 0o644).unwrap();
    assert_eq!(f.write(data), Ok(data.len()));
    f
}

fn read_all(f: &dyn File) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 7]; // odd size: several reads
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&buf[..n]);
    }
}

fn list(fs: &MemFs, path: &str) -> Vec<DirEntry> {
    let d = fs
        .open(path, OpenFlags::RDONLY | OpenFlags::DIRECTORY, 0)
        .unwrap();
    let mut all = Vec::new();
    loop {
        let batch = d.read_dir().unwrap();
        if batch.is_empty() {
            return all;
        }
        assert!(batch.len() <= DIR_BATCH);
        all.extend(batch);
    }
}

fn names(fs: &MemFs, path: &str) -> Vec<String> {
    list(fs, path).into_iter().map(|e| e.name).collect()
}

#[test]
fn create_write_seek_read() {
    let fs = MemFs::new();
    let f = create(&fs, "a", b"hello world");
    assert_eq!(f.seek(SeekFrom::Current(0)), Ok(11));
    assert_eq!(f.seek(SeekFrom::Start(0)), Ok(0));
    assert_eq!(read_all(&*f), b"hello world");
    assert_eq!(f.seek(SeekFrom::End(-5)), Ok(6));
    let mut buf = [0u8; 16];
    assert_eq!(f.read(&mut buf), Ok(5));
    assert_eq!(&buf[..5], b"world");
    assert_eq!(f.read(&mut buf), Ok(0));
    assert_eq!(f.seek(SeekFrom::Current(-100)), Err(Errno::EINVAL));
    // pread/pwrite leave the position alone.
    assert_eq!(f.pwrite(b"W", 6), Ok(1));
    assert_eq!(f.pread(&mut buf[..3], 5), Ok(3));
    assert_eq!(&buf[..3], b" Wo");
    assert_eq!(f.pread(&mut buf, 11), Ok(0));
    assert_eq!(f.pread(&mut buf, u64::MAX), Ok(0));
    assert_eq!(f.seek(SeekFrom::Current(0)), Ok(11));
    // A second open sees the data and has its own position.
    let g = fs.open("a", OpenFlags::RDONLY, 0).unwrap();
    assert_eq!(read_all(&*g), b"hello World");
    assert_eq!(fs.stat("a", true).unwrap().size, 11);
    assert_eq!(f.write(b""), Ok(0));
}

#[test]
fn open_flags() {
    let fs = MemFs::new();
    assert_eq!(fs.open("x", RW, 0).err(), Some(Errno::ENOENT));
    create(&fs, "x", b"abc");
    let excl = CREATE | OpenFlags::EXCL;
    assert_eq!(fs.open("x", excl, 0).err(), Some(Errno::EEXIST));
    assert_eq!(fs.open("", excl, 0).err(), Some(Errno::EEXIST));
    assert!(fs.open("y", excl, 0).is_ok());

    // O_APPEND: every write at the end, whatever the position.
    let a = fs
        .open("x", OpenFlags::WRONLY | OpenFlags::APPEND, 0)
        .unwrap();
    a.seek(SeekFrom::Start(0)).unwrap();
    a.write(b"de").unwrap();
    assert_eq!(a.seek(SeekFrom::Current(0)), Ok(5));
    assert_eq!(read_all(&*fs.open("x", RW, 0).unwrap()), b"abcde");

    // O_TRUNC truncates when writable, leaves the file alone when not.
    fs.open("x", OpenFlags::RDONLY | OpenFlags::TRUNC, 0)
        .unwrap();
    assert_eq!(fs.stat("x", true).unwrap().size, 5);
    fs.open("x", OpenFlags::WRONLY | OpenFlags::TRUNC, 0)
        .unwrap();
    assert_eq!(fs.stat("x", true).unwrap().size, 0);

    // O_DIRECTORY.
    fs.mkdir("d", 0o755).unwrap();
    let dir = OpenFlags::RDONLY | OpenFlags::DIRECTORY;
    assert_eq!(fs.open("x", dir, 0).err(), Some(Errno::ENOTDIR));
    assert!(fs.open("d", dir, 0).is_ok());
    assert!(fs.open("", dir, 0).is_ok());
    assert_eq!(
        fs.open("new", CREATE | OpenFlags::DIRECTORY, 0).err(),
        Some(Errno::EINVAL)
    );

    // Directories cannot be opened for writing.
    for flags in [
        OpenFlags::WRONLY,
        RW,
        CREATE,
        OpenFlags::RDONLY | OpenFlags::TRUNC,
    ] {
        assert_eq!(
            fs.open("d", flags, 0).err(),
            Some(Errno::EISDIR),
            "{flags:?}"
        );
    }
    assert_eq!(fs.open("", RW, 0).err(), Some(Errno::EISDIR));

    // A file as an intermediate component.
    assert_eq!(fs.open("x/y", CREATE, 0).err(), Some(Errno::ENOTDIR));
    assert_eq!(fs.stat("x/y", true).err(), Some(Errno::ENOTDIR));
    assert_eq!(fs.open("nope/y", CREATE, 0).err(), Some(Errno::ENOENT));

    // Access modes.
    let r = fs.open("x", OpenFlags::RDONLY, 0).unwrap();
    let w = fs.open("x", OpenFlags::WRONLY, 0).unwrap();
    assert_eq!(r.write(b"a"), Err(Errno::EBADF));
    assert_eq!(r.pwrite(b"a", 0), Err(Errno::EBADF));
    assert_eq!(r.truncate(0), Err(Errno::EINVAL));
    assert_eq!(w.read(&mut [0; 4]), Err(Errno::EBADF));
    assert_eq!(w.pread(&mut [0; 4], 0), Err(Errno::EBADF));
}

#[test]
fn unclean_paths_are_refused() {
    let fs = MemFs::new();
    for bad in ["/a", "a/", "a//b", ".", "..", "a/../b"] {
        assert_eq!(fs.open(bad, CREATE, 0).err(), Some(Errno::EINVAL), "{bad}");
        assert_eq!(fs.mkdir(bad, 0), Err(Errno::EINVAL), "{bad}");
    }
}

#[test]
fn directory_handles() {
    let fs = MemFs::new();
    fs.mkdir("d", 0o700).unwrap();
    let d = fs.open("d", OpenFlags::RDONLY, 0).unwrap();
    assert_eq!(d.read(&mut [0; 4]), Err(Errno::EISDIR));
    assert_eq!(d.write(b"x"), Err(Errno::EBADF));
    assert_eq!(d.seek(SeekFrom::Start(0)), Err(Errno::ESPIPE));
    let st = d.stat().unwrap();
    assert_eq!(st.mode, S_IFDIR | 0o700);
    assert_eq!(st.nlink, 2);
    let f = create(&fs, "f", b"");
    assert_eq!(f.read_dir(), Err(Errno::ENOTDIR));
}

#[test]
fn read_dir_in_batches() {
    let fs = MemFs::new();
    fs.mkdir("d", 0o755).unwrap();
    fs.mkdir("d/sub", 0o755).unwrap();
    let mut want = BTreeSet::new();
    want.insert("sub".to_string());
    for i in 0..300 {
        let name = format!("file{i}");
        create(&fs, &format!("d/{name}"), b"x");
        want.insert(name);
    }
    let entries = list(&fs, "d");
    assert_eq!(entries.len(), 301);
    let got: BTreeSet<String> = entries.iter().map(|e| e.name.clone()).collect();
    assert_eq!(got, want);
    let sub = entries.iter().find(|e| e.name == "sub").unwrap();
    assert_eq!(sub.kind, FileType::Dir);
    assert_eq!(sub.ino, fs.stat("d/sub", true).unwrap().ino);
    assert!(
        entries
            .iter()
            .filter(|e| e.name != "sub")
            .all(|e| e.kind == FileType::File)
    );

    // Entries added behind the cursor are skipped, ahead of it are seen;
    // removed ones vanish; the handle never repeats a name.
    let d = fs.open("d", OpenFlags::RDONLY, 0).unwrap();
    let first = d.read_dir().unwrap();
    assert_eq!(first.len(), DIR_BATCH);
    create(&fs, "d/zzz", b"");
    fs.unlink("d/file99").unwrap(); // sorts after the first batch
    let mut rest = Vec::new();
    loop {
        let b = d.read_dir().unwrap();
        if b.is_empty() {
            break;
        }
        rest.extend(b);
    }
    assert!(rest.iter().any(|e| e.name == "zzz"));
    assert!(!rest.iter().any(|e| e.name == "file99"));
    assert_eq!(first.len() + rest.len(), 301);
    assert_eq!(d.read_dir(), Ok(Vec::new()));

    // A directory removed while open lists as empty.
    fs.mkdir("gone", 0o755).unwrap();
    let g = fs.open("gone", OpenFlags::RDONLY, 0).unwrap();
    fs.rmdir("gone").unwrap();
    assert_eq!(g.read_dir(), Ok(Vec::new()));
    assert_eq!(g.stat().unwrap().nlink, 0);
}

#[test]
fn mkdir_rmdir_unlink() {
    let fs = MemFs::new();
    assert_eq!(fs.mkdir("", 0o755), Err(Errno::EEXIST));
    fs.mkdir("a", 0o755).unwrap();
    assert_eq!(fs.mkdir("a", 0o755), Err(Errno::EEXIST));
    assert_eq!(fs.mkdir("x/y", 0o755), Err(Errno::ENOENT));
    fs.mkdir("a/b", 0o755).unwrap();
    create(&fs, "a/b/f", b"data");
    assert_eq!(fs.stat("", true).unwrap().nlink, 3);
    assert_eq!(fs.stat("a", true).unwrap().nlink, 3);
    assert_eq!(fs.stat("a/b", true).unwrap().nlink, 2);

    assert_eq!(fs.rmdir("a"), Err(Errno::ENOTEMPTY));
    assert_eq!(fs.rmdir("a/b/f"), Err(Errno::ENOTDIR));
    assert_eq!(fs.rmdir("a/nope"), Err(Errno::ENOENT));
    assert_eq!(fs.rmdir(""), Err(Errno::EBUSY));
    assert_eq!(fs.unlink("a/b"), Err(Errno::EISDIR));
    assert_eq!(fs.unlink(""), Err(Errno::EISDIR));
    assert_eq!(fs.unlink("a/nope"), Err(Errno::ENOENT));

    // An unlinked file lives on while open.
    let f = fs.open("a/b/f", RW, 0).unwrap();
    fs.unlink("a/b/f").unwrap();
    assert_eq!(fs.stat("a/b/f", true).err(), Some(Errno::ENOENT));
    assert_eq!(read_all(&*f), b"data");
    assert_eq!(f.stat().unwrap().nlink, 0);
    f.write(b"more").unwrap();

    fs.rmdir("a/b").unwrap();
    assert_eq!(fs.stat("a", true).unwrap().nlink, 2);
    fs.rmdir("a").unwrap();
    assert_eq!(names(&fs, ""), Vec::<String>::new());
    assert_eq!(fs.stat("", true).unwrap().nlink, 2);
}

#[test]
fn rename_cases() {
    let fs = MemFs::new();
    create(&fs, "f", b"one");
    create(&fs, "g", b"two");
    let g_ino = fs.stat("g", true).unwrap().ino;
    let old_g = fs.open("g", OpenFlags::RDONLY, 0).unwrap();
    // Over an existing file: replaced; its open handle keeps the old data.
    fs.rename("f", "g").unwrap();
    assert_eq!(fs.stat("f", true).err(), Some(Errno::ENOENT));
    assert_eq!(read_all(&*fs.open("g", RW, 0).unwrap()), b"one");
    assert_ne!(fs.stat("g", true).unwrap().ino, g_ino);
    assert_eq!(read_all(&*old_g), b"two");
    assert_eq!(old_g.stat().unwrap().nlink, 0);

    assert_eq!(fs.rename("nope", "x"), Err(Errno::ENOENT));
    assert_eq!(fs.rename("g", "nope/x"), Err(Errno::ENOENT));
    assert_eq!(fs.rename("g", "g"), Ok(()));
    assert_eq!(fs.rename("", "x"), Err(Errno::EBUSY));
    assert_eq!(fs.rename("g", ""), Err(Errno::EBUSY));

    fs.mkdir("d", 0o755).unwrap();
    fs.mkdir("d/e", 0o755).unwrap();
    create(&fs, "d/e/file", b"deep");
    fs.mkdir("empty", 0o755).unwrap();
    fs.mkdir("full", 0o755).unwrap();
    create(&fs, "full/x", b"");

    assert_eq!(fs.rename("g", "d"), Err(Errno::EISDIR));
    assert_eq!(fs.rename("d", "g"), Err(Errno::ENOTDIR));
    assert_eq!(fs.rename("d", "full"), Err(Errno::ENOTEMPTY));
    assert_eq!(fs.rename("d", "d/e/inside"), Err(Errno::EINVAL));
    assert_eq!(fs.rename("d", "d/e"), Err(Errno::EINVAL));
    assert_eq!(fs.rename("d/e", "d"), Err(Errno::ENOTEMPTY));
    // "dx" is not inside "d".
    fs.rename("d", "dx").unwrap();
    fs.rename("dx", "d").unwrap();

    // A directory over an empty directory, then moved elsewhere: its
    // contents follow, link counts follow.
    fs.rename("d", "empty").unwrap();
    assert_eq!(read_all(&*fs.open("empty/e/file", RW, 0).unwrap()), b"deep");
    assert_eq!(fs.stat("d", true).err(), Some(Errno::ENOENT));
    assert_eq!(fs.stat("", true).unwrap().nlink, 4); // empty, full + 2
    fs.rename("empty", "full/moved").unwrap();
    assert_eq!(fs.stat("", true).unwrap().nlink, 3);
    assert_eq!(fs.stat("full", true).unwrap().nlink, 3);
    assert_eq!(
        read_all(&*fs.open("full/moved/e/file", RW, 0).unwrap()),
        b"deep"
    );
    // The moved directory's parent link is updated: moving it back up works
    // and its old parent can be removed once empty.
    fs.rename("full/moved/e", "e").unwrap();
    fs.rmdir("full/moved").unwrap();
    fs.unlink("full/x").unwrap();
    fs.rmdir("full").unwrap();
    assert_eq!(names(&fs, ""), ["e", "g"]);
    assert_eq!(names(&fs, "e"), ["file"]);
}

#[test]
fn sparse_writes_truncate_and_limits() {
    let fs = MemFs::new();
    let f = create(&fs, "s", b"ab");
    assert_eq!(f.pwrite(b"z", 10), Ok(1));
    let mut buf = [0xffu8; 16];
    assert_eq!(f.pread(&mut buf, 0), Ok(11));
    assert_eq!(&buf[..11], b"ab\0\0\0\0\0\0\0\0z");
    // Seek past the end, then write: zero-filled gap.
    f.seek(SeekFrom::End(3)).unwrap();
    f.write(b"q").unwrap();
    assert_eq!(fs.stat("s", true).unwrap().size, 15);
    assert_eq!(f.pread(&mut buf, 11), Ok(4));
    assert_eq!(&buf[..4], b"\0\0\0q");

    f.truncate(4).unwrap();
    assert_eq!(f.stat().unwrap().size, 4);
    f.truncate(6).unwrap();
    assert_eq!(f.pread(&mut buf, 0), Ok(6));
    assert_eq!(&buf[..6], b"ab\0\0\0\0");
    let st = f.stat().unwrap();
    assert_eq!((st.size, st.blocks, st.mode), (6, 1, S_IFREG | 0o644));

    assert_eq!(f.pwrite(b"x", MAX_FILE_SIZE), Err(Errno::EFBIG));
    assert_eq!(f.pwrite(b"xy", u64::MAX), Err(Errno::EFBIG));
    assert_eq!(f.truncate(MAX_FILE_SIZE + 1), Err(Errno::EFBIG));
    f.seek(SeekFrom::Start(MAX_FILE_SIZE)).unwrap();
    assert_eq!(f.write(b"x"), Err(Errno::EFBIG));
    assert_eq!(f.stat().unwrap().size, 6);
}

static FAKE_NOW: AtomicU64 = AtomicU64::new(0);

fn fake_clock() -> u64 {
    FAKE_NOW.load(Ordering::Relaxed)
}

#[test]
fn times_and_identity() {
    FAKE_NOW.store(5_000_000_001, Ordering::Relaxed);
    let fs = MemFs::with_clock(fake_clock);
    let other = MemFs::new();
    assert_ne!(
        fs.stat("", true).unwrap().dev,
        other.stat("", true).unwrap().dev
    );
    let f = create(&fs, "t", b"");
    let st = f.stat().unwrap();
    assert_eq!(
        (st.mtime_sec, st.mtime_nsec, st.ctime_sec, st.atime_sec),
        (5, 1, 5, 5)
    );
    let root = fs.stat("", true).unwrap();
    assert_eq!(root.mtime_sec, 5);

    FAKE_NOW.store(7_000_000_000, Ordering::Relaxed);
    f.write(b"x").unwrap();
    let st = f.stat().unwrap();
    assert_eq!((st.mtime_sec, st.ctime_sec, st.atime_sec), (7, 7, 5));

    FAKE_NOW.store(9_000_000_000, Ordering::Relaxed);
    f.pread(&mut [0; 1], 0).unwrap();
    assert_eq!(f.stat().unwrap().atime_sec, 9);
    fs.mkdir("d", 0o755).unwrap();
    assert_eq!(fs.stat("", true).unwrap().mtime_sec, 9);

    // Distinct inode numbers, stable across renames.
    let ino = f.stat().unwrap().ino;
    let d_ino = fs.stat("d", true).unwrap().ino;
    assert_ne!(ino, d_ino);
    assert_ne!(ino, fs.stat("", true).unwrap().ino);
    fs.rename("t", "d/t").unwrap();
    assert_eq!(fs.stat("d/t", true).unwrap().ino, ino);
    assert_eq!(fs.stat("d/t", true).unwrap().ctime_sec, 9);
}
