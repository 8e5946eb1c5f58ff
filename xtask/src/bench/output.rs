//! Output files: the JSON, Markdown and SVG of each configuration, the
//! combined chart, and the machine description.
use super::*;

pub(super) fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let avx512 = cpuinfo
        .lines()
        .any(|l| l.starts_with("flags") && l.contains("avx512f"));
    json!({
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "cpu": model,
        "avx512": avx512,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "openblas_coretype": std::env::var("OPENBLAS_CORETYPE").ok(),
    })
}

/// Seconds since the epoch as a UTC date and time.
pub(super) fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// Draws `week1.svg` (every configuration measured so far) and one chart per
/// configuration, from the JSON files.
pub(super) fn redraw() -> Result<PathBuf> {
    let docs = measured_docs();
    for doc in &docs {
        let stem = format!(
            "week1-{}-{}",
            doc["model"].as_str().unwrap_or("model"),
            doc["dtype"].as_str().unwrap_or("dtype")
        );
        let one = std::slice::from_ref(doc);
        crate::bench_chart::draw(
            &chart_rows(one),
            &chart_caption(one),
            &bench_dir().join(format!("{stem}.svg")),
        )?;
    }
    let path = bench_dir().join("week1.svg");
    crate::bench_chart::draw(&chart_rows(&docs), &chart_caption(&docs), &path)?;
    Ok(path)
}

/// Prints the table and writes the JSON, Markdown and SVG of one configuration.
pub(super) fn report_config(s: &Summary, args: &Week1Args, blas: Option<&BlasLibs>) -> Result<()> {
    let cells = table_cells(s);
    let agree = token_agreement(s, Side::Reference, Side::MlxLm);
    let learner_agree = token_agreement(s, Side::Learner, Side::Reference);
    let mut agree_text = agree
        .map(|(same, n)| {
            format!("greedy tokens, reference vs mlx-lm: the first {same} of {n} agree")
        })
        .unwrap_or_default();
    if let Some((same, n)) = learner_agree {
        agree_text.push_str(&format!("; learner vs reference: the first {same} of {n}"));
    }
    println!(
        "\n{} (median (min-max) of {} interleaved runs; peak memory: MLX allocator peak, weights included)\n{}{agree_text}",
        s.config.label(),
        args.reps,
        render_text(&cells)
    );
    let dir = bench_dir();
    std::fs::create_dir_all(&dir)?;
    let stem = s.config.stem();
    let md = format!(
        "{}\n\nMedian (min-max) of {} interleaved runs; {} new tokens decoded after a {DECODE_PROMPT}-token prompt; \
         peak memory is MLX's allocator peak (weights included). {agree_text}.\n",
        render_markdown(&cells),
        args.reps,
        args.new_tokens
    );
    std::fs::write(dir.join(format!("{stem}.md")), md)?;

    let mut summary = serde_json::Map::new();
    for (v, m) in &s.stats {
        let metrics: serde_json::Map<String, Value> = m
            .iter()
            .map(|(k, st)| {
                (
                    k.clone(),
                    json!({ "median": st.median, "min": st.min, "max": st.max, "n": st.n }),
                )
            })
            .collect();
        summary.insert(v.key(), Value::Object(metrics));
    }
    let mut ratios = serde_json::Map::new();
    for (key, _, blas_kind, _) in rows(s) {
        let suffix = if blas_kind == BlasKind::Reference {
            "_reference_blas"
        } else {
            ""
        };
        if let Some(r) = ratio(
            s.get(Side::Reference, blas_kind, key),
            s.get(Side::MlxLm, blas_kind, key),
        ) {
            ratios.insert(format!("reference_over_mlx_lm.{key}{suffix}"), json!(r));
        }
        if let Some(r) = ratio(
            s.get(Side::Learner, blas_kind, key),
            s.get(Side::Reference, blas_kind, key),
        ) {
            ratios.insert(format!("learner_over_reference.{key}{suffix}"), json!(r));
        }
    }
    let runs: Vec<Value> = s
        .reports
        .iter()
        .flat_map(|(v, list)| {
            list.iter()
                .enumerate()
                .map(move |(i, r)| json!({ "variant": v.key(), "rep": i + 1, "report": r }))
        })
        .collect();
    let doc = json!({
        "benchmark": "week1",
        "date": utc_now(),
        "machine": machine(),
        "model": s.config.name,
        "model_dir": s.config.dir.display().to_string(),
        "dtype": s.config.dtype,
        "reps": args.reps,
        "prefill_lengths": PREFILL_LENGTHS,
        "decode_prompt_tokens": DECODE_PROMPT,
        "new_tokens": args.new_tokens,
        "blas": {
            "optimised": blas.map(|b| b.optimised.display().to_string()),
            "reference": blas.and_then(|b| b.reference.as_ref()).map(|p| p.display().to_string()),
        },
        "peak_memory": "mlx allocator peak (mlx_rs::memory::peak_memory / mx.get_peak_memory) after a 16-token warm-up and a reset; weights included",
        "learner": s.failure(Side::Learner),
        "summary": summary,
        "ratios": ratios,
        "token_agreement_reference_mlx_lm": agree.map(|(same, n)| json!({ "same_prefix": same, "of": n })),
        "token_agreement_learner_reference": learner_agree.map(|(same, n)| json!({ "same_prefix": same, "of": n })),
        "runs": runs,
    });
    let json_path = dir.join(format!("{stem}.json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)? + "\n")?;
    let svg = dir.join(format!("{stem}.svg"));
    crate::bench_chart::draw(
        &chart_rows(std::slice::from_ref(&doc)),
        &chart_caption(std::slice::from_ref(&doc)),
        &svg,
    )?;
    println!(
        "wrote {}, {}, {}",
        json_path.display(),
        dir.join(format!("{stem}.md")).display(),
        svg.display()
    );
    Ok(())
}

/// The chart's data from the JSON documents of `report_config`: one row
/// per configuration, one panel per metric, one bar per variant.
pub(super) fn chart_rows(docs: &[Value]) -> Vec<crate::bench_chart::Row> {
    use crate::bench_chart::{Bar, Panel, Row};
    let panels = [
        ("prefill_128_tok_s", "prefill 128 tok/s"),
        ("prefill_512_tok_s", "prefill 512 tok/s"),
        ("decode_tok_s", "decode tok/s"),
        ("peak_memory_gb", "peak MLX memory GB"),
    ];
    let variants = [
        ("mlx-lm", "mlx-lm"),
        ("reference", "reference"),
        ("learner", "learner"),
        ("mlx-lm (reference BLAS)", "mlx-lm (ref. BLAS)"),
        ("reference (reference BLAS)", "reference (ref. BLAS)"),
    ];
    docs.iter()
        .map(|doc| {
            let learner_failure = doc["learner"].as_str().map(str::to_string);
            let panels = panels
                .iter()
                .map(|(key, title)| {
                    let bars = variants
                        .iter()
                        .filter_map(|(variant, label)| {
                            let st = &doc["summary"][*variant][*key];
                            let value = match (
                                st["median"].as_f64(),
                                st["min"].as_f64(),
                                st["max"].as_f64(),
                            ) {
                                (Some(m), Some(lo), Some(hi)) => Some((m, lo, hi)),
                                _ => None,
                            };
                            // Memory is compared on the full runs only.
                            if *key == "peak_memory_gb" && variant.contains("BLAS") {
                                return None;
                            }
                            let note = (*variant == "learner")
                                .then(|| learner_failure.clone())
                                .flatten();
                            // A variant without this metric and nothing to say is left out.
                            (value.is_some() || note.is_some()).then(|| Bar {
                                label: label.to_string(),
                                value,
                                note,
                            })
                        })
                        .collect();
                    let title = match (*key, doc["new_tokens"].as_u64()) {
                        ("decode_tok_s", Some(n)) => format!("{title} ({n} new)"),
                        _ => title.to_string(),
                    };
                    Panel { title, bars }
                })
                .collect();
            Row {
                title: format!(
                    "{} {}",
                    doc["model"].as_str().unwrap_or("?"),
                    doc["dtype"].as_str().unwrap_or("?")
                ),
                panels,
            }
        })
        .collect()
}

/// The chart's caption: what was measured, on what, when.
pub(super) fn chart_caption(docs: &[Value]) -> String {
    let Some(first) = docs.first() else {
        return String::new();
    };
    let m = &first["machine"];
    let reps: Vec<String> = docs
        .iter()
        .filter_map(|d| d["reps"].as_u64())
        .map(|r| r.to_string())
        .collect();
    let mut reps_text = reps.clone();
    reps_text.dedup();
    format!(
        "tiny-llm-rs week 1 (no KV cache) vs mlx-lm, same weights and token ids; median and min-max of {} runs; \
         {} {}, {} cores ({}), MLX CPU backend, OpenBLAS (light bars: the wheel's reference BLAS); {}",
        reps_text.join("/"),
        m["os"].as_str().unwrap_or("?"),
        m["arch"].as_str().unwrap_or("?"),
        m["cores"].as_u64().unwrap_or(0),
        m["cpu"].as_str().unwrap_or("?"),
        first["date"].as_str().unwrap_or("?"),
    )
}

/// Every `target/bench/week1-*.json`, the configurations first.
pub(super) fn measured_docs() -> Vec<Value> {
    let dir = bench_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let n = p.file_name().unwrap_or_default().to_string_lossy();
                    n.starts_with("week1-") && n.ends_with(".json")
                })
                .collect()
        })
        .unwrap_or_default();
    let rank = |p: &PathBuf| {
        let n = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let i = DEFAULT_CONFIGS
            .iter()
            .position(|(m, d)| n == format!("week1-{m}-{d}.json"))
            .unwrap_or(DEFAULT_CONFIGS.len());
        (i, n)
    };
    files.sort_by_key(rank);
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|t| serde_json::from_str(&t).ok())
        .collect()
}
