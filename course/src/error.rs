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
    /// course.toml is not valid TOML or has a field of the wrong type.
    Toml(toml::de::Error),
    /// course.toml parses but breaks a rule (day numbering, a missing default
    /// tolerance, an unsupported format version).
    Invalid(String),
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
            CourseError::Toml(e) => write!(f, "course.toml: {e}"),
            CourseError::Invalid(m) => write!(f, "course.toml: {m}"),
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
            CourseError::Toml(e) => Some(e),
            _ => None,
        }
    }
}

impl From<toml::de::Error> for CourseError {
    fn from(e: toml::de::Error) -> Self {
        CourseError::Toml(e)
    }
}
