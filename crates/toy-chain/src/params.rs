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
    /// The workshop's constants over toy's own formats (preset
    /// `workshop-constants`): reward 10 000, 7 leading zero hex digits, 10
    /// transactions per block, no retargeting. The workshop's chain itself,
    /// byte for byte, is the `toy-workshop` crate (`--preset workshop`). No allocations and no mint
    /// authority: anyone who read this source could spend or mint them. A
    /// workshop network that wants either takes them from a genesis file
    /// ([`ChainParams::from_spec`]).
    pub fn workshop_constants() -> Self {
        Self {
            name: "workshop-constants".into(),
            initial_target: leading_zeros(28),
            pow_limit: leading_zeros(28),
            block_reward: 10_000,
            max_txs_per_block: 10,
            retarget: None,
            median_window: 11,
            max_future_drift_ms: 2 * 60 * 60 * 1000,
            genesis_timestamp_ms: 1_700_000_000_000,
            allocations: Vec::new(),
            mint_authority: None,
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

    /// A preset by name: `workshop-constants`, `dev` or `test`.
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "workshop-constants" => Some(Self::workshop_constants()),
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

    /// The genesis block: height 0, no transactions, not mined. Its Merkle
    /// root field holds [`ChainParams::commitment`], so the genesis hash (the
    /// chain id) names the allocations and the rules: two networks that
    /// differ in either never share a chain id.
    pub fn genesis(&self) -> Block {
        Block {
            header: Header {
                version: 1,
                height: 0,
                parent: Hash::ZERO,
                merkle_root: self.commitment(),
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

    /// SHA-256 of the postcard encoding of the consensus parameters: the
    /// genesis state (time, allocations, mint authority) and the validity
    /// rules (targets, reward, block size, retargeting, median window). Local
    /// policy (the name, the prune depth, the clock drift tolerated) is left
    /// out: nodes that differ only there are on the same chain.
    pub fn commitment(&self) -> Hash {
        #[derive(Serialize)]
        struct Consensus<'a> {
            initial_target: &'a Hash,
            pow_limit: &'a Hash,
            block_reward: u64,
            max_txs_per_block: u64,
            retarget: &'a Option<Retarget>,
            median_window: u64,
            genesis_timestamp_ms: u64,
            allocations: &'a [(Address, u64)],
            mint_authority: &'a Option<Address>,
        }
        let rules = Consensus {
            initial_target: &self.initial_target,
            pow_limit: &self.pow_limit,
            block_reward: self.block_reward,
            max_txs_per_block: self.max_txs_per_block as u64,
            retarget: &self.retarget,
            median_window: self.median_window as u64,
            genesis_timestamp_ms: self.genesis_timestamp_ms,
            allocations: &self.allocations,
            mint_authority: &self.mint_authority,
        };
        Hash::digest(&postcard::to_allocvec(&rules).unwrap_or_default())
    }

    /// Parameters from a chain spec (a genesis file, as reth and geth take):
    /// a preset's rules with the network's own name, allocations, mint
    /// authority and genesis time.
    ///
    /// # Errors
    /// [`SpecError`] for an unknown base preset or an allocation total that
    /// overflows.
    pub fn from_spec(spec: &ChainSpec) -> Result<Self, SpecError> {
        let base = Self::preset(&spec.base).ok_or_else(|| SpecError::UnknownBase(spec.base.clone()))?;
        let mut total: u64 = 0;
        for (_, amount) in &spec.allocations {
            total = total.checked_add(*amount).ok_or(SpecError::SupplyOverflow)?;
        }
        Ok(Self {
            name: spec.name.clone(),
            allocations: spec.allocations.clone(),
            mint_authority: spec.mint_authority,
            genesis_timestamp_ms: spec.genesis_timestamp_ms.unwrap_or(base.genesis_timestamp_ms),
            ..base
        })
    }

    /// Reads a chain spec from a JSON file ([`ChainSpec`]).
    ///
    /// # Errors
    /// [`SpecError`] when the file cannot be read or parsed, or
    /// [`ChainParams::from_spec`] refuses it.
    pub fn from_genesis_file(path: &std::path::Path) -> Result<Self, SpecError> {
        let text = std::fs::read_to_string(path)?;
        let spec: ChainSpec = serde_json::from_str(&text).map_err(|e| SpecError::Parse(e.to_string()))?;
        Self::from_spec(&spec)
    }

    /// Sum of the genesis allocations.
    pub fn genesis_supply(&self) -> u128 {
        self.allocations.iter().map(|(_, v)| *v as u128).sum()
    }
}

/// A network of its own, as written in a genesis file (JSON):
///
/// ```json
/// {
///   "name": "classroom",
///   "base": "workshop-constants",
///   "genesis_timestamp_ms": 1764000000000,
///   "allocations": [["02…66 hex digits…", 1000000]],
///   "mint_authority": "03…66 hex digits…"
/// }
/// ```
///
/// `base` names the preset whose rules apply (`dev`, `test` or `workshop-constants`);
/// `mint_authority` may be `null` or left out; `genesis_timestamp_ms`
/// defaults to the preset's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainSpec {
    /// The network's name, for logs.
    pub name: String,
    /// The preset whose rules apply.
    pub base: String,
    /// The genesis block's time (default: the preset's).
    #[serde(default)]
    pub genesis_timestamp_ms: Option<u64>,
    /// Balances at genesis.
    #[serde(default)]
    pub allocations: Vec<(Address, u64)>,
    /// The only key whose mints are valid, if any.
    #[serde(default)]
    pub mint_authority: Option<Address>,
}

/// Why a chain spec was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpecError {
    /// Reading the file failed.
    #[error("genesis file: {0}")]
    Io(#[from] std::io::Error),
    /// Not a valid spec.
    #[error("genesis file: {0}")]
    Parse(String),
    /// `base` is not a preset.
    #[error("unknown base preset {0:?} (dev, test or workshop-constants)")]
    UnknownBase(String),
    /// The allocations add up to more than a u64.
    #[error("the allocations add up to more than {}", u64::MAX)]
    SupplyOverflow,
}

fn dev_allocations() -> Vec<(Address, u64)> {
    (0..DEV_WALLETS).map(|i| (ChainParams::dev_wallet(i).address(), DEV_WALLET_BALANCE)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_id_names_rules_and_allocations() {
        let dev = ChainParams::dev();
        let mut other = dev.clone();
        other.allocations.push((Address([2; 33]), 1));
        assert_ne!(dev.chain_id(), other.chain_id(), "allocations are part of the chain id");
        let local = ChainParams { name: "x".into(), prune_depth: 100, max_future_drift_ms: 1, ..dev.clone() };
        assert_eq!(dev.chain_id(), local.chain_id(), "name, prune depth and drift are local policy");
        let richer = ChainParams { block_reward: dev.block_reward + 1, ..dev.clone() };
        assert_ne!(dev.chain_id(), richer.chain_id(), "the rules are part of the chain id");
        assert_ne!(dev.chain_id(), ChainParams::test().chain_id());
    }

    #[test]
    fn the_example_genesis_file_loads() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/genesis.json");
        let p = ChainParams::from_genesis_file(&path).expect("examples/genesis.json");
        assert_eq!(p.name, "classroom");
        assert_eq!(p.allocations.len(), 2);
        assert!(p.mint_authority.is_some());
        assert_ne!(p.chain_id(), ChainParams::dev().chain_id());
    }

    #[test]
    fn workshop_has_no_public_money() {
        let w = ChainParams::workshop_constants();
        assert!(w.allocations.is_empty() && w.mint_authority.is_none());
    }

    #[test]
    fn spec_round_trip_and_errors() {
        let json = r#"{"name":"classroom","base":"workshop-constants","allocations":[["020202020202020202020202020202020202020202020202020202020202020202",5]],"mint_authority":null}"#;
        let spec: ChainSpec = serde_json::from_str(json).expect("parse");
        let p = ChainParams::from_spec(&spec).expect("spec");
        assert_eq!(p.allocations, vec![(Address([2; 33]), 5)]);
        assert_eq!(p.max_txs_per_block, ChainParams::workshop_constants().max_txs_per_block);
        assert!(matches!(
            ChainParams::from_spec(&ChainSpec { base: "nope".into(), ..spec.clone() }),
            Err(SpecError::UnknownBase(_))
        ));
        let over = ChainSpec { allocations: vec![(Address([2; 33]), u64::MAX), (Address([3; 33]), 1)], ..spec };
        assert!(matches!(ChainParams::from_spec(&over), Err(SpecError::SupplyOverflow)));
        assert!(serde_json::from_str::<ChainSpec>(r#"{"name":"a","base":"dev","extra":1}"#).is_err());
    }
}
