//! The two ways a loaded model answers: week 1 (day 7's `simple_generate`,
//! no KV cache: every token re-runs the whole sequence) and week 2 (day 8's
//! model with a KV cache, driven by `tiny_llm_common::Generation`: the
//! prompt once, then one token per step), and how week 2 is tried first.
//!
//! Week 2 is the default. Loading it runs a two-token probe (a one-token
//! prefill and one decode step) so that a week-2 day that is not implemented
//! yet shows up before any text is printed: then, unless `--week 2` was
//! given, the run falls back to week 1 with a one-line note
//! ([`try_week2`]). With day 14's prompt cache, week 2 keeps the tokens of
//! every answer and their keys and values: the next chat turn, whose prompt
//! re-renders the whole conversation, runs only the tokens after the longest
//! cached prefix ([`Week2::with_prompt_cache`]).

use crate::imp::generate::{simple_generate, StreamingDetokenizer};
use crate::imp::prompt_cache::PromptCache;
use crate::imp::sampler::Sampler;
use crate::model_pick::{Week, WeekChoice};
use crate::not_implemented::{self, Todo};
use anyhow::Result;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use tiny_llm_common::{
    Cached, CachedLm, CausalLm, FinishReason, Generation, GenerationStats, StepModel, TokenSampler,
    Tokenizer,
};

/// One answer: what was generated and how fast, and how many prompt tokens
/// came from the prompt cache.
#[derive(Debug, Clone)]
pub struct Turn {
    /// The generated tokens, the prompt's length, the timings.
    pub stats: GenerationStats,
    /// Prompt tokens whose keys and values were reused from earlier turns
    /// (`None` without a prompt cache).
    pub reused: Option<usize>,
}

/// A model ready to answer, on one of the two paths.
pub trait Engine {
    /// Generates at most `max_new` tokens after the prompt `ids` (chat
    /// template applied, within the context), streaming whole UTF-8 pieces
    /// to `on_text` as they come; returns what was generated and how fast.
    ///
    /// Errors: the model's, the sampler's or the tokenizer's.
    fn generate(
        &mut self,
        tokenizer: &Tokenizer,
        ids: &[u32],
        max_new: usize,
        sampler: &mut Sampler,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Turn>;

    /// Which path this is.
    fn week(&self) -> Week;

    /// Whether answers reuse the cached prefix of earlier prompts (day 14).
    fn reuses_prompts(&self) -> bool {
        false
    }
}

impl<E: Engine + ?Sized> Engine for Box<E> {
    fn generate(
        &mut self,
        tokenizer: &Tokenizer,
        ids: &[u32],
        max_new: usize,
        sampler: &mut Sampler,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Turn> {
        (**self).generate(tokenizer, ids, max_new, sampler, on_text)
    }

    fn week(&self) -> Week {
        (**self).week()
    }

    fn reuses_prompts(&self) -> bool {
        (**self).reuses_prompts()
    }
}

/// Week 1: any [`CausalLm`], through day 7's `simple_generate`.
pub struct Week1<M>(pub M);

impl<M: CausalLm> Engine for Week1<M> {
    fn generate(
        &mut self,
        tokenizer: &Tokenizer,
        ids: &[u32],
        max_new: usize,
        sampler: &mut Sampler,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Turn> {
        let stats = simple_generate(&self.0, tokenizer, ids, max_new, sampler, on_text)?;
        Ok(Turn {
            stats,
            reused: None,
        })
    }

    fn week(&self) -> Week {
        Week::One
    }
}

/// Where a prompt cache is kept between runs (`--prompt-cache FILE`).
pub struct CacheFile {
    /// The safetensors file.
    pub path: PathBuf,
    /// The model's identity in it (model directory name).
    pub model: String,
    /// The caches' dtype.
    pub dtype: mlx_rs::Dtype,
}

/// Week 2: a [`CachedLm`], with a prompt cache (day 14) kept across
/// answers, or fresh caches for every answer without one.
pub struct Week2<M> {
    model: M,
    cache: Option<PromptCache>,
    file: Option<CacheFile>,
}

impl<M: CachedLm> Week2<M> {
    /// Fresh caches for every answer (each reads its whole prompt).
    pub fn new(model: M) -> Self {
        Week2 {
            model,
            cache: None,
            file: None,
        }
    }

    /// Answers through `cache` (empty, or loaded), kept across answers.
    pub fn with_prompt_cache(model: M, cache: PromptCache) -> Self {
        Week2 {
            model,
            cache: Some(cache),
            file: None,
        }
    }

    /// Saves the prompt cache to `file` after every answer.
    pub fn saving_to(mut self, file: CacheFile) -> Self {
        self.file = Some(file);
        self
    }

    /// The model (the session tests read their scripted model's record).
    #[cfg(all(test, feature = "solutions"))]
    pub fn model(&self) -> &M {
        &self.model
    }
}

impl<M: CachedLm> Engine for Week2<M> {
    fn generate(
        &mut self,
        tokenizer: &Tokenizer,
        ids: &[u32],
        max_new: usize,
        sampler: &mut Sampler,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Turn> {
        let Some(cache) = self.cache.as_mut() else {
            let stats = generate_steps(
                Cached::new(&self.model),
                tokenizer,
                ids,
                max_new,
                sampler,
                on_text,
            )?;
            return Ok(Turn {
                stats,
                reused: None,
            });
        };
        // The prefill below reuses exactly this prefix (and trims nothing
        // more); asked first, for the report.
        let reused = if ids.is_empty() { 0 } else { cache.reuse(ids)? };
        let steps = cache.steps(&self.model);
        let stats = generate_steps(steps, tokenizer, ids, max_new, sampler, on_text)?;
        if let Some(f) = &self.file {
            // The answer stands; a cache that could not be saved is only
            // slower next time.
            if let Err(e) = cache.save(&f.path, &f.model, f.dtype) {
                eprintln!("[prompt cache: not saved to {}: {e}]", f.path.display());
            }
        }
        Ok(Turn {
            stats,
            reused: Some(reused),
        })
    }

    fn week(&self) -> Week {
        Week::Two
    }

    fn reuses_prompts(&self) -> bool {
        self.cache.is_some()
    }
}

/// Lends the session's sampler to a [`Generation`] (which owns its sampler).
struct Lent<'s>(&'s mut Sampler);

impl TokenSampler for Lent<'_> {
    fn sample(&mut self, logits: &mlx_rs::Array) -> tiny_llm_common::Result<u32> {
        self.0.sample(logits)
    }
}

/// The week-2 loop over `steps` (fresh caches, or a prompt cache):
/// [`Generation::prefill`] on the prompt, then [`Generation::step`] until it
/// stops (an end-of-sequence id, `max_new` tokens, or a full context), each
/// token through day 7's `StreamingDetokenizer` (an end-of-sequence id is
/// not detokenized), and what it holds back flushed at the end.
///
/// Errors: the model's, the sampler's or the tokenizer's.
pub fn generate_steps<S: StepModel>(
    steps: S,
    tokenizer: &Tokenizer,
    ids: &[u32],
    max_new: usize,
    sampler: &mut Sampler,
    on_text: &mut dyn FnMut(&str),
) -> Result<GenerationStats> {
    let mut generation = Generation::new(steps, Lent(sampler), max_new, tokenizer.eos_token_ids());
    let mut detok = StreamingDetokenizer::new(tokenizer);
    let mut event = generation.prefill(ids)?;
    while let Some(e) = event {
        if e.finish != Some(FinishReason::Stop) {
            let piece = detok.push(e.token)?;
            if !piece.is_empty() {
                on_text(&piece);
            }
        }
        if e.finish.is_some() {
            break;
        }
        event = generation.step()?;
    }
    let rest = detok.flush()?;
    if !rest.is_empty() {
        on_text(&rest);
    }
    Ok(generation.stats().clone())
}

/// Runs `model` on two tokens (id 0: a one-token prefill, then one decode
/// step at offset 1) and evaluates the logits, so that whatever the week-2
/// path needs (the model, its caches, quantized layers) has run once.
///
/// Errors: the model's.
pub fn probe<M: CachedLm>(model: &M) -> Result<()> {
    let mut steps = Cached::new(model);
    for _ in 0..2 {
        steps.feed(&[0])?.eval()?;
    }
    Ok(())
}

/// What [`try_week2`] came to.
pub enum Attempt<T> {
    /// Week 2 loaded (and passed its probe).
    Ready(T),
    /// A week-2 day is not implemented yet: run week 1 instead.
    FallBack(Todo),
}

/// The one-line note printed when week 2 falls back to week 1.
pub fn fallback_note(todo: &Todo) -> String {
    let what = if todo.item.is_empty() {
        String::new()
    } else {
        format!(" (`{}`)", todo.item)
    };
    format!(
        "[week 2: day {} is not implemented yet{what}: running the week-1 path instead (no KV \
         cache); `--week 2` says what is missing, `--week 1` skips this note]",
        todo.day.unwrap_or(0)
    )
}

/// Whether `day` belongs to week 2 (days 8-14, seven days a week as in
/// course.toml).
pub fn is_week2_day(day: u32) -> bool {
    day.saturating_sub(1) / 7 + 1 == 2
}

/// Tries `load` (the week-2 model and its probe).
///
/// A `todo!()` of a week-2 day reached while loading becomes
/// [`Attempt::FallBack`] when `choice` allows it (week 2 by default, not
/// asked for with `--week 2`); any other panic, including a `todo!()` of
/// week 1 (which week 1 would meet too), goes on unwinding, to be reported
/// as usual. Errors: `load`'s.
pub fn try_week2<T>(choice: WeekChoice, load: impl FnOnce() -> Result<T>) -> Result<Attempt<T>> {
    match catch_unwind(AssertUnwindSafe(load)) {
        Ok(loaded) => loaded.map(Attempt::Ready),
        Err(payload) => match not_implemented::day_of(&payload) {
            Some(todo) if choice.may_fall_back() && todo.day.is_some_and(is_week2_day) => {
                Ok(Attempt::FallBack(todo))
            }
            _ => resume_unwind(payload),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn todo_panic(msg: &'static str) -> Result<u32> {
        panic!("{}", msg)
    }

    #[test]
    fn week_two_days_are_eight_to_fourteen() {
        assert!(!is_week2_day(7));
        assert!(is_week2_day(8) && is_week2_day(10) && is_week2_day(14));
        assert!(!is_week2_day(15));
        assert!(!is_week2_day(0));
    }

    #[test]
    fn a_week_two_todo_falls_back_by_default() {
        not_implemented::install_hook(); // quiet for todo!() panics
        let default = WeekChoice::from_arg(None);
        match try_week2(default, || {
            todo_panic("not yet implemented: day 8: Qwen2ModelWeek2::new")
        })
        .unwrap()
        {
            Attempt::FallBack(t) => {
                assert_eq!((t.day, t.item.as_str()), (Some(8), "Qwen2ModelWeek2::new"));
                assert_eq!(
                    fallback_note(&t),
                    "[week 2: day 8 is not implemented yet (`Qwen2ModelWeek2::new`): running \
                     the week-1 path instead (no KV cache); `--week 2` says what is missing, \
                     `--week 1` skips this note]"
                );
            }
            Attempt::Ready(_) => panic!("a todo!() cannot load"),
        }
        // day 10 (the quantized layers) too
        assert!(matches!(
            try_week2(default, || todo_panic(
                "not yet implemented: day 10: quantized_linear"
            )),
            Ok(Attempt::FallBack(_))
        ));
        // loaded: no fallback; an error is an error
        assert!(matches!(
            try_week2(default, || Ok(7)),
            Ok(Attempt::Ready(7))
        ));
        let e = try_week2::<u32>(default, || anyhow::bail!("bad checkpoint"));
        assert_eq!(e.err().unwrap().to_string(), "bad checkpoint");
    }

    #[test]
    fn explicit_week_two_and_week_one_todos_keep_unwinding() {
        not_implemented::install_hook();
        let explicit = WeekChoice::from_arg(Some(Week::Two));
        let caught = catch_unwind(|| {
            let _ = try_week2(explicit, || {
                todo_panic("not yet implemented: day 8: Qwen2ModelWeek2::new")
            });
        })
        .unwrap_err();
        let t = not_implemented::day_of(&caught).unwrap();
        assert_eq!(t.day, Some(8));
        // week 1 would meet day 4's todo!() too: reported, not a fallback
        let caught = catch_unwind(|| {
            let _ = try_week2(WeekChoice::from_arg(None), || {
                todo_panic("not yet implemented: day 4: RmsNorm::forward")
            });
        })
        .unwrap_err();
        assert_eq!(not_implemented::day_of(&caught).unwrap().day, Some(4));
        // any other panic as well
        let caught = catch_unwind(|| {
            let _ = try_week2(WeekChoice::from_arg(None), || {
                todo_panic("index out of bounds")
            });
        })
        .unwrap_err();
        assert!(not_implemented::day_of(&caught).is_none());
    }
}
