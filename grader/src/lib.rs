//! The grader's shared code: which implementation is under test, golden
//! fixture loading, and tolerance checks that explain a mismatch.
//!
//! Tests live in `tests/dayN.rs`. They grade the learner's crate `tiny-llm` by
//! default (feature `learner`) and the reference with
//! `--no-default-features --features solutions` (the learner's crate is then
//! not compiled at all).
//!
//! Failure messages start with a tag that `cargo xtask check` reads:
//! `[wrong numbers]` (also a failed property: `property <name> failed with
//! seed <N>`), `[wrong shape]`, `[error]` (the code returned `Err`),
//! `[should fail]` (it returned a value where an error was expected),
//! `[skipped]` (the test could not run here, e.g. `[skipped] no GPU`) and
//! `[fixture]` (the kit's data is missing or damaged); `todo!()` panics read
//! as "not implemented".

pub mod compare;
pub mod device;
pub mod fixture;
pub mod gpu_check;
pub mod manifest;
pub mod prop;
pub mod tiny_engine;
pub mod tolerance;

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

/// Expects the code under test to reject bad input: returns the error, or
/// panics with `[should fail] <call> should have returned an error but
/// returned a value (case <case>)`.
#[track_caller]
pub fn should_fail<T, E>(call: &str, case: &str, r: Result<T, E>) -> E {
    match r {
        Ok(_) => panic!(
            "[should fail] {call} should have returned an error but returned a value (case {case})"
        ),
        Err(e) => e,
    }
}

/// [`should_fail`], and the error's text must name each of `needles` (the
/// argument, key or file that was wrong); panics with `[wrong numbers]`
/// quoting the error otherwise.
#[track_caller]
pub fn should_fail_naming<T, E: std::fmt::Display>(
    call: &str,
    case: &str,
    r: Result<T, E>,
    needles: &[&str],
) {
    let msg = should_fail(call, case, r).to_string();
    for needle in needles {
        assert!(
            msg.contains(needle),
            "[wrong numbers] {call} returned an error that does not name {needle:?} (case {case}); it says: {msg}"
        );
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
