//! Day 13: a batch of sequences of different lengths, and chunked prefill.
//!
//! Batch (`batch`, `Qwen2ModelWeek2::forward_batch`): left padding checked by
//! hand (mlx-lm's `BatchKVCache` example); the `B x 1 x L x S` mask against
//! mlx-lm's `create_causal_mask(N, offset, left_padding)`
//! (fixtures/gen/day13.py), by hand, and by its rules as a property; RoPE
//! with one offset per row against `mx.fast.rope` with an array offset and,
//! as a property, against day 2's RoPE run on each row alone. On the tiny
//! Qwen2 and Llama: a left-padded batch of rows of different lengths,
//! prefilled then decoded a few steps, gives each row's logits as run alone
//! (day 8's `forward`, itself checked against mlx-lm).
//!
//! Chunked prefill (`chunked_prefill`): with budgets 1, 7, 64 and more than
//! the prompt, the last logits equal one forward pass over the prompt, and
//! greedy decoding after it gives mlx-lm's tokens (day 7's fixture). The
//! planner: hand-worked plans, and properties (never over budget, every
//! token exactly once and in order, first come first served). Bad input
//! (budget 0, lengths that disagree, an empty prompt) is a clear error.

use mlx_rs::ops::indexing::TryIndexOp;
use mlx_rs::{Array, Dtype};
use proptest::prelude::*;
use std::cell::RefCell;
use std::collections::HashMap;
use tiny_llm_common::{CachedLm, Checkpoint, KvCache, Qwen2Config};
use tiny_llm_grader::fixture::{checked_dir, checked_file};
use tiny_llm_grader::imp::batch::{
    batch_causal_mask, left_pad, rope_rows, row_offsets, LeftPadded,
};
use tiny_llm_grader::imp::chunked_prefill::{
    chunked_prefill, plan_prefill, prefill_planned, Chunk, PrefillPlanner, Prefilled,
};
use tiny_llm_grader::imp::positional_encoding::RoPE;
use tiny_llm_grader::imp::qwen2_week2::Qwen2ModelWeek2;
use tiny_llm_grader::prop::check as check_property;
use tiny_llm_grader::{assert_close, cases, ok, should_fail, should_fail_naming, Case, Tol};

const DAY: &str = "day13";
const NEG: f32 = f32::NEG_INFINITY;

fn values(a: &Array) -> Vec<f32> {
    let a = a
        .as_dtype(Dtype::Float32)
        .and_then(|a| a.contiguous())
        .expect("contiguous");
    a.eval().expect("eval");
    a.as_slice::<f32>().to_vec()
}

fn ints(a: &Array) -> Vec<i32> {
    let a = a
        .as_dtype(Dtype::Int32)
        .and_then(|a| a.contiguous())
        .expect("contiguous");
    a.eval().expect("eval");
    a.as_slice::<i32>().to_vec()
}

// ---- left padding -----------------------------------------------------------

fn pad(seqs: &[&[u32]]) -> LeftPadded {
    ok("left_pad", left_pad(seqs))
}

/// mlx-lm's `BatchKVCache` docstring example: [1, 3, 5], [7], [2, 6, 8, 9].
#[test]
fn left_pad_hand_worked() {
    let got = pad(&[&[1, 3, 5], &[7], &[2, 6, 8, 9]]);
    assert_eq!(
        got.ids.shape(),
        &[3, 4],
        "[wrong shape] left_pad: ids are {:?}, expected [3, 4]",
        got.ids.shape()
    );
    assert_eq!(
        got.ids.dtype(),
        Dtype::Int32,
        "[wrong shape] left_pad: ids must be int32"
    );
    assert_eq!(
        ints(&got.ids),
        [0, 1, 3, 5, 0, 0, 0, 7, 2, 6, 8, 9],
        "[wrong numbers] left_pad: ids"
    );
    assert_eq!(
        got.left_padding,
        [1, 3, 0],
        "[wrong numbers] left_pad: left_padding"
    );
    let one = pad(&[&[4, 2]]);
    assert_eq!(ints(&one.ids), [4, 2], "[wrong numbers] left_pad: one row");
    assert_eq!(one.left_padding, [0], "[wrong numbers] left_pad: one row");
}

#[test]
fn left_pad_rejects_bad_input() {
    should_fail_naming("left_pad", "no sequences", left_pad(&[]), &["empty"]);
    should_fail_naming(
        "left_pad",
        "sequence 1 empty",
        left_pad(&[&[1, 2], &[]]),
        &["sequence 1"],
    );
    should_fail_naming(
        "left_pad",
        "an id past i32::MAX",
        left_pad(&[&[1, u32::MAX]]),
        &["int32"],
    );
}

// ---- the batch mask -----------------------------------------------------------

fn mask(l: i32, offset: i32, pads: &[i32]) -> Array {
    ok(
        "batch_causal_mask",
        batch_causal_mask(l, offset, pads, Dtype::Float32),
    )
}

#[track_caller]
fn expect_mask(what: &str, got: &Array, shape: &[i32], want: &[f32]) {
    assert_eq!(
        got.shape(),
        shape,
        "[wrong shape] {what}: the mask is {:?}, expected {shape:?} (B x 1 x L x S)",
        got.shape()
    );
    assert_eq!(values(got), want, "[wrong numbers] {what}");
}

/// The docs' example (L = 3, no cache, row 1 with 2 padding tokens), a
/// decode step after it, and the f16 dtype.
#[test]
fn batch_causal_mask_hand_worked() {
    let got = mask(3, 0, &[0, 2]);
    #[rustfmt::skip]
    let want = [
        0., NEG, NEG,
        0., 0., NEG,
        0., 0., 0.,
        // row 1: the two padding queries see only themselves
        0., NEG, NEG,
        NEG, 0., NEG,
        NEG, NEG, 0.,
    ];
    expect_mask(
        "batch_causal_mask(3, 0, [0, 2])",
        &got,
        &[2, 1, 3, 3],
        &want,
    );
    // one new token per row at column 3: row 1 still hides its padding
    let got = mask(1, 3, &[0, 2]);
    expect_mask(
        "batch_causal_mask(1, 3, [0, 2])",
        &got,
        &[2, 1, 1, 4],
        &[0., 0., 0., 0., NEG, NEG, 0., 0.],
    );
    let half = ok(
        "batch_causal_mask",
        batch_causal_mask(2, 1, &[1], Dtype::Float16),
    );
    assert_eq!(
        half.dtype(),
        Dtype::Float16,
        "[wrong shape] batch_causal_mask(.., Float16) must return float16"
    );
    // queries at columns 1, 2; column 0 is padding
    expect_mask(
        "batch_causal_mask(2, 1, [1], f16)",
        &half,
        &[1, 1, 2, 3],
        &[NEG, 0., NEG, NEG, 0., 0.],
    );
}

fn json_list(s: &str) -> Vec<i32> {
    s.trim_matches(|c| c == '[' || c == ']')
        .split(',')
        .filter_map(|v| v.trim().parse().ok())
        .collect()
}

/// mlx-lm's `create_causal_mask(L, offset, left_padding)`: the fixture's
/// `expected` is mlx-lm's mask plus each padding query's diagonal; every
/// real query's row must be mlx-lm's exactly.
#[test]
fn batch_causal_mask_matches_mlx_lm() {
    let test = "batch_causal_mask_matches_mlx_lm";
    for name in cases(DAY, "mask_") {
        let c = Case::load(DAY, &name);
        let l: i32 = c.meta("L").expect("L");
        let offset: i32 = c.meta("offset").expect("offset");
        let pads = json_list(&c.meta::<String>("left_padding").expect("left_padding"));
        let got = mask(l, offset, &pads);
        assert_close(
            test,
            &c.id,
            "mask",
            &got,
            c.get("expected"),
            Tol::for_day(DAY, Dtype::Float32),
        );
        let keep = values(c.get("mlx_lm_keep"));
        let got = values(&got);
        let s = (offset + l) as usize;
        for (b, &p) in pads.iter().enumerate() {
            for i in 0..l as usize {
                let q = offset as usize + i;
                if (q as i32) < p {
                    continue; // a padding query
                }
                let row = (b * l as usize + i) * s;
                for k in 0..s {
                    let want = if keep[row + k] > 0.5 { 0.0 } else { NEG };
                    assert_eq!(
                        got[row + k],
                        want,
                        "[wrong numbers] {test}, case {}: row {b}, query {i} (column {q}), key {k}: \
                         got {}, mlx-lm's mask says {want}",
                        c.id,
                        got[row + k]
                    );
                }
            }
        }
    }
}

/// Random `L`, offset and paddings: the mask's rules, element by element.
/// Causal (no key after the query); a real query sees exactly its row's
/// real keys up to itself; a padding query sees only itself; so every query
/// sees at least one key. With no padding each row is `causal_mask(L, S)`.
#[test]
fn prop_batch_causal_mask_rules() {
    let strategy = (1i32..6, 0i32..6, prop::collection::vec(0i32..10, 1..4));
    check_property(
        "prop_batch_causal_mask_rules",
        32,
        strategy,
        |(l, offset, pads)| {
            let got = values(&mask(l, offset, &pads));
            let s = offset + l;
            prop_assert_eq!(got.len(), pads.len() * (l * s) as usize);
            for (b, &p) in pads.iter().enumerate() {
                for i in 0..l {
                    let q = offset + i;
                    let row = &got[((b as i32 * l + i) * s) as usize..][..s as usize];
                    prop_assert!(row.contains(&0.0), "row {} query {} sees no key", b, i);
                    for k in 0..s {
                        let visible = row[k as usize] == 0.0;
                        prop_assert!(
                            visible || row[k as usize] == NEG,
                            "row {} query {} key {}: {} is neither 0 nor -inf",
                            b,
                            i,
                            k,
                            row[k as usize]
                        );
                        let want = if q < p { k == q } else { p <= k && k <= q };
                        prop_assert_eq!(
                            visible,
                            want,
                            "L {} offset {} pads {:?}: row {} query {} (column {}) key {}",
                            l,
                            offset,
                            &pads,
                            b,
                            i,
                            q,
                            k
                        );
                    }
                }
            }
            Ok(())
        },
    );
}

#[test]
fn batch_causal_mask_rejects_bad_input() {
    let call = "batch_causal_mask";
    let f32_ = Dtype::Float32;
    should_fail_naming(call, "L = 0", batch_causal_mask(0, 0, &[0], f32_), &["L"]);
    should_fail_naming(
        call,
        "offset -1",
        batch_causal_mask(2, -1, &[0], f32_),
        &["offset"],
    );
    should_fail_naming(
        call,
        "no rows",
        batch_causal_mask(2, 0, &[], f32_),
        &["left_padding"],
    );
    should_fail_naming(
        call,
        "a negative padding in row 1",
        batch_causal_mask(2, 0, &[0, -1], f32_),
        &["left_padding[1]"],
    );
    should_fail(
        call,
        "an int32 mask",
        batch_causal_mask(2, 0, &[0], Dtype::Int32),
    );
}

// ---- RoPE per row -----------------------------------------------------------

/// A RoPE with tables computed here, in f64 on the host:
/// `cos(p * base^(-2i/D))` and `sin(..)` for `p < seq_len`, `i < D/2` (so
/// the test does not depend on day 2's `RoPE::new`).
fn rope_table(dims: i32, seq_len: i32, base: f32, traditional: bool) -> RoPE {
    let half = dims / 2;
    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    for p in 0..seq_len {
        for i in 0..half {
            let theta = (base as f64).powf(-2.0 * i as f64 / dims as f64);
            cos.push((p as f64 * theta).cos() as f32);
            sin.push((p as f64 * theta).sin() as f32);
        }
    }
    RoPE {
        dims,
        seq_len,
        base,
        traditional,
        cos: Array::from_slice(&cos, &[seq_len, half]),
        sin: Array::from_slice(&sin, &[seq_len, half]),
    }
}

fn rope_of(c: &Case, d: i32) -> RoPE {
    let seq_len: i32 = c.meta("seq_len").expect("seq_len");
    let base: f32 = c.meta("base").expect("base");
    let traditional: bool = c.meta("traditional").expect("traditional");
    rope_table(d, seq_len, base, traditional)
}

fn rope_rows_case(test: &str, dtype: &str) {
    for name in cases(DAY, "rope_rows_")
        .into_iter()
        .filter(|n| n.ends_with(&format!("_{dtype}")))
    {
        let c = Case::load(DAY, &name);
        let x = c.get("x");
        let rope = rope_of(&c, x.dim(3));
        let offsets = ints(c.get("offsets"));
        let got = ok("rope_rows", rope_rows(x, view(&rope), &offsets));
        let want = c.get("expected");
        assert_eq!(
            got.dtype(),
            want.dtype(),
            "[wrong shape] {test}, case {}: rope_rows must return x's dtype",
            c.id
        );
        assert_close(
            test,
            &c.id,
            "rotated",
            &got,
            want,
            Tol::for_day(DAY, want.dtype()),
        );
    }
}

/// `mx.fast.rope` with one offset per row (halves and interleaved pairs).
#[test]
fn rope_rows_matches_mlx_fast_rope_f32() {
    rope_rows_case("rope_rows_matches_mlx_fast_rope_f32", "f32");
}

#[test]
fn rope_rows_matches_mlx_fast_rope_bf16() {
    rope_rows_case("rope_rows_matches_mlx_fast_rope_bf16", "bf16");
}

/// Random rows and offsets (some negative: left padding): row `b` equals
/// day 2's `RoPE::forward` of that row alone, token `i` at position
/// `max(offsets[b] + i, 0)`.
#[test]
fn prop_rope_rows_equals_rope_per_row() {
    let strategy =
        (1i32..4, 1i32..5, any::<bool>(), 0u64..1000).prop_flat_map(|(b, l, trad, seed)| {
            (
                Just((b, l, trad, seed)),
                prop::collection::vec(-4i32..12, b as usize),
            )
        });
    check_property(
        "prop_rope_rows_equals_rope_per_row",
        16,
        strategy,
        |((b, l, trad, seed), offsets)| {
            let (h, d) = (2, 8);
            let rope = rope_table(d, 16, 10000.0, trad);
            let key = mlx_rs::random::key(seed).expect("key");
            let x = mlx_rs::random::normal::<f32>(&[b, l, h, d], None, None, &key).expect("x");
            let got = ok("rope_rows", rope_rows(&x, view(&rope), &offsets));
            prop_assert_eq!(got.shape(), &[b, l, h, d]);
            for (r, &o) in offsets.iter().enumerate() {
                for i in 0..l {
                    let tok = x.try_index((r as i32..r as i32 + 1, i..i + 1)).expect("x");
                    let want = ok("RoPE::forward", rope.forward(&tok, (o + i).max(0)));
                    let got_tok = got
                        .try_index((r as i32..r as i32 + 1, i..i + 1))
                        .expect("got");
                    let (g, w) = (values(&got_tok), values(&want));
                    for (j, (g, w)) in g.iter().zip(&w).enumerate() {
                        prop_assert!(
                            (g - w).abs() <= 1e-6 + 1e-5 * w.abs(),
                            "row {} (offset {}) token {} element {}: got {}, day 2's RoPE at \
                             position {} gives {}",
                            r,
                            o,
                            i,
                            j,
                            g,
                            (o + i).max(0),
                            w
                        );
                    }
                }
            }
            Ok(())
        },
    );
}

#[test]
fn rope_rows_rejects_bad_input() {
    let rope = rope_table(8, 16, 10000.0, false);
    let x = Array::zeros::<f32>(&[2, 3, 1, 8]).expect("zeros");
    should_fail_naming(
        "rope_rows",
        "3 offsets for 2 rows",
        rope_rows(&x, view(&rope), &[0, 1, 2]),
        &["offsets"],
    );
    should_fail_naming(
        "rope_rows",
        "row 1 at positions 14..17 with seq_len 16",
        rope_rows(&x, view(&rope), &[0, 14]),
        &["row 1", "seq_len"],
    );
    let three_d = Array::zeros::<f32>(&[3, 1, 8]).expect("zeros");
    should_fail("rope_rows", "3-D x", rope_rows(&three_d, view(&rope), &[0]));
    let wide = Array::zeros::<f32>(&[1, 3, 1, 6]).expect("zeros");
    should_fail(
        "rope_rows",
        "D = 6 for dims 8",
        rope_rows(&wide, view(&rope), &[0]),
    );
    assert_eq!(
        row_offsets(5, &[0, 2, 7]),
        [5, 3, -2],
        "[wrong numbers] row_offsets(5, [0, 2, 7])"
    );
}

// ---- the tiny models ----------------------------------------------------------

/// The tiny Qwen2 of fixtures/tiny-qwen2, or day 5's tiny Llama.
fn tiny(model: &str) -> (Qwen2Config, Checkpoint) {
    match model {
        "qwen2" => {
            let dir = checked_dir("tiny-qwen2");
            let config = Qwen2Config::from_file(&dir.join("config.json"))
                .unwrap_or_else(|e| panic!("[fixture] tiny-qwen2 config: {e}"));
            let checkpoint = Checkpoint::load(&dir)
                .unwrap_or_else(|e| panic!("[fixture] tiny-qwen2 weights: {e}"));
            (config, checkpoint)
        }
        "llama" => {
            let path = checked_file("day5/weights_tiny_llama.safetensors");
            let (weights, meta) = Array::load_safetensors_with_metadata(&path)
                .unwrap_or_else(|e| panic!("[fixture] cannot read {}: {e}", path.display()));
            let config = Qwen2Config::from_json(&meta["config"], "weights_tiny_llama")
                .unwrap_or_else(|e| panic!("[fixture] weights_tiny_llama: bad config: {e}"));
            let checkpoint = Checkpoint {
                weights,
                quantization: None,
                per_layer: HashMap::new(),
            };
            (config, checkpoint)
        }
        other => panic!("[fixture] unknown tiny model {other:?}"),
    }
}

fn build(model: &str) -> Qwen2ModelWeek2 {
    let (config, checkpoint) = tiny(model);
    ok(
        "Qwen2ModelWeek2::new",
        Qwen2ModelWeek2::new(&config, &checkpoint, Dtype::Float32),
    )
}

/// `x - logsumexp(x)` along the last axis, in float32.
fn log_probs(x: &Array) -> Array {
    let x = x.as_dtype(Dtype::Float32).expect("as_dtype");
    let lse = x.logsumexp_axis(-1, true).expect("logsumexp");
    x.subtract(lse).expect("subtract")
}

#[track_caller]
fn assert_logits(test: &str, case: &str, got: &Array, want: &Array) {
    if got.shape() != want.shape() {
        panic!(
            "[wrong shape] {test}, case {case}, tensor `logits`: got shape {:?}, expected {:?}",
            got.shape(),
            want.shape()
        );
    }
    assert_close(
        test,
        case,
        "log_softmax(logits)",
        &log_probs(got),
        &log_probs(want),
        Tol::for_day(DAY, Dtype::Float32),
    );
}

fn row_ids(ids: &[u32]) -> Array {
    let v: Vec<i32> = ids.iter().map(|&t| t as i32).collect();
    Array::from_slice(&v, &[1, v.len() as i32])
}

/// Three prompts of 5, 2 and 7 tokens (ids below the tiny Llama's vocabulary of 320), left-padded, prefilled in one
/// `forward_batch`, then 3 decode steps (one token per row, teacher
/// forced): at every real position each row's logits equal day 8's
/// `forward` of that row alone, with its own caches. (This catches a
/// padding key seen by a real query, not a row's RoPE positions shifted
/// as a whole: attention only sees relative positions; the `rope_rows`
/// tests check those.)
fn batch_equals_rows(test: &str, model_name: &str) {
    let prompts: [&[u32]; 3] = [&[11, 250, 3, 99, 42], &[7, 203], &[1, 2, 3, 4, 5, 6, 7]];
    let steps: [[u32; 3]; 3] = [[5, 8, 13], [21, 34, 55], [89, 144, 233]];
    let batch = pad(&prompts);
    let model = build(model_name);
    let l = batch.ids.dim(1);
    let mut cache = model.new_cache();
    let got = ok(
        "Qwen2ModelWeek2::forward_batch",
        model.forward_batch(&batch.ids, 0, &batch.left_padding, &mut cache),
    );
    let mut alone: Vec<Vec<Box<dyn KvCache>>> = prompts.iter().map(|_| model.new_cache()).collect();
    for (b, p) in prompts.iter().enumerate() {
        let want = ok(
            "Qwen2ModelWeek2::forward",
            model.forward(&row_ids(p), 0, &mut alone[b]),
        );
        let pad_b = batch.left_padding[b];
        let got_b = got
            .try_index((b as i32..b as i32 + 1, pad_b..l))
            .expect("slice");
        let case = format!(
            "tiny {model_name}, prefill of a batch of 3 ({} tokens, {pad_b} padding), row {b}",
            p.len()
        );
        assert_logits(test, &case, &got_b, &want);
    }
    for (s, step) in steps.iter().enumerate() {
        let ids: Vec<i32> = step.iter().map(|&t| t as i32).collect();
        let input = Array::from_slice(&ids, &[3, 1]);
        let offset = l as usize + s;
        let got = ok(
            "Qwen2ModelWeek2::forward_batch",
            model.forward_batch(&input, offset, &batch.left_padding, &mut cache),
        );
        for (b, p) in prompts.iter().enumerate() {
            let want = ok(
                "Qwen2ModelWeek2::forward",
                model.forward(&row_ids(&[step[b]]), p.len() + s, &mut alone[b]),
            );
            let got_b = got.try_index(b as i32..b as i32 + 1).expect("slice");
            let case = format!("tiny {model_name}, decode step {s} (column {offset}), row {b}");
            assert_logits(test, &case, &got_b, &want);
        }
    }
}

#[test]
fn batch_forward_matches_each_row_alone_qwen2() {
    batch_equals_rows("batch_forward_matches_each_row_alone_qwen2", "qwen2");
}

/// No biases, one KV head, an untied `lm_head`.
#[test]
fn batch_forward_matches_each_row_alone_llama() {
    batch_equals_rows("batch_forward_matches_each_row_alone_llama", "llama");
}

/// Paddings that disagree with the batch, a wrong offset, a negative
/// padding: errors naming what was wrong, the caches unchanged.
#[test]
fn batch_forward_rejects_bad_input() {
    let call = "Qwen2ModelWeek2::forward_batch";
    let batch = pad(&[&[1, 2, 3], &[4]]);
    let model = build("qwen2");
    let mut cache = model.new_cache();
    should_fail_naming(
        call,
        "3 paddings for 2 rows",
        model.forward_batch(&batch.ids, 0, &[0, 2, 0], &mut cache),
        &["left_padding"],
    );
    should_fail_naming(
        call,
        "a negative padding",
        model.forward_batch(&batch.ids, 0, &[0, -2], &mut cache),
        &["left_padding"],
    );
    should_fail_naming(
        call,
        "offset 2 with empty caches",
        model.forward_batch(&batch.ids, 2, &batch.left_padding, &mut cache),
        &["offset"],
    );
    for (i, c) in cache.iter().enumerate() {
        assert_eq!(
            c.offset(),
            0,
            "[wrong numbers] a rejected forward_batch must leave the caches as they were (layer {i})"
        );
    }
    let flat = Array::from_slice(&[1i32, 2, 3], &[3]);
    should_fail(
        call,
        "1-D inputs",
        model.forward_batch(&flat, 0, &[0], &mut cache),
    );
}

// ---- chunked prefill ----------------------------------------------------------

/// Day 7's greedy case: 64 prompt ids, and mlx-lm's 12 greedy tokens.
fn day7_greedy() -> (Vec<u32>, Vec<u32>) {
    let c = Case::load("day7", "tiny_generate_greedy");
    let prompt = ints(c.get("prompt_ids"))
        .iter()
        .map(|&v| v as u32)
        .collect();
    let tokens = values(c.get("tokens")).iter().map(|&v| v as u32).collect();
    (prompt, tokens)
}

fn argmax(logits: &Array) -> u32 {
    let v = values(logits);
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best as u32
}

const BUDGETS: [usize; 4] = [1, 7, 64, 100];

/// Budgets 1, 7, 64 (the whole 64-token prompt at once) and 100: the last
/// logits equal one forward pass over the prompt, the caches hold the
/// prompt, and the next step's logits agree too.
#[test]
fn chunked_prefill_equals_one_shot() {
    let test = "chunked_prefill_equals_one_shot";
    let model = build("qwen2");
    let (prompt, tokens) = day7_greedy();
    let mut one_cache = model.new_cache();
    let one = ok(
        "Qwen2ModelWeek2::forward_last",
        model.forward_last(&row_ids(&prompt), 0, &mut one_cache),
    );
    let next = row_ids(&tokens[..1]);
    let one_next = ok(
        "Qwen2ModelWeek2::forward_last",
        model.forward_last(&next, prompt.len(), &mut one_cache),
    );
    for budget in BUDGETS {
        let mut cache = model.new_cache();
        let got = ok(
            "chunked_prefill",
            chunked_prefill(&model, &prompt, budget, &mut cache),
        );
        let case = format!("tiny qwen2, 64-token prompt, budget {budget}");
        assert_logits(test, &case, &got, &one);
        for (i, c) in cache.iter().enumerate() {
            assert_eq!(
                c.offset(),
                prompt.len(),
                "[wrong numbers] {test}: budget {budget}: layer {i}'s cache holds {} tokens, \
                 expected the prompt's {}",
                c.offset(),
                prompt.len()
            );
        }
        let got_next = ok(
            "Qwen2ModelWeek2::forward_last",
            model.forward_last(&next, prompt.len(), &mut cache),
        );
        assert_logits(
            test,
            &format!("{case}, then one token"),
            &got_next,
            &one_next,
        );
    }
}

/// Chunked prefill then greedy decoding gives mlx-lm's 12 greedy tokens
/// (fixtures/day7 `tiny_generate_greedy`), for every budget.
#[test]
fn chunked_prefill_greedy_matches_mlx_lm() {
    let model = build("qwen2");
    let (prompt, want) = day7_greedy();
    for budget in BUDGETS {
        let mut cache = model.new_cache();
        let mut logits = ok(
            "chunked_prefill",
            chunked_prefill(&model, &prompt, budget, &mut cache),
        );
        let mut got = Vec::new();
        while got.len() < want.len() {
            let t = argmax(&logits);
            got.push(t);
            if got.len() == want.len() {
                break;
            }
            let offset = prompt.len() + got.len() - 1;
            logits = ok(
                "Qwen2ModelWeek2::forward_last",
                model.forward_last(&row_ids(&[t]), offset, &mut cache),
            );
        }
        assert_eq!(
            got, want,
            "[wrong numbers] chunked_prefill_greedy_matches_mlx_lm: budget {budget}: greedy ids \
             differ from mlx-lm's (case day7/tiny_generate_greedy)"
        );
    }
}

/// A prompt that continues cached tokens: the second part, chunked, gives
/// the logits of the whole prompt read at once.
#[test]
fn chunked_prefill_continues_a_cache() {
    let model = build("qwen2");
    let (prompt, _) = day7_greedy();
    let one = ok(
        "Qwen2ModelWeek2::forward_last",
        model.forward_last(&row_ids(&prompt), 0, &mut model.new_cache()),
    );
    let mut cache = model.new_cache();
    ok(
        "chunked_prefill",
        chunked_prefill(&model, &prompt[..20], 64, &mut cache),
    );
    let got = ok(
        "chunked_prefill",
        chunked_prefill(&model, &prompt[20..], 9, &mut cache),
    );
    assert_logits(
        "chunked_prefill_continues_a_cache",
        "20 tokens, then 44 in chunks of 9",
        &got,
        &one,
    );
}

/// A scripted [`CachedLm`]: records the ids of every forward pass, grows
/// its counting caches by each pass's length, and returns `1 x vocab`
/// logits holding the number of tokens seen so far (so the last pass's
/// logits are recognisable).
struct Recorder {
    calls: RefCell<Vec<Vec<i32>>>,
    context: usize,
    vocab: usize,
}

/// A cache that only counts (the scripted model's).
struct CountingCache(usize);

impl KvCache for CountingCache {
    fn offset(&self) -> usize {
        self.0
    }
    fn update_and_fetch(
        &mut self,
        keys: &Array,
        values: &Array,
    ) -> tiny_llm_common::Result<(Array, Array)> {
        self.0 += keys.dim(2) as usize;
        Ok((keys.clone(), values.clone()))
    }
    fn trim(&mut self, n: usize) -> usize {
        let n = n.min(self.0);
        self.0 -= n;
        n
    }
    fn state(&self) -> Option<(Array, Array)> {
        None
    }
}

impl Recorder {
    fn new(context: usize, vocab: usize) -> Recorder {
        Recorder {
            calls: RefCell::new(Vec::new()),
            context,
            vocab,
        }
    }
}

impl CachedLm for Recorder {
    fn new_cache(&self) -> Vec<Box<dyn KvCache>> {
        (0..2)
            .map(|_| Box::new(CountingCache(0)) as Box<dyn KvCache>)
            .collect()
    }
    fn forward_last_cached(
        &self,
        inputs: &Array,
        cache: &mut [Box<dyn KvCache>],
    ) -> tiny_llm_common::Result<Array> {
        assert_eq!(
            inputs.ndim(),
            2,
            "[wrong shape] the model was given ids of shape {:?}, expected 1 x L",
            inputs.shape()
        );
        self.calls.borrow_mut().push(ints(inputs));
        let l = inputs.dim(1);
        let k = Array::zeros::<f32>(&[1, 1, l, 1])?;
        for c in cache.iter_mut() {
            c.update_and_fetch(&k, &k)?;
        }
        let seen = cache[0].offset() as f32;
        Ok(Array::from_slice(
            &vec![seen; self.vocab],
            &[1, self.vocab as i32],
        ))
    }
    fn context_len(&self) -> Option<usize> {
        Some(self.context)
    }
    fn vocab_size(&self) -> Option<usize> {
        Some(self.vocab)
    }
}

/// With a scripted model: one forward pass per chunk, `1 x n` ids, the
/// prompt's tokens in order, `budget` of them in every chunk but the last;
/// the last pass's logits come back. A prompt after cached tokens goes on
/// from the caches' offset.
#[test]
fn chunked_prefill_reads_chunks_of_at_most_budget() {
    let prompt: Vec<u32> = (0..64).map(|i| (i * 7 % 50) as u32).collect();
    for budget in BUDGETS {
        let model = Recorder::new(100, 50);
        let mut cache = model.new_cache();
        let logits = ok(
            "chunked_prefill",
            chunked_prefill(&model, &prompt, budget, &mut cache),
        );
        let want: Vec<Vec<i32>> = prompt
            .chunks(budget)
            .map(|c| c.iter().map(|&t| t as i32).collect())
            .collect();
        assert_eq!(
            *model.calls.borrow(),
            want,
            "[wrong numbers] chunked_prefill, budget {budget}: the forward passes' ids \
             (expected the 64-token prompt in chunks of {budget}, in order)"
        );
        assert_eq!(
            values(&logits)[0],
            64.0,
            "[wrong numbers] chunked_prefill, budget {budget}: must return the last pass's logits"
        );
        // 10 more tokens continue the cache: chunks of `budget` from there
        model.calls.borrow_mut().clear();
        ok(
            "chunked_prefill",
            chunked_prefill(&model, &prompt[..10], budget, &mut cache),
        );
        assert_eq!(
            cache[0].offset(),
            74,
            "[wrong numbers] chunked_prefill, budget {budget}: the caches after 64 + 10 tokens"
        );
        assert_eq!(
            model.calls.borrow().len(),
            10usize.div_ceil(budget),
            "[wrong numbers] chunked_prefill, budget {budget}: forward passes for 10 tokens"
        );
    }
}

/// Budget 0, an empty prompt, an id past the vocabulary, more tokens than
/// the context: errors naming what was wrong, before any forward pass.
#[test]
fn chunked_prefill_rejects_bad_input() {
    let call = "chunked_prefill";
    let model = Recorder::new(8, 50);
    let mut cache = model.new_cache();
    should_fail_naming(
        call,
        "budget 0",
        chunked_prefill(&model, &[1, 2, 3], 0, &mut cache),
        &["budget"],
    );
    should_fail_naming(
        call,
        "an empty prompt",
        chunked_prefill(&model, &[], 4, &mut cache),
        &["empty"],
    );
    should_fail_naming(
        call,
        "id 50 with a vocabulary of 50",
        chunked_prefill(&model, &[1, 50], 4, &mut cache),
        &["vocabulary"],
    );
    should_fail_naming(
        call,
        "9 tokens with a context of 8",
        chunked_prefill(&model, &[1; 9], 4, &mut cache),
        &["context"],
    );
    ok(
        "chunked_prefill",
        chunked_prefill(&model, &[1; 5], 4, &mut cache),
    );
    model.calls.borrow_mut().clear();
    should_fail_naming(
        call,
        "5 cached and 4 new tokens with a context of 8",
        chunked_prefill(&model, &[1; 4], 4, &mut cache),
        &["context"],
    );
    assert!(
        model.calls.borrow().is_empty(),
        "[wrong numbers] a rejected chunked_prefill must not run the model (it ran {:?})",
        model.calls.borrow()
    );
    assert_eq!(
        cache[0].offset(),
        5,
        "[wrong numbers] a rejected chunked_prefill must leave the caches as they were"
    );
}

// ---- the planner --------------------------------------------------------------

fn chunk(seq: usize, start: usize, len: usize) -> Chunk {
    Chunk { seq, start, len }
}

#[test]
fn planner_hand_worked() {
    let got = ok("plan_prefill", plan_prefill(4, &[3, 6, 1]));
    let want = vec![
        vec![chunk(0, 0, 3), chunk(1, 0, 1)],
        vec![chunk(1, 1, 4)],
        vec![chunk(1, 5, 1), chunk(2, 0, 1)],
    ];
    assert_eq!(got, want, "[wrong numbers] plan_prefill(4, [3, 6, 1])");
    // arrivals between steps: a late sequence waits for the earlier ones
    let mut p = ok("PrefillPlanner::new", PrefillPlanner::new(5));
    assert_eq!(p.budget(), 5, "[wrong numbers] PrefillPlanner::budget");
    assert!(
        p.next_step().is_empty(),
        "[wrong numbers] an empty planner's step must be empty"
    );
    ok("PrefillPlanner::add", p.add(10, 7));
    assert_eq!(p.next_step(), [chunk(10, 0, 5)], "[wrong numbers] step 1");
    ok("PrefillPlanner::add", p.add(20, 2));
    ok("PrefillPlanner::add", p.add(30, 9));
    assert_eq!(p.pending(), 13, "[wrong numbers] pending after step 1");
    assert_eq!(
        p.next_step(),
        [chunk(10, 5, 2), chunk(20, 0, 2), chunk(30, 0, 1)],
        "[wrong numbers] step 2"
    );
    // sequence 10 is done: its id may be queued again
    ok("PrefillPlanner::add", p.add(10, 1));
    assert_eq!(p.next_step(), [chunk(30, 1, 5)], "[wrong numbers] step 3");
    assert_eq!(
        p.next_step(),
        [chunk(30, 6, 3), chunk(10, 0, 1)],
        "[wrong numbers] step 4"
    );
    assert_eq!(p.pending(), 0, "[wrong numbers] pending at the end");
}

#[test]
fn planner_rejects_bad_input() {
    should_fail_naming(
        "PrefillPlanner::new",
        "budget 0",
        PrefillPlanner::new(0),
        &["budget"],
    );
    should_fail_naming(
        "plan_prefill",
        "budget 0",
        plan_prefill(0, &[3]),
        &["budget"],
    );
    should_fail_naming(
        "plan_prefill",
        "a sequence of 0 tokens",
        plan_prefill(4, &[3, 0]),
        &["sequence 1"],
    );
    let mut p = ok("PrefillPlanner::new", PrefillPlanner::new(4));
    ok("PrefillPlanner::add", p.add(7, 3));
    should_fail_naming(
        "PrefillPlanner::add",
        "sequence 7 twice",
        p.add(7, 2),
        &["sequence 7"],
    );
    assert_eq!(
        p.pending(),
        3,
        "[wrong numbers] a rejected add must change nothing"
    );
}

/// What a planner's life looks like: `Add(tokens)` (ids 0, 1, ... in
/// order) or `Step`, then steps until nothing is pending.
#[derive(Debug, Clone)]
enum PlanOp {
    Add(usize),
    Step,
}

fn plan_ops() -> impl Strategy<Value = (usize, Vec<PlanOp>)> {
    let op = prop_oneof![
        2 => (1usize..40).prop_map(PlanOp::Add),
        3 => Just(PlanOp::Step),
    ];
    (1usize..20, prop::collection::vec(op, 1..24))
}

/// Runs the ops, then steps until nothing is pending; returns the lengths
/// added, the steps, and after each step the tokens still pending.
fn run_plan(budget: usize, ops: &[PlanOp]) -> (Vec<usize>, Vec<Vec<Chunk>>, Vec<usize>) {
    let mut p = ok("PrefillPlanner::new", PrefillPlanner::new(budget));
    let (mut lengths, mut steps, mut pending) = (Vec::new(), Vec::new(), Vec::new());
    for op in ops {
        match op {
            PlanOp::Add(n) => {
                ok("PrefillPlanner::add", p.add(lengths.len(), *n));
                lengths.push(*n);
            }
            PlanOp::Step => {
                steps.push(p.next_step());
                pending.push(p.pending());
            }
        }
    }
    let mut guard = 0;
    while p.pending() > 0 {
        steps.push(p.next_step());
        pending.push(p.pending());
        guard += 1;
        assert!(
            guard < 10_000,
            "[wrong numbers] the planner never drains (budget {budget}, ops {ops:?})"
        );
    }
    (lengths, steps, pending)
}

/// No step holds more than `budget` tokens or an empty chunk; a step is
/// full whenever tokens are still pending after it.
#[test]
fn prop_planner_never_over_budget() {
    check_property(
        "prop_planner_never_over_budget",
        64,
        plan_ops(),
        |(budget, ops)| {
            let (_, steps, pending) = run_plan(budget, &ops);
            for (i, (step, &left)) in steps.iter().zip(&pending).enumerate() {
                let total: usize = step.iter().map(|c| c.len).sum();
                prop_assert!(
                    total <= budget,
                    "step {} holds {} > budget {}",
                    i,
                    total,
                    budget
                );
                prop_assert!(
                    step.iter().all(|c| c.len >= 1),
                    "step {} has an empty chunk",
                    i
                );
                prop_assert!(
                    left == 0 || total == budget,
                    "step {} holds {} < budget {} while {} tokens wait",
                    i,
                    total,
                    budget,
                    left
                );
            }
            Ok(())
        },
    );
}

/// Every token of every sequence is planned exactly once, in order: a
/// sequence's chunks are consecutive ranges from 0 to its length.
#[test]
fn prop_planner_plans_every_token_once_in_order() {
    check_property(
        "prop_planner_plans_every_token_once_in_order",
        64,
        plan_ops(),
        |(budget, ops)| {
            let (lengths, steps, _) = run_plan(budget, &ops);
            let mut next = vec![0usize; lengths.len()];
            for (i, step) in steps.iter().enumerate() {
                for c in step {
                    prop_assert!(
                        c.seq < lengths.len(),
                        "step {}: unknown sequence {}",
                        i,
                        c.seq
                    );
                    prop_assert_eq!(
                        c.start,
                        next[c.seq],
                        "step {}: sequence {} resumes at {}, expected {}",
                        i,
                        c.seq,
                        c.start,
                        next[c.seq]
                    );
                    next[c.seq] += c.len;
                    prop_assert!(
                        next[c.seq] <= lengths[c.seq],
                        "step {}: sequence {} planned past its {} tokens",
                        i,
                        c.seq,
                        lengths[c.seq]
                    );
                }
            }
            prop_assert_eq!(&next, &lengths, "tokens planned per sequence");
            Ok(())
        },
    );
}

/// First come, first served: within a step the chunks follow the arrival
/// order, and a sequence gets tokens only in a step that finishes every
/// sequence that arrived before it (so at most the step's last chunk
/// leaves its sequence unfinished).
#[test]
fn prop_planner_is_first_come_first_served() {
    check_property(
        "prop_planner_is_first_come_first_served",
        64,
        plan_ops(),
        |(budget, ops)| {
            let (lengths, steps, _) = run_plan(budget, &ops);
            let mut next = vec![0usize; lengths.len()];
            for (i, step) in steps.iter().enumerate() {
                for w in step.windows(2) {
                    prop_assert!(
                        w[0].seq < w[1].seq,
                        "step {}: {:?} out of arrival order",
                        i,
                        w
                    );
                }
                for c in step {
                    next[c.seq] += c.len;
                }
                if let Some(last) = step.last() {
                    for s in 0..last.seq {
                        prop_assert_eq!(
                            next[s],
                            lengths[s],
                            "step {} serves sequence {} while the earlier sequence {} is \
                             unfinished",
                            i,
                            last.seq,
                            s
                        );
                    }
                }
            }
            Ok(())
        },
    );
}

/// Three prompts prefilled under one budget of 6 tokens per step: each
/// one's last logits equal its one-shot prefill, and its caches hold it.
#[test]
fn prefill_planned_matches_one_shot() {
    let test = "prefill_planned_matches_one_shot";
    let model = build("qwen2");
    let (prompt, _) = day7_greedy();
    let prompts: [&[u32]; 3] = [&prompt[..9], &prompt[30..34], &prompt[40..53]];
    let got: Vec<Prefilled> = ok("prefill_planned", prefill_planned(&model, &prompts, 6));
    assert_eq!(
        got.len(),
        3,
        "[wrong numbers] {test}: prefill_planned must return one result per prompt"
    );
    for (i, (p, done)) in prompts.iter().zip(&got).enumerate() {
        let want = ok(
            "Qwen2ModelWeek2::forward_last",
            model.forward_last(&row_ids(p), 0, &mut model.new_cache()),
        );
        assert_logits(
            test,
            &format!("prompt {i} ({} tokens), budget 6", p.len()),
            &done.logits,
            &want,
        );
        assert!(
            done.cache.iter().all(|c| c.offset() == p.len()),
            "[wrong numbers] {test}: prompt {i}'s caches must hold its {} tokens",
            p.len()
        );
    }
    should_fail_naming(
        "prefill_planned",
        "prompt 1 empty",
        prefill_planned(&model, &[&prompt[..3], &[]], 6),
        &["prompt 1"],
    );
    should_fail_naming(
        "prefill_planned",
        "budget 0",
        prefill_planned(&model, &[&prompt[..3]], 0),
        &["budget"],
    );
}

/// Day 2's `RoPE` as the week-2 kernels read it (a view of its tables).
fn view(r: &RoPE) -> tiny_llm_common::RopeView<'_> {
    tiny_llm_common::RopeView {
        dims: r.dims,
        seq_len: r.seq_len,
        traditional: r.traditional,
        cos: &r.cos,
        sin: &r.sin,
    }
}
