//! `tiny-llm-course`: the kit's shared plumbing, in one place and without
//! MLX, so `cargo xtask` (which must build before MLX is provisioned), the
//! chat program, the benchmark and the grader all agree:
//!
//! - [`Course`]: `course.toml`, the course manifest (days in order, their
//!   modules, tests, fixtures, hints and tolerances);
//! - [`Tol`] and [`Course::tolerance`]: the one table of default tolerances
//!   and each day's overrides;
//! - [`Todo`]: what a learner's `todo!("day N: item")` panic says;
//! - [`Device`] and [`DType`]: `--device cpu|gpu` and `--dtype f32|f16|bf16`,
//!   and the `TINY_LLM_DEVICE` variable that carries the device to programs;
//! - [`cache_dir`]: where the offline models live.

mod cache;
mod device;
mod error;
mod manifest;
mod todo;
mod tolerance;

pub use cache::{cache_dir, CACHE_ENV};
pub use device::{DType, Device, NoGpu, DEVICE_ENV};
pub use error::CourseError;
pub use manifest::{Course, Day, ModelChecks, FORMAT_VERSION, KIT_COURSE_TOML};
pub use todo::Todo;
pub use tolerance::{Kind, Tol, Tolerances};
