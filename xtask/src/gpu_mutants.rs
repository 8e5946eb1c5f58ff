//! The mutants `gpu-pack` carries: each `docs/gpu/mutants/dayN-<what>.patch`
//! (a `git diff` that breaks one GPU kernel of the reference: a wrong scale,
//! group size, a dropped bias, ...) is applied here, day N's grader test
//! binary is built with the reference (`--features solutions`), copied
//! aside as `target/gpu-mutants/dayN-<what>`, and the patch is reverted.
//! There, `docs/gpu/on-device.sh mutants` runs each binary on the GPU and
//! says which tests caught it (a mutant no test fails is "survived").
use crate::util;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The patches, sorted: `(name, day test target, patch)`.
pub fn patches() -> Result<Vec<(String, String, PathBuf)>> {
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
        out.push((name.clone(), test_target(&name)?, path));
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

/// Builds one mutant's test binary (patch applied, then reverted whatever
/// happened) and returns its path in `target/`.
fn build_one(target: &str, patch: &Path) -> Result<PathBuf> {
    git_apply(patch, false)?;
    let built = (|| -> Result<PathBuf> {
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
    })();
    git_apply(patch, true)?;
    built
}

/// Builds every mutant and copies it (stripped) into
/// `stage/target/gpu-mutants/<name>`; returns how many.
pub fn stage(stage: &Path) -> Result<usize> {
    let list = patches()?;
    if list.is_empty() {
        return Ok(0);
    }
    let dest = stage.join("target/gpu-mutants");
    std::fs::create_dir_all(&dest)?;
    for (name, target, patch) in &list {
        let exe = build_one(target, patch)?;
        let to = dest.join(name);
        let stripped = Command::new("strip")
            .arg("-o")
            .arg(&to)
            .arg(&exe)
            .status()
            .is_ok_and(|s| s.success());
        if !stripped {
            std::fs::copy(&exe, &to)?;
        }
    }
    Ok(list.len())
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
    }
}
