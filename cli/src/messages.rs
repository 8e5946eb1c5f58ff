//! Reading a conversation from a JSON file (`--messages FILE.json`).
//!
//! The format is the one the OpenAI chat API takes and writes: a list of
//! messages, each an object with a `role` (`system`, `user`, `assistant` or
//! `tool`) and a `content`, or an object holding that list under
//! `messages` (a request body). `content` is a string, or a list of parts of
//! which only `{"type": "text", "text": ...}` is supported (their texts are
//! joined). Other keys (`name`, `tool_call_id`, ...) are ignored.
//!
//! ```json
//! [{"role": "system", "content": "You are terse."},
//!  {"role": "user", "content": "Name a prime."},
//!  {"role": "assistant", "content": "7"},
//!  {"role": "user", "content": "Another?"}]
//! ```
//!
//! Every error names the file, the message (1-based, as a person counts)
//! and the key that is wrong, and says what was expected.

use serde_json::Value;
use tiny_llm_common::ChatMessage;

/// The roles a chat template knows.
const ROLES: &[&str] = &["system", "user", "assistant", "tool"];

/// What JSON calls a value's type, for error messages.
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Parses the text of a messages file; `source` names it in errors.
///
/// Errors (as text, for the command line): not JSON; neither a list nor an
/// object with `messages`; an empty conversation; a message that is not an
/// object, lacks `role` or `content`, has an unknown role or a content that
/// is neither a string nor a list of text parts; no `user` message at all.
pub fn parse(text: &str, source: &str) -> Result<Vec<ChatMessage>, String> {
    let json: Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "{source}: not valid JSON ({e}); expected a list of {{\"role\", \"content\"}} messages"
        )
    })?;
    let list = match &json {
        Value::Array(list) => list,
        Value::Object(o) => match o.get("messages") {
            Some(Value::Array(list)) => list,
            Some(other) => {
                return Err(format!(
                    "{source}: `messages` must be a list of messages, got {}",
                    kind(other)
                ))
            }
            None => {
                return Err(format!(
                    "{source}: an object without a `messages` key; expected a list of \
                     {{\"role\", \"content\"}} messages, or {{\"messages\": [...]}}"
                ))
            }
        },
        other => {
            return Err(format!(
                "{source}: expected a list of {{\"role\", \"content\"}} messages (or \
                 {{\"messages\": [...]}}), got {}",
                kind(other)
            ))
        }
    };
    if list.is_empty() {
        return Err(format!("{source}: the conversation has no messages"));
    }
    let messages = list
        .iter()
        .enumerate()
        .map(|(i, m)| message(m, &format!("{source}: message {}", i + 1)))
        .collect::<Result<Vec<_>, _>>()?;
    if !messages.iter().any(|m| m.role == "user") {
        return Err(format!(
            "{source}: the conversation has no `user` message; a chat needs at least one"
        ));
    }
    Ok(messages)
}

/// One message; `at` says where it is ("FILE: message 3").
fn message(m: &Value, at: &str) -> Result<ChatMessage, String> {
    let Value::Object(o) = m else {
        return Err(format!(
            "{at}: expected an object {{\"role\": ..., \"content\": ...}}, got {}",
            kind(m)
        ));
    };
    let role = match o.get("role") {
        None => {
            return Err(format!(
                "{at}: missing key `role` (one of {})",
                ROLES.join(", ")
            ))
        }
        Some(Value::String(r)) if ROLES.contains(&r.as_str()) => r.clone(),
        Some(Value::String(r)) => {
            return Err(format!(
                "{at}: `role` is {r:?}; expected one of {}",
                ROLES.join(", ")
            ))
        }
        Some(other) => {
            return Err(format!(
                "{at}: `role` must be a string (one of {}), got {}",
                ROLES.join(", "),
                kind(other)
            ))
        }
    };
    let content = match o.get("content") {
        None => return Err(format!("{at}: missing key `content` (the message's text)")),
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => text_parts(parts, at)?,
        Some(other) => {
            return Err(format!(
                "{at}: `content` must be a string or a list of text parts, got {}",
                kind(other)
            ))
        }
    };
    Ok(ChatMessage::new(role, content))
}

/// `[{"type": "text", "text": "..."}, ...]` joined into one string.
fn text_parts(parts: &[Value], at: &str) -> Result<String, String> {
    let mut text = String::new();
    for (j, part) in parts.iter().enumerate() {
        let at = format!("{at}, content part {}", j + 1);
        let ty = part.get("type").and_then(Value::as_str);
        match (ty, part.get("text")) {
            (Some("text"), Some(Value::String(s))) => text.push_str(s),
            (Some("text"), _) => return Err(format!("{at}: a text part needs a string `text`")),
            (Some(other), _) => {
                return Err(format!(
                    "{at}: parts of type {other:?} are not supported (only \"text\")"
                ))
            }
            (None, _) => {
                return Err(format!(
                    "{at}: expected {{\"type\": \"text\", \"text\": ...}}, got {}",
                    kind(part)
                ))
            }
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        parse(text, "chat.json").unwrap_err()
    }

    #[test]
    fn a_list_and_a_request_body_give_the_same_conversation() {
        let list = r#"[{"role": "system", "content": "Be terse."},
                       {"role": "user", "content": "Name a prime."},
                       {"role": "assistant", "content": "7", "name": "bot"},
                       {"role": "user", "content": [{"type": "text", "text": "Ano"},
                                                    {"type": "text", "text": "ther?"}]}]"#;
        let want = vec![
            ChatMessage::system("Be terse."),
            ChatMessage::user("Name a prime."),
            ChatMessage::assistant("7"),
            ChatMessage::user("Another?"),
        ];
        assert_eq!(parse(list, "a.json").unwrap(), want);
        let body = format!(r#"{{"model": "x", "messages": {list}, "temperature": 0}}"#);
        assert_eq!(parse(&body, "b.json").unwrap(), want);
    }

    #[test]
    fn errors_name_the_file_the_message_and_the_key() {
        let cases = [
            ("{\"role\": ", "chat.json: not valid JSON"),
            ("42", "chat.json: expected a list of {\"role\", \"content\"} messages (or {\"messages\": [...]}), got a number"),
            ("{\"msgs\": []}", "chat.json: an object without a `messages` key"),
            ("{\"messages\": \"hi\"}", "chat.json: `messages` must be a list of messages, got a string"),
            ("[]", "chat.json: the conversation has no messages"),
            ("[\"hi\"]", "chat.json: message 1: expected an object {\"role\": ..., \"content\": ...}, got a string"),
            (
                r#"[{"role": "user", "content": "a"}, {"content": "b"}]"#,
                "chat.json: message 2: missing key `role` (one of system, user, assistant, tool)",
            ),
            (
                r#"[{"role": "bot", "content": "b"}]"#,
                "chat.json: message 1: `role` is \"bot\"; expected one of system, user, assistant, tool",
            ),
            (
                r#"[{"role": 1, "content": "b"}]"#,
                "chat.json: message 1: `role` must be a string (one of system, user, assistant, tool), got a number",
            ),
            (
                r#"[{"role": "user"}]"#,
                "chat.json: message 1: missing key `content` (the message's text)",
            ),
            (
                r#"[{"role": "user", "content": null}]"#,
                "chat.json: message 1: `content` must be a string or a list of text parts, got null",
            ),
            (
                r#"[{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]"#,
                "chat.json: message 1, content part 1: parts of type \"image_url\" are not supported (only \"text\")",
            ),
            (
                r#"[{"role": "user", "content": [{"type": "text"}]}]"#,
                "chat.json: message 1, content part 1: a text part needs a string `text`",
            ),
            (
                r#"[{"role": "user", "content": ["hi"]}]"#,
                "chat.json: message 1, content part 1: expected {\"type\": \"text\", \"text\": ...}, got a string",
            ),
            (
                r#"[{"role": "system", "content": "x"}]"#,
                "chat.json: the conversation has no `user` message; a chat needs at least one",
            ),
        ];
        for (text, want) in cases {
            let got = err(text);
            assert!(got.starts_with(want), "{text}\n got: {got}\nwant: {want}");
        }
    }
}
