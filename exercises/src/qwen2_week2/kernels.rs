//! Days 11 and 12 in the week-2 model: which kernels its layers run
//! through ([`Week2Kernels`]), on the CPU or on a GPU.
//!
//! | layer step | day 8 (`NONE`) | `fused` | `fused` + `gpu` |
//! |---|---|---|---|
//! | RMSNorm | day 4's `RmsNorm` | `crate::fused::rms_norm` | `crate::fused_gpu::rms_norm` |
//! | RoPE | day 2's `RoPE` | `crate::fused::rope` | `crate::fused_gpu::rope` |
//! | SwiGLU | `silu(gate) * up` | `crate::fused::swiglu` | `crate::fused_gpu::swiglu` |
//! | attention | day 3's grouped attention | scores, `crate::fused::softmax`, matmul | the same with `crate::fused_gpu::softmax` |
//!
//! `flash_attention` replaces the attention row by
//! `crate::flash_attention::flash_attention` (with `gpu`:
//! `crate::flash_attention_gpu::flash_attention`). With `gpu` the quantized
//! layers also run day 10's CUDA kernels (`crate::week2_linear::project_with`).
//! The logits stay those of day 8's model, within the kernels' rounding.
//!
//! Hints: the model's forward pass calls a helper per step (`rms_norm`,
//! `rope`, `swiglu`, the attention) that reads `self.kernels` and picks
//! the column of the table above; on a GPU the CPU kernels would copy every
//! activation to host memory and back, so the `gpu` column matters.

#[allow(unused_imports)]
use super::Qwen2ModelWeek2;
#[allow(unused_imports)]
use tiny_llm_common::{AttentionMask, Result, RopeView, Week2Kernels};

impl Qwen2ModelWeek2 {
    /// The model with its layers routed through `kernels` (days 11 and 12):
    /// `fused` runs RMSNorm, RoPE, SwiGLU and the attention softmax through
    /// `crate::fused`, `flash_attention` runs attention through
    /// `crate::flash_attention`; with `gpu` (MLX's default device a CUDA
    /// GPU) they run through `crate::fused_gpu` and
    /// `crate::flash_attention_gpu` instead, and the quantized layers
    /// through `crate::qmatmul_gpu`. The logits stay those of day 8's model
    /// (within f32 rounding on the CPU, the GPU tolerances on a GPU). A new
    /// model starts with [`Week2Kernels::NONE`].
    ///
    /// Hints: keep the choice in a field; where the layers call
    /// `RmsNorm::forward`, `RoPE::forward`, `silu(g) * u` and day 3's
    /// attention, call `crate::fused::{rms_norm, rope, swiglu}` and
    /// `crate::flash_attention::flash_attention` (or scores,
    /// `crate::fused::softmax`, and a second matmul) when it is on. With
    /// `kernels.gpu` call the same functions of `crate::fused_gpu` and
    /// `crate::flash_attention_gpu` (same signatures); the quantized layers
    /// need nothing from you: the given `crate::week2_linear::project_with`
    /// sends them to `crate::qmatmul_gpu` when you pass it the kernels.
    pub fn with_kernels(self, kernels: Week2Kernels) -> Self {
        let _ = kernels;
        todo!("day 11: Qwen2ModelWeek2::with_kernels")
    }

    /// The kernels the layers run through.
    pub fn kernels(&self) -> Week2Kernels {
        todo!("day 11: Qwen2ModelWeek2::kernels")
    }
}
