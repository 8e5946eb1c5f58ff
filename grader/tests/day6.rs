//! Day 6: load the model.
//!
//! `dequantize_affine` against mx.quantize / mx.dequantize (4 and 8 bits,
//! groups 32 and 64, f32 / f16 / bf16 scales) and a hand-packed word;
//! `load_weights` on the tiny Qwen2 directories (fixtures/tiny-qwen2*: one
//! file, two shards, 4-bit) against the weights mlx-lm loads from them
//! (fixtures/gen/day6.py), and its errors on broken directories.

use mlx_rs::{Array, Dtype};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tiny_llm_grader::fixture::{checked_dir, checked_file};
use tiny_llm_grader::imp::loader::load_weights;
use tiny_llm_grader::imp::quantize::dequantize_affine;
use tiny_llm_grader::{assert_close, check_cases, ok, should_fail, should_fail_naming, Case, Tol};

const DAY: &str = "day6";

fn run_dequantize(c: &Case) -> Array {
    let group_size = c.meta("group_size").expect("group_size");
    let bits = c.meta("bits").expect("bits");
    ok(
        "dequantize_affine",
        dequantize_affine(
            c.get("w"),
            c.get("scales"),
            c.get("biases"),
            group_size,
            bits,
        ),
    )
}

#[test]
fn dequantize_4bit_f32() {
    check_cases(
        "dequantize_4bit_f32",
        DAY,
        "dequantize_b4_",
        "f32",
        "expected",
        run_dequantize,
    );
}

#[test]
fn dequantize_4bit_f16() {
    check_cases(
        "dequantize_4bit_f16",
        DAY,
        "dequantize_b4_",
        "f16",
        "expected",
        run_dequantize,
    );
}

#[test]
fn dequantize_4bit_bf16() {
    check_cases(
        "dequantize_4bit_bf16",
        DAY,
        "dequantize_b4_",
        "bf16",
        "expected",
        run_dequantize,
    );
}

#[test]
fn dequantize_8bit_f32() {
    check_cases(
        "dequantize_8bit_f32",
        DAY,
        "dequantize_b8_",
        "f32",
        "expected",
        run_dequantize,
    );
}

#[test]
fn dequantize_8bit_f16() {
    check_cases(
        "dequantize_8bit_f16",
        DAY,
        "dequantize_b8_",
        "f16",
        "expected",
        run_dequantize,
    );
}

#[test]
fn dequantize_8bit_bf16() {
    check_cases(
        "dequantize_8bit_bf16",
        DAY,
        "dequantize_b8_",
        "bf16",
        "expected",
        run_dequantize,
    );
}

/// Hand-packed: one row of 32 four-bit codes `q_i = i % 16`, eight to a
/// word, the first in the lowest bits; scale 2, bias -1: `w_i = 2 q_i - 1`.
#[test]
fn dequantize_hand_packed_word() {
    let codes: Vec<u32> = (0..32).map(|i| i % 16).collect();
    let words: Vec<u32> = codes
        .chunks(8)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u32, |w, (j, &q)| w | (q << (4 * j)))
        })
        .collect();
    let w = Array::from_slice(&words, &[1, 4]);
    let scales = Array::from_slice(&[2.0f32], &[1, 1]);
    let biases = Array::from_slice(&[-1.0f32], &[1, 1]);
    let want: Vec<f32> = codes.iter().map(|&q| 2.0 * q as f32 - 1.0).collect();
    let want = Array::from_slice(&want, &[1, 32]);
    let got = ok(
        "dequantize_affine",
        dequantize_affine(&w, &scales, &biases, 32, 4),
    );
    assert_close(
        "dequantize_hand_packed_word",
        "hand",
        "w",
        &got,
        &want,
        Tol::for_dtype(Dtype::Float32),
    );
}

/// Unsupported bits or group sizes, a float `w` and mismatched scales are
/// errors, not panics.
#[test]
fn dequantize_rejects_bad_input() {
    let w = Array::from_slice(&[0u32; 8], &[2, 4]); // 2 x 32 four-bit codes
    let s = Array::from_slice(&[1.0f32; 2], &[2, 1]);
    let b = Array::from_slice(&[0.0f32; 2], &[2, 1]);
    let bad: [(&str, Result<Array, _>); 5] = [
        ("bits = 3", dequantize_affine(&w, &s, &b, 32, 3)),
        ("group_size = 48", dequantize_affine(&w, &s, &b, 48, 4)),
        ("a float w", dequantize_affine(&s, &s, &b, 32, 4)),
        ("scales 2 x 2 for 2 x 32 with group 32", {
            let s2 = Array::from_slice(&[1.0f32; 4], &[2, 2]);
            dequantize_affine(&w, &s2, &s2, 32, 4)
        }),
        ("biases of another shape", {
            let b1 = Array::from_slice(&[0.0f32; 1], &[1, 1]);
            dequantize_affine(&w, &s, &b1, 32, 4)
        }),
    ];
    for (what, r) in bad {
        should_fail(
            "dequantize_affine",
            &format!("dequantize_affine with {what}"),
            r,
        );
    }
}

fn model_dir(name: &str) -> PathBuf {
    checked_dir(name)
}

/// Compares every weight with the tensor of the same name in
/// `fixtures/day6/<case>.safetensors` (cast to `dtype`), at the tolerance of
/// `tol_dtype`.
#[track_caller]
fn check_weights(
    test: &str,
    got: &HashMap<String, Array>,
    case: &str,
    dtype: Dtype,
    tol_dtype: Dtype,
) {
    let path = checked_file(&format!("{DAY}/{case}.safetensors"));
    let want = Array::load_safetensors(&path)
        .unwrap_or_else(|e| panic!("[fixture] cannot read {}: {e}", path.display()));
    let mut names: Vec<&String> = got.keys().collect();
    names.sort();
    let mut expected_names: Vec<&String> = want.keys().collect();
    expected_names.sort();
    assert_eq!(
        names, expected_names,
        "[wrong shape] {test}: the weight names differ from mlx-lm's"
    );
    let id = format!("{DAY}/{case}");
    for name in names {
        let expected = want[name].as_dtype(dtype).expect("cast");
        assert_close(
            test,
            &id,
            name,
            &got[name],
            &expected,
            Tol::for_dtype(tol_dtype),
        );
    }
}

#[test]
fn load_single_file_bf16() {
    let got = ok(
        "load_weights",
        load_weights(&model_dir("tiny-qwen2"), Dtype::Bfloat16),
    );
    check_weights(
        "load_single_file_bf16",
        &got,
        "loader_dense",
        Dtype::Bfloat16,
        Dtype::Float32,
    );
}

#[test]
fn load_single_file_f32() {
    let got = ok(
        "load_weights",
        load_weights(&model_dir("tiny-qwen2"), Dtype::Float32),
    );
    check_weights(
        "load_single_file_f32",
        &got,
        "loader_dense",
        Dtype::Float32,
        Dtype::Float32,
    );
}

#[test]
fn load_sharded() {
    let got = ok(
        "load_weights",
        load_weights(&model_dir("tiny-qwen2-sharded"), Dtype::Float16),
    );
    check_weights(
        "load_sharded",
        &got,
        "loader_dense",
        Dtype::Float16,
        Dtype::Float16,
    );
}

/// The 4-bit copy: every quantized layer dequantized (bf16 scales, as
/// mlx-lm wrote them).
#[test]
fn load_4bit_bf16() {
    let got = ok(
        "load_weights",
        load_weights(&model_dir("tiny-qwen2-4bit"), Dtype::Bfloat16),
    );
    check_weights(
        "load_4bit_bf16",
        &got,
        "loader_4bit",
        Dtype::Bfloat16,
        Dtype::Bfloat16,
    );
}

/// In f32 the values are those of bf16 arithmetic, so bf16's tolerance.
#[test]
fn load_4bit_f32() {
    let got = ok(
        "load_weights",
        load_weights(&model_dir("tiny-qwen2-4bit"), Dtype::Float32),
    );
    check_weights(
        "load_4bit_f32",
        &got,
        "loader_4bit",
        Dtype::Float32,
        Dtype::Bfloat16,
    );
}

/// A scratch copy of a fixture model directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn copy_of(name: &str, tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("tiny-llm-day6-{tag}-{}", std::process::id()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        for entry in std::fs::read_dir(model_dir(name)).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[track_caller]
fn expect_error_naming<T>(test: &str, r: tiny_llm_grader::imp::Result<T>, needles: &[&str]) {
    should_fail_naming("load_weights", test, r, needles);
}

/// A truncated `model.safetensors` is an error naming the file (checked
/// before MLX reads it), not a crash.
#[test]
fn load_rejects_truncated_file() {
    let dir = Scratch::copy_of("tiny-qwen2", "truncated");
    let file = dir.path().join("model.safetensors");
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    expect_error_naming(
        "load_rejects_truncated_file",
        load_weights(dir.path(), Dtype::Float32),
        &["model.safetensors"],
    );
}

/// A shard that the index lists but the directory lacks is named.
#[test]
fn load_rejects_missing_shard() {
    let dir = Scratch::copy_of("tiny-qwen2-sharded", "shard");
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors")).unwrap();
    expect_error_naming(
        "load_rejects_missing_shard",
        load_weights(dir.path(), Dtype::Float32),
        &["model-00002-of-00002.safetensors"],
    );
}

/// A quantized model whose config.json lacks `quantization.bits`: the error
/// names the file and the key.
#[test]
fn load_rejects_missing_quantization_key() {
    let dir = Scratch::copy_of("tiny-qwen2-4bit", "quant-key");
    let path = dir.path().join("config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let text = text
        .replace("\"bits\": 4,", "")
        .replace("\"bits\": 4", "\"unused\": 0");
    assert!(!text.contains("\"bits\""), "fixture changed: {text}");
    std::fs::write(&path, text).unwrap();
    expect_error_naming(
        "load_rejects_missing_quantization_key",
        load_weights(dir.path(), Dtype::Float32),
        &["config.json", "bits"],
    );
}

/// A directory with no weights at all is an error naming it.
#[test]
fn load_rejects_a_directory_without_weights() {
    let dir = Scratch::copy_of("tiny-qwen2", "empty");
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    expect_error_naming(
        "load_rejects_a_directory_without_weights",
        load_weights(dir.path(), Dtype::Float32),
        &["model.safetensors"],
    );
}
