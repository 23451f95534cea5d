//! Thousands of files through one `Vfs`: 5000 in one directory, plus a tree
//! of nested directories; everything written, read back, listed, removed.

use std::collections::BTreeSet;

use hermit_fs::{Errno, FileType, OpenFlags, Vfs};

const CREATE: OpenFlags = OpenFlags::WRONLY
    .union(OpenFlags::CREAT)
    .union(OpenFlags::EXCL);

fn content(i: usize) -> Vec<u8> {
    format!("file number {i} ").repeat(i % 7 + 1).into_bytes()
}

#[test]
fn five_thousand_files_in_one_directory() {
    let vfs = Vfs::new();
    vfs.mkdir("/tmp/big", 0o755).unwrap();
    for i in 0..5000 {
        let fd = vfs.open(&format!("/tmp/big/f{i}"), CREATE, 0o644).unwrap();
        let data = content(i);
        assert_eq!(vfs.write(fd, &data), Ok(data.len()));
        vfs.close(fd).unwrap();
    }
    let entries = vfs.read_dir_path("/tmp/big").unwrap();
    assert_eq!(entries.len(), 5000);
    let names: BTreeSet<String> = entries.iter().map(|e| e.name.clone()).collect();
    assert_eq!(names.len(), 5000);
    assert!((0..5000).all(|i| names.contains(&format!("f{i}"))));
    let inos: BTreeSet<u64> = entries.iter().map(|e| e.ino).collect();
    assert_eq!(inos.len(), 5000);
    assert!(entries.iter().all(|e| e.kind == FileType::File));

    let mut buf = vec![0u8; 256];
    for i in (0..5000).rev() {
        let path = format!("/tmp/big/f{i}");
        let want = content(i);
        assert_eq!(vfs.stat(&path).unwrap().size, want.len() as i64);
        let fd = vfs.open(&path, OpenFlags::RDONLY, 0).unwrap();
        assert_eq!(vfs.read(fd, &mut buf), Ok(want.len()));
        assert_eq!(&buf[..want.len()], &want[..]);
        vfs.close(fd).unwrap();
    }
    for i in 0..5000 {
        vfs.unlink(&format!("/tmp/big/f{i}")).unwrap();
    }
    assert_eq!(vfs.read_dir_path("/tmp/big").unwrap(), Vec::new());
    vfs.rmdir("/tmp/big").unwrap();
    assert_eq!(vfs.stat("/tmp/big").err(), Some(Errno::ENOENT));
}

#[test]
fn nested_tree() {
    let vfs = Vfs::new();
    // 10 x 10 x 10 directories with 3 files in each leaf: 1110 dirs, 3000 files.
    let mut leaves = Vec::new();
    for a in 0..10 {
        vfs.mkdir(&format!("/tmp/{a}"), 0o755).unwrap();
        for b in 0..10 {
            vfs.mkdir(&format!("/tmp/{a}/{b}"), 0o755).unwrap();
            for c in 0..10 {
                let leaf = format!("/tmp/{a}/{b}/{c}");
                vfs.mkdir(&leaf, 0o755).unwrap();
                for f in 0..3 {
                    let fd = vfs.open(&format!("{leaf}/{f}"), CREATE, 0o600).unwrap();
                    vfs.write(fd, leaf.as_bytes()).unwrap();
                    vfs.close(fd).unwrap();
                }
                leaves.push(leaf);
            }
        }
    }
    assert_eq!(vfs.stat("/tmp/3").unwrap().nlink, 12);
    vfs.chdir("/tmp/4/5").unwrap();
    let fd = vfs.open("6/2", OpenFlags::RDONLY, 0).unwrap();
    let mut buf = [0u8; 32];
    let n = vfs.read(fd, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"/tmp/4/5/6");
    vfs.close(fd).unwrap();
    vfs.chdir("/").unwrap();
    // Move a whole subtree, then check a file through the new path.
    vfs.rename("/tmp/9", "/tmp/0/moved").unwrap();
    let fd = vfs
        .open("/tmp/0/moved/1/2/0", OpenFlags::RDONLY, 0)
        .unwrap();
    let n = vfs.read(fd, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"/tmp/9/1/2");
    vfs.close(fd).unwrap();
    assert_eq!(vfs.rmdir("/tmp/0"), Err(Errno::ENOTEMPTY));

    // Remove bottom-up, walking the tree with read_dir_path.
    fn remove_tree(vfs: &Vfs, dir: &str) -> usize {
        let mut removed = 0;
        for e in vfs.read_dir_path(dir).unwrap() {
            let path = format!("{dir}/{}", e.name);
            match e.kind {
                FileType::Dir => removed += remove_tree(vfs, &path),
                _ => {
                    vfs.unlink(&path).unwrap();
                    removed += 1;
                }
            }
        }
        vfs.rmdir(dir).unwrap();
        removed + 1
    }
    let total: usize = (0..9)
        .map(|a| remove_tree(&vfs, &format!("/tmp/{a}")))
        .sum();
    assert_eq!(total, 1110 + 3000);
    assert!(vfs.read_dir_path("/tmp").unwrap().is_empty());
    assert_eq!(vfs.stat("/tmp").unwrap().nlink, 2);
}
