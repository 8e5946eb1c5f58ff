//! The comparison table (text for the terminal, Markdown for the files).
use super::*;

/// The table's rows: metric key, label, BLAS, digits.
pub(super) fn rows(s: &Summary) -> Vec<(&'static str, &'static str, BlasKind, usize)> {
    let mut r = vec![
        (
            "prefill_128_tok_s",
            "prefill 128 tok/s",
            BlasKind::Optimised,
            1,
        ),
        (
            "prefill_512_tok_s",
            "prefill 512 tok/s",
            BlasKind::Optimised,
            1,
        ),
        ("decode_tok_s", "decode tok/s", BlasKind::Optimised, 2),
        (
            "ttft_s",
            "time to first token, s (lower is better)",
            BlasKind::Optimised,
            2,
        ),
        (
            "peak_memory_gb",
            "peak MLX memory, GB (lower is better)",
            BlasKind::Optimised,
            2,
        ),
    ];
    if s.has_blas_compare() {
        r.push((
            "prefill_128_tok_s",
            "prefill 128 tok/s, reference BLAS",
            BlasKind::Reference,
            1,
        ));
        r.push((
            "prefill_512_tok_s",
            "prefill 512 tok/s, reference BLAS",
            BlasKind::Reference,
            1,
        ));
    }
    r
}

pub(super) fn fmt_stat(s: Option<Stat>, digits: usize) -> String {
    match s {
        Some(s) if s.n > 1 => format!("{:.d$} ({:.d$}-{:.d$})", s.median, s.min, s.max, d = digits),
        Some(s) => format!("{:.d$}", s.median, d = digits),
        None => "-".into(),
    }
}

pub(super) fn ratio(a: Option<Stat>, b: Option<Stat>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b.median > 0.0 => Some(a.median / b.median),
        _ => None,
    }
}

pub(super) fn fmt_ratio(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.2}x")).unwrap_or_else(|| "-".into())
}

/// The table as rows of cells (header first).
pub(super) fn table_cells(s: &Summary) -> Vec<Vec<String>> {
    let mut out = vec![vec![
        "metric".to_string(),
        "mlx-lm".into(),
        "reference".into(),
        "learner".into(),
        "reference / mlx-lm".into(),
        "learner / reference".into(),
    ]];
    let learner_failure = s.failure(Side::Learner);
    for (key, label, blas, digits) in rows(s) {
        let m = s.get(Side::MlxLm, blas, key);
        let r = s.get(Side::Reference, blas, key);
        let l = s.get(Side::Learner, blas, key);
        let learner_cell = match (blas, &learner_failure) {
            (BlasKind::Reference, _) => "-".to_string(),
            (_, Some(f)) => f.clone(),
            _ => fmt_stat(l, digits),
        };
        let label = if key == "decode_tok_s" {
            format!("{label} ({} new)", s.new_tokens())
        } else {
            label.to_string()
        };
        out.push(vec![
            label,
            fmt_stat(m, digits),
            fmt_stat(r, digits),
            learner_cell,
            fmt_ratio(ratio(r, m)),
            if blas == BlasKind::Reference {
                "-".into()
            } else {
                fmt_ratio(ratio(l, r))
            },
        ]);
    }
    if s.has_blas_compare() {
        for len in PREFILL_LENGTHS {
            let key = format!("prefill_{len}_tok_s");
            let gain = |side| {
                fmt_ratio(ratio(
                    s.get(side, BlasKind::Optimised, &key),
                    s.get(side, BlasKind::Reference, &key),
                ))
            };
            out.push(vec![
                format!("OpenBLAS / reference BLAS, prefill {len}"),
                gain(Side::MlxLm),
                gain(Side::Reference),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
    }
    out
}

pub(super) fn render_text(cells: &[Vec<String>]) -> String {
    let cols = cells[0].len();
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in cells.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c == 0 {
                    format!("{cell:<w$}", w = widths[c])
                } else {
                    format!("{cell:>w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (cols - 1)));
            out.push('\n');
        }
    }
    out
}

pub(super) fn render_markdown(cells: &[Vec<String>]) -> String {
    let mut out = String::new();
    for (i, row) in cells.iter().enumerate() {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
        if i == 0 {
            let seps: Vec<&str> = (0..row.len())
                .map(|c| if c == 0 { "---" } else { "---:" })
                .collect();
            out.push_str(&format!("| {} |\n", seps.join(" | ")));
        }
    }
    out
}

/// Whether the greedy tokens of two sides agree (a sanity check of the
/// comparison: same weights, same dtype, same ids).
pub(super) fn token_agreement(s: &Summary, a: Side, b: Side) -> Option<(usize, usize)> {
    let first = |side: Side| -> Option<Vec<u64>> {
        s.reports
            .iter()
            .find(|(v, _)| v.side == side && v.decode)
            .and_then(|(_, list)| list.iter().find(|r| r["status"] == "ok"))
            .and_then(|r| r["decode"]["tokens"].as_array().cloned())
            .map(|t| t.iter().filter_map(Value::as_u64).collect())
    };
    let (x, y) = (first(a)?, first(b)?);
    let same = x.iter().zip(&y).take_while(|(p, q)| p == q).count();
    Some((same, x.len().min(y.len())))
}
