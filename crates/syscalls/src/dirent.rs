//! `getdents64` records and `stat` conversion.

use hermit_fs::{DirEntry, FileStat};

use crate::abi::{DIRENT64_NAME_OFFSET, stat, timespec};

/// Records are padded to this (the alignment of `dirent64`).
const RECORD_ALIGN: usize = 8;

/// The length of the record of a name of `name_len` bytes: the fixed head,
/// the name, its NUL, padded to a multiple of 8.
pub const fn record_len(name_len: usize) -> usize {
    (DIRENT64_NAME_OFFSET + name_len + 1).next_multiple_of(RECORD_ALIGN)
}

/// Packs the records of `entries[start..]` into `buf` as far as whole
/// records fit; returns the bytes used and the index of the first entry
/// not packed. A record's `d_off` is the index after it (the position a
/// caller would resume at). Names too long for a `u16` record length are
/// skipped (no file system here makes them).
pub fn pack(entries: &[DirEntry], start: usize, buf: &mut [u8]) -> (usize, usize) {
    let mut used = 0;
    let mut next = start;
    for entry in entries.iter().skip(start) {
        let name = entry.name.as_bytes();
        let len = record_len(name.len());
        let Ok(reclen) = u16::try_from(len) else {
            next += 1;
            continue;
        };
        let Some(rec) = buf.get_mut(used..used + len) else {
            break;
        };
        next += 1;
        rec.fill(0);
        rec[0..8].copy_from_slice(&entry.ino.to_ne_bytes());
        let off = i64::try_from(next).unwrap_or(i64::MAX);
        rec[8..16].copy_from_slice(&off.to_ne_bytes());
        rec[16..18].copy_from_slice(&reclen.to_ne_bytes());
        // DT_* values fit a byte.
        rec[18] = entry.kind.dt() as u8;
        rec[DIRENT64_NAME_OFFSET..DIRENT64_NAME_OFFSET + name.len()].copy_from_slice(name);
        used += len;
    }
    (used, next)
}

/// The `stat` the ABI returns for `st`.
pub fn to_stat(st: &FileStat) -> stat {
    let ts = |sec: i64, nsec: i64| timespec {
        tv_sec: sec,
        // Nanoseconds are below 10^9 and fit an i32.
        tv_nsec: i32::try_from(nsec).unwrap_or(0),
    };
    stat {
        st_dev: st.dev,
        st_ino: st.ino,
        st_nlink: st.nlink,
        st_mode: st.mode,
        st_uid: st.uid,
        st_gid: st.gid,
        st_rdev: 0,
        st_size: st.size,
        st_blksize: st.blksize,
        st_blocks: st.blocks,
        st_atim: ts(st.atime_sec, st.atime_nsec),
        st_mtim: ts(st.mtime_sec, st.mtime_nsec),
        st_ctim: ts(st.ctime_sec, st.ctime_nsec),
    }
}

/// The records of a `getdents64` buffer: (ino, d_off, type, name).
#[cfg(test)]
pub(crate) fn unpack(buf: &[u8]) -> Vec<(u64, i64, u8, String)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < buf.len() {
        let rec = &buf[at..];
        let ino = u64::from_ne_bytes(rec[0..8].try_into().unwrap());
        let off = i64::from_ne_bytes(rec[8..16].try_into().unwrap());
        let reclen = usize::from(u16::from_ne_bytes(rec[16..18].try_into().unwrap()));
        assert_eq!(reclen % RECORD_ALIGN, 0, "record length aligned");
        assert!(reclen > DIRENT64_NAME_OFFSET && reclen <= rec.len());
        let name = &rec[DIRENT64_NAME_OFFSET..reclen];
        let nul = name.iter().position(|&b| b == 0).expect("NUL-terminated");
        out.push((
            ino,
            off,
            rec[18],
            String::from_utf8(name[..nul].to_vec()).unwrap(),
        ));
        at += reclen;
    }
    out
}

#[cfg(test)]
mod tests {
    use hermit_fs::FileType;

    use super::*;
    use crate::abi::{DT_DIR, DT_REG};

    fn entries(n: usize) -> Vec<DirEntry> {
        (0..n)
            .map(|i| DirEntry {
                name: "f".repeat(i + 1),
                ino: 100 + i as u64,
                kind: if i % 2 == 0 {
                    FileType::File
                } else {
                    FileType::Dir
                },
            })
            .collect()
    }

    #[test]
    fn record_lengths() {
        assert_eq!(record_len(1), 24);
        assert_eq!(record_len(4), 24);
        assert_eq!(record_len(5), 32);
        assert_eq!(record_len(255), 280);
    }

    #[test]
    fn packs_and_resumes_across_small_buffers() {
        let all = entries(50);
        let mut seen = Vec::new();
        let mut start = 0;
        let mut buf = [0xffu8; 64];
        loop {
            let (used, next) = pack(&all, start, &mut buf);
            if next == start {
                break;
            }
            assert!(used <= buf.len());
            let recs = unpack(&buf[..used]);
            assert!(!recs.is_empty());
            seen.extend(recs);
            start = next;
        }
        // A record longer than the buffer stops the walk.
        assert!(start < all.len());
        assert!(record_len(all[start].name.len()) > buf.len());
        let mut big = vec![0u8; 4096];
        let (used, next) = pack(&all, start, &mut big);
        assert_eq!(next, all.len());
        seen.extend(unpack(&big[..used]));
        assert_eq!(seen.len(), all.len());
        for (i, (ino, off, kind, name)) in seen.iter().enumerate() {
            assert_eq!(*ino, all[i].ino);
            assert_eq!(*off, i as i64 + 1);
            assert_eq!(*kind, if i % 2 == 0 { DT_REG } else { DT_DIR });
            assert_eq!(name, &all[i].name);
        }
    }

    #[test]
    fn nothing_fits() {
        let all = entries(1);
        let mut buf = [0u8; 23];
        assert_eq!(pack(&all, 0, &mut buf), (0, 0));
        assert_eq!(pack(&all, 1, &mut buf), (0, 1));
    }

    #[test]
    fn stat_conversion() {
        let st = FileStat {
            ino: 7,
            nlink: 1,
            mode: 0o100644,
            size: 11,
            blksize: 4096,
            blocks: 1,
            mtime_sec: 5,
            mtime_nsec: 999_999_999,
            ..FileStat::default()
        };
        let s = to_stat(&st);
        assert_eq!((s.st_ino, s.st_mode, s.st_size), (7, 0o100644, 11));
        assert_eq!(
            s.st_mtim,
            timespec {
                tv_sec: 5,
                tv_nsec: 999_999_999
            }
        );
    }
}
