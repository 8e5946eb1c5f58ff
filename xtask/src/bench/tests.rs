//! Unit tests of `cargo xtask bench`.

use super::*;

#[test]
fn medians_and_ranges() {
    let s = stat(&[3.0, 1.0, 2.0]).unwrap();
    assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
    assert_eq!(stat(&[1.0, 4.0]).unwrap().median, 2.5);
    assert!(stat(&[]).is_none());
}

#[test]
fn metrics_from_a_report() {
    let r = json!({
        "status": "ok",
        "prefill": [{"tokens": 128, "seconds": 2.0}],
        "decode": {"new_tokens": 5, "decode_seconds": 2.0, "ttft_seconds": 0.5},
        "peak_memory_bytes": 2.0e9,
    });
    let m: BTreeMap<String, f64> = metrics(&r).into_iter().collect();
    assert_eq!(m["prefill_128_tok_s"], 64.0);
    assert_eq!(m["decode_tok_s"], 2.0);
    assert_eq!(m["ttft_s"], 0.5);
    assert_eq!(m["peak_memory_gb"], 2.0);
}

#[test]
fn a_learner_that_is_not_done_reads_not_implemented() {
    let r = json!({"status": "not_implemented", "day": 2});
    assert_eq!(failure(&[r]).as_deref(), Some("not implemented (day 2)"));
    assert_eq!(failure(&[json!({"status": "ok"})]), None);
}

#[test]
fn default_configurations_are_the_issues() {
    let args = Week1Args {
        model: None,
        dtype: None,
        reps: 3,
        new_tokens: 128,
        no_blas_compare: false,
        redraw: false,
        device: None,
        no_build: false,
    };
    assert_eq!(configs(&args).unwrap().len(), 3);
    let one = Week1Args {
        dtype: Some("bf16".into()),
        ..args
    };
    assert_eq!(
        configs(&one).unwrap(),
        vec![(models::DEFAULT_MODEL.to_string(), "bf16".to_string())]
    );
}

#[test]
fn utc_dates_are_civil() {
    let d = utc_now();
    assert!(
        d.len() == 20 && d.ends_with("UTC") && d.starts_with("20"),
        "{d}"
    );
}

#[test]
fn chart_rows_come_from_the_json_documents() {
    let doc = json!({
        "model": "m", "dtype": "f32", "learner": "not implemented (day 3)",
        "summary": {
            "mlx-lm": {"prefill_128_tok_s": {"median": 2.0, "min": 1.0, "max": 3.0}},
            "reference": {"prefill_128_tok_s": {"median": 4.0, "min": 4.0, "max": 4.0}},
        },
    });
    let rows = chart_rows(&[doc]);
    assert_eq!(rows[0].title, "m f32");
    let p = &rows[0].panels[0];
    let labels: Vec<&str> = p.bars.iter().map(|b| b.label.as_str()).collect();
    assert_eq!(labels, ["mlx-lm", "reference", "learner"]);
    assert_eq!(p.bars[0].value, Some((2.0, 1.0, 3.0)));
    assert_eq!(p.bars[2].note.as_deref(), Some("not implemented (day 3)"));
}

#[test]
fn the_script_exists() {
    assert!(script().is_file());
}
