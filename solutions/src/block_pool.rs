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
        if num_blocks == 0 || block_size == 0 || num_blocks > u32::MAX as usize {
            return Err(Error::Invalid(format!(
                "BlockPool::new: {num_blocks} blocks of {block_size} tokens; expected 1 to \
                 {} blocks of at least 1 token",
                u32::MAX
            )));
        }
        Ok(BlockPool {
            block_size,
            ref_counts: vec![0; num_blocks],
            free: (0..num_blocks as u32).map(BlockId).collect(),
        })
    }

    /// Blocks with a reference count of 1 or more.
    pub fn num_used(&self) -> usize {
        self.ref_counts.len() - self.free.len()
    }

    /// Takes `n` free blocks at once, or none.
    ///
    /// Errors: [`Error::OutOfBlocks`] naming `n` and the free count when
    /// fewer than `n` are free (nothing is taken).
    pub fn allocate_n(&mut self, n: usize) -> Result<Vec<BlockId>> {
        if n > self.free.len() {
            return Err(Error::OutOfBlocks {
                asked: n,
                free: self.free.len(),
            });
        }
        (0..n).map(|_| self.allocate()).collect()
    }

    /// Appends one token to `table`: a new block when the table is empty or
    /// its last block is full; a copy of the last block when it is partly
    /// filled and shared (count > 1), which replaces it in the table (the
    /// shared block loses this holder). Returns where the token goes.
    ///
    /// Errors: [`Error::OutOfBlocks`] when a block is needed and none is
    /// free (the table and the pool are unchanged); [`Error::Invalid`] when
    /// the table's length disagrees with its blocks.
    pub fn append_token(&mut self, table: &mut BlockTable) -> Result<Slot> {
        let bs = self.block_size;
        if table.blocks.len() != table.num_tokens.div_ceil(bs) {
            return Err(Error::Invalid(format!(
                "append_token: a table of {} tokens holds {} blocks, expected {}",
                table.num_tokens,
                table.blocks.len(),
                table.num_tokens.div_ceil(bs)
            )));
        }
        let offset = table.num_tokens % bs;
        if offset == 0 {
            let block = self.allocate()?;
            table.blocks.push(block);
            table.num_tokens += 1;
            return Ok(Slot {
                block,
                offset,
                copy: None,
            });
        }
        let last = *table.blocks.last().expect("a partly filled block");
        self.check_used("append_token", last)?;
        if self.ref_count(last) == 1 {
            table.num_tokens += 1;
            return Ok(Slot {
                block: last,
                offset,
                copy: None,
            });
        }
        let dst = self.allocate()?;
        self.release(last)?;
        *table.blocks.last_mut().expect("a last block") = dst;
        table.num_tokens += 1;
        Ok(Slot {
            block: dst,
            offset,
            copy: Some(BlockCopy { src: last, dst }),
        })
    }

    /// A second table sharing every block of `table` (each count + 1), as
    /// for parallel sampling or beam search; the first write to a shared
    /// partial last block copies it ([`BlockPool::append_token`]).
    ///
    /// Errors: [`Error::Invalid`] when a block of `table` is free or outside
    /// the pool (nothing is retained).
    pub fn fork(&mut self, table: &BlockTable) -> Result<BlockTable> {
        for &b in &table.blocks {
            self.check_used("fork", b)?;
        }
        for &b in &table.blocks {
            self.retain(b)?;
        }
        Ok(table.clone())
    }

    /// Releases every block of `table` (a finished or preempted sequence)
    /// and empties it; blocks no one else holds go back to the free list.
    ///
    /// Errors: [`Error::Invalid`] when a block of `table` is free or outside
    /// the pool (nothing is released).
    pub fn free_table(&mut self, table: &mut BlockTable) -> Result<()> {
        for &b in &table.blocks {
            self.check_used("free_table", b)?;
        }
        for &b in &table.blocks {
            self.release(b)?;
        }
        table.blocks.clear();
        table.num_tokens = 0;
        Ok(())
    }

    /// The free list, next to be taken first.
    pub fn free_list(&self) -> Vec<BlockId> {
        self.free.iter().copied().collect()
    }

    fn check_used(&self, what: &str, b: BlockId) -> Result<()> {
        match self.ref_counts.get(b.index()) {
            None => Err(Error::Invalid(format!(
                "{what}: {b} is outside the pool of {} blocks",
                self.ref_counts.len()
            ))),
            Some(0) => Err(Error::Invalid(format!(
                "{what}: {b} is free, expected a block in use"
            ))),
            Some(_) => Ok(()),
        }
    }
}

impl BlockAllocator for BlockPool {
    fn block_size(&self) -> usize {
        self.block_size
    }

    fn num_blocks(&self) -> usize {
        self.ref_counts.len()
    }

    fn num_free(&self) -> usize {
        self.free.len()
    }

    fn allocate(&mut self) -> Result<BlockId> {
        let b = self
            .free
            .pop_front()
            .ok_or(Error::OutOfBlocks { asked: 1, free: 0 })?;
        self.ref_counts[b.index()] = 1;
        Ok(b)
    }

    fn retain(&mut self, block: BlockId) -> Result<()> {
        self.check_used("retain", block)?;
        self.ref_counts[block.index()] += 1;
        Ok(())
    }

    fn release(&mut self, block: BlockId) -> Result<bool> {
        self.check_used("release", block)?;
        let c = &mut self.ref_counts[block.index()];
        *c -= 1;
        if *c == 0 {
            self.free.push_back(block);
            return Ok(true);
        }
        Ok(false)
    }

    fn ref_count(&self, block: BlockId) -> usize {
        self.ref_counts
            .get(block.index())
            .map_or(0, |&c| c as usize)
    }
}
