//! How long a prompt will take to read, and a spinner while it is read.
//!
//! Week 1 has no KV cache: the prefill runs the whole prompt through the
//! model, and every new token runs the whole sequence again, so a long
//! prompt costs its prefill time once per generated token. A 3,000-token
//! prompt takes about a minute on a 2-core CPU, with no output meanwhile:
//! [`slow_warning`] says so before it starts and [`Spinner`] shows the time
//! going by (on a terminal). Week 2 reads the prompt once, then decodes
//! each token from its KV cache: the warning says so. The estimate is the
//! week-1 (dense f32) one either way; the quantized kernels of week 2 read
//! it at their own speed.
//!
//! The estimate counts the work of one forward pass over `L` tokens:
//!
//! - linear layers: `2 * layers * E * (2 * H_q * D + 2 * H_kv * D + 3 * I)`
//!   FLOPs per token (q/o, k/v and the three MLP projections; two FLOPs per
//!   multiply-add; `lm_head` runs on the last position only);
//! - attention: `4 * layers * H_q * D * L^2` FLOPs (`Q K^T` and `P V`, the
//!   whole square: the causal mask is added, not skipped);
//! - softmax: `layers * H_q * L^2` scores, each an `exp` that MLX's CPU
//!   backend computes with a scalar loop.
//!
//! The two speeds are fitted to the kit's own measurements of the
//! reference's Qwen2.5-Coder-0.5B f32 prefill on an idle 2-core AMD EPYC
//! with OpenBLAS: 172 and 147 tok/s at 128 and 512 tokens (`docs/bench.md`)
//! give ~130 GFLOP/s for the matmuls, and a learner's 3,000-token prompt
//! took 90 s (issue 9), which puts the softmax's memory-bound passes over
//! the `L x L` scores at ~14 ns per score (a compromise: 21% high at 512
//! tokens, 28% low at 3,000). f16/bf16 do not use BLAS on the CPU and
//! measured 15-20x slower. Other work on the same cores makes it slower
//! still: the warning says "about". On a GPU no estimate is made (an H200
//! prefills 512 tokens in well under a second).

use crate::model_pick::Week;
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Duration;
use tiny_llm_common::Qwen2Config;

/// Matmul speed of MLX's CPU backend in f32 (2 cores, OpenBLAS), FLOP/s.
const CPU_F32_FLOPS: f64 = 1.3e11;
/// Seconds per attention score for the mask, the softmax's passes and `exp`.
const CPU_SECONDS_PER_SCORE: f64 = 14e-9;
/// f16/bf16 on MLX's CPU backend (no BLAS) against f32: measured 15-20x.
const CPU_HALF_SLOWDOWN: f64 = 15.0;
/// Warn when reading the prompt is expected to take longer than this.
const WARN_SECONDS: f64 = 10.0;

/// The sizes that set the cost of a forward pass.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shape {
    pub layers: f64,
    pub hidden: f64,
    pub q_heads: f64,
    pub kv_heads: f64,
    pub head_dim: f64,
    pub intermediate: f64,
}

impl Shape {
    /// The sizes of a `config.json`.
    pub fn of(config: &Qwen2Config) -> Shape {
        Shape {
            layers: config.num_hidden_layers as f64,
            hidden: config.hidden_size as f64,
            q_heads: config.num_attention_heads as f64,
            kv_heads: config.num_kv_heads() as f64,
            head_dim: config.head_dim() as f64,
            intermediate: config.intermediate_size as f64,
        }
    }

    /// FLOPs of a forward pass over `tokens` tokens (see the module
    /// documentation for the formula).
    pub fn forward_flops(&self, tokens: usize) -> f64 {
        let l = tokens as f64;
        let s = self;
        let per_token = 2.0
            * s.layers
            * s.hidden
            * (2.0 * s.q_heads * s.head_dim + 2.0 * s.kv_heads * s.head_dim + 3.0 * s.intermediate);
        let attention = 4.0 * s.layers * s.q_heads * s.head_dim * l * l;
        per_token * l + attention
    }

    /// Attention scores (softmax inputs) of a forward pass over `tokens`.
    pub fn scores(&self, tokens: usize) -> f64 {
        let l = tokens as f64;
        self.layers * self.q_heads * l * l
    }

    /// Estimated seconds of one week-1 forward pass over `tokens` tokens on
    /// the CPU, in f32 or (`half`) in f16/bf16.
    pub fn cpu_seconds(&self, tokens: usize, half: bool) -> f64 {
        let t = self.forward_flops(tokens) / CPU_F32_FLOPS
            + self.scores(tokens) * CPU_SECONDS_PER_SCORE;
        if half {
            t * CPU_HALF_SLOWDOWN
        } else {
            t
        }
    }
}

/// `42 s`, `3 min`, `2.5 h`.
pub fn duration(seconds: f64) -> String {
    if seconds < 90.0 {
        format!("{:.0} s", seconds.max(1.0))
    } else if seconds < 90.0 * 60.0 {
        format!("{:.0} min", seconds / 60.0)
    } else {
        format!("{:.1} h", seconds / 3600.0)
    }
}

/// A warning for a prompt that will be slow to read on the CPU (estimated
/// over [`WARN_SECONDS`]); `None` on a GPU or for a short prompt. On week 1
/// every new token costs about as much again (no KV cache); on week 2 the
/// prompt is read once.
pub fn slow_warning(
    shape: &Shape,
    prompt_tokens: usize,
    half: bool,
    gpu: bool,
    week: Week,
) -> Option<String> {
    if gpu {
        return None;
    }
    let t = shape.cpu_seconds(prompt_tokens, half);
    let after = match week {
        Week::One => {
            ", and each new token re-reads the whole sequence (about as long again): week 1 \
             has no KV cache (week 2 adds it)"
        }
        Week::Two => " (once: the KV cache keeps it for the answer)",
    };
    (t >= WARN_SECONDS).then(|| {
        format!(
            "[slow: a {prompt_tokens}-token prompt takes about {} to read on an idle 2-core \
             CPU{}{after}. A shorter prompt or --max-tokens keeps it short]",
            duration(t),
            if half { " in f16/bf16" } else { "" },
        )
    })
}

/// A spinner with the elapsed time on stderr while the prompt is read;
/// nothing when stderr is not a terminal. Its timer thread only draws (no
/// MLX calls: MLX stays on the main thread).
pub struct Spinner(Option<ProgressBar>);

impl Spinner {
    /// Starts the spinner for a prompt of `prompt_tokens` tokens.
    pub fn start(prompt_tokens: usize) -> Spinner {
        let bar = ProgressBar::new_spinner();
        if bar.is_hidden() {
            return Spinner(None);
        }
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg} {elapsed}") {
            bar.set_style(style);
        }
        bar.set_message(format!("reading the prompt ({prompt_tokens} tokens) ..."));
        bar.enable_steady_tick(Duration::from_millis(120));
        Spinner(Some(bar))
    }

    /// Removes the spinner (the first text is about to be printed).
    pub fn stop(&mut self) {
        if let Some(bar) = self.0.take() {
            bar.finish_and_clear();
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Qwen2.5-Coder-0.5B-Instruct's sizes (its config.json).
    fn qwen25_05b() -> Shape {
        let json = r#"{"model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
            "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
            "vocab_size": 151936, "rms_norm_eps": 1e-6, "max_position_embeddings": 32768,
            "tie_word_embeddings": true}"#;
        Shape::of(&Qwen2Config::from_json(json, "config.json").unwrap())
    }

    #[test]
    fn flops_by_hand() {
        // 1 layer, E 2, one head of 2, I 1: per token 2 * 1 * 2 * (4 + 4 + 3)
        // = 44; attention 4 * 1 * 1 * 2 * L^2 = 8 L^2.
        let s = Shape {
            layers: 1.0,
            hidden: 2.0,
            q_heads: 1.0,
            kv_heads: 1.0,
            head_dim: 2.0,
            intermediate: 1.0,
        };
        assert_eq!(s.forward_flops(10), 440.0 + 800.0);
        assert_eq!(s.scores(10), 100.0);
        // Qwen2.5-0.5B: 24 * 896 * (1792 + 256 + 14592) = 357,826,560 MACs a token
        assert_eq!(
            qwen25_05b().forward_flops(1),
            2.0 * 357_826_560.0 + 4.0 * 24.0 * 14.0 * 64.0
        );
    }

    #[test]
    fn estimate_matches_the_measured_prefill() {
        // docs/bench.md: the reference's prefill, Qwen2.5-Coder-0.5B f32,
        // idle 2-core EPYC: 172.0 tok/s at 128 tokens, 146.8 at 512; issue 9:
        // 3,000 tokens in 90 s.
        let s = qwen25_05b();
        for (tokens, seconds) in [
            (128usize, 128.0 / 172.0),
            (512, 512.0 / 146.8),
            (3000, 90.0),
        ] {
            let est = s.cpu_seconds(tokens, false);
            assert!(
                (est / seconds - 1.0).abs() < 0.3,
                "{tokens} tokens: estimated {est:.2} s, measured {seconds:.2} s"
            );
        }
        // quadratic: twice the tokens, more than twice the time
        assert!(s.cpu_seconds(4000, false) > 2.0 * s.cpu_seconds(2000, false));
    }

    #[test]
    fn only_long_prompts_on_the_cpu_are_warned_about() {
        let s = qwen25_05b();
        let one = Week::One;
        assert_eq!(slow_warning(&s, 40, false, false, one), None);
        assert_eq!(slow_warning(&s, 3000, false, true, one), None);
        let w = slow_warning(&s, 3000, false, false, one).unwrap();
        assert!(
            w.starts_with("[slow: a 3000-token prompt takes about "),
            "{w}"
        );
        assert!(w.contains("no KV cache"), "{w}");
        // week 2 reads it once
        let w2 = slow_warning(&s, 3000, false, false, Week::Two).unwrap();
        assert!(
            w2.contains("once: the KV cache") && !w2.contains("no KV cache"),
            "{w2}"
        );
        // f16/bf16 on the CPU: 15x, so 200 tokens (~1.2 s in f32) are slow
        assert_eq!(slow_warning(&s, 200, false, false, one), None);
        assert!(slow_warning(&s, 200, true, false, one)
            .unwrap()
            .contains("f16/bf16"));
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(0.2), "1 s");
        assert_eq!(duration(41.4), "41 s");
        assert_eq!(duration(600.0), "10 min");
        assert_eq!(duration(9000.0), "2.5 h");
    }
}
