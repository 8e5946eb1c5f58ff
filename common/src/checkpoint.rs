//! Reading checkpoint files safely (given code: not an exercise).
//!
//! MLX trusts a `.safetensors` file: a truncated or corrupt one can make it
//! fail deep inside, or abort the process. [`inspect_safetensors`] reads and
//! validates the header with the `safetensors` crate first (offsets in order,
//! sizes matching dtypes and shapes, the file exactly as long as the header
//! says), and [`load_safetensors`] hands the file to MLX only after that.
//! [`read_json`] reads a JSON file with errors that name it.
//! [`check_shard_name`] and [`shard_path`] keep the shard names of a
//! `model.safetensors.index.json` inside the model directory.

use crate::{Error, Result};
use mlx_rs::Array;
use safetensors::tensor::Metadata;
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Component, Path, PathBuf};

/// The header limit of the safetensors format (100 MB).
const MAX_HEADER: u64 = 100_000_000;

/// One tensor as a safetensors header describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorMeta {
    /// The safetensors dtype name: `"BF16"`, `"F16"`, `"F32"`, `"U32"`, ...
    pub dtype: String,
    /// The shape.
    pub shape: Vec<usize>,
}

/// Reads and validates the header of a `.safetensors` file without reading
/// its data: returns every tensor's dtype and shape, by name.
///
/// Errors: [`Error::Io`] when the file cannot be read; [`Error::Load`]
/// naming the file when it is too short, the header is not valid JSON or
/// describes overlapping or mis-sized tensors, or the file's length differs
/// from what the header says (a truncated download, for example).
pub fn inspect_safetensors(path: &Path) -> Result<BTreeMap<String, TensorMeta>> {
    let bad = |msg: String| Error::Load(format!("{}: {msg}", path.display()));
    let mut file = std::fs::File::open(path)
        .map_err(|e| Error::Io(format!("opening {}: {e}", path.display())))?;
    let file_len = file
        .metadata()
        .map_err(|e| Error::Io(format!("reading {}: {e}", path.display())))?
        .len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes).map_err(|_| {
        bad(format!(
            "not a safetensors file ({file_len} bytes, no header)"
        ))
    })?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER || 8 + header_len > file_len {
        return Err(bad(format!(
            "not a safetensors file or truncated: the header claims {header_len} bytes, \
             the file has {file_len}"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header)
        .map_err(|e| bad(format!("reading the header: {e}")))?;
    let text = std::str::from_utf8(&header)
        .map_err(|_| bad("the header is not UTF-8 (corrupt file)".into()))?;
    let metadata: Metadata =
        serde_json::from_str(text).map_err(|e| bad(format!("invalid safetensors header: {e}")))?;
    let expected = 8 + header_len + metadata.data_len() as u64;
    if expected != file_len {
        return Err(bad(format!(
            "the header describes {expected} bytes but the file has {file_len} \
             ({}; download or copy it again)",
            if file_len < expected {
                "truncated"
            } else {
                "trailing bytes"
            }
        )));
    }
    Ok(metadata
        .tensors()
        .into_iter()
        .map(|(name, info)| {
            let meta = TensorMeta {
                dtype: format!("{:?}", info.dtype),
                shape: info.shape.clone(),
            };
            (name, meta)
        })
        .collect())
}

/// Loads every tensor of a `.safetensors` file into MLX, after
/// [`inspect_safetensors`] has validated it. Tensors keep their stored
/// dtypes.
///
/// Errors: those of [`inspect_safetensors`], and [`Error::Load`] naming the
/// file when MLX still refuses it (an unsupported dtype, for example).
pub fn load_safetensors(path: &Path) -> Result<HashMap<String, Array>> {
    let header = inspect_safetensors(path)?;
    let arrays = Array::load_safetensors(path)
        .map_err(|e| Error::Load(format!("{}: MLX could not load it: {e}", path.display())))?;
    if arrays.len() != header.len() {
        return Err(Error::Load(format!(
            "{}: MLX read {} tensors, the header lists {}",
            path.display(),
            arrays.len(),
            header.len()
        )));
    }
    Ok(arrays)
}

/// Reads a JSON file.
///
/// Errors: [`Error::Io`] when the file cannot be read, [`Error::Config`]
/// naming the file when it is not valid JSON.
pub fn read_json(path: &Path) -> Result<serde_json::Value> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Io(format!("reading {}: {e}", path.display())))?;
    serde_json::from_str(&text)
        .map_err(|e| Error::Config(format!("{}: not valid JSON: {e}", path.display())))
}

/// Checks a shard name from a safetensors index (a value of its
/// `weight_map`) without touching the disk: it must be a relative path of
/// plain names (`model-00001-of-00002.safetensors`, `sub/x.safetensors`),
/// with no root, drive prefix or `..`, so that it cannot name a file outside
/// the model directory. Use it before downloading a shard; [`shard_path`]
/// also checks the file on disk.
///
/// - `index`: the index file, named in the error.
///
/// Errors: [`Error::Load`] naming the shard and `index` when the name is
/// empty, absolute or climbs out with `..`.
pub fn check_shard_name(index: &Path, shard: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(Error::Load(format!(
            "{}: the shard name {shard:?} {why}; shard names must be plain file names \
             inside the model directory",
            index.display()
        )))
    };
    if shard.is_empty() {
        return bad("is empty");
    }
    let mut names = 0;
    for component in Path::new(shard).components() {
        match component {
            Component::Normal(_) => names += 1,
            Component::CurDir => {}
            Component::ParentDir => return bad("contains `..`"),
            Component::RootDir | Component::Prefix(_) => return bad("is an absolute path"),
        }
    }
    if names == 0 {
        return bad("names no file");
    }
    Ok(())
}

/// The path of the shard `shard` of the model directory `dir`, after
/// checking that it stays inside `dir`: [`check_shard_name`], then the file
/// must exist and its real path (symbolic links resolved) must lie under
/// `dir`'s real path. One link layout is recognised: a Hugging Face cache
/// snapshot (`models--org--name/snapshots/<rev>/`), whose files are links
/// into the repository's `blobs/` folder, may also point there.
///
/// - `index`: the index file that lists the shard, named in errors.
///
/// Errors: [`Error::Load`] naming the shard and `index` when the name is
/// unsafe, the shard is missing from `dir`, or it resolves outside `dir`
/// (a symbolic link that escapes).
pub fn shard_path(dir: &Path, index: &Path, shard: &str) -> Result<PathBuf> {
    check_shard_name(index, shard)?;
    let path = dir.join(shard);
    if !path.is_file() {
        return Err(Error::Load(format!(
            "{} lists the shard {shard}, which is missing from {}",
            index.display(),
            dir.display()
        )));
    }
    let real = |p: &Path| {
        p.canonicalize()
            .map_err(|e| Error::Io(format!("resolving {}: {e}", p.display())))
    };
    let real_dir = real(dir)?;
    let real_path = real(&path)?;
    let in_hf_blobs = || {
        let snapshots = real_dir.parent()?;
        if snapshots.file_name()? != "snapshots" {
            return None;
        }
        let blobs = snapshots.parent()?.join("blobs");
        Some(real_path.starts_with(blobs))
    };
    if real_path.starts_with(&real_dir) || in_hf_blobs() == Some(true) {
        return Ok(path);
    }
    Err(Error::Load(format!(
        "{}: the shard {shard} is a symbolic link to {}, outside the model directory {}; \
         copy the file into the directory instead",
        index.display(),
        real_path.display(),
        real_dir.display()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TempDir;

    /// A well-formed file: two f32 tensors.
    fn write_good(path: &Path) -> Vec<u8> {
        let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let b = Array::from_slice(&[7u32, 8], &[2]);
        Array::save_safetensors([("a", &a), ("b", &b)], None, path).unwrap();
        std::fs::read(path).unwrap()
    }

    #[test]
    fn a_good_file_is_described_and_loads() {
        let dir = TempDir::new("checkpoint-good");
        let path = dir.path().join("w.safetensors");
        write_good(&path);
        let header = inspect_safetensors(&path).unwrap();
        assert_eq!(
            header["a"],
            TensorMeta {
                dtype: "F32".into(),
                shape: vec![2, 3]
            }
        );
        assert_eq!(header["b"].dtype, "U32");
        let arrays = load_safetensors(&path).unwrap();
        assert_eq!(arrays["a"].shape(), &[2, 3]);
    }

    #[test]
    fn a_truncated_file_is_an_error_naming_it() {
        let dir = TempDir::new("checkpoint-truncated");
        let path = dir.path().join("w.safetensors");
        let bytes = write_good(&path);
        for cut in [bytes.len() - 3, 20, 5, 0] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let err = load_safetensors(&path).unwrap_err();
            assert!(matches!(err, Error::Load(_)), "cut {cut}: {err}");
            assert!(err.to_string().contains("w.safetensors"), "{err}");
        }
    }

    #[test]
    fn a_corrupt_header_or_trailing_bytes_are_errors() {
        let dir = TempDir::new("checkpoint-corrupt");
        let path = dir.path().join("w.safetensors");
        let mut bytes = write_good(&path);
        bytes[9] = b'#';
        std::fs::write(&path, &bytes).unwrap();
        let err = inspect_safetensors(&path).unwrap_err().to_string();
        assert!(err.contains("invalid safetensors header"), "{err}");

        let mut bytes = write_good(&path);
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        std::fs::write(&path, &bytes).unwrap();
        let err = inspect_safetensors(&path).unwrap_err().to_string();
        assert!(err.contains("trailing bytes"), "{err}");

        std::fs::write(&path, b"not a safetensors file at all").unwrap();
        assert!(matches!(inspect_safetensors(&path), Err(Error::Load(_))));
    }

    #[test]
    fn missing_files_and_bad_json_name_the_path() {
        let dir = TempDir::new("checkpoint-json");
        let err = load_safetensors(&dir.path().join("nope.safetensors")).unwrap_err();
        assert!(matches!(err, Error::Io(_)) && err.to_string().contains("nope.safetensors"));
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{\"a\": ").unwrap();
        let err = read_json(&path).unwrap_err().to_string();
        assert!(
            err.contains("config.json") && err.contains("not valid JSON"),
            "{err}"
        );
    }

    fn index_of(dir: &Path) -> PathBuf {
        dir.join("model.safetensors.index.json")
    }

    #[test]
    fn shard_names_cannot_leave_the_model_directory() {
        let dir = TempDir::new("checkpoint-shards");
        let model = dir.path().join("model");
        std::fs::create_dir_all(model.join("sub")).unwrap();
        std::fs::write(model.join("a.safetensors"), b"x").unwrap();
        std::fs::write(model.join("sub/b.safetensors"), b"x").unwrap();
        std::fs::write(dir.path().join("secret.safetensors"), b"x").unwrap();
        let index = index_of(&model);

        // plain names inside the directory are fine
        assert_eq!(
            shard_path(&model, &index, "a.safetensors").unwrap(),
            model.join("a.safetensors")
        );
        assert_eq!(
            shard_path(&model, &index, "sub/b.safetensors").unwrap(),
            model.join("sub/b.safetensors")
        );
        assert!(check_shard_name(&index, "./a.safetensors").is_ok());

        // `..`, absolute paths and empty names are refused by name, and the
        // message names the shard and the index file
        let outside = dir.path().join("secret.safetensors");
        let cases = [
            ("../secret.safetensors", "contains `..`"),
            ("sub/../../secret.safetensors", "contains `..`"),
            (outside.to_str().unwrap(), "is an absolute path"),
            ("", "is empty"),
            (".", "names no file"),
        ];
        for (shard, why) in cases {
            for err in [
                check_shard_name(&index, shard).unwrap_err(),
                shard_path(&model, &index, shard).unwrap_err(),
            ] {
                assert!(matches!(err, Error::Load(_)), "{shard}: {err}");
                let msg = err.to_string();
                assert!(msg.contains(why), "{shard}: {msg}");
                assert!(msg.contains(&format!("{shard:?}")), "{shard}: {msg}");
                assert!(msg.contains("model.safetensors.index.json"), "{msg}");
            }
        }

        let err = shard_path(&model, &index, "c.safetensors")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("lists the shard c.safetensors, which is missing"),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn symbolic_links_out_of_the_model_directory_are_refused() {
        use std::os::unix::fs::symlink;
        let dir = TempDir::new("checkpoint-links");
        let model = dir.path().join("model");
        std::fs::create_dir_all(&model).unwrap();
        std::fs::write(dir.path().join("secret.safetensors"), b"x").unwrap();
        std::fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
        std::fs::write(dir.path().join("elsewhere/c.safetensors"), b"x").unwrap();
        std::fs::write(model.join("a.safetensors"), b"x").unwrap();
        let index = index_of(&model);

        // a file link and a directory link that escape
        symlink(
            dir.path().join("secret.safetensors"),
            model.join("s.safetensors"),
        )
        .unwrap();
        symlink(dir.path().join("elsewhere"), model.join("linked")).unwrap();
        for shard in ["s.safetensors", "linked/c.safetensors"] {
            let err = shard_path(&model, &index, shard).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, Error::Load(_)), "{msg}");
            assert!(
                msg.contains(shard) && msg.contains("outside the model directory"),
                "{msg}"
            );
            assert!(msg.contains("model.safetensors.index.json"), "{msg}");
        }

        // a link that stays inside is fine, and so is a model directory
        // reached through a link
        symlink(model.join("a.safetensors"), model.join("alias.safetensors")).unwrap();
        assert!(shard_path(&model, &index, "alias.safetensors").is_ok());
        symlink(&model, dir.path().join("model-link")).unwrap();
        let via = dir.path().join("model-link");
        assert!(shard_path(&via, &index_of(&via), "a.safetensors").is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn hugging_face_cache_snapshots_may_link_into_their_blobs() {
        use std::os::unix::fs::symlink;
        let dir = TempDir::new("checkpoint-hf-cache");
        let repo = dir.path().join("models--org--name");
        let snapshot = repo.join("snapshots/0123abcd");
        std::fs::create_dir_all(&snapshot).unwrap();
        std::fs::create_dir_all(repo.join("blobs")).unwrap();
        std::fs::write(repo.join("blobs/feed"), b"x").unwrap();
        std::fs::write(repo.join("other"), b"x").unwrap();
        // the layout huggingface_hub writes: relative links into ../../blobs
        symlink("../../blobs/feed", snapshot.join("model-1.safetensors")).unwrap();
        symlink("../../other", snapshot.join("model-2.safetensors")).unwrap();
        let index = index_of(&snapshot);
        assert!(shard_path(&snapshot, &index, "model-1.safetensors").is_ok());
        // the repository folder itself is not part of the exception
        let err = shard_path(&snapshot, &index, "model-2.safetensors").unwrap_err();
        assert!(
            err.to_string().contains("outside the model directory"),
            "{err}"
        );
    }
}
