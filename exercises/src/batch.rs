//! Day 13: a batch of sequences at different positions: masks
//! `B x 1 x L x S` and per-row RoPE offsets.
