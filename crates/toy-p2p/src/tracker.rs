//! The tracker (course seed): a small service where nodes join, learn the
//! current members and prove liveness with pings; members silent for a while
//! are dropped. Runs on toy-msg; toy-p2p uses it as a discovery source.
//!
//! | kind | request | response |
//! | --- | --- | --- |
//! | `tracker:join` | the member's `host:port` | other members, comma-separated |
//! | `tracker:ping` | the member's `host:port` | `0x01` known, `0x00` unknown (join again) |
//! | `tracker:leave` | the member's `host:port` | `0x01` |

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use toy_msg::{Messenger, handler_fn};

use crate::{is_valid_addr, join_addrs};

/// Default time after which a silent member is dropped: 30 s (members ping
/// every 10 s).
pub const DEFAULT_MEMBER_TIMEOUT: Duration = Duration::from_secs(30);

/// Default maximum of members: 10 000; joins beyond it are answered with the
/// member list but not recorded.
pub const DEFAULT_MAX_MEMBERS: usize = 10_000;

/// Members returned by one join: at most 200.
pub const MAX_MEMBERS_RETURNED: usize = 200;

/// Tracker settings.
#[derive(Debug, Clone)]
pub struct TrackerConfig {
    /// Silence after which a member is dropped.
    pub member_timeout: Duration,
    /// Most members recorded.
    pub max_members: usize,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self { member_timeout: DEFAULT_MEMBER_TIMEOUT, max_members: DEFAULT_MAX_MEMBERS }
    }
}

/// The tracker's member table.
///
/// Bounded by `max_members`; members silent past `member_timeout` are removed
/// by [`Tracker::sweep`].
#[derive(Debug)]
pub struct Tracker {
    members: Mutex<HashMap<String, Instant>>,
    config: TrackerConfig,
}

impl Tracker {
    /// Registers the tracker's handlers on `msg` and returns the table.
    /// Call [`Tracker::sweep`] periodically (the `tracker` example does).
    ///
    /// # Errors
    /// When a `tracker:*` kind already has a handler.
    pub fn install<M: Messenger>(msg: &M, config: TrackerConfig) -> Result<Arc<Self>, toy_msg::Error> {
        let t = Arc::new(Self { members: Mutex::new(HashMap::new()), config });
        let tj = t.clone();
        msg.register_handler(
            "tracker:join",
            handler_fn(move |_, payload| {
                let t = tj.clone();
                async move { Some(t.join(&payload)) }
            }),
        )?;
        let tp = t.clone();
        msg.register_handler(
            "tracker:ping",
            handler_fn(move |_, payload| {
                let t = tp.clone();
                async move { Some(Bytes::from_static(if t.ping(&payload) { &[1] } else { &[0] })) }
            }),
        )?;
        let tl = t.clone();
        msg.register_handler(
            "tracker:leave",
            handler_fn(move |_, payload| {
                let t = tl.clone();
                async move {
                    t.leave(&payload);
                    Some(Bytes::from_static(&[1]))
                }
            }),
        )?;
        Ok(t)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn join(&self, payload: &[u8]) -> Bytes {
        let Some(addr) = std::str::from_utf8(payload).ok().filter(|a| is_valid_addr(a)) else {
            return Bytes::new();
        };
        let mut members = self.lock();
        let others: Vec<String> = members.keys().filter(|m| *m != addr).take(MAX_MEMBERS_RETURNED).cloned().collect();
        if members.len() < self.config.max_members || members.contains_key(addr) {
            members.insert(addr.to_owned(), Instant::now());
        }
        Bytes::from(join_addrs(others.iter().map(String::as_str)))
    }

    fn ping(&self, payload: &[u8]) -> bool {
        let Ok(addr) = std::str::from_utf8(payload) else { return false };
        match self.lock().get_mut(addr) {
            Some(seen) => {
                *seen = Instant::now();
                true
            }
            None => false,
        }
    }

    fn leave(&self, payload: &[u8]) {
        if let Ok(addr) = std::str::from_utf8(payload) {
            self.lock().remove(addr);
        }
    }

    /// Drops members silent for longer than the timeout; returns how many.
    pub fn sweep(&self) -> usize {
        let timeout = self.config.member_timeout;
        let mut members = self.lock();
        let before = members.len();
        members.retain(|_, seen| seen.elapsed() <= timeout);
        before - members.len()
    }

    /// Current members.
    pub fn members(&self) -> Vec<String> {
        let mut v: Vec<String> = self.lock().keys().cloned().collect();
        v.sort();
        v
    }
}
