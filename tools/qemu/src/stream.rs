//! The host end of the guest's file-system stream (see
//! [`hermit_interface::fs::stream`]): requests arrive on a socket QEMU
//! connects to the guest's virtio console; each is decoded, checked and
//! answered in order.

use std::io::{self, Read, Write};

use hermit_interface::errno::Errno;
use hermit_interface::fs::stream::StreamReply;
use hermit_interface::fs::{FsCall, Op, PATH_MAX};

pub use hermit_interface::fs::stream::MAX_DATA;

/// One decoded request.
pub struct Request<'a> {
    /// The call block (addresses zeroed).
    pub call: FsCall,
    /// `path` bytes.
    pub path: &'a [u8],
    /// `path2` bytes.
    pub path2: &'a [u8],
    /// Data to write (`Write`, `Pwrite`), else empty.
    pub input: &'a [u8],
}

fn read_call(r: &mut impl Read) -> io::Result<Option<FsCall>> {
    let mut raw = [0u8; FsCall::SIZE];
    let mut got = 0;
    while got < raw.len() {
        match r.read(&mut raw[got..]) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    // The guest's addresses mean nothing here; only lengths count.
    let mut call = FsCall::from_le_bytes(&raw).expect("a whole record");
    for slice in [&mut call.path, &mut call.path2, &mut call.buf] {
        slice.addr = 0;
    }
    call.result = 0;
    Ok(Some(call))
}

/// Serves requests from `conn` until the guest side closes it, calling
/// `handle(request, out)` for each; `handle` returns the result and leaves
/// in `out` the bytes to send back (at most `call.buf.len`).
///
/// A request whose lengths are out of bounds cannot be skipped safely (the
/// stream would lose step), so it ends the session with an error.
pub fn serve(
    conn: &mut (impl Read + Write),
    mut handle: impl FnMut(&Request<'_>, &mut Vec<u8>) -> i64,
) -> io::Result<()> {
    let mut payload = Vec::new();
    let mut out = Vec::new();
    while let Some(call) = read_call(conn)? {
        let (path_len, path2_len, buf_len) = (call.path.len, call.path2.len, call.buf.len);
        if path_len > PATH_MAX || path2_len > PATH_MAX || buf_len > MAX_DATA {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "guest request with lengths {path_len}/{path2_len}/{buf_len} out of bounds"
                ),
            ));
        }
        let carries_data = matches!(Op::from_raw(call.op), Some(Op::Write | Op::Pwrite));
        let input_len = if carries_data { buf_len } else { 0 };
        let total = (path_len + path2_len + input_len) as usize;
        payload.resize(total, 0);
        conn.read_exact(&mut payload)?;
        let (path, rest) = payload.split_at(path_len as usize);
        let (path2, input) = rest.split_at(path2_len as usize);
        let request = Request {
            call,
            path,
            path2,
            input,
        };
        out.clear();
        let mut result = handle(&request, &mut out);
        if out.len() as u64 > buf_len {
            out.clear();
            result = Errno::EIO.to_neg();
        }
        let reply = StreamReply {
            result,
            data_len: out.len() as u64,
        };
        conn.write_all(&reply.to_le_bytes())?;
        conn.write_all(&out)?;
        conn.flush()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn encode(call: &FsCall, parts: &[&[u8]]) -> Vec<u8> {
        let mut v = call.to_le_bytes().to_vec();
        for p in parts {
            v.extend_from_slice(p);
        }
        v
    }

    fn call(op: Op, path: &[u8], buf_len: u64) -> FsCall {
        let mut c = FsCall {
            op: op as u32,
            handle: 3,
            ..FsCall::default()
        };
        c.path.len = path.len() as u64;
        c.buf.len = buf_len;
        c
    }

    fn reply(conn: &mut UnixStream) -> (i64, Vec<u8>) {
        let mut head = [0u8; StreamReply::SIZE];
        conn.read_exact(&mut head).unwrap();
        let reply = StreamReply::from_le_bytes(&head).unwrap();
        let mut data = vec![0; reply.data_len as usize];
        conn.read_exact(&mut data).unwrap();
        (reply.result, data)
    }

    #[test]
    fn requests_decode_and_replies_frame() {
        let (mut guest, mut host) = UnixStream::pair().unwrap();
        let server = std::thread::spawn(move || {
            serve(&mut host, |req, out| match Op::from_raw(req.call.op) {
                Some(Op::Write) => {
                    assert_eq!(req.path, b"");
                    req.input.len() as i64
                }
                Some(Op::Stat) => {
                    out.extend_from_slice(req.path);
                    0
                }
                // Asks for more than the guest's buffer: refused.
                Some(Op::Read) => {
                    out.resize(req.call.buf.len as usize + 1, 7);
                    5
                }
                _ => Errno::ENOSYS.to_neg(),
            })
        });
        let c = call(Op::Write, b"", 4);
        guest.write_all(&encode(&c, &[b"abcd"])).unwrap();
        assert_eq!(reply(&mut guest), (4, vec![]));
        let c = call(Op::Stat, b"dir/x", 64);
        guest.write_all(&encode(&c, &[b"dir/x"])).unwrap();
        assert_eq!(reply(&mut guest), (0, b"dir/x".to_vec()));
        let c = call(Op::Read, b"", 8);
        guest.write_all(&encode(&c, &[])).unwrap();
        assert_eq!(reply(&mut guest), (Errno::EIO.to_neg(), vec![]));
        let c = FsCall {
            op: 99,
            ..FsCall::default()
        };
        guest.write_all(&encode(&c, &[])).unwrap();
        assert_eq!(reply(&mut guest), (Errno::ENOSYS.to_neg(), vec![]));
        drop(guest);
        server.join().unwrap().unwrap();
    }

    #[test]
    fn oversized_request_ends_the_session() {
        let (mut guest, mut host) = UnixStream::pair().unwrap();
        let c = call(Op::Write, b"", MAX_DATA + 1);
        guest.write_all(&encode(&c, &[])).unwrap();
        let err = serve(&mut host, |_, _| 0).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn truncated_header_is_an_error() {
        let (mut guest, mut host) = UnixStream::pair().unwrap();
        guest.write_all(&[1, 2, 3]).unwrap();
        drop(guest);
        assert_eq!(
            serve(&mut host, |_, _| 0).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );
    }
}
