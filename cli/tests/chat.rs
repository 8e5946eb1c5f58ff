//! `tiny-llm-chat` as a learner runs it, on the tiny fixture model
//! (`fixtures/tiny-qwen2`: 2 layers, random weights, the Qwen2.5 chat
//! template): piped chat, `--messages`, `--max-tokens 0`, a prompt past the
//! context.
//!
//! Built with `--features solutions` the reference answers; built against
//! the learner's stubs the same runs must stop with "not implemented yet"
//! (exit code 3) once they reach the model.

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
        &["--chat", "--show-prompt", "--max-tokens", "3"],
        "hi\n\nand then?\n",
    );
    if !REFERENCE {
        return assert_not_implemented(&out);
    }
    let err = text(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches("no KV cache").count(), 1, "said once: {err}");
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
        err.contains("tokens, - tok/s | decode: 0 tokens, - tok/s"),
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
