//! Day 20: speculative decoding on the tiny Qwen2.
//!
//! The oracle is the target alone: its greedy tokens from day 8's cached
//! forward pass, one prefill then one token a step
//! (`tiny_engine::solo`), compared exactly. Drafts: the target itself
//! (every proposal accepted, so the pass counts follow from `n` and `k`
//! alone: worked out by hand below) and copies of the tiny Qwen2 whose
//! weights get seeded Gaussian noise (same vocabulary, other guesses).

use mlx_rs::ops::indexing::IndexOp;
use mlx_rs::{Array, Dtype};
use tiny_llm_common::{Checkpoint, KvCache, Qwen2Config};
use tiny_llm_grader::fixture::checked_dir;
use tiny_llm_grader::imp::qwen2_week2::Qwen2ModelWeek2;
use tiny_llm_grader::imp::speculative::{speculative_generate, SpecDecoder, SpecStats};
use tiny_llm_grader::tiny_engine::{prompt, solo, tiny_model};
use tiny_llm_grader::{assert_close, ok, should_fail_naming, Tol};

const DAY: &str = "day20";

/// The tiny Qwen2's config and weights.
fn tiny_checkpoint() -> (Qwen2Config, Checkpoint) {
    let dir = checked_dir("tiny-qwen2");
    let config = Qwen2Config::from_file(&dir.join("config.json"))
        .unwrap_or_else(|e| panic!("[fixture] tiny-qwen2 config: {e}"));
    let checkpoint =
        Checkpoint::load(&dir).unwrap_or_else(|e| panic!("[fixture] tiny-qwen2 weights: {e}"));
    (config, checkpoint)
}

/// The tiny Qwen2 with N(0, sigma^2) noise (seeded) added to every matrix:
/// a draft with the target's vocabulary that guesses differently now and
/// then.
fn perturbed(sigma: f32, seed: u64) -> Qwen2ModelWeek2 {
    let (config, mut checkpoint) = tiny_checkpoint();
    let mut names: Vec<String> = checkpoint.weights.keys().cloned().collect();
    names.sort();
    for (i, name) in names.iter().enumerate() {
        let w = &checkpoint.weights[name];
        if w.ndim() != 2 {
            continue;
        }
        let part = mlx_rs::random::key(seed * 1000 + i as u64).expect("key");
        let noise = mlx_rs::random::normal::<f32>(w.shape(), None, None, &part).expect("normal");
        let w2 = w
            .as_dtype(Dtype::Float32)
            .and_then(|w| w.add(noise.multiply(Array::from_f32(sigma))?))
            .expect("noise");
        checkpoint.weights.insert(name.clone(), w2);
    }
    ok(
        "Qwen2ModelWeek2::new",
        Qwen2ModelWeek2::new(&config, &checkpoint, Dtype::Float32),
    )
}

/// Prompts of 1, 6 and 17 tokens.
fn prompts() -> Vec<Vec<u32>> {
    vec![prompt(0, 1), prompt(1, 6), prompt(2, 17)]
}

/// The target alone, greedy (the oracle).
fn alone(target: &Qwen2ModelWeek2, p: &[u32], n: usize) -> Vec<u32> {
    solo(target, p, n)
}

#[test]
fn matches_the_target_alone_for_k_1_to_5() {
    let target = tiny_model();
    // A draft that agrees about half the time (0.42 of proposals accepted
    // with k = 3 on these prompts, measured) and one that rarely does (0.08).
    let drafts = [
        ("sigma 0.05", perturbed(0.05, 7)),
        ("sigma 0.1", perturbed(0.1, 7)),
    ];
    let n = 20;
    for p in prompts() {
        let want = alone(&target, &p, n);
        for (name, draft) in &drafts {
            for k in 1..=5 {
                let (got, stats) = ok(
                    "speculative_generate",
                    speculative_generate(&target, draft, &p, k, n, &[]),
                );
                assert_eq!(
                    got,
                    want,
                    "[wrong numbers] draft {name}, k = {k}, prompt of {} tokens: the output \
                     must be the target's greedy tokens alone",
                    p.len()
                );
                assert!(
                    stats.accepted <= stats.proposed && stats.target_passes <= n,
                    "[wrong numbers] draft {name}, k = {k}: {stats:?}"
                );
            }
        }
    }
}

#[test]
fn draft_equal_to_target_accepts_everything_hand_worked() {
    let target = tiny_model();
    let draft = tiny_model();
    // (n, k, target passes): every round emits k + 1 tokens (k accepted, one
    // bonus) except the last, which proposes only what is still wanted less
    // one. n = 7, k = 2: rounds of 3, 3, 1 tokens (the last proposes 0).
    // n = 12, k = 3: 4 + 4 + 4. n = 12, k = 5: 6 + 6. n = 10, k = 4: 5 + 5.
    // n = 9, k = 1: 2 + 2 + 2 + 2 + 1. n = 1, k = 4: 1 (nothing proposed).
    let cases: [(usize, usize, usize); 6] = [
        (7, 2, 3),
        (12, 3, 3),
        (12, 5, 2),
        (10, 4, 2),
        (9, 1, 5),
        (1, 4, 1),
    ];
    for p in prompts() {
        let want = alone(&target, &p, 12);
        for (n, k, passes) in cases {
            assert_eq!(passes, n.div_ceil(k + 1), "the table");
            let (got, stats) = ok(
                "speculative_generate",
                speculative_generate(&target, &draft, &p, k, n, &[]),
            );
            assert_eq!(
                got,
                want[..n],
                "[wrong numbers] n = {n}, k = {k}: the target's greedy tokens"
            );
            let proposed = n - passes;
            let expected = SpecStats {
                proposed,
                accepted: proposed,
                target_passes: passes,
                draft_passes: proposed,
            };
            assert_eq!(
                stats, expected,
                "[wrong numbers] n = {n}, k = {k}, a draft equal to the target: every proposal \
                 accepted, one target pass per k + 1 tokens"
            );
            let rate = stats.acceptance_rate();
            if proposed == 0 {
                assert_eq!(rate, None, "[wrong numbers] nothing proposed: no rate");
            } else {
                assert_eq!(rate, Some(1.0), "[wrong numbers] n = {n}, k = {k}");
            }
        }
    }
}

#[test]
fn a_disagreeing_draft_changes_nothing_but_the_acceptance_rate() {
    let target = tiny_model();
    let n = 24;
    let total = |draft: &Qwen2ModelWeek2| -> SpecStats {
        let mut sum = SpecStats::default();
        for p in prompts() {
            let want = alone(&target, &p, n);
            let (got, s) = ok(
                "speculative_generate",
                speculative_generate(&target, draft, &p, 3, n, &[]),
            );
            assert_eq!(
                got, want,
                "[wrong numbers] a draft that disagrees must not change the output"
            );
            assert!(s.accepted <= s.proposed, "[wrong numbers] {s:?}");
            // each round proposes k' and emits accepted + 1 tokens
            assert_eq!(
                s.accepted + s.target_passes,
                n,
                "[wrong numbers] every round emits its accepted drafts and one target token: \
                 {s:?}"
            );
            assert_eq!(s.draft_passes, s.proposed, "[wrong numbers] {s:?}");
            sum.proposed += s.proposed;
            sum.accepted += s.accepted;
            sum.target_passes += s.target_passes;
            sum.draft_passes += s.draft_passes;
        }
        sum
    };
    let same = total(&tiny_model());
    let mild = total(&perturbed(0.05, 7));
    let wild = total(&perturbed(0.1, 7));
    assert_eq!(
        same.acceptance_rate(),
        Some(1.0),
        "[wrong numbers] {same:?}"
    );
    for (name, s) in [("sigma 0.05", mild), ("sigma 0.1", wild)] {
        let rate = s.acceptance_rate().unwrap_or(1.0);
        assert!(
            s.accepted < s.proposed && rate < 1.0,
            "[wrong numbers] draft {name} guesses differently, yet every proposal was \
             accepted: {s:?}"
        );
        assert!(
            s.target_passes > same.target_passes,
            "[wrong numbers] draft {name}: rejections cost target passes: {s:?} against {same:?}"
        );
    }
    assert!(
        wild.acceptance_rate() < mild.acceptance_rate(),
        "[wrong numbers] more noise, fewer accepted: {wild:?} against {mild:?}"
    );
}

/// Keys and values of `tokens` from a fresh prefill of `model`.
fn fresh_state(model: &Qwen2ModelWeek2, tokens: &[u32]) -> Vec<(Array, Array)> {
    let mut cache = model.new_cache();
    let ids: Vec<i32> = tokens.iter().map(|&t| t as i32).collect();
    let input = Array::from_slice(&ids, &[1, ids.len() as i32]);
    ok("forward", model.forward(&input, 0, &mut cache));
    cache
        .iter()
        .map(|c| c.state().expect("a prefilled cache has a state"))
        .collect()
}

/// Every layer of `caches` holds the keys and values of `tokens`.
fn assert_holds(what: &str, model: &Qwen2ModelWeek2, caches: &[Box<dyn KvCache>], tokens: &[u32]) {
    let want = fresh_state(model, tokens);
    for (i, (c, (k, v))) in caches.iter().zip(&want).enumerate() {
        assert_eq!(
            c.offset(),
            tokens.len(),
            "[wrong numbers] {what}, layer {i}: offset"
        );
        let (ck, cv) = c.state().expect("state");
        let tol = Tol::for_day(DAY, Dtype::Float32);
        assert_close(DAY, what, &format!("layer {i} keys"), &ck, k, tol);
        assert_close(DAY, what, &format!("layer {i} values"), &cv, v, tol);
    }
}

#[test]
fn after_a_rejection_the_caches_hold_the_accepted_tokens() {
    let target = tiny_model();
    let draft = perturbed(0.05, 7);
    let p = prompt(1, 6);
    let want = alone(&target, &p, 40);
    let mut dec = ok("SpecDecoder::new", SpecDecoder::new(&target, &draft, &p));
    assert_eq!((dec.target_offset(), dec.draft_offset()), (0, 0));
    let (mut rejected, mut all_accepted) = (0, 0);
    let k = 3;
    while want.len() - dec.generated().len() > k {
        let before = dec.tokens().len();
        let out = ok("SpecDecoder::step", dec.step(k));
        let len = dec.tokens().len();
        assert_eq!(
            len,
            before + out.len(),
            "[wrong numbers] tokens grow by the output"
        );
        assert!(
            (1..=k + 1).contains(&out.len()),
            "[wrong numbers] a round emits 1..=k + 1 tokens, got {out:?}"
        );
        assert_eq!(
            dec.generated(),
            &want[..dec.generated().len()],
            "[wrong numbers] the target's greedy tokens"
        );
        // The target keeps every token but the newest; the draft as many
        // after a rejection, one fewer when all k were accepted (it never
        // ran the last draft).
        assert_eq!(
            dec.target_offset(),
            len - 1,
            "[wrong numbers] the target's caches after a round of {} tokens",
            out.len()
        );
        let draft_want = if out.len() == k + 1 { len - 2 } else { len - 1 };
        assert_eq!(
            dec.draft_offset(),
            draft_want,
            "[wrong numbers] the draft's caches after a round of {} tokens",
            out.len()
        );
        if out.len() < k + 1 {
            rejected += 1;
            if rejected <= 2 {
                // the rewound caches hold exactly the accepted tokens'
                // keys and values, as a fresh prefill computes them
                let held = &dec.tokens()[..len - 1];
                assert_holds(
                    "target after a rejection",
                    &target,
                    dec.target_cache(),
                    held,
                );
                assert_holds("draft after a rejection", &draft, dec.draft_cache(), held);
            }
        } else {
            all_accepted += 1;
        }
    }
    assert!(
        rejected > 0 && all_accepted > 0,
        "the test wants both kinds of round (draft sigma 0.05): {rejected} rejected, \
         {all_accepted} all accepted"
    );
    // k = 0: a plain target step, no draft pass
    let before = dec.stats();
    let out = ok("SpecDecoder::step", dec.step(0));
    assert_eq!(out.len(), 1, "[wrong numbers] k = 0 emits one token");
    let s = dec.stats();
    assert_eq!(
        (s.proposed, s.draft_passes, s.target_passes),
        (
            before.proposed,
            before.draft_passes,
            before.target_passes + 1
        ),
        "[wrong numbers] k = 0"
    );
    assert_eq!(dec.generated(), &want[..dec.generated().len()]);
}

#[test]
fn eos_stops_after_the_first_eos_token() {
    let target = tiny_model();
    let draft = perturbed(0.05, 7);
    let p = prompt(2, 17);
    let want = alone(&target, &p, 20);
    // the 6th token as eos: the output ends at its first occurrence
    let eos = want[5];
    let first = want.iter().position(|&t| t == eos).expect("present") + 1;
    for k in [1, 2, 4] {
        let (got, _) = ok(
            "speculative_generate",
            speculative_generate(&target, &draft, &p, k, 20, &[9999, eos]),
        );
        assert_eq!(
            got,
            want[..first],
            "[wrong numbers] k = {k}: the tokens up to and including the first eos ({eos})"
        );
    }
}

#[test]
fn rejects_bad_input_naming_it() {
    let target = tiny_model();
    let p = prompt(0, 4);
    let gen = |draft: &Qwen2ModelWeek2, p: &[u32], k: usize, n: usize| {
        speculative_generate(&target, draft, p, k, n, &[])
    };
    should_fail_naming(
        "speculative_generate",
        "k = 0",
        gen(&target, &p, 0, 4),
        &["k"],
    );
    should_fail_naming(
        "speculative_generate",
        "empty prompt",
        gen(&target, &[], 2, 4),
        &["empty"],
    );
    should_fail_naming(
        "SpecDecoder::new",
        "empty prompt",
        SpecDecoder::new(&target, &target, &[]),
        &["empty"],
    );
    should_fail_naming(
        "speculative_generate",
        "id 1088 in a vocabulary of 1088",
        gen(&target, &[3, 1088], 2, 4),
        &["1088", "token 1"],
    );
    should_fail_naming(
        "speculative_generate",
        "2040 tokens + 16 in a context of 2048",
        gen(&target, &vec![5; 2040], 2, 16),
        &["2048"],
    );
    // a draft with a smaller vocabulary: the tiny Qwen2's first 1024 rows
    let (mut config, mut checkpoint) = tiny_checkpoint();
    config.vocab_size = 1024;
    let name = "model.embed_tokens.weight";
    let rows = checkpoint.weights[name].index((0..1024, ..));
    checkpoint.weights.insert(name.into(), rows);
    let small = ok(
        "Qwen2ModelWeek2::new",
        Qwen2ModelWeek2::new(&config, &checkpoint, Dtype::Float32),
    );
    should_fail_naming(
        "speculative_generate",
        "vocabularies of 1088 and 1024",
        gen(&small, &p, 2, 4),
        &["1088", "1024"],
    );
    should_fail_naming(
        "SpecDecoder::new",
        "vocabularies of 1088 and 1024",
        SpecDecoder::new(&target, &small, &p),
        &["1088", "1024"],
    );
    // a round that would pass the context leaves the decoder as it was
    let long: Vec<u32> = (0..2046).map(|i| (i * 7 % 1000) as u32).collect();
    let mut dec = ok(
        "SpecDecoder::new",
        SpecDecoder::new(&target, &target, &long),
    );
    should_fail_naming(
        "SpecDecoder::step",
        "2046 tokens + 3 drafts",
        dec.step(3),
        &["2048"],
    );
    assert_eq!(dec.tokens().len(), 2046);
    assert_eq!((dec.target_offset(), dec.draft_offset()), (0, 0));
}
