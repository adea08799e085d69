//! # shoal-tools: `shoal-inspect`
//!
//! Offline inspection of a Shoal node's durable state: a `shoald` data dir or a raw dump of an
//! embedded node's flash. Nothing here needs a running node, and nothing writes to what it
//! reads: only `export` writes its output file and `import` creates a new data dir.
//!
//! Every command is written once, over one abstraction of where the state comes from:
//!
//! - [`source`]: the [`source::Source`] trait (read a node's groups in one pass, streaming
//!   entries to a [`source::Visitor`]; its current snapshot), implemented by
//!   - [`datadir`]: a data dir, read through `shoal_std::storage::scan`, the storage's
//!     documented offline reading API (never the server's internals);
//!   - [`flash`]: a flash image, opened with the embedded node's own recovery code.
//! - [`journal`]: a data dir's sync journal: its live pieces per group, checked to parse.
//! - [`report`]: what a read found, the same types for both sources; [`problem`]: findings
//!   and their severities.
//! - [`commands`]: `summary`, `verify`, `log`, `entry`, `snapshot`, `export`, `import` as
//!   tables or JSON; the binary only parses flags and calls them.
//! - [`text`]: log entries and DtKV commands in words and in JSON.
//! - [`state`]: rebuilding a DtKV state (snapshot + committed entries) sized for the data.
//! - [`portable`]: the versioned, CRC'd export file, and snapshots read from any source.
//! - [`backup`]: `export` (from any source) and `import` (a new data dir).
#![warn(missing_docs)]

pub mod backup;
pub mod commands;
pub mod datadir;
pub mod flash;
pub mod journal;
pub mod portable;
pub mod problem;
pub mod report;
pub mod source;
pub mod state;
pub mod text;
