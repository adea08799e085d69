//! # shoal-tools: `shoal-inspect`
//!
//! Offline inspection of a Shoal node's durable state: a `shoald` data dir or a raw dump of an
//! embedded node's flash. Nothing here needs a running node, and nothing writes to what it
//! reads: only `export` writes its output file and `import` creates a new data dir.
//!
//! - [`datadir`]: one pass over a data dir's groups (hard state, segments, snapshots) that
//!   collects what is there and every finding, each with its file and byte offset.
//! - [`text`]: log entries and DtKV commands in words and in JSON.
//! - [`state`]: rebuilding a DtKV state (snapshot + committed entries) sized for the data.
//! - [`portable`]: the versioned, CRC'd export file; reading `.snap` files the same way.
//! - [`backup`]: `export` and `import`.
//! - [`addrbook`]: the address book `shoald` keeps per group.
//! - [`flash`]: flash images, opened with the embedded node's own recovery code.
//! - [`problem`]: findings and their severities.
#![warn(missing_docs)]

pub mod addrbook;
pub mod backup;
pub mod datadir;
pub mod flash;
pub mod portable;
pub mod problem;
pub mod state;
pub mod text;
