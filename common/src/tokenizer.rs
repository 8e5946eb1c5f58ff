//! The model's tokenizer (given code: not an exercise).
//!
//! [`Tokenizer::from_dir`] reads a Hugging Face model directory:
//! `tokenizer.json` through the `tokenizers` crate (the library behind
//! Python's `transformers` fast tokenizers, so ids match mlx-lm's), the chat
//! template from `tokenizer_config.json` (or `chat_template.jinja`; rendered
//! by [`ChatTemplate`], in `chat_template.rs`), and the end-of-sequence ids
//! from `config.json` and `generation_config.json`.

use crate::checkpoint::read_json;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

pub use crate::chat_template::{ChatMessage, ChatTemplate};

/// A model's tokenizer: text to ids and back, its end-of-sequence ids and
/// its chat template.
#[derive(Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    eos_token_ids: Vec<u32>,
    chat_template: Option<ChatTemplate>,
    dir: PathBuf,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("dir", &self.dir)
            .field("vocab_size", &self.vocab_size())
            .field("eos_token_ids", &self.eos_token_ids)
            .field("has_chat_template", &self.chat_template.is_some())
            .finish()
    }
}

/// A special token in `tokenizer_config.json`: a string, or an object with
/// `content` (older files).
fn token_string(value: Option<&serde_json::Value>) -> Option<String> {
    match value? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// `eos_token_id` of a config file: absent, an integer or a list of them.
fn eos_ids_in(path: &Path) -> Result<Vec<u32>> {
    if !path.is_file() {
        return Ok(Vec::new());
    }
    let json = read_json(path)?;
    let bad = || {
        Error::Tokenizer(format!(
            "{}: `eos_token_id` must be an integer or a list of integers",
            path.display()
        ))
    };
    let as_id = |v: &serde_json::Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    match json.get("eos_token_id") {
        None | Some(serde_json::Value::Null) => Ok(Vec::new()),
        Some(serde_json::Value::Array(items)) => {
            items.iter().map(|v| as_id(v).ok_or_else(bad)).collect()
        }
        Some(v) => Ok(vec![as_id(v).ok_or_else(bad)?]),
    }
}

impl Tokenizer {
    /// Reads the tokenizer of the Hugging Face model directory `dir`.
    ///
    /// - `tokenizer.json`: required.
    /// - `tokenizer_config.json`: optional; its `chat_template` (a string, or
    ///   a list of named templates of which `default` is used) and special
    ///   tokens. A `chat_template.jinja` file, when present, wins.
    /// - `config.json`, `generation_config.json`: optional; their
    ///   `eos_token_id`s (see [`Tokenizer::eos_token_ids`]).
    ///
    /// Errors: [`Error::Tokenizer`] naming the file that is missing or
    /// invalid; [`Error::Io`] when a file cannot be read.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let tok_path = dir.join("tokenizer.json");
        if !tok_path.is_file() {
            return Err(Error::Tokenizer(format!(
                "{} is missing (a Hugging Face model directory has one)",
                tok_path.display()
            )));
        }
        let inner = tokenizers::Tokenizer::from_file(&tok_path)
            .map_err(|e| Error::Tokenizer(format!("{}: {e}", tok_path.display())))?;

        let cfg_path = dir.join("tokenizer_config.json");
        let cfg = if cfg_path.is_file() {
            read_json(&cfg_path)?
        } else {
            serde_json::json!({})
        };
        let jinja_path = dir.join("chat_template.jinja");
        let source = if jinja_path.is_file() {
            Some(
                std::fs::read_to_string(&jinja_path)
                    .map_err(|e| Error::Io(format!("reading {}: {e}", jinja_path.display())))?,
            )
        } else {
            match cfg.get("chat_template") {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(serde_json::Value::Array(list)) => {
                    let named = |want: &str| {
                        list.iter()
                            .find(|t| t.get("name").and_then(|n| n.as_str()) == Some(want))
                    };
                    named("default")
                        .or_else(|| list.first())
                        .and_then(|t| t.get("template"))
                        .and_then(|t| t.as_str())
                        .map(str::to_string)
                }
                Some(_) => {
                    return Err(Error::Tokenizer(format!(
                        "{}: `chat_template` must be a string or a list of named templates",
                        cfg_path.display()
                    )))
                }
            }
        };
        let chat_template = match source {
            None => None,
            Some(src) => {
                let mut t = ChatTemplate::new(src)
                    .map_err(|e| Error::Tokenizer(format!("{}: {e}", dir.display())))?;
                for name in ["bos_token", "eos_token", "unk_token", "pad_token"] {
                    if let Some(tok) = token_string(cfg.get(name)) {
                        t = t.with_special_token(name, &tok);
                    }
                }
                Some(t)
            }
        };

        let mut eos = eos_ids_in(&dir.join("config.json"))?;
        eos.extend(eos_ids_in(&dir.join("generation_config.json"))?);
        if eos.is_empty() {
            if let Some(id) = token_string(cfg.get("eos_token")).and_then(|t| inner.token_to_id(&t))
            {
                eos.push(id);
            }
        }
        eos.sort_unstable();
        eos.dedup();
        Ok(Tokenizer {
            inner,
            eos_token_ids: eos,
            chat_template,
            dir: dir.to_path_buf(),
        })
    }

    /// Token ids of `text`. Special tokens written in the text (such as
    /// `<|im_start|>`) become their single ids. `add_special_tokens` adds
    /// what the tokenizer's post-processor adds (nothing for Qwen2 and
    /// SmolLM2, which have no BOS).
    ///
    /// Errors: [`Error::Tokenizer`] with the library's message.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>> {
        let encoding = self
            .inner
            .encode(text, add_special_tokens)
            .map_err(|e| Error::Tokenizer(format!("encoding: {e}")))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of `ids`, special tokens included (`skip_special_tokens =
    /// False` in Python). Bytes that do not form whole UTF-8 characters (a
    /// partial multi-byte character at the end) become U+FFFD.
    ///
    /// Errors: [`Error::Tokenizer`] with the library's message.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, false)
            .map_err(|e| Error::Tokenizer(format!("decoding: {e}")))
    }

    /// The ids that end generation: the union of `eos_token_id` in
    /// `config.json` and in `generation_config.json` (each an integer or a
    /// list), sorted; the id of `tokenizer_config.json`'s `eos_token` when
    /// neither has one. For Qwen2.5-Instruct: `[151643, 151645]`
    /// (`<|endoftext|>`, `<|im_end|>`).
    pub fn eos_token_ids(&self) -> &[u32] {
        &self.eos_token_ids
    }

    /// Renders a conversation with the model's chat template (the text is
    /// not tokenized: pass it to [`Tokenizer::encode`]).
    ///
    /// Errors: [`Error::Tokenizer`] when the model has no chat template or
    /// the template fails.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self.chat_template.as_ref().ok_or_else(|| {
            Error::Tokenizer(format!(
                "{}: no chat template (tokenizer_config.json has no `chat_template` and \
                 there is no chat_template.jinja)",
                self.dir.display()
            ))
        })?;
        template.render(messages, add_generation_prompt)
    }

    /// The chat template, when the model has one.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// The id of a token (`"<|im_end|>"`), if it is in the vocabulary.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The token of an id, in the tokenizer's byte-level spelling
    /// (`"Ġworld"` for `" world"`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Number of tokens, added tokens included (can be less than the
    /// model's `vocab_size`, which counts embedding rows).
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// The underlying `tokenizers` tokenizer, for what this type does not
    /// offer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat_template::tests::{check_chats, expected};
    use crate::test_util::{fixtures_dir, TempDir};

    fn check_encode(tok: &Tokenizer, cases: &serde_json::Value) {
        for case in cases.as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let want: Vec<u32> = serde_json::from_value(case["ids"].clone()).unwrap();
            assert_eq!(tok.encode(text, false).unwrap(), want, "encode {text:?}");
            let want_sp: Vec<u32> =
                serde_json::from_value(case["ids_with_special_tokens"].clone()).unwrap();
            assert_eq!(
                tok.encode(text, true).unwrap(),
                want_sp,
                "encode {text:?} with specials"
            );
            assert_eq!(
                tok.decode(&want).unwrap(),
                case["decoded"].as_str().unwrap()
            );
        }
    }

    #[test]
    fn tiny_qwen2_ids_match_python() {
        let tok = Tokenizer::from_dir(&fixtures_dir().join("tiny-qwen2")).unwrap();
        check_encode(&tok, &expected()["tiny-qwen2"]["encode"]);
        assert_eq!(tok.token_to_id("<|im_end|>"), Some(1026));
        assert_eq!(tok.vocab_size(), 1024 + 22);
    }

    #[test]
    fn qwen25_chat_template_renders_like_transformers() {
        let tok = Tokenizer::from_dir(&fixtures_dir().join("tiny-qwen2")).unwrap();
        check_chats(
            |m, a| tok.apply_chat_template(m, a),
            &expected()["tiny-qwen2"]["chat"],
        );
    }

    #[test]
    fn eos_ids_are_the_union_of_both_configs() {
        let want: Vec<u32> =
            serde_json::from_value(expected()["tiny-qwen2"]["eos_token_ids"].clone()).unwrap();
        let tok = Tokenizer::from_dir(&fixtures_dir().join("tiny-qwen2")).unwrap();
        assert_eq!(tok.eos_token_ids(), want.as_slice());
        assert_eq!(want, vec![1024, 1026]);

        // int in one file, list in the other, a duplicate, and no files at all
        let dir = TempDir::new("tokenizer-eos");
        std::fs::copy(
            fixtures_dir().join("tiny-qwen2/tokenizer.json"),
            dir.path().join("tokenizer.json"),
        )
        .unwrap();
        let tok = Tokenizer::from_dir(dir.path()).unwrap();
        assert!(tok.eos_token_ids().is_empty());
        assert!(tok
            .apply_chat_template(&[ChatMessage::user("hi")], true)
            .is_err());
        std::fs::write(dir.path().join("config.json"), r#"{"eos_token_id": 7}"#).unwrap();
        std::fs::write(
            dir.path().join("generation_config.json"),
            r#"{"eos_token_id": [9, 7]}"#,
        )
        .unwrap();
        assert_eq!(
            Tokenizer::from_dir(dir.path()).unwrap().eos_token_ids(),
            &[7, 9]
        );
        std::fs::write(dir.path().join("config.json"), r#"{"eos_token_id": "x"}"#).unwrap();
        let err = Tokenizer::from_dir(dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("config.json") && err.contains("eos_token_id"),
            "{err}"
        );
    }

    #[test]
    fn missing_or_bad_files_are_named() {
        let dir = TempDir::new("tokenizer-missing");
        let err = Tokenizer::from_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("tokenizer.json is missing"), "{err}");
        std::fs::write(dir.path().join("tokenizer.json"), "{\"version\": ").unwrap();
        let err = Tokenizer::from_dir(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Tokenizer(_)) && err.to_string().contains("tokenizer.json"));
    }

    #[test]
    fn chat_template_jinja_file_wins_and_lists_pick_default() {
        let dir = TempDir::new("tokenizer-template");
        std::fs::copy(
            fixtures_dir().join("tiny-qwen2/tokenizer.json"),
            dir.path().join("tokenizer.json"),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("tokenizer_config.json"),
            r#"{"eos_token": {"content": "<|im_end|>"}, "chat_template": [
                {"name": "tool_use", "template": "T"},
                {"name": "default", "template": "D{{ eos_token }}"}]}"#,
        )
        .unwrap();
        let tok = Tokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(tok.apply_chat_template(&[], false).unwrap(), "D<|im_end|>");
        assert_eq!(tok.eos_token_ids(), &[1026]); // from eos_token: no config files
        std::fs::write(
            dir.path().join("chat_template.jinja"),
            "J{{ messages | length }}\n",
        )
        .unwrap();
        let tok = Tokenizer::from_dir(dir.path()).unwrap();
        assert_eq!(
            tok.apply_chat_template(&[ChatMessage::user("x")], true)
                .unwrap(),
            "J1"
        );
    }

    /// The real Qwen2.5 tokenizer (151,643 BPE tokens) against Python's ids.
    #[test]
    #[ignore = "needs `cargo xtask models fetch` (the converted Qwen2.5-Coder-0.5B directory)"]
    fn real_qwen25_ids_match_python() {
        let cache = std::env::var_os("TINY_LLM_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache/tiny-llm-rs")
            });
        let tok = Tokenizer::from_dir(&cache.join("models/qwen2.5-coder-0.5b")).unwrap();
        let real = &expected()["qwen2.5-coder-0.5b"];
        check_encode(&tok, &real["encode"]);
        let want: Vec<u32> = serde_json::from_value(real["eos_token_ids"].clone()).unwrap();
        assert_eq!(tok.eos_token_ids(), want.as_slice());
    }
}
