#[test]
fn passes() {
    assert_eq!(2 + 2, 4);
}

#[test]
fn not_implemented() {
    fixture_grader::softmax();
}

#[test]
fn wrong_numbers() {
    panic!("[wrong numbers] wrong_numbers, case day1/x, tensor `y` (shape [2], float32)\n  worst element at [1]: got 2, expected 3");
}
