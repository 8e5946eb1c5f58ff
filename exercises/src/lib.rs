//! tiny-llm: your implementation of Qwen2 inference on MLX, day by day.
//!
//! Each module is one day's room: its functions are `todo!()` until you write
//! them. `cargo xtask check dayN` grades a day; `cargo xtask hint dayN` helps.
//! To build on a day you have not done, take it from the reference with the
//! feature `ref-dayN` (see the README).

pub use tiny_llm_common::{Error, Result};

// Day 1: attention
#[cfg(not(feature = "ref-day1"))]
pub mod attention;
#[cfg(not(feature = "ref-day1"))]
pub mod basics;
#[cfg(feature = "ref-day1")]
pub use tiny_llm_ref::{attention, basics};
