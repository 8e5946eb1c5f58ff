//! `cargo xtask chat [--solution] [--ref DAYS] [--quant 4|8|none] [--week
//! 1|2] [--device D] [...]`: an interactive multi-turn chat with a real
//! model, through the week-2 path by default (week 1 while day 8 is not
//! implemented, or with `--week 1`).
//!
//! One message a line, from a terminal or a pipe
//! (`printf 'hi\nand then?\n' | cargo xtask chat --solution`); every turn
//! sends the whole history (week 1 re-reads it for every token; week 2 reads
//! it once per turn, then decodes from the KV cache; with day 14's prompt
//! cache it reads only what follows the prefix cached by earlier turns, and
//! prints per turn how many prompt tokens were reused and the time to the
//! first token). `--prompt-cache FILE` keeps that cache across runs.
//! `/reset` clears the history, `/quit` or the end of input ends the chat. Everything else is `run`'s ([`crate::run::ModelArgs`]): it starts
//! `tiny-llm-chat --chat`.

use crate::run::{launch, ModelArgs};
use anyhow::Result;

#[derive(clap::Args, Debug)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
}

/// The chat program's mode flag.
fn tail() -> Vec<String> {
    vec!["--chat".into()]
}

/// `cargo xtask chat`; exits the process with the chat's code when it fails.
pub fn run(args: &ChatArgs) -> Result<()> {
    launch(&args.model, tail())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        chat: ChatArgs,
    }

    #[test]
    fn chat_takes_run_s_options_and_no_prompt() {
        let cli = Cli::parse_from([
            "chat",
            "--solution",
            "--system",
            "Be brief.",
            "--max-tokens",
            "9",
            "--quant",
            "4",
            "--week",
            "2",
            "--prompt-cache",
            "c.safetensors",
        ]);
        assert!(cli.chat.model.solution);
        assert_eq!(cli.chat.model.system.as_deref(), Some("Be brief."));
        assert_eq!(cli.chat.model.max_tokens, Some(9));
        assert_eq!(cli.chat.model.quant.as_deref(), Some("4"));
        assert_eq!(cli.chat.model.week.as_deref(), Some("2"));
        assert_eq!(
            cli.chat.model.prompt_cache.as_deref(),
            Some(std::path::Path::new("c.safetensors"))
        );
        assert!(Cli::try_parse_from(["chat", "hello"]).is_err());
        assert_eq!(tail(), ["--chat"]);
    }
}
