//! The quantized copies `models fetch` makes of each converted model:
//! `<name>-4bit` and `<name>-8bit` beside `<name>` in the cache, in MLX's
//! affine format (packed `uint32` codes, one bf16 scale and bias per group of
//! 64 inputs, `w = scale * q + bias`) as mlx-lm writes it, with the
//! `quantization` key in `config.json` (`{"group_size": 64, "bits": 4, ...}`).
//!
//! Made by mlx-lm's own converter in the kit's venv:
//! `python -m mlx_lm convert --hf-path <name> --mlx-path <name>-4bit -q
//! --q-bits 4 --q-group-size 64` (flags as in mlx-lm 0.32.2's
//! `mlx_lm/convert.py`). It quantizes every linear layer and the embedding
//! (the tied `lm_head` is the embedding), and keeps the norms in bf16. The
//! tokenizer files are then replaced by the source directory's own, byte for
//! byte (mlx-lm re-saves them through `transformers`, and moves the chat
//! template to `chat_template.jinja`), so the dense model and its copies
//! encode every prompt to the same ids. A few seconds per copy on 2 cores
//! (Qwen2.5-Coder-0.5B: about 10-20 s; SmolLM2-135M: about 5 s).
//!
//! Idempotent: a copy is stamped with a hash of the source's conversion key,
//! the bits, the group size and `fixtures/requirements.txt` (the pinned
//! mlx-lm); a later run with the same stamp and files does nothing.

use super::*;

/// The bit widths `models fetch` makes copies in.
pub const QUANT_BITS: [u32; 2] = [4, 8];

/// Inputs per scale/bias pair in the copies (mlx-lm's default).
pub const QUANT_GROUP_SIZE: u32 = 64;

/// Bump when the copies' layout changes without mlx-lm changing.
const QUANT_FORMAT: &str = "tiny-llm-rs mlx_lm convert v1";

/// Files of the source directory that replace mlx-lm's re-saved ones (when
/// the source has them).
const TOKENIZER_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
];

/// The name of the `bits`-bit copy of `name`: `qwen2.5-coder-0.5b-4bit`.
pub fn quantized_name(name: &str, bits: u32) -> String {
    format!("{name}-{bits}bit")
}

/// A name `models fetch` knows: a model (`qwen2.5-coder-0.5b`, bits `None`)
/// or one of its copies (`qwen2.5-coder-0.5b-4bit`, bits `Some(4)`).
pub fn parse_name(spec: &str) -> Option<(&'static ModelInfo, Option<u32>)> {
    MODELS.iter().find_map(|m| {
        if spec == m.name {
            return Some((m, None));
        }
        QUANT_BITS
            .iter()
            .find(|&&b| spec == quantized_name(m.name, b))
            .map(|&b| (m, Some(b)))
    })
}

/// Makes sure the model (`bits` `None`) or its `bits`-bit copy is in the
/// cache; returns its directory.
pub fn ensure_variant(m: &ModelInfo, bits: Option<u32>) -> Result<PathBuf> {
    match bits {
        None => ensure_model(m.name),
        Some(b) => ensure_quantized(m.name, b),
    }
}

/// What the stamp of a copy must say.
fn quant_key(m: &ModelInfo, bits: u32) -> Result<String> {
    let req_path = util::project_root()
        .join("fixtures")
        .join("requirements.txt");
    let req =
        std::fs::read(&req_path).with_context(|| format!("reading {}", req_path.display()))?;
    Ok(sha256_bytes(
        format!(
            "{QUANT_FORMAT}\n{}\nbits {bits}\ngroup_size {QUANT_GROUP_SIZE}\n{}\n",
            conversion_key(m)?,
            sha256_bytes(&req)
        )
        .as_bytes(),
    ))
}

/// Whether `dir` holds a complete copy stamped with `key`.
fn copy_is_ready(dir: &Path, key: &str) -> bool {
    read_stamp(&dir.join(STAMP)).as_deref() == Some(key)
        && MODEL_FILES.iter().all(|f| dir.join(f).is_file())
}

/// Whether the `bits`-bit copy of `m` is in the cache and up to date.
pub fn is_quantized_ready(m: &ModelInfo, bits: u32) -> bool {
    quant_key(m, bits)
        .is_ok_and(|key| copy_is_ready(&model_dir(&quantized_name(m.name, bits)), &key))
}

/// Makes sure the `bits`-bit group-64 copy of the model `name` is in the
/// cache (fetching and converting the model first when needed); returns its
/// directory, `<cache>/models/<name>-<bits>bit`. Quick (a stamp check) when
/// it is already there.
///
/// Errors: `bits` not 4 or 8; the model's own fetch; mlx-lm's conversion
/// (its log is named); a converted `config.json` whose `quantization` is not
/// what was asked.
pub fn ensure_quantized(name: &str, bits: u32) -> Result<PathBuf> {
    if !QUANT_BITS.contains(&bits) {
        bail!("no {bits}-bit copies: `models fetch` makes 4-bit and 8-bit ones");
    }
    let m = info(name)?;
    let source = ensure_model(m.name)?;
    let copy = quantized_name(m.name, bits);
    let dir = model_dir(&copy);
    let key = quant_key(m, bits)?;
    if copy_is_ready(&dir, &key) {
        eprintln!("  ok {copy} already quantized ({})", dir.display());
        return Ok(dir);
    }
    let python = venv::ensure()?;
    let step = Step::start(format!(
        "quantize {} to {bits} bits, groups of {QUANT_GROUP_SIZE} (mlx-lm convert)",
        m.name
    ));
    let parent = dir.parent().expect("model dirs have a parent");
    // mlx-lm refuses an existing output directory
    let tmp = parent.join(format!(".{copy}.converting"));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "mlx_lm", "convert", "--hf-path"])
        .arg(&source)
        .arg("--mlx-path")
        .arg(&tmp)
        .args(["-q", "--q-bits", &bits.to_string()])
        .args(["--q-group-size", &QUANT_GROUP_SIZE.to_string()])
        // a local directory: never ask the Hub
        .env("HF_HUB_OFFLINE", "1");
    run_logged(&mut cmd, &logs_dir().join(format!("quantize-{copy}.log")))
        .with_context(|| format!("quantizing {} with mlx-lm", source.display()))?;
    finish_copy(&source, &tmp, bits)?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::rename(&tmp, &dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    write_stamp(&dir.join(STAMP), &key)?;
    step.done();
    Ok(dir)
}

/// After mlx-lm: the source's tokenizer files, no `chat_template.jinja`
/// (the source's `tokenizer_config.json` carries the template), and a check
/// that `config.json` says what was asked and every model file is there.
fn finish_copy(source: &Path, out: &Path, bits: u32) -> Result<()> {
    for f in TOKENIZER_FILES {
        let from = source.join(f);
        if from.is_file() {
            std::fs::copy(&from, out.join(f))
                .with_context(|| format!("copying {} into {}", from.display(), out.display()))?;
        }
    }
    let jinja = out.join("chat_template.jinja");
    if jinja.exists() {
        std::fs::remove_file(&jinja).with_context(|| format!("removing {}", jinja.display()))?;
    }
    let config = out.join("config.json");
    let text = std::fs::read_to_string(&config)
        .with_context(|| format!("reading {}", config.display()))?;
    let got = quantization_of(&text).with_context(|| format!("reading {}", config.display()))?;
    if got != Some((QUANT_GROUP_SIZE, bits)) {
        bail!(
            "{}: mlx-lm wrote `quantization` {got:?} (group_size, bits), expected \
             ({QUANT_GROUP_SIZE}, {bits}): its flags may have changed",
            config.display()
        );
    }
    for f in MODEL_FILES {
        if !out.join(f).is_file() {
            bail!("mlx-lm convert wrote no {f} in {}", out.display());
        }
    }
    Ok(())
}

/// `(group_size, bits)` of a `config.json`'s `quantization`, `None` for a
/// dense model. Errors: not JSON, or a `quantization` without integer
/// `group_size` and `bits`.
fn quantization_of(config_json: &str) -> Result<Option<(u32, u32)>> {
    let json: serde_json::Value = serde_json::from_str(config_json)?;
    let Some(q) = json.get("quantization") else {
        return Ok(None);
    };
    let int = |key: &str| {
        q.get(key)
            .and_then(|v| v.as_u64())
            .and_then(|v| u32::try_from(v).ok())
            .with_context(|| format!("`quantization.{key}` is missing or not an integer"))
    };
    Ok(Some((int("group_size")?, int("bits")?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_named_after_their_model_and_bits() {
        assert_eq!(
            quantized_name("qwen2.5-coder-0.5b", 4),
            "qwen2.5-coder-0.5b-4bit"
        );
        let (m, bits) = parse_name("smollm2-135m-8bit").unwrap();
        assert_eq!((m.name, bits), ("smollm2-135m", Some(8)));
        let (m, bits) = parse_name("qwen2.5-coder-0.5b").unwrap();
        assert_eq!((m.name, bits), ("qwen2.5-coder-0.5b", None));
        for unknown in ["smollm2-135m-3bit", "smollm2-135m-4", "gpt-5-4bit", ""] {
            assert!(parse_name(unknown).is_none(), "{unknown}");
        }
        // every copy's name parses back to its model and bits
        for m in MODELS {
            for b in QUANT_BITS {
                let (got, bits) = parse_name(&quantized_name(m.name, b)).unwrap();
                assert_eq!((got.name, bits), (m.name, Some(b)));
            }
        }
    }

    #[test]
    fn the_key_depends_on_the_bits_and_the_model() {
        let q = info(DEFAULT_MODEL).unwrap();
        let s = info("smollm2-135m").unwrap();
        let keys = [
            quant_key(q, 4).unwrap(),
            quant_key(q, 8).unwrap(),
            quant_key(s, 4).unwrap(),
        ];
        assert_ne!(keys[0], keys[1]);
        assert_ne!(keys[0], keys[2]);
        assert_eq!(keys[0], quant_key(q, 4).unwrap());
        assert!(ensure_quantized(DEFAULT_MODEL, 3)
            .unwrap_err()
            .to_string()
            .contains("4-bit and 8-bit"));
    }

    #[test]
    fn a_copy_is_ready_only_when_complete_and_stamped() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        assert!(!copy_is_ready(d, "k"));
        for f in MODEL_FILES {
            std::fs::write(d.join(f), "{}").unwrap();
        }
        assert!(!copy_is_ready(d, "k"), "no stamp");
        write_stamp(&d.join(STAMP), "k").unwrap();
        assert!(copy_is_ready(d, "k"));
        assert!(!copy_is_ready(d, "other key"), "stale stamp");
        std::fs::remove_file(d.join("model.safetensors")).unwrap();
        assert!(!copy_is_ready(d, "k"), "a file is missing");
    }

    #[test]
    fn quantization_is_read_from_config_json() {
        assert_eq!(quantization_of(r#"{"hidden_size": 8}"#).unwrap(), None);
        let mlx_lm = r#"{"quantization": {"group_size": 64, "bits": 4, "mode": "affine"}}"#;
        assert_eq!(quantization_of(mlx_lm).unwrap(), Some((64, 4)));
        let e = quantization_of(r#"{"quantization": {"group_size": 64}}"#).unwrap_err();
        assert!(e.to_string().contains("quantization.bits"), "{e}");
    }

    /// The copy takes the source's tokenizer files and drops mlx-lm's
    /// `chat_template.jinja`; a config that is not what was asked fails.
    #[test]
    fn finishing_a_copy_restores_the_tokenizer_and_checks_the_config() {
        let src = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        std::fs::write(src.path().join("tokenizer.json"), "source tokenizer").unwrap();
        std::fs::write(src.path().join("tokenizer_config.json"), "source config").unwrap();
        std::fs::write(src.path().join("generation_config.json"), "source gen").unwrap();
        for f in MODEL_FILES {
            std::fs::write(out.path().join(f), "re-saved").unwrap();
        }
        std::fs::write(out.path().join("chat_template.jinja"), "{{ x }}").unwrap();
        let config = r#"{"quantization": {"group_size": 64, "bits": 8, "mode": "affine"}}"#;
        std::fs::write(out.path().join("config.json"), config).unwrap();

        let e = finish_copy(src.path(), out.path(), 4).unwrap_err();
        assert!(e.to_string().contains("expected (64, 4)"), "{e}");
        finish_copy(src.path(), out.path(), 8).unwrap();
        let read = |f: &str| std::fs::read_to_string(out.path().join(f)).unwrap();
        assert_eq!(read("tokenizer.json"), "source tokenizer");
        assert_eq!(read("tokenizer_config.json"), "source config");
        assert_eq!(read("generation_config.json"), "source gen");
        assert_eq!(read("model.safetensors"), "re-saved");
        assert!(!out.path().join("chat_template.jinja").exists());
        assert!(!out.path().join("special_tokens_map.json").exists());
    }
}
