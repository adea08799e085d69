//! The commands of `shoal-inspect`, each written once over a [`crate::source::Source`] (or a
//! [`crate::report::Report`] read from one), printing tables for people or one JSON document
//! for scripts. The binary only parses flags, opens the source and calls these.
//!
//! Output goes to the [`Console`]'s writers, so a failed write (a closed pipe) ends a command
//! with an error instead of a panic.

mod backup;
mod log;
mod overview;
mod snapshot;

use std::io::{self, Write};

use serde_json::Value;

use crate::problem::Problem;
use crate::report::Report;
use crate::source::SourceError;

pub use backup::{export, import};
pub use log::{entry, log, Filter};
pub use overview::{summary, verify};
pub use snapshot::snapshot;

/// Exit code: success (warnings only, if any).
pub const EXIT_OK: u8 = 0;
/// Exit code: damage found (verify), or the input is too damaged to do what was asked.
pub const EXIT_DAMAGE: u8 = 1;
/// Exit code: usage error (bad flags, missing input, refusing to overwrite).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: any other failure (IO error, unrestorable state).
pub const EXIT_FAILED: u8 = 3;
/// Exit code: the reader of stdout went away (`shoal-inspect log DIR | head`); what a shell
/// reports for a writer that SIGPIPE ended (128 + 13), so pipelines read it as they always do.
pub const EXIT_READER_GONE: u8 = 141;

/// How a command ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Done; warnings, if any, were printed.
    Ok,
    /// Damage was found (and printed).
    Damage,
    /// The command was used wrongly: the message says how.
    Usage(String),
    /// Anything else: the message says what.
    Failed(String),
}

impl Outcome {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Outcome::Ok => EXIT_OK,
            Outcome::Damage => EXIT_DAMAGE,
            Outcome::Usage(_) => EXIT_USAGE,
            Outcome::Failed(_) => EXIT_FAILED,
        }
    }

    /// `Damage` when any finding is an error, else `Ok`.
    pub fn of<'a>(problems: impl IntoIterator<Item = &'a Problem>) -> Outcome {
        if problems.into_iter().any(Problem::is_error) {
            Outcome::Damage
        } else {
            Outcome::Ok
        }
    }
}

/// Where a command writes: tables or JSON on `out`, side remarks on `err`.
pub struct Console<'a> {
    /// Print one JSON document instead of tables.
    pub json: bool,
    /// Standard output.
    pub out: &'a mut dyn Write,
    /// Standard error.
    pub err: &'a mut dyn Write,
}

impl Console<'_> {
    /// Print `v` as pretty JSON on `out`.
    pub fn print_json(&mut self, v: &Value) -> io::Result<()> {
        let text = serde_json::to_string_pretty(v).expect("JSON values always print");
        writeln!(self.out, "{}", text)
    }

    /// The outcome of a source that could not be opened or read. Damage is printed on `out`
    /// like `verify` prints it, so a script reads both the same way.
    pub fn source_error(&mut self, e: SourceError) -> io::Result<Outcome> {
        Ok(match e {
            SourceError::Usage(s) => Outcome::Usage(s),
            SourceError::Failed(s) => Outcome::Failed(s),
            SourceError::Damaged(p) => {
                writeln!(self.out, "{}", p)?;
                writeln!(self.out, "DAMAGED: 1 error(s)")?;
                Outcome::Damage
            }
        })
    }
}

/// Put one JSON value per group under `"groups"` of `top`. A flash image holds exactly one
/// group and has no group directories, so its group's fields stand at the top level instead
/// (where `--json` has always put them for images).
fn with_groups(report: &Report, mut top: Value, groups: Vec<Value>) -> Value {
    match (report.source.is_image(), groups.as_slice()) {
        (true, [Value::Object(only)]) => {
            for (k, v) in only {
                top[k.as_str()] = v.clone();
            }
        }
        _ => top["groups"] = Value::Array(groups),
    }
    top
}
