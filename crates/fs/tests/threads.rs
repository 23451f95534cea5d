//! Many threads reading and writing many files at once through one `Vfs`.

use std::sync::Arc;
use std::thread;

use hermit_fs::memfs::MemFs;
use hermit_fs::{OpenFlags, SeekFrom, Vfs};

const THREADS: usize = 8;
const FILES: usize = 100;

#[test]
fn threads_with_their_own_files() {
    let vfs = Arc::new(Vfs::new());
    vfs.mount("/mnt/shared", Arc::new(MemFs::new())).unwrap();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let vfs = vfs.clone();
            thread::spawn(move || {
                // Half the threads work in /tmp, half in a second mount.
                let base = if t % 2 == 0 { "/tmp" } else { "/mnt/shared" };
                let dir = format!("{base}/t{t}");
                vfs.mkdir(&dir, 0o755).unwrap();
                for round in 0..3 {
                    for i in 0..FILES {
                        let path = format!("{dir}/f{i}");
                        let flags = OpenFlags::RDWR | OpenFlags::CREAT | OpenFlags::TRUNC;
                        let fd = vfs.open(&path, flags, 0o644).unwrap();
                        let data = format!("{t}:{i}:{round}").repeat(i + 1);
                        assert_eq!(vfs.write(fd, data.as_bytes()), Ok(data.len()));
                        vfs.lseek(fd, SeekFrom::Start(0)).unwrap();
                        let mut buf = vec![0u8; data.len() + 1];
                        assert_eq!(vfs.read(fd, &mut buf), Ok(data.len()));
                        assert_eq!(&buf[..data.len()], data.as_bytes());
                        vfs.close(fd).unwrap();
                    }
                    assert_eq!(vfs.read_dir_path(&dir).unwrap().len(), FILES);
                }
                for i in 0..FILES {
                    let path = format!("{dir}/f{i}");
                    if i % 2 == 0 {
                        vfs.rename(&path, &format!("{path}.old")).unwrap();
                        vfs.unlink(&format!("{path}.old")).unwrap();
                    } else {
                        vfs.unlink(&path).unwrap();
                    }
                }
                vfs.rmdir(&dir).unwrap();
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    assert!(vfs.read_dir_path("/tmp").unwrap().is_empty());
    assert!(vfs.read_dir_path("/mnt/shared").unwrap().is_empty());
}

#[test]
fn threads_sharing_one_description() {
    let vfs = Arc::new(Vfs::new());
    let flags = OpenFlags::WRONLY | OpenFlags::CREAT | OpenFlags::APPEND;
    let fd = vfs.open("/tmp/log", flags, 0o644).unwrap();
    const LINES: usize = 500;
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let vfs = vfs.clone();
            thread::spawn(move || {
                // Each thread its own dup of the one description.
                let my = vfs.dup(fd).unwrap();
                for i in 0..LINES {
                    let line = format!("thread {t} line {i:04}\n");
                    assert_eq!(vfs.write(my, line.as_bytes()), Ok(line.len()));
                }
                vfs.close(my).unwrap();
            })
        })
        .collect();
    // Meanwhile, readers open and read the file.
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let vfs = vfs.clone();
            thread::spawn(move || {
                for _ in 0..200 {
                    let r = vfs.open("/tmp/log", OpenFlags::RDONLY, 0).unwrap();
                    let size = vfs.fstat(r).unwrap().size as usize;
                    let mut buf = vec![0u8; size];
                    assert_eq!(vfs.pread(r, &mut buf, 0), Ok(size));
                    vfs.close(r).unwrap();
                }
            })
        })
        .collect();
    for w in workers.into_iter().chain(readers) {
        w.join().unwrap();
    }
    vfs.close(fd).unwrap();
    let fd = vfs.open("/tmp/log", OpenFlags::RDONLY, 0).unwrap();
    let size = vfs.fstat(fd).unwrap().size as usize;
    let mut buf = vec![0u8; size];
    assert_eq!(vfs.read(fd, &mut buf), Ok(size));
    let text = String::from_utf8(buf).unwrap();
    // Appends never interleave or overwrite: every line is whole, once.
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), THREADS * LINES);
    lines.sort();
    lines.dedup();
    assert_eq!(lines.len(), THREADS * LINES);
    for t in 0..THREADS {
        let mine: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with(&format!("thread {t} ")))
            .collect();
        // Each thread's own lines are in order.
        assert!(mine.windows(2).all(|w| w[0] < w[1]), "thread {t}");
        assert_eq!(mine.len(), LINES);
    }
}
