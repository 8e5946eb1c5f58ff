//! Golden fixtures: one `.safetensors` file per case under `fixtures/<day>/`,
//! written once by `fixtures/gen/*.py` (Python MLX) and hashed in
//! `fixtures/MANIFEST.sha256`. Every file is checked against that manifest
//! before its first use in a process ([`crate::manifest`]).

use mlx_rs::Array;
use std::collections::HashMap;
use std::path::PathBuf;

/// `fixtures/` at the workspace root.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

/// `fixtures/<rel>` (a file), after checking its hash against
/// `fixtures/MANIFEST.sha256`; panics with `[fixture]` naming it when the
/// file is damaged.
#[track_caller]
pub fn checked_file(rel: &str) -> PathBuf {
    crate::manifest::ensure(rel);
    fixtures_dir().join(rel)
}

/// `fixtures/<rel_dir>` (a stored model folder such as `tiny-qwen2`), after
/// checking the hash of every file the manifest lists under it.
#[track_caller]
pub fn checked_dir(rel_dir: &str) -> PathBuf {
    crate::manifest::ensure_dir(rel_dir);
    fixtures_dir().join(rel_dir)
}

/// One fixture case: its tensors and its string metadata.
pub struct Case {
    /// `day/name`, used in failure reports.
    pub id: String,
    tensors: HashMap<String, Array>,
    meta: HashMap<String, String>,
}

impl Case {
    /// Loads `fixtures/<day>/<name>.safetensors`; panics with the path when
    /// it is missing, unreadable or does not match `fixtures/MANIFEST.sha256`
    /// (run `cargo xtask fixtures check`).
    #[track_caller]
    pub fn load(day: &str, name: &str) -> Case {
        crate::device::init();
        let path = checked_file(&format!("{day}/{name}.safetensors"));
        let (tensors, meta) = Array::load_safetensors_with_metadata(&path).unwrap_or_else(|e| {
            panic!(
                "[fixture] cannot read {}: {e}; run `cargo xtask fixtures check`",
                path.display()
            )
        });
        Case {
            id: format!("{day}/{name}"),
            tensors,
            meta,
        }
    }

    /// The tensor `key`; panics naming the case when absent.
    pub fn get(&self, key: &str) -> &Array {
        self.tensors
            .get(key)
            .unwrap_or_else(|| panic!("[fixture] {} has no tensor {key:?}", self.id))
    }

    /// The tensor `key` when present.
    pub fn opt(&self, key: &str) -> Option<&Array> {
        self.tensors.get(key)
    }

    /// A metadata value parsed as `T`, or `None` when the key is absent.
    pub fn meta<T: std::str::FromStr>(&self, key: &str) -> Option<T> {
        self.meta.get(key).map(|v| {
            v.parse()
                .unwrap_or_else(|_| panic!("[fixture] {}: bad metadata {key}={v:?}", self.id))
        })
    }
}

/// Names (without extension) of the cases of `day` whose names start with
/// `prefix`, sorted. Panics when there are none: a test with no cases would
/// pass without checking anything.
pub fn cases(day: &str, prefix: &str) -> Vec<String> {
    let dir = fixtures_dir().join(day);
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("[fixture] cannot list {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            name.strip_suffix(".safetensors").map(str::to_string)
        })
        .filter(|n| n.starts_with(prefix))
        .collect();
    names.sort();
    assert!(
        !names.is_empty(),
        "[fixture] no cases {day}/{prefix}* in {}",
        dir.display()
    );
    names
}
