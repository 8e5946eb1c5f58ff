//! Day 2's module.

/// Never returns: the learner's endless loop.
pub fn spin() -> u64 {
    let mut n: u64 = 0;
    loop {
        n = std::hint::black_box(n.wrapping_add(1));
    }
}
