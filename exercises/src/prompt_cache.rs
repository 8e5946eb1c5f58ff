//! Day 14: the prompt cache: reuse the longest cached prefix across calls,
//! rewind, save and load.
