//! Day 15: the first-come-first-served scheduler (a plain data structure,
//! no MLX).
//!
//! Hand-worked schedules (every plan derived on paper from the policy in
//! `FcfsScheduler`'s contract: decodes first, then running prefills, then
//! admissions in arrival order, preemption of the newest running sequence
//! when KV blocks run out), and properties over random staggered workloads
//! driven the way the engine drives a `Scheduler`: never over the token
//! budget, never over the KV blocks, every prompt token prefilled exactly
//! once and in order, admission in arrival order, a finished request's slot
//! and blocks free the same step, and everything finishes.
//!
//! Then the batched KV cache (`BatchKvCache`): rows joining and leaving,
//! worked on paper on `1 x 1 x T x 1` arrays; and the week-3 engine
//! (`tiny_llm_common::engine`, given) serving the tiny Qwen2 through the
//! learner's scheduler, batch cache and day 13 `forward_batch`: staggered
//! requests must get exactly the greedy tokens each gets alone (day 8's
//! cached forward pass, one request at a time), and a finished request's
//! slot must go to a waiting one in the very next step.

use mlx_rs::{Array, Dtype};
use proptest::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tiny_llm_common::engine::{self, BatchedLm, EngineConfig, EngineModel, Event, StopReason};
use tiny_llm_common::{KvCache, Result};
use tiny_llm_grader::imp::batch_kv_cache::{BatchCache, BatchKvCache};
use tiny_llm_grader::imp::qwen2_week2::Qwen2ModelWeek2;
use tiny_llm_grader::imp::scheduler::{
    FcfsScheduler, PrefillChunk, Scheduler, SchedulerConfig, SeqId, SeqRequest, StepPlan,
};
use tiny_llm_grader::prop::check as check_property;
use tiny_llm_grader::tiny_engine::{drain, prompt, request, solo, tiny_model};
use tiny_llm_grader::{ok, should_fail_naming};

fn config(budget: usize, running: usize, bs: usize, blocks: usize) -> SchedulerConfig {
    SchedulerConfig {
        max_tokens_per_step: budget,
        max_running: running,
        block_size: bs,
        num_blocks: blocks,
    }
}

fn req(id: u64, prompt_len: usize, max_new_tokens: usize) -> SeqRequest {
    SeqRequest {
        id: SeqId(id),
        prompt_len,
        max_new_tokens,
    }
}

fn chunk(seq: u64, start: usize, len: usize, completes: bool) -> PrefillChunk {
    PrefillChunk {
        seq: SeqId(seq),
        start,
        len,
        completes,
    }
}

fn plan(prefill: Vec<PrefillChunk>, decode: &[u64], preempted: &[u64]) -> StepPlan {
    StepPlan {
        prefill,
        decode: decode.iter().map(|&i| SeqId(i)).collect(),
        preempted: preempted.iter().map(|&i| SeqId(i)).collect(),
    }
}

/// Runs the engine's loop: schedule, count the sampled tokens, finish a
/// sequence at its `max_new_tokens`. Returns every plan.
fn drive(s: &mut FcfsScheduler, limits: &HashMap<SeqId, usize>, steps: usize) -> Vec<StepPlan> {
    let mut out = Vec::new();
    let mut generated: HashMap<SeqId, usize> = HashMap::new();
    for _ in 0..steps {
        let p = s.schedule();
        for id in p.sampled() {
            let g = generated.entry(id).or_default();
            *g += 1;
            if *g == limits[&id] {
                ok("finish", s.finish(id));
            }
        }
        out.push(p);
        if !s.has_work() {
            break;
        }
    }
    out
}

#[test]
fn fcfs_chunked_prefill_then_decode_hand_worked() {
    // B = 8 tokens a step; A: 10 prompt tokens, 3 new; B: 3 prompt, 2 new.
    let mut s = ok(
        "FcfsScheduler::new",
        FcfsScheduler::new(config(8, 4, 4, 64)),
    );
    ok("add", s.add(req(1, 10, 3)));
    ok("add", s.add(req(2, 3, 2)));
    let limits = HashMap::from([(SeqId(1), 3), (SeqId(2), 2)]);
    let got = drive(&mut s, &limits, 20);
    let want = vec![
        // A's first 8 tokens fill the budget
        plan(vec![chunk(1, 0, 8, false)], &[], &[]),
        // A's last 2 tokens, then B's 3 (both sample their first token)
        plan(vec![chunk(1, 8, 2, true), chunk(2, 0, 3, true)], &[], &[]),
        // both decode; B reaches 2 tokens and finishes
        plan(vec![], &[1, 2], &[]),
        // A alone; its third token ends it
        plan(vec![], &[1], &[]),
    ];
    assert_eq!(
        got, want,
        "[wrong numbers] plans (left: yours, right: expected)"
    );
    assert!(
        !s.has_work(),
        "[wrong numbers] everything finished, yet has_work() is true"
    );
}

#[test]
fn finished_request_frees_its_slot_the_same_step() {
    // One slot: B waits until A finishes, then starts the very next step.
    let mut s = ok("FcfsScheduler::new", FcfsScheduler::new(config(4, 1, 2, 8)));
    ok("add", s.add(req(1, 2, 1)));
    ok("add", s.add(req(2, 2, 1)));
    let p = s.schedule();
    assert_eq!(
        p,
        plan(vec![chunk(1, 0, 2, true)], &[], &[]),
        "[wrong numbers] step 1"
    );
    assert_eq!(
        s.free_blocks(),
        7,
        "[wrong numbers] A's 2 tokens hold 1 block of 2"
    );
    ok("finish", s.finish(SeqId(1)));
    assert_eq!(
        s.running(),
        vec![],
        "[wrong numbers] a finished sequence is still running"
    );
    assert_eq!(
        s.free_blocks(),
        8,
        "[wrong numbers] a finished sequence's block is not free"
    );
    let p = s.schedule();
    assert_eq!(
        p,
        plan(vec![chunk(2, 0, 2, true)], &[], &[]),
        "[wrong numbers] step 2: B must take A's slot at once"
    );
    // cancelling a waiting request removes it too
    ok("add", s.add(req(3, 2, 1)));
    ok("finish", s.finish(SeqId(3)));
    assert_eq!(
        s.waiting(),
        vec![],
        "[wrong numbers] a cancelled request still waits"
    );
}

#[test]
fn out_of_blocks_preempts_the_newest_hand_worked() {
    // 4 blocks of 2 tokens; A and B: 3 prompt tokens, 4 new each.
    let mut s = ok("FcfsScheduler::new", FcfsScheduler::new(config(8, 2, 2, 4)));
    ok("add", s.add(req(1, 3, 4)));
    ok("add", s.add(req(2, 3, 4)));
    let limits = HashMap::from([(SeqId(1), 4), (SeqId(2), 4)]);
    let got = drive(&mut s, &limits, 20);
    let want = vec![
        // both prompts (2 blocks each: the pool is full)
        plan(vec![chunk(1, 0, 3, true), chunk(2, 0, 3, true)], &[], &[]),
        // token 4 of each fits the second blocks
        plan(vec![], &[1, 2], &[]),
        // A needs a fifth slot: B (newest) is preempted, no admission
        plan(vec![], &[1], &[2]),
        // A's last token; B comes back: 5 tokens to recompute, 1 block free
        plan(vec![chunk(2, 0, 2, false)], &[1], &[]),
        // A finished: B's last 3 tokens (prompt + 2 generated)
        plan(vec![chunk(2, 2, 3, true)], &[], &[]),
        // B's fourth token
        plan(vec![], &[2], &[]),
    ];
    assert_eq!(
        got, want,
        "[wrong numbers] plans (left: yours, right: expected)"
    );
    assert_eq!(s.free_blocks(), 4, "[wrong numbers] blocks leaked");
}

#[test]
fn scheduler_rejects_bad_config_and_requests() {
    should_fail_naming(
        "FcfsScheduler::new",
        "budget 2 < 4 slots",
        FcfsScheduler::new(config(2, 4, 4, 8)),
        &["2", "4"],
    );
    should_fail_naming(
        "FcfsScheduler::new",
        "block_size 0",
        FcfsScheduler::new(config(8, 4, 0, 8)),
        &["block_size"],
    );
    let mut s = ok("FcfsScheduler::new", FcfsScheduler::new(config(8, 2, 4, 4)));
    should_fail_naming(
        "add",
        "17 tokens > 4 blocks of 4",
        s.add(req(1, 10, 7)),
        &["17", "4"],
    );
    should_fail_naming("add", "empty prompt", s.add(req(2, 0, 1)), &["prompt_len"]);
    ok("add", s.add(req(3, 4, 4)));
    should_fail_naming("add", "id in use", s.add(req(3, 1, 1)), &["seq 3"]);
    should_fail_naming("finish", "unknown id", s.finish(SeqId(9)), &["seq 9"]);
}

// ---- properties ---------------------------------------------------------------

#[derive(Debug, Clone)]
struct Workload {
    budget: usize,
    running: usize,
    block_size: usize,
    extra_blocks: usize,
    /// (arrival step, prompt_len, max_new_tokens), arrival steps ascending.
    requests: Vec<(usize, usize, usize)>,
}

fn workload(max_extra_blocks: usize) -> impl Strategy<Value = Workload> {
    (
        1usize..5,
        0usize..24,
        1usize..6,
        0..=max_extra_blocks,
        prop::collection::vec((0usize..4, 1usize..40, 1usize..10), 1..12),
    )
        .prop_map(|(running, more, block_size, extra_blocks, reqs)| {
            let mut t = 0;
            let requests = reqs
                .into_iter()
                .map(|(gap, p, n)| {
                    t += gap;
                    (t, p, n)
                })
                .collect();
            Workload {
                budget: running + more,
                running,
                block_size,
                extra_blocks,
                requests,
            }
        })
}

/// What the engine would see running `w`, checked at every step.
struct Outcome {
    /// Per sequence, its chunks in order, one list per admission.
    episodes: HashMap<SeqId, Vec<Vec<PrefillChunk>>>,
    /// Sequences in the order of their first admission.
    admitted: Vec<SeqId>,
    preemptions: usize,
}

fn run_workload(w: &Workload) -> Result<Outcome, TestCaseError> {
    let bs = w.block_size;
    let need = |p: usize, n: usize| (p + n).div_ceil(bs);
    let blocks = w
        .requests
        .iter()
        .map(|&(_, p, n)| need(p, n))
        .max()
        .unwrap()
        + w.extra_blocks;
    let mut s = ok(
        "FcfsScheduler::new",
        FcfsScheduler::new(config(w.budget, w.running, bs, blocks)),
    );
    let ids: Vec<SeqId> = (0..w.requests.len() as u64).map(SeqId).collect();
    let mut kv: HashMap<SeqId, usize> = HashMap::new();
    let mut generated: HashMap<SeqId, usize> = HashMap::new();
    let mut target: HashMap<SeqId, usize> = HashMap::new();
    let mut out = Outcome {
        episodes: HashMap::new(),
        admitted: Vec::new(),
        preemptions: 0,
    };
    let mut finished = 0;
    let mut next = 0;
    // a generous bound: every token alone in its step, times the requests
    let total: usize = w.requests.iter().map(|&(_, p, n)| p + n).sum();
    let limit = w.requests.last().unwrap().0 + 4 * total * w.requests.len() + 16;
    for step in 0..limit {
        while next < w.requests.len() && w.requests[next].0 <= step {
            let (_, p, n) = w.requests[next];
            ok("add", s.add(req(next as u64, p, n)));
            target.insert(ids[next], p);
            next += 1;
        }
        let plan = s.schedule();
        prop_assert!(
            plan.num_tokens() <= w.budget,
            "step {step} reads {} tokens, over the budget {}: {plan:?}",
            plan.num_tokens(),
            w.budget
        );
        for &v in &plan.preempted {
            out.preemptions += 1;
            kv.insert(v, 0);
            target.insert(
                v,
                w.requests[v.0 as usize].1 + generated.get(&v).copied().unwrap_or(0),
            );
        }
        for &d in &plan.decode {
            let k = kv.get(&d).copied().unwrap_or(0);
            let g = generated.get(&d).copied().unwrap_or(0);
            prop_assert!(
                g >= 1 && k >= target[&d] && k + 1 == w.requests[d.0 as usize].1 + g,
                "step {step}: {d} decodes with {k} tokens cached and {g} generated (its prefill \
                 of {} tokens not done, or a token lost)",
                target[&d]
            );
            kv.insert(d, k + 1);
        }
        for c in &plan.prefill {
            let k = kv.get(&c.seq).copied().unwrap_or(0);
            prop_assert!(c.len >= 1, "step {step}: an empty chunk {c:?}");
            prop_assert!(
                c.start == k,
                "step {step}: {c:?} does not continue the {k} tokens prefilled so far"
            );
            prop_assert!(
                c.start + c.len <= target[&c.seq]
                    && c.completes == (c.start + c.len == target[&c.seq]),
                "step {step}: {c:?} against a prefill of {} tokens",
                target[&c.seq]
            );
            let eps = out.episodes.entry(c.seq).or_default();
            if c.start == 0 {
                if eps.is_empty() {
                    out.admitted.push(c.seq);
                }
                eps.push(Vec::new());
            }
            eps.last_mut().unwrap().push(*c);
            kv.insert(c.seq, k + c.len);
        }
        for id in plan.sampled() {
            let g = generated.entry(id).or_default();
            *g += 1;
            if *g == w.requests[id.0 as usize].2 {
                ok("finish", s.finish(id));
                kv.remove(&id);
                finished += 1;
                prop_assert!(
                    !s.running().contains(&id),
                    "step {step}: {id} finished but still runs"
                );
            }
        }
        let used: usize = kv.values().map(|&k| k.div_ceil(bs)).sum();
        prop_assert!(
            used <= blocks && s.free_blocks() == blocks - used,
            "step {step}: the running sequences' KV needs {used} blocks of {blocks}; the \
             scheduler counts {} free",
            s.free_blocks()
        );
        if finished == w.requests.len() {
            prop_assert!(!s.has_work(), "all finished, yet has_work() is true");
            return Ok(out);
        }
    }
    Err(TestCaseError::fail(format!(
        "not finished after {limit} steps: {finished} of {} requests done (starvation?)",
        w.requests.len()
    )))
}

#[test]
fn prop_budget_and_blocks_never_exceeded_and_everything_finishes() {
    check_property(
        "prop_budget_and_blocks_never_exceeded_and_everything_finishes",
        256,
        workload(6),
        |w| run_workload(&w).map(|_| ()),
    );
}

#[test]
fn prop_every_prompt_token_prefilled_once_in_order_fcfs() {
    // Blocks for every request at once: no preemption.
    check_property(
        "prop_every_prompt_token_prefilled_once_in_order_fcfs",
        256,
        workload(0).prop_map(|mut w| {
            w.extra_blocks = w.requests.iter().map(|&(_, p, n)| p + n).sum::<usize>();
            w
        }),
        |w| {
            let out = run_workload(&w)?;
            prop_assert_eq!(out.preemptions, 0, "a preemption with blocks to spare");
            for (i, &(_, p, _)) in w.requests.iter().enumerate() {
                let eps = &out.episodes[&SeqId(i as u64)];
                prop_assert_eq!(eps.len(), 1, "seq {} was prefilled more than once", i);
                let covered: usize = eps[0].iter().map(|c| c.len).sum();
                prop_assert_eq!(covered, p, "seq {}: prefilled tokens", i);
            }
            let order: Vec<SeqId> = (0..w.requests.len() as u64).map(SeqId).collect();
            prop_assert_eq!(
                &out.admitted,
                &order,
                "admission order is not arrival order"
            );
            Ok(())
        },
    );
}

#[test]
fn prop_preempted_sequences_are_recomputed_and_finish() {
    // Few blocks: preemption happens; each admission prefills from token 0.
    let preemptions = std::cell::Cell::new(0);
    check_property(
        "prop_preempted_sequences_are_recomputed_and_finish",
        256,
        workload(2),
        |w| {
            let out = run_workload(&w)?;
            prop_assert_eq!(
                out.admitted.len(),
                w.requests.len(),
                "not every request ran"
            );
            preemptions.set(preemptions.get() + out.preemptions);
            Ok(())
        },
    );
    assert!(
        preemptions.get() > 0,
        "[wrong numbers] no case preempted: the property did not exercise preemption"
    );
}

// ---- the batched KV cache (batch_kv_cache.rs) ------------------------------

/// One row's keys, `1 x 1 x T x 1` f32 (H_kv = 1, D = 1).
fn row(vals: &[f32]) -> Array {
    Array::from_slice(vals, &[1, 1, vals.len() as i32, 1])
}

/// A `B x 1 x S x 1` array as rows of numbers.
fn rows_of(a: &Array) -> Vec<Vec<f32>> {
    let (b, s) = (a.dim(0) as usize, a.dim(2) as usize);
    let a = a.as_dtype(Dtype::Float32).unwrap().contiguous().unwrap();
    a.eval().unwrap();
    a.as_slice::<f32>()
        .chunks(s)
        .take(b)
        .map(|r| r.to_vec())
        .collect()
}

fn times10(v: &[Vec<f32>]) -> Vec<Vec<f32>> {
    v.iter()
        .map(|r| r.iter().map(|x| x * 10.0).collect())
        .collect()
}

/// Keys and values (values = 10 x keys) of every row, padding included.
fn check(c: &BatchKvCache, case: &str, pads: &[i32], keys: &[Vec<f32>]) {
    assert_eq!(
        c.left_padding(),
        pads,
        "[wrong numbers] {case}: left_padding"
    );
    assert_eq!(c.rows(), pads.len(), "[wrong numbers] {case}: rows");
    let s = keys.first().map_or(0, |r| r.len());
    assert_eq!(c.offset(), s, "[wrong numbers] {case}: offset (columns)");
    let (k, v) = c.state().expect("state");
    assert_eq!(rows_of(&k), keys, "[wrong numbers] {case}: keys");
    assert_eq!(rows_of(&v), times10(keys), "[wrong numbers] {case}: values");
}

fn add(c: &mut BatchKvCache, vals: &[f32]) {
    let v: Vec<f32> = vals.iter().map(|x| x * 10.0).collect();
    ok("BatchKvCache::add_row", c.add_row(&row(vals), &row(&v)));
}

/// Worked on paper: rows join shorter (left-padded) and longer (the
/// others padded), a decode step appends a column to every row.
#[test]
fn batch_kv_cache_add_rows_hand_worked() {
    let mut c = BatchKvCache::new();
    assert_eq!((c.rows(), c.offset()), (0, 0));
    add(&mut c, &[1.0, 2.0]);
    check(&c, "one row of 2", &[0], &[vec![1.0, 2.0]]);
    add(&mut c, &[3.0, 4.0, 5.0]);
    // the longer row pads the first by one column
    check(
        &c,
        "then a row of 3",
        &[1, 0],
        &[vec![0.0, 1.0, 2.0], vec![3.0, 4.0, 5.0]],
    );
    let k = Array::from_slice(&[6.0f32, 7.0], &[2, 1, 1, 1]);
    let v = Array::from_slice(&[60.0f32, 70.0], &[2, 1, 1, 1]);
    let (fk, _) = ok("update_and_fetch", c.update_and_fetch(&k, &v));
    assert_eq!(fk.shape(), &[2, 1, 4, 1]);
    check(
        &c,
        "a decode step",
        &[1, 0],
        &[vec![0.0, 1.0, 2.0, 6.0], vec![3.0, 4.0, 5.0, 7.0]],
    );
    add(&mut c, &[8.0]);
    // the shorter row is left-padded to the batch's 4 columns
    check(
        &c,
        "then a row of 1",
        &[1, 0, 3],
        &[
            vec![0.0, 1.0, 2.0, 6.0],
            vec![3.0, 4.0, 5.0, 7.0],
            vec![0.0, 0.0, 0.0, 8.0],
        ],
    );
    let (rk, rv) = ok("BatchKvCache::row", c.row(2)).expect("row 2 holds a token");
    assert_eq!(rows_of(&rk), vec![vec![8.0]], "[wrong numbers] row(2) keys");
    assert_eq!(
        rows_of(&rv),
        vec![vec![80.0]],
        "[wrong numbers] row(2) values"
    );
}

/// Worked on paper: rows leave, the others keep their values, and the
/// columns that are padding in every kept row are dropped.
#[test]
fn batch_kv_cache_filter_rows_hand_worked() {
    let mut c = BatchKvCache::new();
    add(&mut c, &[1.0, 2.0, 6.0]);
    add(&mut c, &[3.0, 4.0, 5.0, 7.0]);
    add(&mut c, &[8.0]);
    check(
        &c,
        "rows of 3, 4 and 1",
        &[1, 0, 3],
        &[
            vec![0.0, 1.0, 2.0, 6.0],
            vec![3.0, 4.0, 5.0, 7.0],
            vec![0.0, 0.0, 0.0, 8.0],
        ],
    );
    ok("filter_rows", c.filter_rows(&[0, 2]));
    // pads 1 and 3: one column is padding in both, dropped
    check(
        &c,
        "keep rows 0 and 2",
        &[0, 2],
        &[vec![1.0, 2.0, 6.0], vec![0.0, 0.0, 8.0]],
    );
    ok("filter_rows", c.filter_rows(&[1]));
    check(&c, "keep row 1", &[0], &[vec![8.0]]);
    // it still decodes: the next column lands after the kept token
    let one = |x: f32| Array::from_slice(&[x], &[1, 1, 1, 1]);
    ok(
        "update_and_fetch",
        c.update_and_fetch(&one(9.0), &one(90.0)),
    );
    check(&c, "then a decode step", &[0], &[vec![8.0, 9.0]]);
    ok("filter_rows", c.filter_rows(&[]));
    assert_eq!(
        (c.rows(), c.offset()),
        (0, 0),
        "keeping no row empties the cache"
    );
    assert!(c.state().is_none());
    // an emptied cache takes rows again
    add(&mut c, &[5.0]);
    check(&c, "a row after emptying", &[0], &[vec![5.0]]);
}

#[test]
fn batch_kv_cache_rejects_bad_input() {
    let mut c = BatchKvCache::new();
    add(&mut c, &[1.0, 2.0]);
    add(&mut c, &[3.0]);
    let two = Array::from_slice(&[0.0f32; 4], &[2, 1, 2, 1]);
    should_fail_naming(
        "add_row",
        "two rows at once",
        c.add_row(&two, &two),
        &["keys"],
    );
    let heads = Array::from_slice(&[0.0f32; 4], &[1, 2, 2, 1]);
    should_fail_naming(
        "add_row",
        "2 kv heads, cache has 1",
        c.add_row(&heads, &heads),
        &["keys"],
    );
    let half = row(&[1.0]).as_dtype(Dtype::Float16).unwrap();
    should_fail_naming(
        "add_row",
        "f16 into an f32 cache",
        c.add_row(&half, &half),
        &["Float16"],
    );
    should_fail_naming("filter_rows", "row 2 of 2", c.filter_rows(&[0, 2]), &["2"]);
    should_fail_naming(
        "filter_rows",
        "rows out of order",
        c.filter_rows(&[1, 0]),
        &["keep[1]"],
    );
    check(
        &c,
        "after the rejected calls (unchanged)",
        &[0, 1],
        &[vec![1.0, 2.0], vec![0.0, 3.0]],
    );
}

// ---- the batched engine on the tiny Qwen2 ---------------------------------

/// The model calls of a run: `(prefill, seq)` or `(decode, seqs)`.
type CallLog = Arc<Mutex<Vec<(bool, Vec<SeqId>)>>>;

/// [`BatchedLm`] that logs its calls.
struct Logged(BatchedLm<Qwen2ModelWeek2, BatchKvCache>, CallLog);

impl EngineModel for Logged {
    fn vocab_size(&self) -> usize {
        self.0.vocab_size()
    }
    fn context_len(&self) -> usize {
        self.0.context_len()
    }
    fn prefill(&mut self, seq: SeqId, start: usize, ids: &[u32], c: bool) -> Result<Array> {
        self.1.lock().unwrap().push((true, vec![seq]));
        self.0.prefill(seq, start, ids, c)
    }
    fn decode(&mut self, rows: &[(SeqId, u32)]) -> Result<Array> {
        self.1
            .lock()
            .unwrap()
            .push((false, rows.iter().map(|r| r.0).collect()));
        self.0.decode(rows)
    }
    fn release(&mut self, seq: SeqId) -> Result<()> {
        self.0.release(seq)
    }
}

/// An engine over the tiny Qwen2, the learner's scheduler and batch cache.
fn tiny_engine(budget: usize, running: usize, blocks: usize, log: CallLog) -> engine::EngineHandle {
    let sched = SchedulerConfig {
        max_tokens_per_step: budget,
        max_running: running,
        block_size: 4,
        num_blocks: blocks,
    };
    let config = EngineConfig {
        eos: vec![],
        block_size: 4,
        num_blocks: blocks,
    };
    let spawned = engine::spawn(
        config,
        move || Ok(Logged(BatchedLm::new(tiny_model()), log)),
        move || FcfsScheduler::new(sched),
    );
    ok("engine::spawn", spawned)
}

/// Staggered requests (submitted while others decode) through the
/// batched engine give each request the greedy tokens it gets alone;
/// no step reads more than the budget; several rows decode together.
#[test]
fn staggered_requests_match_each_request_alone_tiny() {
    let model = tiny_model();
    let work = [(7, 9), (19, 4), (3, 12), (11, 6), (26, 8), (2, 10)];
    let want: Vec<Vec<u32>> = work
        .iter()
        .enumerate()
        .map(|(i, &(p, n))| solo(&model, &prompt(i as u32, p), n))
        .collect();
    let log: CallLog = Arc::default();
    let h = tiny_engine(16, 3, 1024, log.clone());
    let mut got = Vec::new();
    let mut pending = Vec::new();
    for (i, &(p, n)) in work.iter().enumerate() {
        pending.push(h.submit(request(&prompt(i as u32, p), n)).1);
        if i % 2 == 1 {
            // let the earlier ones start decoding before the next arrive
            let Some(first) = drain(&pending.remove(0)) else {
                h.shutdown().ok();
                panic!("the engine ended a stream without Done");
            };
            got.push(first);
        }
    }
    for rx in &pending {
        match drain(rx) {
            Some(r) => got.push(r),
            None => {
                h.shutdown().ok();
                panic!("the engine ended a stream without Done");
            }
        }
    }
    let stats = ok("shutdown", h.shutdown());
    for (i, ((toks, done), want)) in got.iter().zip(&want).enumerate() {
        assert!(
            matches!(
                done,
                Event::Done {
                    reason: StopReason::Length,
                    ..
                }
            ),
            "[wrong numbers] request {i} ended with {done:?}"
        );
        assert_eq!(
            toks, want,
            "[wrong numbers] request {i} (prompt {} ids): batched tokens differ from the \
             request run alone",
            work[i].0
        );
    }
    assert!(
        stats.max_step_tokens <= 16,
        "[wrong numbers] a step read {} tokens, budget 16",
        stats.max_step_tokens
    );
    let log = log.lock().unwrap();
    assert!(
        log.iter().any(|(p, rows)| !p && rows.len() >= 2),
        "[wrong numbers] no step decoded two rows together"
    );
    assert_eq!(stats.kv_blocks_in_use_end, 0);
}

/// With two slots, a request that finishes leaves the batch at once: the
/// waiting request's prefill comes right after the finished one's last
/// decode, and the finished sequence is never decoded again.
#[test]
fn a_finished_request_frees_its_slot_at_once_tiny() {
    let log: CallLog = Arc::default();
    let h = tiny_engine(32, 2, 1024, log.clone());
    let (a, ra) = h.submit(request(&prompt(0, 5), 2));
    let (b, rb) = h.submit(request(&prompt(1, 6), 12));
    let (c, rc) = h.submit(request(&prompt(2, 4), 3));
    let ends: Vec<_> = [&ra, &rb, &rc].iter().map(|r| drain(r)).collect();
    if ends.iter().any(Option::is_none) {
        h.shutdown().ok();
        panic!("the engine ended a stream without Done");
    }
    ok("shutdown", h.shutdown());
    let log = log.lock().unwrap();
    let last_a = log
        .iter()
        .rposition(|(_, rows)| rows.contains(&a))
        .expect("a ran");
    let first_c = log
        .iter()
        .position(|(p, rows)| *p && rows.contains(&c))
        .expect("c ran");
    // The engine runs a step's prefills before its decode: the step
    // after the one that finished `a` starts with `c`'s prefill, so no
    // decode comes between.
    assert!(
        first_c > last_a && log[last_a + 1..first_c].iter().all(|(p, _)| *p),
        "[wrong numbers] the waiting request's first call is {first_c}, the finished \
         one's last {last_a}: expected no decode step between them (calls: {log:?})"
    );
    let last_b = log
        .iter()
        .rposition(|(_, rows)| rows.contains(&b))
        .expect("b ran");
    assert!(
        first_c < last_b,
        "[wrong numbers] the waiting request started only after the long one finished"
    );
}

/// A KV pool too small for every running sequence: the scheduler makes
/// sequences wait and preempts the newest (recomputed from its prompt and
/// generated tokens); every request still gets the tokens it gets alone.
#[test]
fn tight_kv_pool_waits_and_preempts_yet_matches_alone_tiny() {
    let model = tiny_model();
    let work = [(9, 10), (14, 9), (6, 12), (11, 8)];
    let want: Vec<Vec<u32>> = work
        .iter()
        .enumerate()
        .map(|(i, &(p, n))| solo(&model, &prompt(i as u32 + 10, p), n))
        .collect();
    let log: CallLog = Arc::default();
    // Blocks of 4 tokens; each request may need 5 or 6, three run at once.
    let h = tiny_engine(16, 3, 12, log);
    let rxs: Vec<_> = work
        .iter()
        .enumerate()
        .map(|(i, &(p, n))| h.submit(request(&prompt(i as u32 + 10, p), n)).1)
        .collect();
    let mut got = Vec::new();
    for rx in &rxs {
        match drain(rx) {
            Some(r) => got.push(r),
            None => {
                h.shutdown().ok();
                panic!("the engine ended a stream without Done");
            }
        }
    }
    let stats = ok("shutdown", h.shutdown());
    for (i, ((toks, done), want)) in got.iter().zip(&want).enumerate() {
        assert!(
            matches!(
                done,
                Event::Done {
                    reason: StopReason::Length,
                    ..
                }
            ),
            "[wrong numbers] request {i} ended with {done:?}"
        );
        assert_eq!(
            toks, want,
            "[wrong numbers] request {i}: tokens with a 12-block pool differ from the request \
             run alone"
        );
    }
    let prompts: usize = work.iter().map(|w| w.0).sum();
    assert!(
        stats.prefill_tokens_computed > prompts as u64,
        "[wrong numbers] no sequence was recomputed ({} prefill tokens for {prompts} prompt \
         tokens): the pool should have forced a preemption",
        stats.prefill_tokens_computed
    );
    assert!(stats.kv_blocks_peak <= 12, "{stats:?}");
}
