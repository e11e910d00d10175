//! One non-blocking UDP socket per shard, read and written in batches with
//! `recvmmsg`/`sendmmsg`.

use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::error::{Error, Result};

/// Datagrams read or written per system call.
pub const BATCH: usize = 32;
/// Receive buffer per datagram: one byte more than any datagram we accept, to see oversize.
pub const RECV_BUF: usize = 2048;

/// Binds a non-blocking UDP socket on `ip`, on the first free port of `min..=max`
/// (`0..=0`: any port), skipping ports already in `taken`.
pub fn bind(ip: IpAddr, min: u16, max: u16, taken: &[u16]) -> Result<UdpSocket> {
    let ports: Box<dyn Iterator<Item = u16>> = if min == 0 {
        Box::new(std::iter::once(0))
    } else {
        Box::new(min..=max)
    };
    let mut last_err = None;
    for port in ports {
        if port != 0 && taken.contains(&port) {
            continue;
        }
        let addr = SocketAddr::new(ip, port);
        let domain = Domain::for_address(addr);
        let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        socket.set_nonblocking(true)?;
        // Big buffers absorb bursts while a shard is busy forwarding.
        let _ = socket.set_recv_buffer_size(4 << 20);
        let _ = socket.set_send_buffer_size(4 << 20);
        match socket.bind(&SockAddr::from(addr)) {
            Ok(()) => return Ok(socket.into()),
            Err(e) => last_err = Some(e),
        }
    }
    Err(Error::Config(format!(
        "no free UDP port on {ip} in {min}-{max}: {}",
        last_err.map_or_else(|| "range exhausted".to_string(), |e| e.to_string())
    )))
}

/// Reusable buffers for batched receive.
pub struct RecvBatch {
    bufs: Vec<[u8; RECV_BUF]>,
    addrs: Vec<libc::sockaddr_storage>,
    lens: Vec<usize>,
    truncated: Vec<bool>,
    count: usize,
}

impl Default for RecvBatch {
    fn default() -> Self {
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid value.
        let zero: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
        RecvBatch {
            bufs: vec![[0; RECV_BUF]; BATCH],
            addrs: vec![zero; BATCH],
            lens: vec![0; BATCH],
            truncated: vec![false; BATCH],
            count: 0,
        }
    }
}

impl RecvBatch {
    /// Reads up to `BATCH` datagrams; `Ok(0)` when none are waiting.
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        let mut iovs: Vec<libc::iovec> = self
            .bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: RECV_BUF,
            })
            .collect();
        // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
        let mut msgs: Vec<libc::mmsghdr> =
            vec![unsafe { MaybeUninit::zeroed().assume_init() }; BATCH];
        for i in 0..BATCH {
            let h = &mut msgs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
        }
        // SAFETY: every pointer in `msgs` points into buffers that outlive the call.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::WouldBlock {
                self.count = 0;
                Ok(0)
            } else {
                Err(e)
            };
        }
        let n = n as usize;
        for (i, m) in msgs.iter().enumerate().take(n) {
            self.lens[i] = m.msg_len as usize;
            self.truncated[i] = m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
        }
        self.count = n;
        Ok(n)
    }

    /// The datagrams of the last `recv`: (source, bytes, truncated).
    pub fn iter(&self) -> impl Iterator<Item = (Option<SocketAddr>, &[u8], bool)> {
        (0..self.count).map(move |i| {
            (
                sockaddr_to_std(&self.addrs[i]),
                &self.bufs[i][..self.lens[i].min(RECV_BUF)],
                self.truncated[i] || self.lens[i] >= RECV_BUF,
            )
        })
    }
}

fn sockaddr_to_std(s: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(s.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, which it is large enough for.
            let a: &libc::sockaddr_in = unsafe { &*(s as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::new(ip.into(), u16::from_be(a.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let a: &libc::sockaddr_in6 = unsafe { &*(s as *const libc::sockaddr_storage).cast() };
            let ip = std::net::Ipv6Addr::from(a.sin6_addr.s6_addr);
            Some(SocketAddr::new(ip.into(), u16::from_be(a.sin6_port)))
        }
        _ => None,
    }
}

/// Sends datagrams in batches; returns how many the kernel took. A datagram the kernel
/// refuses outright (e.g. unreachable) is skipped so one bad destination cannot stall others.
pub fn send_batch(socket: &UdpSocket, datagrams: &[(SocketAddr, &[u8])]) -> usize {
    let mut sent = 0;
    let mut start = 0;
    while start < datagrams.len() {
        let chunk = &datagrams[start..(start + BATCH).min(datagrams.len())];
        let addrs: Vec<SockAddr> = chunk.iter().map(|(a, _)| SockAddr::from(*a)).collect();
        let mut iovs: Vec<libc::iovec> = chunk
            .iter()
            .map(|(_, d)| libc::iovec {
                iov_base: d.as_ptr() as *mut libc::c_void,
                iov_len: d.len(),
            })
            .collect();
        // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
        let mut msgs: Vec<libc::mmsghdr> =
            vec![unsafe { MaybeUninit::zeroed().assume_init() }; chunk.len()];
        for i in 0..chunk.len() {
            let h = &mut msgs[i].msg_hdr;
            h.msg_name = addrs[i].as_ptr() as *mut libc::c_void;
            h.msg_namelen = addrs[i].len();
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
        }
        // SAFETY: pointers reference `addrs`, `iovs` and the caller's slices, all alive here.
        let n = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                msgs.as_mut_ptr(),
                msgs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
            )
        };
        if n <= 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::WouldBlock {
                // Socket buffer full: what is left is lost, as a router would drop it.
                return sent;
            }
            start += 1; // skip the datagram the kernel refused
            continue;
        }
        sent += n as usize;
        start += n as usize;
    }
    sent
}
