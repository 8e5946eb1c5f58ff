//! Paged KV cache vocabulary (given code, not an exercise): block ids, a
//! sequence's block table, and the [`BlockAllocator`] trait through which a
//! prefix cache shares a block pool's reference counts.
//!
//! A KV block holds the keys and values of `block_size` consecutive tokens
//! of one sequence (all layers and heads); a sequence's block table maps its
//! token `t` to slot `t % block_size` of block `blocks[t / block_size]`, so
//! its KV cache needs no contiguous memory and blocks can be shared
//! (PagedAttention, Kwon et al. 2023, "Efficient Memory Management for Large
//! Language Model Serving with PagedAttention", section 4.2).

use crate::Result;
use std::fmt;

/// A KV block, `0..num_blocks` of its pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockId(pub u32);

impl BlockId {
    /// The id as an index into the pool's storage.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "block {}", self.0)
    }
}

/// One sequence's logical-to-physical map: `num_tokens` tokens in
/// `blocks`, every block full but the last (`blocks.len() ==
/// ceil(num_tokens / block_size)`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockTable {
    /// Physical blocks, in token order.
    pub blocks: Vec<BlockId>,
    /// Tokens stored.
    pub num_tokens: usize,
}

impl BlockTable {
    /// An empty table.
    pub fn new() -> BlockTable {
        BlockTable::default()
    }

    /// Where token `t` lives: `(block, slot)`, or `None` past the end.
    pub fn slot_of(&self, t: usize, block_size: usize) -> Option<(BlockId, usize)> {
        if t >= self.num_tokens || block_size == 0 {
            return None;
        }
        self.blocks
            .get(t / block_size)
            .map(|&b| (b, t % block_size))
    }
}

/// A pool of reference-counted KV blocks.
///
/// A block is free (reference count 0, on the free list) or used (count
/// `>= 1`, one per holder: a block table, a prefix cache). Always
/// `num_free() + used blocks == num_blocks()`.
pub trait BlockAllocator {
    /// Tokens per block.
    fn block_size(&self) -> usize;

    /// Blocks in the pool, free or used.
    fn num_blocks(&self) -> usize;

    /// Blocks on the free list.
    fn num_free(&self) -> usize;

    /// Takes a free block; its reference count becomes 1.
    ///
    /// Errors: `Error::OutOfBlocks` (asked 1) when none is free.
    fn allocate(&mut self) -> Result<BlockId>;

    /// One more holder of a used block (reference count + 1).
    ///
    /// Errors: `Error::Invalid` for a free block or an id outside the pool.
    fn retain(&mut self, block: BlockId) -> Result<()>;

    /// One holder less (reference count - 1); at 0 the block goes back to
    /// the free list, and the call returns `true`.
    ///
    /// Errors: `Error::Invalid` for a free block or an id outside the pool.
    fn release(&mut self, block: BlockId) -> Result<bool>;

    /// The block's reference count (0 when free or outside the pool).
    fn ref_count(&self, block: BlockId) -> usize;
}

/// A prefix cache over its own block pool, as the engine drives it (day
/// 17's `PrefixCache` and day 16's `BlockPool` behind one value; the
/// learner's crate implements it). Every table it returns and every block it
/// allocates is the caller's to release, block by block.
pub trait PrefixCaching {
    /// Tokens per block.
    fn block_size(&self) -> usize;

    /// The longest cached prefix of `prompt` in whole blocks, at most
    /// `prompt.len() - 1` tokens: a table of those blocks, each retained
    /// once for the caller.
    ///
    /// Errors: `Error::Invalid` for an empty prompt.
    fn lookup(&mut self, prompt: &[u32]) -> Result<BlockTable>;

    /// A block for the caller (count 1), evicting the least recently used
    /// unused cached block when the pool has none free.
    ///
    /// Errors: `Error::OutOfBlocks` when none is free or evictable.
    fn allocate(&mut self) -> Result<BlockId>;

    /// Caches the full blocks of `tokens`, stored in `table` (each newly
    /// cached block retained once, for the cache; a hash already cached
    /// keeps its old block). Returns how many were newly cached.
    ///
    /// Errors: `Error::Invalid` when `table` holds fewer than
    /// `tokens.len()` tokens.
    fn insert(&mut self, tokens: &[u32], table: &BlockTable) -> Result<usize>;

    /// One holder less of `block` (`true`: it went back to the pool).
    ///
    /// Errors: `Error::Invalid` for a free block or an id outside the pool.
    fn release(&mut self, block: BlockId) -> Result<bool>;

    /// The block's reference count (0: free, its keys and values may go).
    fn ref_count(&self, block: BlockId) -> usize;
}
