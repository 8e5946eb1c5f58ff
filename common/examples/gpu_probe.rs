//! Prints the usable GPU backend (`cuda`, `metal`) or `none`; used by
//! `cargo xtask setup --backend cuda` to check the machine.

fn main() {
    let name = match tiny_llm_common::gpu::gpu_backend() {
        Some(tiny_llm_common::gpu::GpuBackend::Cuda) => "cuda",
        Some(tiny_llm_common::gpu::GpuBackend::Metal) => "metal",
        None => "none",
    };
    println!("{name}");
}
