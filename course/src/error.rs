//! The crate's one error type.

use std::fmt;
use std::path::PathBuf;

/// What went wrong reading the course or a name. Its message says what was
/// wrong and what was expected.
#[derive(Debug)]
pub enum CourseError {
    /// course.toml could not be read.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// course.toml is not valid TOML or has a field of the wrong type
    /// (`path`: the file, when it was read from one).
    Toml {
        path: Option<PathBuf>,
        source: toml::de::Error,
    },
    /// course.toml parses but breaks a rule (day numbering, a missing default
    /// tolerance, an unsupported format version).
    Invalid {
        path: Option<PathBuf>,
        message: String,
    },
    /// A name on the command line or in a variable that is not one of the
    /// accepted ones (`what` was `got`; `expected` lists the forms).
    BadName {
        what: &'static str,
        got: String,
        expected: String,
    },
}

impl fmt::Display for CourseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CourseError::Io { path, source } => write!(f, "reading {}: {source}", path.display()),
            CourseError::Toml { path, source } => {
                write!(f, "{}: {source}", file_name(path))
            }
            CourseError::Invalid { path, message } => write!(f, "{}: {message}", file_name(path)),
            CourseError::BadName {
                what,
                got,
                expected,
            } => write!(f, "`{got}` is not a {what}; {expected}"),
        }
    }
}

impl std::error::Error for CourseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CourseError::Io { source, .. } => Some(source),
            CourseError::Toml { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn file_name(path: &Option<PathBuf>) -> String {
    match path {
        Some(p) => p.display().to_string(),
        None => "course.toml".into(),
    }
}

impl CourseError {
    /// A rule broken by course.toml.
    pub(crate) fn invalid(message: String) -> CourseError {
        CourseError::Invalid {
            path: None,
            message,
        }
    }

    /// The same error, naming the file it came from.
    pub(crate) fn in_file(self, file: &std::path::Path) -> CourseError {
        match self {
            CourseError::Toml { source, .. } => CourseError::Toml {
                path: Some(file.to_path_buf()),
                source,
            },
            CourseError::Invalid { message, .. } => CourseError::Invalid {
                path: Some(file.to_path_buf()),
                message,
            },
            other => other,
        }
    }
}

impl From<toml::de::Error> for CourseError {
    fn from(source: toml::de::Error) -> Self {
        CourseError::Toml { path: None, source }
    }
}
