//! tiny-llm-ref: the reference solutions of tiny-llm-rs.
//!
//! Same public API as the learner's crate `tiny-llm` (in `exercises/`), module
//! for module. The grader tests it with `--features solutions`, and the
//! learner's crate re-exports single days from it (`ref-dayN` features).

pub use tiny_llm_common::{Error, Result};

// Day 1
pub mod attention;
pub mod basics;

// Day 2
pub mod positional_encoding;

// Day 3
pub mod attention_grouped;
pub mod qwen2_attention;

// Day 4
pub mod layer_norm;
pub mod mlp;

// Day 5
pub mod embedding;
pub mod qwen2_week1;
pub mod transformer_block;

// Day 6
pub mod loader;
pub mod quantize;

// Day 7
pub mod generate;
pub mod sampler;

// Day 8
pub mod kv_cache;
pub mod qwen2_week2;
pub mod week2_linear;

// Day 9
pub mod qmatmul_scalar;
pub mod quantized_matmul;

// Day 10
pub mod qmatmul_gpu;
pub mod qmatmul_simd;
pub mod quantized_linear;

// Day 11
pub mod fused;
pub mod fused_cpu;
pub mod fused_gpu;

// Day 12
pub mod flash_attention;
pub mod flash_attention_cpu;
pub mod flash_attention_gpu;

// Day 13
pub mod batch;
pub mod chunked_prefill;

// Day 14
pub mod prompt_cache;

// Day 15
pub mod batch_kv_cache;
pub mod scheduler;

// Day 16
pub mod block_pool;
pub mod paged_attention_cpu;
pub mod paged_attention_gpu;

// Day 17
pub mod prefix_cache;

// Day 18: the OpenAI-compatible server's mapping
pub mod openai_api;
pub mod stop_strings;
pub mod stream_detokenizer;
// Day 20 (day 19 comes later)
pub mod speculative;
