//! Where a CPU kernel on plain slices meets MLX arrays (given code, used by
//! day 10's `quantized_linear`).
//!
//! A kernel such as day 10's `qmatmul` reads `&[u32]`, `&[bf16]` and
//! `&[f32]` and writes a `&mut [f32]`; MLX holds lazy arrays. Crossing from
//! one to the other costs, per call:
//!
//! 1. **A sync** ([`host`]): MLX evaluates the array's pending graph and
//!    the calling thread waits for it (`mlx_array_eval`). Weights loaded from
//!    safetensors are evaluated once, on their first crossing; an
//!    activation is evaluated at every crossing, which ends MLX's lazy graph
//!    there (nothing before the call can fuse with anything after it).
//! 2. **No copy for a row-contiguous array of the right dtype**: the slice
//!    borrows MLX's own buffer (`mlx_array_data_*`), so weights stay where
//!    MLX loaded them. A strided or broadcast view (a transpose, a slice of
//!    a middle axis) is first made row-contiguous by MLX: one copy, counted
//!    in [`BridgeStats::bytes_copied`]. [`host_f32`] also casts another
//!    float dtype to f32 (a copy, counted).
//! 3. **The output** ([`from_vec`]): the kernel's `Vec<f32>` is handed to
//!    MLX with a deleter (`mlx_array_new_data_managed_payload`), which would
//!    let MLX use it in place; MLX's CPU allocator (the Linux wheel, 0.32)
//!    cannot adopt a foreign buffer, so MLX copies it into one of its own
//!    and frees the `Vec` at once. One copy of `M x O` f32 (3.5 KB for a
//!    decode step's 896-wide layer, 0.6 MB for the 151936-wide lm_head),
//!    counted in [`BridgeStats::bytes_copied`] when it happens (the bridge
//!    compares the array's data pointer with the `Vec`'s). The array is
//!    already evaluated; MLX ops that follow it see an ordinary input.
//!
//! [`stats`] counts crossings, syncs, bytes borrowed and bytes copied for
//! the whole process (atomics: kernels on other threads may read them, MLX
//! calls stay on one thread). Measured on the kit's 2-core AMD EPYC
//! (release, 2026-12-02, `solutions/examples/qmatmul_bench.rs`): one
//! crossing of day 10's `quantized_linear` with its inputs evaluated costs
//! about 1.5 us beyond the kernel (1 x 896 by 128 x 896).
//!
//! On MLX's CUDA backend (0.32, `mlx/backend/cuda/allocator.cpp`) a GPU
//! op's output lives in device memory (`cudaMallocAsync`); reading its data
//! pointer (`Buffer::raw_ptr`, behind `mlx_array_data_*`) first moves it to
//! unified memory (`cudaMallocManaged`, or pinned host memory where managed
//! memory is not supported): one device-to-host copy per crossing of an
//! activation, once per weight, not counted here. The slice is then valid
//! host memory and the CPU kernels compute the right values on a GPU too,
//! only slowly; [`from_vec`]'s output is copied into unified memory that
//! the GPU reads. The week-2 CPU kernels are for the CPU path; on a GPU the
//! model routes to their CUDA versions (`Week2Kernels::gpu`).
//!
//! Reference: mlx-c `array.h` (`mlx_array_eval`, `mlx_array_data_*`,
//! `mlx_array_new_data_managed_payload`); MLX `array(void*, Shape, Dtype,
//! Deleter)`.

use crate::{Error, Result};
use mlx_rs::{Array, ArrayElement, Dtype};
use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// What the bridge has done since the start (or the last [`reset_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgeStats {
    /// Kernel calls that went through the bridge ([`crossing`]).
    pub crossings: u64,
    /// Arrays read ([`host`], [`host_f32`]).
    pub reads: u64,
    /// Reads that had to evaluate a pending graph (a sync that computed
    /// something; reads of already evaluated arrays are not counted).
    pub evals: u64,
    /// Bytes borrowed in place, without a copy.
    pub bytes_borrowed: u64,
    /// Bytes MLX copied to make an input row-contiguous or f32.
    pub bytes_copied: u64,
    /// Output buffers handed to MLX ([`from_vec`]).
    pub outputs: u64,
}

static CROSSINGS: AtomicU64 = AtomicU64::new(0);
static READS: AtomicU64 = AtomicU64::new(0);
static EVALS: AtomicU64 = AtomicU64::new(0);
static BORROWED: AtomicU64 = AtomicU64::new(0);
static COPIED: AtomicU64 = AtomicU64::new(0);
static OUTPUTS: AtomicU64 = AtomicU64::new(0);

/// The counters now.
pub fn stats() -> BridgeStats {
    BridgeStats {
        crossings: CROSSINGS.load(Relaxed),
        reads: READS.load(Relaxed),
        evals: EVALS.load(Relaxed),
        bytes_borrowed: BORROWED.load(Relaxed),
        bytes_copied: COPIED.load(Relaxed),
        outputs: OUTPUTS.load(Relaxed),
    }
}

/// Sets every counter to zero.
pub fn reset_stats() {
    for c in [&CROSSINGS, &READS, &EVALS, &BORROWED, &COPIED, &OUTPUTS] {
        c.store(0, Relaxed);
    }
}

/// Counts one kernel call (the caller says when it crosses).
pub fn crossing() {
    CROSSINGS.fetch_add(1, Relaxed);
}

/// An evaluated, row-contiguous array whose buffer a kernel may borrow.
#[derive(Debug)]
pub struct HostArray {
    array: Array,
}

impl HostArray {
    /// The elements in row-major order, borrowed from MLX's buffer (valid
    /// as long as `self`).
    ///
    /// Errors: [`Error::Invalid`] when `T` is not the array's dtype.
    pub fn slice<T: ArrayElement>(&self) -> Result<&[T]> {
        if self.array.size() == 0 {
            return Ok(&[]);
        }
        self.array
            .try_as_slice::<T>()
            .map_err(|e| Error::Invalid(format!("cannot borrow the array's buffer: {e}")))
    }

    /// The array (row-contiguous, evaluated).
    pub fn array(&self) -> &Array {
        &self.array
    }
}

fn is_available(a: &Array) -> bool {
    let mut res = false;
    // SAFETY: `a` is a live array; the call only reads its status.
    let rc = unsafe { mlx_sys::_mlx_array_is_available(&mut res, a.as_ptr()) };
    rc == 0 && res
}

fn is_row_contiguous(a: &Array) -> bool {
    let mut res = false;
    // SAFETY: as above; `a` is evaluated (flags are set by evaluation).
    let rc = unsafe { mlx_sys::_mlx_array_is_row_contiguous(&mut res, a.as_ptr()) };
    rc == 0 && res
}

fn eval_counted(a: &Array) -> Result<()> {
    if !is_available(a) {
        EVALS.fetch_add(1, Relaxed);
    }
    a.eval()?;
    Ok(())
}

/// Evaluates `a` (a sync), makes it row-contiguous when it is a strided
/// view (a copy, counted), and returns it for borrowing.
///
/// - `what`: the array's name in errors (`"x"`, `"scales"`).
/// - `dtype`: the dtype the kernel reads.
///
/// Errors: [`Error::Invalid`] naming `what` when the dtype is not `dtype`;
/// MLX's error when evaluation fails.
pub fn host(a: &Array, what: &str, dtype: Dtype) -> Result<HostArray> {
    if a.dtype() != dtype {
        return Err(Error::Invalid(format!(
            "{what}: expected dtype {dtype:?}, got {:?}",
            a.dtype()
        )));
    }
    READS.fetch_add(1, Relaxed);
    eval_counted(a)?;
    let array = if is_row_contiguous(a) || a.size() == 0 {
        BORROWED.fetch_add(a.nbytes() as u64, Relaxed);
        a.clone()
    } else {
        let c = a.contiguous()?;
        c.eval()?;
        COPIED.fetch_add(c.nbytes() as u64, Relaxed);
        c
    };
    Ok(HostArray { array })
}

/// [`host`] for a float array read as f32: another float dtype (f16,
/// bf16) is cast to f32 first (a copy, counted).
///
/// Errors: [`Error::Invalid`] naming `what` when `a` is not a float array;
/// MLX's error when evaluation fails.
pub fn host_f32(a: &Array, what: &str) -> Result<HostArray> {
    match a.dtype() {
        Dtype::Float32 => host(a, what, Dtype::Float32),
        d if d.is_float() => {
            let f = a.as_dtype(Dtype::Float32)?;
            READS.fetch_add(1, Relaxed);
            eval_counted(&f)?;
            let f = if is_row_contiguous(&f) {
                f
            } else {
                f.contiguous()?
            };
            f.eval()?;
            COPIED.fetch_add(f.nbytes() as u64, Relaxed);
            Ok(HostArray { array: f })
        }
        d => Err(Error::Invalid(format!(
            "{what}: expected a float array, got {d:?}"
        ))),
    }
}

/// The payload MLX frees: the `Vec` that owns the output buffer.
struct Owned(#[allow(dead_code)] Vec<f32>);

unsafe extern "C" fn drop_owned(payload: *mut c_void) {
    // SAFETY: `payload` is the `Box<Owned>` leaked by `from_vec`; MLX calls
    // this once, when the buffer is no longer used.
    drop(unsafe { Box::from_raw(payload as *mut Owned) });
}

/// Wraps a kernel's output as an evaluated f32 MLX array of `shape`: MLX
/// takes ownership of the buffer (and copies it where its allocator cannot
/// adopt it, as on the Linux CPU build: see the module docs).
///
/// Errors: [`Error::Shape`] when `shape`'s product is not `data.len()` (or
/// a dimension does not fit in `i32`).
pub fn from_vec(mut data: Vec<f32>, shape: &[i32]) -> Result<Array> {
    let n: i64 = shape.iter().map(|&d| d as i64).product();
    if shape.iter().any(|&d| d < 0) || n != data.len() as i64 {
        return Err(Error::Shape {
            what: "kernel output".into(),
            expected: format!("{} elements", data.len()),
            got: shape.to_vec(),
        });
    }
    OUTPUTS.fetch_add(1, Relaxed);
    if data.is_empty() {
        return Ok(Array::from_slice(&data, shape));
    }
    let ptr = data.as_mut_ptr() as *mut c_void;
    let payload = Box::into_raw(Box::new(Owned(data))) as *mut c_void;
    // SAFETY: `ptr` points to `n` f32 owned by `payload`, which lives until
    // MLX calls `drop_owned` (moving a Vec into the Box keeps its buffer in
    // place). MLX reads the buffer as `shape` float32, row-major.
    let raw = unsafe {
        mlx_sys::mlx_array_new_data_managed_payload(
            ptr,
            shape.as_ptr(),
            shape.len() as i32,
            mlx_sys::mlx_dtype__MLX_FLOAT32,
            payload,
            Some(drop_owned),
        )
    };
    // SAFETY: a new array handle that the returned Array now owns.
    let array = unsafe { Array::from_ptr(raw) };
    // SAFETY: `raw` is a live float32 array; the call only reads its
    // (already allocated) data pointer.
    let data = unsafe { mlx_sys::mlx_array_data_float32(array.as_ptr()) };
    if !std::ptr::eq(data as *const c_void, ptr) {
        COPIED.fetch_add(n as u64 * 4, Relaxed);
    }
    Ok(array)
}

/// MLX's peak memory in bytes: the most its allocator has held at once
/// since the start or the last [`reset_mlx_peak_memory`] (every array
/// buffer MLX allocates, on the CPU too; not the kernels' own Rust
/// allocations). Day 12 uses it to show that attention through the bridge
/// allocates no `L x S` array.
///
/// Errors: [`Error::Invalid`] when mlx-c reports a failure.
pub fn mlx_peak_memory() -> Result<usize> {
    let mut bytes = 0usize;
    // SAFETY: writes one usize through a valid pointer.
    let rc = unsafe { mlx_sys::mlx_get_peak_memory(&mut bytes) };
    if rc != 0 {
        return Err(Error::Invalid("mlx_get_peak_memory failed".into()));
    }
    Ok(bytes)
}

/// Sets MLX's peak memory ([`mlx_peak_memory`]) to 0; the next
/// allocation sets it to what MLX then holds, so a call's growth is the
/// peak after it minus [`mlx_active_memory`] before it.
///
/// Errors: [`Error::Invalid`] when mlx-c reports a failure.
pub fn reset_mlx_peak_memory() -> Result<()> {
    // SAFETY: no arguments; resets a counter of MLX's allocator.
    let rc = unsafe { mlx_sys::mlx_reset_peak_memory() };
    if rc != 0 {
        return Err(Error::Invalid("mlx_reset_peak_memory failed".into()));
    }
    Ok(())
}

/// The bytes MLX's allocator holds now (live array buffers).
///
/// Errors: [`Error::Invalid`] when mlx-c reports a failure.
pub fn mlx_active_memory() -> Result<usize> {
    let mut bytes = 0usize;
    // SAFETY: writes one usize through a valid pointer.
    let rc = unsafe { mlx_sys::mlx_get_active_memory(&mut bytes) };
    if rc != 0 {
        return Err(Error::Invalid("mlx_get_active_memory failed".into()));
    }
    Ok(bytes)
}

/// An evaluated array read in place with its own strides: a view (a slice
/// of a middle axis, as a KV cache's filled part of its buffer) is not
/// made row-contiguous.
#[derive(Debug)]
pub struct HostView {
    array: Array,
    strides: Vec<usize>,
    extent: usize,
}

impl HostView {
    /// The element strides of each axis (element `[i, j, ..]` is at
    /// `i * strides[0] + j * strides[1] + ..` of [`HostView::slice`]).
    pub fn strides(&self) -> &[usize] {
        &self.strides
    }

    /// The elements from the view's first to its last, borrowed from MLX's
    /// buffer (elements between them that the view skips included).
    ///
    /// Errors: [`Error::Invalid`] when `T` is not the array's dtype.
    pub fn slice<T: ArrayElement>(&self) -> Result<&[T]> {
        if T::DTYPE != self.array.dtype() {
            return Err(Error::Invalid(format!(
                "cannot borrow a {:?} array as {:?}",
                self.array.dtype(),
                T::DTYPE
            )));
        }
        if self.extent == 0 {
            return Ok(&[]);
        }
        let data = T::array_data(&self.array);
        if data.is_null() {
            return Err(Error::Invalid("the array has no data".into()));
        }
        // SAFETY: `array` is evaluated; MLX's data pointer is the view's
        // first element and every element the strides reach, up to
        // `extent`, lies in the same buffer, alive as long as `self`.
        Ok(unsafe { std::slice::from_raw_parts(data, self.extent) })
    }

    /// The array (evaluated).
    pub fn array(&self) -> &Array {
        &self.array
    }
}

/// [`host`] without the copy of a strided view: evaluates `a` (a sync) and
/// borrows its buffer with its strides (counted as borrowed: the bytes
/// from its first to its last element).
///
/// Errors: [`Error::Invalid`] naming `what` when the dtype is not `dtype`;
/// MLX's error when evaluation fails.
pub fn host_strided(a: &Array, what: &str, dtype: Dtype) -> Result<HostView> {
    if a.dtype() != dtype {
        return Err(Error::Invalid(format!(
            "{what}: expected dtype {dtype:?}, got {:?}",
            a.dtype()
        )));
    }
    READS.fetch_add(1, Relaxed);
    eval_counted(a)?;
    let strides = a.strides().to_vec();
    let extent = if a.size() == 0 {
        0
    } else {
        1 + a
            .shape()
            .iter()
            .zip(&strides)
            .map(|(&d, &s)| (d as usize - 1) * s)
            .sum::<usize>()
    };
    let item = a.nbytes() / a.size().max(1);
    BORROWED.fetch_add((extent * item) as u64, Relaxed);
    Ok(HostView {
        array: a.clone(),
        strides,
        extent,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use mlx_rs::ops::indexing::IndexOp;

    #[test]
    fn borrows_contiguous_and_copies_views() {
        reset_stats();
        let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let h = host(&a, "a", Dtype::Float32).unwrap();
        assert_eq!(h.slice::<f32>().unwrap(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let s = stats();
        assert_eq!((s.reads, s.bytes_borrowed, s.bytes_copied), (1, 24, 0));
        // a transpose is a strided view: one copy of 24 bytes, values in
        // the transposed order
        let t = a.transpose().unwrap();
        let h = host(&t, "t", Dtype::Float32).unwrap();
        assert_eq!(h.slice::<f32>().unwrap(), &[1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        assert_eq!(stats().bytes_copied, 24);
        // a pending graph is evaluated (counted), a finished one is not
        let sum = a.add(&a).unwrap();
        let before = stats().evals;
        host(&sum, "sum", Dtype::Float32).unwrap();
        host(&sum, "sum", Dtype::Float32).unwrap();
        assert_eq!(stats().evals, before + 1);
        let e = host(&a, "scales", Dtype::Bfloat16).unwrap_err().to_string();
        assert!(e.contains("scales") && e.contains("Bfloat16"), "{e}");
    }

    #[test]
    fn host_f32_casts_other_floats() {
        let a = Array::from_slice(&[1.5f32, -2.0], &[2])
            .as_dtype(Dtype::Bfloat16)
            .unwrap();
        let h = host_f32(&a, "x").unwrap();
        assert_eq!(h.slice::<f32>().unwrap(), &[1.5, -2.0]);
        let i = Array::from_slice(&[1i32], &[1]);
        let e = host_f32(&i, "ids").unwrap_err().to_string();
        assert!(e.contains("ids") && e.contains("float"), "{e}");
    }

    #[test]
    fn from_vec_wraps_and_counts_a_copy() {
        let v = vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
        let p = v.as_ptr();
        let copied = stats().bytes_copied;
        let a = from_vec(v, &[3, 2]).unwrap();
        assert_eq!(a.shape(), &[3, 2]);
        let s = a.try_as_slice::<f32>().unwrap();
        assert_eq!(s, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        // in place, or one counted copy of 24 bytes
        let in_place = std::ptr::eq(s.as_ptr(), p);
        assert_eq!(stats().bytes_copied - copied, if in_place { 0 } else { 24 });
        let b = a.multiply(Array::from_f32(2.0)).unwrap();
        assert_eq!(b.as_slice::<f32>(), &[2.0, 4.0, 6.0, 8.0, 10.0, 12.0]);
        drop(a);
        assert_eq!(b.as_slice::<f32>()[5], 12.0);
        let e = from_vec(vec![0.0; 5], &[2, 3]).unwrap_err().to_string();
        assert!(e.contains("kernel output"), "{e}");
        assert_eq!(from_vec(Vec::new(), &[0, 4]).unwrap().shape(), &[0, 4]);
    }

    #[test]
    fn mlx_peak_memory_sees_an_allocation() {
        let a = Array::from_slice(&[1.0f32; 4], &[2, 2]);
        a.eval().unwrap();
        reset_mlx_peak_memory().unwrap();
        let before = mlx_active_memory().unwrap();
        let big = mlx_rs::ops::zeros::<f32>(&[1024, 1024]).unwrap();
        big.eval().unwrap();
        assert!(mlx_peak_memory().unwrap() >= before + 4 * 1024 * 1024);
    }

    #[test]
    fn host_strided_reads_a_view_in_place() {
        let a = Array::from_slice(&[0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], &[2, 4]);
        let v = a.index((.., 1..3));
        let h = host_strided(&v, "v", Dtype::Float32).unwrap();
        assert_eq!(h.strides(), &[4, 1]);
        // elements 1, 2 and 5, 6 (and 3, 4 between them)
        assert_eq!(h.slice::<f32>().unwrap(), &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert!(h.slice::<i32>().is_err());
    }
}
