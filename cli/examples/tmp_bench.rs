use mlx_rs::{Array, Dtype};
use std::time::Instant;
use tiny_llm_ref::loader::load_weights;
use tiny_llm_ref::qwen2_week1::Qwen2ModelWeek1;
fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).unwrap());
    let l: i32 = std::env::args().nth(2).unwrap().parse().unwrap();
    let config = tiny_llm_common::Qwen2Config::from_file(&dir.join("config.json")).unwrap();
    let w = load_weights(&dir, Dtype::Float32).unwrap();
    let m = Qwen2ModelWeek1::new(&config, &w, Dtype::Float32).unwrap();
    drop(w);
    let ids: Vec<i32> = (0..l).map(|i| 100 + i).collect();
    let x = Array::from_slice(&ids, &[1, l]);
    for i in 0..5 {
        let t = Instant::now();
        let y = m.forward_last(&x).unwrap();
        y.eval().unwrap();
        println!("run {i}: L={l} {:.3} s", t.elapsed().as_secs_f64());
    }
}
