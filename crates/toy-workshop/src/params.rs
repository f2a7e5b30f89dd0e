//! The workshop chain's constants.

/// The rules a workshop chain runs by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Leading zero hex digits a block hash needs (the workshop: 7).
    pub difficulty: u8,
    /// Coins credited to a block's coinbase after its transactions (10 000).
    pub reward: u64,
    /// Most transactions in a block (10).
    pub max_txs: usize,
}

impl Params {
    /// The workshop's own: difficulty 7, reward 10 000, 10 transactions.
    pub const WORKSHOP: Self = Self { difficulty: 7, reward: 10_000, max_txs: 10 };

    /// The workshop's rules at another difficulty (tests and classrooms
    /// short of time use 3 to 5).
    pub const fn with_difficulty(difficulty: u8) -> Self {
        Self { difficulty, ..Self::WORKSHOP }
    }
}

impl Default for Params {
    fn default() -> Self {
        Self::WORKSHOP
    }
}
