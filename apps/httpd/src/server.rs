//! The web server of `httpd` and `httpd-rtl8139` (one source, two cards).
//!
//! `httpd [PORT] [--dir DIR] [--requests N] [--workers W] [--backlog B]`: serves GET and
//! HEAD on `PORT` (default 8080) over HTTP/1.0 and HTTP/1.1. `/` is the
//! built-in index page unless `DIR/index.html` exists; every other path is a
//! file below `DIR` (for example a host directory mapped with
//! `HERMIT_MOUNT`). Paths with a `..` segment get 403, unknown files 404,
//! malformed requests 400, other methods 405, other HTTP versions 505.
//! Every response carries `Content-Length`, a `Content-Type` chosen by the
//! file's extension and `Connection: close` (no keep-alive: a fixed pool of
//! `W` worker threads, default 8, shares the listener, so many concurrent
//! connections queue in the stack's backlog instead of holding threads).
//! `--timeout SECS` (default 30) is how long a connection may stay silent
//! before its request head is complete (it is then closed without an
//! answer). `--backlog B` (default 128) is how many connections the stack accepts
//! before a worker takes them: its smoltcp stack answers a SYN beyond the
//! backlog with a reset rather than dropping it, so a burst of clients
//! needs a backlog as large as the burst. With `--requests N` the server ends with status 0 once N responses were
//! sent; without, it runs until the VM is stopped.
//!
//! Once ready it prints `httpd: listening on ADDR:PORT`, and one line per
//! request on stdout only with `--log`.

use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt::Write as _;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use core::time::Duration;

use hermit::net::{self, Errno, Shutdown, TcpListener, TcpStream};
use hermit::sync::{Condvar, Mutex};
use hermit::{eprintln, println};

/// Longest request head (request line and headers) accepted.
const MAX_HEAD: usize = 8 * 1024;
/// How long to wait for the client to close after the response.
const LINGER: Duration = Duration::from_secs(2);
/// File data sent per write.
const CHUNK: usize = 16 * 1024;
/// Stack of each worker thread.
const WORKER_STACK: usize = 64 * 1024;

/// The page served at `/` when `DIR/index.html` does not exist.
const INDEX: &str = "<!DOCTYPE html>\n<html><head><title>hermit httpd</title></head>\n\
<body><h1>Hello from hermit-rs</h1>\n\
<p>This page comes from httpd, a web server running in a unikernel.</p>\n\
</body></html>\n";

/// Command-line settings.
struct Options {
    port: u16,
    dir: Option<String>,
    requests: Option<u64>,
    workers: usize,
    backlog: usize,
    timeout: Duration,
    log: bool,
}

/// Why the command line was rejected (the message is printed).
struct Usage;

fn parse_args(args: &[&str]) -> Result<Options, Usage> {
    let mut opts = Options {
        port: 8080,
        dir: None,
        requests: None,
        workers: 8,
        backlog: 128,
        timeout: Duration::from_secs(30),
        log: false,
    };
    let mut it = args.iter();
    let mut port_seen = false;
    while let Some(&arg) = it.next() {
        let mut value = |name: &str| {
            it.next().copied().ok_or_else(|| {
                eprintln!("httpd: {name} needs a value");
                Usage
            })
        };
        match arg {
            "--dir" => opts.dir = Some(String::from(value("--dir")?.trim_end_matches('/'))),
            "--requests" => opts.requests = Some(number(value("--requests")?, "request count")?),
            "--workers" => {
                opts.workers = number(value("--workers")?, "worker count")?;
                if !(1..=64).contains(&opts.workers) {
                    eprintln!("httpd: worker count must be 1..=64");
                    return Err(Usage);
                }
            }
            "--backlog" => {
                opts.backlog = number(value("--backlog")?, "backlog")?;
                if !(1..=1024).contains(&opts.backlog) {
                    eprintln!("httpd: backlog must be 1..=1024");
                    return Err(Usage);
                }
            }
            "--timeout" => {
                opts.timeout = Duration::from_secs(number(value("--timeout")?, "timeout")?);
            }
            "--log" => opts.log = true,
            _ if !port_seen && !arg.starts_with('-') => {
                opts.port = number(arg, "port")?;
                port_seen = true;
            }
            _ => {
                eprintln!(
                    "httpd: unexpected argument '{arg}'\n\
                     usage: httpd [PORT] [--dir DIR] [--requests N] [--workers W] [--backlog B] [--timeout SECS] [--log]"
                );
                return Err(Usage);
            }
        }
    }
    Ok(opts)
}

fn number<T: core::str::FromStr>(s: &str, what: &str) -> Result<T, Usage> {
    s.parse().map_err(|_| {
        eprintln!("httpd: invalid {what} '{s}'");
        Usage
    })
}

/// State the workers share.
struct Server {
    listener: TcpListener,
    dir: Option<String>,
    log: bool,
    /// How long a request head may take.
    timeout: Duration,
    /// Responses sent so far.
    served: AtomicU64,
    /// Set by a worker whose accept failed for good.
    broken: AtomicBool,
    /// Signalled after every response (with `--requests`).
    progress: (Mutex<()>, Condvar),
}

/// The app's entry: parse, listen, start the workers, wait.
pub fn main() -> i32 {
    let args: Vec<&str> = hermit::env::args().skip(1).collect();
    let Ok(opts) = parse_args(&args) else {
        return 2;
    };
    let listener = match net::stack().and_then(|s| s.tcp_listen(opts.port, opts.backlog)) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("httpd: cannot listen on port {}: {e}", opts.port);
            return 1;
        }
    };
    let server = Arc::new(Server {
        listener,
        dir: opts.dir,
        log: opts.log,
        timeout: opts.timeout,
        served: AtomicU64::new(0),
        broken: AtomicBool::new(false),
        progress: (Mutex::new(()), Condvar::new()),
    });
    for _ in 0..opts.workers {
        let s = server.clone();
        let spawned = hermit::thread::Builder::new()
            .stack_size(WORKER_STACK)
            .spawn(move || worker(&s));
        if let Err(e) = spawned {
            eprintln!("httpd: cannot start a worker: {e:?}");
            return 1;
        }
    }
    let addr = net::local_addr().map_or_else(|| "?".into(), |a| alloc::format!("{a}"));
    println!("httpd: listening on {addr}:{}", opts.port);
    // The workers run forever; the main thread decides when the VM ends.
    let (lock, cond) = &server.progress;
    let mut guard = lock.lock();
    loop {
        if server.broken.load(Ordering::Acquire) {
            return 1;
        }
        if let Some(n) = opts.requests
            && server.served.load(Ordering::Acquire) >= n
        {
            println!("httpd: served {n} requests");
            return 0;
        }
        guard = cond.wait(guard);
    }
}

/// One worker: accept, answer one request, close; forever.
fn worker(server: &Server) {
    let mut head = alloc::vec![0u8; MAX_HEAD];
    loop {
        let stream = match server.listener.accept() {
            Ok((s, _)) => s,
            // The stack is out of sockets or memory for a moment.
            Err(Errno::EMFILE | Errno::ENOMEM | Errno::EAGAIN) => {
                hermit::thread::sleep(Duration::from_millis(10));
                continue;
            }
            Err(e) => {
                eprintln!("httpd: accept failed: {e}");
                server.broken.store(true, Ordering::Release);
                server.progress.1.notify_all();
                return;
            }
        };
        let answered = handle(server, &stream, &mut head);
        // Lingering close: send FIN after the response, then wait for the
        // client's own close, so that neither unread request bytes (reset)
        // nor the VM's end can cut the response short.
        let _ = stream.shutdown(Shutdown::Write);
        let _ = stream.set_read_timeout(Some(LINGER));
        while let Ok(n) = stream.read(&mut head) {
            if n == 0 {
                break;
            }
        }
        drop(stream);
        if answered {
            server.served.fetch_add(1, Ordering::AcqRel);
            let _guard = server.progress.0.lock();
            server.progress.1.notify_all();
        }
    }
}

/// A parsed request line.
struct Request<'a> {
    method: &'a str,
    path: String,
}

/// A response status and its reason phrase.
#[derive(Clone, Copy)]
struct Status(u16, &'static str);

const OK: Status = Status(200, "OK");
const BAD_REQUEST: Status = Status(400, "Bad Request");
const FORBIDDEN: Status = Status(403, "Forbidden");
const NOT_FOUND: Status = Status(404, "Not Found");
const NOT_ALLOWED: Status = Status(405, "Method Not Allowed");
const TOO_LARGE: Status = Status(431, "Request Header Fields Too Large");
const BAD_VERSION: Status = Status(505, "HTTP Version Not Supported");

/// Reads and answers one request; false if the client went away before a
/// response could be sent.
fn handle(server: &Server, stream: &TcpStream, head: &mut [u8]) -> bool {
    let _ = stream.set_read_timeout(Some(server.timeout));
    let len = match read_head(stream, head) {
        Ok(Some(len)) => len,
        Ok(None) => return error(stream, TOO_LARGE, true),
        Err(_) => return false,
    };
    let request = match parse_request(&head[..len]) {
        Ok(r) => r,
        Err(status) => return error(stream, status, true),
    };
    let get = request.method == "GET";
    if server.log {
        println!("httpd: {} {}", request.method, request.path);
    }
    if !get && request.method != "HEAD" {
        return error(stream, NOT_ALLOWED, true);
    }
    match resolve(server.dir.as_deref(), &request.path) {
        Err(status) => error(stream, status, get),
        Ok(Target::Index) => {
            respond(
                stream,
                OK,
                "text/html; charset=utf-8",
                INDEX.len() as u64,
                false,
            )
            .is_ok()
                && (!get || stream.write_all(INDEX.as_bytes()).is_ok())
        }
        Ok(Target::File(path, data)) => send_file(stream, &path, &data, get),
    }
}

/// Reads until the blank line ending the head; Ok(None) if it does not fit
/// in `buf`.
fn read_head(stream: &TcpStream, buf: &mut [u8]) -> Result<Option<usize>, Errno> {
    let mut len = 0;
    loop {
        if let Some(end) = head_end(&buf[..len]) {
            return Ok(Some(end));
        }
        if len == buf.len() {
            return Ok(None);
        }
        let n = stream.read(&mut buf[len..])?;
        if n == 0 {
            return Err(Errno::ECONNRESET);
        }
        len += n;
    }
}

/// Where the head ends (the index after its blank line), accepting bare
/// `\n` line ends as RFC 9112 allows.
fn head_end(data: &[u8]) -> Option<usize> {
    let mut prev_newline = false;
    for (i, &b) in data.iter().enumerate() {
        match b {
            b'\n' if prev_newline => return Some(i + 1),
            b'\n' => prev_newline = true,
            b'\r' => {}
            _ => prev_newline = false,
        }
    }
    None
}

/// Parses the request line; the headers are not needed.
fn parse_request(head: &[u8]) -> Result<Request<'_>, Status> {
    let head = core::str::from_utf8(head).map_err(|_| BAD_REQUEST)?;
    let line = head
        .lines()
        .next()
        .ok_or(BAD_REQUEST)?
        .trim_end_matches('\r');
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(BAD_REQUEST);
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(BAD_REQUEST);
    }
    match version {
        "HTTP/1.0" | "HTTP/1.1" => {}
        v if v.starts_with("HTTP/") => return Err(BAD_VERSION),
        _ => return Err(BAD_REQUEST),
    }
    if !target.starts_with('/') {
        return Err(BAD_REQUEST);
    }
    let raw = target.split(['?', '#']).next().unwrap_or(target);
    Ok(Request {
        method,
        path: percent_decode(raw).ok_or(BAD_REQUEST)?,
    })
}

/// Decodes `%XX` escapes; None for a bad escape, NUL or invalid UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = core::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    if out.contains(&0) {
        return None;
    }
    String::from_utf8(out).ok()
}

/// What a path names.
enum Target {
    /// The built-in page.
    Index,
    /// A file's name (for its type) and contents.
    File(String, Vec<u8>),
}

/// Maps a decoded URL path to what to send.
///
/// Files are read whole into the heap rather than `stat`ed and streamed:
/// under uhyve a `stat` from a spawned thread returns zeros (see the
/// report on hermit's host file calls), while reads into heap buffers work.
fn resolve(dir: Option<&str>, path: &str) -> Result<Target, Status> {
    if path.split(['/', '\\']).any(|seg| seg == "..") {
        return Err(FORBIDDEN);
    }
    let is_index = path == "/" || path == "/index.html";
    let Some(dir) = dir else {
        return if is_index {
            Ok(Target::Index)
        } else {
            Err(NOT_FOUND)
        };
    };
    let mut full = String::from(dir);
    full.push_str(path);
    if full.ends_with('/') {
        full.push_str("index.html");
    }
    let result = match hermit::fs::read(&full) {
        Err(hermit::fs::Errno::EISDIR) => {
            full.push_str("/index.html");
            hermit::fs::read(&full)
        }
        other => other,
    };
    match result {
        Ok(data) => Ok(Target::File(full, data)),
        Err(_) if is_index => Ok(Target::Index),
        Err(hermit::fs::Errno::EACCES | hermit::fs::Errno::EPERM) => Err(FORBIDDEN),
        Err(_) => Err(NOT_FOUND),
    }
}

/// The `Content-Type` for a file name's extension.
fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map_or("", |(_, e)| e);
    match ext.to_ascii_lowercase().as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" | "md" | "rs" => "text/plain; charset=utf-8",
        "css" => "text/css",
        "js" => "text/javascript",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/x-icon",
        "pdf" => "application/pdf",
        "wasm" => "application/wasm",
        "gz" => "application/gzip",
        _ => "application/octet-stream",
    }
}

/// Sends the status line and headers.
fn respond(
    stream: &TcpStream,
    status: Status,
    ctype: &str,
    len: u64,
    allow: bool,
) -> Result<(), Errno> {
    let mut head = String::with_capacity(160);
    let _ = write!(
        head,
        "HTTP/1.1 {} {}\r\nServer: hermit-httpd\r\nContent-Type: {ctype}\r\n\
         Content-Length: {len}\r\nConnection: close\r\n",
        status.0, status.1
    );
    if allow {
        head.push_str("Allow: GET, HEAD\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())
}

/// Sends an error page (its body only when `body`); true if sent.
fn error(stream: &TcpStream, status: Status, body: bool) -> bool {
    let page = alloc::format!("{} {}\n", status.0, status.1);
    let allow = status.0 == NOT_ALLOWED.0;
    respond(
        stream,
        status,
        "text/plain; charset=utf-8",
        page.len() as u64,
        allow,
    )
    .is_ok()
        && (!body || stream.write_all(page.as_bytes()).is_ok())
}

/// Sends a file's headers and (for GET) its contents; true if sent.
fn send_file(stream: &TcpStream, path: &str, data: &[u8], body: bool) -> bool {
    respond(stream, OK, content_type(path), data.len() as u64, false).is_ok()
        && (!body || data.chunks(CHUNK).all(|c| stream.write_all(c).is_ok()))
}
