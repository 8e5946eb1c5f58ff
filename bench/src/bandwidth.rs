//! `bandwidth`: the machine's memory read bandwidth, measured the way a
//! decode step reads its weights: `threads` threads each streaming once
//! through their own part of a buffer much larger than the caches. The
//! week-2 bench divides the bytes of weights one token reads by this to get
//! the memory roofline of decode. No MLX here.

use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::time::Instant;

/// Sums `words` with eight independent accumulators (so the loop is bound
/// by loads, not by one add chain; the compiler vectorises it).
fn stream_sum(words: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let chunks = words.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, w) in acc.iter_mut().zip(c) {
            *a = a.wrapping_add(*w);
        }
    }
    let rest = tail.iter().fold(0u64, |a, w| a.wrapping_add(*w));
    acc.iter().fold(rest, |a, w| a.wrapping_add(*w))
}

/// One pass: every thread reads its contiguous share of `buf` once.
/// Returns (seconds, checksum).
fn one_pass(buf: &[u64], threads: usize) -> (f64, u64) {
    let share = buf.len().div_ceil(threads);
    let t = Instant::now();
    let sum = std::thread::scope(|s| {
        let handles: Vec<_> = buf
            .chunks(share)
            .map(|part| s.spawn(move || stream_sum(part)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a reader thread panicked"))
            .fold(0u64, u64::wrapping_add)
    });
    (t.elapsed().as_secs_f64(), sum)
}

/// Measures read bandwidth over a `mib` MiB buffer with `threads` threads,
/// `reps` passes after one warm-up pass. Reports every pass's GB/s (1e9
/// bytes per second), their median and the best (the bench uses the best:
/// the most the machine showed it can read).
pub fn run(threads: usize, mib: usize, reps: usize) -> Result<Value> {
    if threads == 0 || mib == 0 || reps == 0 {
        bail!("--threads, --mib and --reps must be at least 1 (got {threads}, {mib}, {reps})");
    }
    let words = mib * (1 << 20) / 8;
    // Written (not just allocated) so every page is resident before timing.
    let buf: Vec<u64> = (0..words as u64).collect();
    let bytes = (words * 8) as f64;
    let (_, expected) = one_pass(&buf, threads);
    let mut rates = Vec::with_capacity(reps);
    for _ in 0..reps {
        let (seconds, sum) = one_pass(&buf, threads);
        if sum != expected {
            bail!("checksum changed between passes ({sum} != {expected})");
        }
        rates.push(bytes / seconds / 1e9);
    }
    let mut sorted = rates.clone();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let median = sorted[sorted.len() / 2];
    let best = sorted[sorted.len() - 1];
    eprintln!("  read bandwidth, {threads} threads over {mib} MiB: best {best:.1} GB/s, median {median:.1} GB/s");
    Ok(json!({
        "status": "ok",
        "threads": threads,
        "buffer_bytes": words * 8,
        "gb_s": rates,
        "median_gb_s": median,
        "best_gb_s": best,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_sum_adds_every_word_once() {
        let words: Vec<u64> = (1..=1001).collect();
        assert_eq!(stream_sum(&words), 1001 * 1002 / 2);
        assert_eq!(stream_sum(&[]), 0);
        assert_eq!(stream_sum(&[u64::MAX, 2]), 1);
    }

    #[test]
    fn passes_split_the_buffer_among_threads() {
        let buf: Vec<u64> = (0..1000).collect();
        for threads in [1, 2, 3, 7] {
            assert_eq!(
                one_pass(&buf, threads).1,
                999 * 1000 / 2,
                "{threads} threads"
            );
        }
    }

    #[test]
    fn zero_sizes_are_refused() {
        let e = run(0, 1, 1).unwrap_err().to_string();
        assert!(e.contains("--threads"), "{e}");
    }
}
