//! One loaded model answering conversations: chat template, context check,
//! slow-prompt warning, prefill spinner, streamed answer, speeds.

use crate::imp::generate::simple_generate;
use crate::imp::sampler::Sampler;
use crate::{limits, progress};
use anyhow::Result;
use std::io::Write;
use tiny_llm_common::{CausalLm, ChatMessage, Tokenizer};

/// What a [`Session`] needs besides the model.
pub struct Options {
    /// `--max-tokens`, before it is fitted to the context.
    pub max_tokens: usize,
    /// The model's context (`max_position_embeddings`).
    pub context: usize,
    /// `--show-prompt`: print the rendered prompt (on stderr) first.
    pub show_prompt: bool,
    /// The model's sizes, for the slow-prompt estimate.
    pub shape: progress::Shape,
    /// f16/bf16 weights (slower on the CPU).
    pub half: bool,
    /// MLX computes on a GPU.
    pub gpu: bool,
}

/// A model, its tokenizer and a sampler, ready to answer.
pub struct Session<M> {
    pub model: M,
    pub tokenizer: Tokenizer,
    pub sampler: Sampler,
    pub options: Options,
}

impl<M: CausalLm> Session<M> {
    /// Answers `messages` (chat template applied, generation prompt added):
    /// streams the answer to `out` as it comes, then a line break, and the
    /// speeds on stderr. Returns the answer's text.
    ///
    /// Errors: the chat template's; a prompt that does not fit in the
    /// context ([`limits::budget`]); the model's, sampler's or tokenizer's.
    pub fn answer(&mut self, messages: &[ChatMessage], out: &mut dyn Write) -> Result<String> {
        let text = self.tokenizer.apply_chat_template(messages, true)?;
        let ids = self.tokenizer.encode(&text, false)?;
        if self.options.show_prompt {
            eprintln!(
                "--- prompt ({} tokens, chat template applied) ---\n{text}\n--- answer ---",
                ids.len()
            );
        }
        let budget = limits::budget(ids.len(), self.options.max_tokens, self.options.context)
            .map_err(anyhow::Error::msg)?;
        if let Some(note) = &budget.note {
            eprintln!("[{note}]");
        }
        let o = &self.options;
        if let Some(warning) = progress::slow_warning(&o.shape, ids.len(), o.half, o.gpu) {
            eprintln!("{warning}");
        }
        let mut answer = String::new();
        let mut spinner = progress::Spinner::start(ids.len());
        let stats = simple_generate(
            &self.model,
            &self.tokenizer,
            &ids,
            budget.max_new,
            &mut self.sampler,
            |piece| {
                spinner.stop();
                answer.push_str(piece);
                // a closed pipe (`| head`) is not an error worth a panic
                let _ = out.write_all(piece.as_bytes());
                let _ = out.flush();
            },
        )?;
        spinner.stop();
        let _ = writeln!(out);
        let _ = out.flush();
        eprintln!(
            "{}",
            limits::stats_line(
                stats.prompt_tokens,
                stats.tokens.len(),
                stats.prefill_seconds,
                stats.decode_seconds,
                &format!("{:?}", stats.finish_reason),
            )
        );
        Ok(answer)
    }
}

#[cfg(all(test, feature = "solutions"))]
mod tests {
    //! The answer path against the reference's generation loop, with a
    //! scripted model (no weights) and the tiny fixture's tokenizer.
    use super::*;
    use crate::imp::sampler::SamplerConfig;
    use mlx_rs::Array;
    use std::cell::Cell;
    use std::path::PathBuf;

    /// Produces `script[i]` at step `i` (one-hot logits over `vocab`).
    struct Scripted {
        script: Vec<u32>,
        vocab: usize,
        step: Cell<usize>,
    }

    impl CausalLm for Scripted {
        fn forward_last(&self, _inputs: &Array) -> tiny_llm_common::Result<Array> {
            let i = self.step.get();
            self.step.set(i + 1);
            let mut logits = vec![0.0f32; self.vocab];
            logits[self.script[i] as usize] = 20.0;
            Ok(Array::from_slice(&logits, &[1, self.vocab as i32]))
        }
    }

    fn session(script: Vec<u32>, max_tokens: usize, context: usize) -> Session<Scripted> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tiny-qwen2");
        let tokenizer = Tokenizer::from_dir(&dir).unwrap();
        let sampler = Sampler::new(SamplerConfig {
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: 0,
        })
        .unwrap();
        let shape = progress::Shape {
            layers: 1.0,
            hidden: 1.0,
            q_heads: 1.0,
            kv_heads: 1.0,
            head_dim: 1.0,
            intermediate: 1.0,
        };
        Session {
            model: Scripted {
                script,
                vocab: 1088,
                step: Cell::new(0),
            },
            tokenizer,
            sampler,
            options: Options {
                max_tokens,
                context,
                show_prompt: false,
                shape,
                half: false,
                gpu: false,
            },
        }
    }

    fn answer(s: &mut Session<Scripted>) -> (Result<String>, String) {
        let mut out = Vec::new();
        let got = s.answer(&[ChatMessage::user("hi")], &mut out);
        (got, String::from_utf8(out).unwrap())
    }

    /// `--max-tokens` that cuts an emoji prints no U+FFFD.
    #[test]
    fn a_cut_emoji_prints_no_replacement_character() {
        let tok = session(vec![], 0, 2048).tokenizer;
        let crab = tok.encode("🦀", false).unwrap();
        assert!(crab.len() >= 2, "🦀 is one token here: {crab:?}");
        // the first token alone is an incomplete character
        assert!(tok.decode(&crab[..1]).unwrap().ends_with('\u{FFFD}'));

        let mut whole = session(crab.clone(), crab.len(), 2048);
        let (text, printed) = answer(&mut whole);
        assert_eq!(text.unwrap(), "🦀");
        assert_eq!(printed, "🦀\n");

        for cut in 1..crab.len() {
            let mut s = session(crab.clone(), cut, 2048);
            let (text, printed) = answer(&mut s);
            let text = text.unwrap();
            assert!(!printed.contains('\u{FFFD}'), "cut {cut}: {printed:?}");
            assert!(!text.contains('\u{FFFD}'), "cut {cut}: {text:?}");
            assert_eq!(printed, format!("{text}\n"));
        }
    }

    #[test]
    fn max_tokens_zero_and_huge_and_a_full_context() {
        let tok = session(vec![], 0, 2048).tokenizer;
        let a = tok.encode("a", false).unwrap();
        assert_eq!(a.len(), 1);
        // 0: nothing generated, nothing printed but the line break
        let mut s = session(vec![], 0, 2048);
        let (text, printed) = answer(&mut s);
        assert_eq!((text.unwrap(), printed.as_str()), (String::new(), "\n"));
        assert_eq!(s.model.step.get(), 0);
        // huge: cut to the room the context leaves, and generated in full
        let prompt = tok
            .apply_chat_template(&[ChatMessage::user("hi")], true)
            .unwrap();
        let prompt_len = tok.encode(&prompt, false).unwrap().len();
        let room = 3;
        let mut s = session(vec![a[0]; room + 5], usize::MAX, prompt_len + room);
        let (text, printed) = answer(&mut s);
        assert_eq!(text.unwrap(), "aaa");
        assert_eq!(printed, "aaa\n");
        assert_eq!(s.model.step.get(), room);
        // a prompt past the context: a clear error, and the model never runs
        let mut s = session(vec![], 16, prompt_len - 1);
        let err = answer(&mut s).0.unwrap_err().to_string();
        assert!(err.contains("more than the model's context"), "{err}");
        assert_eq!(s.model.step.get(), 0);
    }
}
