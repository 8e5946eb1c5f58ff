#[test]
fn panics() {
    let v: Vec<u32> = Vec::new();
    let i = v.len();
    println!("{}", v[i]);
}

#[test]
fn hangs() {
    loop {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
