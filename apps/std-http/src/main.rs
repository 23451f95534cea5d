//! `std-http PORT [REQUESTS]`: a small HTTP/1.0 server on
//! `std::net::TcpListener` (all addresses, `PORT`). `GET /` answers a fixed
//! page, `GET /echo/TEXT` answers `TEXT`, anything else 404. After
//! `REQUESTS` requests (default: never) it exits with status 0. Prints
//! `listening on PORT` when ready and one line per request.

#[cfg(target_os = "hermit")]
use hermit as _;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};

fn respond(stream: TcpStream) -> std::io::Result<String> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request = String::new();
    reader.read_line(&mut request)?;
    // Skip the headers.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
    }
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = match (method, path) {
        ("GET", "/") => ("200 OK", "<h1>hello from std-http</h1>\n".to_string()),
        ("GET", p) if p.starts_with("/echo/") => ("200 OK", p["/echo/".len()..].to_string()),
        _ => ("404 Not Found", "not found\n".to_string()),
    };
    let mut stream = stream;
    write!(
        stream,
        "HTTP/1.0 {status}\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()?;
    Ok(format!("{method} {path} -> {status}"))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(port) = args.next().and_then(|p| p.parse::<u16>().ok()) else {
        eprintln!("usage: std-http PORT [REQUESTS]");
        std::process::exit(2);
    };
    let limit: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(u64::MAX);
    let listener = match TcpListener::bind(("0.0.0.0", port)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("std-http: cannot listen on port {port}: {e}");
            std::process::exit(1);
        }
    };
    println!("listening on {port}");
    for (served, stream) in listener.incoming().enumerate() {
        match stream.and_then(respond) {
            Ok(line) => println!("{line}"),
            Err(e) => eprintln!("std-http: {e}"),
        }
        if served as u64 + 1 >= limit {
            break;
        }
    }
}
