//! Path arithmetic, purely lexical.
//!
//! The VFS turns every path into a normalised absolute one ([`normalize`])
//! before it looks at the mount table, so file systems see only clean
//! relative paths.

use alloc::string::String;
use alloc::vec::Vec;

use crate::{Errno, Result};

/// The longest path accepted, in bytes (before and after joining with the
/// working directory).
pub const PATH_MAX: usize = hermit_interface::fs::PATH_MAX as usize;

/// The longest name of one component, in bytes.
pub const NAME_MAX: usize = 255;

/// Makes `path` absolute (relative paths start at `cwd`, itself absolute)
/// and normalised: no `.`, `..` or empty components, no trailing `/`.
/// `..` at the root stays at the root.
///
/// Errors: `ENOENT` for `""`, `EINVAL` for a NUL byte, `ENAMETOOLONG` for a
/// path or result over [`PATH_MAX`] bytes or a component over [`NAME_MAX`].
pub fn normalize(cwd: &str, path: &str) -> Result<String> {
    if path.is_empty() {
        return Err(Errno::ENOENT);
    }
    if path.len() > PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    if path.contains('\0') {
        return Err(Errno::EINVAL);
    }
    let mut parts: Vec<&str> = Vec::new();
    let base = if path.starts_with('/') { "" } else { cwd };
    for part in base.split('/').chain(path.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            name if name.len() > NAME_MAX => return Err(Errno::ENAMETOOLONG),
            name => parts.push(name),
        }
    }
    let mut out = String::with_capacity(path.len() + base.len() + 1);
    for part in &parts {
        out.push('/');
        out.push_str(part);
    }
    if out.is_empty() {
        out.push('/');
    }
    if out.len() > PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    Ok(out)
}

/// Whether `path` names a directory by its form: it ends with `/` (or
/// `/.`, `/..`), as in `dir/`. `open` and `stat` then insist on a directory.
pub fn names_dir(path: &str) -> bool {
    let last = path.rsplit('/').next().unwrap_or("");
    path.contains('/') && matches!(last, "" | "." | "..") || matches!(path, "." | "..")
}

/// If the normalised absolute `path` is `base` or lies beneath it (whole
/// components: `/mnt` contains `/mnt/a` but not `/mntx`), the rest of it
/// relative to `base` (`""` for `base` itself).
pub fn strip_base<'a>(path: &'a str, base: &str) -> Option<&'a str> {
    if base == "/" {
        return path.strip_prefix('/');
    }
    let rest = path.strip_prefix(base)?;
    if rest.is_empty() {
        Some(rest)
    } else {
        rest.strip_prefix('/')
    }
}

/// Splits a normalised path (absolute or relative) into its parent and its
/// last component: `/a/b` gives `("/a", "b")`, `/a` gives `("/", "a")`,
/// `a/b` gives `("a", "b")`, `a` gives `("", "a")`; `/` and `""` give
/// `None`.
pub fn split_last(path: &str) -> Option<(&str, &str)> {
    match path.rfind('/') {
        None if path.is_empty() => None,
        None => Some(("", path)),
        Some(0) if path.len() == 1 => None,
        Some(0) => Some(("/", &path[1..])),
        Some(i) => Some((&path[..i], &path[i + 1..])),
    }
}

/// The components of a normalised relative path (`""` has none).
pub fn components(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|c| !c.is_empty())
}

/// Checks that `path` is in the form file systems receive (see
/// [`FileSystem`](crate::FileSystem)): `EINVAL` otherwise. File systems
/// call this so that a path that bypassed the VFS cannot name `..`.
pub fn check_relative(path: &str) -> Result<()> {
    if path.is_empty() {
        return Ok(());
    }
    if path.len() > PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    for c in path.split('/') {
        if matches!(c, "" | "." | "..") || c.contains('\0') {
            return Err(Errno::EINVAL);
        }
        if c.len() > NAME_MAX {
            return Err(Errno::ENAMETOOLONG);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn normalisation_table() {
        let cases: &[(&str, &str, &str)] = &[
            ("/", "/", "/"),
            ("/", "/a/b", "/a/b"),
            ("/", "//a//b//", "/a/b"),
            ("/", "/a/./b/.", "/a/b"),
            ("/", "/a/../b", "/b"),
            ("/", "/a/b/../..", "/"),
            ("/", "/../../..", "/"),
            ("/", "/..", "/"),
            ("/", "a", "/a"),
            ("/x/y", "a", "/x/y/a"),
            ("/x/y", "./a/", "/x/y/a"),
            ("/x/y", "..", "/x"),
            ("/x/y", "../../../..", "/"),
            ("/x/y", "../z/./w", "/x/z/w"),
            ("/x/y", ".", "/x/y"),
            ("/x/y", "/abs", "/abs"),
            ("/x/y/", "a", "/x/y/a"),
            ("/", "a/", "/a"),
        ];
        for &(cwd, path, want) in cases {
            assert_eq!(normalize(cwd, path).as_deref(), Ok(want), "{cwd} + {path}");
        }
    }

    #[test]
    fn normalisation_errors() {
        assert_eq!(normalize("/", ""), Err(Errno::ENOENT));
        assert_eq!(normalize("/", "a\0b"), Err(Errno::EINVAL));
        let long = "a/".repeat(PATH_MAX / 2 + 1);
        assert_eq!(normalize("/", &long), Err(Errno::ENAMETOOLONG));
        // Exactly PATH_MAX bytes is fine.
        let max = "/".to_string() + &"a/".repeat((PATH_MAX - 2) / 2) + "a";
        assert_eq!(max.len(), PATH_MAX);
        assert!(normalize("/", &max).is_ok());
        // Short path, but the join with the cwd is too long.
        let cwd = normalize("/", &"b/".repeat(PATH_MAX / 2 - 1)).unwrap();
        assert_eq!(normalize(&cwd, "cc/dd"), Err(Errno::ENAMETOOLONG));
        let name = "n".repeat(NAME_MAX + 1);
        assert_eq!(normalize("/", &name), Err(Errno::ENAMETOOLONG));
        assert!(normalize("/", &name[1..]).is_ok());
    }

    #[test]
    fn dir_form() {
        for p in ["a/", "/", "a/.", "a/..", ".", "..", "//"] {
            assert!(names_dir(p), "{p}");
        }
        for p in ["a", "/a", "a/b", "a.", "..a"] {
            assert!(!names_dir(p), "{p}");
        }
    }

    #[test]
    fn base_stripping() {
        assert_eq!(strip_base("/mnt", "/mnt"), Some(""));
        assert_eq!(strip_base("/mnt/a/b", "/mnt"), Some("a/b"));
        assert_eq!(strip_base("/mntx", "/mnt"), None);
        assert_eq!(strip_base("/mntx/a", "/mnt"), None);
        assert_eq!(strip_base("/", "/"), Some(""));
        assert_eq!(strip_base("/a", "/"), Some("a"));
        assert_eq!(strip_base("/", "/mnt"), None);
    }

    #[test]
    fn splitting() {
        assert_eq!(split_last("/a/b"), Some(("/a", "b")));
        assert_eq!(split_last("/a"), Some(("/", "a")));
        assert_eq!(split_last("a/b/c"), Some(("a/b", "c")));
        assert_eq!(split_last("a"), Some(("", "a")));
        assert_eq!(split_last("/"), None);
        assert_eq!(split_last(""), None);
        assert_eq!(components("a/b").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(components("").count(), 0);
    }

    #[test]
    fn relative_check() {
        for ok in ["", "a", "a/b", "a.b/..c"] {
            assert_eq!(check_relative(ok), Ok(()), "{ok}");
        }
        for bad in ["/a", "a/", "a//b", ".", "a/..", "../a", "a\0"] {
            assert_eq!(check_relative(bad), Err(Errno::EINVAL), "{bad}");
        }
    }
}
