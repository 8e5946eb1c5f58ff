//! Day 17: prefix caching, full KV blocks shared across requests.
//!
//! Requests often start alike (a system prompt, earlier chat turns). A full
//! block's keys and values depend only on its tokens and every token before
//! it, so a block is named by a chain hash: the hash of its `block_size`
//! tokens and of the previous block's hash. Two prompts with the same first
//! `n` full blocks have the same first `n` hashes, and the second one reuses
//! the first one's blocks instead of computing them (vLLM's automatic prefix
//! caching; the block sharing of Kwon et al. 2023, section 4.4). Only full
//! blocks are cached, and a lookup always leaves at least one prompt token to
//! compute, for the logits.
//!
//! The cache holds one reference on each cached block, through the pool's
//! own counts ([`BlockAllocator`]): a cached block with count 1 is held by
//! the cache alone (unused, evictable); with more, some sequence uses it and
//! it is never evicted. When the pool runs out, unused cached blocks are
//! evicted least recently used first, and within one chain its last block
//! first (as vLLM frees a request's blocks in reverse order).
//!
//! The hash is 64-bit FNV-1a (the `fnv` crate) over little-endian bytes: the
//! previous hash's 8 bytes (none for the first block), then each token id's
//! 4 bytes. It is stable across runs, processes and machines, unlike std's
//! `RandomState` SipHash, whose keys are random per process; fast on short
//! inputs; not collision-resistant against an adversary (a 64-bit hash, 2^32
//! blocks before a collision is likely), which a single-tenant cache accepts.
//!
//! Units: tokens and blocks.
//!
//! Hints: Check your work with `cargo xtask check day17`. A `HashMap` from
//! chain hash to (block, last used) is the whole cache; a counter that
//! grows on every touch gives the LRU order. Whether a cached block is in
//! use is the pool's count: 1 means the cache alone holds it.

// used once you write chain_hash
#[allow(unused_imports)]
use fnv::FnvHasher;
use std::collections::HashMap;
#[allow(unused_imports)]
use std::hash::Hasher;
// `Error` is named by the doc comments.
pub use tiny_llm_common::{BlockAllocator, BlockId, BlockTable, PrefixCaching};
#[allow(unused_imports)]
use tiny_llm_common::{Error, Result};

/// The chain hash of one full block: 64-bit FNV-1a over `prev`'s 8
/// little-endian bytes (skipped when `None`, the first block) followed by
/// each of `tokens`' 4 little-endian bytes.
///
/// Hints: `fnv::FnvHasher::default()`, `Hasher::write(&x.to_le_bytes())`,
/// `finish()`.
pub fn chain_hash(prev: Option<u64>, tokens: &[u32]) -> u64 {
    let _ = (prev, tokens);
    todo!("day 17: chain_hash")
}

/// The chain hashes of the full blocks of `tokens` (`tokens.len() /
/// block_size` of them; a partial last block has none).
pub fn block_hashes(tokens: &[u32], block_size: usize) -> Vec<u64> {
    let _ = (tokens, block_size);
    todo!("day 17: block_hashes")
}

/// Lookups and their hits since the cache was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Calls to [`PrefixCache::lookup`].
    pub lookups: usize,
    /// Blocks found (summed over lookups).
    pub hit_blocks: usize,
    /// Tokens in the blocks found.
    pub hit_tokens: usize,
    /// Blocks evicted.
    pub evicted: usize,
}

#[allow(dead_code)] // used once you write the methods
#[derive(Debug, Clone)]
struct Entry {
    block: BlockId,
    last_used: u64,
}

/// Full KV blocks by chain hash, with least-recently-used eviction of the
/// blocks no sequence uses.
#[allow(dead_code)] // used once you write the methods
#[derive(Debug, Clone, Default)]
pub struct PrefixCache {
    entries: HashMap<u64, Entry>,
    clock: u64,
    stats: CacheStats,
}

impl PrefixCache {
    /// An empty cache.
    pub fn new() -> PrefixCache {
        todo!("day 17: PrefixCache::new")
    }

    /// Blocks cached.
    pub fn len(&self) -> usize {
        todo!("day 17: PrefixCache::len")
    }

    /// No block cached.
    pub fn is_empty(&self) -> bool {
        todo!("day 17: PrefixCache::is_empty")
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        todo!("day 17: PrefixCache::stats")
    }

    /// The cached block for chain hash `hash`, if any.
    pub fn get(&self, hash: u64) -> Option<BlockId> {
        let _ = hash;
        todo!("day 17: PrefixCache::get")
    }

    /// The cached blocks no sequence uses (count 1 in `pool`), least
    /// recently used first: the order of eviction.
    pub fn evictable(&self, pool: &dyn BlockAllocator) -> Vec<BlockId> {
        let _ = pool;
        todo!("day 17: PrefixCache::evictable")
    }

    /// The longest cached prefix of `prompt` in whole blocks, covering at
    /// most `prompt.len() - 1` tokens (one is always left to compute): a
    /// block table of those blocks, each retained once more for the caller
    /// (who frees the table as any other), and marked used now.
    ///
    /// Errors: [`Error::Invalid`] for an empty prompt; the pool's errors.
    ///
    /// Hints: `block_hashes(&prompt[..prompt.len() - 1], block_size)`,
    /// stop at the first hash not cached; `pool.retain` each block found.
    pub fn lookup(&mut self, pool: &mut dyn BlockAllocator, prompt: &[u32]) -> Result<BlockTable> {
        let _ = (pool, prompt);
        todo!("day 17: PrefixCache::lookup")
    }

    /// Caches the full blocks of a sequence whose first `tokens.len()`
    /// tokens are stored in `table` (a block already cached under the same
    /// hash is kept, not the new one). Each newly cached block is retained
    /// once, for the cache. Returns how many blocks were newly cached.
    ///
    /// Errors: [`Error::Invalid`] when `table` holds fewer than
    /// `tokens.len()` tokens; the pool's errors.
    pub fn insert(
        &mut self,
        pool: &mut dyn BlockAllocator,
        tokens: &[u32],
        table: &BlockTable,
    ) -> Result<usize> {
        let _ = (pool, tokens, table);
        todo!("day 17: PrefixCache::insert")
    }

    /// Frees up to `n` unused cached blocks, least recently used first
    /// (their cache entries go, the pool takes them back). Blocks that a
    /// sequence uses are never evicted. Returns how many were evicted.
    ///
    /// Errors: the pool's errors.
    pub fn evict(&mut self, pool: &mut dyn BlockAllocator, n: usize) -> Result<usize> {
        let _ = (pool, n);
        todo!("day 17: PrefixCache::evict")
    }

    /// A free block from `pool`, evicting the least recently used unused
    /// cached block when none is free.
    ///
    /// Errors: [`Error::OutOfBlocks`] when no block is free and none can be
    /// evicted.
    pub fn allocate(&mut self, pool: &mut dyn BlockAllocator) -> Result<BlockId> {
        let _ = pool;
        todo!("day 17: PrefixCache::allocate")
    }
}

/// Day 17's cache over its own day-16 pool, as the week-3 engine drives it
/// (`tiny_llm_common::engine::spawn_with_prefix_cache`; given code: every
/// method forwards to [`PrefixCache`] or [`crate::block_pool::BlockPool`]).
#[derive(Debug, Clone)]
pub struct PooledPrefixCache {
    /// The pool the cached blocks come from; its size bounds them.
    pub pool: crate::block_pool::BlockPool,
    /// The index.
    pub cache: PrefixCache,
}

impl PooledPrefixCache {
    /// An empty cache over a pool of `num_blocks` blocks of `block_size`
    /// tokens (given).
    ///
    /// Errors: [`crate::block_pool::BlockPool::new`]'s.
    pub fn new(num_blocks: usize, block_size: usize) -> Result<PooledPrefixCache> {
        Ok(PooledPrefixCache {
            pool: crate::block_pool::BlockPool::new(num_blocks, block_size)?,
            cache: PrefixCache::new(),
        })
    }
}

impl PrefixCaching for PooledPrefixCache {
    fn block_size(&self) -> usize {
        self.pool.block_size()
    }
    fn lookup(&mut self, prompt: &[u32]) -> Result<BlockTable> {
        self.cache.lookup(&mut self.pool, prompt)
    }
    fn allocate(&mut self) -> Result<BlockId> {
        self.cache.allocate(&mut self.pool)
    }
    fn insert(&mut self, tokens: &[u32], table: &BlockTable) -> Result<usize> {
        self.cache.insert(&mut self.pool, tokens, table)
    }
    fn release(&mut self, block: BlockId) -> Result<bool> {
        self.pool.release(block)
    }
    fn ref_count(&self, block: BlockId) -> usize {
        self.pool.ref_count(block)
    }
}
