//! llama.cpp's HTTP server as a `bench week3` engine: `llama-server` with N
//! parallel slots serving the workload, driven by N closed-loop client
//! threads (the contract of `tiny-llm-bench engine`), measured from the
//! client side of its server-sent events.
//!
//! - Server: `llama-server -m GGUF -np N -c CTX -t <cores> --host 127.0.0.1
//!   --port <free port>`; CTX = N x (longest prompt + output, rounded up to
//!   256), so every slot holds its longest request whether the KV cache is
//!   split per slot or unified. Ready when `GET /health` answers 200. Killed
//!   (and reaped) after the run; its peak RSS is `VmHWM` of
//!   `/proc/<pid>/status` just before.
//! - Requests: `POST /completion` with the prompt as an array of token ids,
//!   `n_predict` = max_tokens, `ignore_eos: true`, `temperature: 0`
//!   (greedy), `stream: true`, `return_tokens: true`, and `cache_prompt`
//!   false (no reuse of a slot's earlier prompt: every engine computes
//!   every prompt token) except on the prefix row's "on" side. Fields as
//!   documented in llama.cpp's `tools/server/README.md`.
//! - Times: a token's time is when the event carrying it arrives. llama.cpp
//!   holds back a token that ends inside a UTF-8 character and sends it with
//!   the next, so one event may carry k > 1 tokens (its `tokens_predicted`,
//!   the count decoded so far, grows by k): its gap since the previous
//!   event then counts as k gaps of gap/k (the tokens were produced in that
//!   interval; their exact times are not observable).
//! - `prefill_tokens_computed`: the sum of the final events'
//!   `timings.prompt_n` (prompt tokens the server evaluated, cached ones not
//!   counted); `prompt_tokens_cached`: the sum of `timings.cache_n`.
use super::*;
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use week3_workload::Workload;

/// How to start the server.
pub(super) struct ServerSpec<'a> {
    pub(super) binary: &'a Path,
    pub(super) gguf: &'a Path,
    pub(super) threads: usize,
    /// `OMP_WAIT_POLICY=PASSIVE` (see `bench week2 --omp-passive`).
    pub(super) omp_passive: bool,
    pub(super) log: PathBuf,
}

/// A free TCP port on 127.0.0.1 (bound, read, released).
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a free port on 127.0.0.1")?;
    Ok(l.local_addr()?.port())
}

/// The server's context: `slots` x (`longest` tokens rounded up to 256), a
/// multiple of `slots` (llama.cpp rounds a context that is not down, which
/// could leave a slot too small).
pub(super) fn context_size(slots: usize, longest: usize) -> usize {
    slots * longest.div_ceil(256).max(1) * 256
}

/// A started server; dropping it kills it.
struct Server {
    child: std::process::Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `VmHWM` (peak resident set) of the server, in GB.
    fn peak_rss_gb(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
        let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb * 1024.0 / 1e9)
    }
}

fn start(spec: &ServerSpec, slots: usize, ctx: usize) -> Result<Server> {
    let port = free_port()?;
    std::fs::create_dir_all(spec.log.parent().expect("has a parent"))?;
    let log = std::fs::File::create(&spec.log)?;
    let mut cmd = Command::new(spec.binary);
    cmd.arg("-m").arg(spec.gguf).args([
        "-np",
        &slots.to_string(),
        "-c",
        &ctx.to_string(),
        "-t",
        &spec.threads.to_string(),
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
    ]);
    if spec.omp_passive {
        cmd.env("OMP_WAIT_POLICY", "PASSIVE");
    }
    let child = cmd
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", spec.binary.display()))?;
    let mut server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(5))
        .build();
    let started = Instant::now();
    loop {
        if let Some(status) = server.child.try_wait()? {
            bail!(
                "llama-server exited ({status}) before it was ready; log: {}",
                spec.log.display()
            );
        }
        if let Ok(r) = agent.get(&format!("{}/health", server.base)).call() {
            if r.status() == 200 {
                return Ok(server);
            }
        }
        if started.elapsed() > Duration::from_secs(300) {
            bail!(
                "llama-server was not ready after 300 s; log: {}",
                spec.log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// What the client saw of one request.
#[derive(Debug, Default, Clone)]
pub(super) struct Streamed {
    pub(super) ttft_s: f64,
    pub(super) itl_s: Vec<f64>,
    pub(super) tokens: u64,
    pub(super) prompt_n: Option<u64>,
    pub(super) cache_n: Option<u64>,
}

/// Reads a `/completion` event stream: each `data: {json}` line is one
/// event; `at(i)` gives the arrival time (seconds since submit) of the
/// i-th event (a parameter so the parser is testable without a clock).
pub(super) fn read_events(body: impl BufRead, mut at: impl FnMut() -> f64) -> Result<Streamed> {
    let mut out = Streamed::default();
    let mut last: Option<f64> = None;
    for line in body.lines() {
        let line = line.context("reading llama-server's event stream")?;
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let now = at();
        let v: Value = serde_json::from_str(data)
            .with_context(|| format!("llama-server sent an event that is not JSON: {data}"))?;
        if let Some(e) = v.get("error") {
            bail!("llama-server answered an error: {e}");
        }
        // `tokens_predicted` counts the tokens decoded so far; an event
        // after a held-back token carries both (its `tokens` array names
        // only the newest).
        let decoded = v["tokens_predicted"]
            .as_u64()
            .unwrap_or(out.tokens + v["tokens"].as_array().map_or(0, |t| t.len()) as u64);
        let k = decoded.saturating_sub(out.tokens);
        if k > 0 {
            match last {
                None => {
                    out.ttft_s = now;
                    // Tokens beyond the first that came with it: their gaps
                    // are not observable; they count as 0.
                    out.itl_s.extend(std::iter::repeat_n(0.0, (k - 1) as usize));
                }
                Some(prev) => {
                    let gap = (now - prev) / k as f64;
                    out.itl_s.extend(std::iter::repeat_n(gap, k as usize));
                }
            }
            last = Some(now);
            out.tokens = decoded;
        }
        if v["stop"].as_bool() == Some(true) {
            out.prompt_n = v["timings"]["prompt_n"].as_u64();
            out.cache_n = v["timings"]["cache_n"].as_u64();
            break;
        }
    }
    Ok(out)
}

/// The `/completion` body of one request.
pub(super) fn completion_body(prompt: &[u32], max_tokens: usize, cache_prompt: bool) -> Value {
    json!({
        "prompt": prompt,
        "n_predict": max_tokens,
        "ignore_eos": true,
        "temperature": 0.0,
        "stream": true,
        "return_tokens": true,
        "cache_prompt": cache_prompt,
    })
}

/// Serves `workload` with `slots` parallel slots and as many closed-loop
/// clients; returns the contract's JSON report (`"engine": "llama.cpp"`).
pub(super) fn run(
    spec: &ServerSpec,
    workload: &Workload,
    slots: usize,
    cache_prompt: bool,
) -> Result<Value> {
    if slots == 0 || workload.requests.is_empty() {
        bail!(
            "llama-server run: {slots} slots, {} requests; expected at least 1 of each",
            workload.requests.len()
        );
    }
    let ctx = context_size(slots, workload.longest_sequence());
    let server = start(spec, slots, ctx)?;
    let mut report = serve(&server.base, workload, slots, cache_prompt)?;
    report["peak_rss_gb"] = json!(server.peak_rss_gb());
    report["context"] = json!(ctx);
    drop(server);
    Ok(report)
}

/// The closed loop against a running server at `base` (`http://host:port`):
/// `slots` client threads, each taking the next request in order; the
/// report without the server's RSS and context.
pub(super) fn serve(
    base: &str,
    workload: &Workload,
    slots: usize,
    cache_prompt: bool,
) -> Result<Value> {
    let url = format!("{base}/completion");
    let agent = ureq::AgentBuilder::new()
        .timeout_read(Duration::from_secs(900))
        .build();
    let next = Arc::new(AtomicUsize::new(0));
    let slots_of_results: Vec<Option<Result<Streamed>>> = std::iter::repeat_with(|| None)
        .take(workload.requests.len())
        .collect();
    let results = Arc::new(Mutex::new(slots_of_results));
    let requests = Arc::new(workload.requests.clone());
    let started = Instant::now();
    let clients: Vec<_> = (0..slots)
        .map(|_| {
            let (next, results, requests, agent, url) = (
                next.clone(),
                results.clone(),
                requests.clone(),
                agent.clone(),
                url.clone(),
            );
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(r) = requests.get(i) else { break };
                let body = completion_body(&r.prompt, r.max_tokens, cache_prompt);
                let submit = Instant::now();
                let got = agent
                    .post(&url)
                    .set("Content-Type", "application/json")
                    .send_string(&body.to_string())
                    .map_err(|e| anyhow::anyhow!("POST /completion: {e}"))
                    .and_then(|resp| {
                        let reader = BufReader::new(resp.into_reader());
                        read_events(reader, || submit.elapsed().as_secs_f64())
                    });
                results.lock().expect("not poisoned")[i] = Some(got);
            })
        })
        .collect();
    for c in clients {
        c.join()
            .map_err(|_| anyhow::anyhow!("a client thread panicked"))?;
    }
    let wall_s = started.elapsed().as_secs_f64();
    let results = std::mem::take(&mut *results.lock().expect("not poisoned"));
    let mut streamed = Vec::with_capacity(results.len());
    for (i, r) in results.into_iter().enumerate() {
        let s = r.with_context(|| format!("request {i} was never sent"))??;
        let want = workload.requests[i].max_tokens as u64;
        if s.tokens != want {
            bail!(
                "llama-server streamed {} tokens for request {i}; it asked for {want}",
                s.tokens
            );
        }
        streamed.push(s);
    }
    let sum =
        |f: &dyn Fn(&Streamed) -> Option<u64>| -> Option<u64> { streamed.iter().map(f).sum() };
    Ok(json!({
        "engine": "llama.cpp",
        "concurrency": slots,
        "requests": streamed.len(),
        "wall_s": wall_s,
        "prompt_tokens": workload.prompt_tokens(),
        "output_tokens": streamed.iter().map(|s| s.tokens).sum::<u64>(),
        "prefill_tokens_computed": sum(&|s| s.prompt_n),
        "prompt_tokens_cached": sum(&|s| s.cache_n),
        "ttft_s": streamed.iter().map(|s| s.ttft_s).collect::<Vec<_>>(),
        "itl_s": streamed.iter().flat_map(|s| s.itl_s.iter().copied()).collect::<Vec<_>>(),
        "kv_blocks_total": null, "kv_blocks_peak": null, "kv_blocks_in_use_end": null,
        "prefix_cache_hit_blocks": null, "prefix_cache_lookup_blocks": null,
        "cache_prompt": cache_prompt,
    }))
}
