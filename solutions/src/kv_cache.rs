//! Day 8: two key/value caches behind `tiny_llm_common::KvCache`.
//!
//! A cache keeps, for one attention layer, the keys and values of every token
//! seen so far (`N x H_kv x S x D`, the layout attention uses after its
//! transpose), so that a decoding step computes them for the new token only.
//! Both caches here hold the same numbers; they differ in how they copy:
//!
//! - [`KvConcatCache`] concatenates the new tokens to the old ones at every
//!   step: each step copies all `S` cached tokens (`O(S^2)` copying over a
//!   generation).
//! - [`KvStepCache`] preallocates buffers of [`KvStepCache::STEP`] tokens and
//!   writes each step's tokens into them in place (a slice update); it copies
//!   the cached tokens only when the buffers fill up, once every `STEP`
//!   tokens.
//!
//! Reference: mlx-lm `models/cache.py` (`KVCache`, which grows in steps of
//! 256, and `trim`); Pope et al. 2022, "Efficiently Scaling Transformer
//! Inference", section 2.

use mlx_rs::ops::indexing::{TryIndexMutOp, TryIndexOp};
use mlx_rs::ops::{concatenate, zeros_dtype};
use mlx_rs::Array;
use tiny_llm_common::kv_cache::check_update;
pub use tiny_llm_common::KvCache;
// `Error` is named by the doc comments.
#[allow(unused_imports)]
use tiny_llm_common::Error;
use tiny_llm_common::Result;

/// A cache that concatenates along the sequence axis at every step.
///
/// `update_and_fetch` returns `concatenate([cached, new], axis 2)` and keeps
/// it; `trim(n)` keeps the first `offset - n` tokens (a slice). Simple, and
/// `O(S)` copies a step: at 1,000 cached tokens every new token copies 1,000
/// tokens' keys and values per layer.
///
/// Reference: mlx-lm `models/cache.py` (`ConcatenateKVCache`).
#[derive(Debug, Clone, Default)]
pub struct KvConcatCache {
    kv: Option<(Array, Array)>,
}

impl KvConcatCache {
    /// An empty cache (offset 0).
    pub fn new() -> Self {
        Self::default()
    }
}

impl KvCache for KvConcatCache {
    /// The cached sequence length `S` (0 when empty).
    fn offset(&self) -> usize {
        self.kv.as_ref().map_or(0, |(k, _)| k.dim(2) as usize)
    }

    /// Appends `keys` (`N x H_kv x L x D`) and `values` (`N x H_kv x L x
    /// D_v`) and returns all `S = offset + L` tokens'.
    ///
    /// Errors: as [`KvCache::update_and_fetch`] (checked with
    /// [`check_update`], given); a rejected update changes nothing.
    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        check_update(keys, values, self.kv.as_ref().map(|(k, v)| (k, v)))?;
        let (k, v) = match &self.kv {
            None => (keys.clone(), values.clone()),
            Some((ck, cv)) => (concatenate(&[ck, keys], 2)?, concatenate(&[cv, values], 2)?),
        };
        self.kv = Some((k.clone(), v.clone()));
        Ok((k, v))
    }

    /// Forgets the last `min(n, offset)` tokens and returns that number.
    fn trim(&mut self, n: usize) -> usize {
        let offset = self.offset();
        let n = n.min(offset);
        if n == 0 {
            return 0;
        }
        if n == offset {
            self.kv = None;
            return n;
        }
        let keep = (offset - n) as i32;
        let Some((k, v)) = &self.kv else {
            return 0;
        };
        // A slice within bounds (0 < keep < S) cannot fail.
        match (
            k.try_index((.., .., 0..keep, ..)),
            v.try_index((.., .., 0..keep, ..)),
        ) {
            (Ok(k), Ok(v)) => {
                self.kv = Some((k, v));
                n
            }
            _ => 0,
        }
    }

    /// The concatenated keys and values (`None` while empty).
    fn state(&self) -> Option<(Array, Array)> {
        self.kv.clone()
    }
}

/// A cache with preallocated buffers, grown in steps of
/// [`KvStepCache::STEP`] tokens.
///
/// The buffers are `N x H_kv x capacity x D` (and `x D_v`), `capacity` a
/// multiple of `STEP`; positions `0..offset` hold the cached tokens, the rest
/// is free. `update_and_fetch` writes the `L` new tokens at
/// `offset..offset + L` with a slice update (MLX reuses the buffer in place
/// when nothing else holds it) and returns the view `..offset + L`. When they
/// would not fit, the buffers are replaced by larger ones
/// (`ceil((offset + L) / STEP) * STEP` tokens) holding the first `offset`
/// tokens: one copy every `STEP` tokens instead of one every token.
/// `trim(n)` only moves the offset back; the tokens behind it are
/// overwritten by the next update.
///
/// Reference: mlx-lm `models/cache.py` (`KVCache`: `step = 256`,
/// `update_and_fetch`, `trim`).
#[derive(Debug, Clone, Default)]
pub struct KvStepCache {
    kv: Option<(Array, Array)>,
    offset: usize,
}

impl KvStepCache {
    /// Tokens added to the buffers each time they fill up.
    pub const STEP: usize = 256;

    /// An empty cache (offset 0, no buffers).
    pub fn new() -> Self {
        Self::default()
    }

    /// The tokens the buffers hold room for (a multiple of [`Self::STEP`];
    /// 0 before the first update).
    pub fn capacity(&self) -> usize {
        self.kv.as_ref().map_or(0, |(k, _)| k.dim(2) as usize)
    }
}

/// `buffer[.., .., ..keep, ..]` followed by zeros up to `capacity` tokens,
/// in a new `N x H x capacity x D` array of `like`'s dtype.
fn grown(buffer: Option<&Array>, keep: i32, like: &Array, capacity: i32) -> Result<Array> {
    let (n, h, d) = (like.dim(0), like.dim(1), like.dim(3));
    Ok(match buffer {
        Some(old) if keep > 0 => {
            let free = zeros_dtype(&[n, h, capacity - keep, d], like.dtype())?;
            concatenate(&[&old.try_index((.., .., 0..keep, ..))?, &free], 2)?
        }
        _ => zeros_dtype(&[n, h, capacity, d], like.dtype())?,
    })
}

impl KvCache for KvStepCache {
    /// The number of cached tokens (not the capacity).
    fn offset(&self) -> usize {
        self.offset
    }

    /// Writes `keys` (`N x H_kv x L x D`) and `values` at
    /// `offset..offset + L`, growing the buffers first when they are too
    /// small, and returns the first `offset + L` tokens.
    ///
    /// Errors: as [`KvCache::update_and_fetch`] (checked with
    /// [`check_update`], given); a rejected update changes nothing.
    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        let l = check_update(keys, values, self.kv.as_ref().map(|(k, v)| (k, v)))? as usize;
        let (prev, end) = (self.offset, self.offset + l);
        // Take the buffers out, so that the slice update below holds the
        // only reference to them (MLX then writes in place).
        let (mut k, mut v) = match self.kv.take() {
            Some((k, v)) if end <= k.dim(2) as usize => (k, v),
            old => {
                let capacity = (end.div_ceil(Self::STEP) * Self::STEP) as i32;
                let (ok, ov) = (old.as_ref().map(|kv| &kv.0), old.as_ref().map(|kv| &kv.1));
                let keep = prev as i32;
                match (
                    grown(ok, keep, keys, capacity),
                    grown(ov, keep, values, capacity),
                ) {
                    (Ok(k), Ok(v)) => (k, v),
                    (Err(e), _) | (_, Err(e)) => {
                        self.kv = old;
                        return Err(e);
                    }
                }
            }
        };
        let (p, e) = (prev as i32, end as i32);
        let written = k
            .try_index_mut((.., .., p..e, ..), keys)
            .and_then(|()| v.try_index_mut((.., .., p..e, ..), values));
        if let Err(err) = written {
            // Not reachable with checked shapes; keep the cache consistent.
            self.kv = None;
            self.offset = 0;
            return Err(err.into());
        }
        let fetched = (
            k.try_index((.., .., 0..e, ..))?,
            v.try_index((.., .., 0..e, ..))?,
        );
        self.kv = Some((k, v));
        self.offset = end;
        Ok(fetched)
    }

    /// Moves the offset back by `min(n, offset)` tokens and returns that
    /// number (the buffers stay allocated).
    fn trim(&mut self, n: usize) -> usize {
        let n = n.min(self.offset);
        self.offset -= n;
        n
    }

    /// The first `offset` tokens of the buffers (`None` at offset 0).
    fn state(&self) -> Option<(Array, Array)> {
        let e = self.offset as i32;
        match &self.kv {
            Some((k, v)) if e > 0 => Some((
                k.try_index((.., .., 0..e, ..)).ok()?,
                v.try_index((.., .., 0..e, ..)).ok()?,
            )),
            _ => None,
        }
    }
}
