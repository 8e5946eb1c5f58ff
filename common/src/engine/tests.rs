//! The engine against a scripted model (no weights): the next token is a
//! hash of the sequence's whole token stream, so any token fed twice, lost,
//! or fed to the wrong sequence changes every later token; the expected
//! tokens are computed by iterating the same hash on the host.

use super::*;
use crate::scheduling::{PrefillChunk, SeqRequest, StepPlan};
use mlx_rs::Array;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

const VOCAB: usize = 37;

fn next_of(stream: &[u32]) -> u32 {
    let h = stream.iter().fold(7u64, |h, &t| {
        h.wrapping_mul(1_000_003).wrapping_add(t as u64 + 1)
    });
    (h % VOCAB as u64) as u32
}

/// Greedy tokens of `prompt`, computed on the host.
fn expected(prompt: &[u32], n: usize) -> Vec<u32> {
    let mut s = prompt.to_vec();
    for _ in 0..n {
        let t = next_of(&s);
        s.push(t);
    }
    s[prompt.len()..].to_vec()
}

fn one_hot(tok: u32) -> Array {
    let mut v = vec![0f32; VOCAB];
    v[tok as usize] = 5.0;
    Array::from_slice(&v, &[1, VOCAB as i32])
}

/// What the scripted model saw: per step, the decode batch size.
#[derive(Default)]
struct Log {
    decode_batches: Vec<usize>,
}

struct Scripted {
    seqs: HashMap<SeqId, (Vec<u32>, bool)>,
    log: Arc<Mutex<Log>>,
}

impl EngineModel for Scripted {
    fn vocab_size(&self) -> usize {
        VOCAB
    }
    fn context_len(&self) -> usize {
        64
    }
    fn prefill(&mut self, seq: SeqId, start: usize, ids: &[u32], completes: bool) -> Result<Array> {
        let (s, decoding) = self.seqs.entry(seq).or_default();
        assert!(!*decoding, "{seq} prefilled after its prefill completed");
        assert_eq!(s.len(), start, "{seq}: chunk start");
        s.extend_from_slice(ids);
        *decoding = completes;
        Ok(one_hot(next_of(s)))
    }
    fn decode(&mut self, rows: &[(SeqId, u32)]) -> Result<Array> {
        self.log.lock().unwrap().decode_batches.push(rows.len());
        let mut out = Vec::new();
        for &(seq, tok) in rows {
            let (s, decoding) = self.seqs.get_mut(&seq).expect("decode of an unknown seq");
            assert!(*decoding, "{seq} decoded before its prefill completed");
            s.push(tok);
            out.push(one_hot(next_of(s)));
        }
        Ok(mlx_rs::ops::concatenate(
            &out.iter().collect::<Vec<_>>(),
            0,
        )?)
    }
    fn release(&mut self, seq: SeqId) -> Result<()> {
        self.seqs.remove(&seq);
        Ok(())
    }
}

/// A minimal first-come-first-served scheduler (no KV blocks): decodes,
/// then running prefills, then admissions, under `budget` tokens.
struct Fcfs {
    budget: usize,
    max_running: usize,
    // id -> (prompt_len, fed, prefilled)
    seqs: HashMap<SeqId, (usize, usize)>,
    waiting: VecDeque<SeqId>,
    running: Vec<SeqId>,
    plans: Arc<Mutex<Vec<StepPlan>>>,
}

impl Scheduler for Fcfs {
    fn add(&mut self, r: SeqRequest) -> Result<()> {
        self.seqs.insert(r.id, (r.prompt_len, 0));
        self.waiting.push_back(r.id);
        Ok(())
    }
    fn schedule(&mut self) -> StepPlan {
        let mut plan = StepPlan::default();
        let mut budget = self.budget;
        for id in &self.running {
            let (p, fed) = self.seqs[id];
            if fed >= p && budget > 0 {
                plan.decode.push(*id);
                budget -= 1;
            }
        }
        for id in self.running.clone() {
            let (p, fed) = self.seqs[&id];
            if fed < p && budget > 0 {
                let len = (p - fed).min(budget);
                plan.prefill.push(PrefillChunk {
                    seq: id,
                    start: fed,
                    len,
                    completes: fed + len == p,
                });
                self.seqs.get_mut(&id).unwrap().1 += len;
                budget -= len;
            }
        }
        while budget > 0 && self.running.len() < self.max_running {
            let Some(id) = self.waiting.pop_front() else {
                break;
            };
            self.running.push(id);
            let (p, _) = self.seqs[&id];
            let len = p.min(budget);
            plan.prefill.push(PrefillChunk {
                seq: id,
                start: 0,
                len,
                completes: len == p,
            });
            self.seqs.get_mut(&id).unwrap().1 = len;
            budget -= len;
        }
        self.plans.lock().unwrap().push(plan.clone());
        plan
    }
    fn finish(&mut self, seq: SeqId) -> Result<()> {
        self.seqs.remove(&seq);
        self.running.retain(|&s| s != seq);
        self.waiting.retain(|&s| s != seq);
        Ok(())
    }
    fn has_work(&self) -> bool {
        !self.seqs.is_empty()
    }
}

type Plans = Arc<Mutex<Vec<StepPlan>>>;

fn engine(budget: usize, max_running: usize) -> (EngineHandle, Arc<Mutex<Log>>, Plans) {
    let log = Arc::new(Mutex::new(Log::default()));
    let plans: Plans = Arc::default();
    let (l, p) = (log.clone(), plans.clone());
    let config = EngineConfig {
        eos: vec![0],
        block_size: 4,
        num_blocks: 1000,
    };
    let h = spawn(
        config,
        move || {
            Ok(Scripted {
                seqs: HashMap::new(),
                log: l,
            })
        },
        move || {
            Ok(Fcfs {
                budget,
                max_running,
                seqs: HashMap::new(),
                waiting: VecDeque::new(),
                running: Vec::new(),
                plans: p,
            })
        },
    )
    .unwrap();
    (h, log, plans)
}

fn req(prompt: Vec<u32>, max_tokens: usize) -> Request {
    Request {
        prompt,
        max_tokens,
        sampling: Sampling::GREEDY,
        ignore_eos: true,
    }
}

/// Every token, then the final event.
fn drain(rx: &std::sync::mpsc::Receiver<Event>) -> (Vec<u32>, Event) {
    let mut toks = Vec::new();
    loop {
        match rx.recv().expect("the engine ended the stream without Done") {
            Event::Token { id, .. } => toks.push(id),
            other => return (toks, other),
        }
    }
}

fn prompt(seed: u32, len: usize) -> Vec<u32> {
    (0..len as u32)
        .map(|i| (seed * 13 + i * 5 + 1) % VOCAB as u32)
        .collect()
}

#[test]
fn staggered_requests_get_their_solo_tokens_under_the_budget() {
    let (h, log, plans) = engine(8, 3);
    let lens = [(11, 9), (3, 14), (20, 5), (6, 12), (2, 1), (9, 7)];
    let mut rxs = Vec::new();
    for (i, &(p, n)) in lens.iter().enumerate() {
        rxs.push((
            prompt(i as u32, p),
            n,
            h.submit(req(prompt(i as u32, p), n)).1,
        ));
        if i % 2 == 1 {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
    }
    for (p, n, rx) in &rxs {
        let (toks, done) = drain(rx);
        assert_eq!(toks, expected(p, *n), "prompt {p:?}");
        match done {
            Event::Done { reason, stats } => {
                assert_eq!(reason, StopReason::Length);
                assert_eq!(stats.output_tokens, *n);
                assert_eq!(stats.prefill_tokens_computed, p.len());
            }
            other => panic!("expected Done, got {other:?}"),
        }
    }
    let stats = h.shutdown().unwrap();
    assert!(stats.max_step_tokens <= 8, "{stats:?}");
    let total: usize = lens.iter().map(|l| l.0).sum();
    assert_eq!(stats.prefill_tokens_computed, total as u64);
    assert_eq!(stats.kv_blocks_in_use_end, 0);
    assert!(plans.lock().unwrap().iter().all(|p| p.num_tokens() <= 8));
    // Several sequences decoded in one batch at some step.
    assert!(log.lock().unwrap().decode_batches.iter().any(|&b| b >= 2));
}

#[test]
fn eos_stops_unless_ignored_and_cancel_frees_the_slot() {
    let (h, _log, plans) = engine(16, 1);
    // A prompt whose greedy continuation reaches id 0 (the EOS here).
    let p = (0..200u32)
        .map(|s| prompt(s, 4))
        .find(|p| expected(p, 10).contains(&0))
        .expect("some prompt reaches EOS within 10 tokens");
    let stop_at = expected(&p, 10).iter().position(|&t| t == 0).unwrap() + 1;
    let mut r = req(p.clone(), 10);
    r.ignore_eos = false;
    let (toks, done) = drain(&h.submit(r).1);
    assert_eq!(toks, expected(&p, stop_at));
    assert!(
        matches!(
            done,
            Event::Done {
                reason: StopReason::Stop,
                ..
            }
        ),
        "{done:?}"
    );

    // One slot: a long request holds it until cancelled, then the next runs.
    let (id, long) = h.submit(req(prompt(1, 3), 60));
    let (_, short) = h.submit(req(prompt(2, 3), 2));
    match long.recv().unwrap() {
        Event::Token { .. } => {}
        other => panic!("expected a token, got {other:?}"),
    }
    h.cancel(id);
    let (_, done) = drain(&long);
    assert!(
        matches!(
            done,
            Event::Done {
                reason: StopReason::Cancelled,
                ..
            }
        ),
        "{done:?}"
    );
    let (toks, _) = drain(&short);
    assert_eq!(toks, expected(&prompt(2, 3), 2));
    let stats = h.shutdown().unwrap();
    assert_eq!(stats.kv_blocks_in_use_end, 0);
    assert!(plans.lock().unwrap().iter().all(|p| p.num_tokens() <= 16));
}

#[test]
fn bad_requests_get_an_error_naming_the_problem() {
    let (h, _, _) = engine(8, 2);
    let cases = [
        (req(vec![], 3), "prompt tokens"),
        (req(vec![1, 2], 0), "max_tokens 0"),
        (req(vec![1, 99], 3), "99"),
        (req(vec![1; 60], 10), "context of 64"),
    ];
    for (r, want) in cases {
        match h.submit(r).1.recv().unwrap() {
            Event::Error(msg) => assert!(msg.contains(want), "{msg:?} should name {want:?}"),
            other => panic!("expected an error naming {want:?}, got {other:?}"),
        }
    }
    // The engine still serves.
    let (toks, _) = drain(&h.submit(req(vec![3, 4], 2)).1);
    assert_eq!(toks, expected(&[3, 4], 2));
    h.shutdown().unwrap();
}

#[test]
fn a_dropped_receiver_cancels_its_request() {
    let (h, _, _) = engine(8, 1);
    let (_, rx) = h.submit(req(prompt(5, 3), 60));
    rx.recv().unwrap();
    drop(rx);
    // The single slot comes free: the next request finishes.
    let (toks, _) = drain(&h.submit(req(prompt(6, 2), 3)).1);
    assert_eq!(toks, expected(&prompt(6, 2), 3));
    let stats = h.shutdown().unwrap();
    assert!(stats.output_tokens < 60 + 3, "{stats:?}");
}
