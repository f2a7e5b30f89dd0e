//! Blocks on disk, in a redb database (pure Rust, ACID): every block that
//! joined the tree, keyed by hash, as the text it travelled as. The tree,
//! the tip and the accounts are rebuilt from them on open (a workshop chain
//! is short, and the text is the only format it has).

use std::path::Path;

use redb::{Database, ReadableTable, TableDefinition};

use crate::{Block, Error, Hash};

const BLOCKS: TableDefinition<'_, &[u8], &str> = TableDefinition::new("workshop_blocks");

fn err(e: impl std::fmt::Display) -> Error {
    Error::Store(e.to_string())
}

/// The block store.
pub struct Store {
    db: Database,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the database at `path`.
    ///
    /// # Errors
    /// [`Error::Store`] when the file cannot be opened or is not a database.
    pub fn open(path: &Path) -> Result<Self, Error> {
        let db = Database::create(path).map_err(err)?;
        let tx = db.begin_write().map_err(err)?;
        tx.open_table(BLOCKS).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(Self { db })
    }

    /// Writes a block durably (the call returns once it is on disk).
    ///
    /// # Errors
    /// [`Error::Store`] when the write fails (a full disk, say).
    pub fn put(&self, hash: &Hash, block: &Block) -> Result<(), Error> {
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut t = tx.open_table(BLOCKS).map_err(err)?;
            t.insert(hash.0.as_slice(), block.encode().as_str()).map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    /// Every stored block, lowest number first (parents before children).
    /// A record that no longer decodes or hashes to its key is skipped and
    /// logged: it cannot be part of the chain.
    ///
    /// # Errors
    /// [`Error::Store`] when the database cannot be read.
    pub fn load(&self) -> Result<Vec<Block>, Error> {
        let tx = self.db.begin_read().map_err(err)?;
        let t = tx.open_table(BLOCKS).map_err(err)?;
        let mut blocks = Vec::new();
        for row in t.iter().map_err(err)? {
            let (k, v) = row.map_err(err)?;
            match Block::decode(v.value()) {
                Ok(b) if b.hash().0.as_slice() == k.value() => blocks.push(b),
                _ => {
                    tracing::warn!(key = %hex::encode(k.value()), "a stored block does not decode to its hash; skipped")
                }
            }
        }
        blocks.sort_by_key(|b| b.number);
        Ok(blocks)
    }
}
