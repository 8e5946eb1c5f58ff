//! One loaded model answering conversations: chat template, context check,
//! slow-prompt warning, prefill spinner, streamed answer, speeds.

use crate::engine::Engine;
use crate::imp::sampler::Sampler;
use crate::{limits, progress};
use anyhow::Result;
use std::io::Write;
use tiny_llm_common::{ChatMessage, Tokenizer};

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

/// A model (on the week-1 or week-2 path), its tokenizer and a sampler,
/// ready to answer.
pub struct Session<E> {
    pub engine: E,
    pub tokenizer: Tokenizer,
    pub sampler: Sampler,
    pub options: Options,
}

impl<E: Engine> Session<E> {
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
        let week = self.engine.week();
        if let Some(warning) = progress::slow_warning(&o.shape, ids.len(), o.half, o.gpu, week) {
            eprintln!("{warning}");
        }
        let mut answer = String::new();
        let mut spinner = progress::Spinner::start(ids.len());
        let turn = self.engine.generate(
            &self.tokenizer,
            &ids,
            budget.max_new,
            &mut self.sampler,
            &mut |piece| {
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
        let stats = &turn.stats;
        eprintln!(
            "{}",
            limits::stats_line(
                stats.prompt_tokens,
                turn.reused,
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
    //! The answer path against the reference's generation loop (week 1) and
    //! the given per-step `Generation` (week 2), with a scripted model (no
    //! weights) and the tiny fixture's tokenizer.
    use super::*;
    use crate::engine::{Week1, Week2};
    use crate::imp::sampler::SamplerConfig;
    use mlx_rs::Array;
    use std::cell::{Cell, RefCell};
    use std::path::PathBuf;
    use tiny_llm_common::{CachedLm, CausalLm, KvCache};

    /// Produces `script[i]` at step `i` (one-hot logits over `vocab`), and
    /// records how many tokens each step was given.
    struct Scripted {
        script: Vec<u32>,
        vocab: usize,
        step: Cell<usize>,
        fed: RefCell<Vec<i32>>,
    }

    impl Scripted {
        fn next(&self, inputs: &Array) -> Array {
            let i = self.step.get();
            self.step.set(i + 1);
            self.fed.borrow_mut().push(inputs.dim(1));
            let mut logits = vec![0.0f32; self.vocab];
            logits[self.script[i] as usize] = 20.0;
            Array::from_slice(&logits, &[1, self.vocab as i32])
        }
    }

    impl CausalLm for Scripted {
        fn forward_last(&self, inputs: &Array) -> tiny_llm_common::Result<Array> {
            Ok(self.next(inputs))
        }
    }

    /// No caches: the script stands for what they would hold.
    impl CachedLm for Scripted {
        fn new_cache(&self) -> Vec<Box<dyn KvCache>> {
            Vec::new()
        }
        fn forward_last_cached(
            &self,
            inputs: &Array,
            _cache: &mut [Box<dyn KvCache>],
        ) -> tiny_llm_common::Result<Array> {
            Ok(self.next(inputs))
        }
    }

    /// Week 1 or week 2 around the same script.
    trait Wrap: Engine + Sized {
        fn wrap(m: Scripted) -> Self;
        fn model(&self) -> &Scripted;
    }
    impl Wrap for Week1<Scripted> {
        fn wrap(m: Scripted) -> Self {
            Week1(m)
        }
        fn model(&self) -> &Scripted {
            &self.0
        }
    }
    impl Wrap for Week2<Scripted> {
        fn wrap(m: Scripted) -> Self {
            Week2::new(m)
        }
        fn model(&self) -> &Scripted {
            Week2::model(self)
        }
    }

    fn scripted(script: Vec<u32>) -> Scripted {
        Scripted {
            script,
            vocab: 1088,
            step: Cell::new(0),
            fed: RefCell::new(Vec::new()),
        }
    }

    fn session<E: Wrap>(script: Vec<u32>, max_tokens: usize, context: usize) -> Session<E> {
        session_with(E::wrap(scripted(script)), max_tokens, context)
    }

    fn session_with<E: Engine>(engine: E, max_tokens: usize, context: usize) -> Session<E> {
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
            engine,
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

    fn answer<E: Engine>(s: &mut Session<E>) -> (Result<String>, String) {
        let mut out = Vec::new();
        let got = s.answer(&[ChatMessage::user("hi")], &mut out);
        (got, String::from_utf8(out).unwrap())
    }

    /// `--max-tokens` that cuts an emoji prints no U+FFFD.
    fn a_cut_emoji_prints_no_replacement_character<E: Wrap>() {
        let tok = session::<E>(vec![], 0, 2048).tokenizer;
        let crab = tok.encode("🦀", false).unwrap();
        assert!(crab.len() >= 2, "🦀 is one token here: {crab:?}");
        // the first token alone is an incomplete character
        assert!(tok.decode(&crab[..1]).unwrap().ends_with('\u{FFFD}'));

        let mut whole = session::<E>(crab.clone(), crab.len(), 2048);
        let (text, printed) = answer(&mut whole);
        assert_eq!(text.unwrap(), "🦀");
        assert_eq!(printed, "🦀\n");

        for cut in 1..crab.len() {
            let mut s = session::<E>(crab.clone(), cut, 2048);
            let (text, printed) = answer(&mut s);
            let text = text.unwrap();
            assert!(!printed.contains('\u{FFFD}'), "cut {cut}: {printed:?}");
            assert!(!text.contains('\u{FFFD}'), "cut {cut}: {text:?}");
            assert_eq!(printed, format!("{text}\n"));
        }
    }

    fn max_tokens_zero_and_huge_and_a_full_context<E: Wrap>() {
        let tok = session::<E>(vec![], 0, 2048).tokenizer;
        let a = tok.encode("a", false).unwrap();
        assert_eq!(a.len(), 1);
        // 0: nothing generated, nothing printed but the line break
        let mut s = session::<E>(vec![], 0, 2048);
        let (text, printed) = answer(&mut s);
        assert_eq!((text.unwrap(), printed.as_str()), (String::new(), "\n"));
        assert_eq!(s.engine.model().step.get(), 0);
        // huge: cut to the room the context leaves, and generated in full
        let prompt = tok
            .apply_chat_template(&[ChatMessage::user("hi")], true)
            .unwrap();
        let prompt_len = tok.encode(&prompt, false).unwrap().len();
        let room = 3;
        let mut s = session::<E>(vec![a[0]; room + 5], usize::MAX, prompt_len + room);
        let (text, printed) = answer(&mut s);
        assert_eq!(text.unwrap(), "aaa");
        assert_eq!(printed, "aaa\n");
        assert_eq!(s.engine.model().step.get(), room);
        // a prompt past the context: a clear error, and the model never runs
        let mut s = session::<E>(vec![], 16, prompt_len - 1);
        let err = answer(&mut s).0.unwrap_err().to_string();
        assert!(err.contains("more than the model's context"), "{err}");
        assert_eq!(s.engine.model().step.get(), 0);
    }

    #[test]
    fn week1_a_cut_emoji_prints_no_replacement_character() {
        a_cut_emoji_prints_no_replacement_character::<Week1<Scripted>>();
    }

    #[test]
    fn week2_a_cut_emoji_prints_no_replacement_character() {
        a_cut_emoji_prints_no_replacement_character::<Week2<Scripted>>();
    }

    #[test]
    fn week1_max_tokens_zero_and_huge_and_a_full_context() {
        max_tokens_zero_and_huge_and_a_full_context::<Week1<Scripted>>();
    }

    #[test]
    fn week2_max_tokens_zero_and_huge_and_a_full_context() {
        max_tokens_zero_and_huge_and_a_full_context::<Week2<Scripted>>();
    }

    /// With a prompt cache, the second turn (the template re-rendering the
    /// first turn's prompt and answer, then the new message) feeds the
    /// model only what follows the cached tokens: the first turn's prompt
    /// and the answer's tokens fed back (all but the last sampled one).
    #[test]
    fn week2_with_a_prompt_cache_feeds_only_the_new_turn() {
        use crate::imp::prompt_cache::PromptCache;
        let tok = session::<Week1<Scripted>>(vec![], 0, 2048).tokenizer;
        let ab = tok.encode("ab", false).unwrap();
        let eos = tok.eos_token_ids()[0];
        // turn 1 answers "ab", turn 2 the first token of "ab"
        let script: Vec<u32> = ab.iter().copied().chain([eos, ab[0], eos]).collect();
        let m = scripted(script);
        let cache = PromptCache::for_model(&m);
        let mut s = session_with(Week2::with_prompt_cache(m, cache), 16, 2048);
        assert!(s.engine.reuses_prompts());
        let render = |h: &[ChatMessage]| {
            tok.encode(&tok.apply_chat_template(h, true).unwrap(), false)
                .unwrap()
        };
        let mut history = vec![ChatMessage::user("hi")];
        let p1 = render(&history);
        let mut out = Vec::new();
        let a1 = s.answer(&history, &mut out).unwrap();
        assert_eq!(a1, "ab");
        history.push(ChatMessage::assistant(a1));
        history.push(ChatMessage::user("more"));
        let p2 = render(&history);
        let cached: Vec<u32> = p1.iter().chain(&ab).copied().collect();
        assert!(
            p2.starts_with(&cached),
            "{p1:?} + {ab:?} is not a prefix of {p2:?}"
        );
        let a2 = s.answer(&history, &mut out).unwrap();
        assert_eq!(a2, tok.decode(&ab[..1]).unwrap());
        let fed = s.engine.model().fed.borrow().clone();
        // turn 1: the prompt, then the answer's tokens one at a time; turn
        // 2: only the tokens after the cached ones, then its one answer token
        let mut want = vec![p1.len() as i32];
        want.extend(std::iter::repeat_n(1, ab.len()));
        want.extend([(p2.len() - cached.len()) as i32, 1]);
        assert_eq!(fed, want);
    }

    /// Week 1 feeds the whole sequence every step; week 2 the prompt once,
    /// then one token a step. Both stop at an end-of-sequence id, which is
    /// not printed.
    #[test]
    fn week2_feeds_the_prompt_once_then_one_token_a_step() {
        let tok = session::<Week1<Scripted>>(vec![], 0, 2048).tokenizer;
        let ab = tok.encode("ab", false).unwrap();
        let eos = tok.eos_token_ids()[0];
        let script: Vec<u32> = ab.iter().copied().chain([eos, ab[0]]).collect();
        let mut w1 = session::<Week1<Scripted>>(script.clone(), 16, 2048);
        let mut w2 = session::<Week2<Scripted>>(script, 16, 2048);
        let (t1, p1) = answer(&mut w1);
        let (t2, p2) = answer(&mut w2);
        assert_eq!((t1.unwrap(), p1), ("ab".to_string(), "ab\n".to_string()));
        assert_eq!((t2.unwrap(), p2), ("ab".to_string(), "ab\n".to_string()));
        let n = tok
            .encode(
                &tok.apply_chat_template(&[ChatMessage::user("hi")], true)
                    .unwrap(),
                false,
            )
            .unwrap()
            .len() as i32;
        let steps = ab.len() as i32 + 1; // the answer and the end-of-sequence id
        let week1: Vec<i32> = (0..steps).map(|i| n + i).collect();
        let mut week2 = vec![n];
        week2.extend(std::iter::repeat_n(1, steps as usize - 1));
        assert_eq!(*w1.engine.model().fed.borrow(), week1);
        assert_eq!(*w2.engine.model().fed.borrow(), week2);
    }
}
