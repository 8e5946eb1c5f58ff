//! Day 14: the prompt cache.
//!
//! Hand-worked: which prefix `reuse` keeps (at least one prompt token is
//! always left to run), `trim` / `rewind_to` counts. With the tiny Qwen2
//! (fixtures/tiny-qwen2) in float32, against a fresh prefill of the whole
//! prompt through day 8's model (new caches, no prompt cache), compared as
//! log-probabilities at the day's tolerance: a reused prefix gives the
//! fresh logits; a second chat turn (the chat template re-rendering the
//! whole history) runs only its new tokens, counted at the model, and
//! generates the fresh generation's greedy tokens; a rewind then re-feed
//! gives the first logits again. On disk: save, load, continue equals
//! continuing in memory (float32 and bfloat16, exactly: the same numbers
//! go through the same code); a file saved for another model identity,
//! dtype or layer count, a truncated or corrupt file, and a safetensors file
//! that is not a prompt cache are refused with an error naming what differs.

use mlx_rs::{Array, Dtype};
use std::cell::RefCell;
use std::path::PathBuf;
use tiny_llm_common::{
    Cached, CachedLm, ChatMessage, Checkpoint, Generation, KvCache, Qwen2Config, TokenSampler,
    Tokenizer,
};
use tiny_llm_grader::fixture::checked_dir;
use tiny_llm_grader::imp::prompt_cache::{common_prefix_len, PromptCache};
use tiny_llm_grader::imp::qwen2_week2::Qwen2ModelWeek2;
use tiny_llm_grader::{assert_close, ok, should_fail, should_fail_naming, Tol};

const DAY: &str = "day14";

/// The model identity the tests save under.
const TINY: &str = "tiny-qwen2";

// ---- helpers ----------------------------------------------------------------

fn tiny() -> (Qwen2Config, Checkpoint) {
    let dir = checked_dir("tiny-qwen2");
    let config = Qwen2Config::from_file(&dir.join("config.json"))
        .unwrap_or_else(|e| panic!("[fixture] tiny-qwen2 config: {e}"));
    let checkpoint =
        Checkpoint::load(&dir).unwrap_or_else(|e| panic!("[fixture] tiny-qwen2 weights: {e}"));
    (config, checkpoint)
}

fn model(dtype: Dtype) -> Qwen2ModelWeek2 {
    let (config, checkpoint) = tiny();
    ok(
        "Qwen2ModelWeek2::new",
        Qwen2ModelWeek2::new(&config, &checkpoint, dtype),
    )
}

/// `n` token ids from a fixed pseudo-random sequence (seed `seed`), all in
/// `3..1000` (inside the tiny model's vocabulary of 1088).
fn ids(seed: u32, n: usize) -> Vec<u32> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(12_345);
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            3 + x % 997
        })
        .collect()
}

/// The last position's logits of a fresh prefill of `prompt` (new caches,
/// no prompt cache): the oracle. `1 x vocab`.
fn fresh(model: &Qwen2ModelWeek2, prompt: &[u32]) -> Array {
    let input: Vec<i32> = prompt.iter().map(|&t| t as i32).collect();
    let input = Array::from_slice(&input, &[1, input.len() as i32]);
    ok(
        "Qwen2ModelWeek2::forward_last",
        model.forward_last(&input, 0, &mut model.new_cache()),
    )
}

/// `x - logsumexp(x)` along the last axis, in float32.
fn log_probs(x: &Array) -> Array {
    let x = x.as_dtype(Dtype::Float32).expect("as_dtype");
    let lse = x.logsumexp_axis(-1, true).expect("logsumexp");
    x.subtract(lse).expect("subtract")
}

/// Compares logits as log-probabilities at `tol`.
#[track_caller]
fn assert_logits(test: &str, case: &str, got: &Array, want: &Array, tol: Tol) {
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
        tol,
    );
}

/// The elements of `a` as f32 (for exact comparisons).
fn values(a: &Array) -> Vec<f32> {
    let a = a
        .as_dtype(Dtype::Float32)
        .and_then(|a| a.contiguous())
        .expect("contiguous");
    a.eval().expect("eval");
    a.as_slice::<f32>().to_vec()
}

/// Greedy sampling on the host (the oracle's and the cache's alike).
struct Greedy;

impl TokenSampler for Greedy {
    fn sample(&mut self, logits: &Array) -> tiny_llm_common::Result<u32> {
        let v = values(logits);
        let mut best = 0;
        for (i, &x) in v.iter().enumerate() {
            if x > v[best] {
                best = i;
            }
        }
        Ok(best as u32)
    }
}

/// Day 8's model, recording how many tokens each forward pass was given.
struct Counting<'m> {
    model: &'m Qwen2ModelWeek2,
    fed: RefCell<Vec<i32>>,
}

impl CachedLm for Counting<'_> {
    fn new_cache(&self) -> Vec<Box<dyn KvCache>> {
        self.model.new_cache()
    }
    fn forward_last_cached(
        &self,
        inputs: &Array,
        cache: &mut [Box<dyn KvCache>],
    ) -> tiny_llm_common::Result<Array> {
        self.fed.borrow_mut().push(inputs.dim(1));
        CachedLm::forward_last_cached(self.model, inputs, cache)
    }
    fn context_len(&self) -> Option<usize> {
        CachedLm::context_len(self.model)
    }
    fn vocab_size(&self) -> Option<usize> {
        CachedLm::vocab_size(self.model)
    }
}

/// A fresh path under the system's temporary directory (removed on drop).
struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str) -> TempFile {
        let p = std::env::temp_dir().join(format!(
            "tiny-llm-day14-{}-{name}.safetensors",
            std::process::id()
        ));
        let _ = std::fs::remove_file(&p);
        TempFile(p)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A prompt cache of `model` holding `prompt`.
fn filled(model: &Qwen2ModelWeek2, prompt: &[u32]) -> PromptCache {
    let mut cache = PromptCache::for_model(model);
    ok("PromptCache::feed", cache.feed(model, prompt));
    cache
}

// ---- hand-worked ------------------------------------------------------------

/// `common_prefix_len`, and what `reuse` keeps of a cached `[a, b, c, d]`.
#[test]
fn reuse_keeps_the_longest_common_prefix_hand_worked() {
    let test = "reuse_keeps_the_longest_common_prefix_hand_worked";
    for (a, b, want) in [
        (&[1u32, 2, 3][..], &[1u32, 2, 5, 6][..], 2),
        (&[1, 2, 3], &[1, 2, 3], 3),
        (&[], &[1, 2], 0),
        (&[4], &[5], 0),
        (&[1, 2, 3, 4], &[1, 2], 2),
    ] {
        let got = common_prefix_len(a, b);
        assert_eq!(
            got, want,
            "[wrong numbers] {test}: common_prefix_len({a:?}, {b:?}) = {got}, expected {want}"
        );
    }
    let m = model(Dtype::Float32);
    let cached = [11u32, 12, 13, 14];
    // (prompt, reused): a divergent prompt keeps the shared part; the same
    // prompt, or one the cache runs past, keeps all but its last token.
    for (prompt, want) in [
        (&[11u32, 12, 99][..], 2),
        (&[11, 12, 13, 14, 15], 4),
        (&[11, 12, 13, 14], 3),
        (&[11, 12], 1),
        (&[11], 0),
        (&[7, 12, 13], 0),
    ] {
        let mut cache = filled(&m, &cached);
        let got = ok("PromptCache::reuse", cache.reuse(prompt));
        assert_eq!(
            got, want,
            "[wrong numbers] {test}: cached {cached:?}, reuse({prompt:?}) returned {got}, expected {want}"
        );
        assert_eq!(
            cache.tokens(),
            &prompt[..want],
            "[wrong numbers] {test}: cached {cached:?}, after reuse({prompt:?}) the cache holds {:?}",
            cache.tokens()
        );
    }
    let mut cache = filled(&m, &cached);
    should_fail("PromptCache::reuse", "an empty prompt", cache.reuse(&[]));
    assert_eq!(
        cache.len(),
        4,
        "[wrong numbers] {test}: a refused reuse changed the cache"
    );
}

/// `trim` and `rewind_to` return what they forgot, never more than is there.
#[test]
fn trim_and_rewind_count_hand_worked() {
    let test = "trim_and_rewind_count_hand_worked";
    let m = model(Dtype::Float32);
    let mut cache = filled(&m, &ids(1, 10));
    // (call, expected return, tokens left expected)
    type Call = fn(&mut PromptCache) -> usize;
    let steps: [(&str, Call, usize, usize); 5] = [
        ("trim(3)", |c| c.trim(3), 3, 7),
        ("rewind_to(9)", |c| c.rewind_to(9), 0, 7),
        ("rewind_to(5)", |c| c.rewind_to(5), 2, 5),
        ("trim(100)", |c| c.trim(100), 5, 0),
        ("trim(1) when empty", |c| c.trim(1), 0, 0),
    ];
    for (what, call, want, left) in steps {
        let got = call(&mut cache);
        assert_eq!(
            (got, cache.len()),
            (want, left),
            "[wrong numbers] {test}: {what} returned {got} and left {} tokens, expected {want} \
             and {left}",
            cache.len()
        );
    }
    assert!(
        cache.is_empty(),
        "[wrong numbers] {test}: after trim(100) the cache holds {} tokens",
        cache.len()
    );
}

// ---- against a fresh prefill --------------------------------------------------

/// A prompt sharing 12 of 20 cached tokens, the same prompt again (all but
/// its last token reused), and one extending the cache: each gives the
/// logits of a fresh prefill of the whole prompt, and runs only the tokens
/// not reused.
#[test]
fn reuse_gives_the_logits_of_a_fresh_prefill() {
    let test = "reuse_gives_the_logits_of_a_fresh_prefill";
    let tol = Tol::for_day(DAY, Dtype::Float32);
    let m = model(Dtype::Float32);
    let a = ids(2, 20);
    let mut b = a[..12].to_vec();
    b.extend(ids(3, 6));
    let mut c = b.clone();
    c.extend(ids(4, 5));
    let mut cache = PromptCache::for_model(&m);
    // (prompt, expected reused tokens)
    for (case, prompt, reused) in [
        ("first prompt, empty cache", &a, 0),
        ("12 of 20 tokens shared", &b, 12),
        ("the same prompt again", &b, 17),
        ("the cache's tokens and 5 more", &c, 18),
    ] {
        let p = ok("PromptCache::prefill", cache.prefill(&m, prompt));
        assert_eq!(
            (p.reused, p.computed),
            (reused, prompt.len() - reused),
            "[wrong numbers] {test}, case {case}: (reused, computed) = ({}, {}), expected ({reused}, {})",
            p.reused,
            p.computed,
            prompt.len() - reused
        );
        assert_eq!(
            cache.tokens(),
            &prompt[..],
            "[wrong numbers] {test}, case {case}: the cache holds other tokens than the prompt"
        );
        assert_logits(test, case, &p.logits, &fresh(&m, prompt), tol);
    }
}

/// A two-turn chat through the chat template: the second turn's prompt is
/// the first turn's, its answer and a new user message. Through
/// `PromptCache::steps` the second prefill runs only the tokens after the
/// cached prefix (counted at the model: fewer than the new messages'
/// tokens and the end of the answer), and both turns generate a fresh
/// generation's greedy tokens.
#[test]
fn second_turn_prefills_only_the_new_tokens() {
    let test = "second_turn_prefills_only_the_new_tokens";
    let m = model(Dtype::Float32);
    let counting = Counting {
        model: &m,
        fed: RefCell::new(Vec::new()),
    };
    let tok = Tokenizer::from_dir(&checked_dir("tiny-qwen2"))
        .unwrap_or_else(|e| panic!("[fixture] tiny-qwen2 tokenizer: {e}"));
    let render = |history: &[ChatMessage]| -> Vec<u32> {
        let text = tok
            .apply_chat_template(history, true)
            .expect("chat template");
        tok.encode(&text, false).expect("encode")
    };
    let generate_fresh = |prompt: &[u32]| -> Vec<u32> {
        let mut g = Generation::new(Cached::new(&m), Greedy, 6, &[]);
        let mut out = vec![
            ok("Generation::prefill", g.prefill(prompt))
                .expect("a token")
                .token,
        ];
        while let Some(e) = ok("Generation::step", g.step()) {
            out.push(e.token);
        }
        out
    };
    let mut cache = PromptCache::for_model(&counting);
    let mut history = vec![ChatMessage::user("Tell me about Rust.")];
    let mut prompts = Vec::new();
    for turn in 0..2 {
        let prompt = render(&history);
        counting.fed.borrow_mut().clear();
        let mut g = Generation::new(cache.steps(&counting), Greedy, 6, &[]);
        let mut out = vec![
            ok("Generation::prefill", g.prefill(&prompt))
                .expect("a token")
                .token,
        ];
        while let Some(e) = ok("Generation::step", g.step()) {
            out.push(e.token);
        }
        drop(g);
        let want = generate_fresh(&prompt);
        assert_eq!(
            out,
            want,
            "[wrong numbers] {test}: turn {} generated {out:?} through the prompt cache, a fresh \
             generation {want:?}",
            turn + 1
        );
        let fed = counting.fed.borrow().clone();
        // the prompt's run, then one token per later step
        let mut expected_fed = vec![0; out.len()];
        expected_fed[1..].fill(1);
        let first = fed.first().copied().unwrap_or(0) as usize;
        if turn == 0 {
            expected_fed[0] = prompt.len() as i32;
        } else {
            let before: &Vec<u32> = &prompts[0];
            let new_messages = prompt.len() - before.len();
            // the new turn is fed, never the first turn's prompt again
            assert!(
                first >= 1 && first <= new_messages,
                "[wrong numbers] {test}: turn 2's prompt has {} tokens, turn 1's {}; the model \
                 was given {first} tokens to prefill, expected between 1 and {new_messages} \
                 (the first turn's prompt is cached)",
                prompt.len(),
                before.len()
            );
            expected_fed[0] = first as i32;
        }
        assert_eq!(
            fed,
            expected_fed,
            "[wrong numbers] {test}: turn {} fed the model {fed:?} tokens per forward pass",
            turn + 1
        );
        // what the cache holds: the prompt and every generated token but the last
        let mut held = prompt.clone();
        held.extend(&out[..out.len() - 1]);
        assert_eq!(
            cache.tokens(),
            &held[..],
            "[wrong numbers] {test}: after turn {} the cache holds other tokens than the prompt \
             and the generated tokens fed back",
            turn + 1
        );
        let answer = tok.decode(&out).expect("decode");
        prompts.push(prompt);
        history.push(ChatMessage::assistant(answer));
        history.push(ChatMessage::user("And what about its borrow checker?"));
    }
}

/// Feed 16 tokens, then 5 more; rewind to 10 and feed tokens 10..16 again:
/// the logits of the first time, and the cache holds those 16 tokens.
#[test]
fn rewind_then_refeed_gives_the_same_logits() {
    let test = "rewind_then_refeed_gives_the_same_logits";
    let tol = Tol::for_day(DAY, Dtype::Float32);
    let m = model(Dtype::Float32);
    let a = ids(5, 16);
    let mut cache = PromptCache::for_model(&m);
    let first = ok("PromptCache::feed", cache.feed(&m, &a));
    ok("PromptCache::feed", cache.feed(&m, &ids(6, 5)));
    let n = cache.rewind_to(10);
    assert_eq!(
        n, 11,
        "[wrong numbers] {test}: rewind_to(10) from 21 tokens forgot {n}, expected 11"
    );
    let again = ok("PromptCache::feed", cache.feed(&m, &a[10..]));
    assert_eq!(
        cache.tokens(),
        &a[..],
        "[wrong numbers] {test}: after the rewind and re-feed the cache holds other tokens"
    );
    assert_logits(test, "rewound to 10, re-fed 10..16", &again, &first, tol);
    assert_logits(
        test,
        "rewound to 10, re-fed 10..16, against a fresh prefill",
        &again,
        &fresh(&m, &a),
        tol,
    );
}

// ---- save and load ----------------------------------------------------------

/// Save 14 tokens, load them into fresh caches, feed the same 4 tokens to
/// both: the same logits exactly (float32 and bfloat16), and the same
/// tokens. An empty cache saves and loads as empty.
#[test]
fn save_load_then_continue_equals_in_memory() {
    let test = "save_load_then_continue_equals_in_memory";
    for (dtype, name) in [(Dtype::Float32, "float32"), (Dtype::Bfloat16, "bfloat16")] {
        let m = model(dtype);
        let file = TempFile::new(&format!("roundtrip-{name}"));
        let mut kept = filled(&m, &ids(7, 14));
        ok("PromptCache::save", kept.save(&file.0, TINY, dtype));
        let mut loaded = ok(
            "PromptCache::load",
            PromptCache::load(&file.0, TINY, dtype, m.new_cache()),
        );
        assert_eq!(
            loaded.tokens(),
            kept.tokens(),
            "[wrong numbers] {test} ({name}): the loaded cache holds other tokens than the saved one"
        );
        let more = ids(8, 4);
        let want = ok("PromptCache::feed", kept.feed(&m, &more));
        let got = ok("PromptCache::feed", loaded.feed(&m, &more));
        assert_eq!(
            (got.shape(), got.dtype()),
            (want.shape(), want.dtype()),
            "[wrong shape] {test} ({name}): logits after loading"
        );
        let (g, w) = (values(&got), values(&want));
        let differ = g.iter().zip(&w).filter(|(a, b)| a != b).count();
        assert_eq!(
            differ,
            0,
            "[wrong numbers] {test} ({name}): {differ} of {} logits differ between continuing \
             the loaded cache and the one in memory (the same keys and values should give the \
             same numbers)",
            g.len()
        );
        assert_logits(
            test,
            &format!("{name}, continued after loading, against a fresh prefill"),
            &got,
            &fresh(&m, kept.tokens()),
            Tol::for_day(DAY, dtype),
        );
    }
    let m = model(Dtype::Float32);
    let file = TempFile::new("empty");
    ok(
        "PromptCache::save",
        PromptCache::for_model(&m).save(&file.0, TINY, Dtype::Float32),
    );
    let loaded = ok(
        "PromptCache::load",
        PromptCache::load(&file.0, TINY, Dtype::Float32, m.new_cache()),
    );
    assert!(
        loaded.is_empty(),
        "[wrong numbers] {test}: an empty cache loaded with {} tokens",
        loaded.len()
    );
}

/// A cache saved for another model identity or dtype is refused, naming
/// both.
#[test]
fn load_rejects_another_model_or_dtype() {
    let m = model(Dtype::Float32);
    let file = TempFile::new("identity");
    ok(
        "PromptCache::save",
        filled(&m, &ids(9, 5)).save(&file.0, TINY, Dtype::Float32),
    );
    should_fail_naming(
        "PromptCache::load",
        "saved for tiny-qwen2, loaded as other-model-4bit",
        PromptCache::load(&file.0, "other-model-4bit", Dtype::Float32, m.new_cache()),
        &["tiny-qwen2", "other-model-4bit"],
    );
    should_fail_naming(
        "PromptCache::load",
        "saved in float32, loaded as bfloat16",
        PromptCache::load(&file.0, TINY, Dtype::Bfloat16, m.new_cache()),
        &["float32", "bfloat16"],
    );
}

/// A cache saved for 2 layers given 3 (or 1) caches is refused, naming
/// both counts.
#[test]
fn load_rejects_a_wrong_layer_count() {
    let m = model(Dtype::Float32);
    let layers = m.new_cache().len();
    let file = TempFile::new("layers");
    ok(
        "PromptCache::save",
        filled(&m, &ids(10, 5)).save(&file.0, TINY, Dtype::Float32),
    );
    for n in [layers + 1, layers - 1] {
        let caches: Vec<Box<dyn KvCache>> = (0..n)
            .map(|_| m.new_cache().pop().expect("a cache"))
            .collect();
        should_fail_naming(
            "PromptCache::load",
            &format!("saved with {layers} layers, loaded into {n}"),
            PromptCache::load(&file.0, TINY, Dtype::Float32, caches),
            &[&layers.to_string(), &n.to_string()],
        );
    }
}

/// A truncated file, a file of garbage, one with a byte of its header
/// flipped, a missing file, and a safetensors file that is not a prompt
/// cache (the tiny model's weights) are refused, naming the file.
#[test]
fn load_rejects_a_truncated_or_corrupt_file() {
    let m = model(Dtype::Float32);
    let file = TempFile::new("good");
    ok(
        "PromptCache::save",
        filled(&m, &ids(11, 6)).save(&file.0, TINY, Dtype::Float32),
    );
    let bytes = std::fs::read(&file.0).expect("read the saved cache");
    let name = |f: &TempFile| f.0.display().to_string();
    let truncated = TempFile::new("truncated");
    std::fs::write(&truncated.0, &bytes[..bytes.len() - 100]).expect("write");
    let garbage = TempFile::new("garbage");
    std::fs::write(&garbage.0, b"not a safetensors file at all").expect("write");
    let flipped = TempFile::new("flipped");
    let mut f = bytes.clone();
    f[9] ^= 0x55; // inside the JSON header
    std::fs::write(&flipped.0, &f).expect("write");
    for (case, path) in [
        ("truncated by 100 bytes", &truncated),
        ("garbage", &garbage),
        ("a header byte flipped", &flipped),
    ] {
        should_fail_naming(
            "PromptCache::load",
            case,
            PromptCache::load(&path.0, TINY, Dtype::Float32, m.new_cache()),
            &[&name(path)],
        );
    }
    let missing = TempFile::new("missing");
    should_fail_naming(
        "PromptCache::load",
        "a missing file",
        PromptCache::load(&missing.0, TINY, Dtype::Float32, m.new_cache()),
        &[&name(&missing)],
    );
    let weights = checked_dir("tiny-qwen2").join("model.safetensors");
    should_fail_naming(
        "PromptCache::load",
        "the tiny model's weights (a safetensors file, not a prompt cache)",
        PromptCache::load(&weights, TINY, Dtype::Float32, m.new_cache()),
        &["model.safetensors", "prompt cache"],
    );
}
