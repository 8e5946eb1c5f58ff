//! llama.cpp for `bench week2`: built once under `target/llama.cpp` from the
//! vendored source of the pinned `llama-cpp-python` sdist on PyPI, the GGUFs
//! it runs (Q4_0 and Q8_0 of the same weights as the kit), and `llama-bench`
//! runs turned into the same report as `tiny-llm-bench run`.
//!
//! - Source: `llama_cpp_python-<version>.tar.gz`, fetched by URL from PyPI's
//!   JSON API (`pip download --no-binary` would try to build it), kept in the
//!   model cache's `downloads/` and checked against its sha256.
//! - Build: cmake, Release, `GGML_NATIVE=ON` (this CPU's SIMD), no
//!   OpenSSL/CURL, no tests or examples; only the targets `llama-bench`,
//!   `llama-quantize` and `llama-server` (`bench week3`). Stamped with a hash of the version
//!   and flags: a second run does nothing.
//! - GGUFs: `bench_gguf.py` writes an F32 GGUF of the model directory's
//!   weights (the bf16 tensors the MLX 4-bit and 8-bit copies were made
//!   from), with the metadata and tokenizer of the GGUF the directory came
//!   from; `llama-quantize --pure` makes Q4_0 and Q8_0 of every matrix
//!   (`--pure`: no k-quant mixture, the output/embedding matrix included,
//!   like MLX's uniform 4-bit); the F32 file is deleted afterwards. When that
//!   fails, the fallback requantizes the original Q4_K_M GGUF
//!   (`--allow-requantize`), and says so.
use super::*;

/// The pinned `llama-cpp-python` release whose `vendor/llama.cpp` is built.
pub(super) const VERSION: &str = "0.3.36";
/// sha256 of `llama_cpp_python-0.3.36.tar.gz` on PyPI.
pub(super) const SDIST_SHA256: &str =
    "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e";
/// cmake's configure flags (the stamp hashes them).
const CMAKE_FLAGS: &[&str] = &[
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=ON",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
    "-DLLAMA_BUILD_APP=OFF",
    "-DBUILD_SHARED_LIBS=OFF",
];
const TARGETS: &[&str] = &["llama-bench", "llama-quantize", "llama-server"];

/// The built tools.
#[derive(Debug, Clone)]
pub(super) struct LlamaCpp {
    pub(super) bench: PathBuf,
    pub(super) quantize: PathBuf,
    /// The HTTP server (`bench week3`).
    pub(super) server: PathBuf,
    /// The build's stamp (version and flags), part of the GGUFs' stamps.
    pub(super) key: String,
}

fn root() -> PathBuf {
    util::target_dir().join("llama.cpp")
}

fn sdist_name() -> String {
    format!("llama_cpp_python-{VERSION}.tar.gz")
}

/// The build's stamp value.
pub(super) fn build_key() -> String {
    util::sha256_bytes(
        format!("{VERSION}\n{SDIST_SHA256}\n{CMAKE_FLAGS:?}\n{TARGETS:?}").as_bytes(),
    )
}

/// Builds llama.cpp unless the stamp says it is built; returns the tools.
pub(super) fn ensure(python: &Path) -> Result<LlamaCpp> {
    let build = root().join("build");
    let bin = |name: &str| build.join("bin").join(name);
    let tools = LlamaCpp {
        bench: bin("llama-bench"),
        quantize: bin("llama-quantize"),
        server: bin("llama-server"),
        key: build_key(),
    };
    let stamp = root().join("stamp");
    if util::read_stamp(&stamp).as_deref() == Some(tools.key.as_str())
        && tools.bench.is_file()
        && tools.quantize.is_file()
        && tools.server.is_file()
    {
        eprintln!("  ok llama.cpp (llama-cpp-python {VERSION}) already built");
        return Ok(tools);
    }
    let src_parent = root();
    std::fs::create_dir_all(&src_parent)?;
    let unpacked = src_parent.join(format!("llama_cpp_python-{VERSION}"));
    let logs = bench_dir().join("logs");
    // Unpacked once (a fresh copy would make cmake rebuild everything).
    let unpacked_stamp = unpacked.join(".sdist-sha256");
    if util::read_stamp(&unpacked_stamp).as_deref() != Some(SDIST_SHA256) {
        let sdist = ensure_sdist(python)?;
        if unpacked.exists() {
            std::fs::remove_dir_all(&unpacked)?;
        }
        let step = util::Step::start(format!("unpack {}", sdist_name()));
        util::run_logged(
            Command::new("tar")
                .arg("xzf")
                .arg(&sdist)
                .arg("-C")
                .arg(&src_parent),
            &logs.join("llama-cpp-unpack.log"),
        )?;
        util::write_stamp(&unpacked_stamp, SDIST_SHA256)?;
        step.done();
    }
    let src = unpacked.join("vendor").join("llama.cpp");
    if !src.join("CMakeLists.txt").is_file() {
        bail!(
            "{} has no vendor/llama.cpp/CMakeLists.txt",
            unpacked.display()
        );
    }
    let step = util::Step::start("configure llama.cpp (cmake)");
    util::run_logged(
        Command::new("cmake")
            .arg("-S")
            .arg(&src)
            .arg("-B")
            .arg(&build)
            .args(CMAKE_FLAGS),
        &logs.join("llama-cpp-configure.log"),
    )
    .context("cmake is needed to build llama.cpp (or pass --no-llama-cpp)")?;
    step.done();
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    let step = util::Step::start(format!(
        "build llama.cpp's {} ({jobs} jobs; 20-40 minutes on 2 cores, once)",
        TARGETS.join(", ")
    ));
    let mut cmd = Command::new("cmake");
    cmd.arg("--build").arg(&build).arg("--target").args(TARGETS);
    cmd.args(["-j", &jobs.to_string()]);
    util::run_logged(&mut cmd, &logs.join("llama-cpp-build.log"))?;
    step.done();
    for tool in [&tools.bench, &tools.quantize, &tools.server] {
        if !tool.is_file() {
            bail!("the llama.cpp build made no {}", tool.display());
        }
    }
    util::write_stamp(&stamp, &tools.key)?;
    Ok(tools)
}

/// The sdist in the cache's `downloads/`, fetched from PyPI when missing
/// (by the URL PyPI's JSON API gives), sha256-checked.
fn ensure_sdist(python: &Path) -> Result<PathBuf> {
    let dir = models::cache_root().join("downloads");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(sdist_name());
    if path.is_file() && util::sha256_file(&path)? == SDIST_SHA256 {
        return Ok(path);
    }
    let step = util::Step::start(format!("download {} from PyPI", sdist_name()));
    const FETCH: &str = "import json, sys, urllib.request\n\
        v, out = sys.argv[1], sys.argv[2]\n\
        meta = json.load(urllib.request.urlopen(f'https://pypi.org/pypi/llama-cpp-python/{v}/json'))\n\
        urls = [u['url'] for u in meta['urls'] if u['packagetype'] == 'sdist']\n\
        if not urls: sys.exit(f'PyPI lists no sdist of llama-cpp-python {v}')\n\
        urllib.request.urlretrieve(urls[0], out)\n";
    let logs = bench_dir().join("logs");
    let by_url = util::run_logged(
        Command::new(python).args(["-c", FETCH, VERSION]).arg(&path),
        &logs.join("llama-cpp-download.log"),
    );
    if let Err(e) = by_url {
        // Where PyPI's JSON API is not reachable (a registry mirror), pip
        // itself fetches the sdist (it prepares its metadata, no build).
        eprintln!("  .. PyPI's JSON API failed ({e:#}); trying `pip download`");
        util::run_logged(
            Command::new(python)
                .args(["-m", "pip", "download", "--no-deps", "--no-binary", ":all:"])
                .arg(format!("llama-cpp-python=={VERSION}"))
                .arg("-d")
                .arg(&dir),
            &logs.join("llama-cpp-pip-download.log"),
        )?;
    }
    let got = util::sha256_file(&path)?;
    if got != SDIST_SHA256 {
        std::fs::remove_file(&path)?;
        bail!(
            "{}: sha256 {got}, expected {SDIST_SHA256}; the file was removed",
            path.display()
        );
    }
    step.done();
    Ok(path)
}

/// One llama.cpp quantization type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum GgufType {
    Q4_0,
    Q8_0,
}

impl GgufType {
    /// The type of the same bit width as an MLX `bits`-bit model.
    pub(super) fn for_bits(bits: u32) -> GgufType {
        if bits == 8 {
            GgufType::Q8_0
        } else {
            GgufType::Q4_0
        }
    }
    pub(super) fn name(self) -> &'static str {
        match self {
            GgufType::Q4_0 => "Q4_0",
            GgufType::Q8_0 => "Q8_0",
        }
    }
}

/// A GGUF ready for `llama-bench`, with what its bits per weight are.
#[derive(Debug, Clone)]
pub(super) struct Gguf {
    pub(super) path: PathBuf,
    pub(super) kind: GgufType,
    /// Elements of every tensor (embedding counted once: tied).
    pub(super) params: u64,
    /// Bytes of tensor data (what a decode step reads, the embedding as the
    /// output matrix included).
    pub(super) tensor_bytes: u64,
    pub(super) file_bytes: u64,
    /// How it was made.
    pub(super) how: String,
}

impl Gguf {
    /// File size * 8 / parameters.
    pub(super) fn bits_per_weight(&self) -> f64 {
        self.file_bytes as f64 * 8.0 / self.params.max(1) as f64
    }
}

fn gguf_script() -> PathBuf {
    util::project_root()
        .join("xtask")
        .join("python")
        .join("bench_gguf.py")
}

/// Tensor count, elements and bytes of a GGUF (`bench_gguf.py --info`).
fn gguf_info(python: &Path, path: &Path) -> Result<Value> {
    let out = Command::new(python)
        .arg(gguf_script())
        .arg("--info")
        .arg(path)
        .output()
        .with_context(|| format!("running {}", gguf_script().display()))?;
    if !out.status.success() {
        bail!(
            "bench_gguf.py --info {} failed: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    last_json_line(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("bench_gguf.py --info {} printed no JSON", path.display()))
}

/// The last line of `text` that parses as a JSON object.
pub(super) fn last_json_line(text: &str) -> Option<Value> {
    text.lines()
        .rev()
        .filter(|l| l.trim_start().starts_with('{'))
        .find_map(|l| serde_json::from_str(l).ok())
}

/// The Q4_0 / Q8_0 GGUFs of `model` (a model `models fetch` knows, whose
/// source GGUF is in the cache), made when missing or stale.
pub(super) fn ensure_ggufs(
    python: &Path,
    tools: &LlamaCpp,
    model: &str,
    model_dir: &Path,
    kinds: &[GgufType],
) -> Result<Vec<Gguf>> {
    let info = models::info(model).with_context(|| {
        format!("llama.cpp needs the GGUF a known model was made from; {model} is not one")
    })?;
    let source = models::cache_root().join("downloads").join(info.gguf_file);
    if !source.is_file() {
        bail!(
            "{} is missing (it is kept by `cargo xtask models fetch`; remove {} and fetch again)",
            source.display(),
            model_dir.display()
        );
    }
    let dir = bench_dir().join("gguf");
    std::fs::create_dir_all(&dir)?;
    let script = std::fs::read(gguf_script())?;
    let model_stamp =
        std::fs::read_to_string(model_dir.join(".tiny-llm-stamp")).unwrap_or_default();
    let key = util::sha256_bytes(
        format!(
            "{}\n{}\n{model_stamp}\n{}",
            tools.key,
            info.gguf_sha256,
            util::sha256_bytes(&script)
        )
        .as_bytes(),
    );
    let f32_path = dir.join(format!("{model}-f32.gguf"));
    let mut out = Vec::new();
    for &kind in kinds {
        let path = dir.join(format!("{model}-{}.gguf", kind.name()));
        let stamp = path.with_extension("gguf.stamp");
        let fresh = path.is_file()
            && util::read_stamp(&stamp).is_some_and(|s| s.lines().next() == Some(key.as_str()));
        let how = if fresh {
            util::read_stamp(&stamp)
                .and_then(|s| s.lines().nth(1).map(str::to_string))
                .unwrap_or_default()
        } else {
            let how = make_gguf(python, tools, &source, model_dir, &f32_path, &path, kind)?;
            util::write_stamp(&stamp, &format!("{key}\n{how}"))?;
            how
        };
        let meta = gguf_info(python, &path)?;
        out.push(Gguf {
            file_bytes: std::fs::metadata(&path)?.len(),
            path,
            kind,
            params: meta["params"].as_u64().unwrap_or(0),
            tensor_bytes: meta["tensor_bytes"].as_u64().unwrap_or(0),
            how,
        });
    }
    if f32_path.exists() {
        std::fs::remove_file(&f32_path)?;
    }
    Ok(out)
}

/// Makes one quantized GGUF; returns how.
fn make_gguf(
    python: &Path,
    tools: &LlamaCpp,
    source: &Path,
    model_dir: &Path,
    f32_path: &Path,
    path: &Path,
    kind: GgufType,
) -> Result<String> {
    let logs = bench_dir().join("logs");
    if !f32_path.is_file() {
        let step = util::Step::start(format!("write {}", f32_path.display()));
        let made = util::run_logged(
            Command::new(python)
                .arg(gguf_script())
                .arg(source)
                .arg(model_dir)
                .arg(f32_path),
            &logs.join("gguf-f32.log"),
        );
        match made {
            Ok(()) => step.done(),
            Err(e) => {
                eprintln!("  .. could not write the F32 GGUF ({e:#}); falling back to requantizing the original");
                let _ = std::fs::remove_file(f32_path);
            }
        }
    }
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let step = util::Step::start(format!("llama-quantize {}", kind.name()));
    let (input, how) = if f32_path.is_file() {
        (
            f32_path,
            format!(
                "llama-quantize --pure {} of an F32 GGUF of {}'s tensors",
                kind.name(),
                model_dir.display()
            ),
        )
    } else {
        (
            source,
            format!(
                "fallback: llama-quantize --allow-requantize --pure {} of the original {}",
                kind.name(),
                source.display()
            ),
        )
    };
    let mut cmd = Command::new(&tools.quantize);
    cmd.arg("--pure");
    if input == source {
        cmd.arg("--allow-requantize");
    }
    cmd.arg(input)
        .arg(path)
        .arg(kind.name())
        .arg(threads.to_string());
    util::run_logged(
        &mut cmd,
        &logs.join(format!("llama-quantize-{}.log", kind.name())),
    )?;
    step.done();
    Ok(how)
}

/// The report of two `llama-bench -o json` outputs: `pp` (prompt tests,
/// `n_gen` 0) and `tg` (one generation test at depth `depth`). Each test's
/// `avg_ns` is its time; decode speed is `n_gen / time` (llama-bench's
/// `avg_ts`), written as `decode_seconds = time * (n - 1) / n` so that
/// `metrics` (which counts `n - 1` tokens after the first) gives it back.
/// Time to first token: prefill of `depth` tokens plus one generated token.
pub(super) fn llama_bench_report(pp: &str, tg: &str, depth: usize) -> Result<Value> {
    let parse = |text: &str| -> Result<Vec<Value>> {
        let start = text
            .find('[')
            .context("llama-bench printed no JSON array")?;
        let v: Value =
            serde_json::from_str(&text[start..]).context("parsing llama-bench's JSON")?;
        Ok(v.as_array().cloned().unwrap_or_default())
    };
    let seconds = |t: &Value| t["avg_ns"].as_f64().map(|ns| ns / 1e9);
    let mut prefill = Vec::new();
    for t in parse(pp)? {
        if let (Some(n), Some(s), Some(0)) =
            (t["n_prompt"].as_u64(), seconds(&t), t["n_gen"].as_u64())
        {
            prefill.push(json!({ "tokens": n, "seconds": s }));
        }
    }
    let tests = parse(tg)?;
    let gen = tests
        .iter()
        .find(|t| t["n_gen"].as_u64().unwrap_or(0) > 0)
        .context("llama-bench's generation run has no n_gen > 0 test")?;
    let n = gen["n_gen"].as_u64().unwrap_or(0);
    let s = seconds(gen).context("no avg_ns")?;
    let per_token = s / n as f64;
    let ttft = prefill
        .iter()
        .find(|p| p["tokens"].as_u64() == Some(depth as u64))
        .and_then(|p| p["seconds"].as_f64())
        .map(|p| p + per_token);
    Ok(json!({
        "status": "ok",
        "implementation": "llama.cpp",
        "prefill": prefill,
        "decode": {
            "prompt_tokens": gen["n_depth"].as_u64().unwrap_or(0),
            "new_tokens": n,
            "ttft_seconds": ttft,
            "decode_seconds": per_token * (n - 1) as f64,
        },
        "llama_bench": { "build_commit": gen["build_commit"], "cpu_info": gen["cpu_info"], "n_threads": gen["n_threads"], "type": gen["model_type"] },
    }))
}
