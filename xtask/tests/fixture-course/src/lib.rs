//! The "learner's code" of the fixture course.

/// Not written yet.
pub fn softmax() -> f32 {
    todo!("day 1: softmax")
}

/// A type error, compiled only with the `broken` feature.
#[cfg(feature = "broken")]
pub fn broken() -> u32 {
    "four"
}
