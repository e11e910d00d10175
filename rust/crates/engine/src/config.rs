//! Engine configuration, validated once at start.

use std::net::IpAddr;
use std::time::Duration;

use crate::error::{Error, Result};

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Number of shard threads, each with its own UDP socket.
    pub shards: usize,
    /// Address the UDP sockets bind to.
    pub bind_ip: IpAddr,
    /// Address announced in ICE candidates; `None` announces `bind_ip`.
    pub announce_ip: Option<IpAddr>,
    /// UDP port range for the shard sockets; `0..=0` lets the OS pick.
    pub port_min: u16,
    pub port_max: u16,
    /// Datagrams longer than this are dropped unread.
    pub max_datagram: usize,
    /// Capacity of the Rust→Python event queue; events past it are counted and dropped.
    pub event_queue_capacity: usize,
    /// A peer that has not connected (ICE + DTLS) by then fails.
    pub connect_timeout: Duration,
    /// Minimum spacing of keyframe requests forwarded to one publisher track.
    pub keyframe_request_interval: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            shards: std::thread::available_parallelism().map_or(1, |n| n.get()),
            bind_ip: IpAddr::from([127, 0, 0, 1]),
            announce_ip: None,
            port_min: 0,
            port_max: 0,
            max_datagram: 1500,
            event_queue_capacity: 65536,
            connect_timeout: Duration::from_secs(30),
            keyframe_request_interval: Duration::from_millis(500),
        }
    }
}

impl EngineConfig {
    pub fn validate(&self) -> Result<()> {
        if self.shards == 0 || self.shards > 256 {
            return Err(Error::Config(format!(
                "shards must be between 1 and 256, got {}",
                self.shards
            )));
        }
        if self.port_min > self.port_max {
            return Err(Error::Config(format!(
                "port_min ({}) is above port_max ({})",
                self.port_min, self.port_max
            )));
        }
        if self.port_min != 0 {
            let available = usize::from(self.port_max - self.port_min) + 1;
            if available < self.shards {
                return Err(Error::Config(format!(
                    "port range {}-{} has {} ports for {} shards",
                    self.port_min, self.port_max, available, self.shards
                )));
            }
        }
        if let Some(ip) = self.announce_ip {
            if ip.is_unspecified() {
                return Err(Error::Config("announce_ip must not be unspecified".into()));
            }
        }
        if self.bind_ip.is_unspecified() && self.announce_ip.is_none() {
            return Err(Error::Config(
                "bind_ip is unspecified (0.0.0.0/::): set announce_ip to the address clients reach"
                    .into(),
            ));
        }
        if !(576..=9000).contains(&self.max_datagram) {
            return Err(Error::Config(format!(
                "max_datagram must be between 576 and 9000, got {}",
                self.max_datagram
            )));
        }
        if self.event_queue_capacity == 0 {
            return Err(Error::Config(
                "event_queue_capacity must be positive".into(),
            ));
        }
        Ok(())
    }

    pub fn announced_ip(&self) -> IpAddr {
        self.announce_ip.unwrap_or(self.bind_ip)
    }
}
