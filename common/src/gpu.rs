//! GPU detection and CUDA custom kernels: the parts of mlx-c that mlx-rs
//! 0.33 does not wrap (given code, used from week 2 on).
//!
//! MLX ends the process when asked for `Device::gpu()` on a build or machine
//! without a GPU, so always ask [`gpu_available`] first.

use crate::{Error, Result};
use mlx_rs::{Array, Dtype, Stream};
use std::ffi::CString;

/// Which GPU backend this MLX build can use on this machine, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpuBackend {
    /// Apple GPU through Metal (macOS).
    Metal,
    /// NVIDIA GPU through MLX's CUDA backend (Linux, `setup --backend cuda`).
    Cuda,
}

/// The usable GPU backend, or `None` (a CPU-only libmlx, or no device or
/// driver). Safe to call anywhere: it never touches `Device::gpu()`.
pub fn gpu_backend() -> Option<GpuBackend> {
    let mut cuda = false;
    let mut metal = false;
    // SAFETY: both functions only write the bool behind the pointer.
    let cuda_ok = unsafe { mlx_sys::mlx_cuda_is_available(&mut cuda) } == 0;
    let metal_ok = unsafe { mlx_sys::mlx_metal_is_available(&mut metal) } == 0;
    if cuda_ok && cuda {
        Some(GpuBackend::Cuda)
    } else if metal_ok && metal {
        Some(GpuBackend::Metal)
    } else {
        None
    }
}

/// Whether a GPU can be used (see [`gpu_backend`]).
pub fn gpu_available() -> bool {
    gpu_backend().is_some()
}

/// A compile-time template argument of a [`CudaKernel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateArg {
    /// A type parameter (for example `T` = `float`).
    Dtype(Dtype),
    /// An `int` parameter.
    Int(i32),
    /// A `bool` parameter.
    Bool(bool),
}

/// Shape and dtype of one kernel output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelOutput {
    pub shape: Vec<i32>,
    pub dtype: Dtype,
}

/// A launch: grid and block sizes (in threads, as MLX's `cuda_kernel`
/// takes them), template arguments, and an optional fill value for the
/// outputs.
#[derive(Debug, Clone, PartialEq)]
pub struct Launch {
    /// Total threads along x, y, z.
    pub grid: (i32, i32, i32),
    /// Threads per block along x, y, z.
    pub block: (i32, i32, i32),
    pub template_args: Vec<(String, TemplateArg)>,
    /// Fill every output with this value first; when `None` the kernel must
    /// write every output element.
    pub init_value: Option<f32>,
}

/// A custom CUDA kernel run by MLX's CUDA backend, compiled at first use
/// (NVRTC) and cached by MLX. The Rust face of `mx.fast.cuda_kernel`.
///
/// The body is written against the names given to [`CudaKernel::new`]: each
/// input `a` is a `const T* a` (with `a_shape`, `a_strides`, `a_ndim` when
/// the body uses them), each output a `T*`.
///
/// Reference: MLX `mlx/backend/cuda/custom_kernel.cpp`, mlx-c `fast.h`.
pub struct CudaKernel {
    raw: mlx_sys::mlx_fast_cuda_kernel,
    inputs: usize,
    outputs: usize,
}

fn c_string(what: &str, s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::Invalid(format!("{what} contains a NUL byte")))
}

fn check(status: i32, what: &str) -> Result<()> {
    if status == 0 {
        Ok(())
    } else {
        Err(Error::Invalid(format!("MLX failed {what}")))
    }
}

/// Fails unless MLX's CUDA backend is usable. Also makes sure mlx-rs's
/// error handler is installed first: mlx-c's default handler ends the
/// process on an error.
fn require_cuda() -> Result<()> {
    mlx_rs::ops::zeros::<f32>(&[1])?;
    if gpu_backend() != Some(GpuBackend::Cuda) {
        return Err(Error::Invalid(
            "no CUDA GPU is usable: this MLX is CPU-only, or no NVIDIA device/driver was found \
             (on a GPU machine: `cargo xtask setup --backend cuda`)"
                .into(),
        ));
    }
    Ok(())
}

/// An mlx-c string vector, freed on drop.
struct Strings(mlx_sys::mlx_vector_string);

impl Strings {
    fn new(what: &str, items: &[&str]) -> Result<Strings> {
        let owned = items
            .iter()
            .map(|s| c_string(what, s))
            .collect::<Result<Vec<_>>>()?;
        let mut ptrs: Vec<*const std::os::raw::c_char> = owned.iter().map(|s| s.as_ptr()).collect();
        // SAFETY: mlx-c copies the strings; `owned` outlives the call.
        let raw = unsafe { mlx_sys::mlx_vector_string_new_data(ptrs.as_mut_ptr(), ptrs.len()) };
        Ok(Strings(raw))
    }
}

impl Drop for Strings {
    fn drop(&mut self) {
        // SAFETY: created by mlx_vector_string_new_data, freed once.
        unsafe { mlx_sys::mlx_vector_string_free(self.0) };
    }
}

/// The config of one launch, freed on drop.
struct Config(mlx_sys::mlx_fast_cuda_kernel_config);

impl Drop for Config {
    fn drop(&mut self) {
        // SAFETY: created by mlx_fast_cuda_kernel_config_new, freed once.
        unsafe { mlx_sys::mlx_fast_cuda_kernel_config_free(self.0) };
    }
}

impl CudaKernel {
    /// Builds a kernel from its name, input and output names and CUDA body.
    /// Compilation is deferred: source errors surface when an output is
    /// evaluated.
    ///
    /// Errors: [`Error::Invalid`] for no outputs or a name with a NUL byte.
    pub fn new(
        name: &str,
        input_names: &[&str],
        output_names: &[&str],
        source: &str,
        header: &str,
        ensure_row_contiguous: bool,
    ) -> Result<CudaKernel> {
        if output_names.is_empty() {
            return Err(Error::Invalid(format!(
                "CUDA kernel `{name}` needs at least one output"
            )));
        }
        require_cuda()?;
        let c_name = c_string("kernel name", name)?;
        let c_source = c_string("kernel source", source)?;
        let c_header = c_string("kernel header", header)?;
        let ins = Strings::new("input name", input_names)?;
        let outs = Strings::new("output name", output_names)?;
        // SAFETY: every pointer is valid for the call; mlx-c copies what it keeps.
        let raw = unsafe {
            mlx_sys::mlx_fast_cuda_kernel_new(
                c_name.as_ptr(),
                ins.0,
                outs.0,
                c_source.as_ptr(),
                c_header.as_ptr(),
                ensure_row_contiguous,
                0,
            )
        };
        if raw.ctx.is_null() {
            return Err(Error::Invalid(format!(
                "MLX could not create CUDA kernel `{name}`"
            )));
        }
        Ok(CudaKernel {
            raw,
            inputs: input_names.len(),
            outputs: output_names.len(),
        })
    }

    /// Runs the kernel on `stream` (a GPU stream); lazy like every MLX op.
    ///
    /// Errors: [`Error::Invalid`] when the counts of inputs or outputs differ
    /// from those given to [`CudaKernel::new`], or when no GPU is usable.
    ///
    /// # Safety
    /// The kernel must only touch memory inside its input and output buffers
    /// for this launch, never write an input, and write every output element
    /// unless `init_value` is set.
    pub unsafe fn apply(
        &self,
        inputs: &[&Array],
        outputs: &[KernelOutput],
        launch: &Launch,
        stream: &Stream,
    ) -> Result<Vec<Array>> {
        if inputs.len() != self.inputs || outputs.len() != self.outputs {
            return Err(Error::Invalid(format!(
                "CUDA kernel takes {} inputs and {} outputs, got {} and {}",
                self.inputs,
                self.outputs,
                inputs.len(),
                outputs.len()
            )));
        }
        require_cuda()?;
        let config = Config(unsafe { mlx_sys::mlx_fast_cuda_kernel_config_new() });
        for o in outputs {
            let status = unsafe {
                mlx_sys::mlx_fast_cuda_kernel_config_add_output_arg(
                    config.0,
                    o.shape.as_ptr(),
                    o.shape.len(),
                    o.dtype as u32 as mlx_sys::mlx_dtype,
                )
            };
            check(status, "adding a kernel output")?;
        }
        let (g, b) = (launch.grid, launch.block);
        check(
            unsafe { mlx_sys::mlx_fast_cuda_kernel_config_set_grid(config.0, g.0, g.1, g.2) },
            "setting the grid",
        )?;
        check(
            unsafe {
                mlx_sys::mlx_fast_cuda_kernel_config_set_thread_group(config.0, b.0, b.1, b.2)
            },
            "setting the block",
        )?;
        for (name, arg) in &launch.template_args {
            let c = c_string("template argument", name)?;
            let status = unsafe {
                match *arg {
                    TemplateArg::Dtype(d) => {
                        mlx_sys::mlx_fast_cuda_kernel_config_add_template_arg_dtype(
                            config.0,
                            c.as_ptr(),
                            d as u32 as mlx_sys::mlx_dtype,
                        )
                    }
                    TemplateArg::Int(v) => {
                        mlx_sys::mlx_fast_cuda_kernel_config_add_template_arg_int(
                            config.0,
                            c.as_ptr(),
                            v,
                        )
                    }
                    TemplateArg::Bool(v) => {
                        mlx_sys::mlx_fast_cuda_kernel_config_add_template_arg_bool(
                            config.0,
                            c.as_ptr(),
                            v,
                        )
                    }
                }
            };
            check(status, "adding a template argument")?;
        }
        if let Some(v) = launch.init_value {
            check(
                unsafe { mlx_sys::mlx_fast_cuda_kernel_config_set_init_value(config.0, v) },
                "setting the init value",
            )?;
        }
        let ptrs: Vec<mlx_sys::mlx_array> = inputs.iter().map(|a| a.as_ptr()).collect();
        let in_vec = unsafe { mlx_sys::mlx_vector_array_new_data(ptrs.as_ptr(), ptrs.len()) };
        let mut out_vec = unsafe { mlx_sys::mlx_vector_array_new() };
        let status = unsafe {
            mlx_sys::mlx_fast_cuda_kernel_apply(
                &mut out_vec,
                self.raw,
                in_vec,
                config.0,
                stream.as_ptr(),
            )
        };
        unsafe { mlx_sys::mlx_vector_array_free(in_vec) };
        let result = check(status, "launching the CUDA kernel").map(|_| {
            let n = unsafe { mlx_sys::mlx_vector_array_size(out_vec) };
            (0..n)
                .map(|i| {
                    let mut a = unsafe { mlx_sys::mlx_array_new() };
                    unsafe { mlx_sys::mlx_vector_array_get(&mut a, out_vec, i) };
                    // SAFETY: `a` is a new reference owned by the returned Array.
                    unsafe { Array::from_ptr(a) }
                })
                .collect()
        });
        unsafe { mlx_sys::mlx_vector_array_free(out_vec) };
        result
    }
}

impl Drop for CudaKernel {
    fn drop(&mut self) {
        // SAFETY: created by mlx_fast_cuda_kernel_new, freed once.
        unsafe { mlx_sys::mlx_fast_cuda_kernel_free(self.raw) };
    }
}

impl std::fmt::Debug for CudaKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaKernel")
            .field("inputs", &self.inputs)
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

/// The example kernel: `out = a * x + y` elementwise (f32), the "hello
/// world" of week 2's kernel days. Launch it with the template argument
/// `N` (the element count) and at least `N` threads.
pub fn axpy_kernel() -> Result<CudaKernel> {
    CudaKernel::new(
        "tiny_llm_axpy",
        &["x", "y", "a"],
        &["out"],
        r#"
        auto i = blockIdx.x * blockDim.x + threadIdx.x;
        if (i < N) {
            out[i] = a[0] * x[i] + y[i];
        }
        "#,
        "",
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_never_exits_and_cpu_build_has_no_cuda() {
        // On the CPU-only libmlx this must return, not end the process.
        let backend = gpu_backend();
        if cfg!(target_os = "linux") && std::env::var_os("TINY_LLM_EXPECT_GPU").is_none() {
            assert_eq!(backend, None);
        }
    }

    #[test]
    fn a_kernel_needs_an_output_and_a_cuda_gpu() {
        assert!(CudaKernel::new("k", &["x"], &[], "", "", true).is_err());
        if gpu_backend() != Some(GpuBackend::Cuda) {
            let err = axpy_kernel().unwrap_err().to_string();
            assert!(err.contains("no CUDA GPU"), "{err}");
            return;
        }
        let k = axpy_kernel().unwrap();
        let x = Array::from_slice(&[1.0f32], &[1]);
        let out = KernelOutput {
            shape: vec![1],
            dtype: Dtype::Float32,
        };
        let launch = Launch {
            grid: (1, 1, 1),
            block: (1, 1, 1),
            template_args: vec![],
            init_value: None,
        };
        let err = unsafe { k.apply(&[&x], &[out], &launch, &Stream::new()) }.unwrap_err();
        assert!(err.to_string().contains("takes 3 inputs"), "{err}");
    }
}
