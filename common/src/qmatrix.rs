//! A borrowed view of an MLX affine-quantized matrix, for CPU kernels that
//! work on plain slices (given code; no MLX in this module).
//!
//! Days 9 and 10 write `quantized_matmul` kernels over this view: the scalar
//! oracle (day 9) and the fast SIMD + threads kernel (day 10). The view holds
//! exactly what MLX stores for a quantized `O x I` weight (mlx-lm's
//! `QuantizedLinear`, `mx.quantize` in affine mode):
//!
//! - `packed`: `O x (I * bits / 32)` `u32` words, row-major; word `p` of row
//!   `o` holds inputs `p * k .. p * k + k` (`k = 32 / bits`), input
//!   `p * k + j` in bits `bits * j .. bits * (j + 1)` (lowest bits first).
//! - `scales`, `biases`: `O x (I / group_size)`, row-major, one pair per
//!   group of `group_size` consecutive inputs of a row.
//! - weight `w[o][i] = scales[o][i / g] * q[o][i] + biases[o][i / g]`.
//!
//! Reference: MLX `mlx/backend/cpu/quantized.cpp` (affine packing);
//! mlx-lm `QuantizedLinear`.

/// The 16-bit float types scales may come in (re-exported so kernels and
/// tests name the same `half` types the [`Scale`] impls use).
pub use half::{bf16, f16};

/// What a kernel can report: a view or buffer that does not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KernelError {
    /// A slice had the wrong length (`what` names it: `"x"`, `"out"`,
    /// `"packed"`, `"scales"`, `"biases"`).
    #[error("{what}: expected {expected} elements ({why}), got {got}")]
    Length {
        /// Which slice.
        what: &'static str,
        /// The length it must have.
        expected: usize,
        /// How that length follows from the shapes (e.g. `"M x I = 2 x 64"`).
        why: String,
        /// Its length.
        got: usize,
    },
    /// A parameter outside what the kernels handle (bits, group size, a
    /// column count that is not a multiple of the group size).
    #[error("{0}")]
    Unsupported(String),
}

/// A float type scales and biases may be stored in (MLX keeps them in the
/// model's dtype: f32, f16 or bf16). Kernels read one pair per group, so a
/// scalar conversion per group is enough.
pub trait Scale: Copy + Send + Sync + 'static {
    /// The value as f32 (exact for all three types).
    fn to_f32(self) -> f32;
}

impl Scale for f32 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        self
    }
}

impl Scale for bf16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        bf16::to_f32(self)
    }
}

impl Scale for f16 {
    #[inline(always)]
    fn to_f32(self) -> f32 {
        f16::to_f32(self)
    }
}

/// A quantized `rows x cols` (`O x I`) matrix borrowed from its buffers.
#[derive(Debug, Clone, Copy)]
pub struct QuantizedMatrix<'a, S: Scale> {
    /// `rows x (cols * bits / 32)` packed codes.
    pub packed: &'a [u32],
    /// `rows x (cols / group_size)`.
    pub scales: &'a [S],
    /// `rows x (cols / group_size)`.
    pub biases: &'a [S],
    /// `O`, output features.
    pub rows: usize,
    /// `I`, input features (a multiple of `group_size`).
    pub cols: usize,
    /// Inputs per group: 32, 64 or 128.
    pub group_size: usize,
    /// Bits per code: 4 or 8.
    pub bits: u32,
}

impl<'a, S: Scale> QuantizedMatrix<'a, S> {
    /// A checked view.
    ///
    /// Errors: [`KernelError::Unsupported`] for `bits` other than 4 or 8, a
    /// `group_size` other than 32, 64 or 128, or `cols` not a multiple of
    /// `group_size`; [`KernelError::Length`] when a slice's length does not
    /// follow from `rows`, `cols`, `group_size` and `bits`.
    pub fn new(
        packed: &'a [u32],
        scales: &'a [S],
        biases: &'a [S],
        rows: usize,
        cols: usize,
        group_size: usize,
        bits: u32,
    ) -> Result<Self, KernelError> {
        if bits != 4 && bits != 8 {
            return Err(KernelError::Unsupported(format!(
                "bits must be 4 or 8, got {bits}"
            )));
        }
        if ![32, 64, 128].contains(&group_size) {
            return Err(KernelError::Unsupported(format!(
                "group_size must be 32, 64 or 128, got {group_size}"
            )));
        }
        if !cols.is_multiple_of(group_size) {
            return Err(KernelError::Unsupported(format!(
                "cols ({cols}) must be a multiple of group_size ({group_size})"
            )));
        }
        let m = QuantizedMatrix {
            packed,
            scales,
            biases,
            rows,
            cols,
            group_size,
            bits,
        };
        let words = rows * m.words_per_row();
        if packed.len() != words {
            return Err(KernelError::Length {
                what: "packed",
                expected: words,
                why: format!("O x I * bits / 32 = {rows} x {cols} * {bits} / 32"),
                got: packed.len(),
            });
        }
        let groups = rows * m.groups_per_row();
        for (what, len) in [("scales", scales.len()), ("biases", biases.len())] {
            if len != groups {
                return Err(KernelError::Length {
                    what,
                    expected: groups,
                    why: format!("O x I / group_size = {rows} x {cols} / {group_size}"),
                    got: len,
                });
            }
        }
        Ok(m)
    }

    /// Codes per `u32` word: `32 / bits`.
    pub fn codes_per_word(&self) -> usize {
        32 / self.bits as usize
    }

    /// Words per row: `cols * bits / 32`.
    pub fn words_per_row(&self) -> usize {
        self.cols * self.bits as usize / 32
    }

    /// Groups per row: `cols / group_size`.
    pub fn groups_per_row(&self) -> usize {
        self.cols / self.group_size
    }

    /// Bytes a kernel reads to go once over the whole matrix (codes, scales
    /// and biases): what decode's memory roofline counts per token.
    pub fn bytes(&self) -> usize {
        self.packed.len() * 4 + 2 * self.scales.len() * std::mem::size_of::<S>()
    }
}

/// Checks the activations and output of `out = x W^T` against `w`: `x` is
/// `m x w.cols`, `out` is `m x w.rows` (row-major).
///
/// Errors: [`KernelError::Length`] naming `"x"` or `"out"`.
pub fn check_matmul<S: Scale>(
    x: &[f32],
    m: usize,
    w: &QuantizedMatrix<'_, S>,
    out: &[f32],
) -> Result<(), KernelError> {
    if x.len() != m * w.cols {
        return Err(KernelError::Length {
            what: "x",
            expected: m * w.cols,
            why: format!("M x I = {m} x {}", w.cols),
            got: x.len(),
        });
    }
    if out.len() != m * w.rows {
        return Err(KernelError::Length {
            what: "out",
            expected: m * w.rows,
            why: format!("M x O = {m} x {}", w.rows),
            got: out.len(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_checks_its_lengths() {
        let packed = [0u32; 2 * 8]; // 2 rows, 64 cols, 4 bits: 8 words a row
        let s = [1.0f32; 2];
        let m = QuantizedMatrix::new(&packed, &s, &s, 2, 64, 64, 4).unwrap();
        assert_eq!(
            (m.codes_per_word(), m.words_per_row(), m.groups_per_row()),
            (8, 8, 1)
        );
        assert_eq!(m.bytes(), 16 * 4 + 2 * 2 * 4);
        let e = QuantizedMatrix::new(&packed[1..], &s, &s, 2, 64, 64, 4).unwrap_err();
        assert!(e.to_string().contains("packed: expected 16"), "{e}");
        let e = QuantizedMatrix::new(&packed, &s[1..], &s, 2, 64, 64, 4).unwrap_err();
        assert!(e.to_string().contains("scales"), "{e}");
        let e = QuantizedMatrix::new(&packed, &s, &s, 2, 64, 64, 3).unwrap_err();
        assert!(e.to_string().contains("bits"), "{e}");
        let e = QuantizedMatrix::new(&packed, &s, &s, 2, 64, 48, 4).unwrap_err();
        assert!(e.to_string().contains("group_size"), "{e}");
        let e = check_matmul(&[0.0; 63], 1, &m, &[0.0; 2]).unwrap_err();
        assert!(e.to_string().contains("x: expected 64"), "{e}");
        let e = check_matmul(&[0.0; 64], 1, &m, &[0.0; 3]).unwrap_err();
        assert!(e.to_string().contains("out: expected 2"), "{e}");
    }

    #[test]
    fn scales_convert_exactly() {
        assert_eq!(Scale::to_f32(bf16::from_f32(1.5)), 1.5);
        assert_eq!(Scale::to_f32(f16::from_f32(-0.25)), -0.25);
        assert_eq!(Scale::to_f32(3.0f32), 3.0);
    }
}
