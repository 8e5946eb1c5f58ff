//! tiny-llm-ref: the reference solutions of tiny-llm-rs.
//!
//! Same public API as the learner's crate `tiny-llm` (in `exercises/`), module
//! for module. The grader tests it with `--features solutions`, and the
//! learner's crate re-exports single days from it (`ref-dayN` features).

pub use tiny_llm_common::{Error, Result};

// Day 1
pub mod attention;
pub mod basics;
