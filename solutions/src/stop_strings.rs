//! Day 18: stop strings, cut at the first one and never shown.
//!
//! OpenAI's `stop` parameter: "Up to 4 sequences where the API will stop
//! generating further tokens. The returned text will not contain the stop
//! sequence." (API reference, Chat and Completions, `stop`). A stop string
//! is text, not a token: it may span several tokens and start in the middle
//! of one. A streamed answer must therefore hold text back while it could
//! still be the start of a stop string, and release it once it cannot.
//!
//! Rule: the text received so far is `emitted + held`. After each push, if
//! `held` contains a stop string, everything before its first occurrence
//! (the smallest start; at equal starts any, the cut is the same) is
//! released and the stream is stopped (`finish_reason` `"stop"`). Otherwise
//! the longest suffix of `held` that is a proper prefix of some stop string
//! stays held (it starts on a character boundary), and the rest is
//! released. So the released text is always a prefix of the text cut at the
//! first stop, and never contains a stop string or, at the end, any part of
//! one.
//!
//! Units: bytes of UTF-8 text (cuts on character boundaries).

use tiny_llm_common::{Error, Result};

/// What one [`StopStrings::push`] released.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Released {
    /// Text that can be sent (possibly empty).
    pub text: String,
    /// A stop string was found: `text` ends just before it, and the
    /// generation should end (later pushes release nothing).
    pub stopped: bool,
}

/// Holds back text that may be the start of a stop string.
#[derive(Debug, Clone)]
pub struct StopStrings {
    stops: Vec<String>,
    held: String,
    stopped: bool,
}

impl StopStrings {
    /// A matcher for `stops` (none: everything is released at once).
    ///
    /// Errors: [`Error::Invalid`] when a stop string is empty (it would
    /// match before the first character).
    pub fn new(stops: Vec<String>) -> Result<Self> {
        if let Some(i) = stops.iter().position(|s| s.is_empty()) {
            return Err(Error::Invalid(format!(
                "stop string {i} is empty; a stop string needs at least one character"
            )));
        }
        Ok(StopStrings {
            stops,
            held: String::new(),
            stopped: false,
        })
    }

    /// Adds a text delta; returns what can be released now.
    pub fn push(&mut self, delta: &str) -> Released {
        if self.stopped {
            return Released {
                text: String::new(),
                stopped: true,
            };
        }
        self.held.push_str(delta);
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first {
            let text = self.held[..at].to_string();
            self.held.clear();
            self.stopped = true;
            return Released {
                text,
                stopped: true,
            };
        }
        let keep_from = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops
                    .iter()
                    .any(|s| s.len() > tail.len() && s.starts_with(tail))
            })
            .unwrap_or(self.held.len());
        let text = self.held[..keep_from].to_string();
        self.held.drain(..keep_from);
        Released {
            text,
            stopped: false,
        }
    }

    /// Whether a stop string was found.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// The text held back now (a possible start of a stop string).
    pub fn held(&self) -> &str {
        &self.held
    }

    /// Ends the stream without a stop string (the model stopped or hit
    /// `max_tokens`): releases the held text, which no stop string can
    /// complete now. Empty after a stop.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}
