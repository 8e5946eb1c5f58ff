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

use super::Qwen2ModelWeek2;
use crate::attention_grouped::{causal_mask, scaled_dot_product_attention_grouped};
use crate::layer_norm::RmsNorm;
use crate::mlp::silu;
use mlx_rs::Array;
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
    pub fn with_kernels(mut self, kernels: Week2Kernels) -> Self {
        self.kernels = kernels;
        self
    }

    /// The kernels the layers run through.
    pub fn kernels(&self) -> Week2Kernels {
        self.kernels
    }

    /// RMSNorm of `x`: day 11's kernel (CPU or GPU) or day 4's layer.
    pub(super) fn rms_norm(&self, norm: &RmsNorm, x: &Array) -> Result<Array> {
        match self.kernels {
            Week2Kernels {
                fused: true,
                gpu: true,
                ..
            } => crate::fused_gpu::rms_norm(x, &norm.weight, norm.eps),
            Week2Kernels { fused: true, .. } => crate::fused::rms_norm(x, &norm.weight, norm.eps),
            _ => norm.forward(x),
        }
    }

    /// The RoPE tables as the week-2 kernels read them.
    pub(super) fn rope_view(&self) -> RopeView<'_> {
        RopeView {
            dims: self.rope.dims,
            seq_len: self.rope.seq_len,
            traditional: self.rope.traditional,
            cos: &self.rope.cos,
            sin: &self.rope.sin,
        }
    }

    /// RoPE of `x` (`N x L x H x D`) at `offset`: day 11's kernel (CPU or
    /// GPU) or day 2's.
    pub(super) fn rope(&self, x: &Array, offset: i32) -> Result<Array> {
        match self.kernels {
            Week2Kernels {
                fused: true,
                gpu: true,
                ..
            } => crate::fused_gpu::rope(x, self.rope_view(), &[offset]),
            Week2Kernels { fused: true, .. } => crate::fused::rope(x, self.rope_view(), &[offset]),
            _ => self.rope.forward(x, offset),
        }
    }

    /// RoPE of `x` (`B x L x H x D`), row `b` at `offsets[b]` (day 13):
    /// day 11's GPU kernel (one offset per row) with `fused` and `gpu`,
    /// else day 13's `crate::batch::rope_rows`.
    pub(super) fn rope_rows(&self, x: &Array, offsets: &[i32]) -> Result<Array> {
        if self.kernels.fused && self.kernels.gpu {
            crate::fused_gpu::rope(x, self.rope_view(), offsets)
        } else {
            crate::batch::rope_rows(x, self.rope_view(), offsets)
        }
    }

    /// `silu(gate) * up`: day 11's kernel (CPU or GPU) or week 1's ops.
    pub(super) fn swiglu(&self, gate: &Array, up: &Array) -> Result<Array> {
        match self.kernels {
            Week2Kernels {
                fused: true,
                gpu: true,
                ..
            } => crate::fused_gpu::swiglu(gate, up),
            Week2Kernels { fused: true, .. } => crate::fused::swiglu(gate, up),
            _ => Ok(silu(gate)?.multiply(up)?),
        }
    }

    /// Day 12's flash attention, on the CPU or the GPU.
    pub(super) fn flash(
        &self,
        q: &Array,
        k: &Array,
        v: &Array,
        mask: AttentionMask<'_>,
    ) -> Result<Array> {
        let scale = 1.0 / (self.heads.2 as f32).sqrt();
        if self.kernels.gpu {
            crate::flash_attention_gpu::flash_attention(q, k, v, scale, mask)
        } else {
            crate::flash_attention::flash_attention(q, k, v, scale, mask)
        }
    }

    /// Grouped attention of `q` (`N x H_q x L x D`) over `k`, `v`
    /// (`N x H_kv x S x D`), the `L` queries being the last `L` of the `S`
    /// positions: day 12's flash attention, or scores, day 11's softmax and
    /// a second matmul, or day 3's attention.
    pub(super) fn attend(&self, q: &Array, k: &Array, v: &Array) -> Result<Array> {
        let (l, s) = (q.dim(2), k.dim(2));
        let (h_q, h_kv, d) = self.heads;
        if self.kernels.flash_attention {
            let mask = if l > 1 {
                AttentionMask::Causal
            } else {
                AttentionMask::None
            };
            return self.flash(q, k, v, mask);
        }
        // One query sees every cached key: no mask.
        let mask = if l > 1 {
            Some(causal_mask(l, s, q.dtype())?)
        } else {
            None
        };
        if !self.kernels.fused {
            return scaled_dot_product_attention_grouped(q, k, v, None, mask.as_ref());
        }
        // Scores per kv head with its G = H_q / H_kv query heads stacked:
        // N x H_kv x G x L x S.
        let scale = 1.0 / (d as f32).sqrt();
        let n = q.dim(0);
        let g = h_q / h_kv;
        let q = q.reshape(&[n, h_kv, g, l, d])?;
        let k = k.reshape(&[n, h_kv, 1, s, d])?;
        let v = v.reshape(&[n, h_kv, 1, s, v.dim(3)])?;
        let mut scores = q
            .multiply(Array::from_f32(scale))?
            .matmul(k.transpose_axes(&[0, 1, 2, 4, 3])?)?;
        if let Some(m) = &mask {
            scores = scores.add(m)?;
        }
        let p = if self.kernels.gpu {
            crate::fused_gpu::softmax(&scores)?
        } else {
            crate::fused::softmax(&scores)?
        };
        let o = p.matmul(v)?; // N x H_kv x G x L x D_v
        Ok(o.reshape(&[n, h_q, l, -1])?)
    }
}
