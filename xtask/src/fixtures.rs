//! `cargo xtask fixtures check | regen [DAY...]`: the golden fixtures and
//! their hash manifest (`fixtures/MANIFEST.sha256`, `sha256  path` lines
//! like `sha256sum`, paths relative to `fixtures/`).

use crate::util::{self, sha256_file};
use crate::venv;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The most the committed fixtures may weigh in total.
pub const MAX_TOTAL_BYTES: u64 = 20 * 1024 * 1024;

#[derive(clap::Subcommand, Debug)]
pub enum FixturesCmd {
    /// Verify every fixture against MANIFEST.sha256 (and that none is unlisted).
    Check,
    /// Regenerate fixtures with Python MLX in target/venv, then rewrite the manifest.
    Regen {
        /// Days to regenerate (default: all the generator knows).
        days: Vec<String>,
    },
    /// Rewrite MANIFEST.sha256 from the files present (after running a generator by hand).
    Manifest,
}

pub fn dir() -> PathBuf {
    util::project_root().join("fixtures")
}

fn manifest_path(root: &Path) -> PathBuf {
    root.join("MANIFEST.sha256")
}

/// Files that are not fixtures: the generator, its pins, the manifest.
fn is_tooling(rel: &str) -> bool {
    rel.starts_with("gen/")
        || rel.contains("__pycache__")
        || matches!(rel, "requirements.txt" | "MANIFEST.sha256" | "README.md")
}

/// Every fixture file under `root`, as sorted relative paths.
pub fn data_files(root: &Path) -> Result<Vec<String>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
        for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let path = entry?.path();
            if path.is_dir() {
                walk(root, &path, out)?;
            } else {
                let rel = path
                    .strip_prefix(root)?
                    .to_string_lossy()
                    .replace('\\', "/");
                if !is_tooling(&rel) {
                    out.push(rel);
                }
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort();
    Ok(out)
}

fn parse_manifest(text: &str) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (hash, rel) = line
            .split_once("  ")
            .with_context(|| format!("MANIFEST.sha256 line {}: expected `sha256  path`", i + 1))?;
        map.insert(rel.trim().to_string(), hash.trim().to_string());
    }
    Ok(map)
}

/// Problems found by comparing `root`'s files with its manifest.
pub fn verify(root: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(manifest_path(root))
        .with_context(|| format!("reading {}", manifest_path(root).display()))?;
    let listed = parse_manifest(&text)?;
    let present = data_files(root)?;
    let mut problems = Vec::new();
    let mut total = 0u64;
    for rel in &present {
        let path = root.join(rel);
        total += std::fs::metadata(&path)?.len();
        match listed.get(rel) {
            None => problems.push(format!(
                "{rel}: not in MANIFEST.sha256 (run `cargo xtask fixtures regen`)"
            )),
            Some(want) => {
                let got = sha256_file(&path)?;
                if &got != want {
                    problems.push(format!(
                        "{rel}: sha256 {got} differs from the manifest's {want}"
                    ));
                }
            }
        }
    }
    for rel in listed.keys() {
        if !present.contains(rel) {
            problems.push(format!("{rel}: listed in MANIFEST.sha256 but missing"));
        }
    }
    if total > MAX_TOTAL_BYTES {
        problems.push(format!(
            "fixtures weigh {:.1} MB, over the {} MB limit",
            total as f64 / 1e6,
            MAX_TOTAL_BYTES / (1024 * 1024)
        ));
    }
    Ok(problems)
}

/// Writes the manifest for `root`'s current files.
pub fn write_manifest(root: &Path) -> Result<usize> {
    let files = data_files(root)?;
    let mut text = String::from(
        "# sha256 of every golden fixture; `cargo xtask fixtures check` verifies it\n",
    );
    for rel in &files {
        text.push_str(&format!("{}  {rel}\n", sha256_file(&root.join(rel))?));
    }
    std::fs::write(manifest_path(root), text)?;
    Ok(files.len())
}

/// Verifies the committed fixtures; fails naming every bad file.
pub fn check(verbose: bool) -> Result<()> {
    let root = dir();
    let problems = verify(&root)?;
    if !problems.is_empty() {
        bail!(
            "golden fixtures do not match fixtures/MANIFEST.sha256:\n  {}\n(restore them with `git checkout fixtures/`, or regenerate with `cargo xtask fixtures regen`)",
            problems.join("\n  ")
        );
    }
    if verbose {
        println!(
            "fixtures: {} files match MANIFEST.sha256",
            data_files(&root)?.len()
        );
    }
    Ok(())
}

pub fn run(cmd: &FixturesCmd) -> Result<()> {
    match cmd {
        FixturesCmd::Check => check(true),
        FixturesCmd::Manifest => {
            let n = write_manifest(&dir())?;
            println!("fixtures: wrote MANIFEST.sha256 ({n} files)");
            Ok(())
        }
        FixturesCmd::Regen { days } => {
            let python = venv::ensure()?;
            let root = dir();
            util::run_inherit(
                Command::new(&python)
                    .arg("generate.py")
                    .args(days)
                    .current_dir(root.join("gen"))
                    .env("TINY_LLM_FIXTURES", &root),
            )?;
            let n = write_manifest(&root)?;
            println!("fixtures: wrote MANIFEST.sha256 ({n} files)");
            check(false)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("xtask-fixtures-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("day1")).unwrap();
        std::fs::create_dir_all(d.join("gen")).unwrap();
        std::fs::write(d.join("day1/a.safetensors"), b"aaaa").unwrap();
        std::fs::write(d.join("day1/b.npy"), b"bbbb").unwrap();
        std::fs::write(d.join("gen/day1.py"), b"print()").unwrap();
        d
    }

    #[test]
    fn a_changed_byte_names_the_file() {
        let d = tmp("byte");
        assert_eq!(write_manifest(&d).unwrap(), 2);
        assert!(verify(&d).unwrap().is_empty());
        std::fs::write(d.join("day1/b.npy"), b"bbbc").unwrap();
        let p = verify(&d).unwrap();
        assert_eq!(p.len(), 1);
        assert!(p[0].starts_with("day1/b.npy: sha256"), "{p:?}");
    }

    #[test]
    fn unlisted_and_missing_files_are_reported() {
        let d = tmp("listing");
        write_manifest(&d).unwrap();
        std::fs::write(d.join("day1/c.npy"), b"c").unwrap();
        std::fs::remove_file(d.join("day1/a.safetensors")).unwrap();
        let p = verify(&d).unwrap().join("\n");
        assert!(p.contains("day1/c.npy: not in MANIFEST"), "{p}");
        assert!(
            p.contains("day1/a.safetensors: listed in MANIFEST.sha256 but missing"),
            "{p}"
        );
    }

    #[test]
    fn the_committed_fixtures_match_their_manifest() {
        let problems = verify(&dir()).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
    }
}
