//! The store conformance suite, run against both stores.

use toy_chain::{MemoryStore, RedbStore};

toy_chain::store_conformance_suite!(memory, MemoryStore::new());

fn redb() -> RedbStore {
    // The directory is leaked for the test's lifetime; the OS cleans /tmp.
    let dir = tempfile::tempdir().expect("tempdir").keep();
    RedbStore::open(&dir.join("chain.redb")).expect("open redb")
}

toy_chain::store_conformance_suite!(redb_store, super::redb());
