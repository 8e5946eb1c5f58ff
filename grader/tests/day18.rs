//! Day 18: the OpenAI-compatible server's mapping (no HTTP, no model).
//!
//! The streaming detokenizer on the tiny fixture's byte-level BPE tokenizer
//! (the same pre-tokenizer and byte alphabet as Qwen2's, 1024 merges, so
//! 2-4 byte characters are split over byte tokens): hand-worked texts and
//! bytes, then a property over random id sequences (every id of the
//! vocabulary, added tokens included): the deltas concatenate to
//! `Tokenizer::decode` of all the ids, and at most 3 bytes are ever held.
//! Stop strings: hand-worked cuts, and a property over random texts, stop
//! strings and splits into deltas: the released text is the text cut at the
//! first stop and never holds a stop string. Then the request mapping
//! (parameters into the engine's `Request`, errors naming the parameter)
//! and the response shapes, compared with literal JSON written from the
//! OpenAI API reference's examples (ids and times fixed).

use proptest::prelude::*;
use serde_json::{json, Value};
use tiny_llm_common::engine::{RequestStats, Sampling};
use tiny_llm_common::{ChatMessage, Tokenizer};
use tiny_llm_grader::fixture::checked_dir;
use tiny_llm_grader::imp::openai_api::{
    chat_completion, chat_generation, completion_generation, parse_body, text_completion, usage,
    ApiError, ChatChunker, ChatCompletionRequest, CompletionRequest, Generation, ServedModel,
};
use tiny_llm_grader::imp::stop_strings::{Released, StopStrings};
use tiny_llm_grader::imp::stream_detokenizer::ByteDetokenizer;
use tiny_llm_grader::prop::check as check_property;
use tiny_llm_grader::{ok, should_fail};

fn tiny_tokenizer() -> Tokenizer {
    let dir = checked_dir("tiny-qwen2");
    Tokenizer::from_dir(&dir).unwrap_or_else(|e| panic!("[fixture] {}: {e}", dir.display()))
}

fn push_all(tok: &Tokenizer, ids: &[u32]) -> (Vec<String>, String) {
    let mut d = ByteDetokenizer::new(tok);
    let deltas = ids
        .iter()
        .map(|&id| ok("ByteDetokenizer::push", d.push(id)))
        .collect();
    (deltas, d.finish())
}

// ---- the streaming detokenizer ----

/// Multi-byte characters split over byte tokens come out whole, once
/// complete; the deltas join to the text.
#[test]
fn detokenizer_holds_split_characters_tiny() {
    let tok = tiny_tokenizer();
    let text = "Grüße aus Köln, 東京は晴れ 🦀🦀! naïve";
    let ids = tok.encode(text, false).expect("encode");
    let partial = ids
        .iter()
        .filter(|&&id| tok.decode(&[id]).unwrap().contains('\u{FFFD}'))
        .count();
    assert!(
        partial >= 8,
        "[fixture] the tiny tokenizer should split multi-byte characters ({partial} partial tokens)"
    );
    let (deltas, rest) = push_all(&tok, &ids);
    for (i, d) in deltas.iter().enumerate() {
        assert!(
            !d.contains('\u{FFFD}'),
            "[wrong numbers] push of token {i} (id {}) returned {d:?}: a character cut short; hold its bytes until it is complete",
            ids[i]
        );
    }
    assert_eq!(
        rest, "",
        "[wrong numbers] finish after complete text must return nothing"
    );
    assert_eq!(
        deltas.concat(),
        text,
        "[wrong numbers] the deltas joined differ from the text"
    );
    let held = deltas.iter().filter(|d| d.is_empty()).count();
    assert!(
        held >= 6,
        "[wrong numbers] only {held} pushes returned nothing; the bytes of an unfinished character must wait"
    );
    // 🦀 is F0 9F A6 80: its first three bytes are held, the fourth
    // completes it.
    let crab = tok.encode("🦀", false).expect("encode");
    let (deltas, _) = push_all(&tok, &crab);
    let last = deltas.len() - 1;
    assert!(
        deltas[..last].iter().all(|d| d.is_empty()) && deltas[last] == "🦀",
        "[wrong numbers] 🦀 over {} tokens gave {deltas:?}; expected nothing until the last token, then \"🦀\"",
        crab.len()
    );
}

/// Raw bytes, worked by hand from the UTF-8 rules: an invalid byte is one
/// U+FFFD at once, a truncated character is held, then replaced when a byte
/// that cannot continue it arrives, and `finish` replaces what is left.
#[test]
fn detokenizer_bytes_hand_worked() {
    let tok = tiny_tokenizer();
    let mut d = ByteDetokenizer::new(&tok);
    let steps: &[(&[u8], &str, usize)] = &[
        (b"ab", "ab", 0),
        (&[0xC3], "", 1),         // first byte of é
        (&[0xA9, b'x'], "éx", 0), // é completed
        (&[0xFF], "\u{FFFD}", 0), // never valid in UTF-8
        (&[0xE6, 0x9D], "", 2),   // 2 of 東's 3 bytes
        (b"y", "\u{FFFD}y", 0),   // 'y' cannot continue it
        (&[0x80], "\u{FFFD}", 0), // a lone continuation byte
        (&[0xF0, 0x9F], "", 2),   // half of 🦀
    ];
    for (i, (bytes, want, held)) in steps.iter().enumerate() {
        let got = d.push_bytes(bytes);
        assert_eq!(
            &got, want,
            "[wrong numbers] step {i}: push_bytes({bytes:02X?}) returned {got:?}, expected {want:?}"
        );
        assert_eq!(
            d.held().len(),
            *held,
            "[wrong numbers] step {i}: {} bytes held, expected {held}",
            d.held().len()
        );
    }
    assert_eq!(
        d.finish(),
        "\u{FFFD}",
        "[wrong numbers] finish with an unfinished character held: one U+FFFD (as String::from_utf8_lossy)"
    );
    assert_eq!(
        d.finish(),
        "",
        "[wrong numbers] a second finish returns nothing"
    );
    assert!(
        d.push(u32::MAX).is_err(),
        "[should fail] ByteDetokenizer::push(u32::MAX) should have returned an error (an id outside the vocabulary)"
    );
}

/// Random ids over the whole vocabulary: the deltas and `finish` join to
/// `decode(ids)`; at most 3 bytes are held at any time.
#[test]
fn prop_deltas_concatenate_to_decode() {
    let tok = tiny_tokenizer();
    let vocab = tok.vocab_size() as u32;
    // Byte tokens (ids 0..256) often, so that characters are split.
    let id = prop_oneof![0u32..256, 0u32..vocab];
    check_property(
        "prop_deltas_concatenate_to_decode",
        256,
        proptest::collection::vec(id, 0..40),
        |ids| {
            let mut d = ByteDetokenizer::new(&tok);
            let mut joined = String::new();
            for (i, &id) in ids.iter().enumerate() {
                let delta = d
                    .push(id)
                    .map_err(|e| TestCaseError::fail(format!("[error] push({id}): {e}")))?;
                joined.push_str(&delta);
                prop_assert!(
                    d.held().len() <= 3,
                    "[wrong numbers] after token {} ({}) {} bytes are held; at most 3 (an unfinished character)",
                    i,
                    id,
                    d.held().len()
                );
            }
            joined.push_str(&d.finish());
            let want = tok.decode(&ids).expect("decode");
            prop_assert_eq!(
                &joined,
                &want,
                "[wrong numbers] ids {:?}: the deltas joined differ from decode(ids)",
                ids
            );
            Ok(())
        },
    );
}

// ---- stop strings ----

fn stops(list: &[&str]) -> StopStrings {
    ok(
        "StopStrings::new",
        StopStrings::new(list.iter().map(|s| s.to_string()).collect()),
    )
}

fn released(text: &str, stopped: bool) -> Released {
    Released {
        text: text.to_string(),
        stopped,
    }
}

#[test]
fn stop_strings_hand_worked() {
    // "END" over three deltas: "E" and "N" are held, "D" completes it.
    let mut s = stops(&["END", "\n\n"]);
    assert_eq!(
        s.push("Hello E"),
        released("Hello ", false),
        "[wrong numbers] \"E\" may start \"END\": hold it"
    );
    assert_eq!(s.held(), "E", "[wrong numbers] held text");
    assert_eq!(
        s.push("N"),
        released("", false),
        "[wrong numbers] \"EN\" may start \"END\""
    );
    assert_eq!(
        s.push("D and more"),
        released("", true),
        "[wrong numbers] \"END\" completed: stop, release nothing more"
    );
    assert!(s.stopped(), "[wrong numbers] stopped() after a stop string");
    assert_eq!(
        s.push("x"),
        released("", true),
        "[wrong numbers] after a stop nothing is released"
    );
    assert_eq!(
        s.finish(),
        "",
        "[wrong numbers] finish after a stop releases nothing"
    );

    // A held start that turns out not to be a stop is released.
    let mut s = stops(&["END"]);
    assert_eq!(
        s.push("EN"),
        released("", false),
        "[wrong numbers] \"EN\" may start \"END\""
    );
    assert_eq!(
        s.push("Ds"),
        released("", true),
        "[wrong numbers] \"ENDs\" holds \"END\""
    );
    let mut s = stops(&["END"]);
    assert_eq!(
        s.push("EN"),
        released("", false),
        "[wrong numbers] \"EN\" may start \"END\""
    );
    assert_eq!(
        s.push("TER"),
        released("ENTER", false),
        "[wrong numbers] \"ENT\" cannot start \"END\": release it all"
    );
    assert_eq!(
        s.push("E"),
        released("", false),
        "[wrong numbers] \"E\" may start \"END\""
    );
    assert_eq!(
        s.finish(),
        "E",
        "[wrong numbers] finish releases the held text"
    );

    // The earliest stop wins, whatever the order of the list; a stop
    // in the middle of a delta cuts it.
    let mut s = stops(&["b", "xa"]);
    assert_eq!(
        s.push("1xab2"),
        released("1", true),
        "[wrong numbers] \"xa\" starts before \"b\""
    );
    // Multi-byte: hold on character boundaries.
    let mut s = stops(&["東京"]);
    assert_eq!(
        s.push("é東"),
        released("é", false),
        "[wrong numbers] \"東\" may start \"東京\""
    );
    assert_eq!(
        s.push("京b"),
        released("", true),
        "[wrong numbers] \"東京\" completed"
    );
    // No stop strings: everything at once.
    let mut s = stops(&[]);
    assert_eq!(
        s.push("abc"),
        released("abc", false),
        "[wrong numbers] no stop strings"
    );
}

#[test]
fn stop_strings_reject_empty() {
    let e = should_fail(
        "StopStrings::new",
        "stops [\"a\", \"\"]",
        StopStrings::new(vec!["a".into(), String::new()]),
    );
    assert!(
        e.to_string().contains("empty"),
        "[wrong numbers] the error should say the stop string is empty: {e}"
    );
}

/// Random texts over a small alphabet (so stops occur), up to 3 stops, any
/// split into deltas: released text == the text cut at its first stop;
/// never a stop string in it; stopped iff the text holds a stop.
#[test]
fn prop_stop_strings_never_leak() {
    let alphabet = prop_oneof![Just('a'), Just('b'), Just('c'), Just('é'), Just('東')];
    let text = proptest::collection::vec(alphabet.clone(), 0..30).prop_map(String::from_iter);
    let stop = proptest::collection::vec(alphabet, 1..4).prop_map(String::from_iter);
    let stop_list = proptest::collection::vec(stop, 0..4);
    let cuts = proptest::collection::vec(0usize..30, 0..10);
    check_property(
        "prop_stop_strings_never_leak",
        512,
        (text, stop_list, cuts),
        |(text, stop_list, cuts)| {
            let first = stop_list.iter().filter_map(|s| text.find(s.as_str())).min();
            let want = &text[..first.unwrap_or(text.len())];
            // split at character boundaries
            let chars: Vec<char> = text.chars().collect();
            let mut bounds: Vec<usize> = cuts.into_iter().filter(|&c| c <= chars.len()).collect();
            bounds.push(0);
            bounds.push(chars.len());
            bounds.sort_unstable();
            bounds.dedup();
            let mut s = StopStrings::new(stop_list.clone())
                .map_err(|e| TestCaseError::fail(format!("[error] new: {e}")))?;
            let mut out = String::new();
            let mut stopped = false;
            for w in bounds.windows(2) {
                let delta: String = chars[w[0]..w[1]].iter().collect();
                let r = s.push(&delta);
                out.push_str(&r.text);
                stopped |= r.stopped;
                for stop in &stop_list {
                    prop_assert!(
                        !out.contains(stop.as_str()),
                        "[wrong numbers] released {:?} holds stop string {:?} (text {:?}, stops {:?})",
                        out, stop, text, stop_list
                    );
                }
                prop_assert!(
                    want.starts_with(&out),
                    "[wrong numbers] released {:?} is not a prefix of {:?}, the text {:?} cut at its first stop (stops {:?})",
                    out, want, text, stop_list
                );
            }
            out.push_str(&s.finish());
            prop_assert_eq!(
                &out,
                want,
                "[wrong numbers] text {:?}, stops {:?}",
                text,
                stop_list
            );
            prop_assert_eq!(
                stopped,
                first.is_some(),
                "[wrong numbers] stopped flag (text {:?}, stops {:?})",
                text,
                stop_list
            );
            Ok(())
        },
    );
}

// ---- requests ----

fn served() -> ServedModel {
    ServedModel {
        id: "tiny-qwen2".to_string(),
        context_len: 64,
    }
}

fn chat(body: Value) -> Result<Generation, ApiError> {
    let req: ChatCompletionRequest = parse_body(body.to_string().as_bytes())?;
    chat_generation(&req, &tiny_tokenizer(), &served(), 7)
}

fn completion(body: Value) -> Result<Generation, ApiError> {
    let req: CompletionRequest = parse_body(body.to_string().as_bytes())?;
    completion_generation(&req, &tiny_tokenizer(), &served(), 7)
}

#[test]
fn chat_request_maps_to_the_engine_request_tiny() {
    let tok = tiny_tokenizer();
    let g = chat(json!({
        "model": "tiny-qwen2",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi "}, {"type": "text", "text": "there"}]}
        ],
        "max_tokens": 100, "max_completion_tokens": 5,
        "temperature": 0.5, "seed": 42, "stop": ["\n", "END"],
        "stream": true, "stream_options": {"include_usage": true}
    }))
    .unwrap_or_else(|e| panic!("[error] chat_generation refused a good request: {e}"));
    let text = tok
        .apply_chat_template(
            &[
                ChatMessage::system("Be brief."),
                ChatMessage::user("Hi there"),
            ],
            true,
        )
        .expect("template");
    let prompt = tok.encode(&text, false).expect("encode");
    assert_eq!(g.request.prompt, prompt, "[wrong numbers] the prompt: the chat template with the generation prompt, then encode(text, false); text parts joined");
    assert_eq!(
        g.request.max_tokens, 5,
        "[wrong numbers] max_completion_tokens takes precedence over max_tokens"
    );
    assert_eq!(
        g.request.sampling,
        Sampling {
            temperature: 0.5,
            seed: 42
        },
        "[wrong numbers] sampling"
    );
    assert!(
        !g.request.ignore_eos,
        "[wrong numbers] ignore_eos must be false"
    );
    assert_eq!(
        g.stop,
        vec!["\n".to_string(), "END".to_string()],
        "[wrong numbers] stop"
    );
    assert!(
        g.stream && g.include_usage,
        "[wrong numbers] stream and include_usage"
    );

    // Defaults: temperature 1, the server's seed, no limit but the context.
    let g = chat(json!({"model": "tiny-qwen2", "messages": [{"role": "user", "content": "Hi"}], "stop": "x"}))
        .unwrap_or_else(|e| panic!("[error] chat_generation refused a good request: {e}"));
    assert_eq!(
        g.request.sampling,
        Sampling {
            temperature: 1.0,
            seed: 7
        },
        "[wrong numbers] default temperature 1 and the server's seed"
    );
    assert_eq!(
        g.request.max_tokens,
        64 - g.request.prompt.len(),
        "[wrong numbers] no max_tokens: what the context leaves"
    );
    assert_eq!(
        g.stop,
        vec!["x".to_string()],
        "[wrong numbers] stop as one string"
    );
    assert!(
        !g.stream && !g.include_usage,
        "[wrong numbers] stream defaults to false"
    );
}

#[test]
fn completion_request_maps_to_the_engine_request_tiny() {
    let tok = tiny_tokenizer();
    let g = completion(
        json!({"model": "tiny-qwen2", "prompt": "fn main() {", "temperature": 0, "top_p": 1}),
    )
    .unwrap_or_else(|e| panic!("[error] completion_generation refused a good request: {e}"));
    assert_eq!(
        g.request.prompt,
        tok.encode("fn main() {", false).unwrap(),
        "[wrong numbers] the prompt as it is, no template"
    );
    assert_eq!(
        g.request.max_tokens, 16,
        "[wrong numbers] /v1/completions defaults to 16 tokens"
    );
    assert_eq!(
        g.request.sampling,
        Sampling {
            temperature: 0.0,
            seed: 7
        },
        "[wrong numbers] temperature 0 is greedy"
    );
    let g = completion(json!({"model": "tiny-qwen2", "prompt": "a b c", "max_tokens": 1000}))
        .unwrap_or_else(|e| panic!("[error] completion_generation refused a good request: {e}"));
    assert_eq!(
        g.request.max_tokens,
        64 - g.request.prompt.len(),
        "[wrong numbers] max_tokens is capped at what the context leaves"
    );
}

/// Each bad request: the status, the parameter named, and a word the
/// message must hold.
#[test]
fn bad_requests_name_the_parameter() {
    let m = |extra: Value| {
        let mut body =
            json!({"model": "tiny-qwen2", "messages": [{"role": "user", "content": "Hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let long = "word ".repeat(200);
    // (case, result, status, param, a word of the message)
    type Case<'a> = (
        &'a str,
        Result<Generation, ApiError>,
        u16,
        Option<&'a str>,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        ("n = 2", chat(m(json!({"n": 2}))), 400, Some("n"), "n = 1"),
        (
            "max_tokens 0",
            chat(m(json!({"max_tokens": 0}))),
            400,
            Some("max_tokens"),
            "at least 1",
        ),
        (
            "max_completion_tokens 0",
            chat(m(json!({"max_completion_tokens": 0}))),
            400,
            Some("max_completion_tokens"),
            "at least 1",
        ),
        (
            "max_tokens -1",
            chat(m(json!({"max_tokens": -1}))),
            400,
            Some("max_tokens"),
            "max_tokens",
        ),
        (
            "temperature 2.5",
            chat(m(json!({"temperature": 2.5}))),
            400,
            Some("temperature"),
            "between 0 and 2",
        ),
        (
            "temperature \"hot\"",
            chat(m(json!({"temperature": "hot"}))),
            400,
            Some("temperature"),
            "temperature",
        ),
        (
            "top_p 0",
            chat(m(json!({"top_p": 0}))),
            400,
            Some("top_p"),
            "top_p",
        ),
        (
            "top_p 0.9",
            chat(m(json!({"top_p": 0.9}))),
            400,
            Some("top_p"),
            "not supported",
        ),
        (
            "5 stops",
            chat(m(json!({"stop": ["a", "b", "c", "d", "e"]}))),
            400,
            Some("stop"),
            "at most 4",
        ),
        (
            "empty stop",
            chat(m(json!({"stop": ""}))),
            400,
            Some("stop"),
            "empty",
        ),
        (
            "stop 3",
            chat(m(json!({"stop": 3}))),
            400,
            Some("stop"),
            "stop",
        ),
        (
            "stream_options without stream",
            chat(m(json!({"stream_options": {"include_usage": true}}))),
            400,
            Some("stream_options"),
            "stream",
        ),
        (
            "role tool",
            chat(m(json!({"messages": [{"role": "tool", "content": "x"}]}))),
            400,
            Some("messages[0].role"),
            "tool",
        ),
        (
            "image part",
            chat(m(
                json!({"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}),
            )),
            400,
            Some("messages[0].content"),
            "image_url",
        ),
        (
            "no messages",
            chat(m(json!({"messages": []}))),
            400,
            Some("messages"),
            "messages",
        ),
        (
            "messages missing",
            chat(json!({"model": "tiny-qwen2"})),
            400,
            Some("messages"),
            "required",
        ),
        (
            "prompt too long",
            chat(m(json!({"messages": [{"role": "user", "content": long}]}))),
            400,
            Some("messages"),
            "context",
        ),
        (
            "unknown model",
            chat(m(json!({"model": "gpt-4o"}))),
            404,
            Some("model"),
            "gpt-4o",
        ),
        (
            "completion n",
            completion(json!({"model": "tiny-qwen2", "prompt": "a", "n": 3})),
            400,
            Some("n"),
            "n = 1",
        ),
        (
            "completion empty prompt",
            completion(json!({"model": "tiny-qwen2", "prompt": ""})),
            400,
            Some("prompt"),
            "empty",
        ),
        (
            "completion unknown model",
            completion(json!({"model": "x", "prompt": "a"})),
            404,
            Some("model"),
            "x",
        ),
    ];
    for (case, r, status, param, word) in cases {
        let e = should_fail("chat_generation / completion_generation", case, r);
        let body = serde_json::to_value(e.body()).unwrap();
        assert_eq!(
            e.status(),
            status,
            "[wrong numbers] case {case}: status {} ({e}), expected {status}",
            e.status()
        );
        assert_eq!(
            body["error"]["param"].as_str(),
            param,
            "[wrong numbers] case {case}: param {} ({e})",
            body["error"]["param"]
        );
        assert!(
            e.to_string().contains(word),
            "[wrong numbers] case {case}: the message should say {word:?}: {e}"
        );
    }
    // The error body, as the API reference's error guide shapes it.
    let e = chat(m(json!({"temperature": 3}))).expect_err("[should fail] temperature 3");
    let got = serde_json::to_value(e.body()).unwrap();
    let want = json!({"error": {"message": e.to_string(), "type": "invalid_request_error", "param": "temperature", "code": null}});
    assert_eq!(got, want, "[wrong numbers] error body");
    let e = chat(m(json!({"model": "gpt-4o"}))).expect_err("[should fail] unknown model");
    let got = serde_json::to_value(e.body()).unwrap();
    assert_eq!(
        got["error"]["code"], "model_not_found",
        "[wrong numbers] 404 body: {got}"
    );
    // Not JSON, or not an object: no param.
    for bad in [&b"{\"model\": "[..], b"[1, 2]"] {
        let e = should_fail(
            "parse_body",
            "not an object",
            parse_body::<ChatCompletionRequest>(bad),
        );
        assert_eq!(
            (e.status(), e.body().error.param),
            (400, None),
            "[wrong numbers] a body that is not a JSON object"
        );
    }
}

// ---- responses: literal JSON from the OpenAI API reference ----

fn stats() -> RequestStats {
    RequestStats {
        prompt_tokens: 9,
        output_tokens: 12,
        prefill_tokens_computed: 9,
        cached_tokens: 0,
    }
}

#[test]
fn chat_completion_json_shape() {
    let u = usage(&stats());
    let got = serde_json::to_value(chat_completion(
        "chatcmpl-123",
        1677652288,
        "tiny-qwen2",
        "Hello there!".into(),
        "stop",
        u,
    ))
    .unwrap();
    let want = json!({
        "id": "chatcmpl-123",
        "object": "chat.completion",
        "created": 1677652288,
        "model": "tiny-qwen2",
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": "Hello there!"},
            "logprobs": null,
            "finish_reason": "stop"
        }],
        "usage": {
            "prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21,
            "prompt_tokens_details": {"cached_tokens": 0}
        }
    });
    assert_eq!(
        got, want,
        "[wrong numbers] chat.completion:\n got {got:#}\nwant {want:#}"
    );
}

#[test]
fn chat_chunks_json_shape() {
    let base = |choices: Value| json!({"id": "chatcmpl-123", "object": "chat.completion.chunk", "created": 1694268190, "model": "tiny-qwen2", "choices": choices});
    let c = ChatChunker::new("chatcmpl-123", 1694268190, "tiny-qwen2", false);
    let got: Vec<Value> = vec![
        serde_json::to_value(c.role()).unwrap(),
        serde_json::to_value(c.content("Hello")).unwrap(),
        serde_json::to_value(c.finish("length")).unwrap(),
    ];
    let want = vec![
        base(
            json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]),
        ),
        base(
            json!([{"index": 0, "delta": {"content": "Hello"}, "logprobs": null, "finish_reason": null}]),
        ),
        base(json!([{"index": 0, "delta": {}, "logprobs": null, "finish_reason": "length"}])),
    ];
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "[wrong numbers] chunk {i} without include_usage (no usage key):\n got {g:#}\nwant {w:#}");
    }
    assert!(
        c.usage(usage(&stats())).is_none(),
        "[wrong numbers] no usage chunk without include_usage"
    );

    // include_usage: "usage": null in each chunk, then a chunk with no
    // choices and the usage.
    let c = ChatChunker::new("chatcmpl-123", 1694268190, "tiny-qwen2", true);
    let mut w = base(
        json!([{"index": 0, "delta": {"content": "Hi"}, "logprobs": null, "finish_reason": null}]),
    );
    w["usage"] = Value::Null;
    let g = serde_json::to_value(c.content("Hi")).unwrap();
    assert_eq!(
        g, w,
        "[wrong numbers] a content chunk with include_usage:\n got {g:#}\nwant {w:#}"
    );
    let mut w = base(json!([]));
    w["usage"] = json!({"prompt_tokens": 9, "completion_tokens": 12, "total_tokens": 21, "prompt_tokens_details": {"cached_tokens": 0}});
    let g = serde_json::to_value(c.usage(usage(&stats()))).unwrap();
    assert_eq!(
        g, w,
        "[wrong numbers] the usage chunk:\n got {g:#}\nwant {w:#}"
    );
}

#[test]
fn text_completion_json_shape() {
    let u = usage(&RequestStats {
        prompt_tokens: 5,
        output_tokens: 7,
        prefill_tokens_computed: 1,
        cached_tokens: 4,
    });
    let got = serde_json::to_value(text_completion(
        "cmpl-1",
        1589478378,
        "tiny-qwen2",
        Some("\n\nThis is a test".into()),
        Some("length"),
        Some(Some(u)),
    ))
    .unwrap();
    let want = json!({
        "id": "cmpl-1", "object": "text_completion", "created": 1589478378, "model": "tiny-qwen2",
        "choices": [{"text": "\n\nThis is a test", "index": 0, "logprobs": null, "finish_reason": "length"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12, "prompt_tokens_details": {"cached_tokens": 4}}
    });
    assert_eq!(
        got, want,
        "[wrong numbers] text_completion:\n got {got:#}\nwant {want:#}"
    );
    let got = serde_json::to_value(text_completion(
        "cmpl-1",
        1,
        "m",
        Some("a".into()),
        None,
        None,
    ))
    .unwrap();
    let want = json!({"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m",
        "choices": [{"text": "a", "index": 0, "logprobs": null, "finish_reason": null}]});
    assert_eq!(
        got, want,
        "[wrong numbers] a streamed text_completion chunk:\n got {got:#}\nwant {want:#}"
    );
}
