//! One test in its own process, with a time limit, and what a hung test was
//! doing when it was stopped.
//!
//! A loop in a function that many tests share (softmax, linear) would cost
//! the full time limit once per test. So when a test times out, its stack is
//! read first ([`super::stack`]) and the learner's function it was in is
//! remembered; every later test that is still running after a short limit is
//! looked at, and stopped at once when it is in a function already known to
//! hang. Without a debugger, later tests simply get the short limit, and the
//! report says so.

use super::classify::{classify, your_line_in_backtrace};
use super::stack::{self, Debugger};
use super::{HangSite, LearnerCode, Outcome};
use anyhow::{Context, Result};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long to wait for a debugger to print a stack.
const SAMPLE_LIMIT: Duration = Duration::from_secs(90);

/// What the tests run so far taught about hangs.
#[derive(Debug)]
pub struct Hangs {
    debugger: Option<Debugger>,
    /// Functions known to hang, with the first test that hung there.
    known: Vec<(HangSite, String)>,
    /// The first test that hung where no stack could be read.
    unexplained: Option<String>,
    /// After a hang, later tests are looked at (or, without a debugger,
    /// stopped) after this long.
    short: Duration,
}

impl Default for Hangs {
    fn default() -> Hangs {
        Hangs::new()
    }
}

impl Hangs {
    /// With the first debugger on `PATH`, if any.
    pub fn new() -> Hangs {
        Hangs::with_debugger(Debugger::find())
    }

    /// With this debugger (`None`: plain time limits after a hang).
    pub fn with_debugger(debugger: Option<Debugger>) -> Hangs {
        Hangs {
            debugger,
            known: Vec::new(),
            unexplained: None,
            short: Duration::from_secs(3),
        }
    }

    /// The limit after a first hang for the tests that follow.
    pub fn set_short(&mut self, short: Duration) {
        self.short = short;
    }

    fn any(&self) -> bool {
        !self.known.is_empty() || self.unexplained.is_some()
    }
}

/// One test to run.
pub struct TestRun<'a> {
    pub exe: &'a Path,
    pub test: &'a str,
    pub timeout: Duration,
    /// Folder for the test's output log.
    pub scratch: &'a Path,
    pub env: &'a [(String, String)],
    pub code: &'a LearnerCode,
}

fn spawn(t: &TestRun, log_path: &Path, backtrace: bool) -> Result<Child> {
    std::fs::create_dir_all(t.scratch)?;
    let log = std::fs::File::create(log_path)?;
    let mut cmd = Command::new(t.exe);
    // --nocapture: a passing test's stderr must reach the log, where a
    // `[skipped]` line (require_gpu) turns the pass into a skip.
    cmd.args(["--exact", t.test, "--test-threads=1", "--nocapture"])
        .env("RUST_BACKTRACE", if backtrace { "1" } else { "0" })
        .env("RUST_TEST_THREADS", "1")
        .envs(t.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    stack::allow_tracing(&mut cmd);
    cmd.spawn()
        .with_context(|| format!("starting {}", t.exe.display()))
}

fn stop(child: &mut Child) {
    child.kill().ok();
    child.wait().ok();
}

/// Runs one test alone in its own process and classifies what it did.
/// Output goes through a file so a chatty test cannot block.
pub fn run_one(t: &TestRun, hangs: &mut Hangs) -> Result<Outcome> {
    let log_path = t.scratch.join(format!("{}.log", t.test));
    let mut child = spawn(t, &log_path, false)?;
    let started = Instant::now();
    // after a hang: look every `short` whether it is stuck in the same place
    let short = hangs.short.min(t.timeout);
    let mut next_look = hangs.any().then_some(short);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let elapsed = started.elapsed();
        if next_look.is_some_and(|at| elapsed >= at) {
            if let Some(o) = look_early(&mut child, t, hangs, elapsed, short) {
                return Ok(o);
            }
            next_look = Some(started.elapsed() + short);
        }
        if elapsed >= t.timeout {
            return Ok(timed_out(&mut child, t, hangs));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let output = std::fs::read_to_string(&log_path).unwrap_or_default();
    let mut outcome = classify(&output, status.code(), signal_of(&status), t.code);
    if let Outcome::Panic {
        location: Some(location),
        your_line,
        ..
    } = &mut outcome
    {
        if is_foreign(location) {
            *your_line = learners_line(t);
        }
    }
    Ok(outcome)
}

/// Where gdb finds a test binary's symbols without its debug info.
fn symbols(t: &TestRun) -> std::path::PathBuf {
    stack::symbols_for(t.exe, &t.scratch.with_file_name("stacks"))
}

/// A test still running after the short limit (or another short limit
/// later), after an earlier hang: is it in a function known to hang?
/// `Some(outcome)` when it was stopped.
fn look_early(
    child: &mut Child,
    t: &TestRun,
    hangs: &Hangs,
    elapsed: Duration,
    early: Duration,
) -> Option<Outcome> {
    match hangs.debugger {
        Some(debugger) => {
            let frames = stack::sample(debugger, child.id(), &symbols(t), SAMPLE_LIMIT)?;
            let (site, test) = hangs.known.iter().find(|(site, _)| {
                frames
                    .iter()
                    .any(|f| stack::same_function(&f.function, &site.function))
            })?;
            stop(child);
            Some(Outcome::Timeout {
                seconds: elapsed.as_secs().max(1),
                site: Some(site.clone()),
                same_as: Some(test.clone()),
                shortened: false,
            })
        }
        None => {
            let first = hangs.unexplained.clone()?;
            stop(child);
            Some(Outcome::Timeout {
                seconds: early.as_secs().max(1),
                site: None,
                same_as: Some(first),
                shortened: true,
            })
        }
    }
}

/// The full limit passed: read where it is, stop it, remember the site.
fn timed_out(child: &mut Child, t: &TestRun, hangs: &mut Hangs) -> Outcome {
    let pid = child.id();
    let frames = hangs
        .debugger
        .and_then(|d| stack::sample(d, pid, &symbols(t), SAMPLE_LIMIT));
    let base = stack::load_base(pid, t.exe);
    stop(child);
    if frames.is_none() {
        // no debugger, or it could not attach: plain time limits from now on
        hangs.debugger = None;
    }
    let line = |f: &stack::Frame| {
        let offset = f.pc?.checked_sub(base?)?.checked_sub(1)?;
        stack::line_of(t.exe, offset)
    };
    let site = frames.and_then(|f| stack::learner_frame(&f, t.code, line));
    match &site {
        Some(s)
            if !hangs
                .known
                .iter()
                .any(|(k, _)| stack::same_function(&k.function, &s.function)) =>
        {
            hangs.known.push((s.clone(), t.test.to_string()));
        }
        Some(_) => {}
        None => {
            hangs.unexplained.get_or_insert_with(|| t.test.to_string());
        }
    }
    Outcome::Timeout {
        seconds: t.timeout.as_secs(),
        site,
        same_as: None,
        shortened: false,
    }
}

/// A panic location outside the learner's code and the grader's tests:
/// inside the standard library or a dependency such as mlx-rs.
fn is_foreign(location: &str) -> bool {
    location.starts_with('/')
        || location.contains(".cargo/registry/")
        || location.contains("library/core/")
        || location.contains("library/std/")
}

/// Runs the test again with `RUST_BACKTRACE=1` to find the learner's line
/// on the way to a panic that happened inside a dependency.
fn learners_line(t: &TestRun) -> Option<String> {
    let log_path = t.scratch.join(format!("{}.backtrace.log", t.test));
    let mut child = spawn(t, &log_path, true).ok()?;
    let started = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if started.elapsed() < t.timeout => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => {
                stop(&mut child);
                return None;
            }
        }
    }
    let output = std::fs::read_to_string(&log_path).ok()?;
    your_line_in_backtrace(&output, t.code)
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
