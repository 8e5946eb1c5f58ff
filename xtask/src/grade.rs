//! The grading engine: build the grader's test binaries, run every test in
//! its own process with a time limit, and classify what happened.
//!
//! One process per test keeps a learner's panic, abort or endless loop from
//! stopping the other tests (and MLX, which is not thread-safe, never sees
//! two tests at once). The engine knows nothing of MLX: xtask's own tests
//! drive it over a small fixture course (`xtask/tests/fixture-course`).
//!
//! - [`build`]: `cargo test --no-run`, with cargo's progress shown on first builds;
//! - [`run`]: one test in one process, its time limit, and what a hang was doing;
//! - [`stack`]: the stack of a hung process through gdb, eu-stack or lldb;
//! - [`classify`]: the outcome from the test's output (the grader's failure tags).

pub mod build;
pub mod classify;
pub mod run;
pub mod stack;

pub use build::{build, last_build, Build, Built};
pub use run::{run_one, Hangs};

/// What one test did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    Pass,
    /// The code under test reached a `todo!("day N: item")`.
    NotImplemented {
        /// `day N: item`, the `todo!()`'s message.
        item: Option<String>,
        /// The day that owns the `todo!()` (the `N` of `day N: ...`).
        owner_day: Option<u32>,
        /// The file of the `todo!()` (`exercises/src/<module>.rs`).
        file: Option<String>,
    },
    /// Values outside tolerance (the grader's report), or a failed property.
    WrongNumbers {
        report: String,
        /// The seed of a failed property test (`PROPTEST_SEED=<seed>` reruns it).
        seed: Option<u64>,
    },
    /// Shape or dtype differ from the expected tensor.
    WrongShape {
        report: String,
    },
    /// A call that must reject its input returned a value instead.
    ShouldFail {
        report: String,
    },
    /// The code under test returned an `Err` for valid input.
    ReturnedError {
        /// The error, with MLX's build paths taken out.
        message: String,
        /// The fixture case, when the grader names one.
        case: Option<String>,
        /// `file:line` in the learner's code or the grader's test, never
        /// inside the standard library.
        location: Option<String>,
    },
    /// A panic other than the above.
    Panic {
        message: String,
        /// Where it panicked (`file:line:col`).
        location: Option<String>,
        /// The innermost line of the learner's code on the way to a panic
        /// that happened elsewhere (inside MLX or the standard library).
        your_line: Option<String>,
    },
    /// Still running after the time limit; it was stopped.
    Timeout {
        seconds: u64,
        /// The learner's function it was running when stopped, when a
        /// debugger could tell.
        site: Option<HangSite>,
        /// The earlier test that hung in the same function (this one was
        /// stopped early, as soon as it was seen there).
        same_as: Option<String>,
        /// Stopped at the short limit after an earlier hang, without a
        /// debugger to say where (see `Hangs`).
        shortened: bool,
    },
    /// The process died without a Rust panic (signal, abort, exit code).
    Crashed {
        how: String,
    },
    /// The crate under test does not compile.
    DoesNotCompile {
        first_error: String,
    },
    /// A golden fixture is missing or does not match its hash: the kit's
    /// fault, not the learner's.
    Fixture {
        message: String,
    },
    /// The test is listed in course.toml but the grader has no such test.
    Missing,
    /// Not run (the day is taken from the reference, or the test needs a GPU).
    Skipped {
        reason: String,
    },
}

/// Where a hung test was: the innermost function of the learner's code.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HangSite {
    /// `tiny_llm::basics::softmax` (hash suffix removed).
    pub function: String,
    /// `exercises/src/basics.rs:25`, or just the file when the debugger
    /// read no line tables.
    pub location: Option<String>,
}

impl Outcome {
    pub fn is_pass(&self) -> bool {
        matches!(self, Outcome::Pass)
    }

    pub fn is_skipped(&self) -> bool {
        matches!(self, Outcome::Skipped { .. })
    }

    /// Neither passed nor skipped.
    pub fn is_failure(&self) -> bool {
        !self.is_pass() && !self.is_skipped()
    }

    /// Short label for the one-line report (at most 17 characters).
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::NotImplemented { .. } => "not implemented",
            Outcome::WrongNumbers { .. } => "wrong numbers",
            Outcome::WrongShape { .. } => "wrong shape/dtype",
            Outcome::ShouldFail { .. } => "expected an error",
            Outcome::ReturnedError { .. } => "returned error",
            Outcome::Panic { .. } => "panic",
            Outcome::Timeout { .. } => "timeout",
            Outcome::Crashed { .. } => "crashed",
            Outcome::DoesNotCompile { .. } => "does not compile",
            Outcome::Fixture { .. } => "fixture problem",
            Outcome::Missing => "missing test",
            Outcome::Skipped { .. } => "skipped",
        }
    }
}

/// What counts as the learner's code in stacks and panic locations.
#[derive(Debug, Clone)]
pub struct LearnerCode {
    /// The crate's name in symbols: `tiny_llm` (`tiny_llm_ref` for `--solution`).
    pub crate_name: String,
    /// Its sources, relative to the workspace: `exercises/src`.
    pub src_dir: String,
    /// The workspace root, to make absolute paths relative.
    pub workspace: std::path::PathBuf,
}

impl LearnerCode {
    /// `path` relative to the workspace (`./` and the root's absolute path
    /// removed).
    pub fn relative(&self, path: &str) -> String {
        let root = self.workspace.to_string_lossy();
        match path.strip_prefix(root.as_ref()) {
            Some(inside) if inside.starts_with('/') => inside.trim_start_matches('/').to_string(),
            _ => path.trim_start_matches("./").to_string(),
        }
    }

    /// Whether `path` (`file` or `file:line:col`) is in the learner's sources.
    pub fn owns_path(&self, path: &str) -> bool {
        let rel = self.relative(path);
        rel.starts_with(&format!("{}/", self.src_dir.trim_end_matches('/')))
    }

    /// Whether a (demangled) function belongs to the learner's crate:
    /// `tiny_llm::basics::softmax`, `<tiny_llm::mlp::Mlp>::forward`.
    pub fn owns_function(&self, function: &str) -> bool {
        let f = function.trim_start_matches('<');
        f.strip_prefix(self.crate_name.as_str())
            .is_some_and(|rest| rest.starts_with("::"))
    }

    /// The file a function of the learner's crate lives in, from its module
    /// path (`tiny_llm::basics::softmax` -> `exercises/src/basics.rs`), when
    /// that file exists; else the crate's `lib.rs`.
    pub fn file_of(&self, function: &str) -> String {
        let f = function.trim_start_matches('<');
        let module = f
            .strip_prefix(self.crate_name.as_str())
            .and_then(|r| r.strip_prefix("::"))
            .and_then(|r| r.split("::").next())
            .unwrap_or("");
        let candidate = format!("{}/{module}.rs", self.src_dir);
        if !module.is_empty() && self.workspace.join(&candidate).is_file() {
            candidate
        } else {
            format!("{}/lib.rs", self.src_dir)
        }
    }
}
