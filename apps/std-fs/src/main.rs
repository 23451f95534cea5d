//! `std-fs DIR`: exercises `std::fs` below `DIR` (a host directory mapped
//! with `HERMIT_MOUNT`, or `/tmp` in the guest's memory) and prints what it
//! sees, so the output of the hermit image and of the same source built for
//! Linux can be compared line by line: create a directory, write, append and
//! read files, metadata, a sorted listing (also as JSON through serde_json,
//! a crates.io crate), rename, errors for missing files, and removal of
//! everything it made. Exit status 0 if every step worked, 1 otherwise.

#[cfg(target_os = "hermit")]
use hermit as _;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

fn run(dir: &Path) -> std::io::Result<()> {
    let root = dir.join("std-fs-test");
    fs::create_dir(&root)?;
    println!("created {}", root.file_name().unwrap().to_string_lossy());

    let a = root.join("a.txt");
    fs::write(&a, "hello, world\n")?;
    let mut f = fs::OpenOptions::new().append(true).open(&a)?;
    f.write_all(b"second line\n")?;
    drop(f);
    print!("a.txt: {}", fs::read_to_string(&a)?);
    println!("a.txt is {} bytes", fs::metadata(&a)?.len());

    let big = root.join("big.bin");
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(&big, &data)?;
    let mut f = fs::File::open(&big)?;
    f.seek(SeekFrom::Start(100_000))?;
    let mut tail = Vec::new();
    f.read_to_end(&mut tail)?;
    println!(
        "big.bin: {} bytes, tail from 100000 matches: {}",
        fs::metadata(&big)?.len(),
        tail == data[100_000..]
    );

    fs::create_dir(root.join("sub"))?;
    fs::write(root.join("sub").join("c.txt"), "c")?;
    let mut names: Vec<String> = fs::read_dir(&root)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_, _>>()?;
    names.sort();
    println!("listing: {names:?}");
    let kinds: Vec<serde_json::Value> = names
        .iter()
        .map(|n| {
            let m = fs::metadata(root.join(n))
                .map(|m| m.is_dir())
                .unwrap_or(false);
            serde_json::json!({ "name": n, "dir": m })
        })
        .collect();
    let json = serde_json::to_string(&kinds).map_err(std::io::Error::other)?;
    println!("json: {json}");
    let back: Vec<serde_json::Value> =
        serde_json::from_str(&json).map_err(std::io::Error::other)?;
    println!("json round trip: {}", back == kinds);

    // (std has no rename on hermit: hermit-abi 0.5 offers no sys_rename.)
    // (`fs::copy` also sets the permissions, which std cannot do on
    // hermit either: copy the bytes with io::copy.)
    {
        let mut reader = fs::File::open(&a)?;
        let mut writer = fs::File::create(root.join("copy.txt"))?;
        std::io::copy(&mut reader, &mut writer)?;
    }
    println!(
        "copied: {:?}",
        fs::read_to_string(root.join("copy.txt"))?
            .lines()
            .collect::<Vec<_>>()
    );
    match fs::read(root.join("missing")) {
        Ok(_) => println!("missing file: opened?!"),
        Err(e) => println!("missing file: {:?}", e.kind()),
    }

    fs::remove_file(root.join("sub").join("c.txt"))?;
    fs::remove_dir(root.join("sub"))?;
    fs::remove_file(root.join("copy.txt"))?;
    fs::remove_file(&a)?;
    fs::remove_file(&big)?;
    fs::remove_dir(&root)?;
    println!("removed: root exists {}", root.exists());
    Ok(())
}

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: std-fs DIR");
        std::process::exit(2);
    };
    if let Err(e) = run(Path::new(&dir)) {
        eprintln!("std-fs: {e}");
        std::process::exit(1);
    }
}
