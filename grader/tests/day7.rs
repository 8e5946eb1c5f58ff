//! Day 7: sampling and generation.
//!
//! Sampler: hand-worked cases, argument errors, tokens drawn by mlx-lm's
//! `make_sampler` from fixed logits with the same seed (fixtures/gen/day7.py),
//! and properties (proptest): greedy is the argmax, top-k and top-p never pick
//! a token they exclude.
//!
//! Detokenizer and `simple_generate`: multi-byte characters split over byte
//! tokens of the tiny Qwen2 tokenizer (fixtures/tiny-qwen2, an exact prefix of
//! Qwen2.5's), and a scripted model (it returns the logits of a fixed token
//! sequence and records what it was given), so these tests need no working
//! model from days 1-6. One test runs the whole path on the tiny model (your
//! loader and `Qwen2ModelWeek1`): greedy and seeded tokens equal mlx-lm's
//! `generate_step`.

use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::{Array, Dtype};
use proptest::prelude::*;
use std::cell::RefCell;
use tiny_llm_common::{CausalLm, Tokenizer};
use tiny_llm_common::{ChatMessage, Qwen2Config};
use tiny_llm_grader::fixture::checked_dir;
use tiny_llm_grader::imp::generate::{simple_generate, FinishReason, StreamingDetokenizer};
use tiny_llm_grader::imp::loader::load_weights;
use tiny_llm_grader::imp::qwen2_week1::Qwen2ModelWeek1;
use tiny_llm_grader::imp::sampler::{Sampler, SamplerConfig};
use tiny_llm_grader::prop::check as check_property;
use tiny_llm_grader::{cases, ok, should_fail, should_fail_naming, Case};

const DAY: &str = "day7";

fn sampler(temperature: f32, top_k: Option<usize>, top_p: Option<f32>, seed: u64) -> Sampler {
    ok(
        "Sampler::new",
        Sampler::new(SamplerConfig {
            temperature,
            top_k,
            top_p,
            seed,
        }),
    )
}

fn greedy() -> Sampler {
    ok("Sampler::new", Sampler::new(SamplerConfig::default()))
}

fn row(logits: &[f32]) -> Array {
    Array::from_slice(logits, &[logits.len() as i32])
}

/// Draws `n` tokens from the same logits and counts each id.
fn histogram(s: &mut Sampler, logits: &Array, vocab: usize, n: usize) -> Vec<usize> {
    let mut counts = vec![0; vocab];
    for _ in 0..n {
        let id = ok("Sampler::sample", s.sample(logits)) as usize;
        assert!(
            id < vocab,
            "[wrong numbers] sampled id {id} is outside the vocabulary 0..{vocab}"
        );
        counts[id] += 1;
    }
    counts
}

/// Greedy picks the largest logit, whatever the shape (`V`, `1 x V`) and
/// dtype, and the first of equal maxima.
#[test]
fn sampler_greedy_hand_worked() {
    let mut s = greedy();
    let logits = [0.1f32, 2.0, -1.0, 1.9];
    let got = ok("Sampler::sample", s.sample(&row(&logits)));
    assert_eq!(got, 1, "[wrong numbers] greedy over {logits:?}");
    let as_1xv = Array::from_slice(&logits, &[1, 4]);
    assert_eq!(
        ok("Sampler::sample", s.sample(&as_1xv)),
        1,
        "[wrong numbers] greedy over a 1 x V row"
    );
    let f16 = row(&logits).as_dtype(Dtype::Float16).unwrap();
    assert_eq!(
        ok("Sampler::sample", s.sample(&f16)),
        1,
        "[wrong numbers] greedy over f16 logits"
    );
    let tie = [-3.0f32, 5.0, 1.0, 5.0];
    assert_eq!(
        ok("Sampler::sample", s.sample(&row(&tie))),
        1,
        "[wrong numbers] greedy over {tie:?}: the first maximum"
    );
}

/// Out-of-range arguments and logits of the wrong shape are errors that name
/// the problem, not panics.
#[test]
fn sampler_rejects_bad_arguments() {
    let bad = [
        (
            "temperature",
            SamplerConfig {
                temperature: -0.5,
                ..Default::default()
            },
        ),
        (
            "temperature",
            SamplerConfig {
                temperature: f32::NAN,
                ..Default::default()
            },
        ),
        (
            "temperature",
            SamplerConfig {
                temperature: f32::INFINITY,
                ..Default::default()
            },
        ),
        (
            "top_k",
            SamplerConfig {
                temperature: 1.0,
                top_k: Some(0),
                ..Default::default()
            },
        ),
        (
            "top_p",
            SamplerConfig {
                temperature: 1.0,
                top_p: Some(0.0),
                ..Default::default()
            },
        ),
        (
            "top_p",
            SamplerConfig {
                temperature: 1.0,
                top_p: Some(1.5),
                ..Default::default()
            },
        ),
        (
            "top_p",
            SamplerConfig {
                temperature: 1.0,
                top_p: Some(f32::NAN),
                ..Default::default()
            },
        ),
    ];
    for (name, config) in bad {
        should_fail_naming(
            "Sampler::new",
            &format!("{config:?}"),
            Sampler::new(config),
            &[name],
        );
    }
    let edge = SamplerConfig {
        temperature: 1.0,
        top_k: Some(1),
        top_p: Some(1.0),
        seed: 0,
    };
    ok("Sampler::new (top_k 1, top_p 1)", Sampler::new(edge));

    let mut s = sampler(1.0, None, None, 0);
    for shape in [vec![2, 3], vec![0], vec![1, 0], vec![1, 1, 3], vec![]] {
        let n: i32 = shape.iter().product();
        let logits = Array::from_slice(&vec![0.5f32; n as usize], &shape);
        should_fail(
            "Sampler::sample",
            &format!("Sampler::sample on logits of shape {shape:?} (expected [V] or [1, V])"),
            s.sample(&logits),
        );
    }
}

/// Seeded draws match mlx-lm's `make_sampler` after `mx.random.seed(seed)`,
/// token for token (fixtures/gen/day7.py). Rows alternate between `V` and
/// `1 x V`.
#[test]
fn sampler_matches_mlx_lm() {
    for name in cases(DAY, "sample_") {
        let case = Case::load(DAY, &name);
        let config = SamplerConfig {
            temperature: case.meta("temperature").expect("temperature"),
            top_k: case.meta("top_k"),
            top_p: case.meta("top_p"),
            seed: case.meta("seed").expect("seed"),
        };
        let logits = case.get("logits");
        let want = case.get("tokens");
        want.eval().unwrap();
        let want = want.as_slice::<u32>().to_vec();
        let vocab = logits.dim(1);
        let mut s = ok("Sampler::new", Sampler::new(config));
        let mut got = Vec::new();
        for (step, _) in want.iter().enumerate() {
            let r = logits.index(step as i32);
            let r = if step % 2 == 0 {
                r
            } else {
                r.reshape(&[1, vocab]).unwrap()
            };
            got.push(ok("Sampler::sample", s.sample(&r)));
        }
        if got != want {
            let first = got.iter().zip(&want).position(|(g, w)| g != w).unwrap();
            panic!(
                "[wrong numbers] case {}/{name} ({config:?}): step {first} drew {}, mlx-lm drew {}\n  got      {got:?}\n  expected {want:?}",
                DAY, got[first], want[first]
            );
        }
    }
}

/// probs (0.5, 0.3, 0.15, 0.05): top-p 0.75 keeps {0, 1}; top-p 0.85 keeps
/// {0, 1, 2}; top-k 2 keeps {0, 1}. Every kept token is drawn sometimes.
#[test]
fn sampler_top_p_top_k_hand_worked() {
    let probs = [0.5f32, 0.3, 0.15, 0.05];
    let logits = row(&probs.map(f32::ln));
    for (what, config, kept) in [
        ("top_p 0.75", (None, Some(0.75)), vec![0, 1]),
        ("top_p 0.85", (None, Some(0.85)), vec![0, 1, 2]),
        ("top_k 2", (Some(2), None), vec![0, 1]),
        ("top_k 3, top_p 0.75", (Some(3), Some(0.75)), vec![0, 1]),
    ] {
        let mut s = sampler(1.0, config.0, config.1, 7);
        let counts = histogram(&mut s, &logits, 4, 300);
        for (id, &n) in counts.iter().enumerate() {
            let keep = kept.contains(&id);
            assert!(
                (n > 0) == keep,
                "[wrong numbers] {what} over probs {probs:?}: token {id} drawn {n} times of 300 (kept set {kept:?}); counts {counts:?}"
            );
        }
    }
}

/// Temperature reshapes the distribution: p^(1/T), renormalised.
/// probs (0.6, 0.3, 0.1): at T = 1 the draws follow them, at T = 0.5 they
/// follow (0.783, 0.196, 0.022).
#[test]
fn sampler_temperature_hand_worked() {
    let probs = [0.6f32, 0.3, 0.1];
    let logits = row(&probs.map(f32::ln));
    for (t, want) in [
        (1.0f32, [0.6, 0.3, 0.1]),
        (0.5, [0.36 / 0.46, 0.09 / 0.46, 0.01 / 0.46]),
    ] {
        let mut s = sampler(t, None, None, 3);
        let n = 1500;
        let counts = histogram(&mut s, &logits, 3, n);
        for (id, (&c, &p)) in counts.iter().zip(&want).enumerate() {
            let freq = c as f64 / n as f64;
            assert!(
                (freq - p).abs() < 0.04,
                "[wrong numbers] temperature {t}: token {id} drawn with frequency {freq:.3}, expected about {p:.3} (counts {counts:?})"
            );
        }
    }
}

/// The same seed draws the same tokens; another seed other tokens.
#[test]
fn sampler_seed_reproduces() {
    let logits = row(&(0..50).map(|i| (i % 7) as f32 * 0.3).collect::<Vec<_>>());
    let draw = |seed| {
        let mut s = sampler(1.0, None, None, seed);
        (0..30)
            .map(|_| ok("Sampler::sample", s.sample(&logits)))
            .collect::<Vec<_>>()
    };
    let (a, b, c) = (draw(11), draw(11), draw(12));
    assert_eq!(
        a, b,
        "[wrong numbers] two samplers with seed 11 drew different tokens"
    );
    assert_ne!(
        a, c,
        "[wrong numbers] seeds 11 and 12 drew the same 30 tokens: is the seed used?"
    );
    let distinct: std::collections::BTreeSet<_> = a.iter().collect();
    assert!(distinct.len() > 3, "[wrong numbers] 30 draws at temperature 1 gave only {distinct:?}: is a new key used for every draw?");
}

// Properties (proptest): they hold for every input, not only the fixtures'.

fn logits_strategy() -> impl Strategy<Value = Vec<f32>> {
    prop::collection::vec(-8.0f32..8.0, 2..48)
}

/// Probabilities (softmax in f64) of `logits`.
fn probs(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max) as f64;
    let e: Vec<f64> = logits.iter().map(|&l| (l as f64 - max).exp()).collect();
    let z: f64 = e.iter().sum();
    e.iter().map(|v| v / z).collect()
}

/// Temperature 0 returns the index of the first largest logit.
#[test]
fn prop_greedy_is_argmax() {
    check_property(
        "prop_greedy_is_argmax",
        48,
        (logits_strategy(), any::<bool>()),
        |(logits, one_row)| {
            let n = logits.len() as i32;
            let a = if one_row {
                Array::from_slice(&logits, &[1, n])
            } else {
                row(&logits)
            };
            let got = ok("Sampler::sample", greedy().sample(&a)) as usize;
            let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
            let first = logits.iter().position(|&l| l == max).unwrap();
            prop_assert_eq!(got, first, "[wrong numbers] greedy over {:?}", logits);
            Ok(())
        },
    );
}

/// Top-k draws one of the k largest: fewer than k logits are larger.
#[test]
fn prop_top_k_never_picks_excluded() {
    check_property(
        "prop_top_k_never_picks_excluded",
        48,
        (logits_strategy(), 1usize..8, 0.2f32..3.0, any::<u64>()),
        |(logits, k, t, seed)| {
            let mut s = sampler(t, Some(k), None, seed);
            for _ in 0..4 {
                let id = ok("Sampler::sample", s.sample(&row(&logits))) as usize;
                prop_assert!(
                    id < logits.len(),
                    "[wrong numbers] id {} outside the vocabulary",
                    id
                );
                let larger = logits.iter().filter(|&&l| l > logits[id]).count();
                prop_assert!(
                    larger < k,
                    "[wrong numbers] top_k {} at temperature {} drew token {} (logit {}), but {} logits are larger: {:?}",
                    k, t, id, logits[id], larger, logits
                );
            }
            Ok(())
        },
    );
}

/// Top-p draws a token whose more likely tokens hold less than p
/// (probability at temperature 1), also combined with top-k.
#[test]
fn prop_top_p_never_picks_excluded() {
    check_property(
        "prop_top_p_never_picks_excluded",
        48,
        (
            logits_strategy(),
            0.05f32..0.99,
            prop::option::of(1usize..8),
            0.2f32..3.0,
            any::<u64>(),
        ),
        |(logits, p, k, t, seed)| {
            let pr = probs(&logits);
            let mut s = sampler(t, k, Some(p), seed);
            for _ in 0..4 {
                let id = ok("Sampler::sample", s.sample(&row(&logits))) as usize;
                prop_assert!(
                    id < logits.len(),
                    "[wrong numbers] id {} outside the vocabulary",
                    id
                );
                let above: f64 = pr.iter().filter(|&&q| q > pr[id]).sum();
                prop_assert!(
                    above < p as f64 + 1e-5,
                    "[wrong numbers] top_p {} drew token {} (prob {:.5}), but the more likely tokens already hold {:.5}: probs {:?}",
                    p, id, pr[id], above, pr
                );
                if let Some(k) = k {
                    let larger = logits.iter().filter(|&&l| l > logits[id]).count();
                    prop_assert!(larger < k, "[wrong numbers] top_k {} with top_p {} drew token {} with {} larger logits", k, p, id, larger);
                }
            }
            Ok(())
        },
    );
}
// The detokenizer and the generation loop.

fn tiny_tokenizer() -> Tokenizer {
    let dir = checked_dir("tiny-qwen2");
    Tokenizer::from_dir(&dir).unwrap_or_else(|e| panic!("[fixture] {}: {e}", dir.display()))
}

fn encode(tok: &Tokenizer, text: &str) -> Vec<u32> {
    tok.encode(text, false).expect("encode")
}

/// Pushes every id; returns the pieces and what `flush` returned.
fn detokenize(tok: &Tokenizer, ids: &[u32]) -> (Vec<String>, String) {
    let mut d = StreamingDetokenizer::new(tok);
    let pieces = ids
        .iter()
        .map(|&id| ok("StreamingDetokenizer::push", d.push(id)))
        .collect();
    (pieces, ok("StreamingDetokenizer::flush", d.flush()))
}

/// Text whose 2-, 3- and 4-byte characters the tiny tokenizer splits into
/// byte tokens; each piece is whole UTF-8 and together they are the text.
#[test]
fn detokenizer_multibyte_split_across_tokens() {
    let tok = tiny_tokenizer();
    let text = "Grüße aus Köln, 東京は晴れ 🦀🦀! naïve café ok";
    let ids = encode(&tok, text);
    let broken = ids
        .iter()
        .filter(|&&id| tok.decode(&[id]).unwrap().contains('\u{FFFD}'))
        .count();
    assert!(
        broken >= 8,
        "[fixture] the tiny tokenizer should split multi-byte characters ({broken} partial tokens)"
    );
    let (pieces, rest) = detokenize(&tok, &ids);
    for (i, p) in pieces.iter().enumerate() {
        assert!(
            !p.contains('\u{FFFD}'),
            "[wrong numbers] push of token {i} (id {}) returned {p:?}: a broken character; hold text back while it ends in U+FFFD",
            ids[i]
        );
    }
    let joined: String = pieces.concat();
    assert_eq!(
        rest, "",
        "[wrong numbers] flush after complete text must return nothing"
    );
    assert_eq!(
        joined, text,
        "[wrong numbers] the pieces joined differ from the text"
    );
    let held = pieces.iter().filter(|p| p.is_empty()).count();
    assert!(
        held >= 6,
        "[wrong numbers] only {held} pushes held text back; partial characters must wait"
    );
}

/// Whole-character tokens come out at once, each as its own text.
#[test]
fn detokenizer_emits_whole_tokens_at_once() {
    let tok = tiny_tokenizer();
    let text = "Hello world, this is a plain sentence.\n\tfn main() {}";
    let ids = encode(&tok, text);
    let (pieces, rest) = detokenize(&tok, &ids);
    for (i, (p, &id)) in pieces.iter().zip(&ids).enumerate() {
        let want = tok.decode(&[id]).unwrap();
        assert_eq!(
            p, &want,
            "[wrong numbers] push of token {i} (id {id}) should return its text at once"
        );
    }
    assert_eq!(
        rest, "",
        "[wrong numbers] flush after complete text must return nothing"
    );
}

/// A character cut off at the end (generation stopped in the middle of 🦀's
/// tokens) is dropped by `flush`, never emitted as U+FFFD, and the
/// detokenizer starts afresh after it.
#[test]
fn detokenizer_flush_drops_an_incomplete_character() {
    let tok = tiny_tokenizer();
    let crab = encode(&tok, "ok🦀");
    assert!(
        crab.len() >= 3,
        "[fixture] 🦀 should take several tiny tokens, got {crab:?}"
    );
    let cut = &crab[..crab.len() - 1];
    let mut d = StreamingDetokenizer::new(&tok);
    let pieces: String = cut
        .iter()
        .map(|&id| ok("StreamingDetokenizer::push", d.push(id)))
        .collect();
    assert_eq!(
        pieces, "ok",
        "[wrong numbers] the pushes of \"ok\" and part of 🦀 must give \"ok\" and hold the partial 🦀 back"
    );
    let rest = ok("StreamingDetokenizer::flush", d.flush());
    assert_eq!(
        rest, "",
        "[wrong numbers] flush of an incomplete final character must drop it (no U+FFFD), got {rest:?}"
    );
    let a = encode(&tok, "a");
    assert_eq!(
        ok("StreamingDetokenizer::push", d.push(a[0])),
        "a",
        "[wrong numbers] after flush the detokenizer starts afresh"
    );
    assert_eq!(
        ok("StreamingDetokenizer::flush", d.flush()),
        "",
        "[wrong numbers] nothing is held back after \"a\""
    );
}

/// A model that returns the logits of a fixed script of tokens (one-hot, 10
/// over 0) and records the ids it was given.
struct Scripted {
    script: Vec<u32>,
    vocab: i32,
    prompt_len: usize,
    seen: RefCell<Vec<Vec<i32>>>,
}

impl Scripted {
    fn new(script: Vec<u32>, prompt_len: usize) -> Scripted {
        Scripted {
            script,
            vocab: 1088,
            prompt_len,
            seen: RefCell::new(Vec::new()),
        }
    }
}

impl CausalLm for Scripted {
    fn forward_last(&self, inputs: &Array) -> tiny_llm_common::Result<Array> {
        assert!(
            inputs.ndim() == 2 && inputs.dim(0) == 1,
            "[wrong shape] forward_last got ids of shape {:?}, expected [1, L]",
            inputs.shape()
        );
        assert_eq!(
            inputs.dtype(),
            Dtype::Int32,
            "[wrong shape] forward_last got ids of dtype {:?}, expected int32",
            inputs.dtype()
        );
        inputs.eval()?;
        let ids = inputs.as_slice::<i32>().to_vec();
        let step = ids
            .len()
            .checked_sub(self.prompt_len)
            .expect("[wrong shape] the model got fewer ids than the prompt");
        self.seen.borrow_mut().push(ids);
        let next = *self
            .script
            .get(step)
            .expect("[wrong numbers] the model was called past the end of its script");
        let mut logits = vec![0.0f32; self.vocab as usize];
        logits[next as usize] = 10.0;
        Ok(Array::from_slice(&logits, &[1, self.vocab]))
    }
}

/// Stops on an end-of-sequence id (kept in `tokens`, not printed), streams
/// whole characters, and reruns the whole sequence at every step (week 1).
#[test]
fn generate_stops_at_eos() {
    let tok = tiny_tokenizer();
    let prompt = encode(
        &tok,
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    );
    let answer = "Hallo, 東京 🦀!";
    let eos = tok.eos_token_ids()[0];
    let mut script = encode(&tok, answer);
    script.push(eos);
    let after = encode(&tok, " never");
    script.extend(&after);
    let model = Scripted::new(script.clone(), prompt.len());
    let mut pieces = Vec::new();
    let stats = ok(
        "simple_generate",
        simple_generate(&model, &tok, &prompt, 100, &mut greedy(), |p| {
            pieces.push(p.to_string())
        }),
    );
    let n = script.len() - after.len();
    assert_eq!(
        stats.tokens,
        script[..n],
        "[wrong numbers] generated ids (greedy over the script, eos included)"
    );
    assert_eq!(
        stats.finish_reason,
        FinishReason::Stop,
        "[wrong numbers] finish reason"
    );
    assert_eq!(
        stats.prompt_tokens,
        prompt.len(),
        "[wrong numbers] prompt_tokens"
    );
    assert_eq!(
        stats.generated_tokens(),
        n,
        "[wrong numbers] generated_tokens"
    );
    assert_eq!(
        pieces.concat(),
        answer,
        "[wrong numbers] streamed text (the eos is not printed)"
    );
    assert!(
        pieces
            .iter()
            .all(|p| !p.is_empty() && !p.contains('\u{FFFD}')),
        "[wrong numbers] pieces must be non-empty whole UTF-8: {pieces:?}"
    );
    let seen = model.seen.borrow();
    assert_eq!(
        seen.len(),
        n,
        "[wrong numbers] the model should run once per generated token"
    );
    for (i, ids) in seen.iter().enumerate() {
        let want: Vec<i32> = prompt
            .iter()
            .chain(&script[..i])
            .map(|&t| t as i32)
            .collect();
        assert_eq!(
            ids, &want,
            "[wrong numbers] step {i}: the model must get the prompt and every token so far"
        );
    }
    assert!(
        stats.prefill_seconds > 0.0 && stats.decode_seconds >= 0.0,
        "[wrong numbers] timings {stats:?}"
    );
    assert!(
        stats.prefill_tokens_per_second().is_finite() && stats.decode_tokens_per_second() > 0.0,
        "[wrong numbers] speeds of {stats:?}"
    );
}

/// Stops after `max_tokens`; what is held back at that point is flushed.
#[test]
fn generate_stops_at_max_tokens() {
    let tok = tiny_tokenizer();
    let prompt = encode(&tok, "Once upon a time");
    let script = encode(&tok, " there was a crab 🦀 who");
    let cut = script
        .iter()
        .position(|&id| tok.decode(&[id]).unwrap().contains('\u{FFFD}'))
        .unwrap()
        + 1;
    let model = Scripted::new(script.clone(), prompt.len());
    let mut text = String::new();
    let stats = ok(
        "simple_generate",
        simple_generate(&model, &tok, &prompt, cut, &mut greedy(), |p| {
            text.push_str(p)
        }),
    );
    assert_eq!(stats.tokens, script[..cut], "[wrong numbers] generated ids");
    assert_eq!(
        stats.finish_reason,
        FinishReason::Length,
        "[wrong numbers] finish reason"
    );
    assert_eq!(
        text,
        tok.decode(&script[..cut])
            .unwrap()
            .trim_end_matches('\u{FFFD}'),
        "[wrong numbers] text, without the cut-off character (no U+FFFD at the end)"
    );
    let none = ok(
        "simple_generate (max_tokens 0)",
        simple_generate(&model, &tok, &prompt, 0, &mut greedy(), |_| {}),
    );
    assert!(
        none.tokens.is_empty(),
        "[wrong numbers] max_tokens 0 generates nothing"
    );
}

/// Prompt and answer must fit the model's context (`CausalLm::context_len`):
/// a longer prompt is an error naming both lengths, and generation stops
/// with `Length` once the ids fill the context, whatever `max_tokens` says
/// (`usize::MAX` included).
#[test]
fn generate_respects_the_model_context() {
    struct Limited(Scripted, usize);
    impl CausalLm for Limited {
        fn forward_last(&self, inputs: &Array) -> tiny_llm_common::Result<Array> {
            assert!(
                inputs.dim(1) as usize <= self.1,
                "[wrong shape] forward_last got {} ids, past the context of {}",
                inputs.dim(1),
                self.1
            );
            self.0.forward_last(inputs)
        }
        fn context_len(&self) -> Option<usize> {
            Some(self.1)
        }
    }
    let tok = tiny_tokenizer();
    let prompt = encode(&tok, "Once upon a time");
    let script = encode(&tok, " there was a crab who");
    let p = prompt.len();
    // room for the prompt and 2 more ids: 3 tokens are sampled (the last
    // one is never fed back)
    let model = Limited(Scripted::new(script.clone(), p), p + 2);
    let stats = ok(
        "simple_generate",
        simple_generate(&model, &tok, &prompt, usize::MAX, &mut greedy(), |_| {}),
    );
    assert_eq!(stats.tokens, script[..3], "[wrong numbers] generated ids");
    assert_eq!(
        stats.finish_reason,
        FinishReason::Length,
        "[wrong numbers] finish reason at a full context"
    );
    let small = Limited(Scripted::new(script.clone(), p), p - 1);
    match simple_generate(&small, &tok, &prompt, 4, &mut greedy(), |_| {}) {
        Err(e) => {
            let e = e.to_string();
            assert!(
                e.contains(&p.to_string()) && e.contains(&(p - 1).to_string()),
                "[wrong numbers] the error should name the prompt's length ({p}) and the context ({}): {e}",
                p - 1
            );
        }
        Ok(_) => panic!(
            "[should fail] simple_generate should have returned an error but returned a value (case: a prompt of {p} tokens, a context of {})",
            p - 1
        ),
    }
}

/// Sampling goes through the sampler it is given (seeded: reproducible).
#[test]
fn generate_uses_the_sampler() {
    struct Flat;
    impl CausalLm for Flat {
        fn forward_last(&self, inputs: &Array) -> tiny_llm_common::Result<Array> {
            let _ = inputs;
            // uniform over the 256 byte tokens, nothing else
            let logits: Vec<f32> = (0..1088)
                .map(|i| if i < 256 { 0.0 } else { f32::NEG_INFINITY })
                .collect();
            Ok(Array::from_slice(&logits, &[1, 1088]))
        }
    }
    let tok = tiny_tokenizer();
    let prompt = encode(&tok, "x");
    let run = |seed| {
        let mut s = sampler(1.0, None, None, seed);
        ok(
            "simple_generate",
            simple_generate(&Flat, &tok, &prompt, 12, &mut s, |_| {}),
        )
        .tokens
    };
    let (a, b, c) = (run(5), run(5), run(6));
    assert_eq!(
        a, b,
        "[wrong numbers] the same seed must generate the same tokens"
    );
    assert_ne!(
        a, c,
        "[wrong numbers] seeds 5 and 6 generated the same tokens: is the sampler used?"
    );
    assert!(
        a.iter().all(|&t| t < 256),
        "[wrong numbers] drew a token of probability 0: {a:?}"
    );
}

/// An empty prompt is an error, not a panic.
#[test]
fn generate_rejects_empty_prompt() {
    let tok = tiny_tokenizer();
    let model = Scripted::new(vec![1, 2, 3], 0);
    let r = simple_generate(&model, &tok, &[], 3, &mut greedy(), |_| {});
    should_fail("simple_generate", "simple_generate with an empty prompt", r);
}

/// The whole week-1 path on the tiny Qwen2 (float32): chat template, your
/// loader and model, `simple_generate`; greedy, and sampled at temperature 5
/// with top-k 100 and seed 7, both give mlx-lm's tokens
/// (fixtures/gen/day7.py checked that no choice was a near-tie).
#[test]
fn generate_tiny_model_matches_mlx_lm() {
    let dir = checked_dir("tiny-qwen2");
    let tok = tiny_tokenizer();
    let config =
        Qwen2Config::from_file(&dir.join("config.json")).expect("[fixture] tiny-qwen2 config");
    let weights = ok("load_weights", load_weights(&dir, Dtype::Float32));
    let model = ok(
        "Qwen2ModelWeek1::new",
        Qwen2ModelWeek1::new(&config, &weights, Dtype::Float32),
    );
    for name in cases(DAY, "tiny_generate_") {
        let case = Case::load(DAY, &name);
        let content: String = case.meta("prompt").expect("prompt");
        let text = tok
            .apply_chat_template(&[ChatMessage::user(content)], true)
            .expect("chat template");
        let prompt = encode(&tok, &text);
        let want_prompt: Vec<u32> = {
            let p = case.get("prompt_ids");
            p.eval().unwrap();
            p.as_slice::<i32>().iter().map(|&v| v as u32).collect()
        };
        assert_eq!(
            prompt, want_prompt,
            "[fixture] the tiny tokenizer's chat prompt differs from mlx-lm's"
        );
        let want = case.get("tokens");
        want.eval().unwrap();
        let want = want.as_slice::<u32>().to_vec();
        let config = SamplerConfig {
            temperature: case.meta("temperature").expect("temperature"),
            top_k: case.meta("top_k"),
            top_p: case.meta("top_p"),
            seed: case.meta("seed").expect("seed"),
        };
        let mut s = ok("Sampler::new", Sampler::new(config));
        let stats = ok(
            "simple_generate",
            simple_generate(&model, &tok, &prompt, want.len(), &mut s, |_| {}),
        );
        assert_eq!(
            stats.tokens, want,
            "[wrong numbers] case {DAY}/{name} ({config:?}): generated ids differ from mlx-lm's"
        );
    }
}
