//! `prompt`: the benchmark text, tokenized by the model's tokenizer, and the
//! ids file every side of the comparison reads.

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::path::Path;
use tiny_llm_common::Tokenizer;

/// The benchmark text: plain English prose, repeated until the prompt is
/// long enough. Written for this kit.
pub const PROMPT_TEXT: &str =
    "The harbour town wakes before the sun. Fishing boats slide out past the \
breakwater while the bakery on the corner pulls the first trays of bread from its ovens, and \
the smell drifts down to the quay where gulls wait on the bollards. By seven the ferry has \
left for the islands, carrying a schoolteacher, two carpenters with their tools, a crate of \
oranges and a dog that belongs to nobody in particular. The harbour master writes each \
departure in a ledger that his grandfather started, in the same blue ink, because some \
habits are worth more than the time they save. In the afternoon the wind turns, the boats \
come back heavier than they left, and the market fills with voices bargaining over mackerel, \
crab and the occasional surprised octopus. When the lamps come on, the town counts its day \
in fish, in fares and in stories, and goes to sleep with the sea still talking. ";

/// Tokenizes [`PROMPT_TEXT`] (repeated) and writes the first `tokens` ids
/// to `out` as `{"model": .., "ids": [..]}`.
pub fn write(model: &Path, tokens: usize, out: &Path) -> Result<()> {
    let tokenizer = Tokenizer::from_dir(model)?;
    let one = tokenizer.encode(PROMPT_TEXT, false)?;
    if one.is_empty() {
        bail!("the benchmark text encodes to no tokens");
    }
    let repeats = tokens.div_ceil(one.len()) + 1;
    let ids = tokenizer.encode(&PROMPT_TEXT.repeat(repeats), false)?;
    let ids = &ids[..tokens.min(ids.len())];
    let doc = json!({ "model": model.display().to_string(), "ids": ids });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    std::fs::write(out, format!("{doc}\n")).with_context(|| format!("writing {}", out.display()))
}

/// The ids of a file written by [`write`].
pub fn read_ids(path: &Path) -> Result<Vec<i32>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let doc: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    doc["ids"]
        .as_array()
        .with_context(|| format!("{}: no `ids` list", path.display()))?
        .iter()
        .map(|v| {
            v.as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .with_context(|| format!("{}: bad id {v} (expected an i32)", path.display()))
        })
        .collect()
}
