//! The embedded-database store, on redb (pure Rust, ACID, copy-on-write).

use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};

use super::{AccountWrite, Store};
use crate::error::StoreError;
use crate::state::{Account, Undo};
use crate::types::{Address, Block, Hash, Header};

const BLOCKS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("blocks");
const HEADERS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("headers");
const CANONICAL: TableDefinition<'_, u64, &[u8]> = TableDefinition::new("canonical");
const UNDO: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("undo");
const ACCOUNTS: TableDefinition<'_, &[u8], &[u8]> = TableDefinition::new("accounts");
const TXS: TableDefinition<'_, &[u8], u64> = TableDefinition::new("txs");
const META: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("meta");
const TIP: &str = "tip";
/// Set once the transaction index covers the canonical chain (databases
/// written before the index existed are indexed on open).
const TX_INDEX_READY: &str = "tx_index_v1";

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Db(e.to_string())
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

fn hash_from(bytes: &[u8]) -> Result<Hash, StoreError> {
    <[u8; 32]>::try_from(bytes).map(Hash).map_err(|_| StoreError::Corrupt("hash of wrong length".into()))
}

fn encode_account(a: &Account) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&a.balance.to_be_bytes());
    out[8..].copy_from_slice(&a.nonce.to_be_bytes());
    out
}

fn decode_account(b: &[u8]) -> Result<Account, StoreError> {
    let arr = <[u8; 16]>::try_from(b).map_err(|_| StoreError::Corrupt("account of wrong length".into()))?;
    let mut bal = [0u8; 8];
    let mut non = [0u8; 8];
    bal.copy_from_slice(&arr[..8]);
    non.copy_from_slice(&arr[8..]);
    Ok(Account { balance: u64::from_be_bytes(bal), nonce: u64::from_be_bytes(non) })
}

/// A [`Store`] in a redb database file. Every connect and disconnect is one
/// write transaction, durable unless durability is relaxed
/// ([`Store::set_durable`], used while syncing a batch of blocks).
pub struct RedbStore {
    /// `None` only between a failed [`Store::reopen`] and the next one.
    db: Option<Database>,
    path: std::path::PathBuf,
    durable: bool,
}

impl std::fmt::Debug for RedbStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedbStore").finish_non_exhaustive()
    }
}

impl RedbStore {
    /// Opens (or creates) the database at `path`.
    ///
    /// # Errors
    /// [`StoreError::Db`] when the file cannot be opened or is not a redb
    /// database.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let db = Self::open_db(path)?;
        Ok(Self { db: Some(db), path: path.to_owned(), durable: true })
    }

    /// Opens the file and makes sure every table exists.
    fn open_db(path: &Path) -> Result<Database, StoreError> {
        let db = Database::create(path).map_err(|e| match e {
            // Say which: "in use" and "cannot write here" need different fixes.
            redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse,
            redb::DatabaseError::Storage(redb::StorageError::Io(io)) => StoreError::Io(io),
            e => db_err(e),
        })?;
        let tx = db.begin_write().map_err(db_err)?;
        {
            tx.open_table(BLOCKS).map_err(db_err)?;
            tx.open_table(HEADERS).map_err(db_err)?;
            tx.open_table(CANONICAL).map_err(db_err)?;
            tx.open_table(UNDO).map_err(db_err)?;
            tx.open_table(ACCOUNTS).map_err(db_err)?;
            tx.open_table(TXS).map_err(db_err)?;
            tx.open_table(META).map_err(db_err)?;
            Self::build_tx_index(&tx)?;
        }
        tx.commit().map_err(db_err)?;
        Ok(db)
    }

    fn db(&self) -> Result<&Database, StoreError> {
        self.db.as_ref().ok_or_else(|| StoreError::Db("closed after a failure; not reopened yet".into()))
    }

    /// A write transaction: fsynced on commit, or not while durability is
    /// relaxed (redb then keeps the last durable state on a crash).
    fn begin(&self) -> Result<redb::WriteTransaction, StoreError> {
        let mut tx = self.db()?.begin_write().map_err(db_err)?;
        if !self.durable {
            tx.set_durability(redb::Durability::None);
        }
        Ok(tx)
    }

    /// Indexes the canonical chain's transactions if this database was
    /// written before the index existed (once; a no-op afterwards).
    fn build_tx_index(tx: &redb::WriteTransaction) -> Result<(), StoreError> {
        let mut meta = tx.open_table(META).map_err(db_err)?;
        if meta.get(TX_INDEX_READY).map_err(db_err)?.is_some() {
            return Ok(());
        }
        let canonical = tx.open_table(CANONICAL).map_err(db_err)?;
        let blocks = tx.open_table(BLOCKS).map_err(db_err)?;
        let mut txs = tx.open_table(TXS).map_err(db_err)?;
        for row in canonical.iter().map_err(db_err)? {
            let (height, hash) = row.map_err(db_err)?;
            let Some(bytes) = blocks.get(hash.value()).map_err(db_err)? else {
                return Err(StoreError::Corrupt(format!("canonical block at {} missing", height.value())));
            };
            let block = Block::decode(bytes.value()).map_err(|e| corrupt("block", e))?;
            for t in &block.txs {
                txs.insert(&t.id().0[..], height.value()).map_err(db_err)?;
            }
        }
        meta.insert(TX_INDEX_READY, &[1u8][..]).map_err(db_err)?;
        Ok(())
    }

    fn write_accounts(tx: &redb::WriteTransaction, accounts: &[AccountWrite]) -> Result<(), StoreError> {
        let mut t = tx.open_table(ACCOUNTS).map_err(db_err)?;
        for (addr, acc) in accounts {
            match acc {
                Some(a) => {
                    t.insert(&addr.0[..], &encode_account(a)[..]).map_err(db_err)?;
                }
                None => {
                    t.remove(&addr.0[..]).map_err(db_err)?;
                }
            }
        }
        Ok(())
    }
}

impl Store for RedbStore {
    fn reopen(&mut self) -> Result<(), StoreError> {
        // The old handle must be gone before the file is opened again.
        self.db = None;
        self.db = Some(Self::open_db(&self.path)?);
        Ok(())
    }

    fn set_durable(&mut self, durable: bool) -> Result<(), StoreError> {
        let was = self.durable;
        self.durable = durable;
        if durable && !was {
            // An empty durable commit persists everything before it.
            self.begin()?.commit().map_err(db_err)?;
        }
        Ok(())
    }

    fn put_block(&mut self, hash: &Hash, block: &Block) -> Result<(), StoreError> {
        let tx = self.begin()?;
        {
            let mut blocks = tx.open_table(BLOCKS).map_err(db_err)?;
            if blocks.get(&hash.0[..]).map_err(db_err)?.is_none() {
                blocks.insert(&hash.0[..], &block.encode()[..]).map_err(db_err)?;
                let header = postcard::to_allocvec(&block.header).map_err(db_err)?;
                tx.open_table(HEADERS).map_err(db_err)?.insert(&hash.0[..], &header[..]).map_err(db_err)?;
            }
        }
        tx.commit().map_err(db_err)
    }

    fn delete_block(&mut self, hash: &Hash) -> Result<(), StoreError> {
        let tx = self.begin()?;
        {
            tx.open_table(BLOCKS).map_err(db_err)?.remove(&hash.0[..]).map_err(db_err)?;
            tx.open_table(HEADERS).map_err(db_err)?.remove(&hash.0[..]).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    fn block(&self, hash: &Hash) -> Result<Option<Block>, StoreError> {
        let tx = self.db()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(BLOCKS).map_err(db_err)?;
        match t.get(&hash.0[..]).map_err(db_err)? {
            Some(v) => Block::decode(v.value()).map(Some).map_err(|e| corrupt("block", e)),
            None => Ok(None),
        }
    }

    fn headers(&self) -> Result<Vec<Header>, StoreError> {
        let tx = self.db()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(HEADERS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (_, v) = row.map_err(db_err)?;
            out.push(postcard::from_bytes(v.value()).map_err(|e| corrupt("header", e))?);
        }
        Ok(out)
    }

    fn connect(
        &mut self,
        hash: &Hash,
        height: u64,
        undo: &Undo,
        accounts: &[AccountWrite],
        txs: &[Hash],
    ) -> Result<(), StoreError> {
        let tx = self.begin()?;
        {
            tx.open_table(CANONICAL).map_err(db_err)?.insert(height, &hash.0[..]).map_err(db_err)?;
            let mut index = tx.open_table(TXS).map_err(db_err)?;
            for id in txs {
                index.insert(&id.0[..], height).map_err(db_err)?;
            }
            let undo = postcard::to_allocvec(undo).map_err(db_err)?;
            tx.open_table(UNDO).map_err(db_err)?.insert(&hash.0[..], &undo[..]).map_err(db_err)?;
            Self::write_accounts(&tx, accounts)?;
            tx.open_table(META).map_err(db_err)?.insert(TIP, &hash.0[..]).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    fn disconnect(
        &mut self,
        hash: &Hash,
        height: u64,
        parent: &Hash,
        accounts: &[AccountWrite],
        txs: &[Hash],
    ) -> Result<(), StoreError> {
        let tx = self.begin()?;
        {
            tx.open_table(CANONICAL).map_err(db_err)?.remove(height).map_err(db_err)?;
            let mut index = tx.open_table(TXS).map_err(db_err)?;
            for id in txs {
                index.remove(&id.0[..]).map_err(db_err)?;
            }
            tx.open_table(UNDO).map_err(db_err)?.remove(&hash.0[..]).map_err(db_err)?;
            Self::write_accounts(&tx, accounts)?;
            tx.open_table(META).map_err(db_err)?.insert(TIP, &parent.0[..]).map_err(db_err)?;
        }
        tx.commit().map_err(db_err)
    }

    fn tip(&self) -> Result<Option<Hash>, StoreError> {
        let tx = self.db()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(META).map_err(db_err)?;
        t.get(TIP).map_err(db_err)?.map(|v| hash_from(v.value())).transpose()
    }

    fn canonical(&self, height: u64) -> Result<Option<Hash>, StoreError> {
        let tx = self.db()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(CANONICAL).map_err(db_err)?;
        t.get(height).map_err(db_err)?.map(|v| hash_from(v.value())).transpose()
    }

    fn undo(&self, hash: &Hash) -> Result<Option<Undo>, StoreError> {
        let tx = self.db()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(UNDO).map_err(db_err)?;
        match t.get(&hash.0[..]).map_err(db_err)? {
            Some(v) => postcard::from_bytes(v.value()).map(Some).map_err(|e| corrupt("undo", e)),
            None => Ok(None),
        }
    }

    fn tx_height(&self, id: &Hash) -> Result<Option<u64>, StoreError> {
        let tx = self.db()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(TXS).map_err(db_err)?;
        Ok(t.get(&id.0[..]).map_err(db_err)?.map(|v| v.value()))
    }

    fn accounts(&self) -> Result<Vec<(Address, Account)>, StoreError> {
        let tx = self.db()?.begin_read().map_err(db_err)?;
        let t = tx.open_table(ACCOUNTS).map_err(db_err)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db_err)? {
            let (k, v) = row.map_err(db_err)?;
            let addr =
                <[u8; 33]>::try_from(k.value()).map_err(|_| StoreError::Corrupt("address of wrong length".into()))?;
            out.push((Address(addr), decode_account(v.value())?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::ChainParams;
    use crate::types::{Signature, Transaction, TxKind};

    /// A database written before the transaction index existed (its
    /// blocks connected, no index, no marker) is indexed when opened.
    #[test]
    fn a_database_without_the_tx_index_is_indexed_on_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("old.redb");
        let tx = Transaction {
            kind: TxKind::Transfer,
            sender: Address([2; 33]),
            recipient: Address([3; 33]),
            amount: 5,
            fee: 1,
            nonce: 0,
            signature: Signature::EMPTY,
        };
        let genesis = ChainParams::test().genesis();
        let mut b1 = genesis.clone();
        b1.header.height = 1;
        b1.header.parent = genesis.hash();
        b1.txs = vec![tx.clone()];
        {
            let mut s = RedbStore::open(&path).expect("open");
            s.put_block(&genesis.hash(), &genesis).expect("put");
            s.connect(&genesis.hash(), 0, &Undo::default(), &[], &[]).expect("connect");
            s.put_block(&b1.hash(), &b1).expect("put");
            // As the old code did: no transaction ids given.
            s.connect(&b1.hash(), 1, &Undo::default(), &[], &[]).expect("connect");
            assert_eq!(s.tx_height(&tx.id()).expect("index"), None);
            let w = s.db().expect("open").begin_write().expect("write");
            w.open_table(META).expect("meta").remove(TX_INDEX_READY).expect("remove marker");
            w.commit().expect("commit");
        }
        let s = RedbStore::open(&path).expect("reopen");
        assert_eq!(s.tx_height(&tx.id()).expect("index"), Some(1));
    }

    #[test]
    fn reopen_keeps_what_was_committed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = RedbStore::open(&dir.path().join("chain.redb")).expect("open");
        let g = crate::ChainParams::test().genesis();
        s.put_block(&g.hash(), &g).expect("put");
        s.reopen().expect("reopen");
        assert_eq!(s.block(&g.hash()).expect("read"), Some(g.clone()));
        s.reopen().expect("again");
        assert!(s.headers().expect("headers").iter().any(|h| h.hash() == g.hash()));
    }

    #[test]
    fn a_second_open_says_the_database_is_in_use() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("chain.redb");
        let _first = RedbStore::open(&path).expect("open");
        assert!(matches!(RedbStore::open(&path), Err(StoreError::InUse)));
    }
}
