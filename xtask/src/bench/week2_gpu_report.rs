//! The report of `bench week2 --device gpu`: one Markdown section per model
//! (the comparison table, greedy-token agreement, each side's decode step
//! as bandwidth, the matvec kernel's bandwidth per shape and per token).
use super::*;

/// The rows of the comparison: (label, metric, digits).
const ROWS: [(&str, &str, usize); 5] = [
    ("prefill 128 tok/s", "prefill_128_tok_s", 0),
    ("prefill 512 tok/s", "prefill_512_tok_s", 0),
    ("decode tok/s (128 new after 128)", "decode_tok_s", 1),
    ("time to first token, s", "ttft_s", 3),
    ("peak MLX memory, GB", "peak_memory_gb", 2),
];

/// Bandwidth of a decode step: `bytes` of weights per token at `tok_s`
/// tokens per second, in GB/s (1e9 bytes/s).
pub(super) fn step_gbs(bytes: u64, tok_s: f64) -> f64 {
    bytes as f64 * tok_s / 1e9
}

/// The section of one model: `synthetic` says the weights are random (same
/// shapes); `weight_bytes` is what one decode step reads (the checkpoint's
/// tensors as stored, a tied embedding once); `matvec` the report of
/// `tiny-llm-bench matvec` (or `None`).
pub(super) fn week2_gpu_section(
    s: &Summary,
    synthetic: bool,
    weight_bytes: u64,
    matvec: Option<&Value>,
    args: &Week2Args,
) -> String {
    let mut out = format!(
        "## {} ({})\n\n",
        s.config.name,
        if synthetic {
            "synthetic weights, same shapes"
        } else {
            "real weights"
        }
    );
    let mut cells = vec![vec![
        "metric".to_string(),
        "mlx-lm".into(),
        "reference (all,gpu)".into(),
        "reference / mlx-lm".into(),
    ]];
    for (label, metric, digits) in ROWS {
        let m = s.get(Side::MlxLm, BlasKind::Optimised, metric);
        let r = s.get(Side::Reference, BlasKind::Optimised, metric);
        cells.push(vec![
            label.to_string(),
            fmt_stat(m, digits),
            fmt_stat(r, digits),
            fmt_ratio(ratio(r, m)),
        ]);
    }
    let gbs = |side| {
        s.get(side, BlasKind::Optimised, "decode_tok_s")
            .map(|t| step_gbs(weight_bytes, t.median))
    };
    let fmt_gbs = |g: Option<f64>| match g {
        Some(g) => format!("{g:.0} ({:.0}%)", 100.0 * g / args.peak_gbs),
        None => "-".into(),
    };
    let (m, r) = (gbs(Side::MlxLm), gbs(Side::Reference));
    cells.push(vec![
        format!(
            "decode step, GB/s of weights ({:.0} MB/token; % of {:.0})",
            weight_bytes as f64 / 1e6,
            args.peak_gbs
        ),
        fmt_gbs(m),
        fmt_gbs(r),
        match (r, m) {
            (Some(r), Some(m)) if m > 0.0 => format!("{:.2}x", r / m),
            _ => "-".into(),
        },
    ]);
    out.push_str(&render_markdown(&cells));
    for side in [Side::MlxLm, Side::Reference] {
        if let Some(f) = s.failure(side) {
            out.push_str(&format!("\n{}: {f}\n", side.name()));
        }
    }
    if let Some((same, n)) = token_agreement(s, Side::Reference, Side::MlxLm) {
        out.push_str(&format!(
            "\nGreedy tokens: the first {same} of {n} agree{}.\n",
            if synthetic {
                " (random weights: near-ties between logits are the rule, so bf16 rounding \
                 order decides; agreement is not expected, see docs/gpu.md)"
            } else {
                ""
            }
        ));
    }
    if let Some(mv) = matvec {
        out.push_str(&matvec_table(mv));
    }
    out
}

/// The matvec kernel's rows: per shape and per token.
pub(super) fn matvec_table(mv: &Value) -> String {
    if mv["status"] != "ok" {
        return format!(
            "\nDecode matvec kernel: {} ({})\n",
            mv["status"].as_str().unwrap_or("error"),
            mv["message"].as_str().unwrap_or("")
        );
    }
    let peak = mv["peak_gb_per_s"].as_f64().unwrap_or(0.0);
    let mut cells = vec![vec![
        "layer (M = 1)".to_string(),
        "O x I".into(),
        "per token".into(),
        "bytes".into(),
        "us".into(),
        "GB/s".into(),
        format!("of {peak:.0} GB/s"),
    ]];
    let row = |name: String, shape: String, count: String, r: &Value| {
        vec![
            name,
            shape,
            count,
            r["bytes"].as_u64().unwrap_or(0).to_string(),
            format!("{:.2}", r["seconds"].as_f64().unwrap_or(0.0) * 1e6),
            format!("{:.0}", r["gb_per_s"].as_f64().unwrap_or(0.0)),
            format!(
                "{:.0}%",
                100.0 * r["fraction_of_peak"].as_f64().unwrap_or(0.0)
            ),
        ]
    };
    for r in mv["shapes"].as_array().into_iter().flatten() {
        cells.push(row(
            r["name"].as_str().unwrap_or("?").to_string(),
            format!("{} x {}", r["out"], r["in"]),
            r["count_per_token"].to_string(),
            r,
        ));
    }
    cells.push(row(
        "a token's layers".into(),
        "".into(),
        "".into(),
        &mv["token"],
    ));
    format!(
        "\nDecode matvec kernel alone (`qmatmul_gpu::quantized_matmul`, 4-bit g64, bf16 x / \
         scales / biases; bytes = codes + scales + biases + x + out; best of {} batches of {} \
         calls):\n\n{}",
        mv["reps"],
        mv["calls"],
        render_markdown(&cells)
    )
}
