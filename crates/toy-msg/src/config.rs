//! Messaging limits.

use std::time::Duration;

use crate::Error;

/// Default response timeout: 10 s, the workshop's.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Default limit of requests awaiting a response per connection: 1024.
///
/// Enough for a sync pipelining many block requests to one peer; a caller
/// going past it gets [`Error::TooManyPending`] instead of growing the table.
pub const DEFAULT_MAX_PENDING_PER_CONN: usize = 1024;

/// Default limit of handler invocations running at once: 1024.
///
/// Messages arriving while all are busy are dropped with a warning (a request
/// then times out at its sender). Dropping instead of waiting keeps the
/// dispatcher free to deliver responses, which a handler that itself sends a
/// request may be waiting for. Each running invocation holds its message's
/// payload, so this also bounds that memory.
pub const DEFAULT_MAX_CONCURRENT_HANDLERS: usize = 1024;

/// Default share of the handler slots one connection may hold at once: 256,
/// a quarter of [`DEFAULT_MAX_CONCURRENT_HANDLERS`].
///
/// Only handlers that have to wait hold a slot (most finish at their first
/// poll). Past the share, that connection's waiting messages are dropped,
/// not anyone else's: a peer flooding requests only slows itself, and the
/// hello of a new peer or the blocks of another still find a free slot. A
/// quarter leaves room for an honest relay's burst of transactions, each of
/// which waits for its signature check.
pub const DEFAULT_MAX_HANDLERS_PER_CONN: usize = 256;

/// Default handler slots kept for priority kinds
/// ([`ConfigBuilder::priority_kind`]): 128 of the 1 024.
///
/// The per-connection share stops one flooder, not four: four connections
/// at their share fill the pool. The last slots are kept for the messages a
/// node cannot do without (a handshake, a block), so a flood of
/// transactions from several connections never starves those. A connection
/// whose priority handlers hold an eighth of the reserve (16) gets no more
/// of it, so a few connections flooding priority kinds cannot take it all
/// either.
pub const DEFAULT_RESERVED_HANDLERS: usize = 128;

/// Kinds that may use the reserved handler slots by default: the peering
/// layer's (`p2p:` and its handshake). The node adds the chain's block
/// kinds when it builds the stack.
pub const DEFAULT_PRIORITY_KINDS: &[&str] = &["p2p:"];

/// Default capacity of the event channel to the layer above.
pub const DEFAULT_EVENT_BUFFER: usize = 1024;

/// Limits of the messaging layer. Build with [`Config::builder`].
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) request_timeout: Duration,
    pub(crate) max_pending_per_conn: usize,
    pub(crate) max_concurrent_handlers: usize,
    pub(crate) max_handlers_per_conn: usize,
    pub(crate) reserved_handlers: usize,
    pub(crate) priority_kinds: Vec<String>,
    pub(crate) event_buffer: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_pending_per_conn: DEFAULT_MAX_PENDING_PER_CONN,
            max_concurrent_handlers: DEFAULT_MAX_CONCURRENT_HANDLERS,
            max_handlers_per_conn: DEFAULT_MAX_HANDLERS_PER_CONN,
            reserved_handlers: DEFAULT_RESERVED_HANDLERS,
            priority_kinds: DEFAULT_PRIORITY_KINDS.iter().map(|k| (*k).to_owned()).collect(),
            event_buffer: DEFAULT_EVENT_BUFFER,
        }
    }
}

impl Config {
    /// A builder starting from the defaults.
    pub fn builder() -> ConfigBuilder {
        ConfigBuilder(Self::default())
    }

    /// Timeout of [`crate::Messenger::request`].
    pub fn request_timeout(&self) -> Duration {
        self.request_timeout
    }

    /// Handler invocations one connection may have running at once.
    pub fn max_handlers_per_conn(&self) -> usize {
        self.max_handlers_per_conn
    }

    /// Requests that may await a response on one connection.
    pub fn max_pending_per_conn(&self) -> usize {
        self.max_pending_per_conn
    }

    /// Handler invocations that may run at once.
    pub fn max_concurrent_handlers(&self) -> usize {
        self.max_concurrent_handlers
    }

    /// Handler slots only priority kinds may use.
    pub fn reserved_handlers(&self) -> usize {
        self.reserved_handlers
    }

    /// Whether `kind` may use the reserved slots (it starts with one of the
    /// priority prefixes).
    pub fn is_priority(&self, kind: &str) -> bool {
        self.priority_kinds.iter().any(|p| kind.starts_with(p.as_str()))
    }
}

/// Builds a [`Config`]; [`ConfigBuilder::build`] checks the invariants.
#[derive(Debug, Clone)]
pub struct ConfigBuilder(Config);

impl ConfigBuilder {
    /// Sets the default response timeout.
    pub fn request_timeout(mut self, t: Duration) -> Self {
        self.0.request_timeout = t;
        self
    }

    /// Sets the limit of pending requests per connection.
    pub fn max_pending_per_conn(mut self, n: usize) -> Self {
        self.0.max_pending_per_conn = n;
        self
    }

    /// Sets the limit of concurrently running handlers.
    pub fn max_concurrent_handlers(mut self, n: usize) -> Self {
        self.0.max_concurrent_handlers = n;
        self
    }

    /// Sets how many handler invocations one connection may have running.
    pub fn max_handlers_per_conn(mut self, n: usize) -> Self {
        self.0.max_handlers_per_conn = n;
        self
    }

    /// Sets how many handler slots are kept for priority kinds (less than
    /// the maximum).
    pub fn reserved_handlers(mut self, n: usize) -> Self {
        self.0.reserved_handlers = n;
        self
    }

    /// Adds a priority kind prefix: messages whose kind starts with it may
    /// use the reserved handler slots.
    pub fn priority_kind(mut self, prefix: impl Into<String>) -> Self {
        self.0.priority_kinds.push(prefix.into());
        self
    }

    /// Sets the capacity of the event channel.
    pub fn event_buffer(mut self, n: usize) -> Self {
        self.0.event_buffer = n;
        self
    }

    /// Checks the invariants and returns the config.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] when a limit is zero.
    pub fn build(self) -> Result<Config, Error> {
        let c = self.0;
        let check = |ok: bool, field: &'static str| {
            if ok { Ok(()) } else { Err(Error::InvalidConfig { field, reason: "must be positive" }) }
        };
        check(!c.request_timeout.is_zero(), "request_timeout")?;
        check(c.max_pending_per_conn > 0, "max_pending_per_conn")?;
        check(c.max_concurrent_handlers > 0, "max_concurrent_handlers")?;
        check(c.max_handlers_per_conn > 0, "max_handlers_per_conn")?;
        check(c.event_buffer > 0, "event_buffer")?;
        if c.reserved_handlers >= c.max_concurrent_handlers {
            return Err(Error::InvalidConfig {
                field: "reserved_handlers",
                reason: "must be below max_concurrent_handlers",
            });
        }
        Ok(c)
    }
}
