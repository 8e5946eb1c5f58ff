//! `tiny-llm-server`: an OpenAI-compatible HTTP server over the week-3
//! engine (given code, day 18). Started by `cargo xtask serve`.
//!
//! Only this crate knows HTTP. The engine runs on its own thread
//! (`tiny_llm_common::engine`); each request is checked and mapped by the
//! learner's (or the reference's) `openai_api`, its tokens are turned into
//! text by `stream_detokenizer` and cut by `stop_strings`, on a blocking
//! task that forwards the engine's events. A streamed request's task
//! notices a client that went away (its SSE channel is closed) and cancels
//! the request in the engine; a non-streamed request whose client goes
//! away is cancelled when its response future is dropped.
//!
//! Routes: `POST /v1/chat/completions`, `POST /v1/completions` (stream or
//! not), `GET /v1/models`, `GET /health`. Errors are OpenAI's JSON body
//! `{"error": {"message", "type", "param", "code"}}`: 400 for bad JSON or
//! parameters, 404 for an unknown model or route, 500 when the engine fails.

mod serve;

use anyhow::{Context, Result};
use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;

/// The command line.
#[derive(Parser, Debug)]
#[command(
    name = "tiny-llm-server",
    about = "OpenAI-compatible server over the week-3 engine"
)]
struct Args {
    /// The model directory (config.json, safetensors, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// The id clients pass as `model` [default: the directory's name].
    #[arg(long)]
    model_id: Option<String>,
    /// Address to bind (loopback by default: nothing outside this machine
    /// can reach it).
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// Port (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8000)]
    port: u16,
    /// Context length served, in tokens (prompt plus answer; at most the
    /// model's `max_position_embeddings`).
    #[arg(long, default_value_t = 2048)]
    context: usize,
    /// Sequences decoded together.
    #[arg(long, default_value_t = 4)]
    max_running: usize,
    /// Tokens per engine step (prefill chunks plus decodes).
    #[arg(long, default_value_t = 256)]
    max_batch_tokens: usize,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let model_id = match &args.model_id {
        Some(id) => id.clone(),
        None => args
            .model
            .file_name()
            .map(|n| n.to_string_lossy().to_string())
            .context("--model has no directory name; pass --model-id")?,
    };
    let state = serve::State::start(
        &args.model,
        model_id,
        args.context,
        args.max_running,
        args.max_batch_tokens,
    )?;
    let addr = SocketAddr::new(args.host, args.port);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(serve::serve(state, addr))
}
