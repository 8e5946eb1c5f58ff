//! Turning the learner's `todo!("day N: ...")` into "day N is not implemented
//! yet" and that day's hint, instead of a panic trace.
//!
//! The panic hook stays quiet for `todo!()` panics (and prints the usual
//! message for any other panic); `main` catches the unwind and prints
//! [`message`]. The hints come from `course.toml` (built in).

use serde::Deserialize;
use std::any::Any;

const TODO_PREFIX: &str = "not yet implemented";

/// What a `todo!()` said: its day when it names one (`todo!("day 5: ...")`)
/// and the item after the day (`Qwen2ModelWeek1::forward`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Todo {
    pub day: Option<u32>,
    pub item: String,
}

/// Parses a panic message; `None` unless it is a `todo!()`.
pub fn parse(msg: &str) -> Option<Todo> {
    let rest = msg.strip_prefix(TODO_PREFIX)?;
    let rest = rest.strip_prefix(": ").unwrap_or(rest).trim();
    let day = rest
        .strip_prefix("day ")
        .map(|r| {
            r.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
        })
        .and_then(|d| d.parse().ok());
    let item = match day {
        Some(d) => rest
            .strip_prefix(&format!("day {d}"))
            .unwrap_or(rest)
            .trim_start_matches(':')
            .trim()
            .to_string(),
        None => rest.to_string(),
    };
    Some(Todo { day, item })
}

fn payload_text(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
}

/// The `todo!()` behind a caught panic, if it was one.
pub fn day_of(payload: &Box<dyn Any + Send>) -> Option<Todo> {
    payload_text(payload.as_ref()).and_then(parse)
}

/// Installs a panic hook that is silent for `todo!()` and the default one
/// otherwise.
pub fn install_hook() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if payload_text(info.payload()).and_then(parse).is_none() {
            default(info);
        }
    }));
}

#[derive(Deserialize)]
struct Course {
    #[serde(rename = "day")]
    days: Vec<Day>,
}

#[derive(Deserialize)]
struct Day {
    number: u32,
    title: String,
    hint: String,
}

/// The course manifest, as it was when this binary was built.
const COURSE_TOML: &str = include_str!("../../course.toml");

/// The title and hint of `day` from course.toml, when it has them.
fn hint(day: u32) -> Option<(String, String)> {
    let course: Course = toml::from_str(COURSE_TOML).ok()?;
    let d = course.days.into_iter().find(|d| d.number == day)?;
    Some((d.title, d.hint))
}

/// What to tell the learner.
pub fn message(todo: &Todo) -> String {
    let Some(day) = todo.day else {
        return format!(
            "a `todo!()` was reached ({}): part of your tiny-llm is not implemented yet.\n\
             Run `cargo xtask status` to see which days pass, or chat through the reference \
             with `cargo xtask run --solution`.",
            if todo.item.is_empty() {
                "no message"
            } else {
                &todo.item
            }
        );
    };
    let mut text = format!("day {day} is not implemented yet");
    if !todo.item.is_empty() {
        text.push_str(&format!(" (`{}` is still `todo!()`)", todo.item));
    }
    text.push_str(".\n");
    if let Some((title, hint)) = hint(day) {
        text.push_str(&format!(
            "\nHint for day {day} ({title}):\n{}\n",
            hint.trim_end()
        ));
    }
    text.push_str(&format!(
        "\nGrade it with `cargo xtask check day{day}`, or chat through the reference with \
         `cargo xtask run --solution`."
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn todo_messages_name_their_day() {
        let t = parse("not yet implemented: day 5: Qwen2ModelWeek1::forward").unwrap();
        assert_eq!(
            t,
            Todo {
                day: Some(5),
                item: "Qwen2ModelWeek1::forward".into()
            }
        );
        let t = parse("not yet implemented: day 12").unwrap();
        assert_eq!(
            t,
            Todo {
                day: Some(12),
                item: String::new()
            }
        );
        let t = parse("not yet implemented").unwrap();
        assert_eq!(
            t,
            Todo {
                day: None,
                item: String::new()
            }
        );
        assert_eq!(parse("index out of bounds"), None);
    }

    #[test]
    fn message_has_the_hint_from_course_toml() {
        let m = message(&Todo {
            day: Some(1),
            item: "softmax".into(),
        });
        assert!(
            m.starts_with("day 1 is not implemented yet (`softmax` is still `todo!()`)."),
            "{m}"
        );
        assert!(m.contains("Hint for day 1"), "{m}");
        assert!(m.contains("cargo xtask check day1"), "{m}");
    }
}
