//! Unit tests of `bench week2`'s step-by-step section: the table's ratios,
//! the fallbacks when a day is not implemented, and the targets' verdicts
//! (hand-made reports, no timing).

use super::steps::*;
use super::tests2::week2_args;
use super::*;

/// A report decoding `n` tokens in `decode_s` (so `(n - 1) / decode_s`
/// tok/s) and prefilling 512 tokens in `prefill_s`.
fn ok(n: u64, decode_s: f64, prefill_s: f64, kernels: &str) -> Value {
    json!({
        "status": "ok",
        "kernels": kernels,
        "kernel_fallback": [],
        "prefill": [{ "tokens": 512, "seconds": prefill_s }],
        "decode": { "new_tokens": n, "decode_seconds": decode_s, "ttft_seconds": 0.5 },
    })
}

fn todo(day: u64) -> Value {
    json!({ "status": "not_implemented", "day": day, "message": "not yet implemented" })
}

fn reports(list: Vec<(&str, Value)>) -> Reports {
    let mut r = Reports::new();
    for (k, v) in list {
        r.entry(k.to_string()).or_default().push(v);
    }
    r
}

#[test]
fn ratios_chain_over_measured_rows_and_skip_unimplemented_days() {
    // decode: week1 1 tok/s, kv 4, q4 10, fused todo, flash todo, int8 15;
    // llama.cpp 20 tok/s, prefill 512 in 1.0 s (512 tok/s).
    let r = reports(vec![
        ("week1", ok(3, 2.0, 8.0, "none")),
        ("kv_cache", ok(9, 2.0, 4.0, "none")),
        ("q4", ok(11, 1.0, 2.0, "none")),
        ("fused", todo(11)),
        ("flash", todo(12)),
        ("int8", ok(16, 1.0, 1.6, "fused,flash,int8")),
        (LLAMA, ok(21, 1.0, 1.0, "-")),
    ]);
    let args = week2_args(Some("4"));
    let cells = steps_cells(&r, &args);
    let row = |key: &str| {
        let i = STEPS.iter().position(|s| s.key == key).unwrap();
        cells[i + 1].clone()
    };
    assert_eq!(row("week1")[2], "1.00");
    assert_eq!(row("kv_cache")[3], "4.00x"); // 4 / 1
    assert_eq!(row("kv_cache")[6], "2.00x"); // 128 / 64 tok/s prefill
    assert_eq!(row("q4")[3], "2.50x"); // 10 / 4
    assert_eq!(row("q4")[4], "0.50x"); // 10 / 20
    assert_eq!(row("fused")[2], "not implemented (day 11)");
    assert_eq!(row("flash")[2], "not implemented (day 12)");
    // int8 is compared with the last exact row that measured: q4.
    assert_eq!(row("int8")[3], "1.50x");
    assert_eq!(row("int8")[7], "0.62x"); // 320 / 512
    assert_eq!(best_exact(&r).map(|s| s.key), Some("q4"));
    assert_eq!(cells.last().unwrap()[2], "20.00");
}

#[test]
fn targets_say_pass_miss_or_why_not_measured() {
    let r = reports(vec![
        ("q4", ok(11, 1.0, 1.0, "none")),
        ("fused", ok(21, 1.0, 1.0, "fused")),
        ("flash", ok(21, 1.0, 0.5, "fused,flash")),
        (LLAMA, ok(21, 1.0, 1.0, "-")),
        (LONG_REF, ok(9, 1.0, 1.0, "fused,flash")),
        (
            TURNS,
            json!({ "status": "ok", "first_turn": { "ttft_seconds": 10.0 },
                    "second_turn": { "ttft_seconds": 2.0 } }),
        ),
    ]);
    let t = targets(&r, &week2_args(Some("4")));
    // decode 20 / 20 = 1.0: the bound itself passes.
    assert_eq!((t[0].value, t[0].verdict()), (Some(1.0), "pass"));
    assert!(t[0].what.contains("(flash)"), "{}", t[0].what);
    // long context: llama.cpp did not run.
    assert_eq!((t[1].value, t[1].verdict()), (None, "not measured"));
    assert!(
        t[1].missing.starts_with("llama.cpp: not run"),
        "{}",
        t[1].missing
    );
    // prefill 1024 / 512 tok/s.
    assert_eq!((t[2].value, t[2].verdict()), (Some(2.0), "pass"));
    // 2 s / 10 s = 0.2: at most 0.2 passes.
    assert_eq!((t[3].value, t[3].verdict()), (Some(0.2), "pass"));
    let slow = reports(vec![
        ("q4", ok(11, 1.0, 1.0, "none")),
        (LLAMA, ok(21, 1.0, 1.0, "-")),
        (
            TURNS,
            json!({ "status": "ok", "first_turn": { "ttft_seconds": 10.0 },
                    "second_turn": { "ttft_seconds": 2.5 } }),
        ),
    ]);
    let t = targets(&slow, &week2_args(Some("4")));
    assert_eq!((t[0].value, t[0].verdict()), (Some(0.5), "miss"));
    assert_eq!((t[3].value, t[3].verdict()), (Some(0.25), "miss"));
}

#[test]
fn a_skipped_int8_row_and_a_fallback_are_reported() {
    let mut long = ok(9, 1.0, 1.0, "fused");
    long["kernel_fallback"] = json!(["flash: not implemented (day 12: flash_attention)"]);
    let r = reports(vec![
        (
            "int8",
            json!({ "status": "skipped", "message": "int8_activations changes no logit" }),
        ),
        (LONG_REF, long),
    ]);
    assert_eq!(
        why_not(&r, "int8"),
        "skipped: int8_activations changes no logit"
    );
    assert_eq!(why_not(&r, "week1"), "not run");
    assert_eq!(
        kernels_of(&r, LONG_REF).unwrap(),
        "fused (fell back: flash: not implemented (day 12: flash_attention))"
    );
    let cells = long_cells(&r, &week2_args(Some("4")));
    assert!(cells[1][0].contains("fell back"), "{:?}", cells[1]);
    assert_eq!(cells[1][1], "8.00");
    assert_eq!(cells[2][1], "not run");
}

#[test]
fn the_prompt_file_holds_what_the_section_needs() {
    let args = week2_args(None);
    assert_eq!(ids_needed(&args), 4097);
    let short = Week2Args {
        long_context: 100,
        history: 1000,
        ..args
    };
    assert_eq!(ids_needed(&short), 1000 + TURN_TOKENS);
}
