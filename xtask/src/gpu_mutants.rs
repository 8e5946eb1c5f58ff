//! The mutants `gpu-pack` carries: each `docs/gpu/mutants/dayN-<what>.patch`
//! (a `git diff` that breaks one GPU kernel of the reference: a wrong scale,
//! group size, a dropped bias, ...) is applied here, the grader test
//! binaries that should catch it are built with the reference (`--features
//! solutions`) and copied aside as `target/gpu-mutants/<name>__<target>`,
//! and the patch is reverted. The targets: those a `# test: A B` line
//! before the diff names (git apply skips such lines), else day N's; a
//! target with no `grader/tests/<target>.rs` here is left out with a note.
//! There, `docs/gpu/on-device.sh mutants` runs each binary on the GPU and
//! says which tests caught it (a mutant no test fails is "survived").
use crate::util;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The test targets a patch names (`# test: A B`), if any.
pub fn named_targets(text: &str) -> Vec<String> {
    text.lines()
        .take_while(|l| !l.starts_with("diff "))
        .filter_map(|l| l.trim().strip_prefix("# test:"))
        .flat_map(|t| t.split_whitespace().map(str::to_string))
        .collect()
}

/// The patches, sorted: `(name, test targets, patch)`.
pub fn patches() -> Result<Vec<(String, Vec<String>, PathBuf)>> {
    let dir = util::project_root().join("docs/gpu/mutants");
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(out);
    };
    for e in entries {
        let path = e?.path();
        if path.extension().is_none_or(|x| x != "patch") {
            continue;
        }
        let name = path
            .file_stem()
            .expect("a file")
            .to_string_lossy()
            .to_string();
        let mut targets = named_targets(&std::fs::read_to_string(&path)?);
        if targets.is_empty() {
            targets.push(test_target(&name)?);
        }
        out.push((name.clone(), targets, path));
    }
    out.sort();
    Ok(out)
}

/// `day10-scale-off-by-one` -> `day10`.
pub fn test_target(name: &str) -> Result<String> {
    let day = name.split('-').next().unwrap_or("");
    let digits = day.strip_prefix("day").unwrap_or("");
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        bail!(
            "docs/gpu/mutants/{name}.patch: the name must start with the day's test target \
             (dayN-<what>.patch)"
        );
    }
    Ok(day.to_string())
}

fn git_apply(patch: &Path, reverse: bool) -> Result<()> {
    let mut cmd = Command::new("git");
    cmd.current_dir(util::project_root()).arg("apply");
    if reverse {
        cmd.arg("-R");
    }
    if !cmd.arg(patch).status()?.success() {
        bail!(
            "git apply{} {} failed",
            if reverse { " -R" } else { "" },
            patch.display()
        );
    }
    Ok(())
}

/// Builds one mutant's test binaries (patch applied, then reverted whatever
/// happened) and returns `(target, path in target/)`.
fn build_one(targets: &[String], patch: &Path) -> Result<Vec<(String, PathBuf)>> {
    git_apply(patch, false)?;
    let built = targets
        .iter()
        .map(|t| build_target(t, patch).map(|p| (t.clone(), p)))
        .collect();
    git_apply(patch, true)?;
    built
}

fn build_target(target: &str, patch: &Path) -> Result<PathBuf> {
    {
        let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(util::project_root())
            .args([
                "test",
                "--no-run",
                "--message-format=json",
                "-p",
                "tiny-llm-grader",
            ])
            .args([
                "--no-default-features",
                "--features",
                "solutions",
                "--test",
                target,
            ])
            .stderr(Stdio::inherit())
            .output()?;
        if !out.status.success() {
            bail!("the mutant {} does not compile", patch.display());
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["target"]["name"] == target)
            .find_map(|v| v["executable"].as_str().map(PathBuf::from))
            .context("cargo named no test executable")
    }
}

/// Builds every mutant and copies it (stripped) into
/// `stage/target/gpu-mutants/<name>__<target>`; returns how many binaries.
pub fn stage(stage: &Path) -> Result<usize> {
    let list = patches()?;
    if list.is_empty() {
        return Ok(0);
    }
    let dest = stage.join("target/gpu-mutants");
    std::fs::create_dir_all(&dest)?;
    let mut n = 0;
    for (name, targets, patch) in &list {
        let present: Vec<String> = targets
            .iter()
            .filter(|t| {
                let here = util::project_root()
                    .join("grader/tests")
                    .join(format!("{t}.rs"))
                    .is_file();
                if !here {
                    eprintln!("  .. mutant {name}: no grader/tests/{t}.rs here, left out");
                }
                here
            })
            .cloned()
            .collect();
        for (target, exe) in build_one(&present, patch)? {
            n += 1;
            stage_exe(&exe, &dest.join(format!("{name}__{target}")))?;
        }
    }
    Ok(n)
}

/// Copies `exe` to `to`, stripped when `strip` works.
fn stage_exe(exe: &Path, to: &Path) -> Result<()> {
    {
        let stripped = Command::new("strip")
            .arg("-o")
            .arg(to)
            .arg(exe)
            .status()
            .is_ok_and(|s| s.success());
        if !stripped {
            std::fs::copy(exe, to)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutant_names_give_their_day() {
        assert_eq!(test_target("day10-scale-off-by-one").unwrap(), "day10");
        assert_eq!(test_target("day12").unwrap(), "day12");
        let e = test_target("scale-day10").unwrap_err().to_string();
        assert!(e.contains("dayN-<what>.patch"), "{e}");
        assert!(test_target("dayX-y").is_err());
        let text = "# test: gpu_kernels day12\n# more words\ndiff --git a/x b/x\n# test: no\n";
        assert_eq!(named_targets(text), vec!["gpu_kernels", "day12"]);
        assert!(named_targets("diff --git a/x b/x\n").is_empty());
    }
}
