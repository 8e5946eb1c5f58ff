//! Shared by the week-3 engine tests (days 15 and 17): the tiny Qwen2 of the
//! fixtures, its greedy tokens computed one request at a time (the
//! independent path the batched engine is checked against), and helpers to
//! submit requests and read their events.

use crate::fixture::checked_dir;
use crate::imp::qwen2_week2::Qwen2ModelWeek2;
use crate::ok;
use mlx_rs::ops::indexing::argmax_axis;
use mlx_rs::{Array, Dtype};
use std::sync::mpsc::Receiver;
use tiny_llm_common::engine::{Event, Request, Sampling};
use tiny_llm_common::{Checkpoint, Qwen2Config};

/// The tiny Qwen2 of the fixtures, f32.
pub fn tiny_model() -> Qwen2ModelWeek2 {
    let dir = checked_dir("tiny-qwen2");
    let config = Qwen2Config::from_file(&dir.join("config.json"))
        .unwrap_or_else(|e| panic!("[fixture] tiny-qwen2 config: {e}"));
    let checkpoint =
        Checkpoint::load(&dir).unwrap_or_else(|e| panic!("[fixture] tiny-qwen2 weights: {e}"));
    ok(
        "Qwen2ModelWeek2::new",
        Qwen2ModelWeek2::new(&config, &checkpoint, Dtype::Float32),
    )
}

/// Greedy tokens of `prompt` alone: day 8's cached forward pass, one
/// prefill then one token per step (the independent path).
pub fn solo(model: &Qwen2ModelWeek2, prompt: &[u32], n: usize) -> Vec<u32> {
    let mut cache = model.new_cache();
    let mut feed: Vec<i32> = prompt.iter().map(|&t| t as i32).collect();
    let (mut offset, mut out) = (0, Vec::new());
    for _ in 0..n {
        let input = Array::from_slice(&feed, &[1, feed.len() as i32]);
        let logits = ok(
            "forward_last",
            model.forward_last(&input, offset, &mut cache),
        );
        let t: u32 = argmax_axis(&logits, -1, false)
            .unwrap()
            .try_item_cast()
            .unwrap();
        offset += feed.len();
        feed = vec![t as i32];
        out.push(t);
    }
    out
}

/// Every event of one request: its tokens and the final event. `None`: the
/// stream ended without one (the engine thread panicked; its `shutdown`
/// re-raises the panic).
pub fn drain(rx: &Receiver<Event>) -> Option<(Vec<u32>, Event)> {
    let mut toks = Vec::new();
    loop {
        match rx.recv() {
            Ok(Event::Token { id, .. }) => toks.push(id),
            Ok(other) => return Some((toks, other)),
            Err(_) => return None,
        }
    }
}

/// A greedy request that ignores end-of-sequence tokens.
pub fn request(prompt: &[u32], max_tokens: usize) -> Request {
    Request {
        prompt: prompt.to_vec(),
        max_tokens,
        sampling: Sampling::GREEDY,
        ignore_eos: true,
    }
}

/// Prompt `i` of `len` ids below the tiny model's vocabulary of 1088.
pub fn prompt(i: u32, len: usize) -> Vec<u32> {
    (0..len as u32)
        .map(|j| (i * 97 + j * 31 + 5) % 1000)
        .collect()
}
