//! The routes and the forwarding of engine events (see the crate docs).

#[cfg(not(feature = "solutions"))]
use tiny_llm as imp;
#[cfg(feature = "solutions")]
use tiny_llm_ref as imp;

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use imp::openai_api::{
    chat_completion, chat_generation, completion_generation, parse_body, text_completion, usage,
    ApiError, ChatChunker, ChatCompletionRequest, CompletionRequest, Generation, ServedModel,
};
use imp::stop_strings::StopStrings;
use imp::stream_detokenizer::ByteDetokenizer;
use serde_json::json;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tiny_llm_common::engine::{self, BatchedLm, EngineConfig, EngineHandle, Event, StopReason};
use tiny_llm_common::{Checkpoint, Qwen2Config, Tokenizer};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Tokens per KV block in the engine's accounting.
const BLOCK_SIZE: usize = 16;

/// What every handler shares.
pub struct State {
    engine: EngineHandle,
    tokenizer: Tokenizer,
    model: ServedModel,
    eos: Vec<u32>,
    next: AtomicU64,
}

impl State {
    /// Loads the tokenizer here and the model on the engine thread (the
    /// week-2 model of the implementation, the day-15 scheduler and batch
    /// cache, f32 activations).
    pub fn start(
        dir: &Path,
        id: String,
        context: usize,
        max_running: usize,
        max_batch_tokens: usize,
    ) -> Result<Arc<State>> {
        use imp::batch_kv_cache::BatchKvCache;
        use imp::qwen2_week2::Qwen2ModelWeek2;
        use imp::scheduler::{FcfsScheduler, SchedulerConfig};
        let tokenizer = Tokenizer::from_dir(dir).context("loading the tokenizer")?;
        let config = Qwen2Config::from_file(&dir.join("config.json"))?;
        let context = context.min(config.max_position_embeddings.max(1) as usize);
        let num_blocks = max_running * (context + 1).div_ceil(BLOCK_SIZE);
        let eos = tokenizer.eos_token_ids().to_vec();
        let model_dir = dir.to_path_buf();
        let load = move || -> tiny_llm_common::Result<BatchedLm<Qwen2ModelWeek2, BatchKvCache>> {
            let checkpoint = Checkpoint::load(&model_dir)?;
            let model = Qwen2ModelWeek2::new(&config, &checkpoint, mlx_rs::Dtype::Float32)?;
            Ok(BatchedLm::new(model))
        };
        let sched = SchedulerConfig {
            max_tokens_per_step: max_batch_tokens,
            max_running,
            block_size: BLOCK_SIZE,
            num_blocks,
        };
        let engine_config = EngineConfig {
            eos: eos.clone(),
            block_size: BLOCK_SIZE,
            num_blocks,
        };
        eprintln!("loading {} ...", dir.display());
        // The learner's days 8 and 15 run here: a `todo!()` is reported,
        // not a crash.
        let engine =
            guarded(|| engine::spawn(engine_config, load, move || FcfsScheduler::new(sched)))
                .map_err(|message| {
                    anyhow::anyhow!(
                        "the engine could not start: {message}; serving needs days 8, 15 and 18 \
                     (`cargo xtask status`), or `cargo xtask serve --solution`"
                    )
                })?
                .context("starting the engine")?;
        Ok(Arc::new(State {
            engine,
            tokenizer,
            model: ServedModel {
                id,
                context_len: context,
            },
            eos,
            next: AtomicU64::new(1),
        }))
    }

    fn seed_and_id(&self) -> (u64, u64) {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        (nanos ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15), n)
    }
}

/// Serves until Ctrl-C.
pub async fn serve(state: Arc<State>, addr: SocketAddr) -> Result<()> {
    let app = Router::new()
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .fallback(|| async {
            error_response(
                StatusCode::NOT_FOUND,
                "not_found_error",
                "no such route; the server has POST /v1/chat/completions, POST /v1/completions, GET /v1/models, GET /health",
            )
        })
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    // The line `cargo xtask serve` and the tests wait for.
    println!("tiny-llm-server listening on http://{local}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .context("serving")
}

fn error_response(status: StatusCode, kind: &str, message: &str) -> Response {
    let body = json!({"error": {"message": message, "type": kind, "param": null, "code": null}});
    (status, Json(body)).into_response()
}

fn api_error(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    (status, Json(e.body())).into_response()
}

async fn models(AxumState(state): AxumState<Arc<State>>) -> Json<serde_json::Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": state.model.id, "object": "model", "created": 0, "owned_by": "tiny-llm-rs"}]
    }))
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Which endpoint, for the response shapes.
#[derive(Clone, Copy)]
enum Kind {
    Chat,
    Completion,
}

async fn chat(AxumState(state): AxumState<Arc<State>>, body: Bytes) -> Response {
    let (seed, n) = state.seed_and_id();
    let generation = guarded(|| {
        parse_body::<ChatCompletionRequest>(&body)
            .and_then(|req| chat_generation(&req, &state.tokenizer, &state.model, seed))
    });
    match generation {
        Ok(g) => respond(state, g, Kind::Chat, format!("chatcmpl-{n}")).await,
        Err(message) => not_implemented(&message),
    }
}

async fn completions(AxumState(state): AxumState<Arc<State>>, body: Bytes) -> Response {
    let (seed, n) = state.seed_and_id();
    let generation = guarded(|| {
        parse_body::<CompletionRequest>(&body)
            .and_then(|req| completion_generation(&req, &state.tokenizer, &state.model, seed))
    });
    match generation {
        Ok(g) => respond(state, g, Kind::Completion, format!("cmpl-{n}")).await,
        Err(message) => not_implemented(&message),
    }
}

/// Runs the learner's code, turning a panic (a `todo!()` not written yet)
/// into its message, so that one request fails and the server stays up.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".to_string())
    })
}

/// A 501 for code that panicked (usually `todo!()`: not implemented yet).
fn not_implemented(message: &str) -> Response {
    error_response(
        StatusCode::NOT_IMPLEMENTED,
        "not_implemented",
        &format!("the server's code panicked: {message} (`cargo xtask check day18`, `cargo xtask hint day18`)"),
    )
}

/// What the forwarding task reports.
enum Piece {
    /// Text that can be sent.
    Text(String),
    /// The end: finish reason and usage.
    End(&'static str, imp::openai_api::Usage),
    /// The engine failed.
    Failed(String),
}

/// Cancels the request in the engine when dropped before `done`.
struct CancelGuard {
    state: Arc<State>,
    id: engine::RequestId,
    done: bool,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        if !self.done {
            self.state.engine.cancel(self.id);
        }
    }
}

/// Reads the engine's events for one request on a blocking thread: token
/// ids through the detokenizer (end-of-sequence tokens left out of the
/// text) and the stop strings; `send` gets each piece and returns false
/// when nobody listens any more (then the request is cancelled).
fn forward(state: Arc<State>, generation: Generation, mut send: impl FnMut(Piece) -> bool) {
    if let Err(message) = guarded(|| forward_events(state, generation, &mut send)) {
        send(Piece::Failed(format!(
            "the server's code panicked: {message} (`cargo xtask check day18`)"
        )));
    }
}

/// [`forward`]'s work.
fn forward_events(state: Arc<State>, generation: Generation, mut send: impl FnMut(Piece) -> bool) {
    let (id, rx) = state.engine.submit(generation.request);
    let mut guard = CancelGuard {
        state: state.clone(),
        id,
        done: false,
    };
    let mut detok = ByteDetokenizer::new(&state.tokenizer);
    // new() only refuses empty stop strings, which the mapping refused.
    let mut stops = match StopStrings::new(generation.stop) {
        Ok(s) => s,
        Err(e) => {
            send(Piece::Failed(e.to_string()));
            return;
        }
    };
    let mut stopped_by_string = false;
    loop {
        match rx.recv() {
            Ok(Event::Token { id: token, .. }) => {
                if stopped_by_string || state.eos.contains(&token) {
                    continue;
                }
                let delta = match detok.push(token) {
                    Ok(d) => d,
                    Err(e) => {
                        send(Piece::Failed(e.to_string()));
                        return;
                    }
                };
                let released = stops.push(&delta);
                if !released.text.is_empty() && !send(Piece::Text(released.text)) {
                    return; // the guard cancels
                }
                if released.stopped {
                    stopped_by_string = true;
                    state.engine.cancel(id);
                }
            }
            Ok(Event::Done { reason, stats }) => {
                guard.done = true;
                if !stopped_by_string {
                    let tail = detok.finish();
                    let mut text = stops.push(&tail).text;
                    if stops.stopped() {
                        stopped_by_string = true;
                    } else {
                        text.push_str(&stops.finish());
                    }
                    if !text.is_empty() && !send(Piece::Text(text)) {
                        return;
                    }
                }
                let finish = match (stopped_by_string, reason) {
                    (true, _) | (false, StopReason::Stop) => "stop",
                    (false, _) => "length",
                };
                send(Piece::End(finish, usage(&stats)));
                return;
            }
            Ok(Event::Error(message)) => {
                guard.done = true;
                send(Piece::Failed(message));
                return;
            }
            Err(_) => {
                guard.done = true;
                send(Piece::Failed("the engine stopped".to_string()));
                return;
            }
        }
    }
}

async fn respond(
    state: Arc<State>,
    generation: Result<Generation, ApiError>,
    kind: Kind,
    id: String,
) -> Response {
    let generation = match generation {
        Ok(g) => g,
        Err(e) => return api_error(&e),
    };
    let created = now_s();
    let model = state.model.id.clone();
    if generation.stream {
        stream(state, generation, kind, id, created, model)
    } else {
        whole(state, generation, kind, id, created, model).await
    }
}

/// A non-streamed answer: every piece collected, then one JSON body. The
/// pieces go through a channel, so a client that goes away (the future is
/// dropped, the receiver with it) cancels the request.
async fn whole(
    state: Arc<State>,
    generation: Generation,
    kind: Kind,
    id: String,
    created: u64,
    model: String,
) -> Response {
    let (tx, mut rx) = mpsc::unbounded_channel();
    tokio::task::spawn_blocking(move || forward(state, generation, |p| tx.send(p).is_ok()));
    let mut text = String::new();
    while let Some(piece) = rx.recv().await {
        match piece {
            Piece::Text(t) => text.push_str(&t),
            Piece::End(finish, u) => {
                return match kind {
                    Kind::Chat => {
                        Json(chat_completion(&id, created, &model, text, finish, u)).into_response()
                    }
                    Kind::Completion => Json(text_completion(
                        &id,
                        created,
                        &model,
                        Some(text),
                        Some(finish),
                        Some(Some(u)),
                    ))
                    .into_response(),
                };
            }
            Piece::Failed(message) => {
                return error_response(StatusCode::INTERNAL_SERVER_ERROR, "server_error", &message)
            }
        }
    }
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "the request ended without an answer",
    )
}

fn sse_json(value: &impl serde::Serialize) -> SseEvent {
    SseEvent::default().data(serde_json::to_string(value).unwrap_or_default())
}

/// A streamed answer: server-sent events, `data: [DONE]` last. When the
/// client goes away the channel closes, `forward` sees it and the request
/// is cancelled.
fn stream(
    state: Arc<State>,
    generation: Generation,
    kind: Kind,
    id: String,
    created: u64,
    model: String,
) -> Response {
    let (tx, rx) = mpsc::channel::<Result<SseEvent, Infallible>>(64);
    let include_usage = generation.include_usage;
    tokio::task::spawn_blocking(move || {
        let chunker = ChatChunker::new(&id, created, &model, include_usage);
        let send = |e: SseEvent| tx.blocking_send(Ok(e)).is_ok();
        let usage_field = |u: Option<imp::openai_api::Usage>| include_usage.then_some(u);
        if let Kind::Chat = kind {
            if !send(sse_json(&chunker.role())) {
                return;
            }
        }
        forward(state, generation, |piece| match piece {
            Piece::Text(t) => send(match kind {
                Kind::Chat => sse_json(&chunker.content(&t)),
                Kind::Completion => sse_json(&text_completion(
                    &id,
                    created,
                    &model,
                    Some(t),
                    None,
                    usage_field(None),
                )),
            }),
            Piece::End(finish, u) => {
                let last = match kind {
                    Kind::Chat => sse_json(&chunker.finish(finish)),
                    Kind::Completion => sse_json(&text_completion(
                        &id,
                        created,
                        &model,
                        Some(String::new()),
                        Some(finish),
                        usage_field(None),
                    )),
                };
                let usage_chunk = match kind {
                    Kind::Chat => chunker.usage(u).map(|c| sse_json(&c)),
                    Kind::Completion => include_usage.then(|| {
                        sse_json(&text_completion(
                            &id,
                            created,
                            &model,
                            None,
                            None,
                            Some(Some(u)),
                        ))
                    }),
                };
                send(last)
                    && usage_chunk.is_none_or(&send)
                    && send(SseEvent::default().data("[DONE]"))
            }
            Piece::Failed(message) => {
                let body = json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}});
                send(sse_json(&body)) && send(SseEvent::default().data("[DONE]"))
            }
        });
    });
    Sse::new(ReceiverStream::new(rx))
        .keep_alive(KeepAlive::default())
        .into_response()
}
