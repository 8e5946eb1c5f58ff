//! Day 12: the tile loop of `flash_attention` (a private part of
//! `flash_attention_cpu`): per query tile, key tiles folded into a running
//! max, sum and accumulator (FlashAttention-2's inner loop), the
//! flash-decoding split, and the choice of vector operations.
//!
//! Hints: this file is yours to fill (or leave empty): the reference keeps
//! its private tile loop here so that `flash_attention_cpu.rs` stays short.
