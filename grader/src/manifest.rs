//! The fixtures' hash check, for every run of the grader (plain `cargo test`
//! too, not only `cargo xtask fixtures check`): a fixture whose sha256
//! differs from `fixtures/MANIFEST.sha256` fails the test with `[fixture]`
//! naming the file, so a damaged kit is never blamed on the learner's code.
//! Each file is hashed at most once per process.

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::{Mutex, OnceLock};

/// `MANIFEST.sha256`'s lines `<sha256 hex>  <path relative to fixtures/>`
/// (`#` comments and blank lines skipped) as path -> hash.
pub fn parse(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim_end();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (hash, rel) = line
            .split_once("  ")
            .ok_or_else(|| format!("MANIFEST.sha256 line {}: expected `sha256  path`", i + 1))?;
        out.insert(rel.to_string(), hash.to_ascii_lowercase());
    }
    Ok(out)
}

/// Lower-case hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Checks `root/rel` against `manifest` (from [`parse`]); the error names the
/// file and says what to do.
pub fn check_file(
    root: &Path,
    manifest: &BTreeMap<String, String>,
    rel: &str,
) -> Result<(), String> {
    let path = root.join(rel);
    let want = manifest.get(rel).ok_or_else(|| {
        format!(
            "{} is not listed in fixtures/MANIFEST.sha256 (run `cargo xtask fixtures check`)",
            path.display()
        )
    })?;
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let got = sha256_hex(&bytes);
    if &got != want {
        return Err(format!(
            "{} does not match fixtures/MANIFEST.sha256 (sha256 {got}, expected {want}): \
             the kit's fixture is damaged, not your code; restore it \
             (`git checkout -- fixtures/{rel}`) and run `cargo xtask fixtures check`",
            path.display()
        ));
    }
    Ok(())
}

/// The files of `manifest` under the folder `rel_dir` (e.g. `tiny-qwen2`).
pub fn files_under<'a>(manifest: &'a BTreeMap<String, String>, rel_dir: &str) -> Vec<&'a str> {
    let prefix = format!("{}/", rel_dir.trim_end_matches('/'));
    manifest
        .keys()
        .filter(|k| k.starts_with(&prefix))
        .map(String::as_str)
        .collect()
}

/// The kit's manifest, read once per process.
fn kit_manifest() -> &'static BTreeMap<String, String> {
    static M: OnceLock<Result<BTreeMap<String, String>, String>> = OnceLock::new();
    let m = M.get_or_init(|| {
        let path = crate::fixture::fixtures_dir().join("MANIFEST.sha256");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        parse(&text)
    });
    m.as_ref().unwrap_or_else(|e| panic!("[fixture] {e}"))
}

/// Verifies the kit's fixture `rel` (relative to `fixtures/`) once per
/// process; panics with `[fixture] ...` naming it when its hash is wrong.
#[track_caller]
pub fn ensure(rel: &str) {
    static DONE: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let mut done = DONE.lock().unwrap_or_else(|p| p.into_inner());
    let done = done.get_or_insert_with(HashSet::new);
    if done.contains(rel) {
        return;
    }
    if let Err(e) = check_file(&crate::fixture::fixtures_dir(), kit_manifest(), rel) {
        panic!("[fixture] {e}");
    }
    done.insert(rel.to_string());
}

/// Verifies every file the manifest lists under the kit's folder `rel_dir`
/// (a stored model such as `tiny-qwen2`); panics with `[fixture]` when one
/// is damaged or the folder has none.
#[track_caller]
pub fn ensure_dir(rel_dir: &str) {
    let files = files_under(kit_manifest(), rel_dir);
    assert!(
        !files.is_empty(),
        "[fixture] fixtures/MANIFEST.sha256 lists no files under {rel_dir}/"
    );
    for rel in files {
        ensure(rel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch copy of one kit fixture with its own manifest line.
    struct Scratch(std::path::PathBuf);

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn sha256_of_abc_is_the_fips_vector() {
        // FIPS 180-2, appendix B.1
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parse_skips_comments_and_rejects_bad_lines() {
        let m = parse("# c\n\nABC  day1/x.safetensors\n").unwrap();
        assert_eq!(m["day1/x.safetensors"], "abc");
        assert!(parse("abc day1/x").is_err());
    }

    #[test]
    fn kit_fixture_passes_and_a_corrupted_copy_is_named() {
        let rel = "day1/softmax_ax-1_b2x3_f32.safetensors";
        let kit = crate::fixture::fixtures_dir();
        let manifest = kit_manifest();
        check_file(&kit, manifest, rel).unwrap();
        ensure(rel);

        let root = std::env::temp_dir().join(format!("tiny-llm-manifest-{}", std::process::id()));
        let scratch = Scratch(root.clone());
        std::fs::create_dir_all(root.join("day1")).unwrap();
        let mut bytes = std::fs::read(kit.join(rel)).unwrap();
        std::fs::write(root.join(rel), &bytes).unwrap();
        check_file(&root, manifest, rel).unwrap();
        // flip one byte of the tensor data (the last byte of the file)
        *bytes.last_mut().unwrap() ^= 0x01;
        std::fs::write(root.join(rel), &bytes).unwrap();
        let err = check_file(&root, manifest, rel).unwrap_err();
        assert!(err.contains(&root.join(rel).display().to_string()), "{err}");
        assert!(
            err.contains("does not match fixtures/MANIFEST.sha256"),
            "{err}"
        );
        assert!(err.contains(&manifest[rel]), "{err}");
        // unlisted and missing files are named too
        let err = check_file(&root, manifest, "day1/new.safetensors").unwrap_err();
        assert!(err.contains("not listed"), "{err}");
        std::fs::remove_file(root.join(rel)).unwrap();
        assert!(check_file(&root, manifest, rel)
            .unwrap_err()
            .contains("cannot read"));
        drop(scratch);
    }

    #[test]
    fn files_under_a_folder() {
        let m = parse("a  tiny/x\nb  tiny/y\nc  tinier/z\n").unwrap();
        assert_eq!(files_under(&m, "tiny"), vec!["tiny/x", "tiny/y"]);
    }
}
