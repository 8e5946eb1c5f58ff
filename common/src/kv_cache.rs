//! The key/value cache seam for week 2 (given code): what a cache-aware
//! attention layer needs from a cache, and the checks every cache makes on
//! what it is given. The caches themselves are day 8's exercise
//! (`kv_cache::{KvConcatCache, KvStepCache}`).
//!
//! With a cache, a forward pass feeds only the `L` new tokens, at positions
//! `offset..offset + L` (RoPE's offset is the cache's [`KvCache::offset`]).
//! Each layer appends its new keys and values and attends over all
//! `S = offset + L` of them, with day 3's `causal_mask(L, S)` (the `L`
//! queries are the last `L` of the `S` positions).
//!
//! Reference: mlx-lm `models/cache.py` (`KVCache.update_and_fetch`,
//! `trim`); Pope et al. 2022, "Efficiently Scaling Transformer Inference".

use crate::{shape_error, Error, Result};
use mlx_rs::Array;

/// The key/value cache of one attention layer.
///
/// Shapes: keys and values are `N x H_kv x L x D` (batch, kv heads, new
/// tokens, head width; values may have their own width `D_v`), the layout
/// attention uses after its transpose.
pub trait KvCache {
    /// Tokens cached so far: the position of the next token.
    fn offset(&self) -> usize;

    /// Appends `L` new tokens' keys and values and returns all of them.
    ///
    /// - `keys`: `N x H_kv x L x D`; `values`: `N x H_kv x L x D_v`, in the
    ///   dtype of what is cached.
    /// - returns: `(keys, values)`, `N x H_kv x S x D` and
    ///   `N x H_kv x S x D_v`, with `S = offset() + L` (the new tokens last).
    ///
    /// Errors: [`Error::Shape`] when the arrays are not 4-D, disagree with
    /// each other on `N`, `H_kv` or `L`, or with the cache on `N`, `H_kv` or
    /// the head widths; [`Error::Invalid`] when their dtypes differ from the
    /// cached ones ([`check_update`] makes these checks). A rejected update
    /// leaves the cache as it was.
    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)>;

    /// Forgets the last `n` tokens (rewinds the cache, e.g. to reuse a
    /// shared prefix or undo a rejected speculative draft); returns how many
    /// were forgotten (at most `offset()`).
    fn trim(&mut self, n: usize) -> usize;

    /// What the cache holds: `(keys, values)`, `N x H_kv x offset() x D`
    /// and `N x H_kv x offset() x D_v` (the valid tokens only, not a
    /// preallocated buffer's spare room), or `None` while it is empty. Day
    /// 14's prompt cache saves these; a fresh cache given them through
    /// [`KvCache::update_and_fetch`] holds the same tokens again.
    fn state(&self) -> Option<(Array, Array)>;
}

/// Checks a cache update (given code): `keys` and `values` against each
/// other, and against what the cache holds (`cached`: the cached keys and
/// values, any sequence length, when there are any). Returns `L`, the number
/// of new tokens.
///
/// - `keys`: `N x H_kv x L x D`; `values`: `N x H_kv x L x D_v`.
/// - `cached`: `(N x H_kv x S x D, N x H_kv x S x D_v)` or `None`.
///
/// Errors: [`Error::Shape`] naming `keys` or `values` when an array is not
/// 4-D, when they disagree on `N`, `H_kv` or `L`, or with the cached arrays
/// on `N`, `H_kv` or a head width; [`Error::Invalid`] when their dtypes
/// differ from the cached ones.
pub fn check_update(keys: &Array, values: &Array, cached: Option<(&Array, &Array)>) -> Result<i32> {
    if keys.ndim() != 4 {
        return Err(shape_error("keys", keys, "[N, H_kv, L, D]"));
    }
    let (n, h, l) = (keys.dim(0), keys.dim(1), keys.dim(2));
    if values.ndim() != 4 || values.dim(0) != n || values.dim(1) != h || values.dim(2) != l {
        return Err(shape_error(
            "values",
            values,
            &format!("[{n}, {h}, {l}, D_v] (N, H_kv, L of keys)"),
        ));
    }
    let Some((ck, cv)) = cached else {
        return Ok(l);
    };
    let fits = |new: &Array, old: &Array| {
        old.ndim() == 4
            && new.dim(0) == old.dim(0)
            && new.dim(1) == old.dim(1)
            && new.dim(3) == old.dim(3)
    };
    for (name, new, old) in [("keys", keys, ck), ("values", values, cv)] {
        if !fits(new, old) {
            let want = match old.shape() {
                [n, h, _, d] => format!("[{n}, {h}, L, {d}] (the cached {name})"),
                other => format!("4-D (the cached {name} are {other:?})"),
            };
            return Err(shape_error(name, new, &want));
        }
    }
    if keys.dtype() != ck.dtype() || values.dtype() != cv.dtype() {
        return Err(Error::Invalid(format!(
            "the kv cache holds keys {:?} and values {:?}, got keys {:?} and values {:?}",
            ck.dtype(),
            cv.dtype(),
            keys.dtype(),
            values.dtype()
        )));
    }
    Ok(l)
}

/// The simplest [`KvCache`], for common's own tests (the learner writes
/// day 8's): concatenates along the sequence axis at every step.
#[cfg(test)]
#[derive(Debug, Clone, Default)]
pub(crate) struct ConcatKvCache {
    kv: Option<(Array, Array)>,
}

#[cfg(test)]
impl ConcatKvCache {
    /// An empty cache (offset 0).
    pub(crate) fn new() -> ConcatKvCache {
        ConcatKvCache::default()
    }
}

#[cfg(test)]
impl KvCache for ConcatKvCache {
    fn offset(&self) -> usize {
        self.kv.as_ref().map_or(0, |(k, _)| k.dim(2) as usize)
    }

    fn update_and_fetch(&mut self, keys: &Array, values: &Array) -> Result<(Array, Array)> {
        check_update(keys, values, self.kv.as_ref().map(|(k, v)| (k, v)))?;
        let (k, v) = match &self.kv {
            None => (keys.clone(), values.clone()),
            Some((ck, cv)) => (
                mlx_rs::ops::concatenate(&[ck, keys], 2)?,
                mlx_rs::ops::concatenate(&[cv, values], 2)?,
            ),
        };
        self.kv = Some((k.clone(), v.clone()));
        Ok((k, v))
    }

    fn state(&self) -> Option<(Array, Array)> {
        self.kv.clone()
    }

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
        if let Some((k, v)) = &self.kv {
            // Slicing cannot fail on these bounds (0 < keep < S).
            use mlx_rs::ops::indexing::TryIndexOp;
            match (
                k.try_index((.., .., 0..keep, ..)),
                v.try_index((.., .., 0..keep, ..)),
            ) {
                (Ok(k), Ok(v)) => self.kv = Some((k, v)),
                _ => return 0,
            }
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `N x H x L x D` f32 filled with `start, start + 1, ...`.
    fn seq(shape: &[i32], start: f32) -> Array {
        let count: i32 = shape.iter().product();
        let data: Vec<f32> = (0..count).map(|i| start + i as f32).collect();
        Array::from_slice(&data, shape)
    }

    fn values(a: &Array) -> Vec<f32> {
        a.as_slice::<f32>().to_vec()
    }

    #[test]
    fn appends_along_the_sequence_axis() {
        let mut c = ConcatKvCache::new();
        assert_eq!(c.offset(), 0);
        // N = 1, H = 1, D = 2: token t's key is [2t, 2t + 1].
        let (k, v) = c
            .update_and_fetch(&seq(&[1, 1, 3, 2], 0.0), &seq(&[1, 1, 3, 2], 100.0))
            .unwrap();
        assert_eq!(k.shape(), &[1, 1, 3, 2]);
        assert_eq!(c.offset(), 3);
        let (k, v2) = c
            .update_and_fetch(&seq(&[1, 1, 1, 2], 6.0), &seq(&[1, 1, 1, 2], 106.0))
            .unwrap();
        assert_eq!(c.offset(), 4);
        assert_eq!(k.shape(), &[1, 1, 4, 2]);
        assert_eq!(values(&k), (0..8).map(|i| i as f32).collect::<Vec<_>>());
        assert_eq!(values(&v2)[..6], values(&v)[..]);
        assert_eq!(values(&v2)[6..], [106.0, 107.0]);
    }

    #[test]
    fn trim_rewinds_and_is_bounded() {
        let mut c = ConcatKvCache::new();
        c.update_and_fetch(&seq(&[1, 2, 5, 2], 0.0), &seq(&[1, 2, 5, 2], 0.0))
            .unwrap();
        assert_eq!(c.trim(2), 2);
        assert_eq!(c.offset(), 3);
        // the next token lands at position 3
        let (k, _) = c
            .update_and_fetch(&seq(&[1, 2, 1, 2], -1.0), &seq(&[1, 2, 1, 2], -1.0))
            .unwrap();
        assert_eq!(k.shape(), &[1, 2, 4, 2]);
        assert_eq!(values(&k)[6..8], [-1.0, 0.0]); // head 0, position 3
        assert_eq!(c.trim(100), 4);
        assert_eq!(c.offset(), 0);
        assert_eq!(c.trim(1), 0);
    }

    #[test]
    fn rejects_mismatched_shapes() {
        let mut c = ConcatKvCache::new();
        let three_d = Array::from_slice(&[0.0f32; 4], &[1, 2, 2]);
        let e = c.update_and_fetch(&three_d, &three_d).unwrap_err();
        assert!(e.to_string().contains("keys"), "{e}");
        let e = c
            .update_and_fetch(&seq(&[1, 1, 2, 2], 0.0), &seq(&[1, 1, 3, 2], 0.0))
            .unwrap_err();
        assert!(e.to_string().contains("values"), "{e}");
        c.update_and_fetch(&seq(&[1, 1, 2, 2], 0.0), &seq(&[1, 1, 2, 2], 0.0))
            .unwrap();
        let e = c
            .update_and_fetch(&seq(&[1, 2, 1, 2], 0.0), &seq(&[1, 2, 1, 2], 0.0))
            .unwrap_err();
        assert!(e.to_string().contains("cached keys"), "{e}");
        assert_eq!(
            c.offset(),
            2,
            "a rejected update leaves the cache as it was"
        );
        let half = seq(&[1, 1, 1, 2], 0.0)
            .as_dtype(mlx_rs::Dtype::Float16)
            .unwrap();
        let e = c.update_and_fetch(&half, &half).unwrap_err();
        assert!(e.to_string().contains("Float16"), "{e}");
        let e = check_update(
            &seq(&[1, 1, 1, 2], 0.0),
            &seq(&[1, 1, 1, 3], 0.0),
            Some((&seq(&[1, 1, 4, 2], 0.0), &seq(&[1, 1, 4, 2], 0.0))),
        )
        .unwrap_err();
        assert!(e.to_string().contains("cached values"), "{e}");
    }
}
