//! The "learner's code" of the fixture course: day 1's module is not
//! written yet, day 2's loops forever.

pub mod basics;
pub mod looping;

/// A type error, compiled only with the `broken` feature.
#[cfg(feature = "broken")]
pub fn broken() -> u32 {
    "four"
}
