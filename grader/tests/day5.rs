//! Day 5: embedding, the transformer block, the whole week-1 model.
//! Golden tensors from fixtures/gen/day5.py (oracles: nn.Embedding, mlx_lm
//! qwen2/llama TransformerBlock, and tiny seeded random mlx_lm qwen2/llama
//! models), plus error cases.
//!
//! Whole-model logits are compared as log-probabilities (each row minus its
//! logsumexp) at `Tol::logits`.

use mlx_rs::{Array, Dtype};
use std::collections::HashMap;
use tiny_llm_common::Qwen2Config;
use tiny_llm_grader::fixture::checked_file;
use tiny_llm_grader::imp::attention_grouped::AttentionMask;
use tiny_llm_grader::imp::embedding::Embedding;
use tiny_llm_grader::imp::qwen2_week1::Qwen2ModelWeek1;
use tiny_llm_grader::imp::transformer_block::Qwen2TransformerBlock;
use tiny_llm_grader::{
    assert_close, cases, check_cases, ok, should_fail, should_fail_naming, Case, Tol,
};

const DAY: &str = "day5";

fn run_embedding(c: &Case) -> Array {
    let emb = ok("Embedding::new", Embedding::new(c.get("weight").clone()));
    ok("Embedding::forward", emb.forward(c.get("ids")))
}

fn run_as_linear(c: &Case) -> Array {
    let emb = ok("Embedding::new", Embedding::new(c.get("weight").clone()));
    ok("Embedding::as_linear", emb.as_linear(c.get("x")))
}

#[test]
fn embedding_f32() {
    check_cases(
        "embedding_f32",
        DAY,
        "embedding_",
        "f32",
        "out",
        run_embedding,
    );
}

#[test]
fn embedding_f16() {
    check_cases(
        "embedding_f16",
        DAY,
        "embedding_",
        "f16",
        "out",
        run_embedding,
    );
}

#[test]
fn embedding_bf16() {
    check_cases(
        "embedding_bf16",
        DAY,
        "embedding_",
        "bf16",
        "out",
        run_embedding,
    );
}

#[test]
fn embedding_as_linear_f32() {
    check_cases(
        "embedding_as_linear_f32",
        DAY,
        "as_linear_",
        "f32",
        "out",
        run_as_linear,
    );
}

#[test]
fn embedding_as_linear_f16() {
    check_cases(
        "embedding_as_linear_f16",
        DAY,
        "as_linear_",
        "f16",
        "out",
        run_as_linear,
    );
}

#[test]
fn embedding_as_linear_bf16() {
    check_cases(
        "embedding_as_linear_bf16",
        DAY,
        "as_linear_",
        "bf16",
        "out",
        run_as_linear,
    );
}

/// Float ids are errors. The range `0..vocab` is checked on the host by the
/// caller (`tiny_llm_common::check_token_ids`), not inside forward: forward
/// must not read the ids back from the device.
#[test]
fn embedding_rejects_float_ids() {
    let emb = ok(
        "Embedding::new",
        Embedding::new(Array::from_slice(&[0.5f32; 4 * 3], &[4, 3])),
    );
    let good = Array::from_slice(&[0i32, 3, 1], &[1, 3]);
    let rows = ok("Embedding::forward", emb.forward(&good));
    assert_eq!(
        rows.shape(),
        &[1, 3, 3],
        "[wrong shape] Embedding::forward of 1 x 3 ids with E = 3"
    );
    let float_ids = Array::from_slice(&[0.0f32, 1.0], &[1, 2]);
    should_fail("Embedding::forward", "float ids", emb.forward(&float_ids));
}

/// A stored tiny model: its config and its weights (bf16, Hugging Face names).
fn tiny_model(name: &str) -> (Qwen2Config, HashMap<String, Array>) {
    let path = checked_file(&format!("{DAY}/{name}.safetensors"));
    let (weights, meta) = Array::load_safetensors_with_metadata(&path)
        .unwrap_or_else(|e| panic!("[fixture] cannot read {}: {e}", path.display()));
    let config = Qwen2Config::from_json(&meta["config"], name)
        .unwrap_or_else(|e| panic!("[fixture] {name}: bad config: {e}"));
    (config, weights)
}

fn cast(weights: &HashMap<String, Array>, dtype: Dtype) -> HashMap<String, Array> {
    weights
        .iter()
        .map(|(k, v)| (k.clone(), v.as_dtype(dtype).expect("as_dtype")))
        .collect()
}

fn run_block(c: &Case) -> Array {
    let (config, weights) = tiny_model(&c.meta::<String>("weights").expect("weights"));
    let x = c.get("x");
    let block = ok(
        "Qwen2TransformerBlock::new",
        Qwen2TransformerBlock::new(
            &config,
            &cast(&weights, x.dtype()),
            c.meta("layer").expect("layer"),
        ),
    );
    ok(
        "Qwen2TransformerBlock::forward",
        block.forward(x, c.meta("offset").unwrap_or(0), AttentionMask::Causal),
    )
}

#[test]
fn transformer_block_f32() {
    check_cases(
        "transformer_block_f32",
        DAY,
        "block_qwen2_",
        "f32",
        "out",
        run_block,
    );
}

#[test]
fn transformer_block_f16() {
    check_cases(
        "transformer_block_f16",
        DAY,
        "block_qwen2_",
        "f16",
        "out",
        run_block,
    );
}

#[test]
fn transformer_block_bf16() {
    check_cases(
        "transformer_block_bf16",
        DAY,
        "block_qwen2_",
        "bf16",
        "out",
        run_block,
    );
}

#[test]
fn transformer_block_offset_f32() {
    check_cases(
        "transformer_block_offset_f32",
        DAY,
        "block_offset_",
        "f32",
        "out",
        run_block,
    );
}

#[test]
fn transformer_block_offset_f16() {
    check_cases(
        "transformer_block_offset_f16",
        DAY,
        "block_offset_",
        "f16",
        "out",
        run_block,
    );
}

/// Llama's block: no q/k/v biases, one key/value head.
#[test]
fn transformer_block_llama_f32() {
    check_cases(
        "transformer_block_llama_f32",
        DAY,
        "block_llama_",
        "f32",
        "out",
        run_block,
    );
}

#[test]
fn transformer_block_llama_f16() {
    check_cases(
        "transformer_block_llama_f16",
        DAY,
        "block_llama_",
        "f16",
        "out",
        run_block,
    );
}

/// Builds with `weights`, expecting an error that names `key`.
#[track_caller]
fn expect_error_naming<T>(what: &str, r: tiny_llm_grader::imp::Result<T>, key: &str) {
    should_fail_naming("building the model", what, r, &[key]);
}

/// A missing or wrongly shaped weight is an error naming its key.
#[test]
fn transformer_block_rejects_bad_weights() {
    let (config, weights) = tiny_model("weights_tiny_qwen2");
    assert!(
        Qwen2TransformerBlock::new(&config, &weights, 1).is_ok(),
        "[error] the tiny model's layer 1 must build"
    );
    let key = "model.layers.1.mlp.up_proj.weight";
    let mut w = weights.clone();
    w.remove(key);
    expect_error_naming(
        "layer 1 without up_proj",
        Qwen2TransformerBlock::new(&config, &w, 1),
        key,
    );
    let key = "model.layers.1.self_attn.k_proj.bias";
    let mut w = weights.clone();
    w.remove(key);
    expect_error_naming(
        "a qwen2 layer without k_proj.bias",
        Qwen2TransformerBlock::new(&config, &w, 1),
        key,
    );
    let key = "model.layers.1.self_attn.k_proj.weight";
    let mut w = weights.clone();
    w.insert(
        key.into(),
        weights["model.layers.1.self_attn.q_proj.weight"].clone(),
    );
    expect_error_naming(
        "a 64 x 64 k_proj (H_kv*D = 32)",
        Qwen2TransformerBlock::new(&config, &w, 1),
        key,
    );
}

/// `x - logsumexp(x)` along the last axis, in float32.
fn log_probs(x: &Array) -> Array {
    let x = x.as_dtype(Dtype::Float32).expect("as_dtype");
    let lse = x.logsumexp_axis(-1, true).expect("logsumexp");
    x.subtract(lse).expect("subtract")
}

/// Compares logits as log-probabilities at `Tol::logits(dtype)`.
#[track_caller]
fn assert_logits(test: &str, case: &str, got: &Array, want: &Array) {
    if got.shape() != want.shape() || got.dtype() != want.dtype() {
        panic!(
            "[wrong shape] {test}, case {case}, tensor `logits`: got shape {:?} dtype {:?}, expected shape {:?} dtype {:?}",
            got.shape(),
            got.dtype(),
            want.shape(),
            want.dtype()
        );
    }
    let tol = Tol::logits(want.dtype());
    assert_close(
        test,
        case,
        "log_softmax(logits)",
        &log_probs(got),
        &log_probs(want),
        tol,
    );
}

/// Every case `model_<tag>_*_<dtype>`: the model built in `dtype` from the
/// stored weights, `forward` (or `forward_last`) against mlx-lm's logits.
fn check_model(test: &str, tag: &str, dtype: &str, last_only: bool) {
    let names: Vec<String> = cases(DAY, &format!("model_{tag}_"))
        .into_iter()
        .filter(|n| n.ends_with(&format!("_{dtype}")))
        .collect();
    assert!(
        !names.is_empty(),
        "[fixture] no cases {DAY}/model_{tag}_*_{dtype}"
    );
    for name in names {
        let c = Case::load(DAY, &name);
        let (config, weights) = tiny_model(&c.meta::<String>("weights").expect("weights"));
        let want = c.get("logits");
        let model = ok(
            "Qwen2ModelWeek1::new",
            Qwen2ModelWeek1::new(&config, &weights, want.dtype()),
        );
        if last_only {
            let l = want.dim(1);
            let want_last = want
                .take_axis(Array::from_int(l - 1), 1)
                .expect("take_axis");
            let got = ok(
                "Qwen2ModelWeek1::forward_last",
                model.forward_last(c.get("inputs")),
            );
            assert_logits(test, &c.id, &got, &want_last);
        } else {
            let got = ok("Qwen2ModelWeek1::forward", model.forward(c.get("inputs")));
            assert_logits(test, &c.id, &got, want);
        }
    }
}

#[test]
fn qwen2_model_f32() {
    check_model("qwen2_model_f32", "qwen2", "f32", false);
}

#[test]
fn qwen2_model_f16() {
    check_model("qwen2_model_f16", "qwen2", "f16", false);
}

#[test]
fn qwen2_model_bf16() {
    check_model("qwen2_model_bf16", "qwen2", "bf16", false);
}

#[test]
fn qwen2_model_forward_last_f32() {
    check_model("qwen2_model_forward_last_f32", "qwen2", "f32", true);
}

#[test]
fn qwen2_model_forward_last_bf16() {
    check_model("qwen2_model_forward_last_bf16", "qwen2", "bf16", true);
}

/// A Llama-architecture model: no biases, untied `lm_head`, one KV head.
#[test]
fn qwen2_model_llama_f32() {
    check_model("qwen2_model_llama_f32", "llama", "f32", false);
}

#[test]
fn qwen2_model_llama_f16() {
    check_model("qwen2_model_llama_f16", "llama", "f16", false);
}

#[test]
fn qwen2_model_llama_bf16() {
    check_model("qwen2_model_llama_bf16", "llama", "bf16", false);
}

#[test]
fn qwen2_model_llama_forward_last_f32() {
    check_model("qwen2_model_llama_forward_last_f32", "llama", "f32", true);
}

/// Without `lm_head.weight`, the output layer is `embed_tokens` even when
/// the config says the embeddings are not tied.
#[test]
fn qwen2_model_lm_head_falls_back_to_embeddings() {
    let (mut config, weights) = tiny_model("weights_tiny_qwen2");
    config.tie_word_embeddings = false;
    let c = Case::load(DAY, "model_qwen2_n2l7_f32");
    let model = ok(
        "Qwen2ModelWeek1::new",
        Qwen2ModelWeek1::new(&config, &weights, Dtype::Float32),
    );
    let got = ok("Qwen2ModelWeek1::forward", model.forward(c.get("inputs")));
    assert_logits(
        "qwen2_model_lm_head_falls_back_to_embeddings",
        &c.id,
        &got,
        c.get("logits"),
    );
}

/// A config may claim a huge context (`max_position_embeddings` = 1e9): the
/// RoPE tables cover `config.rope_positions()` positions (capped), not 1e9
/// (a 64 GiB table here), and the logits are unchanged.
#[test]
fn qwen2_model_huge_max_position_embeddings() {
    let (mut config, weights) = tiny_model("weights_tiny_qwen2");
    config.max_position_embeddings = 1_000_000_000;
    let cap = tiny_llm_common::config::MAX_ROPE_POSITIONS;
    let c = Case::load(DAY, "model_qwen2_n2l7_f32");
    let model = ok(
        "Qwen2ModelWeek1::new",
        Qwen2ModelWeek1::new(&config, &weights, Dtype::Float32),
    );
    for (i, layer) in model.layers.iter().enumerate() {
        let rope = &layer.self_attn.rope;
        assert!(
            rope.seq_len <= cap,
            "[wrong numbers] layer {i}'s RoPE covers {} positions; size it with config.rope_positions() (at most {cap})",
            rope.seq_len
        );
    }
    let got = ok("Qwen2ModelWeek1::forward", model.forward(c.get("inputs")));
    assert_logits(
        "qwen2_model_huge_max_position_embeddings",
        &c.id,
        &got,
        c.get("logits"),
    );
}

/// A missing or wrongly shaped weight is an error naming its key; so are
/// inputs that are not `N x L` token ids.
#[test]
fn qwen2_model_rejects_bad_input() {
    let (config, weights) = tiny_model("weights_tiny_qwen2");
    let build = |w: &HashMap<String, Array>| Qwen2ModelWeek1::new(&config, w, Dtype::Float32);
    let model = ok("Qwen2ModelWeek1::new", build(&weights));
    let key = "model.norm.weight";
    let mut w = weights.clone();
    w.remove(key);
    expect_error_naming("a model without its final norm", build(&w), key);
    let key = "model.embed_tokens.weight";
    let mut w = weights.clone();
    w.insert(key.into(), Array::from_slice(&[0.0f32; 64 * 10], &[10, 64]));
    expect_error_naming("a 10-row embed_tokens for vocab 1088", build(&w), key);
    let key = "model.layers.1.post_attention_layernorm.weight";
    let mut w = weights.clone();
    w.remove(key);
    expect_error_naming(
        "a model without layer 1's post_attention_layernorm",
        build(&w),
        key,
    );
    let flat = Array::from_slice(&[1i32, 2, 3], &[3]);
    should_fail(
        "Qwen2ModelWeek1::forward",
        "1-D inputs",
        model.forward(&flat),
    );
    // ids outside 0..vocab are checked on the host by the caller
    // (`check_token_ids`), not by forward: see `embedding_rejects_float_ids`
}

/// `forward_last` is `forward`'s last position, for a batch.
#[test]
fn qwen2_model_forward_last_matches_forward() {
    let (config, weights) = tiny_model("weights_tiny_qwen2");
    let model = ok(
        "Qwen2ModelWeek1::new",
        Qwen2ModelWeek1::new(&config, &weights, Dtype::Float32),
    );
    let inputs = Array::from_slice(&[3i32, 17, 256, 1000, 5, 5, 1087, 0], &[2, 4]);
    let all = ok("Qwen2ModelWeek1::forward", model.forward(&inputs));
    let last = ok("Qwen2ModelWeek1::forward_last", model.forward_last(&inputs));
    let want = all.take_axis(Array::from_int(3), 1).expect("take_axis");
    assert_close(
        "qwen2_model_forward_last_matches_forward",
        "batch of 2 x 4",
        "logits",
        &last,
        &want,
        Tol {
            rtol: 1e-5,
            atol: 1e-5,
        },
    );
}
