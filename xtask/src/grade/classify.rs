//! The outcome of a finished test process, from libtest's output and the
//! exit status. The grader's panics start with a tag (the lead's interface
//! (b)): `[wrong numbers]`, `[wrong shape]`, `[error]`, `[should fail]`,
//! `[skipped]`, `[fixture]`; a `todo!("day N: item")` reads as "not
//! implemented" (parsed by `tiny_llm_course::Todo`); any other panic is a
//! panic.

use super::{LearnerCode, Outcome};

/// Classifies a finished test process from its output and exit status.
pub fn classify(
    output: &str,
    code: Option<i32>,
    signal: Option<i32>,
    code_of: &LearnerCode,
) -> Outcome {
    if output.contains("running 0 tests") {
        return Outcome::Missing;
    }
    if code == Some(0) && output.contains("test result: ok. 1 passed") {
        // A GPU-only test that found no GPU returns early after printing
        // `[skipped] <why>` (tiny_llm_grader::device::require_gpu): it did
        // not run, so it is no pass.
        // (with --nocapture the tag may follow libtest's `test t ... `)
        if let Some(reason) = output
            .lines()
            .find_map(|l| l.find("[skipped] ").map(|i| &l[i + "[skipped] ".len()..]))
        {
            return Outcome::Skipped {
                reason: reason.trim().to_string(),
            };
        }
        return Outcome::Pass;
    }
    if let Some((location, message)) = panic_of(output) {
        return classify_panic(&location, &message, code_of);
    }
    let how = match (signal, code) {
        (Some(6), _) => "aborted (SIGABRT), often an MLX error raised outside Rust".to_string(),
        (Some(9), _) => "killed (SIGKILL), perhaps out of memory".to_string(),
        (Some(11), _) => "segmentation fault (SIGSEGV)".to_string(),
        (Some(s), _) => format!("killed by signal {s}"),
        (None, Some(c)) => format!("exited with code {c} without a panic message"),
        (None, None) => "ended without a status".to_string(),
    };
    Outcome::Crashed { how }
}

/// Classifies one panic by its message.
fn classify_panic(location: &str, message: &str, code_of: &LearnerCode) -> Outcome {
    if let Some(todo) = tiny_llm_course::Todo::parse(message) {
        return Outcome::NotImplemented {
            owner_day: todo.day,
            item: (!todo.text.is_empty()).then_some(todo.text),
            file: Some(code_of.relative(strip_line_col(location))),
        };
    }
    // proptest reports a panic in a property as `Test failed: <message>.`
    let message = message.strip_prefix("Test failed: ").unwrap_or(message);
    if let Some(report) = message.strip_prefix("[wrong numbers] ") {
        return Outcome::WrongNumbers {
            report: report.to_string(),
            seed: seed_of(report),
        };
    }
    if let Some(report) = message.strip_prefix("[wrong shape] ") {
        return Outcome::WrongShape {
            report: report.to_string(),
        };
    }
    if let Some(report) = message.strip_prefix("[should fail] ") {
        return Outcome::ShouldFail {
            report: report.to_string(),
        };
    }
    if let Some(reason) = message.strip_prefix("[skipped] ") {
        return Outcome::Skipped {
            reason: reason.trim().to_string(),
        };
    }
    if let Some(m) = message.strip_prefix("[fixture] ") {
        return Outcome::Fixture {
            message: m.to_string(),
        };
    }
    if let Some(m) = message.strip_prefix("[error] ") {
        return Outcome::ReturnedError {
            message: strip_build_paths(m),
            case: case_of(m),
            location: useful_location(location, code_of),
        };
    }
    Outcome::Panic {
        message: strip_build_paths(&plain_exception(message)),
        location: Some(code_of.relative(location)),
        your_line: None,
    }
}

/// `exercises/src/basics.rs:41:5` -> `exercises/src/basics.rs`.
pub fn strip_line_col(location: &str) -> &str {
    let mut s = location;
    for _ in 0..2 {
        if let Some((head, tail)) = s.rsplit_once(':') {
            if !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit()) {
                s = head;
            }
        }
    }
    s
}

/// The panic location when it says something to the learner: in their code
/// or a grader test, not inside the standard library or a dependency.
fn useful_location(location: &str, code_of: &LearnerCode) -> Option<String> {
    let rel = code_of.relative(location);
    let foreign = rel.starts_with("/rustc/")
        || rel.contains("library/core/")
        || rel.contains("library/std/")
        || rel.contains("library/alloc/")
        || rel.contains(".cargo/registry/")
        || rel.contains("/rustlib/");
    (!foreign).then_some(rel)
}

/// The seed of a failed property: `property <name> failed with seed <N>`,
/// or `PROPTEST_SEED=<N>`.
pub fn seed_of(report: &str) -> Option<u64> {
    for marker in ["with seed ", "PROPTEST_SEED="] {
        if let Some(at) = report.find(marker) {
            let digits: String = report[at + marker.len()..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            if let Ok(seed) = digits.parse() {
                return Some(seed);
            }
        }
    }
    None
}

/// The fixture case a grader message names (`case day1/linear_b2_f32`).
fn case_of(message: &str) -> Option<String> {
    let at = message.find("case ")?;
    let name: String = message[at + "case ".len()..]
        .chars()
        .take_while(|c| c.is_alphanumeric() || matches!(c, '_' | '/' | '-' | '.'))
        .collect();
    let name = name.trim_end_matches('.').to_string();
    (!name.is_empty()).then_some(name)
}

/// Removes the ` at /build/path/file.cpp:123` that mlx-c appends to MLX's
/// error messages (a file of the machine that built MLX), and the
/// ` at /rustc/<hash>/library/...rs:250:5` that mlx-rs adds (a line of the
/// standard library): neither says anything about the learner's code.
pub fn strip_build_paths(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(" at /") {
        out.push_str(&rest[..at]);
        let tail = &rest[at + " at ".len()..];
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, ')' | ',' | ';' | '"'))
            .unwrap_or(tail.len());
        let token = &tail[..end];
        let file = strip_line_col(token);
        let is_source = [".cpp", ".cc", ".c", ".h", ".hpp", ".cu", ".mm"]
            .iter()
            .any(|ext| file.ends_with(ext))
            || file.starts_with("/rustc/");
        if is_source && file.len() < token.len() {
            rest = &tail[end..];
        } else {
            out.push_str(" at ");
            rest = tail;
        }
    }
    out.push_str(rest);
    out
}

/// An mlx-rs exception unwrapped in a panic prints as its Debug form,
/// `Exception { what: "...", location: Location { file: .., line: .., column: .. } }`;
/// keep only MLX's text: `MLX: "..."`.
fn plain_exception(message: &str) -> String {
    const HEAD: &str = "Exception { what: \"";
    let Some(at) = message.find(HEAD) else {
        return message.to_string();
    };
    let rest = &message[at + HEAD.len()..];
    let Some(end) = rest.find("\", location: Location {") else {
        return message.to_string();
    };
    let after = rest[end..]
        .find("} }")
        .map(|i| &rest[end + i + "} }".len()..])
        .unwrap_or("");
    format!("{}MLX: \"{}\"{after}", &message[..at], &rest[..end])
}

/// `(location, message)` of the first panic in libtest's output.
fn panic_of(output: &str) -> Option<(String, String)> {
    let start = output.find("panicked at ")?;
    let rest = &output[start + "panicked at ".len()..];
    let (location, after) = rest.split_once(":\n")?;
    let mut lines = Vec::new();
    for line in after.lines() {
        if line.starts_with("note: ") || line.starts_with("stack backtrace") || line.is_empty() {
            break;
        }
        lines.push(line);
    }
    Some((location.trim().to_string(), lines.join("\n")))
}

/// The innermost line of the learner's code in a `RUST_BACKTRACE=1`
/// backtrace (`at ./exercises/src/basics.rs:25:5`).
pub fn your_line_in_backtrace(output: &str, code_of: &LearnerCode) -> Option<String> {
    let bt = &output[output.find("stack backtrace:")?..];
    bt.lines()
        .filter_map(|l| l.trim().strip_prefix("at "))
        .find(|path| code_of.owns_path(path))
        .map(|path| code_of.relative(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn learner() -> LearnerCode {
        LearnerCode {
            crate_name: "tiny_llm".into(),
            src_dir: "exercises/src".into(),
            workspace: "/w".into(),
        }
    }

    fn out_at(location: &str, msg: &str) -> String {
        format!(
            "running 1 test\ntest t ... FAILED\n\nfailures:\n\n---- t stdout ----\n\nthread 't' (123) panicked at {location}:\n{msg}\nnote: run with `RUST_BACKTRACE=1`\n\nfailures:\n    t\n\ntest result: FAILED. 0 passed; 1 failed\n"
        )
    }

    fn out(msg: &str) -> String {
        out_at("grader/tests/day1.rs:12:5", msg)
    }

    fn c(output: &str) -> Outcome {
        classify(output, Some(101), None, &learner())
    }

    #[test]
    fn pass() {
        let o = "running 1 test\ntest t ... ok\n\ntest result: ok. 1 passed; 0 failed;";
        assert_eq!(classify(o, Some(0), None, &learner()), Outcome::Pass);
    }

    #[test]
    fn todo_names_its_item_day_and_file() {
        assert_eq!(
            c(&out_at(
                "exercises/src/layer_norm.rs:41:9",
                "not yet implemented: day 4: RmsNorm::new"
            )),
            Outcome::NotImplemented {
                item: Some("day 4: RmsNorm::new".into()),
                owner_day: Some(4),
                file: Some("exercises/src/layer_norm.rs".into()),
            }
        );
        let bare = c(&out_at(
            "/w/exercises/src/mlp.rs:3:5",
            "not yet implemented",
        ));
        assert_eq!(
            bare,
            Outcome::NotImplemented {
                item: None,
                owner_day: None,
                file: Some("exercises/src/mlp.rs".into()),
            }
        );
    }

    #[test]
    fn todo_inside_a_property_is_still_not_implemented() {
        let o = c(&out(
            "Test failed: not yet implemented: day 1: softmax; minimal failing input: x = 1.",
        ));
        assert!(
            matches!(&o, Outcome::NotImplemented { item: Some(i), owner_day: Some(1), .. } if i == "day 1: softmax"),
            "{o:?}"
        );
    }

    #[test]
    fn tagged_reports() {
        assert_eq!(
            c(&out("[wrong numbers] t, case day1/x\n  worst element")),
            Outcome::WrongNumbers {
                report: "t, case day1/x\n  worst element".into(),
                seed: None
            }
        );
        assert_eq!(
            c(&out("[should fail] linear should have returned an error but returned a value (case w [3])")).label(),
            "expected an error"
        );
        assert_eq!(
            c(&out("[skipped] no GPU")),
            Outcome::Skipped {
                reason: "no GPU".into()
            }
        );
        assert_eq!(
            c(&out(
                "[fixture] fixtures/day1/a.safetensors does not match MANIFEST.sha256"
            ))
            .label(),
            "fixture problem"
        );
        assert_eq!(
            c(&out("[wrong shape] t: got [2]")).label(),
            "wrong shape/dtype"
        );
    }

    /// `require_gpu` prints the tag and the test returns: skipped, not passed.
    #[test]
    fn a_test_that_printed_skipped_is_no_pass() {
        let printed = "running 1 test\ntest t ... [skipped] no GPU: t needs a GPU that MLX can use, and none is usable here\nok\n\ntest result: ok. 1 passed; 0 failed";
        assert_eq!(
            classify(printed, Some(0), None, &learner()),
            Outcome::Skipped {
                reason: "no GPU: t needs a GPU that MLX can use, and none is usable here".into()
            }
        );
        let plain = "running 1 test\ntest t ... ok\n\ntest result: ok. 1 passed; 0 failed";
        assert_eq!(classify(plain, Some(0), None, &learner()), Outcome::Pass);
    }

    #[test]
    fn a_failed_property_keeps_its_seed() {
        let o = c(&out(
            "[wrong numbers] property softmax_rows_sum_to_one failed with seed 1234567 (rerun: PROPTEST_SEED=1234567 cargo test ...)\n  row 3 sums to 0.5",
        ));
        assert!(
            matches!(
                o,
                Outcome::WrongNumbers {
                    seed: Some(1234567),
                    ..
                }
            ),
            "{o:?}"
        );
        assert_eq!(seed_of("rerun with PROPTEST_SEED=42"), Some(42));
    }

    #[test]
    fn returned_error_drops_mlx_build_paths_and_std_locations() {
        let o = c(&out_at(
            "/rustc/abc123/library/core/src/ops/function.rs:250:5",
            "[error] linear returned an error: MLX: [matmul] Last dimension of first input with shape (2,3) must match second to last dimension of second input with shape (4,5). at /home/runner/work/mlx-c/mlx/c/ops.cpp:1235 (case day1/linear_nobias_b2_f32)",
        ));
        assert_eq!(
            o,
            Outcome::ReturnedError {
                message: "linear returned an error: MLX: [matmul] Last dimension of first input with shape (2,3) must match second to last dimension of second input with shape (4,5). (case day1/linear_nobias_b2_f32)".into(),
                case: Some("day1/linear_nobias_b2_f32".into()),
                location: None,
            }
        );
        let o = c(&out("[error] softmax returned an error: bad axis"));
        assert!(
            matches!(&o, Outcome::ReturnedError { location: Some(l), case: None, .. } if l == "grader/tests/day1.rs:12:5"),
            "{o:?}"
        );
    }

    #[test]
    fn mlx_rs_errors_lose_both_paths() {
        // as `tiny_llm_common::Error::Mlx` prints an mlx-rs exception
        let m = "linear returned an error: MLX: \"[matmul] Last dimension of first input with shape (1,16) must match second to last dimension of second input with shape (8,16). at /work/main/target/mlx/mlx-c-src/mlx/c/ops.cpp:2291\" at /rustc/59807616e1fa2540724bfbac14d7976d7e4a3860/library/core/src/ops/function.rs:250:5";
        assert_eq!(
            strip_build_paths(m),
            "linear returned an error: MLX: \"[matmul] Last dimension of first input with shape (1,16) must match second to last dimension of second input with shape (8,16).\""
        );
    }

    #[test]
    fn an_unwrapped_mlx_exception_reads_as_mlx_text() {
        let o = c(&out_at(
            "/root/.cargo/registry/src/x/mlx-rs-0.33.0/src/array/operators.rs:56:1",
            "called `Result::unwrap()` on an `Err` value: Exception { what: \"[broadcast_shapes] Shapes (7,10) and (7) cannot be broadcast. at /work/main/target/mlx/mlx-c-src/mlx/c/ops.cpp:4004\", location: Location { file: \"/rustc/5980/library/core/src/ops/function.rs\", line: 250, column: 5 } }",
        ));
        let Outcome::Panic {
            message, location, ..
        } = o
        else {
            panic!("{o:?}")
        };
        assert_eq!(
            message,
            "called `Result::unwrap()` on an `Err` value: MLX: \"[broadcast_shapes] Shapes (7,10) and (7) cannot be broadcast.\""
        );
        assert!(location.unwrap().starts_with("/root/.cargo/registry/"));
    }

    #[test]
    fn paths_outside_the_workspace_stay_absolute() {
        let l = learner();
        assert_eq!(
            l.relative("/root/.cargo/registry/src/x/mlx-rs-0.33.0/src/ops.rs:5:1"),
            "/root/.cargo/registry/src/x/mlx-rs-0.33.0/src/ops.rs:5:1"
        );
        assert_eq!(
            l.relative("/w/exercises/src/a.rs:1"),
            "exercises/src/a.rs:1"
        );
        assert_eq!(l.relative("./exercises/src/a.rs:1"), "exercises/src/a.rs:1");
        assert_eq!(l.relative("/wx/a.rs"), "/wx/a.rs");
    }

    #[test]
    fn build_paths_only_of_source_files_are_removed() {
        assert_eq!(
            strip_build_paths("x at /a/b/ops.cpp:12 and y at /tmp/file.txt"),
            "x and y at /tmp/file.txt"
        );
        assert_eq!(strip_build_paths("look at /dev/null"), "look at /dev/null");
    }

    #[test]
    fn plain_panic_keeps_location() {
        assert_eq!(
            c(&out("index out of bounds")),
            Outcome::Panic {
                message: "index out of bounds".into(),
                location: Some("grader/tests/day1.rs:12:5".into()),
                your_line: None,
            }
        );
    }

    #[test]
    fn signals_and_missing_tests() {
        let l = learner();
        assert_eq!(
            classify("running 1 test\n", None, Some(11), &l).label(),
            "crashed"
        );
        assert_eq!(
            classify("running 0 tests\n", Some(0), None, &l),
            Outcome::Missing
        );
    }

    #[test]
    fn finds_the_learners_line_in_a_backtrace() {
        let bt = "thread 't' panicked at /root/.cargo/registry/src/x/mlx-rs-0.33.0/src/ops/arithmetic.rs:12:5:\nshapes\nstack backtrace:\n   0: rust_begin_unwind\n             at /rustc/abc/library/std/src/panicking.rs:665:5\n  12: tiny_llm::basics::linear\n             at ./exercises/src/basics.rs:45:17\n  13: day1::run_linear\n             at ./grader/tests/day1.rs:50:5\n";
        assert_eq!(
            your_line_in_backtrace(bt, &learner()),
            Some("exercises/src/basics.rs:45:17".into())
        );
    }
}
