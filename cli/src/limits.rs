//! How many tokens a turn may generate: `--max-tokens` against the model's
//! context, and the speeds printed after it.
//!
//! The context is `max_position_embeddings` from `config.json` (32,768 for
//! Qwen2.5-Coder-0.5B-Instruct): the prompt and the generated tokens
//! together must fit in it, since the week-1 loop feeds the whole sequence
//! to the model at every step.

/// The tokens a turn may generate, and a note when `--max-tokens` was cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// New tokens to ask for: `min(max_tokens, context - prompt_tokens)`.
    pub max_new: usize,
    /// Set when `max_tokens` did not fit: what to tell the user.
    pub note: Option<String>,
}

/// Fits `max_tokens` new tokens after a prompt of `prompt_tokens` into a
/// context of `context` tokens.
///
/// Errors (as text): an empty prompt; a prompt that fills the context or is
/// longer than it (nothing could be generated).
pub fn budget(prompt_tokens: usize, max_tokens: usize, context: usize) -> Result<Budget, String> {
    if prompt_tokens == 0 {
        return Err("the prompt has no tokens".into());
    }
    if prompt_tokens >= context {
        return Err(format!(
            "the prompt has {prompt_tokens} tokens, {} the model's context of {context} tokens \
             (`max_position_embeddings` in config.json): shorten it{}",
            if prompt_tokens == context {
                "which fills"
            } else {
                "more than"
            },
            " (in `chat`, `/reset` starts a new conversation)"
        ));
    }
    let room = context - prompt_tokens;
    if max_tokens <= room {
        return Ok(Budget {
            max_new: max_tokens,
            note: None,
        });
    }
    Ok(Budget {
        max_new: room,
        note: Some(format!(
            "--max-tokens {max_tokens} goes past the model's context of {context} tokens: \
             generating at most {room} (the prompt has {prompt_tokens})"
        )),
    })
}

/// Tokens per second, or `None` when it is not defined (no tokens, or no
/// measurable time).
fn rate(tokens: usize, seconds: f64) -> Option<f64> {
    (tokens > 0 && seconds > 0.0 && seconds.is_finite()).then(|| tokens as f64 / seconds)
}

fn show(rate: Option<f64>) -> String {
    rate.map_or_else(|| "-".to_string(), |r| format!("{r:.2}"))
}

/// The line printed after an answer.
///
/// - `prompt_tokens`: the prompt's length.
/// - `reused`: with a prompt cache, how many of the prompt's tokens came
///   from it (their keys and values were not computed again).
/// - `generated`: tokens sampled (an end-of-sequence token included).
/// - `prefill_seconds`: the prompt's forward pass and the first sample.
/// - `decode_seconds`: from the first sampled token to the last.
/// - `finish`: why it stopped (`Stop`, `Length`).
///
/// Prefill speed is the prompt tokens computed (`prompt_tokens - reused`)
/// per `prefill_seconds`; the time to the first token is `prefill_seconds`
/// (`-` when none was generated); decode speed is `(generated - 1) /
/// decode_seconds` (the first token comes out of the prefill). A speed
/// that is not defined (`--max-tokens 0`, one token) prints as `-`, never
/// `inf` or `NaN`.
pub fn stats_line(
    prompt_tokens: usize,
    reused: Option<usize>,
    generated: usize,
    prefill_seconds: f64,
    decode_seconds: f64,
    finish: &str,
) -> String {
    let computed = prompt_tokens.saturating_sub(reused.unwrap_or(0));
    let prefill = if generated == 0 {
        None
    } else {
        rate(computed, prefill_seconds)
    };
    let decode = rate(generated.saturating_sub(1), decode_seconds);
    let first = if generated == 0 {
        "-".to_string()
    } else {
        format!("{prefill_seconds:.2} s")
    };
    let cached = reused.map_or_else(String::new, |r| format!(" ({r} reused from the cache)"));
    format!(
        "[prompt: {prompt_tokens} tokens{cached}, {} tok/s | first token: {first} | decode: {generated} tokens, {} tok/s | {finish} | {:.1} s in all]",
        show(prefill),
        show(decode),
        prefill_seconds + decode_seconds,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_tokens_is_cut_to_the_context() {
        assert_eq!(
            budget(10, 256, 2048),
            Ok(Budget {
                max_new: 256,
                note: None
            })
        );
        // exactly what fits
        assert_eq!(budget(10, 2038, 2048).unwrap().max_new, 2038);
        // one more, and a huge value, are cut to the room left
        for asked in [2039, usize::MAX] {
            let b = budget(10, asked, 2048).unwrap();
            assert_eq!(b.max_new, 2038);
            let note = b.note.unwrap();
            assert!(
                note.starts_with(&format!("--max-tokens {asked} goes past")),
                "{note}"
            );
            assert!(note.contains("at most 2038"), "{note}");
        }
        assert_eq!(budget(10, 0, 2048).unwrap().max_new, 0);
    }

    #[test]
    fn prompts_that_do_not_fit_are_errors() {
        let e = budget(3000, 16, 2048).unwrap_err();
        assert!(
            e.starts_with("the prompt has 3000 tokens, more than the model's context of 2048"),
            "{e}"
        );
        let e = budget(2048, 16, 2048).unwrap_err();
        assert!(e.contains("which fills the model's context"), "{e}");
        assert_eq!(budget(0, 16, 2048).unwrap_err(), "the prompt has no tokens");
    }

    #[test]
    fn undefined_speeds_print_as_a_dash() {
        // --max-tokens 0: nothing ran
        assert_eq!(
            stats_line(12, None, 0, 0.0, 0.0, "Length"),
            "[prompt: 12 tokens, - tok/s | first token: - | decode: 0 tokens, - tok/s | Length | 0.0 s in all]"
        );
        // one token: prefill only (12 / 0.5 = 24), no decode speed
        assert_eq!(
            stats_line(12, None, 1, 0.5, 0.0, "Length"),
            "[prompt: 12 tokens, 24.00 tok/s | first token: 0.50 s | decode: 1 tokens, - tok/s | Length | 0.5 s in all]"
        );
        // 12 / 0.25 = 48 tok/s; (5 - 1) / 1.75 = 2.2857 tok/s; 0.25 + 1.75 = 2 s
        assert_eq!(
            stats_line(12, None, 5, 0.25, 1.75, "Stop"),
            "[prompt: 12 tokens, 48.00 tok/s | first token: 0.25 s | decode: 5 tokens, 2.29 tok/s | Stop | 2.0 s in all]"
        );
        // a prompt cache: 9 of 12 tokens reused, 3 computed in 0.25 s = 12 tok/s
        assert_eq!(
            stats_line(12, Some(9), 5, 0.25, 1.75, "Stop"),
            "[prompt: 12 tokens (9 reused from the cache), 12.00 tok/s | first token: 0.25 s | decode: 5 tokens, 2.29 tok/s | Stop | 2.0 s in all]"
        );
    }
}
