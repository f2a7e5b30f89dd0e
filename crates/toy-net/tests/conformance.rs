//! The transport conformance suite, run against both implementations.

use toy_net::conformance::{MemoryHarness, TcpHarness};

toy_net::conformance_suite!(tcp, TcpHarness);
toy_net::conformance_suite!(memory, MemoryHarness::default());
