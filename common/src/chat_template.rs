//! Chat templates (given code: not an exercise).
//!
//! [`ChatTemplate`] renders a Hugging Face Jinja chat template with
//! `minijinja` set up as `transformers` sets up Jinja2 (`trim_blocks`,
//! `lstrip_blocks`, loop controls, Python string methods, `raise_exception`,
//! a `tojson` that writes like Python's `json.dumps`), so its text equals
//! `tokenizer.apply_chat_template(messages, tokenize=False, ...)` in Python.
//! [`crate::Tokenizer::from_dir`] finds a model's template and special
//! tokens; [`crate::Tokenizer::apply_chat_template`] calls [`ChatTemplate::render`].

use crate::{Error, Result};
use minijinja::value::{Kwargs, Value};
use serde::Serialize;
use std::collections::BTreeMap;

/// One message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChatMessage {
    /// `"system"`, `"user"`, `"assistant"` or `"tool"`.
    pub role: String,
    /// The text of the message.
    pub content: String,
}

impl ChatMessage {
    /// A message with any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A compiled Hugging Face chat template.
///
/// Variables the template sees: `messages` (a list of `{role, content}`),
/// `add_generation_prompt`, `tools` and `documents` (none: tool schemas are
/// not supported), and the special tokens given with
/// [`ChatTemplate::with_special_token`] (`bos_token`, `eos_token`, ...).
#[derive(Clone)]
pub struct ChatTemplate {
    env: minijinja::Environment<'static>,
    source: String,
    special_tokens: BTreeMap<String, String>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .field("special_tokens", &self.special_tokens)
            .finish()
    }
}

const TEMPLATE_NAME: &str = "chat_template";

impl ChatTemplate {
    /// Compiles a template.
    ///
    /// Errors: [`Error::Tokenizer`] with the Jinja syntax error.
    pub fn new(source: impl Into<String>) -> Result<Self> {
        let source = source.into();
        let mut env = minijinja::Environment::new();
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| Error::Tokenizer(format!("chat template syntax: {e}")))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_filter("tojson", tojson);
        env.add_template_owned(TEMPLATE_NAME, source.clone())
            .map_err(|e| Error::Tokenizer(format!("chat template does not compile: {e:#}")))?;
        Ok(ChatTemplate {
            env,
            source,
            special_tokens: BTreeMap::new(),
        })
    }

    /// Makes a special token available to the template, as `transformers`
    /// does: `with_special_token("eos_token", "<|im_end|>")`.
    pub fn with_special_token(mut self, name: &str, token: &str) -> Self {
        self.special_tokens
            .insert(name.to_string(), token.to_string());
        self
    }

    /// The template's text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends with
    /// the start of an assistant turn (for Qwen2.5, `<|im_start|>assistant\n`).
    ///
    /// Errors: [`Error::Tokenizer`] when the template fails (including its
    /// own `raise_exception`, for example on an unsupported role order).
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let mut ctx: BTreeMap<String, Value> = self
            .special_tokens
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
            .collect();
        ctx.insert(
            "messages".into(),
            Value::from(minijinja::value::Serde(messages)),
        );
        ctx.insert(
            "add_generation_prompt".into(),
            Value::from(add_generation_prompt),
        );
        ctx.insert("tools".into(), Value::from(()));
        ctx.insert("documents".into(), Value::from(()));
        let template = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| Error::Tokenizer(format!("chat template: {e}")))?;
        template
            .render(Value::from(ctx))
            .map_err(|e| Error::Tokenizer(format!("chat template failed: {e:#}")))
    }
}

/// `raise_exception(message)`, which Hugging Face templates call on bad input.
fn raise_exception(message: String) -> std::result::Result<String, minijinja::Error> {
    Err(minijinja::Error::new(
        minijinja::ErrorKind::InvalidOperation,
        message,
    ))
}

/// `tojson` as `transformers` defines it: Python's `json.dumps` with
/// `ensure_ascii=False` (`", "` and `": "` separators; `indent` supported),
/// with no HTML escaping.
fn tojson(
    value: &Value,
    indent: Option<usize>,
    kwargs: Kwargs,
) -> std::result::Result<Value, minijinja::Error> {
    let indent = match indent {
        Some(n) => Some(n),
        None => kwargs.get::<Option<usize>>("indent")?,
    };
    // accepted like Python, with Python's defaults assumed
    for key in ["ensure_ascii", "sort_keys", "separators"] {
        let _: Option<Value> = kwargs.get(key)?;
    }
    let mut out = Vec::new();
    let result = match indent {
        Some(n) => {
            let pad = vec![b' '; n];
            let fmt = serde_json::ser::PrettyFormatter::with_indent(&pad);
            value.serialize(&mut serde_json::Serializer::with_formatter(&mut out, fmt))
        }
        None => value.serialize(&mut serde_json::Serializer::with_formatter(
            &mut out, PythonJson,
        )),
    };
    result.map_err(|e| {
        minijinja::Error::new(
            minijinja::ErrorKind::InvalidOperation,
            format!("tojson: {e}"),
        )
    })?;
    Ok(Value::from_safe_string(
        String::from_utf8(out).expect("serde_json writes UTF-8"),
    ))
}

/// serde_json formatting with Python's default separators `", "` and `": "`.
struct PythonJson;

impl serde_json::ser::Formatter for PythonJson {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::checkpoint::read_json;
    use crate::test_util::fixtures_dir;

    /// The tokenizer and chat-template expectations written by
    /// `fixtures/gen` with Python's `transformers`.
    pub(crate) fn expected() -> serde_json::Value {
        read_json(&fixtures_dir().join("day6/tokenizer.json")).unwrap()
    }

    fn messages(v: &serde_json::Value) -> Vec<ChatMessage> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|m| ChatMessage::new(m["role"].as_str().unwrap(), m["content"].as_str().unwrap()))
            .collect()
    }

    /// Renders every case of `cases` and compares with Python's text.
    pub(crate) fn check_chats(
        render: impl Fn(&[ChatMessage], bool) -> Result<String>,
        cases: &serde_json::Value,
    ) {
        for case in cases.as_array().unwrap() {
            let msgs = messages(&case["messages"]);
            let add = case["add_generation_prompt"].as_bool().unwrap();
            let got = render(&msgs, add).unwrap();
            assert_eq!(
                got,
                case["text"].as_str().unwrap(),
                "messages {msgs:?}, add {add}"
            );
        }
    }

    #[test]
    fn smollm2_chat_template_renders_like_transformers() {
        let smol = &expected()["smollm2-135m"];
        let template = ChatTemplate::new(smol["chat_template"].as_str().unwrap())
            .unwrap()
            .with_special_token("bos_token", smol["bos_token"].as_str().unwrap())
            .with_special_token("eos_token", smol["eos_token"].as_str().unwrap());
        check_chats(|m, a| template.render(m, a), &smol["chat"]);
    }

    #[test]
    fn template_features_hf_templates_use() {
        let t = ChatTemplate::new(
            "{% for m in messages %}{% if m.role == 'bad' %}{{ raise_exception('no ' + m.role) }}\
             {% endif %}{{ m.content.strip().upper() }}|{{ {'a': [1, 'é'], 'b': none} | tojson }}\
             {% if loop.last %}{% break %}{% endif %}{% endfor %}",
        )
        .unwrap();
        let out = t.render(&[ChatMessage::user("  hi ")], false).unwrap();
        assert_eq!(out, r#"HI|{"a": [1, "é"], "b": null}"#);
        let err = t
            .render(&[ChatMessage::new("bad", "x")], false)
            .unwrap_err()
            .to_string();
        assert!(err.contains("no bad"), "{err}");
        assert!(ChatTemplate::new("{% if %}").is_err());
    }
}
