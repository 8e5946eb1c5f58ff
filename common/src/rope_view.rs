//! The RoPE tables a kernel reads (given code, shared by days 11 and 13).
//!
//! Day 2's `RoPE` is the learner's type; a day taken from the reference
//! (`ref-dayN`) must accept the learner's, so the week-2 kernels take this
//! borrowed view of its fields instead.

use mlx_rs::Array;

/// A borrowed view of day 2's `RoPE`: `RopeView { dims: rope.dims,
/// seq_len: rope.seq_len, traditional: rope.traditional, cos: &rope.cos,
/// sin: &rope.sin }`.
#[derive(Debug, Clone, Copy)]
pub struct RopeView<'a> {
    /// Rotated width `D` (even).
    pub dims: i32,
    /// Positions the tables cover.
    pub seq_len: i32,
    /// Pairs `(2j, 2j + 1)` when true, else the halves `(j, j + D/2)`.
    pub traditional: bool,
    /// `seq_len x D/2` cosines.
    pub cos: &'a Array,
    /// `seq_len x D/2` sines.
    pub sin: &'a Array,
}
