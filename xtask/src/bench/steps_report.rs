//! The step-by-step section's output: the steps table (each row's ratio to
//! the previous row and to llama.cpp Q4_0), long-context decode, the prompt
//! cache's second turn, the targets with pass/miss, and
//! `target/bench/week2-steps-<model>.{json,md,svg}`.
use super::steps::*;
use super::*;

/// Median, min and max of `metric` over `key`'s successful reports.
pub(super) fn get(reports: &Reports, key: &str, metric: &str) -> Option<Stat> {
    let xs: Vec<f64> = reports
        .get(key)?
        .iter()
        .filter(|r| r["status"] == "ok")
        .filter_map(|r| {
            variant_metrics(r)
                .into_iter()
                .find(|(k, _)| k == metric)
                .map(|(_, x)| x)
        })
        .collect();
    stat(&xs)
}

/// Why `key` measured nothing (not implemented, skipped, error, not run).
pub(super) fn why_not(reports: &Reports, key: &str) -> String {
    match reports.get(key) {
        None => "not run".into(),
        Some(r) => failure(r).unwrap_or_else(|| "-".into()),
    }
}

/// The kernels `key` ran with, and what it fell back from (`--kernels best`).
pub(super) fn kernels_of(reports: &Reports, key: &str) -> Option<String> {
    let r = reports.get(key)?.iter().find(|r| r["status"] == "ok")?;
    let mut k = r["kernels"].as_str()?.to_string();
    let fell: Vec<&str> = r["kernel_fallback"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !fell.is_empty() {
        k.push_str(&format!(" (fell back: {})", fell.join("; ")));
    }
    Some(k)
}

/// The step rows that measured, with what each is compared with: the
/// previous measured row of the chain (the int8 row: the last measured
/// chained row before it).
pub(super) fn previous(reports: &Reports, i: usize) -> Option<&'static StepRow> {
    STEPS[..i]
        .iter()
        .rev()
        .find(|r| r.chained && get(reports, r.key, "decode_tok_s").is_some())
}

/// The reference's row for the targets: the last exact (chained) week-2
/// step that measured.
pub(super) fn best_exact(reports: &Reports) -> Option<&'static StepRow> {
    STEPS
        .iter()
        .rev()
        .filter(|r| r.chained && r.week == 2)
        .find(|r| get(reports, r.key, "decode_tok_s").is_some())
}

/// One of the targets.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub(super) what: String,
    pub(super) value: Option<f64>,
    /// `(bound, at_least)`: pass when `value >= bound` (or `<=`).
    pub(super) bound: f64,
    pub(super) at_least: bool,
    /// Why there is no value.
    pub(super) missing: String,
}

impl Target {
    pub(super) fn verdict(&self) -> &'static str {
        match self.value {
            None => "not measured",
            Some(v)
                if (self.at_least && v >= self.bound) || (!self.at_least && v <= self.bound) =>
            {
                "pass"
            }
            Some(_) => "miss",
        }
    }
    fn cells(&self) -> Vec<String> {
        vec![
            self.what.clone(),
            self.value
                .map(|v| format!("{v:.2}x"))
                .unwrap_or_else(|| self.missing.clone()),
            format!(
                "{} {:.1}x",
                if self.at_least { ">=" } else { "<=" },
                self.bound
            ),
            self.verdict().into(),
        ]
    }
}

fn median_ratio(a: Option<Stat>, b: Option<Stat>) -> Option<f64> {
    ratio(a, b)
}

/// The four targets.
pub(super) fn targets(reports: &Reports, args: &Week2Args) -> Vec<Target> {
    let best = best_exact(reports);
    let name = best.map(|r| r.key).unwrap_or("-");
    let llama = |m: &str| get(reports, LLAMA, m);
    let no_llama = why_not(reports, LLAMA);
    let missing = |ours: Option<Stat>, theirs: Option<Stat>, theirs_why: String| {
        if ours.is_none() {
            "reference not measured".to_string()
        } else if theirs.is_none() {
            format!("llama.cpp: {theirs_why}")
        } else {
            "-".into()
        }
    };
    let pair = |metric: &str| {
        let ours = best.and_then(|r| get(reports, r.key, metric));
        let theirs = llama(metric);
        (
            median_ratio(ours, theirs),
            missing(ours, theirs, no_llama.clone()),
        )
    };
    let (d128, d128_why) = pair("decode_tok_s");
    let (p512, p512_why) = pair(&format!("prefill_{STEP_PREFILL}_tok_s"));
    let long_ours = get(reports, LONG_REF, "decode_tok_s");
    let long_theirs = get(reports, LONG_LLAMA, "decode_tok_s");
    let t1 = get(reports, TURNS, "ttft1_s");
    let t2 = get(reports, TURNS, "ttft2_s");
    vec![
        Target {
            what: format!("decode at {DECODE_PROMPT} tokens of context, reference ({name}) / llama.cpp Q4_0"),
            value: d128,
            bound: 1.0,
            at_least: true,
            missing: d128_why,
        },
        Target {
            what: format!(
                "decode at {} tokens of context, reference / llama.cpp Q4_0",
                args.long_context
            ),
            value: median_ratio(long_ours, long_theirs),
            bound: 1.0,
            at_least: true,
            missing: missing(long_ours, long_theirs, why_not(reports, LONG_LLAMA)),
        },
        Target {
            what: format!("prefill {STEP_PREFILL}, reference ({name}) / llama.cpp Q4_0"),
            value: p512,
            bound: 1.0,
            at_least: true,
            missing: p512_why,
        },
        Target {
            what: format!(
                "time to first token, second turn with the prompt cache / first turn ({}-token history)",
                args.history
            ),
            value: median_ratio(t2, t1),
            bound: 0.2,
            at_least: false,
            missing: why_not(reports, TURNS),
        },
    ]
}

/// The steps table (header first).
pub(super) fn steps_cells(reports: &Reports, args: &Week2Args) -> Vec<Vec<String>> {
    let prefill = format!("prefill_{STEP_PREFILL}_tok_s");
    let mut out = vec![vec![
        "step".to_string(),
        "kernels".into(),
        format!("decode tok/s at {DECODE_PROMPT} ctx"),
        "x previous".into(),
        "x llama.cpp".into(),
        format!("prefill {STEP_PREFILL} tok/s"),
        "x previous".into(),
        "x llama.cpp".into(),
    ]];
    let llama_d = get(reports, LLAMA, "decode_tok_s");
    let llama_p = get(reports, LLAMA, &prefill);
    for (i, row) in STEPS.iter().enumerate() {
        let d = get(reports, row.key, "decode_tok_s");
        let p = get(reports, row.key, &prefill);
        let label = if row.week == 1 {
            format!("{} ({} new)", row.label, args.week1_new_tokens)
        } else {
            row.label.to_string()
        };
        if d.is_none() && p.is_none() {
            let mut cells = vec![label, row.kernels.into(), why_not(reports, row.key)];
            cells.resize(8, "-".into());
            out.push(cells);
            continue;
        }
        let prev = previous(reports, i);
        let prev_d = prev.and_then(|r| get(reports, r.key, "decode_tok_s"));
        let prev_p = prev.and_then(|r| get(reports, r.key, &prefill));
        out.push(vec![
            label,
            kernels_of(reports, row.key).unwrap_or_else(|| "-".into()),
            fmt_stat(d, 2),
            fmt_ratio(ratio(d, prev_d)),
            fmt_ratio(ratio(d, llama_d)),
            fmt_stat(p, 1),
            fmt_ratio(ratio(p, prev_p)),
            fmt_ratio(ratio(p, llama_p)),
        ]);
    }
    let mut llama = vec![
        "llama.cpp Q4_0 (llama-bench)".to_string(),
        "-".into(),
        fmt_stat(llama_d, 2),
        "-".into(),
        "1.00x".into(),
        fmt_stat(llama_p, 1),
        "-".into(),
        "1.00x".into(),
    ];
    if llama_d.is_none() && llama_p.is_none() {
        llama = vec![llama[0].clone(), "-".into(), why_not(reports, LLAMA)];
        llama.resize(8, "-".into());
    }
    out.push(llama);
    out
}

/// The long-context table (header first).
pub(super) fn long_cells(reports: &Reports, args: &Week2Args) -> Vec<Vec<String>> {
    let ours = get(reports, LONG_REF, "decode_tok_s");
    let row = |name: String, key: &str| {
        let s = get(reports, key, "decode_tok_s");
        vec![
            name,
            if s.is_some() {
                fmt_stat(s, 2)
            } else {
                why_not(reports, key)
            },
            fmt_ratio(ratio(ours, s)),
        ]
    };
    vec![
        vec![
            format!("decode with {} cached tokens", args.long_context),
            "tok/s".into(),
            "reference / this".into(),
        ],
        row(
            format!(
                "reference, kernels {}",
                kernels_of(reports, LONG_REF).unwrap_or_else(|| "-".into())
            ),
            LONG_REF,
        ),
        row("llama.cpp Q4_0 (llama-bench -d)".into(), LONG_LLAMA),
        row(
            "mlx-lm 4-bit g64, f32 (random cached keys/values)".into(),
            LONG_MLX,
        ),
    ]
}

/// The prompt cache's line.
pub(super) fn turns_line(reports: &Reports, args: &Week2Args) -> String {
    let (t1, t2) = (
        get(reports, TURNS, "ttft1_s"),
        get(reports, TURNS, "ttft2_s"),
    );
    let Some(r) = reports
        .get(TURNS)
        .and_then(|r| r.iter().find(|r| r["status"] == "ok"))
    else {
        return format!("prompt cache: {}", why_not(reports, TURNS));
    };
    format!(
        "prompt cache (reference, kernels {}): first turn {} tokens into an empty cache: time to first token {} s; \
         second turn {} tokens ({} from the cache, {} prefilled): {} s; second / first {}",
        kernels_of(reports, TURNS).unwrap_or_default(),
        args.history,
        fmt_stat(t1, 3),
        r["second_turn"]["prompt_tokens"],
        r["second_turn"]["reused_tokens"],
        r["second_turn"]["prefilled_tokens"],
        fmt_stat(t2, 3),
        fmt_ratio(ratio(t2, t1)),
    )
}

/// The system's load averages (`/proc/loadavg`: 1, 5, 15 minutes).
pub(super) fn load_average() -> Option<String> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    Some(s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
}

/// Prints the section and writes its files.
pub(super) fn report_steps(setup: &StepsSetup, reports: &Reports, args: &Week2Args) -> Result<()> {
    let steps = steps_cells(reports, args);
    let long = long_cells(reports, args);
    let turns = turns_line(reports, args);
    let targets = targets(reports, args);
    let mut target_cells = vec![vec![
        "target (issue 11)".to_string(),
        "measured".into(),
        "target".into(),
        "".into(),
    ]];
    target_cells.extend(targets.iter().map(Target::cells));
    let load = load_average().unwrap_or_else(|| "?".into());
    let mut notes = vec![
        format!(
            "{} on the CPU, f32 activations; median (min-max) of {} interleaved runs; decode: {} new tokens after a \
             {DECODE_PROMPT}-token prompt ({} on the week-1 path); load average at the end of the run: {load}",
            setup.dense.name, args.reps, args.new_tokens, args.week1_new_tokens
        ),
        "x previous: over the row above that measured (the int8 row: over the last exact row); x llama.cpp: over \
         llama.cpp Q4_0 of the same weights (llama-bench, measured in this section)"
            .to_string(),
        format!(
            "long context: the reference prefills its {} tokens (passes of 512, --kernels best); llama-bench \
             -d {} likewise; mlx-lm decodes over a cache of random keys/values ({} new tokens; prefilling {} tokens \
             through its quantized CPU path would take hours here)",
            args.long_context, args.long_context, args.mlx_lm_new_tokens.min(args.long_new_tokens), args.long_context
        ),
    ];
    if let Some(n) = &setup.llama_note {
        notes.push(format!("llama.cpp: {n}"));
    }
    println!(
        "\nstep by step, {} (week 2)\n{}\n{}\n{turns}\n\n{}\n{}",
        setup.dense.name,
        render_text(&steps),
        render_text(&long),
        render_text(&target_cells),
        notes.join("\n")
    );

    let dir = bench_dir();
    std::fs::create_dir_all(&dir)?;
    let stem = format!("week2-steps-{}", setup.dense.name);
    let md = format!(
        "{}\n{}\n{turns}\n\n{}\n{}\n",
        render_markdown(&steps),
        render_markdown(&long),
        render_markdown(&target_cells),
        notes
            .iter()
            .map(|n| format!("- {n}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    std::fs::write(dir.join(format!("{stem}.md")), md)?;
    let doc = steps_json(setup, reports, args, &targets, &notes, &load);
    let json_path = dir.join(format!("{stem}.json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)? + "\n")?;
    let svg = dir.join(format!("{stem}.svg"));
    crate::bench_chart::draw(&steps_chart(reports), &steps_caption(&doc), &svg)?;
    println!(
        "wrote {}, {}, {}",
        json_path.display(),
        dir.join(format!("{stem}.md")).display(),
        svg.display()
    );
    Ok(())
}
