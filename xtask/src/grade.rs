//! The grading engine: build the grader's test binaries, run every test in
//! its own process with a time limit, and classify what happened.
//!
//! One process per test keeps a learner's panic, abort or endless loop from
//! stopping the other tests (and MLX, which is not thread-safe, never sees
//! two tests at once). The engine knows nothing of MLX: xtask's own tests
//! drive it over a small fixture course.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one test did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    /// The code under test reached a `todo!()`.
    NotImplemented {
        item: Option<String>,
    },
    /// Values outside tolerance (the grader's report).
    WrongNumbers {
        report: String,
    },
    /// Shape or dtype differ from the expected tensor.
    WrongShape {
        report: String,
    },
    /// The code under test returned an `Err`.
    ReturnedError {
        message: String,
    },
    /// A panic other than the above.
    Panic {
        message: String,
        location: Option<String>,
    },
    /// Still running after the time limit; it was stopped.
    Timeout {
        seconds: u64,
    },
    /// The process died without a Rust panic (signal, abort, exit code).
    Crashed {
        how: String,
    },
    /// The crate under test does not compile.
    DoesNotCompile {
        first_error: String,
    },
    /// The test is listed in course.toml but the grader has no such test.
    Missing,
    /// Not run (for example the day is taken from the reference).
    Skipped {
        reason: String,
    },
}

impl Outcome {
    pub fn is_pass(&self) -> bool {
        matches!(self, Outcome::Pass)
    }

    /// Short label for the one-line report.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::NotImplemented { .. } => "not implemented",
            Outcome::WrongNumbers { .. } => "wrong numbers",
            Outcome::WrongShape { .. } => "wrong shape/dtype",
            Outcome::ReturnedError { .. } => "returned error",
            Outcome::Panic { .. } => "panic",
            Outcome::Timeout { .. } => "timeout",
            Outcome::Crashed { .. } => "crashed",
            Outcome::DoesNotCompile { .. } => "does not compile",
            Outcome::Missing => "missing test",
            Outcome::Skipped { .. } => "skipped",
        }
    }
}

/// Where and how to build the tests.
#[derive(Debug, Clone)]
pub struct Build {
    /// Folder with the workspace's `Cargo.toml`.
    pub workspace: PathBuf,
    /// The package holding the tests.
    pub package: String,
    /// `--features` value (may be empty).
    pub features: Vec<String>,
    /// Pass `--no-default-features` (the reference build: the learner's
    /// crate, the grader's default feature, is then not compiled).
    pub no_default_features: bool,
    /// `CARGO_TARGET_DIR` override (the fixture course uses its own).
    pub target_dir: Option<PathBuf>,
}

/// The test binaries by target name (`day1` -> path), or the first compile
/// error.
pub enum Built {
    Ok(BTreeMap<String, PathBuf>),
    Failed { first_error: String },
}

/// Builds the package's test targets (`cargo test --no-run`).
pub fn build(b: &Build) -> Result<Built> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&b.workspace)
        .args(["test", "--no-run", "--message-format=json", "--package"])
        .arg(&b.package);
    if b.no_default_features {
        cmd.arg("--no-default-features");
    }
    if !b.features.is_empty() {
        cmd.arg("--features").arg(b.features.join(","));
    }
    if let Some(t) = &b.target_dir {
        cmd.env("CARGO_TARGET_DIR", t);
    }
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .context("running cargo test --no-run")?;
    let mut exes = BTreeMap::new();
    let mut first_error = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        match v["reason"].as_str() {
            Some("compiler-artifact") => {
                let is_test = v["profile"]["test"].as_bool().unwrap_or(false);
                if let (true, Some(exe)) = (is_test, v["executable"].as_str()) {
                    let name = v["target"]["name"].as_str().unwrap_or_default().to_string();
                    exes.insert(name, PathBuf::from(exe));
                }
            }
            Some("compiler-message") if first_error.is_none() => {
                let msg = &v["message"];
                if msg["level"] == "error" {
                    first_error = Some(describe_compile_error(msg));
                }
            }
            _ => {}
        }
    }
    if out.status.success() {
        let list = serde_json::to_string_pretty(&exes)?;
        let path = last_build_path(b);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, list)?;
    }
    if !out.status.success() {
        let first_error = first_error.unwrap_or_else(|| {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        });
        return Ok(Built::Failed { first_error });
    }
    Ok(Built::Ok(exes))
}

/// Where [`build`] records the test binaries it made for these features.
fn last_build_path(b: &Build) -> PathBuf {
    let target = b
        .target_dir
        .clone()
        .unwrap_or_else(|| b.workspace.join("target"));
    let tag = if b.features.is_empty() {
        "default".to_string()
    } else {
        b.features.join("+").replace('/', "-")
    };
    target
        .join("xtask-check")
        .join(format!("built-{}-{tag}.json", b.package))
}

/// The test binaries of the last successful [`build`] with these features
/// (`check --no-build`), with paths made relative to the workspace's
/// `target/` so a copied tree works.
pub fn last_build(b: &Build) -> Result<Built> {
    let path = last_build_path(b);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "{} is missing: build once with `cargo xtask check` before using --no-build",
            path.display()
        )
    })?;
    let exes: BTreeMap<String, PathBuf> = serde_json::from_str(&text)?;
    let target = b
        .target_dir
        .clone()
        .unwrap_or_else(|| b.workspace.join("target"));
    let exes = exes
        .into_iter()
        .map(|(name, exe)| {
            // keep the part from `/target/` on, rooted at this tree's target/
            let s = exe.to_string_lossy().to_string();
            let rel = s
                .rsplit_once("/target/")
                .map(|(_, r)| r.to_string())
                .unwrap_or(s);
            (name, target.join(rel))
        })
        .collect();
    Ok(Built::Ok(exes))
}

/// `file:line: message` of a rustc diagnostic.
fn describe_compile_error(msg: &serde_json::Value) -> String {
    let text = msg["message"].as_str().unwrap_or("error").to_string();
    let spans = msg["spans"].as_array().cloned().unwrap_or_default();
    let primary = spans
        .iter()
        .find(|s| s["is_primary"].as_bool().unwrap_or(false))
        .or(spans.first());
    match primary {
        Some(s) => format!(
            "{}:{}: {}",
            s["file_name"].as_str().unwrap_or("?"),
            s["line_start"],
            text
        ),
        None => text,
    }
}

/// Runs one test of `exe` alone in its own process, stopping it after
/// `timeout`. Output goes through files so a chatty test cannot block.
pub fn run_one(
    exe: &Path,
    test: &str,
    timeout: Duration,
    scratch: &Path,
    env: &[(String, String)],
) -> Result<Outcome> {
    std::fs::create_dir_all(scratch)?;
    let log_path = scratch.join(format!("{test}.log"));
    let log = std::fs::File::create(&log_path)?;
    let mut child = Command::new(exe)
        .args(["--exact", test, "--test-threads=1"])
        .env("RUST_BACKTRACE", "0")
        .env("RUST_TEST_THREADS", "1")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if started.elapsed() >= timeout {
            child.kill().ok();
            child.wait().ok();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    Ok(match status {
        None => Outcome::Timeout {
            seconds: timeout.as_secs(),
        },
        Some(status) => classify(&output, status.code(), signal_of(&status)),
    })
}

#[cfg(unix)]
fn signal_of(status: &std::process::ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

#[cfg(not(unix))]
fn signal_of(_: &std::process::ExitStatus) -> Option<i32> {
    None
}

/// Classifies a finished test process from its output and exit status.
pub fn classify(output: &str, code: Option<i32>, signal: Option<i32>) -> Outcome {
    if output.contains("running 0 tests") {
        return Outcome::Missing;
    }
    if code == Some(0) && output.contains("test result: ok. 1 passed") {
        return Outcome::Pass;
    }
    if let Some((location, message)) = panic_of(output) {
        if let Some(rest) = message.strip_prefix("not yet implemented") {
            let item = rest.trim_start_matches(':').trim();
            return Outcome::NotImplemented {
                item: (!item.is_empty()).then(|| item.to_string()),
            };
        }
        if message.starts_with("not implemented") {
            return Outcome::NotImplemented { item: None };
        }
        for (tag, make) in [
            (
                "[wrong numbers] ",
                Outcome::wrong_numbers as fn(String) -> Outcome,
            ),
            ("[wrong shape] ", Outcome::wrong_shape),
            ("[error] ", Outcome::returned_error),
        ] {
            if let Some(report) = message.strip_prefix(tag) {
                return make(report.to_string());
            }
        }
        return Outcome::Panic {
            message,
            location: Some(location),
        };
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

impl Outcome {
    fn wrong_numbers(report: String) -> Outcome {
        Outcome::WrongNumbers { report }
    }
    fn wrong_shape(report: String) -> Outcome {
        Outcome::WrongShape { report }
    }
    fn returned_error(message: String) -> Outcome {
        Outcome::ReturnedError { message }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn out(msg: &str) -> String {
        format!(
            "running 1 test\ntest t ... FAILED\n\nfailures:\n\n---- t stdout ----\n\nthread 't' panicked at grader/tests/day1.rs:12:5:\n{msg}\nnote: run with `RUST_BACKTRACE=1`\n\nfailures:\n    t\n\ntest result: FAILED. 0 passed; 1 failed\n"
        )
    }

    #[test]
    fn pass() {
        let o = "running 1 test\ntest t ... ok\n\ntest result: ok. 1 passed; 0 failed;";
        assert_eq!(classify(o, Some(0), None), Outcome::Pass);
    }

    #[test]
    fn todo_names_its_item() {
        assert_eq!(
            classify(&out("not yet implemented: day 1: softmax"), Some(101), None),
            Outcome::NotImplemented {
                item: Some("day 1: softmax".into())
            }
        );
    }

    #[test]
    fn tagged_reports() {
        let o = classify(
            &out("[wrong numbers] t, case day1/x\n  worst element"),
            Some(101),
            None,
        );
        assert_eq!(
            o,
            Outcome::WrongNumbers {
                report: "t, case day1/x\n  worst element".into()
            }
        );
        let o = classify(
            &out("[error] linear returned an error: bad"),
            Some(101),
            None,
        );
        assert_eq!(o.label(), "returned error");
    }

    #[test]
    fn plain_panic_keeps_location() {
        let o = classify(&out("index out of bounds"), Some(101), None);
        assert_eq!(
            o,
            Outcome::Panic {
                message: "index out of bounds".into(),
                location: Some("grader/tests/day1.rs:12:5".into())
            }
        );
    }

    #[test]
    fn signals_and_missing_tests() {
        assert_eq!(
            classify("running 1 test\n", None, Some(11)).label(),
            "crashed"
        );
        assert_eq!(
            classify("running 0 tests\n", Some(0), None),
            Outcome::Missing
        );
    }
}
