//! `--kernels`: which of week 2's CPU kernels (days 11 and 12, and the
//! int8-activation path beyond the course) the week-2 model runs, and the
//! checks that say when one is not there yet.
//!
//! - A day whose kernel is still a `todo!()` panics on the first forward
//!   pass: [`with_fallback`] turns that into a fallback (the kernel is
//!   dropped and the reason kept for the report) when the run asked for the
//!   best available kernels, and into "not implemented" otherwise.
//! - `int8_activations` is a flag the quantized matmul reads: a build whose
//!   matmul ignores it computes exactly the same logits. [`int8_has_effect`]
//!   compares the logits of one short prompt with and without it.

use crate::imp::qwen2_week2::Qwen2ModelWeek2;
use anyhow::{bail, Context, Result};
use mlx_rs::Array;
use std::panic::{catch_unwind, AssertUnwindSafe};
use tiny_llm_common::Week2Kernels;
use tiny_llm_course::Todo;

/// What `--kernels` asked for: a fixed choice, or the best available.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KernelRequest {
    /// Exactly these kernels; a missing one is "not implemented".
    Exact(Week2Kernels),
    /// [`Week2Kernels::ALL`] (with `int8_activations` when `true`; their
    /// CUDA versions when MLX computes on a GPU, see [`best`]), dropping
    /// flash attention or the fused kernels (then the GPU matmuls) while
    /// they are not implemented.
    Best(bool),
}

/// Parses `--kernels`: `none`, a comma list of `fused`, `flash`, `int8` and
/// `gpu` (`all` = `fused,flash`; `gpu`: their CUDA versions and day 10's
/// CUDA matmul), or `best` (with `,int8` or not; on a GPU it starts from
/// the CUDA kernels).
pub fn parse(spec: &str) -> Result<KernelRequest> {
    let spec = spec.trim();
    match spec {
        "best" => return Ok(KernelRequest::Best(false)),
        "best,int8" | "int8,best" => return Ok(KernelRequest::Best(true)),
        _ => {}
    }
    let mut k = Week2Kernels::NONE;
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part {
            "none" => {}
            "all" => {
                k.fused = true;
                k.flash_attention = true;
            }
            "fused" => k.fused = true,
            "flash" => k.flash_attention = true,
            "int8" => k.int8_activations = true,
            "gpu" => k.gpu = true,
            other => bail!(
                "--kernels: unknown kernel {other:?} (expected none, best, best,int8, all, or a \
                 comma list of fused, flash, int8, gpu)"
            ),
        }
    }
    Ok(KernelRequest::Exact(k))
}

/// The short name of a kernel choice (`none`, `fused`, `fused,flash`, ...).
pub fn name(k: Week2Kernels) -> String {
    let mut parts = Vec::new();
    if k.fused {
        parts.push("fused");
    }
    if k.flash_attention {
        parts.push("flash");
    }
    if k.int8_activations {
        parts.push("int8");
    }
    if k.gpu {
        parts.push("gpu");
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(",")
    }
}

/// Whether MLX's default device is a GPU (the bench was started with
/// `--device gpu`: `TINY_LLM_DEVICE=gpu`, made the default at start).
pub(crate) fn mlx_default_is_gpu() -> bool {
    matches!(
        mlx_rs::Device::default().get_type(),
        Ok(mlx_rs::DeviceType::Gpu)
    )
}

/// Where [`KernelRequest::Best`] starts: [`Week2Kernels::ALL`] (with
/// `int8_activations` when asked), as CUDA kernels
/// ([`Week2Kernels::on_gpu`]) when MLX computes on a GPU.
pub fn best(int8: bool, gpu: bool) -> Week2Kernels {
    let k = Week2Kernels {
        int8_activations: int8,
        ..Week2Kernels::ALL
    };
    if gpu {
        k.on_gpu()
    } else {
        k
    }
}

/// The text of a panic payload.
fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

/// Runs `probe` (a short forward pass) on `model` with the requested
/// kernels. [`KernelRequest::Exact`]: returns the model, a `todo!()` panic
/// going on up (the report says "not implemented"). [`KernelRequest::Best`]:
/// while `probe` reaches a `todo!()`, drops flash attention, then the fused
/// kernels, and retries; returns the model and one note per kernel dropped
/// (`"flash: not implemented (day 12: flash_attention)"`). On a GPU a
/// `todo!()` of day 10 (`crate::qmatmul_gpu`) goes straight to day 8's
/// layers (MLX's ops, still on the GPU), noted `gpu: ...`.
///
/// Errors: what `probe` returns; a panic other than a `todo!()` goes on up.
pub fn with_fallback(
    model: Qwen2ModelWeek2,
    request: KernelRequest,
    probe: impl Fn(&Qwen2ModelWeek2) -> Result<()>,
) -> Result<(Qwen2ModelWeek2, Vec<String>)> {
    let mut k = match request {
        KernelRequest::Exact(k) => {
            let model = model.with_kernels(k);
            probe(&model)?;
            return Ok((model, Vec::new()));
        }
        KernelRequest::Best(int8) => best(int8, mlx_default_is_gpu()),
    };
    let mut notes = Vec::new();
    loop {
        let candidate = model.clone().with_kernels(k);
        match catch_unwind(AssertUnwindSafe(|| probe(&candidate))) {
            Ok(r) => {
                r?;
                return Ok((candidate, notes));
            }
            Err(payload) => {
                let text = payload_text(payload.as_ref());
                let Some(todo) = Todo::parse(&text) else {
                    std::panic::resume_unwind(payload);
                };
                let what = if todo.text.is_empty() {
                    "not implemented".to_string()
                } else {
                    format!("not implemented ({})", todo.text)
                };
                // Day 10's CUDA matmul missing: MLX's own ops on the GPU
                // (day 8's layers). Else drop the kernel of the day that
                // panicked (day 12's flash attention, day 11's fused
                // kernels), else flash first; then the GPU matmuls.
                let drop_flash = k.flash_attention && (todo.day != Some(11) || !k.fused);
                if k.gpu && todo.day == Some(10) {
                    notes.push(format!("gpu: {what}"));
                    k = Week2Kernels {
                        int8_activations: k.int8_activations,
                        ..Week2Kernels::NONE
                    };
                } else if drop_flash {
                    notes.push(format!("flash: {what}"));
                    k.flash_attention = false;
                } else if k.fused {
                    notes.push(format!("fused: {what}"));
                    k.fused = false;
                } else if k.gpu {
                    notes.push(format!("gpu: {what}"));
                    k.gpu = false;
                } else {
                    // Day 8's model itself is not implemented: say so.
                    std::panic::resume_unwind(payload);
                }
            }
        }
    }
}

/// Whether turning `int8_activations` on changes the logits of `ids`
/// (a short prompt into fresh caches): `Ok(None)` when it does, `Ok(Some(note))`
/// when the logits are bit-for-bit those of the exact path, that is when
/// the quantized matmul of this build does not read the flag.
pub fn int8_has_effect(model: &Qwen2ModelWeek2, ids: &[i32]) -> Result<Option<String>> {
    let logits = |k: Week2Kernels| -> Result<Vec<f32>> {
        let m = model.clone().with_kernels(k);
        let mut cache = m.new_cache();
        let input = Array::from_slice(ids, &[1, ids.len() as i32]);
        let out = m
            .forward_last(&input, 0, &mut cache)
            .context("forward_last")?
            .as_dtype(mlx_rs::Dtype::Float32)?;
        out.eval()?;
        Ok(out.as_slice::<f32>().to_vec())
    };
    let on = model.kernels();
    let off = Week2Kernels {
        int8_activations: false,
        ..on
    };
    if logits(on)? == logits(off)? {
        return Ok(Some(
            "int8_activations changes no logit: this build's quantized matmul does not read it \
             (the int8 kernel is not there)"
                .into(),
        ));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_specs_parse_and_name_back() {
        let exact = |s: &str| match parse(s).unwrap() {
            KernelRequest::Exact(k) => k,
            KernelRequest::Best(_) => panic!("{s} is not exact"),
        };
        assert_eq!(exact("none"), Week2Kernels::NONE);
        assert_eq!(exact("all"), Week2Kernels::ALL);
        assert_eq!(exact("fused,flash"), Week2Kernels::ALL);
        let k = exact("fused, int8");
        assert!(k.fused && k.int8_activations && !k.flash_attention);
        assert_eq!(name(k), "fused,int8");
        assert_eq!(name(Week2Kernels::NONE), "none");
        assert!(exact("all,gpu").flash_attention && !exact("all,gpu").int8_activations);
        assert_eq!(parse("best").unwrap(), KernelRequest::Best(false));
        assert_eq!(parse("best,int8").unwrap(), KernelRequest::Best(true));
        let g = exact("all,gpu");
        assert_eq!(g, Week2Kernels::ALL.on_gpu());
        assert_eq!(name(g), "fused,flash,gpu");
        assert_eq!(best(false, true), Week2Kernels::ALL.on_gpu());
        assert!(best(true, false).int8_activations);
        assert!(!best(true, false).gpu);
        let e = parse("fused,turbo").unwrap_err().to_string();
        assert!(
            e.contains("\"turbo\"") && e.contains("fused, flash, int8, gpu"),
            "{e}"
        );
    }
}
