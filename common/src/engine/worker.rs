//! The engine thread's loop: take commands, plan a step, run it, sample,
//! send events, retire finished sequences (see the parent module).

use super::prefix::PrefixStore;
use super::{
    Command, EngineConfig, EngineModel, EngineStats, Event, Request, RequestId, RequestStats,
    StopReason,
};
use crate::lm::check_token_ids;
use crate::paged::BlockTable;
use crate::scheduling::{Scheduler, SeqRequest};
use crate::Result;
use mlx_rs::ops::indexing::{argmax_axis, TryIndexOp};
use mlx_rs::Array;
use std::collections::HashMap;
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::Instant;

/// A request the engine holds.
struct Live {
    request: Request,
    events: Sender<Event>,
    /// The prompt, then every generated token (the newest not yet fed).
    tokens: Vec<u32>,
    /// Tokens in the model's cache for it, as the scheduler counts them.
    cached: usize,
    /// Prefix-cache blocks it holds: those found when it arrived, then
    /// its prompt's full blocks once cached (empty without a prefix cache).
    held: BlockTable,
    /// Its prompt was looked up in the prefix cache (once, when its
    /// prefill first ran).
    looked_up: bool,
    /// Tokens its current admission took from the prefix cache.
    seeded: usize,
    stats: RequestStats,
}

pub(super) struct Worker<M, S> {
    config: EngineConfig,
    model: M,
    sched: S,
    live: HashMap<RequestId, Live>,
    prefix: Option<PrefixStore>,
    stats: EngineStats,
}

impl<M: EngineModel, S: Scheduler> Worker<M, S> {
    pub(super) fn new(
        config: EngineConfig,
        model: M,
        sched: S,
        prefix: Option<PrefixStore>,
    ) -> Self {
        let stats = EngineStats {
            kv_blocks_total: config.num_blocks as u64,
            ..EngineStats::default()
        };
        Worker {
            config,
            model,
            sched,
            live: HashMap::new(),
            prefix,
            stats,
        }
    }

    /// Serves until a `Shutdown` or every handle is gone.
    pub(super) fn run(mut self, commands: Receiver<Command>) -> Result<EngineStats> {
        loop {
            // Block while idle; otherwise take what has arrived.
            if self.live.is_empty() {
                match commands.recv() {
                    Ok(c) => {
                        if !self.command(c) {
                            break;
                        }
                    }
                    Err(_) => break,
                }
            }
            let mut stop = false;
            loop {
                match commands.try_recv() {
                    Ok(c) => {
                        if !self.command(c) {
                            stop = true;
                            break;
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        stop = self.live.is_empty();
                        break;
                    }
                }
            }
            if stop {
                break;
            }
            if self.sched.has_work() {
                self.step()?;
            }
        }
        let ids: Vec<RequestId> = self.live.keys().copied().collect();
        for id in ids {
            self.retire(id, StopReason::Cancelled);
        }
        self.stats.kv_blocks_in_use_end = self.blocks_in_use();
        Ok(self.stats)
    }

    /// Handles one command; `false` on `Shutdown`.
    fn command(&mut self, c: Command) -> bool {
        match c {
            Command::Submit {
                id,
                request,
                events,
            } => {
                if let Err(msg) = self.admit(id, &request) {
                    let _ = events.send(Event::Error(msg));
                    return true;
                }
                let tokens = request.prompt.clone();
                let stats = RequestStats {
                    prompt_tokens: tokens.len(),
                    ..RequestStats::default()
                };
                self.live.insert(
                    id,
                    Live {
                        request,
                        events,
                        tokens,
                        cached: 0,
                        held: BlockTable::new(),
                        looked_up: false,
                        seeded: 0,
                        stats,
                    },
                );
                true
            }
            Command::Cancel(id) => {
                if self.live.contains_key(&id) {
                    self.retire(id, StopReason::Cancelled);
                }
                true
            }
            Command::Shutdown => false,
        }
    }

    /// Checks a request and queues it with the scheduler; the error message
    /// names what was wrong.
    fn admit(&mut self, id: RequestId, r: &Request) -> std::result::Result<(), String> {
        if r.prompt.is_empty() || r.max_tokens == 0 {
            return Err(format!(
                "request has {} prompt tokens and max_tokens {}, expected both >= 1",
                r.prompt.len(),
                r.max_tokens
            ));
        }
        check_token_ids("prompt", &r.prompt, self.model.vocab_size()).map_err(|e| e.to_string())?;
        let context = self.model.context_len();
        if r.prompt.len() + r.max_tokens > context {
            return Err(format!(
                "prompt of {} tokens + max_tokens {} passes the model's context of {context}",
                r.prompt.len(),
                r.max_tokens
            ));
        }
        if !(r.sampling.temperature >= 0.0 && r.sampling.temperature.is_finite()) {
            return Err(format!(
                "temperature {}, expected a finite value >= 0",
                r.sampling.temperature
            ));
        }
        self.sched
            .add(SeqRequest {
                id,
                prompt_len: r.prompt.len(),
                max_new_tokens: r.max_tokens,
            })
            .map_err(|e| e.to_string())
    }

    /// The prefix cache's blocks for `prompt` (an empty table without a
    /// prefix cache).
    fn lookup(&mut self, prompt: &[u32]) -> Result<BlockTable> {
        let Some(store) = self.prefix.as_mut() else {
            return Ok(BlockTable::new());
        };
        let table = store.lookup(prompt)?;
        self.stats.prefix_cache_lookup_blocks = store.counts.lookup_blocks;
        self.stats.prefix_cache_hit_blocks = store.counts.hit_blocks;
        Ok(table)
    }

    /// Lets go of the prefix-cache blocks `live` held.
    fn unhold(&mut self, live: &Live) -> Result<()> {
        match self.prefix.as_mut() {
            Some(store) => store.release(&live.held),
            None => Ok(()),
        }
    }

    /// Sends `Done` (or nothing for a dropped receiver) and frees the
    /// sequence's slot and cache at once.
    fn retire(&mut self, id: RequestId, reason: StopReason) {
        let Some(live) = self.live.remove(&id) else {
            return;
        };
        let _ = self.sched.finish(id);
        let released = self.model.release(id).and(self.unhold(&live));
        let event = match released {
            Ok(()) => Event::Done {
                reason,
                stats: live.stats,
            },
            Err(e) => Event::Error(format!("releasing the sequence's cache: {e}")),
        };
        let _ = live.events.send(event);
    }

    /// Fails one request with `msg`.
    fn fail(&mut self, id: RequestId, msg: String) {
        if let Some(live) = self.live.remove(&id) {
            let _ = self.sched.finish(id);
            let _ = self.model.release(id);
            let _ = self.unhold(&live);
            let _ = live.events.send(Event::Error(msg));
        }
    }

    fn blocks_in_use(&self) -> u64 {
        let bs = self.config.block_size.max(1);
        self.live
            .values()
            .map(|l| l.cached.div_ceil(bs) as u64)
            .sum()
    }

    /// One engine step: plan, prefill chunks, one batched decode, sample,
    /// send, retire.
    fn step(&mut self) -> Result<()> {
        let plan = self.sched.schedule();
        self.stats.preemptions += plan.preempted.len() as u64;
        for &p in &plan.preempted {
            if let Some(l) = self.live.get_mut(&p) {
                l.cached = 0;
                l.seeded = 0;
            }
            self.model.release(p)?;
        }
        if plan.is_empty() {
            return Ok(());
        }
        self.stats.steps += 1;
        self.stats.max_step_tokens = self.stats.max_step_tokens.max(plan.num_tokens());
        // (sequence, 1 x vocab or B x vocab logits, row)
        let mut sampled: Vec<(RequestId, Array)> = Vec::new();
        let t_prefill = Instant::now();
        for c in &plan.prefill {
            if !self.live.contains_key(&c.seq) {
                continue;
            }
            let end = c.start + c.len;
            if c.start == 0 && self.prefix.is_some() {
                if let Err(e) = self.seed(c.seq) {
                    self.fail(c.seq, format!("prefill from the prefix cache: {e}"));
                    continue;
                }
            }
            let live = &self.live[&c.seq];
            // Tokens the prefix cache supplied are not computed again.
            let from = c.start.max(live.seeded);
            if from >= end {
                self.live.get_mut(&c.seq).expect("live").cached += c.len;
                continue;
            }
            let ids = live.tokens[from..end].to_vec();
            match self.model.prefill(c.seq, from, &ids, c.completes) {
                Ok(logits) => {
                    let live = self.live.get_mut(&c.seq).expect("live");
                    live.cached += c.len;
                    live.stats.prefill_tokens_computed += end - from;
                    self.stats.prefill_tokens_computed += (end - from) as u64;
                    if c.completes {
                        sampled.push((c.seq, logits));
                        if let Err(e) = self.cache_prompt(c.seq) {
                            sampled.pop();
                            self.fail(c.seq, format!("caching the prompt's blocks: {e}"));
                        }
                    }
                }
                Err(e) => self.fail(c.seq, format!("prefill: {e}")),
            }
        }
        self.stats.prefill_us += t_prefill.elapsed().as_micros() as u64;
        let t_decode = Instant::now();
        let rows: Vec<(RequestId, u32)> = plan
            .decode
            .iter()
            .filter_map(|s| {
                self.live
                    .get(s)
                    .map(|l| (*s, *l.tokens.last().expect("prompt")))
            })
            .collect();
        if !rows.is_empty() {
            match self.model.decode(&rows) {
                Ok(logits) => {
                    for (i, &(seq, _)) in rows.iter().enumerate() {
                        let i = i as i32;
                        sampled.push((seq, logits.try_index(i..i + 1)?));
                        self.live.get_mut(&seq).expect("live").cached += 1;
                    }
                }
                Err(e) => {
                    for &(seq, _) in &rows {
                        self.fail(seq, format!("decode: {e}"));
                    }
                }
            }
        }
        let tokens = self.sample(&sampled)?;
        if !rows.is_empty() {
            // Sampling evaluates the decode pass (the prefill logits are
            // already evaluated).
            self.stats.decode_us += t_decode.elapsed().as_micros() as u64;
            self.stats.decode_tokens += rows.len() as u64;
        }
        for ((seq, _), tok) in sampled.iter().zip(tokens) {
            self.emit(*seq, tok);
        }
        self.stats.kv_blocks_peak = self.stats.kv_blocks_peak.max(self.blocks_in_use());
        Ok(())
    }

    /// Starts `seq`'s cache from the prefix-cache blocks it holds, at most
    /// all but one of its tokens (one is always computed, for the logits).
    /// Its prompt is looked up the first time (when the scheduler first
    /// admits it, so that it finds the blocks of every request whose
    /// prefill completed while it waited).
    fn seed(&mut self, seq: RequestId) -> Result<()> {
        let Some(live) = self.live.get(&seq) else {
            return Ok(());
        };
        if !live.looked_up {
            let prompt = live.request.prompt.clone();
            let held = self.lookup(&prompt)?;
            let live = self.live.get_mut(&seq).expect("live");
            live.looked_up = true;
            live.stats.cached_tokens = held.num_tokens;
            live.held = held;
        }
        let (Some(store), Some(live)) = (self.prefix.as_ref(), self.live.get_mut(&seq)) else {
            return Ok(());
        };
        let bs = store.block_size().max(1);
        let blocks = live
            .held
            .blocks
            .len()
            .min(live.tokens.len().saturating_sub(1) / bs);
        if blocks == 0 {
            return Ok(());
        }
        let kv = store.gather(&live.held, blocks)?;
        self.model.seed_prefill(seq, &kv)?;
        live.seeded = blocks * bs;
        Ok(())
    }

    /// Caches the full blocks of `seq`'s prompt, right after its prefill
    /// completed.
    fn cache_prompt(&mut self, seq: RequestId) -> Result<()> {
        let (Some(store), Some(live)) = (self.prefix.as_mut(), self.live.get_mut(&seq)) else {
            return Ok(());
        };
        store.insert(&self.model, seq, &live.request.prompt, &mut live.held)?;
        self.stats.prefix_cache_blocks_stored = store.stored_blocks() as u64;
        Ok(())
    }

    /// One token per `1 x vocab` logits row, evaluated together.
    fn sample(&self, rows: &[(RequestId, Array)]) -> Result<Vec<u32>> {
        let mut picks = Vec::with_capacity(rows.len());
        for (seq, logits) in rows {
            let s = self.live[seq].request.sampling;
            let pick = if s.temperature == 0.0 {
                argmax_axis(logits, -1, false)?
            } else {
                let key = mlx_rs::random::key(
                    s.seed
                        .wrapping_add(self.live[seq].stats.output_tokens as u64),
                )?;
                let scaled = logits.multiply(Array::from_f32(1.0 / s.temperature))?;
                mlx_rs::random::categorical(&scaled, -1, None, &key)?
            };
            picks.push(pick.as_dtype(mlx_rs::Dtype::Uint32)?);
        }
        if picks.is_empty() {
            return Ok(Vec::new());
        }
        let all = mlx_rs::ops::concatenate(&picks.iter().collect::<Vec<_>>(), 0)?;
        all.eval()?;
        Ok(all.as_slice::<u32>().to_vec())
    }

    /// Records and sends one sampled token; retires the sequence when it
    /// stopped or its receiver is gone.
    fn emit(&mut self, seq: RequestId, tok: u32) {
        let text = self.model.token_text(tok);
        let context = self.model.context_len();
        let Some(live) = self.live.get_mut(&seq) else {
            return;
        };
        live.tokens.push(tok);
        live.stats.output_tokens += 1;
        self.stats.output_tokens += 1;
        let gone = live.events.send(Event::Token { id: tok, text }).is_err();
        let stop = if gone {
            Some(StopReason::Cancelled)
        } else if !live.request.ignore_eos && self.config.eos.contains(&tok) {
            Some(StopReason::Stop)
        } else if live.stats.output_tokens >= live.request.max_tokens
            || live.tokens.len() >= context
        {
            Some(StopReason::Length)
        } else {
            None
        };
        if let Some(reason) = stop {
            self.retire(seq, reason);
        }
    }
}
