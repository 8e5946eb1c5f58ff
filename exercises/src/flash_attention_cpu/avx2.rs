//! Day 12: the AVX2 + FMA vector operations of `flash_attention` (a private
//! part of `flash_attention_cpu`; x86_64, chosen at run time when the CPU
//! has them).
//!
//! Hints: this file is yours to fill (or leave empty): the reference keeps
//! its `#[target_feature(enable = "avx2,fma")]` code here.
