//! Building the grader's test binaries (`cargo test --no-run`), showing
//! cargo's progress while it compiles: a first build takes minutes.

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where and how to build the tests.
#[derive(Debug, Clone, Default)]
pub struct Build {
    /// Folder with the workspace's `Cargo.toml`.
    pub workspace: PathBuf,
    /// The package holding the tests.
    pub package: String,
    /// `--features` value (may be empty).
    pub features: Vec<String>,
    /// `--no-default-features` (a reference build leaves the learner's crate out).
    pub no_default_features: bool,
    /// `CARGO_TARGET_DIR` override (the fixture course uses its own).
    pub target_dir: Option<PathBuf>,
    /// Show cargo's progress on stderr while it compiles.
    pub show_progress: bool,
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
        .arg(&b.package)
        // cargo draws its progress bar into a pipe too when asked; we read it
        .env("CARGO_TERM_PROGRESS_WHEN", "always")
        .env("CARGO_TERM_PROGRESS_WIDTH", "100");
    if b.no_default_features {
        cmd.arg("--no-default-features");
    }
    if !b.features.is_empty() {
        cmd.arg("--features").arg(b.features.join(","));
    }
    if let Some(t) = &b.target_dir {
        cmd.env("CARGO_TARGET_DIR", t);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running cargo test --no-run")?;
    let stderr = child.stderr.take().expect("piped");
    let show = b.show_progress;
    let progress = std::thread::spawn(move || follow_progress(stderr, show));
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut stdout)?;
    let status = child.wait()?;
    let stderr_tail = progress.join().unwrap_or_default();

    let mut exes = BTreeMap::new();
    let mut first_error = None;
    for line in stdout.lines() {
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
    if !status.success() {
        let first_error = first_error.unwrap_or_else(|| stderr_tail.join("\n"));
        return Ok(Built::Failed { first_error });
    }
    let path = last_build_path(b);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, serde_json::to_string_pretty(&exes)?)?;
    Ok(Built::Ok(exes))
}

/// One thing cargo says on stderr: a crate started, or its progress bar.
#[derive(Debug, PartialEq)]
enum CargoLine {
    Compiling(String),
    Progress { done: u32, total: u32 },
    Other,
}

fn parse_cargo_line(line: &str) -> CargoLine {
    let t = line.trim();
    if let Some(rest) = t.strip_prefix("Compiling ") {
        let name = rest.split_whitespace().next().unwrap_or(rest);
        return CargoLine::Compiling(name.to_string());
    }
    if let Some(rest) = t.strip_prefix("Building [") {
        // `Building [===>    ] 37/212: mlx-sys(build), ...`
        if let Some((_, after)) = rest.split_once("] ") {
            let counts = after.split(':').next().unwrap_or("");
            if let Some((a, b)) = counts.split_once('/') {
                if let (Ok(done), Ok(total)) = (a.trim().parse(), b.trim().parse()) {
                    return CargoLine::Progress { done, total };
                }
            }
        }
    }
    CargoLine::Other
}

/// Reads cargo's stderr to its end: shows how far the build is (a bar on a
/// terminal; a line every 15 s otherwise), returns the last lines that were
/// not progress (for a failure without a rustc diagnostic).
fn follow_progress(stderr: impl Read, show: bool) -> Vec<String> {
    let on_terminal = show && std::io::stderr().is_terminal();
    let bar = on_terminal.then(|| {
        // length 1 until cargo says how many units there are (0/0 draws full)
        let bar = indicatif::ProgressBar::new(1);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "  building the tests [{bar:30}] {pos}/{len} crates: {msg} ({elapsed})",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar
    });
    let mut tail: Vec<String> = Vec::new();
    let mut compiled = 0u32;
    let mut counts = (0u32, 0u32);
    let mut last_note = Instant::now();
    let mut said_first_build = false;
    let reader = std::io::BufReader::new(stderr);
    // cargo ends progress updates with '\r' and other lines with '\n'
    for chunk in reader.split(b'\n') {
        let Ok(chunk) = chunk else { break };
        let text = String::from_utf8_lossy(&chunk).to_string();
        for line in text.split('\r').filter(|l| !l.trim().is_empty()) {
            match parse_cargo_line(line) {
                CargoLine::Compiling(name) => {
                    compiled += 1;
                    if !show {
                        continue;
                    }
                    if compiled == 10 && !said_first_build {
                        said_first_build = true;
                        let note = "  (compiling dependencies: the first build takes a few minutes; later ones seconds)";
                        match &bar {
                            Some(bar) => bar.println(note),
                            None => eprintln!("{note}"),
                        }
                    }
                    match &bar {
                        Some(bar) => bar.set_message(name),
                        None if last_note.elapsed() >= Duration::from_secs(15) => {
                            last_note = Instant::now();
                            eprintln!(
                                "  building the tests: {}/{} crates, now {name}",
                                counts.0, counts.1
                            );
                        }
                        None => {}
                    }
                }
                CargoLine::Progress { done, total } => {
                    counts = (done, total);
                    if let Some(bar) = &bar {
                        bar.set_length(total.max(1) as u64);
                        bar.set_position(done as u64);
                    }
                }
                CargoLine::Other => {
                    tail.push(line.trim_end().to_string());
                    if tail.len() > 12 {
                        tail.remove(0);
                    }
                }
            }
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    if show && compiled > 0 {
        eprintln!("  built the tests ({compiled} crates compiled)");
    }
    tail
}

/// Where [`build`] records the test binaries it made for these features.
fn last_build_path(b: &Build) -> PathBuf {
    let target = b
        .target_dir
        .clone()
        .unwrap_or_else(|| b.workspace.join("target"));
    let mut tag = if b.features.is_empty() {
        "default".to_string()
    } else {
        b.features.join("+").replace('/', "-")
    };
    if b.no_default_features {
        tag.push_str("-nodefault");
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cargo_progress_lines() {
        assert_eq!(
            parse_cargo_line("   Compiling mlx-sys v0.7.0 (/x)"),
            CargoLine::Compiling("mlx-sys".into())
        );
        assert_eq!(
            parse_cargo_line(
                "    Building [===>          ] 37/212: mlx-sys(build), syn             "
            ),
            CargoLine::Progress {
                done: 37,
                total: 212
            }
        );
        assert_eq!(
            parse_cargo_line("    Finished `test` profile"),
            CargoLine::Other
        );
    }

    #[test]
    fn keeps_the_tail_of_what_is_not_progress() {
        let err = "   Compiling a v1\n    Building [=> ] 1/2: a\r    Building [==] 2/2: b\rerror: failed to run custom build command for `mlx-sys`\nexit status: 1\n";
        let tail = follow_progress(err.as_bytes(), false);
        assert_eq!(
            tail,
            vec![
                "error: failed to run custom build command for `mlx-sys`",
                "exit status: 1"
            ]
        );
    }
}
