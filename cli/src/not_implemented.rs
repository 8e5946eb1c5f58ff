//! Turning the learner's `todo!("day N: ...")` into "day N is not implemented
//! yet" and that day's hint, instead of a panic trace.
//!
//! The panic hook stays quiet for `todo!()` panics (and prints the usual
//! message for any other panic); `main` catches the unwind and prints
//! [`message`]. The hints come from `course.toml` (built in).

use std::any::Any;
pub use tiny_llm_course::Todo;

/// Parses a panic message; `None` unless it is a `todo!()`.
pub fn parse(msg: &str) -> Option<Todo> {
    Todo::parse(msg)
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

/// The course manifest, as it was when this binary was built.
const COURSE_TOML: &str = include_str!("../../course.toml");

/// The title and hint of `day` from course.toml, when it has them.
fn hint(day: u32) -> Option<(String, String)> {
    let course = tiny_llm_course::Course::parse(COURSE_TOML).ok()?;
    let d = course.day(day)?;
    Some((d.title.clone(), d.hint.clone()))
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
        // the parser is tiny_llm_course::Todo (tested there); this checks the wiring
        let t = parse("not yet implemented: day 5: Qwen2ModelWeek1::forward").unwrap();
        assert_eq!(
            (t.day, t.item.as_str()),
            (Some(5), "Qwen2ModelWeek1::forward")
        );
        assert_eq!(parse("index out of bounds"), None);
    }

    #[test]
    fn message_has_the_hint_from_course_toml() {
        let m = message(&parse("not yet implemented: day 1: softmax").unwrap());
        assert!(
            m.starts_with("day 1 is not implemented yet (`softmax` is still `todo!()`)."),
            "{m}"
        );
        assert!(m.contains("Hint for day 1"), "{m}");
        assert!(m.contains("cargo xtask check day1"), "{m}");
    }
}
