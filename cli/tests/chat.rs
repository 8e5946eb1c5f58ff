//! `tiny-llm-chat` as a learner runs it, on the tiny fixture model
//! (`fixtures/tiny-qwen2`: 2 layers, random weights, the Qwen2.5 chat
//! template, and its 4-bit copy `fixtures/tiny-qwen2-4bit`): piped chat,
//! `--messages`, `--max-tokens 0`, a prompt past the context, `--week` and
//! `--quant`.
//!
//! Built with `--features solutions` the reference answers; built against
//! the learner's stubs the same runs must stop with "not implemented yet"
//! (exit code 3) once they reach the model (week 2 first falls back to
//! week 1 with a note, unless `--week 2` was given).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

const REFERENCE: bool = cfg!(feature = "solutions");

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!("tiny-llm-cli-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the chat program on the tiny model with `args` and `stdin`.
fn chat(args: &[&str], stdin: &str) -> Output {
    let model = fixtures().join("tiny-qwen2");
    let mut child = Command::new(env!("CARGO_BIN_EXE_tiny-llm-chat"))
        .arg(format!("--model={}", model.display()))
        .args(["--device", "cpu"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Against the stubs: the run stops at the learner's first `todo!()`.
fn assert_not_implemented(out: &Output) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("is not implemented yet"), "{err}");
}

#[test]
fn piped_chat_keeps_the_history() {
    let out = chat(
        &[
            "--chat",
            "--show-prompt",
            "--max-tokens",
            "3",
            "--week",
            "1",
        ],
        "hi\n\nand then?\n",
    );
    if !REFERENCE {
        return assert_not_implemented(&out);
    }
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(
        err.matches("Week 1 has no KV cache").count(),
        1,
        "said once: {err}"
    );
    assert_eq!(err.matches("[prompt: ").count(), 2, "two turns: {err}");
    let prompts: Vec<&str> = err.split("--- prompt (").skip(1).collect();
    assert_eq!(prompts.len(), 2, "{err}");
    let (first, second) = (prompts[0], prompts[1]);
    let hi = "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n";
    assert!(
        first.contains(hi) && !first.contains("and then?"),
        "{first}"
    );
    // the second turn carries the first, its answer, and the new message
    let at_hi = second.find(hi).expect("turn 1 in turn 2's prompt");
    let at_then = second
        .find("<|im_start|>user\nand then?<|im_end|>\n<|im_start|>assistant\n")
        .expect("turn 2's message");
    assert!(at_hi < at_then, "{second}");
    let tokens = |p: &str| -> usize { p.split(' ').next().unwrap().parse().unwrap() };
    assert!(tokens(second) > tokens(first), "{first}\n{second}");
}

#[test]
fn a_messages_file_is_answered_and_a_bad_one_named() {
    let good = temp_file(
        "good.json",
        r#"{"messages": [{"role": "system", "content": "Be terse."},
                         {"role": "user", "content": "Name a prime."},
                         {"role": "assistant", "content": "7"},
                         {"role": "user", "content": "Another?"}]}"#,
    );
    let out = chat(
        &[
            "--messages",
            good.to_str().unwrap(),
            "--show-prompt",
            "--max-tokens",
            "2",
        ],
        "",
    );
    if REFERENCE {
        let err = text(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert!(
            err.contains(
                "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nName a prime.<|im_end|>\n\
                 <|im_start|>assistant\n7<|im_end|>\n<|im_start|>user\nAnother?<|im_end|>\n\
                 <|im_start|>assistant\n"
            ),
            "{err}"
        );
    } else {
        assert_not_implemented(&out);
    }

    // a malformed file: exit code 1 before any model code runs, in both builds
    let bad = temp_file(
        "bad.json",
        r#"[{"role": "user", "content": "hi"}, {"role": "user"}]"#,
    );
    let out = chat(&["--messages", bad.to_str().unwrap()], "");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("bad.json: message 2: missing key `content`"),
        "{err}"
    );
    let _ = std::fs::remove_file(good);
    let _ = std::fs::remove_file(bad);
}

#[test]
fn max_tokens_zero_and_a_prompt_past_the_context() {
    let out = chat(&["--max-tokens", "0", "hi"], "");
    if !REFERENCE {
        return assert_not_implemented(&out);
    }
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("tokens, - tok/s | first token: - | decode: 0 tokens, - tok/s"),
        "{err}"
    );
    assert!(!err.contains("inf"), "{err}");
    assert_eq!(text(&out.stdout), "\n");

    // the tiny model's context is 2048 tokens (max_position_embeddings)
    let long = "a ".repeat(3000);
    let out = chat(&["--max-tokens", "18446744073709551615", &long], "");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("more than the model's context of 2048 tokens"),
        "{err}"
    );
}

/// The greedy answer of `args` on the tiny model: (exit code, stdout, stderr).
fn greedy(args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["--max-tokens", "8", "--dtype", "f32"];
    all.extend_from_slice(args);
    all.push("hi");
    let out = chat(&all, "");
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

/// Week 2 (KV cache) gives the same greedy tokens as week 1 (no cache).
#[test]
fn week_2_answers_as_week_1_does() {
    let (code2, out2, err2) = greedy(&["--week", "2"]);
    if !REFERENCE {
        assert_eq!(code2, Some(3), "{err2}");
        assert!(err2.contains("day 8 is not implemented yet"), "{err2}");
        assert!(
            !err2.contains("running the week-1 path"),
            "no fallback: {err2}"
        );
        return;
    }
    let (code1, out1, err1) = greedy(&["--week", "1"]);
    assert_eq!(code1, Some(0), "{err1}");
    assert_eq!(code2, Some(0), "{err2}");
    assert!(err1.contains("week 1, no KV cache"), "{err1}");
    assert!(err2.contains("week 2, KV cache"), "{err2}");
    assert!(err2.contains("first token: "), "{err2}");
    assert!(!out1.trim().is_empty(), "{err1}");
    assert_eq!(out2, out1, "week 2 and week 1 answer differently");
}

/// Without `--week`, week 2 runs; while day 8 is not implemented, week 1
/// runs instead, after a one-line note.
#[test]
fn week_2_is_the_default_and_falls_back_with_a_note() {
    let (code, _, err) = greedy(&[]);
    let note = "[week 2: day 8 is not implemented yet";
    if REFERENCE {
        assert_eq!(code, Some(0), "{err}");
        assert!(
            err.contains("week 2, KV cache") && !err.contains(note),
            "{err}"
        );
    } else {
        // week 1's own first missing day follows the note
        assert_eq!(code, Some(3), "{err}");
        assert_eq!(err.matches(note).count(), 1, "{err}");
        assert_eq!(err.matches("is not implemented yet").count(), 2, "{err}");
    }
}

/// `--quant 4` loads the 4-bit copy beside the model; `--quant 8` has none.
#[test]
fn quant_picks_the_copy_beside_the_model() {
    let (code, out, err) = greedy(&["--quant", "8"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("no 8-bit copy of ") && err.contains("tiny-qwen2-8bit"),
        "{err}"
    );
    assert!(out.is_empty(), "{out}");
    for week in ["1", "2"] {
        let (code, _, err) = greedy(&["--quant", "4", "--week", week]);
        if !REFERENCE {
            assert_eq!(code, Some(3), "{err}");
            continue;
        }
        assert_eq!(code, Some(0), "week {week}: {err}");
        assert!(
            err.contains("tiny-qwen2-4bit (2 layers, 4-bit g32, "),
            "{err}"
        );
    }
    // the 4-bit copy given directly is used as it is, as --quant 4 would
    let copy = fixtures().join("tiny-qwen2-4bit");
    let out = Command::new(env!("CARGO_BIN_EXE_tiny-llm-chat"))
        .arg(format!("--model={}", copy.display()))
        .args(["--device", "cpu", "--quant", "8", "hi"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is already quantized (4 bits, groups of 32"),
        "{err}"
    );
}
