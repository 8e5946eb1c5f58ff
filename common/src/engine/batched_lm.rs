//! What the engine runs a step on ([`EngineModel`]), and [`BatchedLm`]: the
//! adapter that serves it from a week-2 model ([`BatchLm`], day 13's
//! `forward_batch`) and day 15's batched cache ([`BatchCache`]).
//!
//! [`BatchedLm`] keeps two kinds of caches:
//!
//! - while a sequence prefills, its own per-layer caches
//!   (`BatchLm::new_cache`), fed chunk by chunk at positions
//!   `start..start + len`;
//! - once its prefill completes, at its first decode, its keys and values
//!   move into the batch as a new row (`BatchCache::add_row`), and every
//!   step decodes all rows in one `forward_batch` pass (`B x 1` ids, the
//!   rows' left padding).
//!
//! A sequence that stops leaves the batch at once (`BatchCache::filter_rows`).
//!
//! Reference: mlx-lm `generate.py` (`BatchGenerator`: prompts prefilled, then
//! merged into the decode batch with `BatchKVCache.extend`).

use crate::batch_cache::BatchCache;
use crate::kv_cache::KvCache;
use crate::scheduling::SeqId;
use crate::{Error, Result};
use mlx_rs::ops::indexing::{take_axis, TryIndexOp};
use mlx_rs::Array;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

/// What the engine needs from a model, one call per prefill chunk and one
/// per decode step. Every call runs on the engine's thread.
pub trait EngineModel {
    /// Token ids the model knows (`0..vocab`).
    fn vocab_size(&self) -> usize;

    /// The most positions one sequence may have.
    fn context_len(&self) -> usize;

    /// Feeds tokens `start..start + ids.len()` of `seq`'s token stream
    /// (`start` equals the tokens `seq` has cached) and returns the logits
    /// after the last one, `1 x vocab`. `completes`: the chunk ends the
    /// prefill, and `seq` decodes from the next step on.
    ///
    /// Errors: the model's; `Error::Invalid` when `start` is not where the
    /// sequence's cache ends.
    fn prefill(&mut self, seq: SeqId, start: usize, ids: &[u32], completes: bool) -> Result<Array>;

    /// Feeds one token per sequence (each sequence's newest token, every one
    /// with a completed prefill) and returns `rows.len() x vocab` logits in
    /// the order of `rows`. Sequences with a completed prefill that are not
    /// in `rows` (the scheduler made them wait) keep their cache unchanged.
    ///
    /// Errors: the model's; `Error::Invalid` for a sequence that is not
    /// decoding.
    fn decode(&mut self, rows: &[(SeqId, u32)]) -> Result<Array>;

    /// Forgets `seq`'s cached keys and values (it finished, was cancelled or
    /// preempted). Unknown sequences are ignored.
    fn release(&mut self, seq: SeqId) -> Result<()>;

    /// The text of one token, for [`crate::engine::Event::Token`]; `None`
    /// (the default) when the model has no tokenizer.
    fn token_text(&self, _id: u32) -> Option<String> {
        None
    }

    /// Starts `seq`'s cache from keys and values computed earlier (a
    /// prefix-cache hit): per layer `1 x H_kv x T x D`, its tokens
    /// `0..T`; its next prefill chunk starts at `T`. The default refuses
    /// (a model without it serves with the prefix cache off).
    ///
    /// Errors: `Error::Invalid` when `seq` already has cached tokens, or
    /// for arrays the cache refuses.
    fn seed_prefill(&mut self, seq: SeqId, _kv: &[(Array, Array)]) -> Result<()> {
        Err(Error::Invalid(format!(
            "{seq}: this model cannot start a sequence from cached keys and values"
        )))
    }

    /// Per layer, the keys and values of `seq`'s tokens `start..end`
    /// (`1 x H_kv x (end - start) x D`), once its prefill completed (for
    /// the prefix cache). The default refuses.
    ///
    /// Errors: `Error::Invalid` for a sequence without those tokens.
    fn cached_kv(&self, seq: SeqId, start: usize, end: usize) -> Result<Vec<(Array, Array)>> {
        let _ = (start, end);
        Err(Error::Invalid(format!(
            "{seq}: this model cannot hand out cached keys and values"
        )))
    }
}

/// A week-2 model with day 13's batched forward pass (given impls in the
/// learner's and the reference's `qwen2_week2`).
pub trait BatchLm {
    /// Empty single-sequence caches, one per layer.
    fn new_cache(&self) -> Vec<Box<dyn KvCache>>;

    /// `N x L` int32 ids at `offset..offset + L` -> `N x vocab` logits of
    /// the last position (day 8's `forward_last`).
    fn forward_last(
        &self,
        inputs: &Array,
        offset: usize,
        cache: &mut [Box<dyn KvCache>],
    ) -> Result<Array>;

    /// `B x L` left-padded ids -> `B x L x vocab` (day 13's
    /// `forward_batch`; `offset` is every cache's column count).
    fn forward_batch(
        &self,
        inputs: &Array,
        offset: usize,
        left_padding: &[i32],
        cache: &mut [Box<dyn KvCache>],
    ) -> Result<Array>;

    /// Token ids the model knows.
    fn vocab_size(&self) -> usize;

    /// The most positions one sequence may have.
    fn context_len(&self) -> usize;
}

/// Shares one layer's batch cache between the adapter (which adds and
/// drops rows) and `forward_batch` (which sees a `Box<dyn KvCache>`).
struct Shared<C>(Rc<RefCell<C>>);

impl<C: KvCache> KvCache for Shared<C> {
    fn offset(&self) -> usize {
        self.0.borrow().offset()
    }
    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        self.0.borrow_mut().update_and_fetch(keys, values)
    }
    fn trim(&mut self, n: usize) -> usize {
        self.0.borrow_mut().trim(n)
    }
    fn state(&self) -> Option<(Array, Array)> {
        self.0.borrow().state()
    }
}

/// [`EngineModel`] over a [`BatchLm`] and one [`BatchCache`] per layer (see
/// the module doc). `C::default()` must be an empty batch.
pub struct BatchedLm<M, C> {
    model: M,
    /// Sequences still prefilling: their own caches and cached tokens.
    prefilling: HashMap<SeqId, (Vec<Box<dyn KvCache>>, usize)>,
    /// Sequences whose prefill completed: they join the batch at their
    /// first decode (the step that completed them decodes without them);
    /// also rows parked while the scheduler made them wait.
    joining: HashMap<SeqId, Vec<Box<dyn KvCache>>>,
    layers: Vec<Rc<RefCell<C>>>,
    shims: Vec<Box<dyn KvCache>>,
    /// The batch's rows, in row order.
    rows: Vec<SeqId>,
}

impl<M: BatchLm, C: BatchCache + Default + 'static> BatchedLm<M, C> {
    /// An adapter with an empty batch.
    pub fn new(model: M) -> Self {
        let layers: Vec<Rc<RefCell<C>>> = (0..model.new_cache().len())
            .map(|_| Rc::new(RefCell::new(C::default())))
            .collect();
        let shims = layers
            .iter()
            .map(|l| Box::new(Shared(l.clone())) as Box<dyn KvCache>)
            .collect();
        BatchedLm {
            model,
            prefilling: HashMap::new(),
            joining: HashMap::new(),
            layers,
            shims,
            rows: Vec::new(),
        }
    }

    /// The model.
    pub fn model(&self) -> &M {
        &self.model
    }

    /// The sequences in the decode batch, in row order.
    pub fn rows(&self) -> &[SeqId] {
        &self.rows
    }

    /// The batch's column count `S` (0 when empty).
    pub fn columns(&self) -> usize {
        self.layers.first().map_or(0, |l| l.borrow().offset())
    }

    /// Takes `seq`'s row out of the batch into caches of its own, kept
    /// until its next decode.
    fn park(&mut self, seq: SeqId) -> Result<()> {
        let b = self.rows.iter().position(|&r| r == seq).expect("a row");
        let mut caches = self.model.new_cache();
        for (layer, c) in self.layers.iter().zip(caches.iter_mut()) {
            if let Some((k, v)) = layer.borrow().row(b)? {
                c.update_and_fetch(&k, &v)?;
            }
        }
        let keep: Vec<usize> = (0..self.rows.len()).filter(|&i| i != b).collect();
        for l in &self.layers {
            l.borrow_mut().filter_rows(&keep)?;
        }
        self.rows.remove(b);
        self.joining.insert(seq, caches);
        Ok(())
    }

    /// Moves `seq`'s prefilled caches into the batch as its last row.
    fn join(&mut self, seq: SeqId, caches: Vec<Box<dyn KvCache>>) -> Result<()> {
        for (i, (layer, c)) in self.layers.iter().zip(&caches).enumerate() {
            let Some((k, v)) = c.state() else {
                return Err(Error::Invalid(format!("{seq}: layer {i}'s cache is empty")));
            };
            if let Err(e) = layer.borrow_mut().add_row(&k, &v) {
                // Keep the layers consistent: drop the row from those that took it.
                let keep: Vec<usize> = (0..self.rows.len()).collect();
                for l in &self.layers[..i] {
                    l.borrow_mut().filter_rows(&keep)?;
                }
                return Err(e);
            }
        }
        self.rows.push(seq);
        Ok(())
    }
}

impl<M: BatchLm, C: BatchCache + Default + 'static> EngineModel for BatchedLm<M, C> {
    fn vocab_size(&self) -> usize {
        self.model.vocab_size()
    }

    fn context_len(&self) -> usize {
        self.model.context_len()
    }

    fn prefill(&mut self, seq: SeqId, start: usize, ids: &[u32], completes: bool) -> Result<Array> {
        if self.rows.contains(&seq) || self.joining.contains_key(&seq) {
            return Err(Error::Invalid(format!(
                "prefill: {seq} already decodes in the batch"
            )));
        }
        let model = &self.model;
        let (caches, cached) = self
            .prefilling
            .entry(seq)
            .or_insert_with(|| (model.new_cache(), 0));
        if *cached != start {
            return Err(Error::Invalid(format!(
                "prefill: {seq}'s chunk starts at token {start}, but its cache holds {cached} \
                 tokens"
            )));
        }
        let ids: Vec<i32> = ids.iter().map(|&i| i as i32).collect();
        let input = Array::from_slice(&ids, &[1, ids.len() as i32]);
        let logits = model.forward_last(&input, start, caches)?;
        logits.eval()?;
        *cached += ids.len();
        if completes {
            let (caches, _) = self.prefilling.remove(&seq).expect("just used");
            self.joining.insert(seq, caches);
        }
        Ok(logits)
    }

    fn decode(&mut self, rows: &[(SeqId, u32)]) -> Result<Array> {
        for &(seq, _) in rows {
            if let Some(caches) = self.joining.remove(&seq) {
                self.join(seq, caches)?;
            }
        }
        // Rows the scheduler did not plan a decode for (waiting for KV
        // blocks) leave the batch with their keys and values, and join it
        // again at their next decode.
        let idle: Vec<SeqId> = self
            .rows
            .iter()
            .copied()
            .filter(|r| !rows.iter().any(|(s, _)| s == r))
            .collect();
        for seq in idle {
            self.park(seq)?;
        }
        // Row b of the batch feeds the token asked for its sequence.
        let mut ids = vec![0i32; self.rows.len()];
        let mut order = Vec::with_capacity(rows.len());
        for &(seq, tok) in rows {
            let Some(b) = self.rows.iter().position(|&r| r == seq) else {
                return Err(Error::Invalid(format!(
                    "decode: {seq} is not decoding (its prefill has not completed)"
                )));
            };
            ids[b] = tok as i32;
            order.push(b as i32);
        }
        let pads = self.layers[0].borrow().left_padding();
        let offset = self.columns();
        let input = Array::from_slice(&ids, &[ids.len() as i32, 1]);
        let logits = self
            .model
            .forward_batch(&input, offset, &pads, &mut self.shims)?;
        let logits = logits.try_index((.., 0, ..))?; // B x vocab
        if order.iter().enumerate().all(|(i, &b)| i as i32 == b) {
            return Ok(logits);
        }
        let order = Array::from_slice(&order, &[order.len() as i32]);
        Ok(take_axis(&logits, &order, 0)?)
    }

    fn seed_prefill(&mut self, seq: SeqId, kv: &[(Array, Array)]) -> Result<()> {
        if self.prefilling.contains_key(&seq)
            || self.joining.contains_key(&seq)
            || self.rows.contains(&seq)
        {
            return Err(Error::Invalid(format!(
                "seed_prefill: {seq} already has cached tokens"
            )));
        }
        let mut caches = self.model.new_cache();
        if kv.len() != caches.len() {
            return Err(Error::Invalid(format!(
                "seed_prefill: {} layers of keys and values, the model has {}",
                kv.len(),
                caches.len()
            )));
        }
        let mut tokens = 0;
        for (c, (k, v)) in caches.iter_mut().zip(kv) {
            c.update_and_fetch(k, v)?;
            tokens = c.offset();
        }
        self.prefilling.insert(seq, (caches, tokens));
        Ok(())
    }

    fn cached_kv(&self, seq: SeqId, start: usize, end: usize) -> Result<Vec<(Array, Array)>> {
        let caches = self
            .joining
            .get(&seq)
            .or_else(|| self.prefilling.get(&seq).map(|(c, _)| c))
            .ok_or_else(|| {
                Error::Invalid(format!(
                    "cached_kv: {seq} has no cache of its own (not prefilling nor joining)"
                ))
            })?;
        caches
            .iter()
            .map(|c| {
                let (k, v) = c
                    .state()
                    .filter(|_| start < end && end <= c.offset())
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "cached_kv: {seq}'s tokens {start}..{end}, its cache holds {}",
                            c.offset()
                        ))
                    })?;
                let (s, e) = (start as i32, end as i32);
                Ok((
                    k.try_index((.., .., s..e, ..))?,
                    v.try_index((.., .., s..e, ..))?,
                ))
            })
            .collect()
    }

    fn release(&mut self, seq: SeqId) -> Result<()> {
        self.prefilling.remove(&seq);
        self.joining.remove(&seq);
        if let Some(b) = self.rows.iter().position(|&r| r == seq) {
            let keep: Vec<usize> = (0..self.rows.len()).filter(|&i| i != b).collect();
            for l in &self.layers {
                l.borrow_mut().filter_rows(&keep)?;
            }
            self.rows.remove(b);
        }
        Ok(())
    }
}
