//! Day 13: prefill in chunks under a token budget.
