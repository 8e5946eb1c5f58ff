//! The grader's shared code: which implementation is under test, golden
//! fixture loading, and tolerance checks that explain a mismatch.
//!
//! Tests live in `tests/dayN.rs`. They grade the learner's crate `tiny-llm` by
//! default (feature `learner`) and the reference with
//! `--no-default-features --features solutions` (the learner's crate is then
//! not compiled at all).
//!
//! Failure messages start with a tag that `cargo xtask check` reads:
//! `[wrong numbers]`, `[wrong shape]`, `[error]`; `todo!()` panics read as
//! "not implemented".

pub mod compare;
pub mod device;
pub mod fixture;

pub use compare::{assert_close, Tol};
pub use fixture::{cases, Case};

#[cfg(not(any(feature = "learner", feature = "solutions")))]
compile_error!(
    "tiny-llm-grader grades `tiny-llm` (feature `learner`, the default) or the reference \
     (`--no-default-features --features solutions`): enable one of them"
);

/// The implementation under test.
#[cfg(not(feature = "solutions"))]
pub use tiny_llm as imp;
/// The implementation under test.
#[cfg(feature = "solutions")]
pub use tiny_llm_ref as imp;

/// Unwraps the result of the code under test; an `Err` fails the test with
/// the error text and the call that returned it.
#[track_caller]
pub fn ok<T>(what: &str, r: imp::Result<T>) -> T {
    device::init();
    match r {
        Ok(v) => v,
        Err(e) => panic!("[error] {what} returned an error: {e}"),
    }
}

/// Runs `f` on every case of `day` whose name starts with `prefix` and ends
/// with `_<dtype>` (`f32`, `f16`, `bf16`), comparing what it returns with the
/// case's tensor `expected` at the dtype's tolerance.
#[track_caller]
pub fn check_cases(
    test: &str,
    day: &str,
    prefix: &str,
    dtype: &str,
    expected: &str,
    f: impl Fn(&Case) -> mlx_rs::Array,
) {
    device::init();
    let suffix = format!("_{dtype}");
    let names: Vec<String> = cases(day, prefix)
        .into_iter()
        .filter(|n| n.ends_with(&suffix))
        .collect();
    assert!(
        !names.is_empty(),
        "[fixture] no cases {day}/{prefix}*{suffix}"
    );
    for name in names {
        let case = Case::load(day, &name);
        let want = case.get(expected);
        let got = f(&case);
        assert_close(
            test,
            &case.id,
            expected,
            &got,
            want,
            Tol::for_day(day, want.dtype()),
        );
    }
}
