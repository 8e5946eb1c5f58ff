//! `bench week2`'s output: the table (ratios reference / mlx-lm and
//! reference / llama.cpp, the memory roofline, bits per weight), and the
//! JSON, Markdown and SVG files under `target/bench/`.
use super::*;
use llama_cpp::Gguf;

/// What a week-2 table needs besides the measurements.
pub(super) struct Week2Context {
    pub(super) bits: u32,
    /// `tiny-llm-bench bandwidth`'s report.
    pub(super) bandwidth: Value,
    pub(super) gguf: Option<Gguf>,
    /// Why llama.cpp has no column (skipped, or its error).
    pub(super) llama_note: Option<String>,
    pub(super) mlx_bytes: MlxBytes,
    /// Parameters of the model (from the GGUF), for bits per weight.
    pub(super) params: Option<u64>,
    pub(super) new_tokens: usize,
    pub(super) mlx_lm_full: bool,
    pub(super) mlx_lm_new_tokens: usize,
}

/// Bytes of an MLX model directory's tensors that one decode step reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MlxBytes {
    /// As stored (packed codes, scales and biases in their dtype).
    pub(super) stored: u64,
    /// With every floating tensor widened to f32 (mlx-lm after `set_dtype(f32)`).
    pub(super) floats_as_f32: u64,
    /// Size of the safetensors files.
    pub(super) file_bytes: u64,
}

/// Sums the tensors of `dir`'s safetensors headers. A tied embedding is
/// read in full (as the output matrix); an untied one only a row per token,
/// so it is left out.
pub(super) fn mlx_weight_bytes(dir: &Path) -> Result<MlxBytes> {
    let config: Value = serde_json::from_str(&std::fs::read_to_string(dir.join("config.json"))?)?;
    let tied = config["tie_word_embeddings"].as_bool().unwrap_or(false);
    let index = dir.join("model.safetensors.index.json");
    let files: Vec<PathBuf> = if index.is_file() {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&index)?)?;
        let mut shards: Vec<String> = v["weight_map"]
            .as_object()
            .context("no weight_map")?
            .values()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect();
        shards.sort();
        shards.dedup();
        shards.iter().map(|s| dir.join(s)).collect()
    } else {
        vec![dir.join("model.safetensors")]
    };
    let mut b = MlxBytes {
        stored: 0,
        floats_as_f32: 0,
        file_bytes: 0,
    };
    for f in files {
        b.file_bytes += std::fs::metadata(&f)?.len();
        for (name, dtype, bytes) in safetensors_tensors(&f)? {
            if !tied && name.starts_with("model.embed_tokens.") {
                continue;
            }
            b.stored += bytes;
            b.floats_as_f32 += match dtype.as_str() {
                "BF16" | "F16" => bytes * 2,
                _ => bytes,
            };
        }
    }
    Ok(b)
}

/// (name, dtype, bytes) of every tensor in a safetensors file's header.
fn safetensors_tensors(path: &Path) -> Result<Vec<(String, String, u64)>> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)?;
    let n = u64::from_le_bytes(len);
    if n > 100 << 20 {
        bail!("{}: a {n}-byte header is not safetensors", path.display());
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header)?;
    parse_safetensors_header(&header).with_context(|| format!("reading {}", path.display()))
}

pub(super) fn parse_safetensors_header(header: &[u8]) -> Result<Vec<(String, String, u64)>> {
    let v: Value = serde_json::from_slice(header)?;
    let mut out = Vec::new();
    for (name, t) in v.as_object().context("the header is not an object")? {
        if name == "__metadata__" {
            continue;
        }
        let offs = t["data_offsets"].as_array().context("no data_offsets")?;
        let (a, b) = (offs[0].as_u64().unwrap_or(0), offs[1].as_u64().unwrap_or(0));
        out.push((
            name.clone(),
            t["dtype"].as_str().unwrap_or("?").to_string(),
            b.saturating_sub(a),
        ));
    }
    Ok(out)
}

/// The columns: the sides in order, then the ratios.
const SIDES: [Side; 4] = [Side::Learner, Side::Reference, Side::MlxLm, Side::LlamaCpp];

/// Bytes of weights one decode step of `side` reads.
fn bytes_read(side: Side, ctx: &Week2Context) -> Option<u64> {
    match side {
        Side::Learner | Side::Reference => Some(ctx.mlx_bytes.stored),
        Side::MlxLm => Some(ctx.mlx_bytes.floats_as_f32),
        Side::LlamaCpp => ctx.gguf.as_ref().map(|g| g.tensor_bytes),
    }
}

/// Best measured read bandwidth, GB/s.
fn best_gb_s(ctx: &Week2Context) -> Option<f64> {
    ctx.bandwidth["best_gb_s"].as_f64()
}

/// Decode as a fraction of the memory roofline: tok/s * bytes / (B/s).
pub(super) fn roofline(decode_tok_s: f64, bytes: u64, gb_s: f64) -> f64 {
    decode_tok_s * bytes as f64 / (gb_s * 1e9)
}

/// A derived row's value for `side` (the roofline and bytes rows), as a Stat.
fn derived(s: &Summary, side: Side, key: &str, ctx: &Week2Context) -> Option<Stat> {
    let bytes = bytes_read(side, ctx)?;
    match key {
        "weights_mb_per_token" => stat(&[bytes as f64 / 1e6]),
        "roofline_pct" => {
            let d = s.get(side, BlasKind::Optimised, "decode_tok_s")?;
            let bw = best_gb_s(ctx)?;
            let f = |x: f64| 100.0 * roofline(x, bytes, bw);
            Some(Stat {
                median: f(d.median),
                min: f(d.min),
                max: f(d.max),
                n: d.n,
            })
        }
        _ => None,
    }
}

fn value(s: &Summary, side: Side, key: &str, ctx: &Week2Context) -> Option<Stat> {
    if matches!(key, "weights_mb_per_token" | "roofline_pct") {
        // Only for a side that measured something.
        s.stats
            .iter()
            .any(|(v, m)| v.side == side && !m.is_empty())
            .then_some(())?;
        return derived(s, side, key, ctx);
    }
    s.get(side, BlasKind::Optimised, key)
}

/// The rows: metric key, label, digits.
pub(super) const ROWS2: &[(&str, &str, usize)] = &[
    ("prefill_128_tok_s", "prefill 128 tok/s", 1),
    ("prefill_512_tok_s", "prefill 512 tok/s", 1),
    ("decode_tok_s", "decode tok/s", 2),
    ("ttft_s", "time to first token, s (lower is better)", 3),
    ("peak_rss_gb", "peak RSS, GB (lower is better)", 2),
    ("peak_memory_gb", "peak MLX memory, GB (lower is better)", 2),
    ("weights_mb_per_token", "weights read per token, MB", 1),
    ("roofline_pct", "decode, % of the memory roofline", 1),
];

pub(super) fn table_cells2(s: &Summary, ctx: &Week2Context) -> Vec<Vec<String>> {
    let llama = ctx
        .gguf
        .as_ref()
        .map(|g| format!("llama.cpp {}", g.kind.name()))
        .unwrap_or_else(|| "llama.cpp".into());
    let mut out = vec![vec![
        "metric".to_string(),
        "learner".into(),
        "reference".into(),
        "mlx-lm (f32)".into(),
        llama,
        "reference / mlx-lm".into(),
        "reference / llama.cpp".into(),
        "learner / reference".into(),
    ]];
    let learner_failure = s.failure(Side::Learner);
    for &(key, label, digits) in ROWS2 {
        let label = if key == "decode_tok_s" {
            format!("{label} ({} new)", ctx.new_tokens)
        } else {
            label.to_string()
        };
        let mut row = vec![label];
        for side in SIDES {
            let cell = match (side, &learner_failure, &ctx.llama_note) {
                (Side::Learner, Some(f), _) => f.clone(),
                (Side::LlamaCpp, _, Some(n)) if ctx.gguf.is_none() => n.chars().take(40).collect(),
                _ => fmt_stat(value(s, side, key, ctx), digits),
            };
            row.push(cell);
        }
        let r = value(s, Side::Reference, key, ctx);
        row.push(fmt_ratio(ratio(r, value(s, Side::MlxLm, key, ctx))));
        row.push(fmt_ratio(ratio(r, value(s, Side::LlamaCpp, key, ctx))));
        row.push(fmt_ratio(ratio(value(s, Side::Learner, key, ctx), r)));
        out.push(row);
    }
    out
}

/// The lines under the table: bandwidth and bits per weight.
pub(super) fn notes2(ctx: &Week2Context) -> Vec<String> {
    let mut lines = Vec::new();
    if let (Some(best), Some(median)) = (best_gb_s(ctx), ctx.bandwidth["median_gb_s"].as_f64()) {
        lines.push(format!(
            "memory read bandwidth (tiny-llm-bench bandwidth, {} threads streaming {} MiB): best {best:.1} GB/s \
             (median {median:.1}); roofline = decode tok/s x weights read per token / best bandwidth",
            ctx.bandwidth["threads"],
            ctx.bandwidth["buffer_bytes"].as_u64().unwrap_or(0) >> 20
        ));
    }
    if let Some(p) = ctx.params {
        let mlx = ctx.mlx_bytes.file_bytes as f64 * 8.0 / p as f64;
        let mut l = format!(
            "bits per weight (file size x 8 / {p} parameters): MLX {}-bit g64 {mlx:.2}",
            ctx.bits
        );
        if let Some(g) = &ctx.gguf {
            l.push_str(&format!(
                ", llama.cpp {} {:.2} ({})",
                g.kind.name(),
                g.bits_per_weight(),
                g.how
            ));
        }
        lines.push(l);
    }
    lines.push(format!(
        "decode: {} new tokens for every side{}",
        ctx.new_tokens,
        if ctx.mlx_lm_full {
            String::new()
        } else {
            format!(
                " but mlx-lm, {} (and prefill 128 only; --mlx-lm-full runs it all)",
                ctx.mlx_lm_new_tokens
            )
        }
    ));
    lines.push(
        "mlx-lm runs its fastest CPU configuration: f32 activations and f32 scales/biases \
         (model.set_dtype(mx.float32)); llama.cpp: llama-bench, prompt tests -p 128,512 and \
         generation -n N at depth 128 (-d 128); its time to first token is prefill 128 + one \
         generated token"
            .to_string(),
    );
    lines
}

/// Prints the table and writes `target/bench/week2-<model>-<b>bit.{json,md,svg}`.
pub(super) fn report_week2(s: &Summary, args: &Week2Args, ctx: &Week2Context) -> Result<()> {
    let cells = table_cells2(s, ctx);
    let notes = notes2(ctx);
    let agree = token_agreement(s, Side::Reference, Side::MlxLm);
    let agree_text = agree
        .map(|(same, n)| {
            format!("greedy tokens, reference vs mlx-lm: the first {same} of {n} agree")
        })
        .unwrap_or_default();
    println!(
        "\n{} on the CPU, week 2 (median (min-max) of {} interleaved runs)\n{}{}\n{agree_text}",
        s.config.name,
        args.reps,
        render_text(&cells),
        notes.join("\n")
    );
    let dir = bench_dir();
    std::fs::create_dir_all(&dir)?;
    let stem = format!("week2-{}", s.config.name);
    let md = format!(
        "{}\nMedian (min-max) of {} interleaved runs; {} new tokens decoded after a {DECODE_PROMPT}-token prompt. \
         {agree_text}.\n\n{}\n",
        render_markdown(&cells),
        args.reps,
        args.new_tokens,
        notes.iter().map(|n| format!("- {n}")).collect::<Vec<_>>().join("\n")
    );
    std::fs::write(dir.join(format!("{stem}.md")), md)?;

    let mut summary = serde_json::Map::new();
    for (v, m) in &s.stats {
        let mut metrics: serde_json::Map<String, Value> = m
            .iter()
            .map(|(k, st)| {
                (
                    k.clone(),
                    json!({ "median": st.median, "min": st.min, "max": st.max, "n": st.n }),
                )
            })
            .collect();
        for key in ["weights_mb_per_token", "roofline_pct"] {
            if let Some(st) = value(s, v.side, key, ctx) {
                metrics.insert(
                    key.into(),
                    json!({ "median": st.median, "min": st.min, "max": st.max, "n": st.n }),
                );
            }
        }
        summary.insert(v.side.name().to_string(), Value::Object(metrics));
    }
    let mut ratios = serde_json::Map::new();
    for &(key, _, _) in ROWS2 {
        let r = value(s, Side::Reference, key, ctx);
        for (other, name) in [(Side::MlxLm, "mlx_lm"), (Side::LlamaCpp, "llama_cpp")] {
            if let Some(x) = ratio(r, value(s, other, key, ctx)) {
                ratios.insert(format!("reference_over_{name}.{key}"), json!(x));
            }
        }
    }
    let runs: Vec<Value> = s
        .reports
        .iter()
        .flat_map(|(v, list)| {
            list.iter()
                .enumerate()
                .map(move |(i, r)| json!({ "variant": v.side.name(), "rep": i + 1, "report": r }))
        })
        .collect();
    let doc = json!({
        "benchmark": "week2",
        "date": utc_now(),
        "machine": machine(),
        "model": s.config.name,
        "model_dir": s.config.dir.display().to_string(),
        "bits": ctx.bits,
        "reps": args.reps,
        "prefill_lengths": PREFILL_LENGTHS,
        "decode_prompt_tokens": DECODE_PROMPT,
        "new_tokens": args.new_tokens,
        "bandwidth": ctx.bandwidth,
        "bytes_read_per_token": SIDES.iter().filter_map(|&side| bytes_read(side, ctx).map(|b| (side.name().to_string(), json!(b)))).collect::<serde_json::Map<_, _>>(),
        "params": ctx.params,
        "mlx_file_bytes": ctx.mlx_bytes.file_bytes,
        "gguf": ctx.gguf.as_ref().map(|g| json!({
            "type": g.kind.name(), "path": g.path.display().to_string(), "file_bytes": g.file_bytes,
            "tensor_bytes": g.tensor_bytes, "params": g.params, "bits_per_weight": g.bits_per_weight(), "how": g.how,
        })),
        "llama_cpp": ctx.llama_note,
        "mlx_lm_config": "f32 activations, f32 scales and biases (model.set_dtype(mx.float32))",
        "peak_memory": "peak_rss_gb: the child's ru_maxrss (wait4); peak_memory_gb: MLX's allocator peak after warm-up",
        "learner": s.failure(Side::Learner),
        "summary": summary,
        "ratios": ratios,
        "notes": notes,
        "token_agreement_reference_mlx_lm": agree.map(|(same, n)| json!({ "same_prefix": same, "of": n })),
        "runs": runs,
    });
    let json_path = dir.join(format!("{stem}.json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)? + "\n")?;
    let svg = dir.join(format!("{stem}.svg"));
    crate::bench_chart::draw(&chart_rows2(&doc), &chart_caption2(&doc), &svg)?;
    println!(
        "wrote {}, {}, {}",
        json_path.display(),
        dir.join(format!("{stem}.md")).display(),
        svg.display()
    );
    Ok(())
}

/// One chart row from a week-2 JSON document: a panel per headline metric.
pub(super) fn chart_rows2(doc: &Value) -> Vec<crate::bench_chart::Row> {
    use crate::bench_chart::{Bar, Panel, Row};
    let panels = [
        ("prefill_128_tok_s", "prefill 128 tok/s"),
        ("prefill_512_tok_s", "prefill 512 tok/s"),
        ("decode_tok_s", "decode tok/s"),
        ("roofline_pct", "decode, % of roofline"),
        ("peak_rss_gb", "peak RSS GB"),
    ];
    let panels = panels
        .iter()
        .map(|(key, title)| Panel {
            title: title.to_string(),
            bars: SIDES
                .iter()
                .filter_map(|side| {
                    let st = &doc["summary"][side.name()][*key];
                    let value = match (
                        st["median"].as_f64(),
                        st["min"].as_f64(),
                        st["max"].as_f64(),
                    ) {
                        (Some(m), Some(lo), Some(hi)) => Some((m, lo, hi)),
                        _ => None,
                    };
                    let note = (*side == Side::Learner)
                        .then(|| doc["learner"].as_str().map(str::to_string))
                        .flatten();
                    (value.is_some() || note.is_some()).then(|| Bar {
                        label: side.name().to_string(),
                        value,
                        note,
                    })
                })
                .collect(),
        })
        .collect();
    vec![Row {
        title: format!("{} (week 2)", doc["model"].as_str().unwrap_or("?")),
        panels,
    }]
}

fn chart_caption2(doc: &Value) -> String {
    let m = &doc["machine"];
    format!(
        "tiny-llm-rs week 2 (KV cache, quantized) vs mlx-lm and llama.cpp on the same weights; median and min-max of {} runs; \
         {} {}, {} cores ({}); {}",
        doc["reps"],
        m["os"].as_str().unwrap_or("?"),
        m["arch"].as_str().unwrap_or("?"),
        m["cores"].as_u64().unwrap_or(0),
        m["cpu"].as_str().unwrap_or("?"),
        doc["date"].as_str().unwrap_or("?"),
    )
}
