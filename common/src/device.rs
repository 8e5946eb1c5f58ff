//! The MLX side of `--device cpu|gpu` and `--dtype f32|f16|bf16`. The names,
//! the `TINY_LLM_DEVICE` variable and the automatic choice live in the
//! MLX-free `tiny-llm-course` crate (re-exported here); this module makes
//! the choice MLX's default device and maps a [`DType`] to MLX's.

pub use tiny_llm_course::{DType, Device, NoGpu, DEVICE_ENV};

/// MLX's dtype for a course dtype.
pub fn mlx_dtype(dtype: DType) -> mlx_rs::Dtype {
    match dtype {
        DType::F32 => mlx_rs::Dtype::Float32,
        DType::F16 => mlx_rs::Dtype::Float16,
        DType::Bf16 => mlx_rs::Dtype::Bfloat16,
    }
}

/// Makes `requested` (or, for `None`, the GPU when one is usable, else the
/// CPU) MLX's default device and returns it. Asks
/// [`crate::gpu::gpu_available`] first, because MLX ends the process when
/// given a GPU it does not have: `Some(Device::Gpu)` without one is [`NoGpu`].
pub fn select(requested: Option<Device>) -> Result<Device, NoGpu> {
    let gpu = requested != Some(Device::Cpu) && crate::gpu::gpu_available();
    let device = Device::choose(requested, gpu)?;
    mlx_rs::Device::set_default(&match device {
        Device::Cpu => mlx_rs::Device::cpu(),
        Device::Gpu => mlx_rs::Device::gpu(),
    });
    Ok(device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtypes_map_to_mlx() {
        assert_eq!(mlx_dtype(DType::F32), mlx_rs::Dtype::Float32);
        assert_eq!(mlx_dtype(DType::F16), mlx_rs::Dtype::Float16);
        assert_eq!(mlx_dtype(DType::Bf16), mlx_rs::Dtype::Bfloat16);
    }
}
