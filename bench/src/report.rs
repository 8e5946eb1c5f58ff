//! The JSON report of a measurement, with the learner's `todo!()` turned
//! into `{"status": "not_implemented", "day": N, ...}` and any other panic
//! or error into `{"status": "error", "message": ...}`.

use serde_json::{json, Value};
use std::any::Any;
use std::path::Path;
use std::process::ExitCode;
use tiny_llm_course::{DType, Todo};

/// Which implementation this binary measures.
pub const IMPLEMENTATION: &str = if cfg!(feature = "solutions") {
    "reference"
} else {
    "learner"
};

/// Prints the report as one JSON line; exit code 1 for an error report.
pub fn print(report: Value) -> ExitCode {
    println!("{report}");
    if report["status"] == "error" {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// The text of a panic payload.
fn payload_text(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
}

/// Runs `f`, turning `todo!()` panics into "not implemented" and any other
/// panic or error into an error report; adds the implementation, model and
/// dtype to the report.
pub fn caught(model: &Path, dtype: DType, f: impl FnOnce() -> anyhow::Result<Value>) -> Value {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if payload_text(info.payload()).and_then(Todo::parse).is_none() {
            default(info);
        }
    }));
    let base = json!({
        "implementation": IMPLEMENTATION,
        "model": model.display().to_string(),
        "dtype": dtype.as_str(),
    });
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let mut report = match outcome {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => json!({ "status": "error", "message": format!("{e:#}") }),
        Err(payload) => panic_report(payload_text(payload.as_ref())),
    };
    for (k, v) in base.as_object().expect("an object") {
        report[k] = v.clone();
    }
    report
}

/// The report of a panic with message `msg`.
fn panic_report(msg: Option<&str>) -> Value {
    match msg {
        Some(msg) => match Todo::parse(msg) {
            Some(todo) => json!({
                "status": "not_implemented",
                "day": todo.day,
                "item": todo.item,
                "message": msg,
            }),
            None => json!({ "status": "error", "message": format!("panic: {msg}") }),
        },
        None => json!({ "status": "error", "message": "panic" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn todo_panics_report_their_day_and_item() {
        let r = panic_report(Some("not yet implemented: day 5: Qwen2ModelWeek1::forward"));
        assert_eq!(r["status"], "not_implemented");
        assert_eq!(r["day"], 5);
        assert_eq!(r["item"], "Qwen2ModelWeek1::forward");
        let r = panic_report(Some("not yet implemented"));
        assert_eq!(
            (r["status"].as_str(), r["day"].is_null()),
            (Some("not_implemented"), true)
        );
        let r = panic_report(Some("index out of bounds"));
        assert_eq!(r["message"], "panic: index out of bounds");
    }

    #[test]
    fn errors_and_values_get_the_common_fields() {
        let r = caught(Path::new("/m"), DType::Bf16, || anyhow::bail!("no weights"));
        assert_eq!(r["status"], "error");
        assert_eq!(r["message"], "no weights");
        assert_eq!(r["dtype"], "bf16");
        assert_eq!(r["model"], "/m");
        let r = caught(Path::new("/m"), DType::F32, || {
            Ok(json!({ "status": "ok" }))
        });
        assert_eq!(
            (r["status"].as_str(), r["implementation"].as_str()),
            (Some("ok"), Some(IMPLEMENTATION))
        );
    }
}
