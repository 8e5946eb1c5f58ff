//! Day 16: a pool of KV blocks with reference counts, and block tables.
//!
//! PagedAttention (Kwon et al. 2023, "Efficient Memory Management for Large
//! Language Model Serving with PagedAttention", sections 4.2-4.4) stores a
//! sequence's KV cache in fixed-size blocks of `block_size` tokens taken
//! from one pool, found through the sequence's block table. Memory is
//! wasted only in each sequence's last, partly filled block, and sequences
//! can share blocks (a forked sequence, a cached prefix): a block counts its
//! holders, and a shared block that is about to be written is copied first
//! (copy-on-write).
//!
//! This module keeps the books (which block is free, who holds what); the
//! keys and values themselves live in arrays shaped `[num_blocks,
//! block_size, H_kv, D]` that `paged_attention_cpu` reads. No MLX.
//!
//! Units: tokens (table lengths, slots) and blocks.
//!
//! Hints: Check your work with `cargo xtask check day16`. A `Vec<u32>` of
//! counts indexed by block id and a `VecDeque<BlockId>` free list (pop the
//! front, push freed blocks at the back) are all the state. Check every
//! block id (inside the pool, in use) before changing anything, so a
//! rejected call leaves the pool as it was.

use std::collections::VecDeque;
// `Error` is named by the doc comments.
pub use tiny_llm_common::{BlockAllocator, BlockId, BlockTable};
#[allow(unused_imports)]
use tiny_llm_common::{Error, Result};

/// A block copy the caller must make before writing: the keys and values of
/// all `block_size` slots of `src` go to `dst` (copy-on-write).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockCopy {
    /// The shared block.
    pub src: BlockId,
    /// The new block that replaces it in the table.
    pub dst: BlockId,
}

/// Where an appended token's key and value go, and the copy to make first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The block that holds the token.
    pub block: BlockId,
    /// Its slot in that block, `0..block_size`.
    pub offset: usize,
    /// A copy-on-write to make before writing the slot.
    pub copy: Option<BlockCopy>,
}

/// A fixed number of KV blocks of `block_size` tokens: a free list (first
/// in, first out) and one reference count per block.
///
/// Invariants (checked by the grader after every operation): a block is on
/// the free list exactly when its count is 0, at most once; `num_free() +`
/// used blocks `== num_blocks()`; a used block's count equals its holders
/// (block tables plus other holders that called `retain`).
#[allow(dead_code)] // used once you write the methods
#[derive(Debug, Clone)]
pub struct BlockPool {
    block_size: usize,
    ref_counts: Vec<u32>,
    free: VecDeque<BlockId>,
}

impl BlockPool {
    /// A pool of `num_blocks` free blocks (`0..num_blocks`, taken in that
    /// order first) of `block_size` tokens.
    ///
    /// Errors: [`Error::Invalid`] when either is 0 or `num_blocks` passes
    /// `u32::MAX`.
    pub fn new(num_blocks: usize, block_size: usize) -> Result<BlockPool> {
        let _ = (num_blocks, block_size);
        todo!("day 16: BlockPool::new")
    }

    /// Blocks with a reference count of 1 or more.
    pub fn num_used(&self) -> usize {
        todo!("day 16: BlockPool::num_used")
    }

    /// Takes `n` free blocks at once, or none.
    ///
    /// Errors: [`Error::OutOfBlocks`] naming `n` and the free count when
    /// fewer than `n` are free (nothing is taken).
    pub fn allocate_n(&mut self, n: usize) -> Result<Vec<BlockId>> {
        let _ = n;
        todo!("day 16: BlockPool::allocate_n")
    }

    /// Appends one token to `table`: a new block when the table is empty or
    /// its last block is full; a copy of the last block when it is partly
    /// filled and shared (count > 1), which replaces it in the table (the
    /// shared block loses this holder). Returns where the token goes.
    ///
    /// Errors: [`Error::OutOfBlocks`] when a block is needed and none is
    /// free (the table and the pool are unchanged); [`Error::Invalid`] when
    /// the table's length disagrees with its blocks.
    ///
    /// Hints: the slot is `num_tokens % block_size`; slot 0 needs a new
    /// block; otherwise look at the last block's count. Allocate before you
    /// release the shared block, so an error leaves everything unchanged.
    pub fn append_token(&mut self, table: &mut BlockTable) -> Result<Slot> {
        let _ = table;
        todo!("day 16: BlockPool::append_token")
    }

    /// A second table sharing every block of `table` (each count + 1), as
    /// for parallel sampling or beam search; the first write to a shared
    /// partial last block copies it ([`BlockPool::append_token`]).
    ///
    /// Errors: [`Error::Invalid`] when a block of `table` is free or outside
    /// the pool (nothing is retained).
    pub fn fork(&mut self, table: &BlockTable) -> Result<BlockTable> {
        let _ = table;
        todo!("day 16: BlockPool::fork")
    }

    /// Releases every block of `table` (a finished or preempted sequence)
    /// and empties it; blocks no one else holds go back to the free list.
    ///
    /// Errors: [`Error::Invalid`] when a block of `table` is free or outside
    /// the pool (nothing is released).
    pub fn free_table(&mut self, table: &mut BlockTable) -> Result<()> {
        let _ = table;
        todo!("day 16: BlockPool::free_table")
    }

    /// The free list, next to be taken first.
    pub fn free_list(&self) -> Vec<BlockId> {
        todo!("day 16: BlockPool::free_list")
    }
}

impl BlockAllocator for BlockPool {
    fn block_size(&self) -> usize {
        todo!("day 16: BlockPool::block_size")
    }

    fn num_blocks(&self) -> usize {
        todo!("day 16: BlockPool::num_blocks")
    }

    fn num_free(&self) -> usize {
        todo!("day 16: BlockPool::num_free")
    }

    fn allocate(&mut self) -> Result<BlockId> {
        todo!("day 16: BlockPool::allocate")
    }

    fn retain(&mut self, block: BlockId) -> Result<()> {
        let _ = block;
        todo!("day 16: BlockPool::retain")
    }

    fn release(&mut self, block: BlockId) -> Result<bool> {
        let _ = block;
        todo!("day 16: BlockPool::release")
    }

    fn ref_count(&self, block: BlockId) -> usize {
        let _ = block;
        todo!("day 16: BlockPool::ref_count")
    }
}
