//! What a learner's `todo!()` says. The stubs in `exercises/` read
//! `todo!("day N: item")`; Rust turns that into the panic message
//! `not yet implemented: day N: item` (`unimplemented!()` gives
//! `not implemented: ...`), and proptest wraps a panic inside a property as
//! `Test failed: <message>; minimal failing input: ...`.

/// A parsed `todo!()` panic message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Todo {
    /// The day that owns the `todo!()`: the `N` of `day N: item`; `None` for
    /// a `todo!()` that names no day.
    pub day: Option<u32>,
    /// What is not implemented, after the day (`Qwen2ModelWeek1::forward`);
    /// empty when the message has no more.
    pub item: String,
    /// The whole message after `not yet implemented: ` (`day 5:
    /// Qwen2ModelWeek1::forward`); empty for a bare `todo!()`.
    pub text: String,
}

impl Todo {
    /// Parses a panic message; `None` unless it is a `todo!()` or
    /// `unimplemented!()` panic.
    ///
    /// ```
    /// let t = tiny_llm_course::Todo::parse("not yet implemented: day 5: Qwen2ModelWeek1::forward").unwrap();
    /// assert_eq!((t.day, t.item.as_str()), (Some(5), "Qwen2ModelWeek1::forward"));
    /// ```
    pub fn parse(message: &str) -> Option<Todo> {
        let message = message.trim();
        let message = message.strip_prefix("Test failed: ").unwrap_or(message);
        let rest = message
            .strip_prefix("not yet implemented")
            .or_else(|| message.strip_prefix("not implemented"))?;
        // `not yet implementedx` is not a todo!() message
        if !(rest.is_empty() || rest.starts_with(':')) {
            return None;
        }
        let text = rest.trim_start_matches(':');
        // proptest's wrapper adds `; minimal failing input: ...` and a period
        let text = text.split("; minimal failing input").next().unwrap_or("");
        let text = text.trim().trim_end_matches('.').trim().to_string();
        let (day, item) = match split_day(&text) {
            Some((day, item)) => (Some(day), item.to_string()),
            None => (None, text.clone()),
        };
        Some(Todo { day, item, text })
    }
}

/// `day 4: rms_norm` or `day4` -> (4, the rest after the colon).
fn split_day(text: &str) -> Option<(u32, &str)> {
    let rest = text.strip_prefix("day")?.trim_start();
    let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
    let after = &rest[digits..];
    if !(after.is_empty() || after.starts_with(':')) {
        return None;
    }
    let day = rest[..digits].parse().ok()?;
    Some((day, after.trim_start_matches(':').trim()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(day: Option<u32>, item: &str, text: &str) -> Option<Todo> {
        Some(Todo {
            day,
            item: item.into(),
            text: text.into(),
        })
    }

    #[test]
    fn day_and_item() {
        assert_eq!(
            Todo::parse("not yet implemented: day 5: Qwen2ModelWeek1::forward"),
            t(
                Some(5),
                "Qwen2ModelWeek1::forward",
                "day 5: Qwen2ModelWeek1::forward"
            )
        );
        assert_eq!(
            Todo::parse("not yet implemented: day 12"),
            t(Some(12), "", "day 12")
        );
        assert_eq!(
            Todo::parse("not yet implemented: day12: x"),
            t(Some(12), "x", "day12: x")
        );
    }

    #[test]
    fn without_a_day() {
        assert_eq!(Todo::parse("not yet implemented"), t(None, "", ""));
        assert_eq!(
            Todo::parse("not yet implemented: softmax"),
            t(None, "softmax", "softmax")
        );
        assert_eq!(
            Todo::parse("not yet implemented: daylight"),
            t(None, "daylight", "daylight")
        );
        assert_eq!(
            Todo::parse("not implemented: day 3"),
            t(Some(3), "", "day 3")
        );
    }

    #[test]
    fn inside_a_property() {
        assert_eq!(
            Todo::parse(
                "Test failed: not yet implemented: day 1: softmax; minimal failing input: x = 1."
            ),
            t(Some(1), "softmax", "day 1: softmax")
        );
    }

    #[test]
    fn other_panics_are_not_todos() {
        assert_eq!(Todo::parse("index out of bounds"), None);
        assert_eq!(Todo::parse("[wrong numbers] not yet implemented"), None);
        assert_eq!(Todo::parse("not yet implementedx"), None);
        assert_eq!(Todo::parse(""), None);
    }
}
