//! `--quant 4|8|none` and `--week 1|2`: which copy of a model to load, and
//! which path runs it.
//!
//! `cargo xtask models fetch` keeps each offline model in the cache as
//! `<name>` (bf16) beside its quantized copies `<name>-4bit` and
//! `<name>-8bit` (MLX's affine format, groups of 64, as mlx-lm writes it:
//! the `quantization` key of `config.json`). `--quant 4` picks the copy
//! beside the model given; a model that is itself quantized is used as
//! given (`--quant none`, the default, never dequantizes a checkpoint on
//! disk: week 1 dequantizes at load, day 6, week 2 keeps it packed).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};

/// `--quant`: a quantized copy with this many bits, or the model as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Quant {
    /// The model as given (dense, or quantized when it is).
    None,
    /// The `bits`-bit copy (4 or 8).
    Bits(u32),
}

impl Quant {
    /// The values `--quant` takes.
    pub const NAMES: [&'static str; 3] = ["4", "8", "none"];

    /// Parses one of [`Quant::NAMES`].
    pub fn parse(s: &str) -> Result<Quant, String> {
        match s {
            "none" => Ok(Quant::None),
            "4" => Ok(Quant::Bits(4)),
            "8" => Ok(Quant::Bits(8)),
            _ => Err(format!("--quant takes 4, 8 or none, not {s:?}")),
        }
    }
}

/// `--week`: the week-1 path (no KV cache, day 7's `simple_generate`) or the
/// week-2 path (day 8's model with a KV cache, quantized layers when the
/// checkpoint is quantized).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Week {
    One,
    Two,
}

impl Week {
    /// The values `--week` takes.
    pub const NAMES: [&'static str; 2] = ["1", "2"];

    /// Parses one of [`Week::NAMES`].
    pub fn parse(s: &str) -> Result<Week, String> {
        match s {
            "1" => Ok(Week::One),
            "2" => Ok(Week::Two),
            _ => Err(format!("--week takes 1 or 2, not {s:?}")),
        }
    }
}

/// What was asked on the command line: the week, and whether it was asked
/// at all (week 2 is the default, and falls back to week 1 only when it
/// was not asked for by name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeekChoice {
    pub week: Week,
    /// `--week` was given.
    pub explicit: bool,
}

impl WeekChoice {
    /// `--week` as parsed (`None` when absent: week 2, not explicit).
    pub fn from_arg(arg: Option<Week>) -> WeekChoice {
        WeekChoice {
            week: arg.unwrap_or(Week::Two),
            explicit: arg.is_some(),
        }
    }

    /// Whether a week-2 day that is not implemented yet may fall back to
    /// the week-1 path (only when `--week` was not given).
    pub fn may_fall_back(&self) -> bool {
        self.week == Week::Two && !self.explicit
    }
}

/// `(group_size, bits)` from `config.json`'s `quantization` (mlx-lm's
/// layout), `None` for a dense model.
///
/// Errors: `config.json` unreadable or not JSON; a `quantization` whose
/// `group_size` or `bits` is missing or not an integer (named).
pub fn quantization_of(dir: &Path) -> Result<Option<(u32, u32)>> {
    let path = dir.join("config.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let Some(q) = json.get("quantization") else {
        return Ok(None);
    };
    let int = |key: &str| -> Result<u32> {
        q.get(key)
            .and_then(|v| v.as_u64())
            .and_then(|v| u32::try_from(v).ok())
            .with_context(|| {
                format!(
                    "{}: `quantization.{key}` is missing or not an integer",
                    path.display()
                )
            })
    };
    Ok(Some((int("group_size")?, int("bits")?)))
}

/// The directory of the `bits`-bit copy of `dir`: `dir` with `-<bits>bit`
/// appended (`models/qwen2.5-coder-0.5b` -> `models/qwen2.5-coder-0.5b-4bit`).
pub fn copy_dir(dir: &Path, bits: u32) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(format!("-{bits}bit"));
    dir.with_file_name(name)
}

/// The model directory to load for `--quant quant`, given the model
/// directory `dir`.
///
/// - `Quant::None`: `dir` as it is (dense or quantized).
/// - `Quant::Bits(b)` and `dir` is quantized with `b` bits: `dir`.
/// - `Quant::Bits(b)` and `dir` is dense: its copy [`copy_dir`], which must
///   exist and be quantized with `b` bits.
///
/// Errors: `dir` quantized with other bits (a checkpoint is not
/// re-quantized); no `b`-bit copy beside a dense `dir` (the message says how
/// to make one); the config errors of [`quantization_of`].
pub fn pick(dir: &Path, quant: Quant) -> Result<PathBuf> {
    let Quant::Bits(bits) = quant else {
        return Ok(dir.to_path_buf());
    };
    match quantization_of(dir)? {
        Some((_, b)) if b == bits => Ok(dir.to_path_buf()),
        Some((group, b)) => bail!(
            "{} is already quantized ({b} bits, groups of {group}: `quantization` in config.json) \
             and is not re-quantized: use --quant {b} or --quant none, or give the bf16 model",
            dir.display()
        ),
        None => {
            let copy = copy_dir(dir, bits);
            match copy
                .join("config.json")
                .is_file()
                .then(|| quantization_of(&copy))
                .transpose()?
            {
                Some(Some((_, b))) if b == bits => Ok(copy),
                Some(got) => bail!(
                    "{} is not a {bits}-bit copy of {} (its config.json says {}): remove it and \
                     run `cargo xtask models fetch` again",
                    copy.display(),
                    dir.display(),
                    got.map_or("dense".to_string(), |(g, b)| format!(
                        "{b} bits, groups of {g}"
                    ))
                ),
                None => bail!(
                    "no {bits}-bit copy of {}: expected {} (`cargo xtask models fetch` makes \
                     <model>-4bit and <model>-8bit of the offline models; for another model: \
                     `target/venv/bin/python -m mlx_lm convert --hf-path {} --mlx-path {} -q \
                     --q-bits {bits} --q-group-size 64`)",
                    dir.display(),
                    copy.display(),
                    dir.display(),
                    copy.display()
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            let p = std::env::temp_dir()
                .join(format!("tiny-llm-cli-pick-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        /// A model directory `name` whose config.json has `quantization`.
        fn model(&self, name: &str, quantization: Option<&str>) -> PathBuf {
            let d = self.0.join(name);
            std::fs::create_dir_all(&d).unwrap();
            let q = quantization.map_or(String::new(), |q| format!(r#", "quantization": {q}"#));
            std::fs::write(d.join("config.json"), format!(r#"{{"hidden_size": 8{q}}}"#)).unwrap();
            d
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const Q4: &str = r#"{"group_size": 64, "bits": 4, "mode": "affine"}"#;
    const Q8: &str = r#"{"group_size": 64, "bits": 8, "mode": "affine"}"#;

    #[test]
    fn flags_parse_to_their_values() {
        assert_eq!(Quant::parse("4"), Ok(Quant::Bits(4)));
        assert_eq!(Quant::parse("8"), Ok(Quant::Bits(8)));
        assert_eq!(Quant::parse("none"), Ok(Quant::None));
        assert!(Quant::parse("3").unwrap_err().contains("4, 8 or none"));
        assert_eq!(Week::parse("1"), Ok(Week::One));
        assert_eq!(Week::parse("2"), Ok(Week::Two));
        assert!(Week::parse("3").is_err());
        for n in Quant::NAMES {
            assert!(Quant::parse(n).is_ok());
        }
    }

    #[test]
    fn week_two_is_the_default_and_falls_back_only_when_not_asked_for() {
        let default = WeekChoice::from_arg(None);
        assert_eq!(default.week, Week::Two);
        assert!(default.may_fall_back());
        assert!(!WeekChoice::from_arg(Some(Week::Two)).may_fall_back());
        assert!(!WeekChoice::from_arg(Some(Week::One)).may_fall_back());
    }

    #[test]
    fn copies_sit_beside_their_model() {
        assert_eq!(
            copy_dir(Path::new("/c/models/qwen2.5-coder-0.5b"), 4),
            Path::new("/c/models/qwen2.5-coder-0.5b-4bit")
        );
        assert_eq!(copy_dir(Path::new("m/"), 8), Path::new("m-8bit"));
    }

    #[test]
    fn quant_picks_the_copy_of_a_dense_model() {
        let t = TempDir::new("dense");
        let dense = t.model("m", None);
        let q4 = t.model("m-4bit", Some(Q4));
        assert_eq!(pick(&dense, Quant::None).unwrap(), dense);
        assert_eq!(pick(&dense, Quant::Bits(4)).unwrap(), q4);
        // no 8-bit copy: the error names the expected directory and the fix
        let e = pick(&dense, Quant::Bits(8)).unwrap_err().to_string();
        assert!(e.starts_with("no 8-bit copy of "), "{e}");
        assert!(e.contains(&t.0.join("m-8bit").display().to_string()), "{e}");
        assert!(
            e.contains("cargo xtask models fetch") && e.contains("--q-bits 8"),
            "{e}"
        );
        // a copy that is not what its name says
        t.model("m-8bit", Some(Q4));
        let e = pick(&dense, Quant::Bits(8)).unwrap_err().to_string();
        assert!(
            e.contains("is not a 8-bit copy") && e.contains("4 bits"),
            "{e}"
        );
    }

    #[test]
    fn a_quantized_model_is_used_as_given() {
        let t = TempDir::new("quantized");
        let q8 = t.model("hub-8bit-model", Some(Q8));
        assert_eq!(pick(&q8, Quant::None).unwrap(), q8);
        assert_eq!(pick(&q8, Quant::Bits(8)).unwrap(), q8);
        let e = pick(&q8, Quant::Bits(4)).unwrap_err().to_string();
        assert!(e.contains("already quantized (8 bits, groups of 64"), "{e}");
        assert!(e.contains("--quant 8 or --quant none"), "{e}");
        assert_eq!(quantization_of(&q8).unwrap(), Some((64, 8)));
        let bad = t.model("bad", Some(r#"{"bits": 4}"#));
        let e = pick(&bad, Quant::Bits(4)).unwrap_err().to_string();
        assert!(e.contains("`quantization.group_size` is missing"), "{e}");
    }
}
