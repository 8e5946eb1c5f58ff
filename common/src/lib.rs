//! What the kit gives the learner's crate (`tiny-llm`) and the reference
//! (`tiny-llm-ref`) alike, so that a day taken from the reference fits the
//! learner's own code: the error type, shape checks, the model's
//! configuration, and every type that crosses a day boundary (the attention
//! mask, attention weights, sampler settings, generation stats). None of it
//! is an exercise.

pub mod attention_mask;
pub mod batch_cache;
pub mod chat_template;
pub mod checkpoint;
pub mod checkpoint_dir;
pub mod config;
pub mod cpu_bridge;
pub mod engine;
pub mod generation;
pub mod gpu;
pub mod hub;
pub mod kernel_choice;
pub mod kv_cache;
pub mod linear;
pub mod linear_concat;
pub mod linear_q8;
pub mod lm;
pub mod paged;
pub mod qmatmul_q8;
pub mod qmatrix;
pub mod rope_view;
pub mod scheduling;
pub mod step;
pub mod tokenizer;
pub mod weights;

#[cfg(test)]
mod test_util;

pub use attention_mask::AttentionMask;
pub use checkpoint_dir::{Checkpoint, QuantSpec};
pub use config::Qwen2Config;
pub use generation::{FinishReason, GenerationStats, SamplerConfig};
pub use hub::resolve_model;
pub use kernel_choice::Week2Kernels;
pub use kv_cache::KvCache;
pub use linear::{Linear, LinearWeight};
pub use lm::{check_token_ids, CachedLm, CausalLm};
pub use paged::{BlockAllocator, BlockId, BlockTable, PrefixCaching};
pub use rope_view::RopeView;
pub use scheduling::{PrefillChunk, Scheduler, SeqId, SeqRequest, StepPlan};
pub use step::{Cached, Generation, Recompute, StepModel, TokenEvent, TokenSampler};
pub use tokenizer::{ChatMessage, ChatTemplate, Tokenizer};
pub use weights::{take_weight, Qwen2AttentionWeights};

use mlx_rs::Array;

/// Everything that can go wrong in the kit's model code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An MLX operation failed (MLX's own message).
    #[error("MLX: {0}")]
    Mlx(#[from] mlx_rs::error::Exception),

    /// A tensor had the wrong shape.
    #[error("{what}: expected shape {expected}, got {got:?}")]
    Shape {
        /// Which tensor (for example `"q_proj.weight"` or `"query"`).
        what: String,
        /// The expected shape in words (for example `"[N.., L, D]"`).
        expected: String,
        /// The shape that was passed.
        got: Vec<i32>,
    },

    /// An argument was out of its valid range.
    #[error("{0}")]
    Invalid(String),

    /// A `config.json` was missing a key, had a bad value, or described an
    /// unsupported model.
    #[error("config: {0}")]
    Config(String),

    /// A file could not be read or written (the message names the path).
    #[error("{0}")]
    Io(String),

    /// A checkpoint could not be loaded: a corrupt or truncated safetensors
    /// file, a shard missing from its index, inconsistent quantized weights
    /// (the message names the file or tensor).
    #[error("load: {0}")]
    Load(String),

    /// A tokenizer or chat template could not be read or applied.
    #[error("tokenizer: {0}")]
    Tokenizer(String),

    /// A model could not be found locally or on the Hugging Face Hub (the
    /// message says how to fix it).
    #[error("hub: {0}")]
    Hub(String),

    /// A KV block pool had fewer free blocks than asked for (week 3): the
    /// caller frees a sequence, evicts cached blocks, preempts or queues.
    #[error(
        "out of KV blocks: asked for {asked}, {free} free; free a sequence, evict cached blocks, \
         or give the pool more blocks"
    )]
    OutOfBlocks {
        /// Blocks asked for.
        asked: usize,
        /// Blocks free at the time.
        free: usize,
    },
}

/// `Result` with the kit's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Fails with [`Error::Shape`] unless `array` has `ndim` dimensions or more.
pub fn expect_min_ndim(what: &str, array: &Array, ndim: usize, expected: &str) -> Result<()> {
    if array.ndim() < ndim {
        return Err(shape_error(what, array, expected));
    }
    Ok(())
}

/// Builds an [`Error::Shape`] for `array`.
pub fn shape_error(what: &str, array: &Array, expected: &str) -> Error {
    Error::Shape {
        what: what.to_string(),
        expected: expected.to_string(),
        got: array.shape().to_vec(),
    }
}

/// `--device cpu|gpu` and `--dtype f32|f16|bf16` on the MLX side.
pub mod device;

/// `${TINY_LLM_CACHE:-$HOME/.cache/tiny-llm-rs}`: where `cargo xtask models
/// fetch` keeps the converted offline models (`models/<name>/`). Defined in
/// `tiny-llm-course`, re-exported so callers keep working.
pub use tiny_llm_course::cache_dir;
