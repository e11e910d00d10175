//! One non-blocking UDP socket per shard, read and written in batches with
//! `recvmmsg`/`sendmmsg`.

use std::collections::VecDeque;
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

use std::sync::atomic::Ordering::Relaxed;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::error::{Error, Result};
use crate::shard::Transmit;
use crate::stats::{DropReason, ShardStats};

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
        match socket.bind(&SockAddr::from(addr)) {
            Ok(()) => {
                // Big buffers absorb bursts while a shard is busy forwarding.
                log_buffer_size(size_buffer(&socket, Buffer::Receive, BUFFER_BYTES, true));
                log_buffer_size(size_buffer(&socket, Buffer::Send, BUFFER_BYTES, true));
                // Have the kernel tell us (a cmsg on each datagram) how many it dropped for
                // want of buffer space, so those losses are counted too.
                if let Err(e) = set_int_option(&socket, libc::SO_RXQ_OVFL, 1) {
                    tracing::warn!("SO_RXQ_OVFL unavailable, kernel drops go uncounted: {e}");
                }
                return Ok(socket.into());
            }
            Err(e) => last_err = Some(e),
        }
    }
    Err(Error::Config(format!(
        "no free UDP port on {ip} in {min}-{max}: {}",
        last_err.map_or_else(|| "range exhausted".to_string(), |e| e.to_string())
    )))
}

/// The socket buffer size every shard asks for, each way.
pub const BUFFER_BYTES: usize = 4 << 20;

/// Which socket buffer to size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Buffer {
    Receive,
    Send,
}

/// What the kernel granted when a socket buffer was sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferSize {
    pub which: Buffer,
    pub requested: usize,
    /// As read back with `getsockopt` (Linux reports twice what it reserves for data: the
    /// other half is its bookkeeping).
    pub got: usize,
    /// The size came from `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` (root or CAP_NET_ADMIN), past the
    /// `net.core.rmem_max`/`wmem_max` cap.
    pub forced: bool,
}

impl BufferSize {
    /// The kernel gave less than asked (capped by `net.core.rmem_max`/`wmem_max`).
    pub fn capped(&self) -> bool {
        self.got < self.requested
    }
}

/// Asks for a `requested`-byte buffer and reads back what the kernel granted. The plain
/// request is silently capped at `net.core.rmem_max` (`wmem_max`); when that happens and
/// `try_force` is set, the privileged `SO_*BUFFORCE` variant is tried, which only root (or
/// CAP_NET_ADMIN) may use.
pub fn size_buffer(
    socket: &Socket,
    which: Buffer,
    requested: usize,
    try_force: bool,
) -> io::Result<BufferSize> {
    let (set, get, force): (SetSize, GetSize, _) = match which {
        Buffer::Receive => (
            Socket::set_recv_buffer_size,
            Socket::recv_buffer_size,
            libc::SO_RCVBUFFORCE,
        ),
        Buffer::Send => (
            Socket::set_send_buffer_size,
            Socket::send_buffer_size,
            libc::SO_SNDBUFFORCE,
        ),
    };
    // A refused plain request leaves the default size; the read-back below tells.
    let _ = set(socket, requested);
    let got = get(socket)?;
    let mut size = BufferSize {
        which,
        requested,
        got,
        forced: false,
    };
    if size.capped() && try_force {
        let value = libc::c_int::try_from(requested).unwrap_or(libc::c_int::MAX);
        if set_int_option(socket, force, value).is_ok() {
            size.got = get(socket)?;
            size.forced = true;
        }
    }
    Ok(size)
}

type SetSize = fn(&Socket, usize) -> io::Result<()>;
type GetSize = fn(&Socket) -> io::Result<usize>;

/// Says what a shard's socket buffer ended up as: a warning when the kernel capped it.
fn log_buffer_size(size: io::Result<BufferSize>) {
    match size {
        Ok(s) if s.capped() => {
            let (name, sysctl) = match s.which {
                Buffer::Receive => ("receive", "net.core.rmem_max"),
                Buffer::Send => ("send", "net.core.wmem_max"),
            };
            tracing::warn!(
                "UDP {name} buffer capped: asked {} bytes, the kernel gave {} (limit \
                 {sysctl}; SO_*BUFFORCE needs root or CAP_NET_ADMIN). Bursts beyond it are \
                 dropped by the kernel; raise {sysctl} to at least {}",
                s.requested,
                s.got,
                s.requested
            );
        }
        Ok(s) if s.forced => tracing::info!(
            "UDP {:?} buffer: {} bytes, forced past the sysctl limit",
            s.which,
            s.got
        ),
        Ok(s) => tracing::debug!("UDP {:?} buffer: {} bytes", s.which, s.got),
        Err(e) => tracing::warn!("cannot read the UDP socket buffer size: {e}"),
    }
}

fn set_int_option(socket: &Socket, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
    // SAFETY: a valid fd, and a c_int option value of the size we pass.
    let r = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Control-message space per received datagram: room for one `SO_RXQ_OVFL` counter (a u32),
/// in u64s for alignment.
const CMSG_WORDS: usize = 4;

/// Reusable buffers for batched receive. It holds the system call's headers too, so a
/// `recv` allocates nothing; their pointers are set afresh on every call.
pub struct RecvBatch {
    bufs: Vec<[u8; RECV_BUF]>,
    addrs: Vec<libc::sockaddr_storage>,
    ctrl: Vec<[u64; CMSG_WORDS]>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
    lens: Vec<usize>,
    truncated: Vec<bool>,
    count: usize,
    /// The socket's drop counter as last reported by the kernel (`SO_RXQ_OVFL`).
    kernel_drops_seen: u32,
    /// Drops reported since the last `take_kernel_drops`.
    kernel_drops_new: u64,
}

impl Default for RecvBatch {
    fn default() -> Self {
        // SAFETY: sockaddr_storage, iovec and mmsghdr are plain old data; all-zero is valid.
        let zero: libc::sockaddr_storage = unsafe { MaybeUninit::zeroed().assume_init() };
        let iov: libc::iovec = unsafe { MaybeUninit::zeroed().assume_init() };
        let msg: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
        RecvBatch {
            bufs: vec![[0; RECV_BUF]; BATCH],
            addrs: vec![zero; BATCH],
            ctrl: vec![[0; CMSG_WORDS]; BATCH],
            iovs: vec![iov; BATCH],
            msgs: vec![msg; BATCH],
            lens: vec![0; BATCH],
            truncated: vec![false; BATCH],
            count: 0,
            kernel_drops_seen: 0,
            kernel_drops_new: 0,
        }
    }
}

impl RecvBatch {
    /// Reads up to `BATCH` datagrams; `Ok(0)` when none are waiting.
    pub fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        for i in 0..BATCH {
            self.iovs[i] = libc::iovec {
                iov_base: self.bufs[i].as_mut_ptr().cast(),
                iov_len: RECV_BUF,
            };
            let h = &mut self.msgs[i].msg_hdr;
            h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.ctrl[i].as_mut_ptr().cast();
            h.msg_controllen = std::mem::size_of::<[u64; CMSG_WORDS]>() as _;
            h.msg_flags = 0;
        }
        // SAFETY: every pointer in `msgs` points into this struct's buffers, alive and not
        // otherwise borrowed during the call.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.msgs.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            self.count = 0;
            return if e.kind() == io::ErrorKind::WouldBlock {
                Ok(0)
            } else {
                Err(e)
            };
        }
        let n = n as usize;
        for i in 0..n {
            let m = &self.msgs[i];
            self.lens[i] = m.msg_len as usize;
            self.truncated[i] = m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            // SAFETY: the header describes our control buffer, as filled in by the kernel.
            if let Some(drops) = unsafe { rxq_ovfl(&m.msg_hdr) } {
                self.note_kernel_drops(drops);
            }
        }
        self.count = n;
        Ok(n)
    }

    /// The kernel's counter only grows (modulo 2^32); datagrams queued before a drop carry
    /// the older value, so anything not ahead of what we saw is old news.
    fn note_kernel_drops(&mut self, counter: u32) {
        let delta = counter.wrapping_sub(self.kernel_drops_seen);
        if delta != 0 && delta < 1 << 31 {
            self.kernel_drops_seen = counter;
            self.kernel_drops_new += u64::from(delta);
        }
    }

    /// Datagrams the kernel dropped on this socket (receive buffer full) that it reported
    /// since the last call.
    pub fn take_kernel_drops(&mut self) -> u64 {
        std::mem::take(&mut self.kernel_drops_new)
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

/// The `SO_RXQ_OVFL` drop counter among a received message's control messages.
///
/// # Safety
/// `h.msg_control`/`msg_controllen` must describe a buffer filled in by `recvmsg`.
unsafe fn rxq_ovfl(h: &libc::msghdr) -> Option<u32> {
    let mut c = libc::CMSG_FIRSTHDR(h);
    while !c.is_null() {
        let cm = &*c;
        if cm.cmsg_level == libc::SOL_SOCKET && cm.cmsg_type == libc::SO_RXQ_OVFL {
            return Some(std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u32>()));
        }
        c = libc::CMSG_NXTHDR(h, c);
    }
    None
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

/// Sends datagrams in batches, once; returns how many the kernel took. For callers without an
/// [`Outbox`] (the load generator, whose clients count what they could not send): a full
/// socket buffer ends the call and the rest is not sent. A datagram the kernel refuses
/// outright (e.g. unreachable) is skipped so one bad destination cannot stall others.
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

/// How many datagrams may wait for the socket to take them again after `sendmmsg` found its
/// buffer full; past this the oldest are dropped and counted (`send_buffer_full`). 4096
/// full-size datagrams are about 5 MB: a fraction of a second of a busy shard's output.
pub const MAX_WAITING: usize = 4096;

/// Datagrams on their way out, sent in batches with `sendmmsg`.
///
/// When the socket's send buffer is full (`EAGAIN`) the rest wait here, in order, and the
/// caller watches the socket for writability and calls `writable` then `flush` again. Only
/// when more than `MAX_WAITING` pile up are the oldest dropped. Everything is counted:
/// each stall in `send_blocked`, each datagram lost in a drop reason.
pub struct Outbox {
    queue: VecDeque<Transmit>,
    blocked: bool,
    addrs: Vec<SockAddr>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers inside `iovs` and `msgs` are scratch space, rewritten before every
// system call to point into `addrs` and `queue` (owned here) and only read during that call.
// Moving the outbox to another thread moves all of them together.
unsafe impl Send for Outbox {}

impl Default for Outbox {
    fn default() -> Self {
        // SAFETY: mmsghdr is plain old data; all-zero is a valid value.
        let msg: libc::mmsghdr = unsafe { MaybeUninit::zeroed().assume_init() };
        Outbox {
            queue: VecDeque::new(),
            blocked: false,
            addrs: Vec::with_capacity(BATCH),
            iovs: Vec::with_capacity(BATCH),
            msgs: vec![msg; BATCH],
        }
    }
}

impl Outbox {
    /// Queues one datagram; drops the oldest waiting one if the queue is over its bound.
    pub fn push(&mut self, t: Transmit, stats: &ShardStats) {
        self.queue.push_back(t);
        if self.queue.len() > MAX_WAITING {
            self.queue.pop_front();
            stats.count_drop(DropReason::SendBufferFull);
        }
    }

    /// Datagrams waiting to be sent.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// The last send found the socket buffer full; nothing more is tried until `writable`.
    pub fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// The socket may take datagrams again.
    pub fn writable(&mut self) {
        self.blocked = false;
    }

    /// Sends what waits, unless blocked.
    pub fn flush(&mut self, socket: &UdpSocket, stats: &ShardStats) {
        let fd = socket.as_raw_fd();
        self.flush_with(
            |msgs| {
                // SAFETY: `flush_with` points every header at memory alive during this call.
                let n = unsafe {
                    libc::sendmmsg(
                        fd,
                        msgs.as_mut_ptr(),
                        msgs.len() as libc::c_uint,
                        libc::MSG_DONTWAIT,
                    )
                };
                if n < 0 {
                    Err(io::Error::last_os_error())
                } else {
                    Ok(n as usize)
                }
            },
            stats,
        );
    }

    /// `flush` with the system call given (tests pass their own). `send` takes the headers of
    /// up to `BATCH` datagrams and returns how many were sent, like `sendmmsg`.
    pub fn flush_with(
        &mut self,
        mut send: impl FnMut(&mut [libc::mmsghdr]) -> io::Result<usize>,
        stats: &ShardStats,
    ) {
        while !self.blocked && !self.queue.is_empty() {
            let k = self.queue.len().min(BATCH);
            self.addrs.clear();
            self.iovs.clear();
            for t in self.queue.iter().take(k) {
                self.addrs.push(SockAddr::from(t.destination));
                self.iovs.push(libc::iovec {
                    iov_base: t.contents.as_ptr() as *mut libc::c_void,
                    iov_len: t.contents.len(),
                });
            }
            for i in 0..k {
                let h = &mut self.msgs[i].msg_hdr;
                h.msg_name = self.addrs[i].as_ptr() as *mut libc::c_void;
                h.msg_namelen = self.addrs[i].len();
                h.msg_iov = &mut self.iovs[i];
                h.msg_iovlen = 1;
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
                h.msg_flags = 0;
            }
            match send(&mut self.msgs[..k]) {
                Ok(n) if n > 0 => {
                    self.queue.drain(..n.min(k));
                }
                Ok(_) => self.block(stats),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.block(stats),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    // The kernel refused the first datagram outright (e.g. unreachable):
                    // skip it so one bad destination cannot stall the others.
                    tracing::debug!("sendmmsg: {e}");
                    self.queue.pop_front();
                    stats.count_drop(DropReason::SendFailed);
                }
            }
        }
    }

    fn block(&mut self, stats: &ShardStats) {
        self.blocked = true;
        stats.send_blocked.fetch_add(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn datagrams(n: usize) -> Vec<Transmit> {
        (0..n)
            .map(|i| Transmit {
                destination: SocketAddr::from((Ipv4Addr::LOCALHOST, 9)),
                contents: vec![i as u8; 100],
            })
            .collect()
    }

    /// What a fake `sendmmsg` was handed: the first byte of each datagram it accepted.
    fn first_bytes(msgs: &[libc::mmsghdr], n: usize) -> Vec<u8> {
        msgs[..n]
            .iter()
            // SAFETY: the outbox points each header at one live iovec of a live datagram.
            .map(|m| unsafe { *(*m.msg_hdr.msg_iov).iov_base.cast::<u8>() })
            .collect()
    }

    #[test]
    fn a_full_send_buffer_keeps_the_rest_of_the_batch_and_sends_it_when_writable() {
        let stats = ShardStats::default();
        let mut out = Outbox::default();
        for t in datagrams(40) {
            out.push(t, &stats);
        }
        let mut sent = Vec::new();
        // The kernel takes 10 datagrams, then its buffer is full.
        let mut room = 10;
        out.flush_with(
            |msgs| {
                if room == 0 {
                    return Err(io::ErrorKind::WouldBlock.into());
                }
                let n = msgs.len().min(room);
                room -= n;
                sent.extend(first_bytes(msgs, n));
                Ok(n)
            },
            &stats,
        );
        assert_eq!(sent, (0..10).collect::<Vec<u8>>());
        assert!(out.is_blocked());
        assert_eq!(out.len(), 30, "the rest of the batch waits");
        assert_eq!(stats.send_blocked.load(Relaxed), 1, "the stall is counted");
        // Still blocked: nothing is tried until the socket is writable.
        out.flush_with(|_| panic!("tried to send while blocked"), &stats);
        out.writable();
        out.flush_with(
            |msgs| {
                sent.extend(first_bytes(msgs, msgs.len()));
                Ok(msgs.len())
            },
            &stats,
        );
        assert_eq!(sent, (0..40).collect::<Vec<u8>>(), "all sent, in order");
        assert!(out.is_empty() && !out.is_blocked());
        for r in DropReason::ALL {
            assert_eq!(stats.drops(r), 0, "{r:?}: nothing lost");
        }
    }

    #[test]
    fn datagrams_waiting_past_the_bound_are_dropped_oldest_first_and_counted() {
        let stats = ShardStats::default();
        let mut out = Outbox::default();
        out.push(datagrams(1).remove(0), &stats);
        out.flush_with(|_| Err(io::ErrorKind::WouldBlock.into()), &stats);
        assert!(out.is_blocked());
        for t in datagrams(MAX_WAITING + 9) {
            out.push(t, &stats);
        }
        assert_eq!(out.len(), MAX_WAITING);
        assert_eq!(stats.drops(DropReason::SendBufferFull), 10);
        out.writable();
        let mut first = None;
        out.flush_with(
            |msgs| {
                first.get_or_insert(first_bytes(msgs, 1)[0]);
                Ok(msgs.len())
            },
            &stats,
        );
        // datagrams(..) numbers from 0: the survivors start at index 9 of the second lot.
        assert_eq!(first, Some(9));
        assert!(out.is_empty());
    }

    #[test]
    fn a_datagram_the_kernel_refuses_is_skipped_and_counted_and_the_rest_go() {
        let stats = ShardStats::default();
        let mut out = Outbox::default();
        for t in datagrams(3) {
            out.push(t, &stats);
        }
        let mut calls = 0;
        let mut sent = Vec::new();
        out.flush_with(
            |msgs| {
                calls += 1;
                if calls == 1 {
                    return Err(io::Error::from_raw_os_error(libc::ENETUNREACH));
                }
                sent.extend(first_bytes(msgs, msgs.len()));
                Ok(msgs.len())
            },
            &stats,
        );
        assert_eq!(sent, vec![1, 2]);
        assert_eq!(stats.drops(DropReason::SendFailed), 1);
        assert_eq!(stats.send_blocked.load(Relaxed), 0);
    }

    #[test]
    fn the_outbox_sends_real_datagrams_in_order() {
        let stats = ShardStats::default();
        let socket = bind(Ipv4Addr::LOCALHOST.into(), 0, 0, &[]).expect("bind");
        let peer = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        peer.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .expect("timeout");
        let to = peer.local_addr().expect("addr");
        let mut out = Outbox::default();
        for i in 0..70u8 {
            out.push(
                Transmit {
                    destination: to,
                    contents: vec![i; 50],
                },
                &stats,
            );
        }
        out.flush(&socket, &stats);
        assert!(out.is_empty());
        let mut buf = [0u8; 100];
        for i in 0..70u8 {
            let n = peer.recv(&mut buf).expect("a datagram");
            assert_eq!(&buf[..n], &[i; 50][..]);
        }
    }

    fn rmem_max() -> usize {
        std::fs::read_to_string("/proc/sys/net/core/rmem_max")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(212_992)
    }

    #[test]
    fn a_receive_buffer_request_over_rmem_max_is_read_back_as_capped() {
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
        let asked = rmem_max() * 4;
        let size = size_buffer(&socket, Buffer::Receive, asked, false).expect("size");
        assert!(size.capped(), "{size:?}");
        assert!(!size.forced);
        assert_eq!(size.got, socket.recv_buffer_size().expect("read back"));
        // Linux grants the cap, doubled for its bookkeeping.
        assert_eq!(size.got, 2 * rmem_max());
    }

    #[test]
    fn root_forces_the_receive_buffer_past_rmem_max() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: SO_RCVBUFFORCE needs root");
            return;
        }
        let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).expect("socket");
        let asked = rmem_max() * 4;
        let size = size_buffer(&socket, Buffer::Receive, asked, true).expect("size");
        assert!(size.forced && !size.capped(), "{size:?}");
        assert!(socket.recv_buffer_size().expect("read back") >= asked);
    }

    #[test]
    fn datagrams_the_kernel_drops_on_a_full_receive_buffer_are_counted() {
        let socket = bind(Ipv4Addr::LOCALHOST.into(), 0, 0, &[]).expect("bind");
        // Shrink the buffer so a few datagrams fill it.
        socket2::SockRef::from(&socket)
            .set_recv_buffer_size(4096)
            .expect("small buffer");
        let to = socket.local_addr().expect("addr");
        let sender = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
        let sent = 200;
        for _ in 0..sent {
            sender.send_to(&[0x80; 1000], to).expect("send");
        }
        let mut batch = RecvBatch::default();
        let mut received = 0;
        while let Ok(n @ 1..) = batch.recv(&socket) {
            received += n;
        }
        assert!(received < sent, "the small buffer overflowed: {received}");
        // The kernel stamps its drop counter on datagrams queued after the drops.
        sender.send_to(&[0x80; 10], to).expect("send");
        let mut drops = 0;
        for _ in 0..100 {
            if batch.recv(&socket).expect("recv") > 0 {
                drops = batch.take_kernel_drops();
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(drops, (sent - received) as u64);
        assert_eq!(batch.take_kernel_drops(), 0, "each drop is reported once");
    }
}
