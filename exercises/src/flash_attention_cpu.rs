//! Day 12: flash attention on slices (no MLX): the scalar oracle and the
//! tiled kernel with an online softmax, split over threads.
