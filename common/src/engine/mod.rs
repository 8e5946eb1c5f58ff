//! The week-3 serving engine (given code, not an exercise): one thread owns
//! the model and does all MLX work (MLX is not thread-safe); clients on any
//! thread submit requests through a channel and read each request's events
//! from its own channel. It knows no HTTP types: a server turns [`Event`]s
//! into SSE chunks, a benchmark times them.
//!
//! Each engine step asks a [`Scheduler`] for a [`crate::StepPlan`] (chunked
//! prefill and one decode token per running sequence, under a token budget),
//! runs it on an [`EngineModel`] (each prefill chunk on its sequence's own
//! cache, then one batched decode pass), samples, sends the tokens, and
//! retires every sequence that stopped, freeing its slot and its batch row
//! before the next step. Cancelling is a message; a client that drops its
//! receiver cancels its request at the next token.
//!
//! Reference: Yu et al. 2022, "Orca" (iteration-level scheduling); vLLM's
//! `LLMEngine.step`; mistral.rs (a request carries its own response sender).

mod batched_lm;
mod prefix;
mod worker;

#[cfg(test)]
mod tests;

pub use batched_lm::{BatchLm, BatchedLm, EngineModel};

use crate::paged::PrefixCaching;
use crate::scheduling::{Scheduler, SeqId};
use crate::{Error, Result};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

/// A request's id (the scheduler's sequence id).
pub type RequestId = SeqId;

/// How a request picks each token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// 0: greedy (argmax); otherwise softmax(logits / temperature) is
    /// sampled (`mlx_rs::random::categorical`).
    pub temperature: f32,
    /// Seed of the request's random keys (token `i` uses `seed + i`).
    pub seed: u64,
}

impl Sampling {
    /// Argmax.
    pub const GREEDY: Sampling = Sampling {
        temperature: 0.0,
        seed: 0,
    };
}

/// One generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Prompt token ids (`>= 1`, each below the model's vocabulary).
    pub prompt: Vec<u32>,
    /// Tokens to generate at most (`>= 1`).
    pub max_tokens: usize,
    /// How tokens are picked.
    pub sampling: Sampling,
    /// Keep generating past an end-of-sequence token (benchmarks: every
    /// request then generates exactly `max_tokens`).
    pub ignore_eos: bool,
}

/// Why a request stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// An end-of-sequence token (included in the tokens sent).
    Stop,
    /// `max_tokens` tokens, or the model's context is full.
    Length,
    /// [`EngineHandle::cancel`], or the client dropped its receiver.
    Cancelled,
}

impl StopReason {
    /// `"stop"`, `"length"` (OpenAI's `finish_reason`) or `"cancelled"`.
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Stop => "stop",
            StopReason::Length => "length",
            StopReason::Cancelled => "cancelled",
        }
    }
}

/// What one request cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestStats {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub output_tokens: usize,
    /// Tokens of this request that went through a forward pass as prefill
    /// (more than the prompt after a preemption; fewer with a prefix-cache
    /// hit).
    pub prefill_tokens_computed: usize,
    /// Prompt tokens found in the prefix cache when it arrived (whole
    /// blocks; OpenAI's `usage.prompt_tokens_details.cached_tokens`).
    pub cached_tokens: usize,
}

/// What a request's receiver gets, in order: `Token`s, then exactly one
/// `Done` or `Error`.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A generated token.
    Token {
        /// Its id.
        id: u32,
        /// Its text, when the model has a tokenizer
        /// ([`EngineModel::token_text`]).
        text: Option<String>,
    },
    /// The request stopped.
    Done {
        /// Why.
        reason: StopReason,
        /// What it cost.
        stats: RequestStats,
    },
    /// The request was rejected or failed (the message says why).
    Error(String),
}

/// The engine's limits.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// Token ids that end a sequence (unless the request ignores them).
    pub eos: Vec<u32>,
    /// Tokens per KV block, for the block counts of [`EngineStats`] (the
    /// scheduler's `block_size`).
    pub block_size: usize,
    /// KV blocks in the pool, for [`EngineStats`] (the scheduler's).
    pub num_blocks: usize,
}

/// Engine-wide counters, returned by [`EngineHandle::shutdown`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EngineStats {
    /// Steps that ran a forward pass.
    pub steps: u64,
    /// The most tokens one step read (prefill plus decode).
    pub max_step_tokens: usize,
    /// Sequences preempted (their KV dropped, to be recomputed).
    pub preemptions: u64,
    /// Tokens fed by decode passes (one per running sequence per step).
    pub decode_tokens: u64,
    /// Microseconds in decode passes (the batched forward pass and the
    /// sampling that evaluates it): `decode_tokens / decode_us` is the
    /// aggregate decode throughput, prefill left out.
    pub decode_us: u64,
    /// Microseconds in prefill chunks (their forward passes, evaluated).
    pub prefill_us: u64,
    /// Prompt (and recomputed) tokens that went through a forward pass.
    pub prefill_tokens_computed: u64,
    /// Tokens generated.
    pub output_tokens: u64,
    /// [`EngineConfig::num_blocks`].
    pub kv_blocks_total: u64,
    /// The most blocks held at once: `sum ceil(cached tokens / block_size)`
    /// over live sequences, after each step.
    pub kv_blocks_peak: u64,
    /// Blocks held when the engine stopped.
    pub kv_blocks_in_use_end: u64,
    /// Prefix-cache blocks found (0 without a prefix cache).
    pub prefix_cache_hit_blocks: u64,
    /// Full prompt blocks looked up in the prefix cache (each prompt's
    /// first `(len - 1) / block_size`; 0 without a prefix cache).
    pub prefix_cache_lookup_blocks: u64,
    /// Blocks whose keys and values the prefix cache stored, after the
    /// last prefill that cached some.
    pub prefix_cache_blocks_stored: u64,
}

/// A message to the engine thread.
enum Command {
    Submit {
        id: RequestId,
        request: Request,
        events: Sender<Event>,
    },
    Cancel(RequestId),
    Shutdown,
}

/// The engine thread and its inbox. `submit` and `cancel` take `&self`: share
/// it between client threads (it is `Sync`).
pub struct EngineHandle {
    inbox: Sender<Command>,
    next_id: AtomicU64,
    thread: Option<JoinHandle<Result<EngineStats>>>,
}

/// Starts the engine thread: `load` builds the model and `scheduler` the
/// scheduler on it (so that no MLX object crosses threads), then it serves
/// until [`EngineHandle::shutdown`].
///
/// Errors: what `load` or `scheduler` returned (the thread then ends).
///
/// Panics: with `load`'s or `scheduler`'s panic, re-raised.
pub fn spawn<M, S, L, F>(config: EngineConfig, load: L, scheduler: F) -> Result<EngineHandle>
where
    M: EngineModel + 'static,
    S: Scheduler + 'static,
    L: FnOnce() -> Result<M> + Send + 'static,
    F: FnOnce() -> Result<S> + Send + 'static,
{
    start(config, load, scheduler, None)
}

/// A boxed constructor of the prefix cache, run on the engine thread.
type PrefixBuilder = Box<dyn FnOnce() -> Result<Box<dyn PrefixCaching>> + Send>;

/// [`spawn`] with a prefix cache: `prefix` builds it on the engine thread
/// (day 17's cache over its own day-16 pool, whose size bounds the blocks
/// cached). Each request's prompt is looked up when the scheduler first
/// admits it (as vLLM's scheduler does); its cached
/// blocks are not computed again, and its prompt's full blocks are cached
/// when its prefill completes (see `prefix.rs`). The model must implement
/// [`EngineModel::seed_prefill`] and [`EngineModel::cached_kv`]
/// ([`BatchedLm`] does).
///
/// Errors, panics: as [`spawn`], and what `prefix` returned.
pub fn spawn_with_prefix_cache<M, S, P, L, F, G>(
    config: EngineConfig,
    load: L,
    scheduler: F,
    prefix: G,
) -> Result<EngineHandle>
where
    M: EngineModel + 'static,
    S: Scheduler + 'static,
    P: PrefixCaching + 'static,
    L: FnOnce() -> Result<M> + Send + 'static,
    F: FnOnce() -> Result<S> + Send + 'static,
    G: FnOnce() -> Result<P> + Send + 'static,
{
    let build: PrefixBuilder = Box::new(move || Ok(Box::new(prefix()?) as Box<dyn PrefixCaching>));
    start(config, load, scheduler, Some(build))
}

fn start<M, S, L, F>(
    config: EngineConfig,
    load: L,
    scheduler: F,
    prefix: Option<PrefixBuilder>,
) -> Result<EngineHandle>
where
    M: EngineModel + 'static,
    S: Scheduler + 'static,
    L: FnOnce() -> Result<M> + Send + 'static,
    F: FnOnce() -> Result<S> + Send + 'static,
{
    let (inbox, commands) = mpsc::channel();
    let (ready_tx, ready_rx) = mpsc::channel::<Result<()>>();
    let thread = std::thread::Builder::new()
        .name("tiny-llm-engine".into())
        .spawn(move || -> Result<EngineStats> {
            let built = load().and_then(|m| {
                let p = match prefix {
                    Some(build) => Some(prefix::PrefixStore::new(build()?)),
                    None => None,
                };
                Ok((m, scheduler()?, p))
            });
            let (model, sched, prefix) = match built {
                Ok(x) => {
                    let _ = ready_tx.send(Ok(()));
                    x
                }
                Err(e) => {
                    let msg = e.to_string();
                    let _ = ready_tx.send(Err(e));
                    return Err(Error::Invalid(msg));
                }
            };
            worker::Worker::new(config, model, sched, prefix).run(commands)
        })
        .map_err(|e| Error::Io(format!("cannot start the engine thread: {e}")))?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(EngineHandle {
            inbox,
            next_id: AtomicU64::new(0),
            thread: Some(thread),
        }),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        // `load` or `scheduler` panicked (a learner's `todo!()`): re-raise
        // the panic here, with its message.
        Err(_) => match thread.join() {
            Err(payload) => std::panic::resume_unwind(payload),
            Ok(_) => Err(Error::Invalid(
                "the engine thread ended before it was ready".into(),
            )),
        },
    }
}

impl EngineHandle {
    /// Queues `request`; its events arrive on the returned receiver.
    /// Invalid requests get one [`Event::Error`].
    pub fn submit(&self, request: Request) -> (RequestId, Receiver<Event>) {
        let id = SeqId(self.next_id.fetch_add(1, Ordering::Relaxed));
        let (events, rx) = mpsc::channel();
        if let Err(mpsc::SendError(Command::Submit { events, .. })) =
            self.inbox.send(Command::Submit {
                id,
                request,
                events,
            })
        {
            let _ = events.send(Event::Error("the engine has stopped".into()));
        }
        (id, rx)
    }

    /// Cancels request `id`: it gets `Done { reason: Cancelled }` unless it
    /// already stopped (then nothing happens).
    pub fn cancel(&self, id: RequestId) {
        let _ = self.inbox.send(Command::Cancel(id));
    }

    /// Stops the engine (requests still live are cancelled) and returns its
    /// counters.
    ///
    /// Errors: the error that ended the engine thread.
    ///
    /// Panics: with the engine thread's panic, re-raised (a `todo!()` in
    /// the model or the scheduler keeps its message). A client whose
    /// receiver closed without `Done` or `Error` calls this to learn why.
    pub fn shutdown(mut self) -> Result<EngineStats> {
        let _ = self.inbox.send(Command::Shutdown);
        let thread = self.thread.take().expect("joined once");
        match thread.join() {
            Ok(r) => r,
            Err(payload) => std::panic::resume_unwind(payload),
        }
    }
}

impl Drop for EngineHandle {
    fn drop(&mut self) {
        if let Some(t) = self.thread.take() {
            let _ = self.inbox.send(Command::Shutdown);
            let _ = t.join();
        }
    }
}
