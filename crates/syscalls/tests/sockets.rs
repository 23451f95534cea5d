//! The socket calls end to end: two hermit-net stacks on an in-memory
//! cable, one `Syscalls` per side, driven through the ABI entry points.

mod common;

use std::ffi::CString;
use std::time::{Duration, Instant};

use common::{A_IP, B_IP, Net};
use hermit_net::{Ipv4Addr, SocketAddrV4};
use hermit_syscalls::abi::{
    self, AF_INET, AF_INET6, EAI_FAMILY, EAI_NONAME, FIONBIO, IPPROTO_TCP, IPPROTO_UDP, MSG_PEEK,
    O_CREAT, O_RDWR, POLLERR, POLLHUP, POLLIN, POLLNVAL, POLLOUT, SHUT_WR, SO_ERROR, SO_RCVTIMEO,
    SO_REUSEADDR, SOCK_DGRAM, SOCK_NONBLOCK, SOCK_STREAM, SOL_SOCKET, TCP_NODELAY, addrinfo,
    pollfd, sockaddr, timeval,
};
use hermit_syscalls::sockaddr::{encode, parse};
use hermit_syscalls::{Errno, Syscalls};

fn leak<T>(v: T) -> &'static T {
    Box::leak(Box::new(v))
}

fn neg(e: Errno) -> i32 {
    -e.raw()
}

/// Thin wrappers passing Rust buffers as the application's pointers.
trait Calls {
    fn sys(&self) -> &Syscalls<'static>;

    fn bind_to(&self, fd: i32, addr: SocketAddrV4) -> i32 {
        let a = encode(addr);
        // SAFETY: a 16-byte address.
        unsafe { self.sys().bind(fd, a.as_ptr().cast(), 16) }
    }
    fn connect_to(&self, fd: i32, addr: SocketAddrV4) -> i32 {
        let a = encode(addr);
        // SAFETY: a 16-byte address.
        unsafe { self.sys().connect(fd, a.as_ptr().cast(), 16) }
    }
    fn accept_from(&self, fd: i32) -> (i32, Option<SocketAddrV4>) {
        let mut a = [0u8; 16];
        let mut len: u32 = 16;
        // SAFETY: a 16-byte buffer and its length.
        let new = unsafe { self.sys().accept(fd, a.as_mut_ptr().cast(), &mut len) };
        (new, (new >= 0).then(|| parse(&a[..len as usize]).unwrap()))
    }
    fn send_all(&self, fd: i32, data: &[u8]) -> isize {
        // SAFETY: a valid buffer.
        unsafe { self.sys().send(fd, data.as_ptr(), data.len(), 0) }
    }
    fn recv_into(&self, fd: i32, buf: &mut [u8]) -> isize {
        // SAFETY: a valid buffer.
        unsafe { self.sys().recv(fd, buf.as_mut_ptr(), buf.len(), 0) }
    }
    fn name(&self, fd: i32, peer: bool) -> Result<SocketAddrV4, i32> {
        let mut a = [0u8; 16];
        let mut len: u32 = 16;
        let p: *mut sockaddr = a.as_mut_ptr().cast();
        let r = if peer {
            // SAFETY: a 16-byte buffer and its length.
            unsafe { self.sys().getpeername(fd, p, &mut len) }
        } else {
            // SAFETY: as above.
            unsafe { self.sys().getsockname(fd, p, &mut len) }
        };
        if r != 0 {
            return Err(r);
        }
        assert_eq!(len, 16);
        Ok(parse(&a).unwrap())
    }
    fn set_int(&self, fd: i32, level: i32, name: i32, v: i32) -> i32 {
        let b = v.to_ne_bytes();
        // SAFETY: a 4-byte value.
        unsafe { self.sys().setsockopt(fd, level, name, b.as_ptr(), 4) }
    }
    fn get_int(&self, fd: i32, level: i32, name: i32) -> Result<i32, i32> {
        let mut b = [0u8; 4];
        let mut len: u32 = 4;
        // SAFETY: a 4-byte buffer.
        let r = unsafe {
            self.sys()
                .getsockopt(fd, level, name, b.as_mut_ptr(), &mut len)
        };
        if r != 0 {
            return Err(r);
        }
        Ok(i32::from_ne_bytes(b))
    }
    fn nonblocking(&self, fd: i32, on: bool) -> i32 {
        let mut v = i32::from(on);
        // SAFETY: a valid int.
        unsafe { self.sys().ioctl(fd, FIONBIO, (&raw mut v).cast()) }
    }
    fn poll1(&self, fd: i32, events: i16, timeout_ms: i32) -> (i32, i16) {
        let mut p = [pollfd {
            fd,
            events,
            revents: 0,
        }];
        // SAFETY: one valid entry.
        let n = unsafe { self.sys().poll(p.as_mut_ptr(), 1, timeout_ms) };
        (n, p[0].revents)
    }
}

impl Calls for Syscalls<'static> {
    fn sys(&self) -> &Syscalls<'static> {
        self
    }
}

fn any(port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port)
}

fn listener(sys: &Syscalls<'static>, port: u16) -> i32 {
    let s = sys.socket(AF_INET, SOCK_STREAM, 0);
    assert!(s >= 0);
    assert_eq!(sys.set_int(s, SOL_SOCKET, SO_REUSEADDR, 1), 0);
    assert_eq!(sys.bind_to(s, any(port)), 0);
    assert_eq!(sys.listen(s, 128), 0);
    s
}

#[test]
fn tcp_echo_through_the_abi() {
    let net = leak(Net::new());
    let l = listener(&net.b, 7000);
    assert_eq!(net.b.name(l, false), Ok(any(7000)));
    let server = std::thread::spawn(move || {
        let (c, peer) = net.b.accept_from(l);
        assert!(c >= 0, "accept: {c}");
        assert_eq!(*peer.unwrap().ip(), A_IP);
        let mut buf = [0u8; 64];
        let n = net.b.recv_into(c, &mut buf);
        assert_eq!(n, 5);
        let upper = buf[..5].to_ascii_uppercase();
        assert_eq!(net.b.send_all(c, &upper), 5);
        assert_eq!(net.b.shutdown(c, SHUT_WR), 0);
        // The client's end of stream.
        assert_eq!(net.b.recv_into(c, &mut buf), 0);
        assert_eq!(net.b.close(c), 0);
    });
    let c = net.a.socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    assert_eq!(net.a.set_int(c, IPPROTO_TCP, TCP_NODELAY, 1), 0);
    assert_eq!(net.a.get_int(c, IPPROTO_TCP, TCP_NODELAY), Ok(1));
    assert_eq!(net.a.connect_to(c, SocketAddrV4::new(B_IP, 7000)), 0);
    assert_eq!(net.a.get_int(c, IPPROTO_TCP, TCP_NODELAY), Ok(1));
    assert_eq!(net.a.name(c, true), Ok(SocketAddrV4::new(B_IP, 7000)));
    let local = net.a.name(c, false).unwrap();
    assert_eq!(*local.ip(), A_IP);
    assert_ne!(local.port(), 0);
    assert_eq!(
        net.a.connect_to(c, SocketAddrV4::new(B_IP, 7000)),
        neg(Errno::EISCONN)
    );
    // write() works on sockets too.
    // SAFETY: a valid buffer.
    assert_eq!(unsafe { net.a.write(c, b"hello".as_ptr(), 5) }, 5);
    let mut buf = [0u8; 64];
    let mut got = Vec::new();
    loop {
        let n = net.a.recv_into(c, &mut buf);
        assert!(n >= 0, "recv: {n}");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n as usize]);
    }
    assert_eq!(got, b"HELLO");
    assert_eq!(net.a.shutdown(c, SHUT_WR), 0);
    server.join().unwrap();
    assert_eq!(net.a.close(c), 0);
    assert_eq!(net.b.close(l), 0);
}

#[test]
fn nonblocking_connect_accept_and_poll() {
    let net = leak(Net::new());
    let l = listener(&net.b, 7001);
    assert_eq!(net.b.nonblocking(l, true), 0);
    assert_eq!(net.b.accept_from(l).0, neg(Errno::EAGAIN));
    assert_eq!(net.b.poll1(l, POLLIN, 0), (0, 0));

    let c = net.a.socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_eq!(
        net.a.fcntl(c, abi::F_GETFL, 0) & abi::O_NONBLOCK,
        abi::O_NONBLOCK
    );
    assert_eq!(
        net.a.connect_to(c, SocketAddrV4::new(B_IP, 7001)),
        neg(Errno::EINPROGRESS)
    );
    let (n, rev) = net.a.poll1(c, POLLOUT, 5000);
    assert_eq!((n, rev), (1, POLLOUT));
    assert_eq!(net.a.get_int(c, SOL_SOCKET, SO_ERROR), Ok(0));
    assert_eq!(
        net.a.connect_to(c, SocketAddrV4::new(B_IP, 7001)),
        neg(Errno::EISCONN)
    );

    assert_eq!(net.b.poll1(l, POLLIN, 5000), (1, POLLIN));
    let (s, _) = net.b.accept_from(l);
    assert!(s >= 0);
    // Accepted sockets are blocking; make this one non-blocking.
    assert_eq!(net.b.fcntl(s, abi::F_GETFL, 0) & abi::O_NONBLOCK, 0);
    assert_eq!(net.b.fcntl(s, abi::F_SETFL, abi::O_NONBLOCK), 0);
    let mut buf = [0u8; 8];
    assert_eq!(net.b.recv_into(s, &mut buf), neg(Errno::EAGAIN) as isize);
    assert_eq!(net.b.poll1(s, POLLIN, 0), (0, 0));

    assert_eq!(net.a.send_all(c, b"x"), 1);
    assert_eq!(net.b.poll1(s, POLLIN | POLLOUT, 5000).0, 1);
    let (_, rev) = net.b.poll1(s, POLLIN, 5000);
    assert_eq!(rev, POLLIN);
    assert_eq!(net.b.recv_into(s, &mut buf), 1);

    // Mixed poll: a file is always ready, a bad fd is POLLNVAL.
    let path = CString::new("/tmp/f").unwrap();
    // SAFETY: a valid C string.
    let file = unsafe { net.b.open(path.as_ptr().cast(), O_CREAT | O_RDWR, 0o644) };
    let mut fds = [
        pollfd {
            fd: s,
            events: POLLIN,
            revents: 0,
        },
        pollfd {
            fd: file,
            events: POLLIN,
            revents: 0,
        },
        pollfd {
            fd: 500,
            events: POLLIN,
            revents: 0,
        },
        pollfd {
            fd: l,
            events: POLLIN,
            revents: 0,
        },
    ];
    // SAFETY: a valid array.
    assert_eq!(unsafe { net.b.poll(fds.as_mut_ptr(), 4, 1000) }, 2);
    assert_eq!(fds.map(|p| p.revents), [0, POLLIN, POLLNVAL, 0]);
    // A socket and nothing ready: times out.
    let start = Instant::now();
    assert_eq!(net.b.poll1(s, POLLIN, 50), (0, 0));
    assert!(start.elapsed() >= Duration::from_millis(50));
}

#[test]
fn refused_connections() {
    let net = leak(Net::new());
    let c = net.a.socket(AF_INET, SOCK_STREAM, 0);
    assert_eq!(
        net.a.connect_to(c, SocketAddrV4::new(B_IP, 9)),
        neg(Errno::ECONNREFUSED)
    );
    let nb = net.a.socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    assert_eq!(
        net.a.connect_to(nb, SocketAddrV4::new(B_IP, 9)),
        neg(Errno::EINPROGRESS)
    );
    let (n, rev) = net.a.poll1(nb, POLLOUT, 5000);
    assert_eq!(n, 1);
    assert_ne!(rev & POLLHUP, 0);
    assert_ne!(rev & POLLERR, 0);
    assert_eq!(
        net.a.get_int(nb, SOL_SOCKET, SO_ERROR),
        Ok(Errno::ECONNREFUSED.raw())
    );
}

#[test]
fn receive_timeout() {
    let net = leak(Net::new());
    let l = listener(&net.b, 7002);
    let c = net.a.socket(AF_INET, SOCK_STREAM, 0);
    assert_eq!(net.a.connect_to(c, SocketAddrV4::new(B_IP, 7002)), 0);
    let (s, _) = net.b.accept_from(l);
    let tv = timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: a timeval.
    let r = unsafe {
        net.b
            .setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, (&raw const tv).cast(), 16)
    };
    assert_eq!(r, 0);
    let mut back = timeval::default();
    let mut len: u32 = 16;
    // SAFETY: a timeval and its length.
    let r = unsafe {
        net.b
            .getsockopt(s, SOL_SOCKET, SO_RCVTIMEO, (&raw mut back).cast(), &mut len)
    };
    assert_eq!((r, len, back), (0, 16, tv));
    let start = Instant::now();
    let mut buf = [0u8; 4];
    assert_eq!(net.b.recv_into(s, &mut buf), neg(Errno::EAGAIN) as isize);
    assert!(start.elapsed() >= Duration::from_millis(100));
    // Too short a value.
    // SAFETY: 8 readable bytes.
    let r = unsafe {
        net.b
            .setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, (&raw const tv).cast(), 8)
    };
    assert_eq!(r, neg(Errno::EINVAL));
    // Data still flows after the timeout.
    assert_eq!(net.a.send_all(c, b"late"), 4);
    assert_eq!(net.b.recv_into(s, &mut buf), 4);
}

#[test]
fn dup_of_a_socket_keeps_it_open() {
    let net = leak(Net::new());
    let l = listener(&net.b, 7003);
    let c = net.a.socket(AF_INET, SOCK_STREAM, 0);
    assert_eq!(net.a.connect_to(c, SocketAddrV4::new(B_IP, 7003)), 0);
    let (s, _) = net.b.accept_from(l);
    let d = net.a.dup(c);
    assert!(d > c);
    assert_eq!(net.a.close(c), 0);
    assert_eq!(net.a.send_all(d, b"dup"), 3);
    let mut buf = [0u8; 3];
    assert_eq!(net.b.recv_into(s, &mut buf), 3);
    assert_eq!(&buf, b"dup");
    assert_eq!(net.a.send_all(c, b"x"), neg(Errno::EBADF) as isize);
}

#[test]
fn udp_sendto_recvfrom_connect() {
    let net = leak(Net::new());
    let b = net.b.socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
    assert_eq!(net.b.bind_to(b, any(9000)), 0);
    assert_eq!(net.b.name(b, false), Ok(any(9000)));
    let a = net.a.socket(AF_INET, SOCK_DGRAM, 0);
    assert_eq!(net.a.send_all(a, b"x"), neg(Errno::EDESTADDRREQ) as isize);
    let to = encode(SocketAddrV4::new(B_IP, 9000));
    // SAFETY: valid buffer and address.
    let n = unsafe {
        net.a
            .sendto(a, b"ping".as_ptr(), 4, 0, to.as_ptr().cast(), 16)
    };
    assert_eq!(n, 4);
    let a_port = net.a.name(a, false).unwrap().port();
    assert_ne!(a_port, 0);

    let mut buf = [0u8; 16];
    let mut from = [0u8; 16];
    let mut len: u32 = 16;
    // SAFETY: valid buffers.
    let n = unsafe {
        net.b.recvfrom(
            b,
            buf.as_mut_ptr(),
            buf.len(),
            0,
            from.as_mut_ptr().cast(),
            &mut len,
        )
    };
    assert_eq!(n, 4);
    assert_eq!(&buf[..4], b"ping");
    let sender = parse(&from[..len as usize]).unwrap();
    assert_eq!(sender, SocketAddrV4::new(A_IP, a_port));
    // SAFETY: valid buffer and address.
    let n = unsafe {
        net.b
            .sendto(b, b"pong".as_ptr(), 4, 0, from.as_ptr().cast(), len)
    };
    assert_eq!(n, 4);
    assert_eq!(net.a.recv_into(a, &mut buf), 4);
    assert_eq!(&buf[..4], b"pong");

    assert_eq!(net.a.name(a, true), Err(neg(Errno::ENOTCONN)));
    assert_eq!(net.a.connect_to(a, SocketAddrV4::new(B_IP, 9000)), 0);
    assert_eq!(net.a.name(a, true), Ok(SocketAddrV4::new(B_IP, 9000)));
    assert_eq!(net.a.send_all(a, b"again"), 5);
    assert_eq!(net.b.poll1(b, POLLIN, 5000), (1, POLLIN));
    assert_eq!(net.b.recv_into(b, &mut buf), 5);
    // A second bind on the same port.
    let b2 = net.b.socket(AF_INET, SOCK_DGRAM, 0);
    assert_eq!(net.b.bind_to(b2, any(9000)), neg(Errno::EADDRINUSE));
    assert_eq!(net.b.listen(b, 1), neg(Errno::EOPNOTSUPP));
}

#[test]
fn socket_argument_checking() {
    let net = leak(Net::new());
    let sys = &net.a;
    assert_eq!(
        sys.socket(AF_INET6, SOCK_STREAM, 0),
        neg(Errno::EAFNOSUPPORT)
    );
    assert_eq!(sys.socket(99, SOCK_STREAM, 0), neg(Errno::EAFNOSUPPORT));
    assert_eq!(sys.socket(AF_INET, 99, 0), neg(Errno::EINVAL));
    assert_eq!(
        sys.socket(AF_INET, SOCK_STREAM, IPPROTO_UDP),
        neg(Errno::EINVAL)
    );
    let s = sys.socket(AF_INET, SOCK_STREAM, 0);

    let good = encode(any(7100));
    // SAFETY: 15 readable bytes.
    let r = unsafe { sys.bind(s, good.as_ptr().cast(), 15) };
    assert_eq!(r, neg(Errno::EINVAL));
    // SAFETY: null is checked.
    let r = unsafe { sys.bind(s, std::ptr::null(), 16) };
    assert_eq!(r, neg(Errno::EFAULT));
    // SAFETY: rejected on the length.
    let r = unsafe { sys.bind(s, good.as_ptr().cast(), 129) };
    assert_eq!(r, neg(Errno::EINVAL));
    let mut v6 = [0u8; 28];
    v6[1] = AF_INET6 as u8;
    // SAFETY: 28 readable bytes.
    let r = unsafe { sys.bind(s, v6.as_ptr().cast(), 28) };
    assert_eq!(r, neg(Errno::EAFNOSUPPORT));
    assert_eq!(
        sys.bind_to(s, SocketAddrV4::new(Ipv4Addr::new(8, 8, 8, 8), 1)),
        neg(Errno::EADDRNOTAVAIL)
    );
    assert_eq!(sys.bind_to(s, SocketAddrV4::new(A_IP, 7100)), 0);
    assert_eq!(sys.bind_to(s, any(7101)), neg(Errno::EINVAL));

    // Unconnected TCP.
    assert_eq!(sys.send_all(s, b"x"), neg(Errno::ENOTCONN) as isize);
    let mut buf = [0u8; 4];
    assert_eq!(sys.recv_into(s, &mut buf), neg(Errno::ENOTCONN) as isize);
    assert_eq!(sys.shutdown(s, SHUT_WR), neg(Errno::ENOTCONN));
    assert_eq!(sys.shutdown(s, 7), neg(Errno::EINVAL));
    assert_eq!(sys.name(s, true), Err(neg(Errno::ENOTCONN)));
    assert_eq!(sys.accept_from(s).0, neg(Errno::EINVAL));
    // An unconnected TCP socket polls as writable and hung up.
    assert_eq!(sys.poll1(s, POLLIN | POLLOUT, 0), (1, POLLOUT | POLLHUP));
    // Flags.
    // SAFETY: a valid buffer.
    let r = unsafe { sys.recv(s, buf.as_mut_ptr(), 4, MSG_PEEK) };
    assert_eq!(r, neg(Errno::EOPNOTSUPP) as isize);
    // SAFETY: a valid buffer.
    let r = unsafe { sys.send(s, buf.as_ptr(), 4, 0x4000) };
    assert_eq!(r, neg(Errno::EINVAL) as isize);
    // Options.
    assert_eq!(
        sys.set_int(s, SOL_SOCKET, 0x7777, 1),
        neg(Errno::EOPNOTSUPP)
    );
    assert_eq!(
        sys.set_int(s, 1234, SO_REUSEADDR, 1),
        neg(Errno::EOPNOTSUPP)
    );
    // SAFETY: 2 readable bytes.
    let r = unsafe { sys.setsockopt(s, SOL_SOCKET, SO_REUSEADDR, buf.as_ptr(), 2) };
    assert_eq!(r, neg(Errno::EINVAL));
    assert_eq!(sys.get_int(s, SOL_SOCKET, SO_REUSEADDR), Ok(0));
    // getsockname truncates to the caller's length and reports the full one.
    let mut small = [0u8; 4];
    let mut len: u32 = 4;
    // SAFETY: a 4-byte buffer.
    let r = unsafe { sys.getsockname(s, small.as_mut_ptr().cast(), &mut len) };
    assert_eq!(r, 0);
    assert_eq!(len, 16);
    assert_eq!(small, encode(SocketAddrV4::new(A_IP, 7100))[..4]);
    // fstat says socket.
    let mut st = abi::stat::default();
    // SAFETY: a valid out pointer.
    assert_eq!(unsafe { sys.fstat(s, &mut st) }, 0);
    assert_eq!(st.st_mode & abi::S_IFMT, abi::S_IFSOCK);

    // Socket calls on a file and on nothing.
    let path = CString::new("/tmp/plain").unwrap();
    // SAFETY: a valid C string.
    let file = unsafe { sys.open(path.as_ptr().cast(), O_CREAT | O_RDWR, 0o644) };
    assert_eq!(sys.listen(file, 1), neg(Errno::ENOTSOCK));
    assert_eq!(sys.send_all(file, b"x"), neg(Errno::ENOTSOCK) as isize);
    assert_eq!(sys.name(file, false), Err(neg(Errno::ENOTSOCK)));
    assert_eq!(sys.listen(333, 1), neg(Errno::EBADF));
    assert_eq!(sys.shutdown(-1, SHUT_WR), neg(Errno::EBADF));
}

#[test]
fn getaddrinfo_lists_and_frees() {
    let net = leak(Net::new());
    let sys = &net.a;
    let node = CString::new("10.1.2.3").unwrap();
    let service = CString::new("8080").unwrap();
    let mut hints: addrinfo = addrinfo {
        ai_flags: 0,
        ai_family: 0,
        ai_socktype: SOCK_STREAM,
        ai_protocol: 0,
        ai_addrlen: 0,
        ai_canonname: std::ptr::null_mut(),
        ai_addr: std::ptr::null_mut(),
        ai_next: std::ptr::null_mut(),
    };
    let mut res: *mut addrinfo = std::ptr::null_mut();
    // SAFETY: valid strings, hints and result pointer.
    let r = unsafe {
        sys.getaddrinfo(
            node.as_ptr().cast(),
            service.as_ptr().cast(),
            &hints,
            &mut res,
        )
    };
    assert_eq!(r, 0);
    let mut found = Vec::new();
    let mut cur = res;
    while !cur.is_null() {
        // SAFETY: a node of the list getaddrinfo built.
        let ai = unsafe { &*cur };
        assert_eq!(ai.ai_family, AF_INET);
        // SAFETY: `ai_addr` points to `ai_addrlen` bytes.
        let bytes =
            unsafe { std::slice::from_raw_parts(ai.ai_addr.cast::<u8>(), ai.ai_addrlen as usize) };
        found.push((parse(bytes).unwrap(), ai.ai_socktype));
        cur = ai.ai_next;
    }
    assert_eq!(
        found,
        [(
            SocketAddrV4::new(Ipv4Addr::new(10, 1, 2, 3), 8080),
            SOCK_STREAM
        )]
    );
    // SAFETY: the list from getaddrinfo, freed once.
    unsafe { sys.freeaddrinfo(res) };
    // SAFETY: null is ignored.
    unsafe { sys.freeaddrinfo(std::ptr::null_mut()) };

    // Without hints: one entry per socket type.
    // SAFETY: as above.
    let r = unsafe {
        sys.getaddrinfo(
            node.as_ptr().cast(),
            std::ptr::null(),
            std::ptr::null(),
            &mut res,
        )
    };
    assert_eq!(r, 0);
    // SAFETY: a two-node list.
    let second = unsafe { (*res).ai_next };
    assert!(!second.is_null());
    // SAFETY: as above.
    assert!(unsafe { (*second).ai_next }.is_null());
    // SAFETY: freed once.
    unsafe { sys.freeaddrinfo(res) };

    hints.ai_family = AF_INET6;
    // SAFETY: as above.
    let r = unsafe { sys.getaddrinfo(node.as_ptr().cast(), std::ptr::null(), &hints, &mut res) };
    assert_eq!(r, EAI_FAMILY);
    let unknown = CString::new("no.such.host.invalid").unwrap();
    hints.ai_family = 0;
    // SAFETY: as above.
    let r = unsafe { sys.getaddrinfo(unknown.as_ptr().cast(), std::ptr::null(), &hints, &mut res) };
    if cfg!(feature = "dns") {
        assert_ne!(r, 0);
    } else {
        assert_eq!(r, EAI_NONAME);
    }

    let mut addr = [0u8; 4];
    let b = CString::new("192.168.7.2").unwrap();
    // SAFETY: valid string and 4-byte buffer.
    let r = unsafe { sys.getaddrbyname(b.as_ptr().cast(), addr.as_mut_ptr(), 4) };
    assert_eq!(r, 0);
    assert_eq!(addr, B_IP.octets());
    // SAFETY: rejected on the length.
    let r = unsafe { sys.getaddrbyname(b.as_ptr().cast(), addr.as_mut_ptr(), 3) };
    assert_eq!(r, neg(Errno::EINVAL));
}
