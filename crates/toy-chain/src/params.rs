//! Chain parameters and their presets.

use serde::{Deserialize, Serialize};

use crate::crypto::Keypair;
use crate::target::leading_zeros;
use crate::types::{Address, Block, Hash, Header};

/// Retargeting: every `interval` blocks the target is scaled by the time the
/// last `interval` blocks took over the time they should have taken, clamped
/// to a factor of 4 either way.
///
/// Safe from timewarp: the span is measured from the last block of the
/// previous window to the last block of this one (exactly `interval` block
/// intervals, compared with `interval × target_block_ms`; Bitcoin measures
/// one interval short), and the first block of a window may not be stamped
/// more than `max_timewarp_ms` before its parent (BIP 94, which Bitcoin's
/// testnet4 enforces). Together they keep a majority miner from making
/// windows look longer than they were: every window's span starts where the
/// previous window's ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retarget {
    /// Blocks between adjustments.
    pub interval: u64,
    /// The block interval aimed at, in milliseconds.
    pub target_block_ms: u64,
    /// How far before its parent the first block of a window may be stamped
    /// (BIP 94 allows 600 s, one block interval; so do the presets).
    pub max_timewarp_ms: u64,
}

/// Everything that defines a chain: its genesis and its rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainParams {
    /// Preset name, for logs.
    pub name: String,
    /// The target of the first blocks (and always, without retargeting).
    pub initial_target: Hash,
    /// The easiest target retargeting may reach.
    pub pow_limit: Hash,
    /// Newly created units a block's miner may claim, besides the fees.
    pub block_reward: u64,
    /// Most transactions in one block.
    pub max_txs_per_block: usize,
    /// Optional difficulty adjustment.
    pub retarget: Option<Retarget>,
    /// Blocks whose median timestamp a new block must exceed.
    pub median_window: usize,
    /// How far in the future a timestamp may be, in milliseconds.
    pub max_future_drift_ms: u64,
    /// The genesis block's timestamp.
    pub genesis_timestamp_ms: u64,
    /// Balances at genesis.
    pub allocations: Vec<(Address, u64)>,
    /// The only key whose mint transactions are valid, if any.
    pub mint_authority: Option<Address>,
    /// A side branch this many blocks behind the tip is dropped.
    pub prune_depth: u64,
}

/// Balance of each dev-preset genesis wallet.
pub const DEV_WALLET_BALANCE: u64 = 1_000_000_000;

/// Number of dev-preset genesis wallets.
pub const DEV_WALLETS: usize = 16;

impl ChainParams {
    /// The workshop's constants: reward 10 000, 7 leading zero hex digits,
    /// 10 transactions per block, no retargeting.
    pub fn workshop() -> Self {
        Self {
            name: "workshop".into(),
            initial_target: leading_zeros(28),
            pow_limit: leading_zeros(28),
            block_reward: 10_000,
            max_txs_per_block: 10,
            retarget: None,
            median_window: 11,
            max_future_drift_ms: 2 * 60 * 60 * 1000,
            genesis_timestamp_ms: 1_700_000_000_000,
            allocations: dev_allocations(),
            mint_authority: Some(Self::dev_mint_key().address()),
            prune_depth: 6,
        }
    }

    /// For local runs: low difficulty retargeting toward one block every 2 s,
    /// 1 000 transactions per block, and the genesis wallets of
    /// [`ChainParams::dev_wallet`].
    pub fn dev() -> Self {
        Self {
            name: "dev".into(),
            initial_target: leading_zeros(16),
            pow_limit: leading_zeros(8),
            block_reward: 10_000,
            max_txs_per_block: 1_000,
            retarget: Some(Retarget { interval: 10, target_block_ms: 2_000, max_timewarp_ms: 2_000 }),
            median_window: 11,
            max_future_drift_ms: 2 * 60 * 1000,
            genesis_timestamp_ms: 1_700_000_000_000,
            allocations: dev_allocations(),
            mint_authority: Some(Self::dev_mint_key().address()),
            prune_depth: 6,
        }
    }

    /// For tests: trivial difficulty (8 zero bits), no retargeting.
    pub fn test() -> Self {
        Self {
            name: "test".into(),
            initial_target: leading_zeros(8),
            pow_limit: leading_zeros(8),
            retarget: None,
            max_txs_per_block: 100,
            ..Self::dev()
        }
    }

    /// A preset by name: `workshop`, `dev` or `test`.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "workshop" => Some(Self::workshop()),
            "dev" => Some(Self::dev()),
            "test" => Some(Self::test()),
            _ => None,
        }
    }

    /// The deterministic key of dev genesis wallet `i` (funded with
    /// [`DEV_WALLET_BALANCE`] for `i < DEV_WALLETS`).
    pub fn dev_wallet(i: usize) -> Keypair {
        Keypair::from_seed(format!("toy-dev-wallet-{i}").as_bytes())
    }

    /// The deterministic mint authority of the presets.
    pub fn dev_mint_key() -> Keypair {
        Keypair::from_seed(b"toy-dev-mint-authority")
    }

    /// The genesis block: height 0, no transactions, not mined.
    pub fn genesis(&self) -> Block {
        Block {
            header: Header {
                version: 1,
                height: 0,
                parent: Hash::ZERO,
                merkle_root: Hash::ZERO,
                timestamp_ms: self.genesis_timestamp_ms,
                target: self.initial_target,
                miner: Address([0; 33]),
                reward: 0,
                nonce: 0,
            },
            txs: Vec::new(),
        }
    }

    /// The genesis hash, which names the chain.
    pub fn genesis_hash(&self) -> Hash {
        self.genesis().hash()
    }

    /// The chain id every transaction signature is bound to
    /// ([`crate::Transaction::sighash`]): the genesis hash, so two networks
    /// with different genesis blocks never accept each other's transactions.
    pub fn chain_id(&self) -> Hash {
        self.genesis_hash()
    }

    /// Sum of the genesis allocations.
    pub fn genesis_supply(&self) -> u128 {
        self.allocations.iter().map(|(_, v)| *v as u128).sum()
    }
}

fn dev_allocations() -> Vec<(Address, u64)> {
    (0..DEV_WALLETS).map(|i| (ChainParams::dev_wallet(i).address(), DEV_WALLET_BALANCE)).collect()
}
