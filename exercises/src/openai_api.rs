//! Day 18: the OpenAI API mapping, JSON requests to engine requests and
//! engine events to JSON responses. No HTTP here: the server (given, in
//! `server/`) parses bodies with these types, sends the engine's
//! [`Request`], and writes the structs below as JSON bodies or SSE events.
//!
//! Sources: the OpenAI API reference, "Create chat completion"
//! (`POST /v1/chat/completions`), "The chat completion object", "The chat
//! completion chunk object", "Create completion" (`POST /v1/completions`),
//! and its "Error codes" guide for the error body `{"error": {"message",
//! "type", "param", "code"}}`.
//!
//! The rules a request is checked by (each failure an [`ApiError`] naming
//! the parameter):
//! - `model` must be the served model's id (else 404, `model_not_found`);
//! - `n`: 1 only (this server generates one choice);
//! - `max_completion_tokens` (chat; it replaced `max_tokens`, which is still
//!   accepted) else `max_tokens`: an integer `>= 1`; when absent, chat
//!   generates until the context is full and completions 16 tokens (the
//!   API's default for `/v1/completions`);
//! - `temperature` in `[0, 2]` (default 1; 0 is greedy); `top_p` in
//!   `(0, 1]` and only 1 here: the engine samples from the whole
//!   distribution (a `top_p` below 1 is refused, not ignored);
//! - `seed`: the sampler's seed (same seed, same prompt, same answer);
//!   absent: the server's per-request seed;
//! - `stop`: a string or up to 4 non-empty strings;
//! - `stream_options` only with `stream: true`;
//! - chat `messages`: at least one; roles `system`, `user`, `assistant`;
//!   content a string or a list of `{"type": "text", "text"}` parts;
//! - the prompt (chat template applied, then tokenized) must leave room
//!   for one token in the context.
//!
//! Units: tokens; `created` in Unix seconds.
//!
//! Hints: Check your work with `cargo xtask check day18`. Check in the order
//! the list above gives (the tests expect the first error to be named);
//! `ApiError::param(name, message)` builds each error.

use serde::{Deserialize, Serialize};
// used once you write the mapping
#[allow(unused_imports)]
use tiny_llm_common::engine::{Request, RequestStats, Sampling};
#[allow(unused_imports)]
use tiny_llm_common::tokenizer::{ChatMessage, Tokenizer};

/// `stop`: one string or a list (given).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum StopParam {
    /// `"stop": "\n"`.
    One(String),
    /// `"stop": ["\n", "END"]`.
    Many(Vec<String>),
}

/// `stream_options` (given).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct StreamOptions {
    /// Send one more chunk before `data: [DONE]` with the whole request's
    /// `usage` and no choices; every other chunk then has `"usage": null`.
    #[serde(default)]
    pub include_usage: bool,
}

/// One part of a message's content (given): only text parts are served.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ContentPart {
    /// `"text"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The text (for a text part).
    #[serde(default)]
    pub text: Option<String>,
}

/// A message's content (given): a string or a list of parts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// `"content": "Hi"`.
    Text(String),
    /// `"content": [{"type": "text", "text": "Hi"}]`.
    Parts(Vec<ContentPart>),
}

/// One message of a chat request (given).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct RequestMessage {
    /// `"system"`, `"user"` or `"assistant"`.
    pub role: String,
    /// The text.
    pub content: MessageContent,
}

/// The body of `POST /v1/chat/completions` (given; other fields are
/// ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ChatCompletionRequest {
    /// The model's id (`GET /v1/models`).
    pub model: String,
    /// The conversation.
    pub messages: Vec<RequestMessage>,
    /// Tokens to generate at most (deprecated name).
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Tokens to generate at most (takes precedence over `max_tokens`).
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    /// Sampling temperature, `[0, 2]`.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass, `(0, 1]`.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// The sampler's seed.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Stop strings.
    #[serde(default)]
    pub stop: Option<StopParam>,
    /// Choices to generate (1 only).
    #[serde(default)]
    pub n: Option<u64>,
    /// Stream server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Options of a stream.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
}

/// The body of `POST /v1/completions` (given; a single string prompt; other
/// fields are ignored).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct CompletionRequest {
    /// The model's id.
    pub model: String,
    /// The text to continue (no chat template).
    pub prompt: String,
    /// Tokens to generate at most (default 16).
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// Sampling temperature, `[0, 2]`.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass, `(0, 1]`.
    #[serde(default)]
    pub top_p: Option<f64>,
    /// The sampler's seed.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Stop strings.
    #[serde(default)]
    pub stop: Option<StopParam>,
    /// Choices to generate (1 only).
    #[serde(default)]
    pub n: Option<u64>,
    /// Stream server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Options of a stream.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
}

/// A request refused before it reaches the engine (given).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON, or a parameter has a bad type or value
    /// (HTTP 400, `invalid_request_error`).
    #[error("{message}")]
    InvalidRequest {
        /// The parameter at fault (`"temperature"`, `"messages[1].role"`),
        /// or `None` for the body as a whole.
        param: Option<String>,
        /// What was wrong and what is expected.
        message: String,
    },
    /// `model` is not the served model (HTTP 404, code `model_not_found`).
    #[error("The model `{0}` does not exist")]
    ModelNotFound(String),
}

impl ApiError {
    /// A bad parameter (given).
    pub fn param(param: &str, message: impl Into<String>) -> Self {
        ApiError::InvalidRequest {
            param: Some(param.to_string()),
            message: message.into(),
        }
    }

    /// The HTTP status (given): 400 or 404.
    pub fn status(&self) -> u16 {
        match self {
            ApiError::InvalidRequest { .. } => 400,
            ApiError::ModelNotFound(_) => 404,
        }
    }

    /// The OpenAI error body (given).
    pub fn body(&self) -> ErrorBody {
        let (param, code) = match self {
            ApiError::InvalidRequest { param, .. } => (param.clone(), None),
            ApiError::ModelNotFound(_) => (
                Some("model".to_string()),
                Some("model_not_found".to_string()),
            ),
        };
        ErrorBody {
            error: ErrorDetail {
                message: self.to_string(),
                kind: "invalid_request_error".to_string(),
                param,
                code,
            },
        }
    }
}

/// `{"error": {...}}` (given).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error's fields (given).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorDetail {
    /// What was wrong.
    pub message: String,
    /// `"invalid_request_error"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The parameter at fault, or null.
    pub param: Option<String>,
    /// A machine-readable code, or null.
    pub code: Option<String>,
}

/// Parses a request body into `T` (given): not JSON, or not an object:
/// [`ApiError::InvalidRequest`] with no param; a field of the wrong type or
/// a missing field: the same, naming the field (found by parsing again
/// without each field in turn).
pub fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| ApiError::InvalidRequest {
            param: None,
            message: format!("the request body is not valid JSON: {e}"),
        })?;
    let Some(object) = value.as_object() else {
        return Err(ApiError::InvalidRequest {
            param: None,
            message: "the request body must be a JSON object".to_string(),
        });
    };
    serde_json::from_value::<T>(value.clone()).map_err(|e| {
        let message = e.to_string();
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|m| m.split('`').next())
        {
            return ApiError::param(field, format!("`{field}` is required"));
        }
        let culprit = object.keys().find(|key| {
            let mut without = object.clone();
            without.remove(*key);
            serde_json::from_value::<T>(serde_json::Value::Object(without)).is_ok()
        });
        match culprit {
            Some(key) => ApiError::param(key, format!("invalid value for `{key}`: {message}")),
            None => ApiError::InvalidRequest {
                param: None,
                message: format!("invalid request: {message}"),
            },
        }
    })
}

/// What the server needs to know about the model (given).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedModel {
    /// The id clients name in `model`.
    pub id: String,
    /// The model's context length in tokens (prompt plus answer).
    pub context_len: usize,
}

/// A checked request, ready for the engine (given).
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The engine's request (`ignore_eos` false).
    pub request: Request,
    /// Stop strings (0 to 4, non-empty).
    pub stop: Vec<String>,
    /// Stream the answer as server-sent events.
    pub stream: bool,
    /// Send the usage chunk before `[DONE]`.
    pub include_usage: bool,
}

/// Checks the parameters a chat request and a completion request share and
/// builds the [`Generation`] for `prompt` (token ids).
///
/// - `max_tokens`: the requested limit (already chosen between the two
///   names), `None` for `default_max`; the result is capped at what the
///   context leaves after the prompt.
/// - `default_seed`: the seed when the request has none.
///
/// Errors: [`ApiError::InvalidRequest`] naming `n`, `max_tokens` (or
/// `max_completion_tokens`, as `max_tokens_name` says), `temperature`,
/// `top_p`, `stop`, `stream_options`, or `prompt_param` when the prompt is
/// empty or leaves no room in the context.
#[allow(clippy::too_many_arguments)]
pub fn build_generation(
    prompt: Vec<u32>,
    prompt_param: &str,
    max_tokens: Option<u64>,
    max_tokens_name: &str,
    default_max: Option<usize>,
    common: &CommonParams,
    model: &ServedModel,
    default_seed: u64,
) -> Result<Generation, ApiError> {
    let _ = (
        prompt,
        prompt_param,
        max_tokens,
        max_tokens_name,
        default_max,
        common,
        model,
        default_seed,
    );
    todo!("day 18: build_generation")
}

/// The sampling and streaming parameters both endpoints share (given).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommonParams {
    /// `temperature`.
    pub temperature: Option<f64>,
    /// `top_p`.
    pub top_p: Option<f64>,
    /// `seed`.
    pub seed: Option<u64>,
    /// `stop`.
    pub stop: Option<StopParam>,
    /// `n`.
    pub n: Option<u64>,
    /// `stream`.
    pub stream: Option<bool>,
    /// `stream_options`.
    pub stream_options: Option<StreamOptions>,
}

/// Checks a chat request and builds its [`Generation`]: the model, the
/// messages (roles, text content; the chat template with the generation
/// prompt, then `encode(text, false)`), then [`build_generation`] with
/// `max_completion_tokens` else `max_tokens` and no default limit.
///
/// Errors: [`ApiError::ModelNotFound`]; [`ApiError::InvalidRequest`]
/// naming `messages` (empty; a template that refuses the conversation),
/// `messages[i].role` or `messages[i].content`, or a parameter as
/// [`build_generation`].
pub fn chat_generation(
    req: &ChatCompletionRequest,
    tokenizer: &Tokenizer,
    model: &ServedModel,
    default_seed: u64,
) -> Result<Generation, ApiError> {
    let _ = (req, tokenizer, model, default_seed);
    todo!("day 18: chat_generation")
}

/// Checks a completion request and builds its [`Generation`]: the model,
/// then the prompt as it is (`encode(prompt, false)`, no template), then
/// [`build_generation`] with `max_tokens` and a default of 16.
///
/// Errors: as [`chat_generation`], naming `prompt` for the prompt.
pub fn completion_generation(
    req: &CompletionRequest,
    tokenizer: &Tokenizer,
    model: &ServedModel,
    default_seed: u64,
) -> Result<Generation, ApiError> {
    let _ = (req, tokenizer, model, default_seed);
    todo!("day 18: completion_generation")
}

/// `usage` (given shape): token counts of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Tokens in the prompt (template applied).
    pub prompt_tokens: usize,
    /// Tokens generated (up to and including the one that completed a stop
    /// string, or the end-of-sequence token).
    pub completion_tokens: usize,
    /// The sum of the two.
    pub total_tokens: usize,
    /// Prompt tokens served from the prefix cache.
    pub prompt_tokens_details: PromptTokensDetails,
}

/// `usage.prompt_tokens_details` (given shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct PromptTokensDetails {
    /// Prompt tokens found in the prefix cache.
    pub cached_tokens: usize,
}

/// The engine's counts as OpenAI's `usage`: `prompt_tokens` and
/// `completion_tokens` from `stats.prompt_tokens` and `stats.output_tokens`,
/// `cached_tokens` from `stats.cached_tokens`.
pub fn usage(stats: &RequestStats) -> Usage {
    let _ = stats;
    todo!("day 18: usage")
}

/// The non-streamed chat answer, `"object": "chat.completion"` (given
/// shape).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatCompletion {
    /// `"chatcmpl-..."`.
    pub id: String,
    /// `"chat.completion"`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The model's id.
    pub model: String,
    /// One choice.
    pub choices: Vec<ChatChoice>,
    /// Token counts.
    pub usage: Usage,
}

/// A choice of a [`ChatCompletion`] (given shape).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatChoice {
    /// 0.
    pub index: usize,
    /// The answer.
    pub message: AssistantMessage,
    /// Always null (log-probabilities are not served).
    pub logprobs: Option<()>,
    /// `"stop"` or `"length"`.
    pub finish_reason: String,
}

/// The answer's message (given shape).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssistantMessage {
    /// `"assistant"`.
    pub role: &'static str,
    /// The text.
    pub content: String,
}

/// The [`ChatCompletion`] of a finished request: one choice at index 0
/// with `message: {role: "assistant", content: text}`, `logprobs` null.
pub fn chat_completion(
    id: &str,
    created: u64,
    model: &str,
    text: String,
    finish_reason: &str,
    usage: Usage,
) -> ChatCompletion {
    let _ = (id, created, model, text, finish_reason, usage);
    todo!("day 18: chat_completion")
}

/// One streamed chat event, `"object": "chat.completion.chunk"` (given
/// shape).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChatCompletionChunk {
    /// The same id in every chunk of a stream.
    pub id: String,
    /// `"chat.completion.chunk"`.
    pub object: &'static str,
    /// Unix seconds, the same in every chunk.
    pub created: u64,
    /// The model's id.
    pub model: String,
    /// One choice, or none in the usage chunk.
    pub choices: Vec<ChunkChoice>,
    /// Absent without `include_usage`; with it, null in every chunk but
    /// the last, which carries the usage.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
}

/// A choice of a chunk (given shape).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChunkChoice {
    /// 0.
    pub index: usize,
    /// What is new.
    pub delta: Delta,
    /// Always null.
    pub logprobs: Option<()>,
    /// Null until the last choice chunk.
    pub finish_reason: Option<String>,
}

/// What a chunk adds (given shape): `{"role": "assistant", "content": ""}`
/// first, then `{"content": "..."}`, then `{}` with the finish reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Delta {
    /// `"assistant"` in the first chunk only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// Text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// Builds the chunks of one streamed chat answer, in OpenAI's order: the
/// role chunk, content chunks, the finish chunk, then the usage chunk when
/// asked for.
#[allow(dead_code)] // used once you write the methods
#[derive(Debug, Clone)]
pub struct ChatChunker {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
}

impl ChatChunker {
    /// A stream with this id, time and model; `include_usage` from
    /// `stream_options`.
    pub fn new(id: &str, created: u64, model: &str, include_usage: bool) -> Self {
        let _ = (id, created, model, include_usage);
        todo!("day 18: ChatChunker::new")
    }

    /// The first chunk: delta `{"role": "assistant", "content": ""}`,
    /// `finish_reason` null.
    pub fn role(&self) -> ChatCompletionChunk {
        let _ = self;
        todo!("day 18: ChatChunker::role")
    }

    /// A content chunk: delta `{"content": text}`, `finish_reason` null.
    pub fn content(&self, text: &str) -> ChatCompletionChunk {
        let _ = (self, text);
        todo!("day 18: ChatChunker::content")
    }

    /// The last choice chunk: delta `{}` and the finish reason.
    pub fn finish(&self, finish_reason: &str) -> ChatCompletionChunk {
        let _ = (self, finish_reason);
        todo!("day 18: ChatChunker::finish")
    }

    /// The usage chunk (no choices, `usage` set) when `include_usage`, else
    /// `None`.
    pub fn usage(&self, usage: Usage) -> Option<ChatCompletionChunk> {
        let _ = (self, usage);
        todo!("day 18: ChatChunker::usage")
    }
}

/// The answer of `/v1/completions`, streamed or not: `"object":
/// "text_completion"` (given shape). A streamed chunk has `usage` absent,
/// null or set as [`ChatCompletionChunk::usage`]; the whole answer has it
/// set.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextCompletion {
    /// `"cmpl-..."`.
    pub id: String,
    /// `"text_completion"`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The model's id.
    pub model: String,
    /// One choice (none in a usage chunk).
    pub choices: Vec<TextChoice>,
    /// See the type's doc.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
}

/// A choice of a [`TextCompletion`] (given shape).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextChoice {
    /// The text (the delta, in a stream).
    pub text: String,
    /// 0.
    pub index: usize,
    /// Always null.
    pub logprobs: Option<()>,
    /// `"stop"` or `"length"`; null in a stream until the last text chunk.
    pub finish_reason: Option<String>,
}

/// A [`TextCompletion`] with `usage` as given. `text: Some(t)`: one choice
/// at index 0 with text `t`, `logprobs` null and `finish_reason` (null when
/// `None`); `text: None`: no choices (a stream's usage chunk).
pub fn text_completion(
    id: &str,
    created: u64,
    model: &str,
    text: Option<String>,
    finish_reason: Option<&str>,
    usage: Option<Option<Usage>>,
) -> TextCompletion {
    let _ = (id, created, model, text, finish_reason, usage);
    todo!("day 18: text_completion")
}
