#[test]
fn panics() {
    let v: Vec<u32> = Vec::new();
    let i = v.len();
    println!("{}", v[i]);
}

#[test]
fn hangs() {
    fixture_grader::looping::spin();
}

#[test]
fn hangs_too() {
    fixture_grader::looping::spin();
}
