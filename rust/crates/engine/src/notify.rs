//! The Rust→caller event queue: bounded, with an eventfd that becomes readable when events
//! are waiting, so an asyncio loop can watch it with `add_reader`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::event::EngineEvent;
use crate::stats::ShardStats;

#[derive(Debug)]
struct EventFd(OwnedFd);

impl EventFd {
    fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the returned fd is owned below.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor that nobody else owns.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
        unsafe {
            libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8);
        }
    }

    fn clear(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our own non-blocking eventfd.
        unsafe {
            libc::read(self.0.as_raw_fd(), (&mut v as *mut u64).cast(), 8);
        }
    }
}

/// The sending side, one clone per shard.
#[derive(Debug, Clone)]
pub struct EventSink {
    tx: Sender<EngineEvent>,
    fd: Arc<EventFd>,
}

impl EventSink {
    /// Queues a batch and wakes the reader once. Events past capacity are counted and lost.
    pub fn send_batch(&self, events: impl Iterator<Item = EngineEvent>, stats: &ShardStats) {
        let mut any = false;
        for e in events {
            match self.tx.try_send(e) {
                Ok(()) => any = true,
                Err(TrySendError::Full(_)) => {
                    stats.events_dropped.fetch_add(1, Relaxed);
                }
                Err(TrySendError::Disconnected(_)) => return,
            }
        }
        if any {
            self.fd.signal();
        }
    }
}

/// The receiving side, owned by the engine's caller.
#[derive(Debug)]
pub struct EventSource {
    rx: Receiver<EngineEvent>,
    fd: Arc<EventFd>,
}

impl EventSource {
    pub fn fd(&self) -> RawFd {
        self.fd.0.as_raw_fd()
    }

    /// Everything queued so far; clears the fd's readiness first so no wake-up is lost.
    pub fn drain(&self) -> Vec<EngineEvent> {
        self.fd.clear();
        self.rx.try_iter().collect()
    }
}

pub fn channel(capacity: usize) -> io::Result<(EventSink, EventSource)> {
    let fd = Arc::new(EventFd::new()?);
    let (tx, rx) = crossbeam_channel::bounded(capacity);
    Ok((
        EventSink {
            tx,
            fd: Arc::clone(&fd),
        },
        EventSource { rx, fd },
    ))
}
