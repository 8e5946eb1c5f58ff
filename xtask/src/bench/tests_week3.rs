//! Tests of `bench week3`: the seeded workload, percentiles, the engines'
//! reports, llama-server's event stream and the targets.
use super::llama_server::{completion_body, context_size, read_events};
use super::week3::{mlx_lm_workload, parse_lengths, plan, requests_at, Plan, Week3Args};
use super::week3_report::*;
use super::week3_workload::*;
use super::*;
use clap::Parser;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;

#[test]
fn splitmix64_matches_the_published_sequence() {
    // The first outputs of SplitMix64 seeded with 1234567 (the test vector
    // of the reference C implementation, splitmix64.c).
    let mut r = SplitMix64::new(1_234_567);
    assert_eq!(r.next_u64(), 6_457_827_717_110_365_317);
    assert_eq!(r.next_u64(), 3_203_168_211_198_807_973);
    assert_eq!(r.next_u64(), 9_817_491_932_198_370_423);
}

#[test]
fn range_stays_inside_and_reaches_both_ends() {
    let mut r = SplitMix64::new(3);
    let xs: Vec<u64> = (0..2000).map(|_| r.range(5, 8)).collect();
    assert!(xs.iter().all(|&x| (5..=8).contains(&x)));
    for v in 5..=8 {
        assert!(xs.contains(&v), "{v} never drawn");
    }
    assert_eq!(SplitMix64::new(9).range(4, 4), 4);
}

fn lens(a: usize, b: usize) -> Lengths {
    Lengths::new(a, b, "test").unwrap()
}

#[test]
fn same_seed_same_workload_other_seed_other_workload() {
    let a = random_workload(7, 20, lens(64, 192), lens(32, 96));
    let b = random_workload(7, 20, lens(64, 192), lens(32, 96));
    let c = random_workload(8, 20, lens(64, 192), lens(32, 96));
    assert_eq!(a, b);
    assert_ne!(a.requests, c.requests);
    // A smaller run serves a prefix of a larger run's requests.
    let small = random_workload(7, 4, lens(64, 192), lens(32, 96));
    assert_eq!(small.requests[..], a.requests[..4]);
}

#[test]
fn lengths_and_ids_stay_within_the_distribution() {
    let w = random_workload(11, 300, lens(10, 20), lens(3, 5));
    assert_eq!(w.requests.len(), 300);
    for r in &w.requests {
        assert!((10..=20).contains(&r.prompt.len()), "{}", r.prompt.len());
        assert!((3..=5).contains(&r.max_tokens));
        assert!(r.prompt.iter().all(|&t| (FIRST_ID..LAST_ID).contains(&t)));
    }
    let plen: Vec<usize> = w.requests.iter().map(|r| r.prompt.len()).collect();
    assert!(plen.contains(&10) && plen.contains(&20));
    // Mean of uniform 10..=20 is 15: 300 draws land well within 1 of it.
    let mean = plen.iter().sum::<usize>() as f64 / 300.0;
    assert!((mean - 15.0).abs() < 1.0, "{mean}");
    assert_eq!(w.prompt_tokens(), plen.iter().sum::<usize>() as u64);
    assert_eq!(
        w.longest_sequence(),
        w.requests
            .iter()
            .map(|r| r.prompt.len() + r.max_tokens)
            .max()
            .unwrap()
    );
}

#[test]
fn shared_prefix_requests_start_with_the_same_ids() {
    let w = shared_prefix_workload(7, 16, 500, lens(4, 16), 16);
    assert_eq!(w.requests.len(), 16);
    let prefix = &w.requests[0].prompt[..500];
    for r in &w.requests {
        assert_eq!(&r.prompt[..500], prefix);
        assert!((504..=516).contains(&r.prompt.len()));
        assert_eq!(r.max_tokens, 16);
    }
    // The suffixes are the requests' own.
    assert_ne!(w.requests[0].prompt[500..], w.requests[1].prompt[500..]);
}

#[test]
fn workload_json_round_trips_and_bad_input_is_named() {
    let w = random_workload(5, 3, lens(2, 4), lens(1, 2));
    let v = w.to_json();
    assert_eq!(v["seed"], 5);
    assert_eq!(Workload::from_json(&v).unwrap(), w);
    let bad_id = json!({"seed": 1, "requests": [{"prompt": [1, 151643], "max_tokens": 2}]});
    let e = format!("{:#}", Workload::from_json(&bad_id).unwrap_err());
    assert!(e.contains("request 0") && e.contains("151643"), "{e}");
    let bad_max = json!({"seed": 1, "requests": [{"prompt": [1], "max_tokens": 0}]});
    let e = format!("{:#}", Workload::from_json(&bad_max).unwrap_err());
    assert!(e.contains("max_tokens"), "{e}");
    assert!(Lengths::new(0, 3, "x").is_err());
    assert!(Lengths::new(5, 3, "x").is_err());
}

#[test]
fn nearest_rank_percentiles_hand_worked() {
    // Wikipedia's nearest-rank example: 15, 20, 35, 40, 50 (unsorted here).
    let xs = [40.0, 15.0, 50.0, 35.0, 20.0];
    assert_eq!(percentile(&xs, 5.0), Some(15.0)); // rank ceil(0.25) = 1
    assert_eq!(percentile(&xs, 30.0), Some(20.0)); // rank ceil(1.5) = 2
    assert_eq!(percentile(&xs, 40.0), Some(20.0)); // rank 2 exactly
    assert_eq!(percentile(&xs, 50.0), Some(35.0)); // rank ceil(2.5) = 3
    assert_eq!(percentile(&xs, 100.0), Some(50.0));
    let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
    assert_eq!(percentile(&hundred, 95.0), Some(95.0));
    assert_eq!(percentile(&hundred, 99.0), Some(99.0));
    let ten: Vec<f64> = (1..=10).map(f64::from).collect();
    assert_eq!(percentile(&ten, 99.0), Some(10.0)); // rank ceil(9.9) = 10
    assert_eq!(percentile(&ten, 95.0), Some(10.0)); // rank ceil(9.5) = 10
    assert_eq!(percentile(&ten, 50.0), Some(5.0));
    assert_eq!(percentile(&[], 50.0), None);
    assert_eq!(percentile(&xs, 0.0), None);
}

/// A hand-written report in the contract's shape.
fn sample(engine: &str, n: usize, wall: f64, out: u64, prefill: u64) -> Value {
    json!({
        "engine": engine, "concurrency": n, "requests": 4, "wall_s": wall,
        "prompt_tokens": 512, "output_tokens": out, "prefill_tokens_computed": prefill,
        "ttft_s": [0.5, 0.25, 1.0, 2.0], "itl_s": [0.1, 0.2, 0.3],
        "kv_blocks_total": 256, "kv_blocks_peak": 40, "kv_blocks_in_use_end": 0,
        "prefix_cache_hit_blocks": 3, "prefix_cache_lookup_blocks": 12, "peak_rss_gb": 0.75,
        "decode_tokens": out, "decode_s": wall / 2.0
    })
}

#[test]
fn engine_report_parses_the_contract_sample() {
    let r = EngineRun::from_json(&sample("reference", 8, 4.0, 256, 500)).unwrap();
    assert_eq!(r.engine, "reference");
    assert_eq!((r.concurrency, r.requests), (8, 4));
    assert_eq!(r.tok_s(), 64.0);
    assert_eq!(r.hit_rate(), Some(0.25));
    assert_eq!(r.kv_blocks_peak, Some(40));
    assert_eq!(r.prefill_tokens_computed, Some(500));
    assert_eq!(percentile(&r.ttft_s, 50.0), Some(0.5));
    // Engines without a block pool send nulls.
    let mut v = sample("mlx-lm", 1, 1.0, 8, 8);
    v["kv_blocks_peak"] = Value::Null;
    v["prefix_cache_lookup_blocks"] = Value::Null;
    let r = EngineRun::from_json(&v).unwrap();
    assert_eq!((r.kv_blocks_peak, r.hit_rate()), (None, None));
    // A missing key is named.
    let mut v = sample("reference", 1, 1.0, 8, 8);
    v.as_object_mut().unwrap().remove("output_tokens");
    let e = format!("{:#}", EngineRun::from_json(&v).unwrap_err());
    assert!(e.contains("output_tokens"), "{e}");
    let mut v = sample("reference", 1, 1.0, 8, 8);
    v["wall_s"] = json!(0.0);
    assert!(EngineRun::from_json(&v).is_err());
}

#[test]
fn llama_server_events_give_ttft_and_gaps() {
    // Events at 0.5 s (1 token), 0.7 s (2 tokens held back together: two
    // gaps of 0.1 s), 1.0 s (1 token), then the final event with timings.
    // `tokens` names only the newest token; `tokens_predicted` counts them.
    let body = "data: {\"content\":\"a\",\"tokens\":[10],\"tokens_predicted\":1,\"stop\":false}\n\n\
                data: {\"content\":\"\u{e9}b\",\"tokens\":[12],\"tokens_predicted\":3,\"stop\":false}\n\n\
                data: {\"content\":\"c\",\"tokens\":[13],\"tokens_predicted\":4,\"stop\":false}\n\n\
                data: {\"content\":\"\",\"tokens\":[],\"tokens_predicted\":4,\"stop\":true,\"timings\":{\"prompt_n\":90,\"cache_n\":6}}\n\n";
    let mut times = [0.5, 0.7, 1.0, 1.01].into_iter();
    let s = read_events(body.as_bytes(), || times.next().unwrap()).unwrap();
    assert_eq!(s.tokens, 4);
    assert_eq!(s.ttft_s, 0.5);
    let want = [0.1, 0.1, 0.3];
    assert_eq!(s.itl_s.len(), 3);
    for (g, w) in s.itl_s.iter().zip(want) {
        assert!((g - w).abs() < 1e-12, "{:?}", s.itl_s);
    }
    assert_eq!((s.prompt_n, s.cache_n), (Some(90), Some(6)));
    // The last token held back until the final event: it arrives there.
    let tail = "data: {\"tokens\":[1],\"tokens_predicted\":1,\"stop\":false}\n\
                data: {\"tokens\":[],\"tokens_predicted\":2,\"stop\":true,\"timings\":{\"prompt_n\":5}}\n";
    let mut times = [0.2, 0.6].into_iter();
    let s = read_events(tail.as_bytes(), || times.next().unwrap()).unwrap();
    assert_eq!((s.tokens, s.ttft_s, s.prompt_n), (2, 0.2, Some(5)));
    assert!((s.itl_s[0] - 0.4).abs() < 1e-12 && s.itl_s.len() == 1);
    let err = "data: {\"error\":{\"code\":400,\"message\":\"bad\"}}\n";
    assert!(read_events(err.as_bytes(), || 0.0).is_err());
}

#[test]
fn completion_request_is_greedy_fixed_length_and_uncached() {
    let b = completion_body(&[1, 2, 3], 7, false);
    assert_eq!(b["prompt"], json!([1, 2, 3]));
    assert_eq!(b["n_predict"], 7);
    assert_eq!(b["ignore_eos"], true);
    assert_eq!(b["temperature"], 0.0);
    assert_eq!(b["stream"], true);
    assert_eq!(b["cache_prompt"], false);
    assert_eq!(completion_body(&[1], 1, true)["cache_prompt"], true);
    // 8 slots x (200 tokens rounded up to 256); 257 needs two 256s.
    assert_eq!(context_size(8, 200), 2048);
    assert_eq!(context_size(1, 256), 256);
    assert_eq!(context_size(3, 257), 1536);
}

fn results() -> Week3Results {
    let mut r = Week3Results::default();
    let run = |v: Value| Outcome::Ran(Box::new(EngineRun::from_json(&v).unwrap()));
    let mut one = BTreeMap::new();
    one.insert(
        "reference".to_string(),
        run(sample("reference", 1, 10.0, 100, 512)),
    );
    one.insert(
        "llama.cpp".to_string(),
        run(sample("llama.cpp", 1, 5.0, 100, 512)),
    );
    one.insert(
        "mlx-lm".to_string(),
        Outcome::Missing("not available (tiny-llm-bench engine missing)".into()),
    );
    r.by_concurrency.insert(1, one);
    let mut eight = BTreeMap::new();
    // 45 tok/s vs 10 at one stream: 4.5x; llama.cpp 50 tok/s: 0.9x.
    // Decode passes: 450 tokens in 3 s (150 tok/s) vs 100 in 5 s: 7.5x.
    let mut v = sample("reference", 8, 10.0, 450, 512);
    v["decode_s"] = json!(3.0);
    eight.insert("reference".to_string(), run(v));
    eight.insert(
        "llama.cpp".to_string(),
        run(sample("llama.cpp", 8, 10.0, 500, 512)),
    );
    r.by_concurrency.insert(8, eight);
    r.prefix.push((
        prefix_label("reference", false),
        run(sample("reference", 1, 1.0, 8, 8000)),
    ));
    r.prefix.push((
        prefix_label("reference", true),
        run(sample("reference", 1, 1.0, 8, 800)),
    ));
    r
}

#[test]
fn targets_are_judged_from_the_runs() {
    let r = results();
    assert_eq!(r.scaling(8, "reference"), Some(4.5));
    assert_eq!(r.scaling(8, "llama.cpp"), Some(2.5));
    assert_eq!(r.prefill_reduction("reference"), Some(10.0));
    assert_eq!(r.prefill_reduction("llama.cpp"), None);
    assert_eq!(r.decode_scaling(8, "reference"), Some(7.5));
    let t = week3_targets(&r);
    assert_eq!(t[0].2, Some(true));
    assert_eq!(t[1].2, Some(true));
    assert_eq!(t[2].2, Some(false));
    assert_eq!(t[3].2, Some(true));
    assert!(week3_targets(&Week3Results::default())
        .iter()
        .all(|t| t.2.is_none()));
    let lines = target_lines(&r);
    assert!(lines[2].contains("0.90x (miss)"), "{lines:?}");
    assert!(lines[1].contains("7.50x (pass)"), "{lines:?}");
}

#[test]
fn tables_show_numbers_ratios_and_why_a_cell_is_empty() {
    let r = results();
    let t = throughput_cells(&r);
    assert_eq!(t.len(), 3);
    // streams 1: 10 tok/s vs 20: ratio 0.50; mlx-lm says why it is missing.
    assert_eq!(t[1][1], "10.00");
    assert_eq!(t[1][2], "20.00");
    assert_eq!(t[1][3], "not available (tiny-llm-bench engine missing)");
    assert_eq!(t[1][4], "0.50");
    assert_eq!(t[2][6], "4.50 / 2.50");
    assert_eq!(t[1][7], "20.0 (1.00x)");
    assert_eq!(t[2][7], "150.0 (7.50x)");
    // TTFT 0.25, 0.5, 1, 2: p50 0.5, p95 and p99 2.
    assert_eq!(t[2][8], "0.50 / 2.00 / 2.00");
    assert_eq!(t[2][9], "200 / 300 / 300");
    assert_eq!(t[2][10], "40 / 256");
    assert_eq!(t[2][11], "25.0%");
    let p = prefix_cells(&r);
    assert_eq!(p[2][2], "800");
    assert_eq!(p[2][3], "10.0x");
    assert_eq!(latency_cells(&r).len(), 5);
}

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: Week3Args,
}

fn args(line: &[&str]) -> Week3Args {
    Cli::try_parse_from(std::iter::once("week3").chain(line.iter().copied()))
        .unwrap()
        .args
}

#[test]
fn plan_full_quick_and_explicit() {
    let full = plan(&args(&[])).unwrap();
    assert_eq!(full.concurrency, vec![1, 2, 4, 8, 16, 32]);
    assert_eq!((full.prompt, full.output), (lens(64, 192), lens(32, 96)));
    let quick = plan(&args(&["--quick"])).unwrap();
    assert_eq!(quick.concurrency, vec![1, 8]);
    assert_eq!(quick.min_requests, 4);
    let some = plan(&args(&["--concurrency", "2,4", "--prompt-len", "10-20"])).unwrap();
    assert_eq!(some.concurrency, vec![2, 4]);
    assert_eq!(some.prompt, lens(10, 20));
    assert!(plan(&args(&["--concurrency", "0"])).is_err());
    assert!(plan(&args(&["--output-len", "9-3"])).is_err());
    assert_eq!(parse_lengths("5", "x").unwrap(), lens(5, 5));
    assert!(parse_lengths("a-b", "x").is_err());
}

#[test]
fn requests_per_concurrency_and_mlx_lm_cut() {
    let p = Plan {
        concurrency: vec![1, 8, 32],
        min_requests: 8,
        prompt: lens(1, 2),
        output: lens(1, 2),
    };
    assert_eq!(requests_at(&p, 2, 1), 8);
    assert_eq!(requests_at(&p, 2, 8), 16);
    assert_eq!(requests_at(&p, 2, 32), 64);
    let w = random_workload(1, 10, lens(40, 50), lens(20, 30));
    let m = mlx_lm_workload(&w, 3, 32, 8);
    assert_eq!(m.requests.len(), 3);
    for (a, b) in m.requests.iter().zip(&w.requests) {
        assert_eq!(a.prompt[..], b.prompt[..32]);
        assert_eq!(a.max_tokens, 8);
    }
}

/// A stand-in for llama-server's `/completion`: answers each request with
/// `n_predict` one-token events and a final event whose `timings.prompt_n`
/// is the prompt's length; counts the requests in flight at once.
fn fake_server(in_flight: Arc<AtomicUsize>, most: Arc<AtomicUsize>) -> String {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let (in_flight, most) = (in_flight.clone(), most.clone());
            std::thread::spawn(move || {
                let mut stream = stream.unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = v.trim().parse().unwrap();
                    }
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let req: Value = serde_json::from_slice(&body).unwrap();
                let now = in_flight.fetch_add(1, SeqCst) + 1;
                most.fetch_max(now, SeqCst);
                let n = req["n_predict"].as_u64().unwrap();
                let mut out =
                    String::from("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n");
                for i in 1..=n {
                    out += &format!(
                        "data: {{\"tokens\":[7],\"tokens_predicted\":{i},\"stop\":false}}\n\n"
                    );
                }
                let p = req["prompt"].as_array().unwrap().len();
                out += &format!("data: {{\"tokens\":[],\"tokens_predicted\":{n},\"stop\":true,\"timings\":{{\"prompt_n\":{p},\"cache_n\":0}}}}\n\n");
                in_flight.fetch_sub(1, SeqCst);
                stream.write_all(out.as_bytes()).unwrap();
            });
        }
    });
    base
}

#[test]
fn closed_loop_clients_serve_every_request_with_at_most_n_in_flight() {
    let (in_flight, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let base = fake_server(in_flight, most.clone());
    let w = random_workload(3, 9, lens(5, 12), lens(2, 6));
    let v = super::llama_server::serve(&base, &w, 3, false).unwrap();
    let r = EngineRun::from_json(&v).unwrap();
    assert_eq!(
        (r.engine.as_str(), r.concurrency, r.requests),
        ("llama.cpp", 3, 9)
    );
    assert_eq!(r.output_tokens, w.output_tokens());
    assert_eq!(r.prompt_tokens, w.prompt_tokens());
    assert_eq!(r.prefill_tokens_computed, Some(w.prompt_tokens()));
    assert_eq!(r.ttft_s.len(), 9);
    // One gap between consecutive tokens of each request.
    assert_eq!(r.itl_s.len() as u64, w.output_tokens() - 9);
    let m = most.load(SeqCst);
    assert!((1..=3).contains(&m), "{m} requests in flight at once");
}
