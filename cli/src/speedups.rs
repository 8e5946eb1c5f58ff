//! The week-2 model's optional speed-ups, each tried when the model loads
//! and left out, with a one-line note, while its day is not implemented:
//!
//! - the kernels ([`choose_kernels`]): day 11's fused kernels and day 12's
//!   flash attention ([`Week2Kernels::ALL`]), else the fused kernels alone,
//!   else day 8's layers ([`Week2Kernels::NONE`]); when MLX's default
//!   device is a GPU (`--device gpu`), their GPU versions first
//!   ([`Week2Kernels::on_gpu`], day 10's CUDA quantized matmul included);
//! - day 14's prompt cache ([`prompt_cache`]): a chat turn then runs only
//!   the tokens after the longest prefix it shares with the cached tokens.
//!
//! Each is probed like the week-2 model itself ([`crate::engine::probe`]):
//! a `todo!()` of its day, caught, means "not yet"; any other panic goes on
//! unwinding, to be reported as usual. Kernels must also give day 8's
//! logits on the probe (a prefill of 3 tokens, then a decode step), so that
//! a kernel that is wrong is left out with a note instead of garbling the
//! answers.

use crate::imp::prompt_cache::PromptCache;
use crate::imp::qwen2_week2::Qwen2ModelWeek2;
use crate::not_implemented::{self, Todo};
use anyhow::{bail, Result};
use mlx_rs::{Array, Dtype};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use tiny_llm_common::{Cached, CachedLm, StepModel, Week2Kernels};

/// How far a kernel's probe logits may be from day 8's (as
/// log-probabilities, absolute), by the model's dtype and device: far above
/// the rounding of two summation orders, far below what a wrong kernel
/// moves them (a wrong scale, offset or sign: nats). f32 on the CPU: 1e-2
/// (rounding about 1e-5 here); on a GPU f32 matmuls run as TF32 (1e-2
/// seen against mlx-lm on the tiny Qwen2), so 5e-2; f16 and bf16 round
/// every activation (8 and 11 mantissa bits), so 0.25 and 1.0. The GPU
/// and half-precision bounds are estimates, not yet measured on the H200.
fn probe_tolerance(dtype: Dtype, gpu: bool) -> f32 {
    match dtype {
        Dtype::Bfloat16 => 1.0,
        Dtype::Float16 => 0.25,
        _ if gpu => 5e-2,
        _ => 1e-2,
    }
}

/// The logits (as f32 log-probabilities) of a 3-token prefill and one
/// decode step, evaluated, and the model's dtype (that of its logits).
fn probe_logits<M: CachedLm>(model: &M) -> Result<(Vec<f32>, Dtype)> {
    let mut steps = Cached::new(model);
    let mut out = Vec::new();
    let mut dtype = Dtype::Float32;
    for ids in [&[1u32, 2, 3][..], &[4]] {
        let x = steps.feed(ids)?;
        dtype = x.dtype();
        let x = x.as_dtype(Dtype::Float32)?;
        let lse = x.logsumexp_axis(-1, true)?;
        let lp: Array = x.subtract(lse)?;
        lp.eval()?;
        out.extend_from_slice(lp.try_as_slice::<f32>()?);
    }
    Ok((out, dtype))
}

/// What `f` came to: its value, or the `todo!()` of one of `days` that it
/// reached. Any other panic keeps unwinding.
///
/// Errors: `f`'s.
pub fn unless_todo<T>(days: &[u32], f: impl FnOnce() -> Result<T>) -> Result<Result<T, Todo>> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(done) => done.map(Ok),
        Err(payload) => match not_implemented::day_of(&payload) {
            Some(todo) if todo.day.is_some_and(|d| days.contains(&d)) => Ok(Err(todo)),
            _ => resume_unwind(payload),
        },
    }
}

/// The kernels' names, as the load line prints them (`, on the GPU` for
/// [`Week2Kernels::gpu`]).
pub fn kernels_name(k: Week2Kernels) -> String {
    let layers = match (k.fused, k.flash_attention) {
        (true, true) => "fused kernels + flash attention",
        (true, false) => "fused kernels",
        (false, true) => "flash attention",
        (false, false) => "day 8's layers",
    };
    match (k.gpu, k.fused || k.flash_attention) {
        (true, true) => format!("{layers} on the GPU (CUDA kernels)"),
        (true, false) => format!("{layers}, quantized matmuls on the GPU (CUDA kernels)"),
        (false, _) => layers.to_string(),
    }
}

/// The kernels [`choose_kernels`] tries, fastest first, and the days whose
/// `todo!()` means "not yet": on a GPU ([`Week2Kernels::on_gpu`]) every
/// exact kernel, the fused kernels alone, then day 10's quantized matmul
/// alone, all as CUDA kernels; on the CPU [`Week2Kernels::ALL`], then the
/// fused kernels alone. Day 8's [`Week2Kernels::NONE`] comes after them.
pub fn candidates(gpu: bool) -> (Vec<Week2Kernels>, &'static [u32]) {
    let fused_only = Week2Kernels {
        fused: true,
        ..Week2Kernels::NONE
    };
    if gpu {
        (
            vec![
                Week2Kernels::ALL.on_gpu(),
                fused_only.on_gpu(),
                Week2Kernels::NONE.on_gpu(),
            ],
            &[10, 11, 12],
        )
    } else {
        (vec![Week2Kernels::ALL, fused_only], &[11, 12])
    }
}

fn todo_text(todo: &Todo) -> String {
    let day = todo.day.unwrap_or(0);
    if todo.item.is_empty() {
        format!("day {day} is not implemented yet")
    } else {
        format!("day {day} is not implemented yet (`{}`)", todo.item)
    }
}

/// `model` with the fastest kernels that run and agree with day 8's
/// layers on a probe ([`candidates`]: on a GPU, `gpu` is MLX's default
/// device, [`Week2Kernels::ALL`]`.on_gpu()`, the fused kernels on the GPU,
/// [`Week2Kernels::NONE`]`.on_gpu()`; on the CPU [`Week2Kernels::ALL`],
/// the fused kernels), else [`Week2Kernels::NONE`]. Returns the model and,
/// when it is not the first candidate, a one-line note saying why (the
/// missing day, or the kernels that disagree) and what runs instead.
///
/// Errors: the probe's with [`Week2Kernels::NONE`] (day 8's own model).
pub fn choose_kernels(
    model: Qwen2ModelWeek2,
    gpu: bool,
) -> Result<(Qwen2ModelWeek2, Option<String>)> {
    let model = model.with_kernels(Week2Kernels::NONE);
    let (want, dtype) = probe_logits(&model)?;
    let tolerance = probe_tolerance(dtype, gpu);
    let (tries, days) = candidates(gpu);
    let mut why: Vec<String> = Vec::new();
    for kernels in tries {
        let candidate = model.clone().with_kernels(kernels);
        let reason = match unless_todo(days, || probe_logits(&candidate)) {
            Ok(Ok((got, _))) => {
                let worst =
                    got.iter()
                        .zip(&want)
                        .map(|(a, b)| (a - b).abs())
                        .fold(
                            0.0f32,
                            |m, d| if d.is_nan() { f32::INFINITY } else { m.max(d) },
                        );
                if got.len() == want.len() && worst <= tolerance {
                    let note = (!why.is_empty()).then(|| {
                        format!(
                            "[kernels: {}: running {}]",
                            why.join("; "),
                            kernels_name(kernels)
                        )
                    });
                    return Ok((candidate, note));
                }
                format!(
                    "{} give other logits than day 8's layers (off by {worst:.1e})",
                    kernels_name(kernels)
                )
            }
            Ok(Err(todo)) => todo_text(&todo),
            Err(e) => format!("{} failed: {e:#}", kernels_name(kernels)),
        };
        // the same day missing again says nothing new
        if !why.contains(&reason) {
            why.push(reason);
        }
    }
    let note = format!(
        "[kernels: {}: running {}]",
        why.join("; "),
        kernels_name(Week2Kernels::NONE)
    );
    Ok((model, Some(note)))
}

/// An empty prompt cache for `model`, after a probe (a one-token prompt,
/// then a two-token prompt reusing its first token); or day 14's
/// `todo!()` when the prompt cache is not implemented yet.
///
/// Errors: the model's; a prompt cache that does not reuse the shared
/// token.
pub fn prompt_cache<M: CachedLm>(model: &M) -> Result<Result<PromptCache, Todo>> {
    unless_todo(&[14], || {
        let mut cache = PromptCache::for_model(model);
        cache.prefill(model, &[0])?.logits.eval()?;
        let second = cache.prefill(model, &[0, 0])?;
        second.logits.eval()?;
        if second.reused != 1 {
            bail!(
                "the prompt cache reused {} tokens of [0] for the prompt [0, 0], expected 1",
                second.reused
            );
        }
        cache.clear();
        Ok(cache)
    })
}

/// The note printed when the prompt cache is left out.
pub fn no_prompt_cache_note(todo: &Todo) -> String {
    format!(
        "[prompt cache: {}: each chat turn reads the whole conversation again]",
        todo_text(todo)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn todos_of_the_named_days_are_caught_others_unwind() {
        not_implemented::install_hook();
        let got = unless_todo::<u32>(&[14], || {
            panic!("not yet implemented: day 14: PromptCache::reuse")
        })
        .unwrap();
        let todo = got.unwrap_err();
        assert_eq!(
            no_prompt_cache_note(&todo),
            "[prompt cache: day 14 is not implemented yet (`PromptCache::reuse`): each chat \
             turn reads the whole conversation again]"
        );
        assert_eq!(unless_todo(&[14], || Ok(3)).unwrap().unwrap(), 3);
        assert!(unless_todo::<u32>(&[14], || bail!("no")).is_err());
        let caught = catch_unwind(|| {
            let _ = unless_todo::<u32>(&[11, 12], || {
                panic!("not yet implemented: day 8: KvStepCache::trim")
            });
        })
        .unwrap_err();
        assert_eq!(not_implemented::day_of(&caught).unwrap().day, Some(8));
    }

    #[test]
    fn kernel_names() {
        assert_eq!(
            kernels_name(Week2Kernels::ALL),
            "fused kernels + flash attention"
        );
        assert_eq!(kernels_name(Week2Kernels::NONE), "day 8's layers");
        assert_eq!(
            kernels_name(Week2Kernels::ALL.on_gpu()),
            "fused kernels + flash attention on the GPU (CUDA kernels)"
        );
        assert_eq!(
            kernels_name(Week2Kernels::NONE.on_gpu()),
            "day 8's layers, quantized matmuls on the GPU (CUDA kernels)"
        );
    }

    #[test]
    fn a_gpu_tries_the_cuda_kernels_first_and_catches_day_10() {
        let (gpu, days) = candidates(true);
        assert!(gpu.iter().all(|k| k.gpu));
        assert_eq!(gpu[0], Week2Kernels::ALL.on_gpu());
        assert_eq!(gpu[2], Week2Kernels::NONE.on_gpu());
        assert_eq!(days, &[10, 11, 12]);
        let (cpu, days) = candidates(false);
        assert!(cpu.iter().all(|k| !k.gpu));
        assert_eq!(cpu[0], Week2Kernels::ALL);
        assert_eq!(days, &[11, 12]);
    }
}
