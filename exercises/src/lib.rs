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

// Day 2: RoPE
#[cfg(not(feature = "ref-day2"))]
pub mod positional_encoding;
#[cfg(feature = "ref-day2")]
pub use tiny_llm_ref::positional_encoding;

// Day 3: grouped-query attention
#[cfg(not(feature = "ref-day3"))]
pub mod attention_grouped;
#[cfg(not(feature = "ref-day3"))]
pub mod qwen2_attention;
#[cfg(feature = "ref-day3")]
pub use tiny_llm_ref::{attention_grouped, qwen2_attention};

// Day 4: RMSNorm and MLP
#[cfg(not(feature = "ref-day4"))]
pub mod layer_norm;
#[cfg(not(feature = "ref-day4"))]
pub mod mlp;
#[cfg(feature = "ref-day4")]
pub use tiny_llm_ref::{layer_norm, mlp};

// Day 5: the week-1 model
#[cfg(not(feature = "ref-day5"))]
pub mod embedding;
#[cfg(not(feature = "ref-day5"))]
pub mod qwen2_week1;
#[cfg(not(feature = "ref-day5"))]
pub mod transformer_block;
#[cfg(feature = "ref-day5")]
pub use tiny_llm_ref::{embedding, qwen2_week1, transformer_block};

// Day 6: load the model
#[cfg(not(feature = "ref-day6"))]
pub mod loader;
#[cfg(not(feature = "ref-day6"))]
pub mod quantize;
#[cfg(feature = "ref-day6")]
pub use tiny_llm_ref::{loader, quantize};

// Day 7: generate
#[cfg(not(feature = "ref-day7"))]
pub mod generate;
#[cfg(not(feature = "ref-day7"))]
pub mod sampler;
#[cfg(feature = "ref-day7")]
pub use tiny_llm_ref::{generate, sampler};

// Day 8: KV cache
#[cfg(not(feature = "ref-day8"))]
pub mod kv_cache;
#[cfg(not(feature = "ref-day8"))]
pub mod qwen2_week2;
#[cfg(not(feature = "ref-day8"))]
pub mod week2_linear;
#[cfg(feature = "ref-day8")]
pub use tiny_llm_ref::{kv_cache, qwen2_week2, week2_linear};

// Day 9: quantized matmul I
#[cfg(not(feature = "ref-day9"))]
pub mod qmatmul_scalar;
#[cfg(not(feature = "ref-day9"))]
pub mod quantized_matmul;
#[cfg(feature = "ref-day9")]
pub use tiny_llm_ref::{qmatmul_scalar, quantized_matmul};

// Day 10: quantized matmul II
#[cfg(not(feature = "ref-day10"))]
pub mod qmatmul_gpu;
#[cfg(not(feature = "ref-day10"))]
pub mod qmatmul_simd;
#[cfg(not(feature = "ref-day10"))]
pub mod quantized_linear;
#[cfg(feature = "ref-day10")]
pub use tiny_llm_ref::{qmatmul_gpu, qmatmul_simd, quantized_linear};
// Day 11: fused kernels
#[cfg(not(feature = "ref-day11"))]
pub mod fused;
#[cfg(not(feature = "ref-day11"))]
pub mod fused_cpu;
#[cfg(not(feature = "ref-day11"))]
pub mod fused_gpu;
#[cfg(feature = "ref-day11")]
pub use tiny_llm_ref::{fused, fused_cpu, fused_gpu};
// Day 12: flash attention
#[cfg(not(feature = "ref-day12"))]
pub mod flash_attention;
#[cfg(not(feature = "ref-day12"))]
pub mod flash_attention_cpu;
#[cfg(not(feature = "ref-day12"))]
pub mod flash_attention_gpu;
#[cfg(feature = "ref-day12")]
pub use tiny_llm_ref::{flash_attention, flash_attention_cpu, flash_attention_gpu};
// Day 13: masks and chunked prefill
#[cfg(not(feature = "ref-day13"))]
pub mod batch;
#[cfg(not(feature = "ref-day13"))]
pub mod chunked_prefill;
#[cfg(feature = "ref-day13")]
pub use tiny_llm_ref::{batch, chunked_prefill};
// Day 14: prompt cache
#[cfg(not(feature = "ref-day14"))]
pub mod prompt_cache;
#[cfg(feature = "ref-day14")]
pub use tiny_llm_ref::prompt_cache;
// Day 15: continuous batching
#[cfg(not(feature = "ref-day15"))]
pub mod batch_kv_cache;
#[cfg(not(feature = "ref-day15"))]
pub mod scheduler;
#[cfg(feature = "ref-day15")]
pub use tiny_llm_ref::{batch_kv_cache, scheduler};
// Day 16: paged KV cache
#[cfg(not(feature = "ref-day16"))]
pub mod block_pool;
#[cfg(not(feature = "ref-day16"))]
pub mod paged_attention_cpu;
#[cfg(not(feature = "ref-day16"))]
pub mod paged_attention_gpu;
#[cfg(feature = "ref-day16")]
pub use tiny_llm_ref::{block_pool, paged_attention_cpu, paged_attention_gpu};
// Day 17: prefix caching
#[cfg(not(feature = "ref-day17"))]
pub mod prefix_cache;
#[cfg(feature = "ref-day17")]
pub use tiny_llm_ref::prefix_cache;
// Day 18: the OpenAI-compatible server's mapping
#[cfg(not(feature = "ref-day18"))]
pub mod openai_api;
#[cfg(not(feature = "ref-day18"))]
pub mod stop_strings;
#[cfg(not(feature = "ref-day18"))]
pub mod stream_detokenizer;
#[cfg(feature = "ref-day18")]
pub use tiny_llm_ref::{openai_api, stop_strings, stream_detokenizer};
// Day 20: speculative decoding (day 19 comes later)
#[cfg(not(feature = "ref-day20"))]
pub mod speculative;
#[cfg(feature = "ref-day20")]
pub use tiny_llm_ref::speculative;
