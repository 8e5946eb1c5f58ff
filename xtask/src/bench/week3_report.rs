//! `bench week3`'s results: the engines' JSON reports (the contract of
//! `tiny-llm-bench engine`, which the llama.cpp and mlx-lm sides print too),
//! nearest-rank percentiles, the tables and `target/bench/week3.{md,json}`.
use super::*;

/// The nearest-rank percentile `p` (0 < p <= 100) of `samples`: the
/// smallest sample with at least p% of the samples at or below it, i.e.
/// the `ceil(p/100 * n)`-th smallest (1-based). `None` when there are no
/// samples. (The definition of NIST's "nearest rank", no interpolation.)
pub(super) fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() || !(p > 0.0 && p <= 100.0) {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let rank = ((p / 100.0) * s.len() as f64).ceil() as usize;
    Some(s[rank.clamp(1, s.len()) - 1])
}

/// One engine's run of one workload at one concurrency (the contract's
/// JSON). Counts are tokens; times are seconds; the KV and prefix-cache
/// fields are `None` for an engine that does not report them.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct EngineRun {
    pub(super) engine: String,
    pub(super) concurrency: usize,
    pub(super) requests: usize,
    pub(super) wall_s: f64,
    pub(super) prompt_tokens: u64,
    pub(super) output_tokens: u64,
    pub(super) prefill_tokens_computed: Option<u64>,
    /// Submit to first token, one per request.
    pub(super) ttft_s: Vec<f64>,
    /// Every gap between consecutive tokens of a request, all requests.
    pub(super) itl_s: Vec<f64>,
    pub(super) kv_blocks_total: Option<u64>,
    pub(super) kv_blocks_peak: Option<u64>,
    pub(super) kv_blocks_in_use_end: Option<u64>,
    pub(super) prefix_cache_hit_blocks: Option<u64>,
    pub(super) prefix_cache_lookup_blocks: Option<u64>,
    pub(super) peak_rss_gb: Option<f64>,
    /// Tokens fed by decode passes and the seconds spent in them (the
    /// reference's engine counters; `None` for the others).
    pub(super) decode_tokens: Option<u64>,
    pub(super) decode_s: Option<f64>,
}

impl EngineRun {
    /// Parses an engine's report; an error names the missing or bad key.
    pub(super) fn from_json(v: &Value) -> Result<EngineRun> {
        let u = |k: &str| {
            v[k].as_u64()
                .with_context(|| format!("engine report: no integer \"{k}\" in {}", short(v)))
        };
        let list = |k: &str| -> Result<Vec<f64>> {
            v[k].as_array()
                .with_context(|| format!("engine report: no \"{k}\" array"))?
                .iter()
                .map(|x| {
                    x.as_f64().with_context(|| {
                        format!("engine report: \"{k}\" holds {x}, expected seconds")
                    })
                })
                .collect()
        };
        let wall_s = v["wall_s"]
            .as_f64()
            .filter(|w| *w > 0.0)
            .context("engine report: \"wall_s\" must be a positive number")?;
        Ok(EngineRun {
            engine: v["engine"]
                .as_str()
                .context("engine report: no \"engine\" name")?
                .to_string(),
            concurrency: u("concurrency")? as usize,
            requests: u("requests")? as usize,
            wall_s,
            prompt_tokens: u("prompt_tokens")?,
            output_tokens: u("output_tokens")?,
            prefill_tokens_computed: v["prefill_tokens_computed"].as_u64(),
            ttft_s: list("ttft_s")?,
            itl_s: list("itl_s")?,
            kv_blocks_total: v["kv_blocks_total"].as_u64(),
            kv_blocks_peak: v["kv_blocks_peak"].as_u64(),
            kv_blocks_in_use_end: v["kv_blocks_in_use_end"].as_u64(),
            prefix_cache_hit_blocks: v["prefix_cache_hit_blocks"].as_u64(),
            prefix_cache_lookup_blocks: v["prefix_cache_lookup_blocks"].as_u64(),
            peak_rss_gb: v["peak_rss_gb"].as_f64(),
            decode_tokens: v["decode_tokens"].as_u64(),
            decode_s: v["decode_s"].as_f64().filter(|s| *s > 0.0),
        })
    }

    /// Aggregate output tokens per second: `output_tokens / wall_s`.
    pub(super) fn tok_s(&self) -> f64 {
        self.output_tokens as f64 / self.wall_s
    }

    /// Aggregate decode throughput, prefill left out: tokens fed by decode
    /// passes over the seconds spent in them (`None` when not reported).
    pub(super) fn decode_tok_s(&self) -> Option<f64> {
        Some(self.decode_tokens? as f64 / self.decode_s?)
    }

    /// Prefix-cache hits over lookups, in blocks (`None` without lookups).
    pub(super) fn hit_rate(&self) -> Option<f64> {
        match (
            self.prefix_cache_hit_blocks,
            self.prefix_cache_lookup_blocks,
        ) {
            (Some(h), Some(l)) if l > 0 => Some(h as f64 / l as f64),
            _ => None,
        }
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 200 {
        format!("{}...", &s[..200])
    } else {
        s
    }
}

/// What one engine gave for one row: a run, or why there is none.
#[derive(Debug, Clone)]
pub(super) enum Outcome {
    Ran(Box<EngineRun>),
    /// "not available (...)", "skipped (...)" or "error: ...".
    Missing(String),
}

impl Outcome {
    pub(super) fn run(&self) -> Option<&EngineRun> {
        match self {
            Outcome::Ran(r) => Some(r),
            Outcome::Missing(_) => None,
        }
    }
}

/// The engines of the table, in column order.
pub(super) const ENGINES: [&str; 3] = ["reference", "llama.cpp", "mlx-lm"];

/// Every measurement of a run: per concurrency, per engine; and the
/// prefix rows (label such as "reference, prefix cache on").
#[derive(Debug, Default)]
pub(super) struct Week3Results {
    pub(super) by_concurrency: BTreeMap<usize, BTreeMap<String, Outcome>>,
    pub(super) prefix: Vec<(String, Outcome)>,
}

impl Week3Results {
    pub(super) fn get(&self, n: usize, engine: &str) -> Option<&EngineRun> {
        self.by_concurrency.get(&n)?.get(engine)?.run()
    }

    fn missing(&self, n: usize, engine: &str) -> String {
        match self.by_concurrency.get(&n).and_then(|m| m.get(engine)) {
            Some(Outcome::Missing(why)) => why.clone(),
            _ => "-".into(),
        }
    }

    /// Throughput at `n` streams over throughput at 1 stream, for `engine`.
    pub(super) fn scaling(&self, n: usize, engine: &str) -> Option<f64> {
        Some(self.get(n, engine)?.tok_s() / self.get(1, engine)?.tok_s())
    }

    /// Decode-pass throughput at `n` streams over at 1 stream.
    pub(super) fn decode_scaling(&self, n: usize, engine: &str) -> Option<f64> {
        Some(self.get(n, engine)?.decode_tok_s()? / self.get(1, engine)?.decode_tok_s()?)
    }

    fn prefix_run(&self, label: &str) -> Option<&EngineRun> {
        self.prefix.iter().find(|(l, _)| l == label)?.1.run()
    }

    /// Prefill tokens computed with the cache off over with it on.
    pub(super) fn prefill_reduction(&self, engine: &str) -> Option<f64> {
        let off = self
            .prefix_run(&prefix_label(engine, false))?
            .prefill_tokens_computed?;
        let on = self
            .prefix_run(&prefix_label(engine, true))?
            .prefill_tokens_computed?;
        (on > 0).then(|| off as f64 / on as f64)
    }
}

/// The label of a prefix row.
pub(super) fn prefix_label(engine: &str, on: bool) -> String {
    format!("{engine}, prefix cache {}", if on { "on" } else { "off" })
}

fn f(x: Option<f64>, digits: usize) -> String {
    x.map_or("-".into(), |x| format!("{x:.digits$}"))
}

/// `x` with a unit suffix, or "-" without a value.
fn fu(x: Option<f64>, digits: usize, unit: &str) -> String {
    x.map_or("-".into(), |x| format!("{x:.digits$}{unit}"))
}

fn pcts(xs: &[f64], scale: f64, digits: usize) -> String {
    let p = |q| percentile(xs, q).map(|x| x * scale);
    format!(
        "{} / {} / {}",
        f(p(50.0), digits),
        f(p(95.0), digits),
        f(p(99.0), digits)
    )
}

/// The throughput table: one row per concurrency.
pub(super) fn throughput_cells(r: &Week3Results) -> Vec<Vec<String>> {
    let mut cells = vec![vec![
        "streams".to_string(),
        "reference tok/s".into(),
        "llama.cpp tok/s".into(),
        "mlx-lm tok/s".into(),
        "ref/llama.cpp".into(),
        "ref/mlx-lm".into(),
        "scaling vs 1 (ref / llama.cpp)".into(),
        "ref decode passes tok/s (scaling)".into(),
        "ref TTFT p50/p95/p99 s".into(),
        "ref ITL p50/p95/p99 ms".into(),
        "ref KV blocks peak / total".into(),
        "ref prefix hit rate".into(),
    ]];
    for &n in r.by_concurrency.keys() {
        let tok = |e: &str| r.get(n, e).map(EngineRun::tok_s);
        let cell = |e: &str| match tok(e) {
            Some(t) => format!("{t:.2}"),
            None => r.missing(n, e),
        };
        let ratio = |e: &str| {
            let x = match (tok("reference"), tok(e)) {
                (Some(a), Some(b)) => Some(a / b).filter(|x| x.is_finite()),
                _ => None,
            };
            f(x, 2)
        };
        let refr = r.get(n, "reference");
        cells.push(vec![
            n.to_string(),
            cell("reference"),
            cell("llama.cpp"),
            cell("mlx-lm"),
            ratio("llama.cpp"),
            ratio("mlx-lm"),
            format!(
                "{} / {}",
                f(r.scaling(n, "reference"), 2),
                f(r.scaling(n, "llama.cpp"), 2)
            ),
            refr.map_or("-".into(), |x| {
                format!(
                    "{} ({})",
                    f(x.decode_tok_s(), 1),
                    fu(r.decode_scaling(n, "reference"), 2, "x")
                )
            }),
            refr.map_or("-".into(), |x| pcts(&x.ttft_s, 1.0, 2)),
            refr.map_or("-".into(), |x| pcts(&x.itl_s, 1e3, 0)),
            refr.map_or("-".into(), |x| {
                match (x.kv_blocks_peak, x.kv_blocks_total) {
                    (Some(p), Some(t)) => format!("{p} / {t}"),
                    _ => "-".into(),
                }
            }),
            refr.map_or("-".into(), |x| fu(x.hit_rate().map(|h| h * 100.0), 1, "%")),
        ]);
    }
    cells
}

/// The latency table: one row per concurrency and engine that ran.
pub(super) fn latency_cells(r: &Week3Results) -> Vec<Vec<String>> {
    let mut cells = vec![vec![
        "streams".to_string(),
        "engine".into(),
        "requests".into(),
        "tok/s".into(),
        "TTFT p50/p95/p99 s".into(),
        "ITL p50/p95/p99 ms".into(),
        "prefill tokens computed / prompt".into(),
        "peak RSS GB".into(),
    ]];
    for (&n, engines) in &r.by_concurrency {
        for e in ENGINES {
            if let Some(Outcome::Ran(x)) = engines.get(e) {
                cells.push(vec![
                    n.to_string(),
                    e.into(),
                    x.requests.to_string(),
                    format!("{:.2}", x.tok_s()),
                    pcts(&x.ttft_s, 1.0, 2),
                    pcts(&x.itl_s, 1e3, 0),
                    format!(
                        "{} / {}",
                        x.prefill_tokens_computed
                            .map_or("-".into(), |p| p.to_string()),
                        x.prompt_tokens
                    ),
                    f(x.peak_rss_gb, 2),
                ]);
            }
        }
    }
    cells
}

/// The prefix rows: the shared-prefix workload, cache on and off.
pub(super) fn prefix_cells(r: &Week3Results) -> Vec<Vec<String>> {
    let mut cells = vec![vec![
        "shared-prefix workload".to_string(),
        "prompt tokens".into(),
        "prefill tokens computed".into(),
        "off / on".into(),
        "hit rate (blocks)".into(),
        "tok/s".into(),
        "TTFT p50 s".into(),
    ]];
    for (label, o) in &r.prefix {
        let engine = label.split(',').next().unwrap_or("");
        let on = label.ends_with("on");
        match o {
            Outcome::Ran(x) => cells.push(vec![
                label.clone(),
                x.prompt_tokens.to_string(),
                x.prefill_tokens_computed
                    .map_or("-".into(), |p| p.to_string()),
                if on {
                    fu(r.prefill_reduction(engine), 1, "x")
                } else {
                    "".into()
                },
                fu(x.hit_rate().map(|h| h * 100.0), 1, "%"),
                format!("{:.2}", x.tok_s()),
                f(percentile(&x.ttft_s, 50.0), 2),
            ]),
            Outcome::Missing(why) => {
                let mut row = vec![label.clone(), why.clone()];
                row.resize(7, String::new());
                cells.push(row);
            }
        }
    }
    cells
}

/// Issue 13's targets: (what, measured, pass) with `None` = not measured.
pub(super) fn week3_targets(r: &Week3Results) -> Vec<(String, String, Option<bool>)> {
    let scaling = r.scaling(8, "reference");
    let decode_scaling = r.decode_scaling(8, "reference");
    let vs_llama = (|| Some(r.get(8, "reference")?.tok_s() / r.get(8, "llama.cpp")?.tok_s()))();
    let prefix = r.prefill_reduction("reference");
    vec![
        (
            "reference: 8 streams >= 4x one stream (aggregate tok/s)".into(),
            fu(scaling, 2, "x"),
            scaling.map(|s| s >= 4.0),
        ),
        (
            "reference: 8 streams >= 4x one stream (decode passes alone: decode tokens / seconds in decode passes)".into(),
            fu(decode_scaling, 2, "x"),
            decode_scaling.map(|s| s >= 4.0),
        ),
        (
            "reference >= 1.0x llama.cpp's server at 8 slots".into(),
            fu(vs_llama, 2, "x"),
            vs_llama.map(|s| s >= 1.0),
        ),
        (
            "prefix cache: prefill tokens computed fall >= 10x (shared prefix, 16 requests)".into(),
            fu(prefix, 1, "x"),
            prefix.map(|s| s >= 10.0),
        ),
    ]
}

/// The target lines, "pass" / "miss" / "not measured".
pub(super) fn target_lines(r: &Week3Results) -> Vec<String> {
    week3_targets(r)
        .into_iter()
        .map(|(what, got, pass)| {
            let verdict = match pass {
                Some(true) => "pass",
                Some(false) => "miss",
                None => "not measured",
            };
            format!("{what}: {got} ({verdict})")
        })
        .collect()
}

fn run_json(o: &Outcome) -> Value {
    match o {
        Outcome::Ran(x) => json!({
            "engine": x.engine, "concurrency": x.concurrency, "requests": x.requests,
            "wall_s": x.wall_s, "tok_s": x.tok_s(), "prompt_tokens": x.prompt_tokens,
            "output_tokens": x.output_tokens, "prefill_tokens_computed": x.prefill_tokens_computed,
            "ttft_s": { "p50": percentile(&x.ttft_s, 50.0), "p95": percentile(&x.ttft_s, 95.0), "p99": percentile(&x.ttft_s, 99.0) },
            "itl_s": { "p50": percentile(&x.itl_s, 50.0), "p95": percentile(&x.itl_s, 95.0), "p99": percentile(&x.itl_s, 99.0) },
            "kv_blocks_total": x.kv_blocks_total, "kv_blocks_peak": x.kv_blocks_peak,
            "kv_blocks_in_use_end": x.kv_blocks_in_use_end,
            "prefix_cache_hit_blocks": x.prefix_cache_hit_blocks,
            "prefix_cache_lookup_blocks": x.prefix_cache_lookup_blocks, "peak_rss_gb": x.peak_rss_gb,
            "decode_tokens": x.decode_tokens, "decode_s": x.decode_s, "decode_tok_s": x.decode_tok_s(),
        }),
        Outcome::Missing(why) => json!({ "missing": why }),
    }
}

/// Prints the tables and writes `target/bench/week3.{md,json}`; `notes`
/// describe the workloads and engines, `header` the run.
pub(super) fn report_week3(r: &Week3Results, header: &str, notes: &[String]) -> Result<PathBuf> {
    let (t, l, p) = (throughput_cells(r), latency_cells(r), prefix_cells(r));
    let goals = target_lines(r);
    println!(
        "\n{header}\n{}\n{}\n{}\ntargets:\n{}\n{}",
        render_text(&t),
        render_text(&l),
        render_text(&p),
        goals
            .iter()
            .map(|g| format!("  {g}"))
            .collect::<Vec<_>>()
            .join("\n"),
        notes.join("\n")
    );
    let dir = bench_dir();
    std::fs::create_dir_all(&dir)?;
    let bullets = |xs: &[String]| {
        xs.iter()
            .map(|n| format!("- {n}"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let md = format!(
        "# bench week3: serving throughput\n\n{header}\n\n{}\n### Latency per engine\n\n{}\n### Prefix cache\n\n{}\n### Targets (issue 13)\n\n{}\n\n### Notes\n\n{}\n",
        render_markdown(&t),
        render_markdown(&l),
        render_markdown(&p),
        bullets(&goals),
        bullets(notes)
    );
    let md_path = dir.join("week3.md");
    std::fs::write(&md_path, md)?;
    let mut by_concurrency = serde_json::Map::new();
    for (n, engines) in &r.by_concurrency {
        let row: serde_json::Map<String, Value> = engines
            .iter()
            .map(|(e, o)| (e.clone(), run_json(o)))
            .collect();
        by_concurrency.insert(n.to_string(), Value::Object(row));
    }
    let doc = json!({
        "benchmark": "week3",
        "date": utc_now(),
        "machine": machine(),
        "header": header,
        "by_concurrency": by_concurrency,
        "prefix": r.prefix.iter().map(|(l, o)| json!({ "row": l, "run": run_json(o) })).collect::<Vec<_>>(),
        "targets": goals,
        "notes": notes,
    });
    std::fs::write(
        dir.join("week3.json"),
        serde_json::to_string_pretty(&doc)? + "\n",
    )?;
    println!(
        "wrote {}, {}",
        md_path.display(),
        dir.join("week3.json").display()
    );
    Ok(md_path)
}
