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

use proptest::prelude::*;
use std::collections::HashMap;
use tiny_llm_grader::imp::scheduler::{
    FcfsScheduler, PrefillChunk, Scheduler, SchedulerConfig, SeqId, SeqRequest, StepPlan,
};
use tiny_llm_grader::prop::check as check_property;
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
