//! Day 18: the server's streaming detokenizer, token ids in, text deltas out.
//!
//! A streamed answer is a sequence of text deltas, and each delta must be
//! valid UTF-8 on its own (an SSE event is a JSON string). Byte-level BPE
//! tokens are bytes, not characters (GPT-2's byte-level BPE, Radford et al.
//! 2019, section 2.2): a 2-4 byte character (é, 東, 🦀) may be split over
//! several tokens. This detokenizer keeps the bytes of the tokens received,
//! emits every complete character at once, and holds back only the bytes of
//! a character that the next token may still complete.
//!
//! Unlike day 7's `StreamingDetokenizer` (which decodes a window of ids and
//! drops an unfinished last character), it works on bytes and reproduces the
//! tokenizer's own decode exactly: the concatenation of every delta and of
//! [`ByteDetokenizer::finish`] is `tokenizer.decode(all ids)`, bytes that can
//! never form a character included (each becomes U+FFFD, as
//! `String::from_utf8_lossy` does, which is what the `tokenizers` crate's
//! byte-level decoder calls). So a streamed answer equals the non-streamed
//! one, character for character.
//!
//! The UTF-8 rules (RFC 3629, section 3; the Unicode Standard, section 3.9,
//! "U+FFFD substitution of maximal subparts"): `std::str::from_utf8` on the
//! held bytes says how far they are valid (`valid_up_to`) and, past that,
//! either how many bytes are invalid (`error_len() == Some(n)`: one U+FFFD,
//! skip `n` bytes, go on) or that the input ended inside a character
//! (`error_len() == None`: hold those bytes).
//!
//! Units: bytes. Cost: each byte is examined a bounded number of times (no
//! re-decoding of the whole answer per token).
//!
//! Hints: Check your work with `cargo xtask check day18`. `push_bytes` is a
//! loop over `std::str::from_utf8(&pending[start..])`; its error's
//! `valid_up_to()` and `error_len()` say what to emit and what to keep.

use tiny_llm_common::tokenizer::Tokenizer;
use tiny_llm_common::{Error, Result};

/// The byte that a character of the byte-level alphabet stands for (given).
///
/// GPT-2's byte-level BPE spells every byte as a printable character: the
/// bytes `!`..=`~`, `¡`..=`¬` and `®`..=`ÿ` as themselves, and the other 68
/// bytes, in increasing order, as U+0100, U+0101, ... (so a space is `Ġ`,
/// U+0120, and a newline `Ċ`, U+010A). `None` for a character outside that
/// alphabet. Reference: `bytes_to_unicode` in OpenAI's GPT-2 `encoder.py`.
pub fn byte_level_byte(c: char) -> Option<u8> {
    let printable = |b: u32| {
        (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b)
    };
    let code = c as u32;
    if code < 0x100 {
        return printable(code).then_some(code as u8);
    }
    let n = (code - 0x100) as usize;
    (0u32..0x100)
        .filter(|&b| !printable(b))
        .nth(n)
        .map(|b| b as u8)
}

/// The bytes of token `id` (given): its byte-level spelling mapped back
/// through [`byte_level_byte`], or, when a character of it is outside the
/// alphabet (added tokens such as `<|im_end|>` that are not spelled in it),
/// its UTF-8 bytes as they are. This is what the `tokenizers` crate's
/// byte-level decoder does per token before `from_utf8_lossy`.
///
/// Errors: [`Error::Tokenizer`] for an id the tokenizer does not have.
pub fn token_bytes(tokenizer: &Tokenizer, id: u32) -> Result<Vec<u8>> {
    let token = tokenizer.id_to_token(id).ok_or_else(|| {
        Error::Tokenizer(format!(
            "token id {id} is not in the vocabulary ({} tokens)",
            tokenizer.vocab_size()
        ))
    })?;
    let mapped: Option<Vec<u8>> = token.chars().map(byte_level_byte).collect();
    Ok(mapped.unwrap_or_else(|| token.into_bytes()))
}

/// Token ids (or raw bytes) in, valid UTF-8 text deltas out.
///
/// Invariants: every returned `String` is valid UTF-8 (Rust guarantees it;
/// the point is that no character is cut or replaced early); the
/// concatenation of all deltas and of `finish()` equals
/// `String::from_utf8_lossy(all bytes pushed)`; at most 3 bytes are held
/// back (the start of one unfinished character).
#[allow(dead_code)] // used once you write the methods
pub struct ByteDetokenizer<'t> {
    tokenizer: &'t Tokenizer,
    pending: Vec<u8>,
}

impl<'t> ByteDetokenizer<'t> {
    /// An empty detokenizer over `tokenizer`.
    pub fn new(tokenizer: &'t Tokenizer) -> Self {
        let _ = tokenizer;
        todo!("day 18: ByteDetokenizer::new")
    }

    /// Adds token `id`; returns the text that became complete (empty while
    /// a character is unfinished).
    ///
    /// Errors: [`Error::Tokenizer`] for an id outside the vocabulary
    /// (nothing is added then).
    pub fn push(&mut self, id: u32) -> Result<String> {
        let _ = (self, id);
        todo!("day 18: ByteDetokenizer::push")
    }

    /// Adds raw bytes; returns the text that became complete: the valid
    /// characters, one U+FFFD for each maximal invalid subpart, and nothing
    /// for a trailing incomplete character (held until the next push).
    pub fn push_bytes(&mut self, bytes: &[u8]) -> String {
        let _ = (self, bytes);
        todo!("day 18: ByteDetokenizer::push_bytes")
    }

    /// Bytes held back (an unfinished character's first 1-3 bytes).
    pub fn held(&self) -> &[u8] {
        let _ = self;
        todo!("day 18: ByteDetokenizer::held")
    }

    /// Ends the stream: the held bytes, which no token will complete now,
    /// become one U+FFFD (as `from_utf8_lossy` ends a truncated input);
    /// empty when nothing is held. The detokenizer is empty afterwards.
    pub fn finish(&mut self) -> String {
        let _ = self;
        todo!("day 18: ByteDetokenizer::finish")
    }
}
