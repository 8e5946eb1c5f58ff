//! The step-by-step section's files: the JSON document (every row's
//! statistics and ratios, the targets, the raw reports) and the chart.
use super::steps::*;
use super::*;

fn stat_json(s: Option<Stat>) -> Value {
    s.map(|s| json!({ "median": s.median, "min": s.min, "max": s.max, "n": s.n }))
        .unwrap_or(Value::Null)
}

/// The section as JSON: every row's statistics and ratios, the targets, and
/// every raw report.
pub(super) fn steps_json(
    setup: &StepsSetup,
    reports: &Reports,
    args: &Week2Args,
    targets: &[Target],
    notes: &[String],
    load: &str,
) -> Value {
    let prefill = format!("prefill_{STEP_PREFILL}_tok_s");
    let llama_d = get(reports, LLAMA, "decode_tok_s");
    let llama_p = get(reports, LLAMA, &prefill);
    let steps: Vec<Value> = STEPS
        .iter()
        .enumerate()
        .map(|(i, row)| {
            let d = get(reports, row.key, "decode_tok_s");
            let p = get(reports, row.key, &prefill);
            let prev = previous(reports, i);
            json!({
                "key": row.key,
                "label": row.label,
                "week": row.week,
                "weights": format!("{:?}", row.weights),
                "kernels": kernels_of(reports, row.key),
                "decode_tok_s": stat_json(d),
                "prefill_512_tok_s": stat_json(p),
                "previous": prev.map(|r| r.key),
                "decode_over_previous": ratio(d, prev.and_then(|r| get(reports, r.key, "decode_tok_s"))),
                "prefill_over_previous": ratio(p, prev.and_then(|r| get(reports, r.key, &prefill))),
                "decode_over_llama_cpp": ratio(d, llama_d),
                "prefill_over_llama_cpp": ratio(p, llama_p),
                "not_measured": if d.is_none() { Some(why_not(reports, row.key)) } else { None },
            })
        })
        .collect();
    let runs: Vec<Value> = reports
        .iter()
        .flat_map(|(k, list)| {
            list.iter()
                .enumerate()
                .map(move |(i, r)| json!({ "variant": k, "rep": i + 1, "report": r }))
        })
        .collect();
    json!({
        "benchmark": "week2-steps",
        "date": utc_now(),
        "machine": machine(),
        "load_average_at_end": load,
        "model": setup.dense.name,
        "dense_dir": setup.dense.dir.display().to_string(),
        "q4_dir": setup.q4_dir.display().to_string(),
        "reps": args.reps,
        "decode_prompt_tokens": DECODE_PROMPT,
        "new_tokens": args.new_tokens,
        "week1_new_tokens": args.week1_new_tokens,
        "prefill_tokens": STEP_PREFILL,
        "steps": steps,
        "llama_cpp": { "decode_tok_s": stat_json(llama_d), "prefill_512_tok_s": stat_json(llama_p), "note": setup.llama_note },
        "long_context": {
            "tokens": args.long_context,
            "new_tokens": args.long_new_tokens,
            "reference": stat_json(get(reports, LONG_REF, "decode_tok_s")),
            "reference_kernels": kernels_of(reports, LONG_REF),
            "reference_prefill_seconds": stat_json(get(reports, LONG_REF, "ttft_s")),
            "llama_cpp": stat_json(get(reports, LONG_LLAMA, "decode_tok_s")),
            "mlx_lm_synthetic_cache": stat_json(get(reports, LONG_MLX, "decode_tok_s")),
        },
        "prompt_cache": {
            "history_tokens": args.history,
            "first_turn_ttft_s": stat_json(get(reports, TURNS, "ttft1_s")),
            "second_turn_ttft_s": stat_json(get(reports, TURNS, "ttft2_s")),
            "kernels": kernels_of(reports, TURNS),
        },
        "targets": targets.iter().map(|t| json!({
            "what": t.what, "value": t.value, "bound": t.bound,
            "at_least": t.at_least, "verdict": t.verdict(),
            "missing": if t.value.is_none() { Some(&t.missing) } else { None },
        })).collect::<Vec<_>>(),
        "notes": notes,
        "runs": runs,
    })
}

/// The chart: decode and prefill per step (and llama.cpp), long-context
/// decode per engine, and the two turns' times to first token.
pub(super) fn steps_chart(reports: &Reports) -> Vec<crate::bench_chart::Row> {
    use crate::bench_chart::{Bar, Panel, Row};
    let bar = |label: &str, key: &str, metric: &str| {
        let s = get(reports, key, metric);
        Bar {
            label: label.to_string(),
            value: s.map(|s| (s.median, s.min, s.max)),
            note: s.is_none().then(|| why_not(reports, key)),
        }
    };
    let prefill = format!("prefill_{STEP_PREFILL}_tok_s");
    let step_bars = |metric: &str| {
        let mut bars: Vec<Bar> = STEPS
            .iter()
            .map(|r| bar(crate::bench_chart::step_label(r.key), r.key, metric))
            .collect();
        bars.push(bar("llama.cpp", LLAMA, metric));
        bars
    };
    vec![Row {
        title: "week 2 step by step (reference)".into(),
        panels: vec![
            Panel {
                title: format!("decode tok/s at {DECODE_PROMPT}"),
                bars: step_bars("decode_tok_s"),
            },
            Panel {
                title: format!("prefill {STEP_PREFILL} tok/s"),
                bars: step_bars(&prefill),
            },
            Panel {
                title: "decode tok/s, long context".into(),
                bars: vec![
                    bar("reference", LONG_REF, "decode_tok_s"),
                    bar("llama.cpp", LONG_LLAMA, "decode_tok_s"),
                    bar("mlx-lm", LONG_MLX, "decode_tok_s"),
                ],
            },
            Panel {
                title: "time to first token, s".into(),
                bars: vec![
                    bar("first turn", TURNS, "ttft1_s"),
                    bar("second turn", TURNS, "ttft2_s"),
                ],
            },
        ],
    }]
}

pub(super) fn steps_caption(doc: &Value) -> String {
    let m = &doc["machine"];
    format!(
        "tiny-llm-rs week 2, step by step ({}), vs llama.cpp Q4_0 and mlx-lm; median and min-max of {} runs; \
         {} {}, {} cores ({}), load {}; {}",
        doc["model"].as_str().unwrap_or("?"),
        doc["reps"],
        m["os"].as_str().unwrap_or("?"),
        m["arch"].as_str().unwrap_or("?"),
        m["cores"].as_u64().unwrap_or(0),
        m["cpu"].as_str().unwrap_or("?"),
        doc["load_average_at_end"].as_str().unwrap_or("?"),
        doc["date"].as_str().unwrap_or("?"),
    )
}
