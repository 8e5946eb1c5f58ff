//! Unit tests of `cargo xtask bench week2`: parsing and summaries (no timing).

use super::*;
use llama_cpp::{last_json_line, Gguf, GgufType};

/// llama-bench's JSON output (`-o json`) as it prints it: an array of tests,
/// fields as in llama-bench.cpp's `get_fields`, times in ns.
const PP: &str = r#"[
  {"build_commit": "0c1e570", "cpu_info": "AMD EPYC", "model_type": "qwen2 1B Q4_0",
   "n_threads": 2, "n_prompt": 128, "n_gen": 0, "n_depth": 0, "avg_ns": 200000000, "avg_ts": 640.0},
  {"build_commit": "0c1e570", "cpu_info": "AMD EPYC", "model_type": "qwen2 1B Q4_0",
   "n_threads": 2, "n_prompt": 512, "n_gen": 0, "n_depth": 0, "avg_ns": 1024000000, "avg_ts": 500.0}
]"#;
const TG: &str = r#"build: 0c1e570 (1)
[
  {"build_commit": "0c1e570", "cpu_info": "AMD EPYC", "model_type": "qwen2 1B Q4_0",
   "n_threads": 2, "n_prompt": 0, "n_gen": 128, "n_depth": 128, "avg_ns": 1600000000, "avg_ts": 80.0}
]"#;

#[test]
fn llama_bench_json_becomes_a_report_with_our_metrics() {
    let r = llama_bench_report(PP, TG, 128).unwrap();
    assert_eq!(r["status"], "ok");
    let m: BTreeMap<String, f64> = metrics(&r).into_iter().collect();
    // 128 tokens in 0.2 s, 512 in 1.024 s, 128 generated in 1.6 s.
    assert!((m["prefill_128_tok_s"] - 640.0).abs() < 1e-9, "{m:?}");
    assert!((m["prefill_512_tok_s"] - 500.0).abs() < 1e-9, "{m:?}");
    assert!((m["decode_tok_s"] - 80.0).abs() < 1e-9, "{m:?}");
    // Time to first token: prefill 128 (0.2 s) + one token (1.6 / 128 s).
    assert!((m["ttft_s"] - 0.2125).abs() < 1e-12, "{m:?}");
    assert_eq!(r["decode"]["prompt_tokens"], 128);
    assert!(!m.contains_key("peak_memory_gb"));
}

#[test]
fn llama_bench_without_a_generation_test_is_an_error() {
    let e = llama_bench_report(PP, PP, 128).unwrap_err().to_string();
    assert!(e.contains("n_gen"), "{e}");
    assert!(llama_bench_report("no json here", TG, 128).is_err());
}

#[test]
fn a_missing_prefill_length_leaves_ttft_out_but_keeps_decode() {
    let r = llama_bench_report(PP, TG, 64).unwrap();
    let m: BTreeMap<String, f64> = metrics(&r).into_iter().collect();
    assert!(!m.contains_key("ttft_s"));
    assert!((m["decode_tok_s"] - 80.0).abs() < 1e-9);
}

#[test]
fn peak_rss_is_a_metric() {
    let m: BTreeMap<String, f64> = metrics(&json!({ "child_max_rss_bytes": 1.5e9 }))
        .into_iter()
        .collect();
    assert_eq!(m["peak_rss_gb"], 1.5);
}

#[test]
fn the_last_json_line_wins() {
    let v = last_json_line("noise\n{\"a\": 1}\n{not json\n{\"b\": 2}\ntrailing").unwrap();
    assert_eq!(v, json!({ "b": 2 }));
    assert!(last_json_line("nothing").is_none());
}

#[test]
fn roofline_is_bytes_per_second_over_bandwidth() {
    // 87 tok/s reading 300 MB each is 26.1 GB/s: 0.6214 of 42 GB/s.
    let f = roofline(87.0, 300_000_000, 42.0);
    assert!((f - 26.1 / 42.0).abs() < 1e-12, "{f}");
}

#[test]
fn bits_per_weight_is_file_bits_over_parameters() {
    let g = Gguf {
        path: PathBuf::from("x.gguf"),
        kind: GgufType::Q4_0,
        params: 1000,
        tensor_bytes: 560,
        file_bytes: 600,
        how: String::new(),
    };
    assert_eq!(g.bits_per_weight(), 4.8);
    assert_eq!(GgufType::for_bits(8).name(), "Q8_0");
    assert_eq!(GgufType::for_bits(4).name(), "Q4_0");
}

/// A safetensors file: 8-byte little-endian header length, JSON header.
fn write_safetensors(path: &Path, tensors: &[(&str, &str, u64)]) {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), json!({ "format": "mlx" }));
    let mut at = 0;
    for (name, dtype, bytes) in tensors {
        header.insert(
            name.to_string(),
            json!({ "dtype": dtype, "shape": [bytes], "data_offsets": [at, at + bytes] }),
        );
        at += bytes;
    }
    let h = serde_json::to_vec(&Value::Object(header)).unwrap();
    let mut data = (h.len() as u64).to_le_bytes().to_vec();
    data.extend_from_slice(&h);
    data.resize(data.len() + at as usize, 0);
    std::fs::write(path, data).unwrap();
}

#[test]
fn mlx_weight_bytes_counts_a_tied_embedding_and_widens_floats() {
    let dir = tempfile::tempdir().unwrap();
    let tensors = [
        ("model.embed_tokens.weight", "U32", 1000),
        ("model.embed_tokens.scales", "BF16", 100),
        ("model.layers.0.mlp.up_proj.weight", "U32", 400),
        ("model.layers.0.mlp.up_proj.biases", "BF16", 50),
        ("model.norm.weight", "F32", 8),
    ];
    write_safetensors(&dir.path().join("model.safetensors"), &tensors);
    let file = std::fs::metadata(dir.path().join("model.safetensors"))
        .unwrap()
        .len();
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"tie_word_embeddings": true}"#,
    )
    .unwrap();
    let b = mlx_weight_bytes(dir.path()).unwrap();
    assert_eq!(
        b,
        MlxBytes {
            stored: 1558,
            floats_as_f32: 1708,
            file_bytes: file
        }
    );
    // Untied: the embedding is a gather (one row a token), left out.
    std::fs::write(
        dir.path().join("config.json"),
        r#"{"tie_word_embeddings": false}"#,
    )
    .unwrap();
    let b = mlx_weight_bytes(dir.path()).unwrap();
    assert_eq!((b.stored, b.floats_as_f32), (458, 508));
}

#[test]
fn a_safetensors_header_without_offsets_is_an_error() {
    let e = parse_safetensors_header(br#"{"w": {"dtype": "F32"}}"#).unwrap_err();
    assert!(e.to_string().contains("data_offsets"), "{e}");
}

pub(super) fn week2_args(quant: Option<&str>) -> Week2Args {
    Week2Args {
        model: None,
        reps: 3,
        quant: quant.map(str::to_string),
        new_tokens: 128,
        mlx_lm_full: false,
        mlx_lm_new_tokens: 16,
        omp_passive: false,
        no_llama_cpp: false,
        no_build: false,
        no_steps: false,
        steps_only: false,
        week1_new_tokens: 16,
        long_context: 4096,
        long_new_tokens: 32,
        history: 1000,
        device: None,
        synthetic: false,
        peak_gbs: 4800.0,
    }
}

#[test]
fn mlx_lm_runs_less_unless_full() {
    let args = week2_args(None);
    assert_eq!(side_plan(Side::MlxLm, &args), (vec![128], 16));
    assert_eq!(side_plan(Side::Reference, &args), (vec![128, 512], 128));
    let full = Week2Args {
        mlx_lm_full: true,
        ..args
    };
    assert_eq!(side_plan(Side::MlxLm, &full), (vec![128, 512], 128));
}

#[test]
fn quant_picks_the_bit_widths() {
    assert_eq!(bit_widths(&week2_args(None)), vec![4, 8]);
    assert_eq!(bit_widths(&week2_args(Some("4"))), vec![4]);
    assert_eq!(bit_widths(&week2_args(Some("8"))), vec![8]);
}

fn context(gguf: bool) -> Week2Context {
    Week2Context {
        bits: 4,
        bandwidth: json!({ "best_gb_s": 40.0, "median_gb_s": 38.0, "threads": 2, "buffer_bytes": 1u64 << 30 }),
        gguf: gguf.then(|| Gguf {
            path: PathBuf::from("q.gguf"),
            kind: GgufType::Q4_0,
            params: 494_032_768,
            tensor_bytes: 300_000_000,
            file_bytes: 310_000_000,
            how: "made".into(),
        }),
        llama_note: (!gguf).then(|| "skipped (--no-llama-cpp)".to_string()),
        mlx_bytes: MlxBytes {
            stored: 280_000_000,
            floats_as_f32: 320_000_000,
            file_bytes: 278_000_000,
        },
        params: Some(494_032_768),
        new_tokens: 128,
        mlx_lm_full: false,
        mlx_lm_new_tokens: 16,
    }
}

fn summary(sides: &[(Side, Value)]) -> Summary {
    let config = Config {
        name: "m-4bit".into(),
        dir: PathBuf::from("/m"),
        dtype: "f32".into(),
        device: crate::device::Device::Cpu,
    };
    let mut reports = BTreeMap::new();
    let mut variants = Vec::new();
    for (side, r) in sides {
        let v = Variant {
            side: *side,
            blas: BlasKind::Optimised,
            decode: true,
        };
        variants.push(v);
        reports.insert(v, vec![r.clone()]);
    }
    Summary::new(config, variants, reports)
}

fn ok_report(decode_tok_s: f64) -> Value {
    json!({
        "status": "ok",
        "prefill": [{"tokens": 128, "seconds": 0.5}],
        "decode": {"new_tokens": 5, "decode_seconds": 4.0 / decode_tok_s, "ttft_seconds": 0.5},
    })
}

#[test]
fn the_week2_table_has_ratios_and_the_roofline() {
    let s = summary(&[
        (
            Side::Learner,
            json!({"status": "not_implemented", "day": 8}),
        ),
        (Side::Reference, ok_report(80.0)),
        (Side::MlxLm, ok_report(2.0)),
        (Side::LlamaCpp, ok_report(100.0)),
    ]);
    let cells = table_cells2(&s, &context(true));
    assert_eq!(cells[0][4], "llama.cpp Q4_0");
    let row = |label: &str| {
        cells
            .iter()
            .find(|r| r[0].starts_with(label))
            .unwrap()
            .clone()
    };
    let decode = row("decode tok/s");
    assert_eq!(decode[1], "not implemented (day 8)");
    assert_eq!(
        &decode[2..],
        ["80.00", "2.00", "100.00", "40.00x", "0.80x", "-"]
    );
    // 80 tok/s * 280 MB / 40 GB/s = 56%; llama.cpp 100 * 300 MB / 40 GB/s = 75%.
    let roof = row("decode, % of the memory roofline");
    assert_eq!(&roof[2..5], ["56.0", "1.6", "75.0"]);
    assert_eq!(row("weights read per token")[3], "320.0");
}

#[test]
fn without_llama_cpp_its_column_says_why() {
    let s = summary(&[
        (Side::Reference, ok_report(80.0)),
        (Side::MlxLm, ok_report(2.0)),
    ]);
    let ctx = context(false);
    let cells = table_cells2(&s, &ctx);
    assert_eq!(cells[0][4], "llama.cpp");
    assert_eq!(cells[1][4], "skipped (--no-llama-cpp)");
    assert_eq!(cells[1][6], "-");
    let notes = notes2(&ctx).join("\n");
    assert!(notes.contains("best 40.0 GB/s"), "{notes}");
    // 278 MB * 8 / 494M parameters.
    assert!(notes.contains("MLX 4-bit g64 4.50"), "{notes}");
}

#[test]
fn the_week2_chart_has_a_bar_per_side_that_measured() {
    let doc = json!({
        "model": "m-4bit", "learner": "not implemented (day 8)",
        "summary": {
            "reference": {"decode_tok_s": {"median": 80.0, "min": 70.0, "max": 90.0}},
            "llama.cpp": {"decode_tok_s": {"median": 100.0, "min": 99.0, "max": 101.0}},
        },
    });
    let rows = chart_rows2(&doc);
    let decode = rows[0]
        .panels
        .iter()
        .find(|p| p.title == "decode tok/s")
        .unwrap();
    let labels: Vec<&str> = decode.bars.iter().map(|b| b.label.as_str()).collect();
    assert_eq!(labels, ["learner", "reference", "llama.cpp"]);
    assert_eq!(decode.bars[1].value, Some((80.0, 70.0, 90.0)));
}

#[test]
fn the_gguf_script_exists() {
    assert!(util::project_root()
        .join("xtask/python/bench_gguf.py")
        .is_file());
}
