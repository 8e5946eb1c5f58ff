//! The seeded workload of `bench week3`: what every engine serves, written
//! once as JSON (`{"seed", "requests": [{"prompt": [ids], "max_tokens"}]}`,
//! the contract between xtask and the engines) and read by all of them.
//!
//! Two shapes, both from a fixed seed so that every engine and every run
//! gets the same requests:
//!
//! - [`random_workload`]: the "random" dataset of serving benchmarks (vLLM's
//!   `benchmark_serving.py --dataset-name random`, nano-vllm's `bench.py`):
//!   each request's prompt length and output length drawn uniformly from an
//!   inclusive range, its prompt ids drawn uniformly from ordinary
//!   vocabulary ids (no special tokens). Every engine ignores end of
//!   sequence and generates exactly `max_tokens`, so the work is equal.
//! - [`shared_prefix_workload`]: issue 13's prefix-cache row: every request
//!   is one shared system prompt followed by a short request-specific
//!   suffix (a chat server's common case).
//!
//! The generator is SplitMix64 (Steele, Lea and Flood, "Fast splittable
//! pseudorandom number generators", OOPSLA 2014), written out here so that a
//! seed means the same workload whatever crate versions are in the lock.
use super::*;

/// Prompt ids are drawn from `FIRST_ID..LAST_ID`: past the byte-level and
/// most common merge tokens, below Qwen2's special tokens (151643 and up).
pub(super) const FIRST_ID: u32 = 1000;
/// One past the largest id drawn (Qwen2's `<|endoftext|>` is 151643).
pub(super) const LAST_ID: u32 = 151_643;

/// SplitMix64: a 64-bit state advanced by a constant, then mixed.
#[derive(Debug, Clone)]
pub(super) struct SplitMix64(u64);

impl SplitMix64 {
    pub(super) fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    pub(super) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (`lo <= hi`), by Lemire's multiply-shift
    /// (the bias is below 2^-32 for the ranges used here).
    pub(super) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        let span = hi - lo + 1;
        lo + ((u128::from(self.next_u64()) * u128::from(span)) >> 64) as u64
    }
}

/// An inclusive range of lengths, in tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Lengths {
    pub(super) min: usize,
    pub(super) max: usize,
}

impl Lengths {
    /// `min..=max`; an error when `min` is 0 or above `max`.
    pub(super) fn new(min: usize, max: usize, what: &str) -> Result<Lengths> {
        if min == 0 || min > max {
            bail!("{what}: {min}..={max} tokens; expected 1 <= min <= max");
        }
        Ok(Lengths { min, max })
    }

    fn draw(self, rng: &mut SplitMix64) -> usize {
        rng.range(self.min as u64, self.max as u64) as usize
    }
}

/// One request: prompt ids and the exact number of tokens to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WorkRequest {
    pub(super) prompt: Vec<u32>,
    pub(super) max_tokens: usize,
}

/// The requests every engine serves, in the order clients take them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Workload {
    pub(super) seed: u64,
    pub(super) requests: Vec<WorkRequest>,
}

fn ids(rng: &mut SplitMix64, n: usize) -> Vec<u32> {
    (0..n)
        .map(|_| rng.range(u64::from(FIRST_ID), u64::from(LAST_ID) - 1) as u32)
        .collect()
}

/// `n` requests, prompt and output lengths uniform in `prompt` and `output`.
pub(super) fn random_workload(seed: u64, n: usize, prompt: Lengths, output: Lengths) -> Workload {
    let mut rng = SplitMix64::new(seed);
    let requests = (0..n)
        .map(|_| {
            let p = prompt.draw(&mut rng);
            let o = output.draw(&mut rng);
            WorkRequest {
                prompt: ids(&mut rng, p),
                max_tokens: o,
            }
        })
        .collect();
    Workload { seed, requests }
}

/// `n` requests, each `prefix_len` shared ids then a suffix of its own
/// (length uniform in `suffix`), generating `max_tokens` each.
pub(super) fn shared_prefix_workload(
    seed: u64,
    n: usize,
    prefix_len: usize,
    suffix: Lengths,
    max_tokens: usize,
) -> Workload {
    let mut rng = SplitMix64::new(seed);
    let prefix = ids(&mut rng, prefix_len);
    let requests = (0..n)
        .map(|_| {
            let s = suffix.draw(&mut rng);
            let mut prompt = prefix.clone();
            prompt.extend(ids(&mut rng, s));
            WorkRequest { prompt, max_tokens }
        })
        .collect();
    Workload { seed, requests }
}

impl Workload {
    pub(super) fn to_json(&self) -> Value {
        json!({
            "seed": self.seed,
            "requests": self.requests.iter().map(|r| json!({
                "prompt": r.prompt, "max_tokens": r.max_tokens,
            })).collect::<Vec<_>>(),
        })
    }

    /// Reads the contract's JSON back (what the engines do; here the
    /// tests' round trip); an error names the first bad field.
    #[cfg(test)]
    pub(super) fn from_json(v: &Value) -> Result<Workload> {
        let seed = v["seed"]
            .as_u64()
            .context("workload: no integer \"seed\"")?;
        let list = v["requests"]
            .as_array()
            .context("workload: no \"requests\" array")?;
        let mut requests = Vec::with_capacity(list.len());
        for (i, r) in list.iter().enumerate() {
            let prompt = r["prompt"]
                .as_array()
                .with_context(|| format!("workload request {i}: no \"prompt\" array"))?
                .iter()
                .map(|t| {
                    t.as_u64()
                        .filter(|&t| t < u64::from(LAST_ID))
                        .map(|t| t as u32)
                        .with_context(|| {
                            format!("workload request {i}: prompt id {t}; expected 0..{LAST_ID}")
                        })
                })
                .collect::<Result<Vec<u32>>>()?;
            let max_tokens = r["max_tokens"]
                .as_u64()
                .filter(|&m| m > 0)
                .with_context(|| format!("workload request {i}: \"max_tokens\" must be >= 1"))?
                as usize;
            if prompt.is_empty() {
                bail!("workload request {i}: empty prompt");
            }
            requests.push(WorkRequest { prompt, max_tokens });
        }
        Ok(Workload { seed, requests })
    }

    /// Writes the JSON to `path` (creating its folder).
    pub(super) fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, serde_json::to_string(&self.to_json())? + "\n")
            .with_context(|| format!("writing {}", path.display()))
    }

    pub(super) fn prompt_tokens(&self) -> u64 {
        self.requests.iter().map(|r| r.prompt.len() as u64).sum()
    }

    pub(super) fn output_tokens(&self) -> u64 {
        self.requests.iter().map(|r| r.max_tokens as u64).sum()
    }

    /// The longest prompt plus output (the context a slot must hold).
    pub(super) fn longest_sequence(&self) -> usize {
        self.requests
            .iter()
            .map(|r| r.prompt.len() + r.max_tokens)
            .max()
            .unwrap_or(0)
    }
}
