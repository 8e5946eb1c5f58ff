//! Which of week 2's CPU kernels the week-2 model runs (given code, shared by
//! days 8, 11 and 12, the command line and the bench).
//!
//! It lives here, not in a day's module, so that a day taken from the
//! reference (`ref-dayN`) and the learner's own days pass the same type.

/// The kernels `Qwen2ModelWeek2` routes its layers through. The default
/// (every field `false`) is day 8's model: week 1's layers, MLX array ops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Week2Kernels {
    /// Day 11: RMSNorm, RoPE, SwiGLU and the attention softmax through
    /// `crate::fused` (CPU kernels on the host buffers).
    pub fused: bool,
    /// Day 12: attention through `crate::flash_attention` (tiled, online
    /// softmax, no `L x S` score matrix).
    pub flash_attention: bool,
    /// Beyond day 10: the 4-bit and 8-bit matmuls quantize their
    /// activations to int8 per group first and use integer dot products,
    /// as llama.cpp's Q4_0 x Q8_0 does. Not exact: the logits move by about
    /// 1e-2 from mlx-lm's, so it is off in [`Week2Kernels::ALL`] and in
    /// grading, and the bench reports it as its own row.
    pub int8_activations: bool,
    /// Week 2 on a GPU (MLX's default device a CUDA GPU): the quantized
    /// matmuls run day 10's CUDA kernels (`crate::qmatmul_gpu`), and the
    /// kernels chosen above their GPU versions (`crate::fused_gpu`,
    /// `crate::flash_attention_gpu`) instead of the CPU kernels;
    /// `int8_activations` (a CPU kernel) is ignored.
    pub gpu: bool,
}

impl Week2Kernels {
    /// Day 8's model: MLX array ops only.
    pub const NONE: Week2Kernels = Week2Kernels {
        fused: false,
        flash_attention: false,
        int8_activations: false,
        gpu: false,
    };
    /// Every exact week-2 kernel (not `int8_activations`).
    pub const ALL: Week2Kernels = Week2Kernels {
        fused: true,
        flash_attention: true,
        int8_activations: false,
        gpu: false,
    };

    /// The same choice run by the GPU versions of the kernels.
    pub const fn on_gpu(self) -> Week2Kernels {
        Week2Kernels { gpu: true, ..self }
    }
}
