#[test]
fn passes() {
    assert_eq!(2 + 2, 4);
}

#[test]
fn not_implemented() {
    fixture_grader::basics::softmax();
}

#[test]
fn wrong_numbers() {
    panic!("[wrong numbers] wrong_numbers, case day1/x, tensor `y` (shape [2], float32)\n  worst element at [1]: got 2.0000000e0, expected 3.0000000e0 (abs err 1.000e0, rel err 3.333e-1)\n  2 of 2 elements outside |got - expected| <= atol + rtol*|expected| with rtol 1e-5, atol 1e-6");
}

#[test]
fn scaled_f32() {
    assert_eq!(1.5f32 * 2.0, 3.0);
}

#[test]
fn scaled_f16() {
    panic!("[wrong numbers] scaled_f16, case day1/scaled_b2_f16, tensor `y` (shape [2, 40], float16)\n  worst element at [0, 3]: got NaN, expected 1.2500000e0 (abs err NaN, rel err NaN)\n  1 of 80 elements outside |got - expected| <= atol + rtol*|expected| with rtol 5e-2, atol 1e-3");
}

#[test]
fn property_fails() {
    // as tiny-llm-grader's `prop::check` reports a failed property
    panic!("[wrong numbers] property rows_sum_to_one failed with seed 1234: row 0 sums to NaN, expected 1\n  minimal failing input: [[1000.0, 1001.0]]\n  rerun: PROPTEST_SEED=1234 cargo test -p fixture-grader --test day1 property_fails");
}
