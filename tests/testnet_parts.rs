//! The unit tests of the testnet example's self-contained parts: the
//! user-space wire, the chaos schedule and the summary's statistics.
//!
//! They live beside the code in `examples/testnet/`; this file compiles those
//! modules into a test crate so `cargo test --workspace` runs them while the
//! example itself stays an ordinary binary (the system tests run it).

#[allow(dead_code)]
#[path = "../examples/testnet/chaos.rs"]
mod chaos;
#[allow(dead_code)]
#[path = "../examples/testnet/report.rs"]
mod report;
#[allow(dead_code)]
#[path = "../examples/testnet/wire.rs"]
mod wire;
