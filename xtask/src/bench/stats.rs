//! Statistics of the repetitions: median, min and max per metric.
use super::*;

/// Median, min and max of some samples.
#[derive(Debug, Clone, Copy)]
pub(super) struct Stat {
    pub(super) median: f64,
    pub(super) min: f64,
    pub(super) max: f64,
    pub(super) n: usize,
}

pub(super) fn stat(samples: &[f64]) -> Option<Stat> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    Some(Stat {
        median,
        min: s[0],
        max: s[n - 1],
        n,
    })
}

/// The metrics of one report, by name.
pub(super) fn metrics(report: &Value) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    if let Some(list) = report["prefill"].as_array() {
        for p in list {
            if let (Some(t), Some(s)) = (p["tokens"].as_u64(), p["seconds"].as_f64()) {
                out.push((format!("prefill_{t}_tok_s"), t as f64 / s.max(1e-12)));
            }
        }
    }
    let d = &report["decode"];
    if let (Some(n), Some(s)) = (d["new_tokens"].as_u64(), d["decode_seconds"].as_f64()) {
        if n > 1 {
            out.push(("decode_tok_s".into(), (n - 1) as f64 / s.max(1e-12)));
        }
    }
    if let Some(ttft) = d["ttft_seconds"].as_f64() {
        out.push(("ttft_s".into(), ttft));
    }
    if let Some(b) = report["peak_memory_bytes"].as_f64() {
        out.push(("peak_memory_gb".into(), b / 1e9));
    }
    if let Some(b) = report["child_max_rss_bytes"].as_f64() {
        out.push(("peak_rss_gb".into(), b / 1e9));
    }
    out
}

/// How a variant ended when it did not measure anything.
pub(super) fn failure(reports: &[Value]) -> Option<String> {
    let r = reports.iter().find(|r| r["status"] != "ok")?;
    Some(match r["status"].as_str().unwrap_or("error") {
        "not_implemented" => match r["day"].as_u64() {
            Some(d) => format!("not implemented (day {d})"),
            None => "not implemented".into(),
        },
        "does_not_compile" => "does not compile".into(),
        "skipped" => format!("skipped: {}", r["message"].as_str().unwrap_or("?")),
        _ => format!("error: {}", r["message"].as_str().unwrap_or("?")),
    })
}

/// Everything measured for one configuration.
pub(super) struct Summary {
    pub(super) config: Config,
    pub(super) variants: Vec<Variant>,
    pub(super) reports: BTreeMap<Variant, Vec<Value>>,
    pub(super) stats: BTreeMap<Variant, BTreeMap<String, Stat>>,
}

impl Summary {
    pub(super) fn new(
        config: Config,
        variants: Vec<Variant>,
        reports: BTreeMap<Variant, Vec<Value>>,
    ) -> Summary {
        let mut stats = BTreeMap::new();
        for (v, list) in &reports {
            let mut by: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for r in list.iter().filter(|r| r["status"] == "ok") {
                for (k, x) in metrics(r) {
                    by.entry(k).or_default().push(x);
                }
            }
            let s: BTreeMap<String, Stat> = by
                .into_iter()
                .filter_map(|(k, xs)| stat(&xs).map(|s| (k, s)))
                .collect();
            stats.insert(*v, s);
        }
        Summary {
            config,
            variants,
            reports,
            stats,
        }
    }

    pub(super) fn get(&self, side: Side, blas: BlasKind, metric: &str) -> Option<Stat> {
        self.stats
            .iter()
            .find(|(v, _)| v.side == side && v.blas == blas)
            .and_then(|(_, m)| m.get(metric).copied())
    }

    pub(super) fn failure(&self, side: Side) -> Option<String> {
        self.reports
            .iter()
            .find(|(v, _)| v.side == side && v.blas == BlasKind::Optimised)
            .and_then(|(_, r)| failure(r))
    }

    /// Tokens generated in the decode runs (from their reports).
    pub(super) fn new_tokens(&self) -> u64 {
        self.reports
            .values()
            .flatten()
            .find_map(|r| r["decode"]["new_tokens"].as_u64())
            .unwrap_or(0)
    }

    pub(super) fn has_blas_compare(&self) -> bool {
        self.variants.iter().any(|v| v.blas == BlasKind::Reference)
    }
}
