//! The engine's prefix cache: day 17's block index ([`PrefixCaching`])
//! plus the keys and values of every block it caches, kept here as MLX
//! arrays (one `1 x H_kv x block_size x D` pair per layer and block).
//!
//! A request's prompt is looked up when its prefill first runs (the
//! scheduler admitted it: blocks cached while it waited count); the blocks found are
//! held (retained) by the request until it ends, so they are never evicted
//! under it. When its prefill first runs, its cache starts from those
//! blocks' keys and values ([`EngineModel::seed_prefill`]) and only the
//! tokens after them go through the model. When its prefill completes, the
//! prompt's other full blocks get a block each from the pool (evicting
//! least recently used unused blocks) and their keys and values are copied
//! out of its cache ([`EngineModel::cached_kv`]) and cached for later
//! requests (vLLM's automatic prefix caching; Kwon et al. 2023, section
//! 4.4). The running batch keeps its own dense cache: a cached block's keys
//! and values are stored once here, beside it.
//!
//! Units: tokens and blocks.

use super::EngineModel;
use crate::paged::{BlockId, BlockTable, PrefixCaching};
use crate::scheduling::SeqId;
use crate::{Error, Result};
use mlx_rs::ops::concatenate;
use mlx_rs::ops::indexing::TryIndexOp;
use mlx_rs::Array;
use std::collections::HashMap;

/// Per layer, the keys and values of some tokens: `1 x H_kv x T x D`.
pub type LayerKv = Vec<(Array, Array)>;

/// Counters of the prefix cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct PrefixCounts {
    /// Full blocks of the prompts looked up (at most `prompt - 1` tokens).
    pub lookup_blocks: u64,
    /// Blocks found.
    pub hit_blocks: u64,
}

/// Day 17's index and the cached blocks' keys and values.
pub(super) struct PrefixStore {
    index: Box<dyn PrefixCaching>,
    kv: HashMap<BlockId, LayerKv>,
    pub counts: PrefixCounts,
}

impl PrefixStore {
    pub fn new(index: Box<dyn PrefixCaching>) -> PrefixStore {
        PrefixStore {
            index,
            kv: HashMap::new(),
            counts: PrefixCounts::default(),
        }
    }

    /// Tokens per block.
    pub fn block_size(&self) -> usize {
        self.index.block_size()
    }

    /// The cached blocks of `prompt`'s longest cached prefix, held for
    /// the caller. A block whose keys and values this store does not have
    /// (cannot happen unless the index is wrong) ends the table there.
    pub fn lookup(&mut self, prompt: &[u32]) -> Result<BlockTable> {
        let bs = self.block_size().max(1);
        let mut table = self.index.lookup(prompt)?;
        self.counts.lookup_blocks += ((prompt.len().saturating_sub(1)) / bs) as u64;
        if let Some(bad) = table.blocks.iter().position(|b| !self.kv.contains_key(b)) {
            for &b in &table.blocks[bad..] {
                self.index.release(b)?;
            }
            table.blocks.truncate(bad);
            table.num_tokens = bad * bs;
        }
        self.counts.hit_blocks += table.blocks.len() as u64;
        Ok(table)
    }

    /// The keys and values of the first `blocks` blocks of `table`, per
    /// layer, concatenated along the tokens (`1 x H_kv x blocks * bs x D`).
    pub fn gather(&self, table: &BlockTable, blocks: usize) -> Result<LayerKv> {
        let parts: Vec<&LayerKv> = table.blocks[..blocks]
            .iter()
            .map(|b| {
                self.kv
                    .get(b)
                    .ok_or_else(|| Error::Invalid(format!("prefix cache: no keys for {b}")))
            })
            .collect::<Result<_>>()?;
        let layers = parts.first().map_or(0, |p| p.len());
        (0..layers)
            .map(|l| {
                let ks: Vec<&Array> = parts.iter().map(|p| &p[l].0).collect();
                let vs: Vec<&Array> = parts.iter().map(|p| &p[l].1).collect();
                Ok((concatenate(&ks, 2)?, concatenate(&vs, 2)?))
            })
            .collect()
    }

    /// Caches the full blocks of `prompt` after `held`'s (the blocks
    /// `seq` holds): a block each from the pool, their keys and values
    /// copied from the model's cache of `seq`, then the index's insert.
    /// `held` grows by the blocks allocated (the sequence holds them too,
    /// until [`PrefixStore::release`]). Stops quietly when the pool has no
    /// block left to give.
    pub fn insert<M: EngineModel>(
        &mut self,
        model: &M,
        seq: SeqId,
        prompt: &[u32],
        held: &mut BlockTable,
    ) -> Result<()> {
        let bs = self.block_size().max(1);
        let full = prompt.len() / bs;
        if held.blocks.len() >= full {
            return Ok(());
        }
        let start = held.blocks.len() * bs;
        let kv = model.cached_kv(seq, start, full * bs)?;
        for i in held.blocks.len()..full {
            let b = match self.index.allocate() {
                Ok(b) => b,
                Err(Error::OutOfBlocks { .. }) => break,
                Err(e) => return Err(e),
            };
            let (s, e) = ((i * bs - start) as i32, ((i + 1) * bs - start) as i32);
            let block: LayerKv = kv
                .iter()
                .map(|(k, v)| {
                    // Copies, so that a cached block does not keep the
                    // whole sequence's buffers alive.
                    let k = k.try_index((.., .., s..e, ..))?.contiguous()?;
                    let v = v.try_index((.., .., s..e, ..))?.contiguous()?;
                    Ok((k, v))
                })
                .collect::<Result<_>>()?;
            let arrays: Vec<&Array> = block.iter().flat_map(|(k, v)| [k, v]).collect();
            mlx_rs::transforms::eval(arrays)?;
            self.kv.insert(b, block);
            held.blocks.push(b);
            held.num_tokens = (i + 1) * bs;
        }
        // Blocks evicted by the allocations above lose their keys and
        // values (a block evicted and handed out again was overwritten).
        self.sweep();
        self.index.insert(&prompt[..held.num_tokens], held)?;
        Ok(())
    }

    /// `seq` ended: it holds its blocks no more. Blocks nobody holds lose
    /// their keys and values.
    pub fn release(&mut self, held: &BlockTable) -> Result<()> {
        for &b in &held.blocks {
            self.index.release(b)?;
        }
        self.sweep();
        Ok(())
    }

    /// Drops the keys and values of blocks back in the pool (evicted, or
    /// never cached because another request cached the same tokens first).
    fn sweep(&mut self) {
        let index = &self.index;
        self.kv.retain(|&b, _| index.ref_count(b) > 0);
    }

    /// Blocks whose keys and values are stored.
    pub fn stored_blocks(&self) -> usize {
        self.kv.len()
    }
}
