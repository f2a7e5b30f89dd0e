//! Transport limits.

use std::time::Duration;

use crate::Error;
use crate::codec::DEFAULT_MAX_FRAME_LEN;

/// Default number of frames one connection may have waiting to be written.
///
/// At 64 B per message this is 64 KiB; it absorbs bursts (a block announced to
/// every peer at once) while a peer that has stopped reading is found out
/// quickly.
pub const DEFAULT_SEND_QUEUE_FRAMES: usize = 1024;

/// Default number of payload bytes one connection may have waiting: 32 MiB.
///
/// Two maximum-size frames fit, so one large sync response never trips the
/// limit on its own; beyond that a slow peer is disconnected rather than
/// allowed to grow our memory.
pub const DEFAULT_SEND_QUEUE_BYTES: usize = 2 * DEFAULT_MAX_FRAME_LEN;

/// Default maximum of inbound connections: 256.
///
/// The peering layer accepts up to `2 * max_peers` inbound peers; with the
/// default of 16 peers this leaves room for trackers, wallets and short-lived
/// probes, and bounds the sockets a stranger can open.
pub const DEFAULT_MAX_INBOUND: usize = 256;

/// Default maximum of inbound connections from one network group
/// ([`crate::netgroup_of`]: an IPv4 /16 or IPv6 /32): 32.
///
/// One operator usually holds many addresses of one subnet but few subnets;
/// this keeps such an operator to an eighth of [`DEFAULT_MAX_INBOUND`], so a
/// reconnect flood from one place cannot turn everyone else away. On
/// loopback each connection is its own group (a local testnet shares
/// `127.0.0.1`), so the limit does not bite there.
pub const DEFAULT_MAX_INBOUND_PER_GROUP: usize = 32;

/// Default maximum of inbound connections from one network group that have
/// not been promoted yet (handshakes in flight): 8.
///
/// An honest node opens one or two connections to a peer at a time; a
/// stranger opening many and never saying hello holds slots and handshake
/// timers for nothing.
pub const DEFAULT_MAX_STRANGERS_PER_GROUP: usize = 8;

/// Default largest frame a connection may send before the layer above
/// vouches for it ([`crate::Transport::promote`]): 64 KiB.
///
/// A handshake is tiny (toy-p2p's hello is one address; its answer at most a
/// few hundred addresses), so a stranger that has not said hello has no use
/// for more; 256 such strangers then hold at most 16 MiB, not 256 × 16 MiB.
pub const DEFAULT_MAX_UNVERIFIED_FRAME_LEN: usize = 64 * 1024;

/// Default budget of bytes buffered by all connections' readers together
/// (frames still arriving): 256 MiB, sixteen maximum-size frames. A
/// connection whose partial frame would take the total past it is closed.
pub const DEFAULT_READ_BUDGET: usize = 256 * 1024 * 1024;

/// Default connect timeout: 5 s, long enough for a loaded machine, short
/// enough that a dead bootstrap address does not stall start-up.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Default capacity of the event channel: 1024 events.
///
/// When the layer above falls behind, reader tasks wait for room, which stops
/// reading the sockets and pushes back on the senders through TCP.
pub const DEFAULT_EVENT_BUFFER: usize = 1024;

/// Limits of a transport. Build with [`Config::builder`] or take the
/// [`Default`].
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) max_frame_len: usize,
    pub(crate) max_unverified_frame_len: usize,
    pub(crate) read_budget: usize,
    pub(crate) send_queue_frames: usize,
    pub(crate) send_queue_bytes: usize,
    pub(crate) max_inbound: usize,
    pub(crate) max_inbound_per_group: usize,
    pub(crate) max_strangers_per_group: usize,
    pub(crate) connect_timeout: Duration,
    pub(crate) event_buffer: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
            max_unverified_frame_len: DEFAULT_MAX_UNVERIFIED_FRAME_LEN,
            read_budget: DEFAULT_READ_BUDGET,
            send_queue_frames: DEFAULT_SEND_QUEUE_FRAMES,
            send_queue_bytes: DEFAULT_SEND_QUEUE_BYTES,
            max_inbound: DEFAULT_MAX_INBOUND,
            max_inbound_per_group: DEFAULT_MAX_INBOUND_PER_GROUP,
            max_strangers_per_group: DEFAULT_MAX_STRANGERS_PER_GROUP,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            event_buffer: DEFAULT_EVENT_BUFFER,
        }
    }
}

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder(Self::default())
    }

    /// Largest frame payload accepted or sent, in bytes.
    pub fn max_frame_len(&self) -> usize {
        self.max_frame_len
    }

    /// Largest frame accepted from a connection not yet promoted
    /// ([`crate::Transport::promote`]).
    pub fn max_unverified_frame_len(&self) -> usize {
        self.max_unverified_frame_len.min(self.max_frame_len)
    }

    /// Bytes all connections' readers may buffer together.
    pub fn read_budget(&self) -> usize {
        self.read_budget
    }

    /// Frames a connection may have queued before the peer is dropped as slow.
    pub fn send_queue_frames(&self) -> usize {
        self.send_queue_frames
    }

    /// Payload bytes a connection may have queued before the peer is dropped.
    pub fn send_queue_bytes(&self) -> usize {
        self.send_queue_bytes
    }

    /// Inbound connections accepted at once; further ones are closed at once.
    pub fn max_inbound(&self) -> usize {
        self.max_inbound
    }

    /// Inbound connections accepted at once from one network group
    /// ([`crate::netgroup_of`]).
    pub fn max_inbound_per_group(&self) -> usize {
        self.max_inbound_per_group
    }

    /// Inbound connections from one network group that may be open at once
    /// without having been promoted ([`crate::Transport::promote`]).
    pub fn max_strangers_per_group(&self) -> usize {
        self.max_strangers_per_group
    }

    /// How long an outbound connect may take.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// Capacity of the event channel.
    pub fn event_buffer(&self) -> usize {
        self.event_buffer
    }
}

/// Builds a [`Config`]; [`ConfigBuilder::build`] checks the invariants.
#[derive(Debug, Clone)]
pub struct ConfigBuilder(Config);

impl ConfigBuilder {
    /// Sets the maximum frame length (at least 1 byte, at most `u32::MAX`).
    pub fn max_frame_len(mut self, len: usize) -> Self {
        self.0.max_frame_len = len;
        self
    }

    /// Sets the largest frame an inbound connection may send before it is
    /// promoted ([`crate::Transport::promote`]); capped at the maximum.
    pub fn max_unverified_frame_len(mut self, len: usize) -> Self {
        self.0.max_unverified_frame_len = len;
        self
    }

    /// Sets the bytes all connections' readers may buffer together.
    pub fn read_budget(mut self, bytes: usize) -> Self {
        self.0.read_budget = bytes;
        self
    }

    /// Sets how many frames may wait in one connection's send queue.
    pub fn send_queue_frames(mut self, frames: usize) -> Self {
        self.0.send_queue_frames = frames;
        self
    }

    /// Sets how many payload bytes may wait in one connection's send queue.
    pub fn send_queue_bytes(mut self, bytes: usize) -> Self {
        self.0.send_queue_bytes = bytes;
        self
    }

    /// Sets the maximum number of inbound connections.
    pub fn max_inbound(mut self, n: usize) -> Self {
        self.0.max_inbound = n;
        self
    }

    /// Sets the maximum number of inbound connections from one network group.
    pub fn max_inbound_per_group(mut self, n: usize) -> Self {
        self.0.max_inbound_per_group = n;
        self
    }

    /// Sets how many unpromoted inbound connections one network group may
    /// hold at once.
    pub fn max_strangers_per_group(mut self, n: usize) -> Self {
        self.0.max_strangers_per_group = n;
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.0.connect_timeout = timeout;
        self
    }

    /// Sets the capacity of the event channel.
    pub fn event_buffer(mut self, events: usize) -> Self {
        self.0.event_buffer = events;
        self
    }

    /// Checks the invariants and returns the config.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when a limit is zero or the frame length does
    /// not fit the 4-byte prefix.
    pub fn build(self) -> Result<Config, Error> {
        let c = self.0;
        let check = |ok: bool, field: &'static str, reason: &'static str| {
            if ok { Ok(()) } else { Err(Error::InvalidConfig { field, reason }) }
        };
        check(c.max_frame_len > 0, "max_frame_len", "must be at least 1")?;
        check(u32::try_from(c.max_frame_len).is_ok(), "max_frame_len", "must fit the 4-byte length prefix")?;
        check(c.send_queue_frames > 0, "send_queue_frames", "must be at least 1")?;
        check(c.send_queue_bytes > 0, "send_queue_bytes", "must be at least 1")?;
        check(c.event_buffer > 0, "event_buffer", "must be at least 1")?;
        check(c.max_unverified_frame_len > 0, "max_unverified_frame_len", "must be at least 1")?;
        check(c.read_budget >= c.max_frame_len, "read_budget", "must hold at least one maximum-size frame")?;
        check(c.max_inbound_per_group > 0, "max_inbound_per_group", "must be at least 1")?;
        check(c.max_strangers_per_group > 0, "max_strangers_per_group", "must be at least 1")?;
        check(!c.connect_timeout.is_zero(), "connect_timeout", "must be positive")?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_rejects_zero_limits() {
        assert!(Config::builder().max_frame_len(0).build().is_err());
        assert!(Config::builder().send_queue_frames(0).build().is_err());
        assert!(Config::builder().event_buffer(0).build().is_err());
        assert!(Config::builder().connect_timeout(Duration::ZERO).build().is_err());
        let c = Config::builder().max_frame_len(100).build().expect("valid");
        assert_eq!(c.max_frame_len(), 100);
    }
}
