//! What `verify` (and every other command, quietly) finds wrong, with where and what.

use std::fmt;
use std::path::Path;

use serde::Serialize;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Normal after a crash or power cut and handled by recovery (a torn unsynced tail, a
    /// torn hard-state save, an interrupted truncation): reported, exit code 0.
    Warning,
    /// Damage recovery refuses to start on, or data that contradicts itself: exit code 1.
    Error,
}

/// One finding: the file, the byte offset when there is one, what was expected and found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// Warning or error.
    pub severity: Severity,
    /// The file (or flash image) concerned.
    pub file: String,
    /// Byte offset in `file` (a flash address for images), when the problem has one.
    pub offset: Option<u64>,
    /// What a healthy file would hold there, when that is known.
    pub expected: Option<String>,
    /// What is there instead, when that is known.
    pub found: Option<String>,
    /// What is wrong, in words.
    pub detail: String,
}

impl Problem {
    /// An error in `file` at `offset`.
    pub fn error(file: &Path, offset: Option<u64>, detail: impl Into<String>) -> Problem {
        Problem {
            severity: Severity::Error,
            file: file.display().to_string(),
            offset,
            expected: None,
            found: None,
            detail: detail.into(),
        }
    }

    /// A warning in `file` at `offset`.
    pub fn warning(file: &Path, offset: Option<u64>, detail: impl Into<String>) -> Problem {
        Problem {
            severity: Severity::Warning,
            ..Problem::error(file, offset, detail)
        }
    }

    /// Add what was expected and what was found.
    pub fn expected_found(mut self, expected: impl fmt::Display, found: impl fmt::Display) -> Self {
        self.expected = Some(expected.to_string());
        self.found = Some(found.to_string());
        self
    }

    /// Whether this is an error (not a warning).
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        write!(f, "{}: {}", sev, self.file)?;
        if let Some(o) = self.offset {
            write!(f, " at offset {}", o)?;
        }
        write!(f, ": {}", self.detail)?;
        if let (Some(e), Some(g)) = (&self.expected, &self.found) {
            write!(f, " (expected {}, found {})", e, g)?;
        }
        Ok(())
    }
}

/// Whether any finding is an error.
pub fn any_error(problems: &[Problem]) -> bool {
    problems.iter().any(Problem::is_error)
}
