//! Day 15: a batched key/value cache that sequences join and leave between
//! steps (continuous batching).
//!
//! Day 13's `forward_batch` runs a left-padded batch with one shared cache
//! offset: every row's newest token sits in the last column. A serving
//! engine's batch changes every few steps: a sequence whose prefill just
//! completed joins it, a finished one leaves it at once. [`BatchKvCache`]
//! keeps that layout true through both:
//!
//! - joining (`add_row`): the shorter side is left-padded with zero columns
//!   (the new row, or every old row), so the right edges stay aligned;
//! - leaving (`filter_rows`): the other rows keep their values; columns that
//!   are now padding in every row are dropped, so the batch does not keep
//!   paying for a long sequence that has gone.
//!
//! Shapes: keys `B x H_kv x S x D`, values `B x H_kv x S x D_v`; row `b`
//! has `pad[b]` padding columns then `S - pad[b]` real tokens.
//!
//! Reference: mlx-lm `models/cache.py` (`BatchKVCache.extend`, `filter`);
//! Yu et al. 2022, "Orca" (iteration-level scheduling).

use mlx_rs::ops::indexing::{take_axis, TryIndexOp};
use mlx_rs::ops::{concatenate, zeros_dtype};
use mlx_rs::Array;
pub use tiny_llm_common::batch_cache::BatchCache;
use tiny_llm_common::kv_cache::check_update;
pub use tiny_llm_common::KvCache;
use tiny_llm_common::{shape_error, Error, Result};

/// A per-layer cache of `B` left-padded rows (see the module doc).
///
/// Appends by concatenation along the columns (as day 8's
/// `KvConcatCache`); `left_padding` records each row's padding.
#[derive(Debug, Clone, Default)]
pub struct BatchKvCache {
    /// `B x H_kv x S x D` keys and `B x H_kv x S x D_v` values, `None`
    /// while the cache holds no column.
    kv: Option<(Array, Array)>,
    /// Padding columns per row (`B` entries).
    pad: Vec<i32>,
}

impl BatchKvCache {
    /// An empty cache: no rows, offset 0.
    pub fn new() -> Self {
        Self::default()
    }
}

/// `n` zero columns in front of `a` (`N x H x S x D`), along axis 2.
fn pad_left(a: &Array, n: i32) -> Result<Array> {
    if n == 0 {
        return Ok(a.clone());
    }
    let zeros = zeros_dtype(&[a.dim(0), a.dim(1), n, a.dim(3)], a.dtype())?;
    Ok(concatenate(&[&zeros, a], 2)?)
}

impl KvCache for BatchKvCache {
    /// The shared column count `S` (padding included).
    fn offset(&self) -> usize {
        self.kv.as_ref().map_or(0, |(k, _)| k.dim(2) as usize)
    }

    /// Appends `L` columns to every row (`keys` `B x H_kv x L x D`) and
    /// returns all `S + L`. On an empty cache the batch becomes `N` rows
    /// with no padding.
    ///
    /// Errors: as [`KvCache::update_and_fetch`], and [`Error::Shape`] when
    /// `N` differs from the rows (`B`) the cache holds.
    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        check_update(keys, values, self.kv.as_ref().map(|(k, v)| (k, v)))?;
        let (k, v) = match &self.kv {
            None => {
                self.pad = vec![0; keys.dim(0) as usize];
                (keys.clone(), values.clone())
            }
            Some((ck, cv)) => (concatenate(&[ck, keys], 2)?, concatenate(&[cv, values], 2)?),
        };
        self.kv = Some((k.clone(), v.clone()));
        Ok((k, v))
    }

    /// Forgets the last `min(n, S)` columns of every row; padding counts
    /// are capped at the new `S`. Returns the columns forgotten.
    fn trim(&mut self, n: usize) -> usize {
        let s = self.offset();
        let n = n.min(s);
        if n == 0 {
            return 0;
        }
        if n == s {
            self.kv = None;
            self.pad.iter_mut().for_each(|p| *p = 0);
            return n;
        }
        let keep = (s - n) as i32;
        let Some((k, v)) = &self.kv else {
            return 0;
        };
        match (
            k.try_index((.., .., 0..keep, ..)),
            v.try_index((.., .., 0..keep, ..)),
        ) {
            (Ok(k), Ok(v)) => {
                self.kv = Some((k, v));
                self.pad.iter_mut().for_each(|p| *p = (*p).min(keep));
                n
            }
            _ => 0,
        }
    }

    /// Every row's columns, padding included (`None` while empty).
    fn state(&self) -> Option<(Array, Array)> {
        self.kv.clone()
    }
}

impl BatchCache for BatchKvCache {
    fn row(&self, b: usize) -> Result<Option<(Array, Array)>> {
        if b >= self.pad.len() {
            return Err(Error::Invalid(format!(
                "BatchKvCache::row: row {b} of a batch of {} rows",
                self.pad.len()
            )));
        }
        let Some((k, v)) = &self.kv else {
            return Ok(None);
        };
        let (start, end) = (self.pad[b], k.dim(2));
        if start == end {
            return Ok(None);
        }
        let r = b as i32;
        Ok(Some((
            k.try_index((r..r + 1, .., start..end, ..))?,
            v.try_index((r..r + 1, .., start..end, ..))?,
        )))
    }

    fn rows(&self) -> usize {
        self.pad.len()
    }

    fn left_padding(&self) -> Vec<i32> {
        self.pad.clone()
    }

    fn add_row(&mut self, keys: &Array, values: &Array) -> Result<()> {
        let t = check_update(keys, values, None)?;
        if keys.dim(0) != 1 {
            return Err(shape_error("keys", keys, "[1, H_kv, T, D] (one row)"));
        }
        if let Some((ck, cv)) = &self.kv {
            // The cached rows' heads, widths and dtypes (any N, any S).
            check_update(
                keys,
                values,
                Some((&ck.try_index(0..1)?, &cv.try_index(0..1)?)),
            )?;
        }
        if t == 0 {
            return Err(Error::Invalid(
                "BatchKvCache::add_row: the row holds 0 tokens, expected T >= 1".into(),
            ));
        }
        let Some((ck, cv)) = &self.kv else {
            // No columns: the row becomes the batch (rows without tokens,
            // if any, are all padding).
            let old = self.pad.len() as i32;
            let (k, v) = if old == 0 {
                (keys.clone(), values.clone())
            } else {
                let zk = zeros_dtype(&[old, keys.dim(1), t, keys.dim(3)], keys.dtype())?;
                let zv = zeros_dtype(&[old, values.dim(1), t, values.dim(3)], values.dtype())?;
                (
                    concatenate(&[&zk, keys], 0)?,
                    concatenate(&[&zv, values], 0)?,
                )
            };
            self.pad.iter_mut().for_each(|p| *p = t);
            self.pad.push(0);
            self.kv = Some((k, v));
            return Ok(());
        };
        let s = ck.dim(2);
        let grow = (t - s).max(0);
        let (ok, ov) = (pad_left(ck, grow)?, pad_left(cv, grow)?);
        let (nk, nv) = (
            pad_left(keys, (s - t).max(0))?,
            pad_left(values, (s - t).max(0))?,
        );
        let k = concatenate(&[&ok, &nk], 0)?;
        let v = concatenate(&[&ov, &nv], 0)?;
        self.kv = Some((k, v));
        self.pad.iter_mut().for_each(|p| *p += grow);
        self.pad.push((s - t).max(0));
        Ok(())
    }

    fn filter_rows(&mut self, keep: &[usize]) -> Result<()> {
        let b = self.pad.len();
        for (i, &r) in keep.iter().enumerate() {
            if r >= b || (i > 0 && r <= keep[i - 1]) {
                return Err(Error::Invalid(format!(
                    "BatchKvCache::filter_rows: keep[{i}] = {r}, expected strictly increasing \
                     row indices below the batch's {b} rows (keep = {keep:?})"
                )));
            }
        }
        if keep.is_empty() {
            *self = Self::default();
            return Ok(());
        }
        let pad: Vec<i32> = keep.iter().map(|&r| self.pad[r]).collect();
        let Some((k, v)) = &self.kv else {
            self.pad = vec![0; keep.len()];
            return Ok(());
        };
        let idx: Vec<i32> = keep.iter().map(|&r| r as i32).collect();
        let idx = Array::from_slice(&idx, &[idx.len() as i32]);
        let (mut k, mut v) = (take_axis(k, &idx, 0)?, take_axis(v, &idx, 0)?);
        // Columns that are padding in every kept row.
        let drop = pad.iter().copied().min().unwrap_or(0);
        let s = k.dim(2);
        if drop == s {
            self.kv = None;
            self.pad = vec![0; keep.len()];
            return Ok(());
        }
        if drop > 0 {
            k = k.try_index((.., .., drop..s, ..))?;
            v = v.try_index((.., .., drop..s, ..))?;
        }
        self.kv = Some((k, v));
        self.pad = pad.into_iter().map(|p| p - drop).collect();
        Ok(())
    }
}
