//! `bench week2 --device gpu`: the synthetic prompt, the shapes, and the
//! report's arithmetic on hand-made reports.
use super::tests2::week2_args;
use super::*;

#[test]
fn synthetic_ids_are_fixed_and_in_the_vocabulary() {
    let a = synthetic_ids(512);
    assert_eq!(a.len(), 512);
    assert_eq!(a, synthetic_ids(512));
    assert!(a.iter().all(|&t| t < 151_643));
    // Not a constant or short cycle: most ids differ.
    let mut u = a.clone();
    u.sort();
    u.dedup();
    assert!(u.len() > 500, "{} distinct", u.len());
}

#[test]
fn model_names_map_to_matvec_shapes() {
    assert_eq!(
        matvec_shape("qwen2.5-1.5b-4bit (synthetic)"),
        Some("qwen2.5-1.5b")
    );
    assert_eq!(
        matvec_shape("qwen2.5-coder-0.5b-4bit"),
        Some("qwen2.5-0.5b")
    );
    assert_eq!(matvec_shape("smollm2-135m-4bit"), None);
}

fn report(prefill: [(u64, f64); 2], new_tokens: u64, decode_s: f64, tokens: &[u64]) -> Value {
    json!({
        "status": "ok",
        "prefill": [
            { "tokens": prefill[0].0, "seconds": prefill[0].1 },
            { "tokens": prefill[1].0, "seconds": prefill[1].1 },
        ],
        "decode": { "new_tokens": new_tokens, "decode_seconds": decode_s, "ttft_seconds": 0.02, "tokens": tokens },
        "peak_memory_bytes": 1.5e9,
    })
}

#[test]
fn section_has_ratios_bandwidth_and_agreement() {
    let v = |side| Variant {
        side,
        blas: BlasKind::Optimised,
        decode: true,
    };
    let mut reports = BTreeMap::new();
    // mlx-lm: 128 tokens in 0.1 s = 1280 tok/s; 512 in 0.2 s = 2560;
    // decode 127 tokens in 0.635 s = 200 tok/s.
    reports.insert(
        v(Side::MlxLm),
        vec![report([(128, 0.1), (512, 0.2)], 128, 0.635, &[1, 2, 3, 4])],
    );
    // reference: 2560, 5120 tok/s; decode 127 in 0.508 s = 250 tok/s.
    reports.insert(
        v(Side::Reference),
        vec![report([(128, 0.05), (512, 0.1)], 128, 0.508, &[1, 2, 9, 4])],
    );
    let config = Config {
        name: "qwen2.5-0.5b-4bit (synthetic)".into(),
        dir: PathBuf::from("/x"),
        dtype: "bf16".into(),
        device: crate::device::Device::Gpu,
    };
    let s = Summary::new(config, vec![v(Side::MlxLm), v(Side::Reference)], reports);
    let mut args = week2_args(Some("4"));
    args.peak_gbs = 4800.0;
    // 300 MB a token: 200 tok/s = 60 GB/s (1%), 250 tok/s = 75 GB/s (2%).
    let text = week2_gpu_section(&s, true, 300_000_000, None, &args);
    assert!(text.contains("synthetic weights, same shapes"), "{text}");
    assert!(
        text.contains("| prefill 128 tok/s | 1280 | 2560 | 2.00x |"),
        "{text}"
    );
    assert!(
        text.contains("| prefill 512 tok/s | 2560 | 5120 | 2.00x |"),
        "{text}"
    );
    assert!(text.contains("| 200.0 | 250.0 | 1.25x |"), "{text}");
    assert!(text.contains("| 60 (1%) | 75 (2%) | 1.25x |"), "{text}");
    assert!(text.contains("the first 2 of 4 agree"), "{text}");
}

#[test]
fn matvec_table_rows_and_failure() {
    let mv = json!({
        "status": "ok", "peak_gb_per_s": 4800.0, "calls": 200, "reps": 5,
        "shapes": [{ "name": "q_proj", "out": 896, "in": 896, "count_per_token": 24,
                     "bytes": 1000, "seconds": 2e-6, "gb_per_s": 0.5, "fraction_of_peak": 0.25 }],
        "token": { "bytes": 5000, "seconds": 1e-5, "gb_per_s": 0.5, "fraction_of_peak": 0.5 },
    });
    let t = matvec_table(&mv);
    assert!(
        t.contains("| q_proj | 896 x 896 | 24 | 1000 | 2.00 | 0 | 25% |"),
        "{t}"
    );
    assert!(
        t.contains("| a token's layers |  |  | 5000 | 10.00 | 0 | 50% |"),
        "{t}"
    );
    let e = matvec_table(&json!({ "status": "not_implemented", "message": "day 10" }));
    assert!(e.contains("not_implemented (day 10)"), "{e}");
}

#[test]
fn step_bandwidth_is_bytes_times_rate() {
    assert_eq!(step_gbs(2_000_000_000, 3.0), 6.0);
}
