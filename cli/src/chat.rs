//! The interactive chat (`--chat`, behind `cargo xtask chat`): one line a
//! turn, the whole history sent each turn.
//!
//! Input is read line by line, from a terminal or a pipe
//! (`printf 'hi\nand then?\n' | tiny-llm-chat --chat`). Each non-empty line
//! is a user message; the answer is appended to the history as an assistant
//! message, so the next turn sees the whole conversation. Commands: `/reset`
//! forgets the history (the system message stays), `/quit` (or end of
//! input) ends the chat. A turn that fails (a conversation grown past the
//! context, say) is reported and left out of the history; the chat goes on.

use anyhow::{bail, Result};
use std::io::{BufRead, Write};
use tiny_llm_common::ChatMessage;

/// What one line of input asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A user message.
    Say(String),
    /// `/reset`: forget the history.
    Reset,
    /// `/quit` or `/exit`.
    Quit,
    /// An empty line: nothing.
    Nothing,
}

/// Reads one line of input (without its line ending).
pub fn parse_line(line: &str) -> Line {
    let text = line.trim_end_matches(['\n', '\r']);
    match text.trim() {
        "" => Line::Nothing,
        "/reset" => Line::Reset,
        "/quit" | "/exit" => Line::Quit,
        _ => Line::Say(text.to_string()),
    }
}

/// Runs the chat over `input`.
///
/// - `system`: a system message kept at the start of the history.
/// - `prompt`: where to write the `> ` prompt (a terminal's stderr), or
///   `None` for piped input.
/// - `turn`: answers the history (whose last message is the new user
///   message) and returns the answer's text; it prints the answer itself.
///
/// Returns the number of turns answered. Errors: reading the input; after
/// the input ends, the number of turns that failed, if any (each was
/// reported on stderr when it happened).
pub fn run(
    input: impl BufRead,
    system: Option<&str>,
    mut prompt: Option<&mut dyn Write>,
    mut turn: impl FnMut(&[ChatMessage]) -> Result<String>,
) -> Result<usize> {
    let start: Vec<ChatMessage> = system.map(ChatMessage::system).into_iter().collect();
    let mut history = start.clone();
    let (mut answered, mut failed) = (0, 0);
    let mut lines = input.lines();
    loop {
        if let Some(p) = prompt.as_deref_mut() {
            let _ = write!(p, "> ");
            let _ = p.flush();
        }
        let Some(line) = lines.next() else { break };
        match parse_line(&line?) {
            Line::Nothing => continue,
            Line::Quit => break,
            Line::Reset => {
                history.clone_from(&start);
                eprintln!("[history cleared]");
            }
            Line::Say(text) => {
                history.push(ChatMessage::user(text));
                match turn(&history) {
                    Ok(answer) => {
                        history.push(ChatMessage::assistant(answer));
                        answered += 1;
                    }
                    Err(e) => {
                        history.pop();
                        failed += 1;
                        eprintln!("error: {e:#} (this turn is left out of the history)");
                    }
                }
            }
        }
    }
    if failed > 0 {
        bail!("{failed} of {} turns failed", answered + failed);
    }
    Ok(answered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_messages_or_commands() {
        assert_eq!(parse_line("hi there\n"), Line::Say("hi there".into()));
        assert_eq!(parse_line("  indented\r\n"), Line::Say("  indented".into()));
        assert_eq!(parse_line("   \n"), Line::Nothing);
        assert_eq!(parse_line("/reset"), Line::Reset);
        assert_eq!(parse_line(" /quit \n"), Line::Quit);
        assert_eq!(parse_line("/exit"), Line::Quit);
        assert_eq!(parse_line("/resetting"), Line::Say("/resetting".into()));
    }

    /// Each turn sees the whole history; `/reset` keeps the system message.
    #[test]
    fn the_history_grows_turn_by_turn() {
        let input = b"hi\n\nand then?\n/reset\nagain\n/quit\nnever read\n";
        let mut seen: Vec<Vec<ChatMessage>> = Vec::new();
        let mut prompts = Vec::new();
        let n = run(&input[..], Some("be brief"), Some(&mut prompts), |h| {
            seen.push(h.to_vec());
            Ok(format!("answer {}", seen.len()))
        })
        .unwrap();
        assert_eq!(n, 3);
        let sys = ChatMessage::system("be brief");
        let want = vec![
            vec![sys.clone(), ChatMessage::user("hi")],
            vec![
                sys.clone(),
                ChatMessage::user("hi"),
                ChatMessage::assistant("answer 1"),
                ChatMessage::user("and then?"),
            ],
            vec![sys, ChatMessage::user("again")],
        ];
        assert_eq!(seen, want);
        // a prompt before each of the 6 lines read (the 7th is never read)
        assert_eq!(String::from_utf8(prompts).unwrap(), "> ".repeat(6));
    }

    #[test]
    fn a_failed_turn_is_left_out_and_reported_at_the_end() {
        let input = b"one\ntoo long\nthree\n";
        let mut seen = Vec::new();
        let err = run(&input[..], None, None, |h| {
            seen.push(h.len());
            if h.last().unwrap().content == "too long" {
                bail!("the prompt has 5000 tokens, more than the model's context");
            }
            Ok("ok".into())
        })
        .unwrap_err();
        assert_eq!(err.to_string(), "1 of 3 turns failed");
        // turn 3 sees turn 1 and its answer, not the failed turn 2
        assert_eq!(seen, [1, 3, 3]);
    }
}
