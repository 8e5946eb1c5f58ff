//! `cargo xtask gpu-pack [--out DIR]`: builds here and gathers what a lent
//! GPU machine (no Rust toolchain, no network, 64 MiB carried per call)
//! needs to run, from a copy of this repository's tracked files:
//! `check day8..day14 --solution --device gpu --no-build`, the same against
//! the stubs, and `bench week2 --device gpu --no-build --synthetic`.
//!
//! Gathered, at the paths the programs look for them (relative to the
//! repository root): the grader's test binaries of both feature sets and
//! the `target/xtask-check/built-*.json` files `check --no-build` reads
//! them from; `target/debug/xtask`; `target/debug/examples/gpu_probe`
//! (`--device` asks it); `target/bench/bin/tiny-llm-bench-reference`; the
//! unpacked CUDA wheel's `libmlx.so`, `include/cccl` (MLX's NVRTC needs
//! it) and `mlx_cuda_13.libs/` (`target/mlx/cuda-dist`, from `setup
//! --backend cuda`); the Python wheels `mlx` 0.32.2 (cp312, the machine's
//! Python) and `mlx-lm` 0.32.2 (`fixtures/requirements.txt`'s pins; what
//! mlx-lm needs besides, the machine has); the mutants of
//! `docs/gpu/mutants/*.patch` (module `gpu_mutants`). Executables are
//! stripped. `--tests day12,day16` packs only those test targets, `xtask`,
//! `gpu_probe` and the CUDA libraries (no bench, mutants, wheels or CUTLASS
//! headers): `check dayN` there, in two parts instead of three.
//!
//! All of it is one `tar` stream compressed with `xz`, cut into pieces of
//! at most `--part-mib` MiB, one per folder `part1/`, `part2/`, ..., each
//! with `MANIFEST` (the pieces, their sha256, and the root the binaries
//! were built in, which `env!("CARGO_MANIFEST_DIR")` fixed in them): carry
//! one folder per call. `docs/gpu/on-device.sh` puts them back together
//! there.
use crate::util::{self, Step};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The pins of `fixtures/requirements.txt` for the machine's Python 3.12.
const WHEELS: [&str; 2] = ["mlx==0.32.2", "mlx-lm==0.32.2"];

#[derive(clap::Args, Debug)]
pub struct GpuPackArgs {
    /// Where the parts go [default: .gpu in the repository root].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Largest piece, in MiB. One call carries at most 64 MiB in all,
    /// the repository's tracked files (about 16 MB) included, so a piece
    /// of 40 MiB leaves room; checked before anything is built.
    #[arg(long, default_value_t = 40)]
    pub part_mib: u64,
    /// Gather what the last build left (no cargo run).
    #[arg(long)]
    pub no_build: bool,
    /// Only cut the archive the last run left (target/gpu-pack.tar.xz)
    /// into parts again (for another --part-mib).
    #[arg(long)]
    pub split_only: bool,
    /// Pack only these grader test targets (comma-separated, e.g.
    /// `day12,day16`; both feature sets), with `xtask`, `gpu_probe` and the
    /// CUDA libraries: enough for `on-device.sh check dayN` and
    /// `check-stubs dayN`, in fewer parts. No bench binary, mutants,
    /// Python wheels or CUTLASS headers (so no `bench` or `mutants` there).
    #[arg(long, value_delimiter = ',', value_name = "TARGETS")]
    pub tests: Vec<String>,
}

/// What one `run` call may carry in all (the device README's limit).
const CALL_LIMIT: u64 = 64 * 1024 * 1024;

/// Bytes of the files git tracks here (they travel with every call).
fn tracked_bytes() -> Result<u64> {
    let root = util::project_root();
    let out = Command::new("git")
        .current_dir(&root)
        .args(["ls-files", "-z"])
        .output()?;
    if !out.status.success() {
        bail!("git ls-files failed");
    }
    Ok(out
        .stdout
        .split(|b| *b == 0)
        .filter(|p| !p.is_empty())
        .filter_map(|p| std::fs::metadata(root.join(String::from_utf8_lossy(p).as_ref())).ok())
        .map(|m| m.len())
        .sum())
}

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(util::project_root());
    c
}

/// The builds: grader tests with the reference and with the stubs (the
/// `Build`s `check --solution` and `check` make), the probe, and (unless
/// `tests_only`) the reference bench binary.
fn build_all(tests_only: bool) -> Result<()> {
    let root = util::project_root();
    for (features, no_default) in [(vec!["solutions".to_string()], true), (vec![], false)] {
        let b = crate::grade::Build {
            workspace: root.clone(),
            package: "tiny-llm-grader".into(),
            no_default_features: no_default,
            features,
            target_dir: None,
            show_progress: true,
        };
        if let crate::grade::Built::Failed { first_error } = crate::grade::build(&b)? {
            bail!("the grader tests do not compile: {first_error}");
        }
    }
    let logs = util::target_dir().join("gpu-pack-logs");
    if tests_only {
        let step = Step::start("build gpu_probe");
        util::run_logged(
            cargo().args(["build", "-p", "tiny-llm-common", "--example", "gpu_probe"]),
            &logs.join("gpu_probe.log"),
        )?;
        step.done();
        return Ok(());
    }
    let step = Step::start("build gpu_probe and tiny-llm-bench (reference, release)");
    util::run_logged(
        cargo().args(["build", "-p", "tiny-llm-common", "--example", "gpu_probe"]),
        &logs.join("gpu_probe.log"),
    )?;
    util::run_logged(
        cargo().args([
            "build",
            "--release",
            "-p",
            "tiny-llm-bench",
            "--no-default-features",
            "--features",
            "solutions",
        ]),
        &logs.join("bench.log"),
    )?;
    let dest = util::target_dir().join("bench").join("bin");
    std::fs::create_dir_all(&dest)?;
    std::fs::copy(
        util::target_dir().join("release").join("tiny-llm-bench"),
        dest.join("tiny-llm-bench-reference"),
    )?;
    step.done();
    Ok(())
}

/// Paths (relative to the repository root) of the test binaries a
/// `built-*.json` names (only the targets in `only`, when it is not empty),
/// and that file.
fn test_binaries(json: &Path, only: &[String]) -> Result<Vec<PathBuf>> {
    let text = std::fs::read_to_string(json)
        .with_context(|| format!("{} is missing (build first)", json.display()))?;
    let exes: std::collections::BTreeMap<String, PathBuf> = serde_json::from_str(&text)?;
    if let Some(t) = only.iter().find(|t| !exes.contains_key(*t)) {
        bail!(
            "--tests {t}: no such grader test target in {} (targets: {})",
            json.display(),
            exes.keys().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let mut out = vec![PathBuf::from("target/xtask-check").join(json.file_name().expect("a file"))];
    for (target, exe) in &exes {
        if !only.is_empty() && !only.contains(target) {
            continue;
        }
        let s = exe.to_string_lossy();
        let rel = s
            .rsplit_once("/target/")
            .map(|(_, r)| r.to_string())
            .with_context(|| format!("{s} is not under a target/ folder"))?;
        out.push(PathBuf::from("target").join(rel));
    }
    Ok(out)
}

/// Copies `rel` from the repository into `stage`, stripping executables.
fn stage_file(stage: &Path, rel: &Path, strip: bool) -> Result<()> {
    let from = util::project_root().join(rel);
    let to = stage.join(rel);
    std::fs::create_dir_all(to.parent().expect("has a parent"))?;
    if strip {
        let ok = Command::new("strip")
            .arg("-o")
            .arg(&to)
            .arg(&from)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Ok(());
        }
    }
    std::fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
    Ok(())
}

/// `cp -a` of a folder into the stage.
fn stage_dir(stage: &Path, rel: &str) -> Result<()> {
    let from = util::project_root().join(rel);
    if !from.is_dir() {
        bail!(
            "{} is missing: run `cargo xtask setup --backend cuda` first (it downloads and \
             unpacks the CUDA wheel even without a GPU)",
            from.display()
        );
    }
    let to = stage.join(rel);
    std::fs::create_dir_all(to.parent().expect("has a parent"))?;
    let ok = Command::new("cp")
        .arg("-a")
        .arg(&from)
        .arg(&to)
        .status()?
        .success();
    if !ok {
        bail!("cp -a {} failed", from.display());
    }
    Ok(())
}

/// The wheels, downloaded once into `target/gpu-wheels` (pip of the kit's venv).
fn wheels() -> Result<PathBuf> {
    let dir = util::target_dir().join("gpu-wheels");
    let have = std::fs::read_dir(&dir)
        .map(|d| d.filter_map(|e| e.ok()).count())
        .unwrap_or(0);
    if have >= WHEELS.len() {
        return Ok(dir);
    }
    let python = crate::venv::ensure()?;
    let mut cmd = Command::new(python);
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
    ])
    .args([
        "--python-version",
        "3.12",
        "--platform",
        "manylinux_2_35_x86_64",
    ])
    .args(WHEELS)
    .arg("-d")
    .arg(&dir);
    util::run_logged(
        &mut cmd,
        &util::target_dir().join("gpu-pack-logs").join("wheels.log"),
    )?;
    Ok(dir)
}

/// Splits `file` into pieces of at most `max` bytes, piece `i` written to
/// `out/part<i+1>/<name>.<i:02>`; returns the pieces' paths.
pub fn split(file: &Path, out: &Path, max: u64) -> Result<Vec<PathBuf>> {
    use std::io::{Read, Write};
    if max == 0 {
        bail!("--part-mib must be at least 1");
    }
    let name = file
        .file_name()
        .expect("a file")
        .to_string_lossy()
        .to_string();
    let mut f = std::fs::File::open(file)?;
    let mut pieces = Vec::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let path = out
            .join(format!("part{}", pieces.len() + 1))
            .join(format!("{name}.{:02}", pieces.len()));
        let mut written = 0u64;
        let mut w: Option<std::fs::File> = None;
        while written < max {
            let want = (max - written).min(buf.len() as u64) as usize;
            let n = f.read(&mut buf[..want])?;
            if n == 0 {
                break;
            }
            if w.is_none() {
                std::fs::create_dir_all(path.parent().expect("has a parent"))?;
                w = Some(std::fs::File::create(&path)?);
            }
            w.as_mut().expect("opened").write_all(&buf[..n])?;
            written += n as u64;
        }
        if w.is_none() {
            break;
        }
        pieces.push(path);
        if written < max {
            break;
        }
    }
    Ok(pieces)
}

pub fn run(args: &GpuPackArgs) -> Result<()> {
    let root = util::project_root();
    let out = args.out.clone().unwrap_or_else(|| root.join(".gpu"));
    let tree = tracked_bytes()?;
    let piece = args.part_mib * 1024 * 1024;
    if tree + piece + 4096 > CALL_LIMIT {
        bail!(
            "--part-mib {}: a part ({piece} bytes) and the tracked files that travel with it \
             ({tree} bytes) exceed the 64 MiB one call carries; use --part-mib {} or less",
            args.part_mib,
            (CALL_LIMIT - tree - 4096) / (1024 * 1024)
        );
    }
    exclude_default_out()?;
    let archive = util::target_dir().join("gpu-pack.tar.xz");
    if !args.split_only {
        if !args.no_build {
            build_all(!args.tests.is_empty())?;
        }
        gather_and_compress(&archive, &args.tests)?;
    }
    write_parts(&archive, &out, piece, &root)
}

/// Stages every file (see the module's doc) and writes `archive`; with
/// `tests` not empty, only those test targets and what runs them (see
/// [`GpuPackArgs::tests`]).
fn gather_and_compress(archive: &Path, tests: &[String]) -> Result<()> {
    let tests_only = !tests.is_empty();
    let step = Step::start("gather the files");
    let stage = util::target_dir().join("gpu-pack-stage");
    if stage.exists() {
        std::fs::remove_dir_all(&stage)?;
    }
    let check = util::target_dir().join("xtask-check");
    let mut files = Vec::new();
    for tag in ["solutions-nodefault", "default"] {
        files.extend(test_binaries(
            &check.join(format!("built-tiny-llm-grader-{tag}.json")),
            tests,
        )?);
    }
    for (i, rel) in files.iter().enumerate() {
        // The built-*.json files (every list's first entry) are text.
        let is_json = rel.extension().is_some_and(|e| e == "json");
        stage_file(&stage, rel, !is_json && i > 0)?;
    }
    let exes = [
        "target/debug/xtask",
        "target/debug/examples/gpu_probe",
        "target/bench/bin/tiny-llm-bench-reference",
    ];
    for exe in &exes[..if tests_only { 2 } else { 3 }] {
        stage_file(&stage, Path::new(exe), true)?;
    }
    let dirs = [
        "target/mlx/cuda-dist/mlx/lib",
        "target/mlx/cuda-dist/mlx/include/cccl",
        "target/mlx/cuda-dist/mlx_cuda_13.libs",
        // mlx-lm's quantized matmuls (MLX's own qmm kernels) include CUTLASS/CuTe headers
        "target/mlx/cuda-dist/mlx/include/cute",
        "target/mlx/cuda-dist/mlx/include/cutlass",
    ];
    for d in &dirs[..if tests_only { 3 } else { 5 }] {
        stage_dir(&stage, d)?;
    }
    if tests_only {
        step.done();
        return compress(&stage, archive);
    }
    let mutants = crate::gpu_mutants::stage(&stage)?;
    if mutants > 0 {
        eprintln!("  .. {mutants} mutants (docs/gpu/mutants/*.patch) built and packed");
    }
    let wheels = wheels()?;
    let wdest = stage.join("target/gpu-wheels");
    std::fs::create_dir_all(&wdest)?;
    for e in std::fs::read_dir(&wheels)? {
        let e = e?;
        std::fs::copy(e.path(), wdest.join(e.file_name()))?;
    }
    step.done();
    compress(&stage, archive)
}

/// `tar` of `stage`'s `target/` through `xz` into `archive`.
fn compress(stage: &Path, archive: &Path) -> Result<()> {
    let step = Step::start("tar | xz -T0 (a few minutes)");
    let ok = Command::new("tar")
        .arg("-C")
        .arg(stage)
        .args(["-cf", "-", "target"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|tar| {
            let xz = Command::new("xz")
                .args(["-T0", "-6", "-c"])
                .stdin(tar.stdout.expect("piped"))
                .stdout(std::fs::File::create(archive)?)
                .status()?;
            Ok(xz.success())
        })?;
    if !ok {
        bail!("tar | xz failed");
    }
    step.done();
    Ok(())
}

/// Cuts `archive` into `out/partN/` with a MANIFEST in each.
fn write_parts(archive: &Path, out: &Path, piece: u64, root: &Path) -> Result<()> {
    if !archive.is_file() {
        bail!(
            "{} is missing: run gpu-pack without --split-only",
            archive.display()
        );
    }
    let step = Step::start("split into parts");
    if out.exists() {
        std::fs::remove_dir_all(out)?;
    }
    std::fs::create_dir_all(out)?;
    let pieces = split(archive, out, piece)?;
    let mut manifest = format!("build_root {}\nparts {}\n", root.display(), pieces.len());
    for p in &pieces {
        manifest.push_str(&format!(
            "piece {} {}\n",
            util::sha256_file(p)?,
            p.file_name().expect("a file").to_string_lossy()
        ));
    }
    for i in 1..=pieces.len() {
        std::fs::write(out.join(format!("part{i}")).join("MANIFEST"), &manifest)?;
    }
    step.done();
    println!(
        "{} parts in {} (carry one folder per call, e.g. carry [\"{}\"]; then there: \
         docs/gpu/on-device.sh check|check-stubs|bench|mutants)",
        pieces.len(),
        out.display(),
        out.join("part1")
            .strip_prefix(root)
            .unwrap_or(&out.join("part1"))
            .display()
    );
    Ok(())
}

/// Adds `/.gpu/` to `.git/info/exclude` when absent (never to a tracked
/// `.gitignore`). In a worktree, `.git` is a file naming the git dir; the
/// exclude file is the common one's.
fn exclude_default_out() -> Result<()> {
    let out = Command::new("git")
        .current_dir(util::project_root())
        .args(["rev-parse", "--git-common-dir"])
        .output()?;
    if !out.status.success() {
        return Ok(());
    }
    let common = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    let common = if common.is_absolute() {
        common
    } else {
        util::project_root().join(common)
    };
    let path = common.join("info").join("exclude");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    if text
        .lines()
        .any(|l| l.trim() == "/.gpu/" || l.trim() == ".gpu/")
    {
        return Ok(());
    }
    std::fs::create_dir_all(path.parent().expect("has a parent"))?;
    let sep = if text.is_empty() || text.ends_with('\n') {
        ""
    } else {
        "\n"
    };
    std::fs::write(&path, format!("{text}{sep}/.gpu/\n"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_cuts_at_the_limit_and_keeps_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..2500u32).map(|i| (i * 7 % 251) as u8).collect();
        let file = dir.path().join("a.tar.xz");
        std::fs::write(&file, &data).unwrap();
        let out = dir.path().join("out");
        let pieces = split(&file, &out, 1000).unwrap();
        let sizes: Vec<u64> = pieces
            .iter()
            .map(|p| std::fs::metadata(p).unwrap().len())
            .collect();
        assert_eq!(sizes, vec![1000, 1000, 500]);
        assert_eq!(pieces[2], out.join("part3").join("a.tar.xz.02"));
        let joined: Vec<u8> = pieces
            .iter()
            .flat_map(|p| std::fs::read(p).unwrap())
            .collect();
        assert_eq!(joined, data);
        // An exact multiple makes no empty last piece.
        std::fs::write(&file, &data[..2000]).unwrap();
        let out2 = dir.path().join("out2");
        assert_eq!(split(&file, &out2, 1000).unwrap().len(), 2);
        assert!(!out2.join("part3").exists());
    }
}
