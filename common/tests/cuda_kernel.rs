//! The example CUDA kernel against plain arithmetic. Needs an NVIDIA GPU with
//! `cargo xtask setup --backend cuda`; elsewhere it prints `[skipped] no GPU`
//! (the grader's tag: `cargo xtask check` reports it as skipped, not passed).

use mlx_rs::{Array, Device, Dtype, Stream};
use tiny_llm_common::gpu::{
    axpy_kernel, gpu_backend, GpuBackend, KernelOutput, Launch, TemplateArg,
};

#[test]
fn axpy_kernel_matches_plain_arithmetic() {
    if gpu_backend() != Some(GpuBackend::Cuda) {
        eprintln!("[skipped] no GPU (MLX's CUDA backend is not available here)");
        return;
    }
    let n = 1000;
    let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.5).collect();
    let y: Vec<f32> = (0..n).map(|i| 1.0 - i as f32).collect();
    let (xa, ya) = (Array::from_slice(&x, &[n]), Array::from_slice(&y, &[n]));
    let a = Array::from_slice(&[3.0f32], &[1]);
    let kernel = axpy_kernel().unwrap();
    let launch = Launch {
        grid: (n, 1, 1),
        block: (256, 1, 1),
        template_args: vec![("N".into(), TemplateArg::Int(n))],
        init_value: None,
    };
    let stream = Stream::new_with_device(&Device::gpu());
    let output = KernelOutput {
        shape: vec![n],
        dtype: Dtype::Float32,
    };
    // SAFETY: n threads, each reads x[i], y[i], a[0] and writes out[i] once (i < n).
    let out = unsafe { kernel.apply(&[&xa, &ya, &a], &[output], &launch, &stream) }.unwrap();
    out[0].eval().unwrap();
    let got = out[0].as_slice::<f32>();
    for i in 0..n as usize {
        let want = 3.0 * x[i] + y[i];
        assert!(
            (got[i] - want).abs() <= 1e-5 * want.abs().max(1.0),
            "out[{i}] = {} but 3 * x + y = {want}",
            got[i]
        );
    }
}
