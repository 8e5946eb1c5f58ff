//! Day 11: the fused kernels on slices (no MLX): RMSNorm, RoPE, SwiGLU and
//! softmax, each a scalar version that is obviously right (the oracle) and
//! a fast one (SIMD chosen at run time, threads over rows).
