//! `log` (one line per entry) and `entry` (one entry in full), streamed from a source.

use std::io;
use std::path::PathBuf;

use serde_json::{json, Value};
use shoal_core::membership::Membership;
use shoal_core::types::{EntryKind, GroupId, LogIndex, SnapshotMeta};

use super::{with_groups, Console, Outcome};
use crate::report::GroupReport;
use crate::source::{LogEntry, ReadRequest, Source, Visitor};
use crate::state::ReplayEntry;
use crate::text;

/// Which entries `log` shows.
#[derive(Clone, Copy, Debug)]
pub struct Filter {
    /// First index shown.
    pub from: LogIndex,
    /// Last index shown.
    pub to: LogIndex,
    /// At most this many entries per group.
    pub limit: usize,
}

impl Filter {
    fn wants(&self, index: LogIndex) -> bool {
        index >= self.from && index <= self.to
    }
}

/// The membership in force before each entry while a log is read in order: the last config
/// entry before it, or else the snapshot's, so a config change shows as before → after.
struct Configs {
    current: Option<Membership>,
}

impl Configs {
    fn start(snapshot: Option<&SnapshotMeta>) -> Configs {
        Configs {
            current: snapshot.map(|s| s.membership.clone()),
        }
    }

    /// The membership in force before the entry about to be passed to [`Configs::pass`].
    fn before(&self) -> Option<&Membership> {
        self.current.as_ref()
    }

    fn pass(&mut self, e: &LogEntry<'_>) {
        if e.kind == EntryKind::Config {
            if let Ok(m) = text::decode_config(e.data) {
                self.current = Some(m);
            }
        }
    }
}

fn log_line(e: &LogEntry<'_>, before: Option<&Membership>) -> String {
    format!(
        "{:>10} {:>6} {:<7} {:>7}  {}",
        e.index,
        e.term,
        text::kind(e.kind),
        e.data.len(),
        text::entry(e.kind, e.data, before)
    )
}

fn log_json(e: &LogEntry<'_>, before: Option<&Membership>) -> Value {
    json!({
        "index": e.index, "term": e.term, "kind": text::kind(e.kind), "bytes": e.data.len(),
        "text": text::entry(e.kind, e.data, before),
        "command": text::entry_json(e.kind, e.data, before),
    })
}

/// Prints entries as they are read (or collects them as JSON), with each group's findings on
/// standard error after its entries.
struct LogPrinter<'c, 'w> {
    c: &'c mut Console<'w>,
    filter: Filter,
    configs: Configs,
    shown: usize,
    lines: Vec<Value>,
    groups: Vec<Value>,
    /// The first failed write; later output is skipped.
    failed: Option<io::Error>,
}

impl LogPrinter<'_, '_> {
    fn write(&mut self, f: impl FnOnce(&mut Console<'_>) -> io::Result<()>) {
        if self.failed.is_none() {
            if let Err(e) = f(self.c) {
                self.failed = Some(e);
            }
        }
    }
}

impl Visitor for LogPrinter<'_, '_> {
    fn group_start(&mut self, group: GroupId, snapshot: Option<&SnapshotMeta>) {
        self.configs = Configs::start(snapshot);
        self.shown = 0;
        if !self.c.json {
            self.write(|c| {
                writeln!(c.out, "group {}", group)?;
                writeln!(
                    c.out,
                    "{:>10} {:>6} {:<7} {:>7}  command",
                    "index", "term", "kind", "bytes"
                )
            });
        }
    }

    fn entry(&mut self, _group: GroupId, e: &LogEntry<'_>) {
        if self.filter.wants(e.index) && self.shown < self.filter.limit {
            self.shown += 1;
            if self.c.json {
                self.lines.push(log_json(e, self.configs.before()));
            } else {
                let line = log_line(e, self.configs.before());
                self.write(|c| writeln!(c.out, "{}", line));
            }
        }
        self.configs.pass(e);
    }

    fn group_end(&mut self, g: &GroupReport) {
        if self.c.json {
            let entries = std::mem::take(&mut self.lines);
            self.groups
                .push(json!({"group": g.group, "entries": entries}));
            return;
        }
        for p in &g.problems {
            self.write(|c| writeln!(c.err, "{}", p));
        }
    }
}

/// One line per entry of every group (or `group`) that `filter` lets through; the findings of
/// the read on standard error. Exit 1 when the read found damage.
pub fn log(
    c: &mut Console<'_>,
    source: &dyn Source,
    group: Option<GroupId>,
    filter: Filter,
) -> io::Result<Outcome> {
    let mut printer = LogPrinter {
        c,
        filter,
        configs: Configs::start(None),
        shown: 0,
        lines: Vec::new(),
        groups: Vec::new(),
        failed: None,
    };
    let req = ReadRequest {
        group,
        verify_snapshots: false,
    };
    let read = source.read(req, &mut printer);
    let LogPrinter {
        c, groups, failed, ..
    } = printer;
    if let Some(e) = failed {
        return Err(e);
    }
    let report = match read {
        Ok(r) => r,
        Err(e) => return c.source_error(e),
    };
    if c.json {
        let top = json!({"problems": report.all_problems().collect::<Vec<_>>()});
        c.print_json(&with_groups(&report, top, groups))?;
    } else {
        for p in &report.problems {
            writeln!(c.err, "{}", p)?;
        }
    }
    Ok(Outcome::of(report.all_problems()))
}

/// Finds one entry while a group is read, with the membership before it.
struct EntryFinder {
    index: LogIndex,
    configs: Configs,
    found: Option<Found>,
}

struct Found {
    entry: ReplayEntry,
    place: Option<(PathBuf, u64, u64)>,
    before: Option<Membership>,
}

impl Visitor for EntryFinder {
    fn group_start(&mut self, _group: GroupId, snapshot: Option<&SnapshotMeta>) {
        self.configs = Configs::start(snapshot);
    }

    fn entry(&mut self, _group: GroupId, e: &LogEntry<'_>) {
        if e.index == self.index {
            self.found = Some(Found {
                entry: ReplayEntry::from(e),
                place: e.place.map(|p| (p.file.to_path_buf(), p.offset, p.len)),
                before: self.configs.before().cloned(),
            });
        }
        self.configs.pass(e);
    }
}

/// Entry `index` of `group` in full: its record's place when known, the command in words
/// (values uncut), and a hex dump of the payload.
pub fn entry(
    c: &mut Console<'_>,
    source: &dyn Source,
    group: GroupId,
    index: LogIndex,
) -> io::Result<Outcome> {
    let mut finder = EntryFinder {
        index,
        configs: Configs::start(None),
        found: None,
    };
    let req = ReadRequest {
        group: Some(group),
        verify_snapshots: false,
    };
    if let Err(e) = source.read(req, &mut finder) {
        return c.source_error(e);
    }
    let Some(found) = finder.found else {
        return Ok(Outcome::Usage(format!(
            "entry {} is not in the log of group {} of {} (see `shoal-inspect summary`)",
            index,
            group,
            source.path().display()
        )));
    };
    show_entry(c, &found)?;
    Ok(Outcome::Ok)
}

fn show_entry(c: &mut Console<'_>, found: &Found) -> io::Result<()> {
    let e = &found.entry;
    let entry = LogEntry {
        index: e.index,
        term: e.term,
        kind: e.kind,
        data: &e.data,
        place: None,
    };
    let before = found.before.as_ref();
    if c.json {
        let mut v = log_json(&entry, before);
        v["payload_hex"] = json!(text::hex(&e.data));
        if let Some((f, off, len)) = &found.place {
            v["file"] = json!(f.display().to_string());
            v["offset"] = json!(off);
            v["record_bytes"] = json!(len);
        }
        return c.print_json(&v);
    }
    writeln!(c.out, "index    {}", e.index)?;
    writeln!(c.out, "term     {}", e.term)?;
    writeln!(c.out, "kind     {}", text::kind(e.kind))?;
    if let Some((f, off, len)) = &found.place {
        writeln!(
            c.out,
            "record   {} at offset {} ({} bytes)",
            f.display(),
            off,
            len
        )?;
    }
    writeln!(c.out, "payload  {} bytes", e.data.len())?;
    let full = match e.kind {
        EntryKind::Normal if shoal_std::storage::scan::decode_addr_entry(&e.data).is_none() => {
            text::command(&e.data, usize::MAX)
        }
        _ => text::entry(e.kind, &e.data, before),
    };
    writeln!(c.out, "command  {}", full)?;
    writeln!(c.out)?;
    write!(c.out, "{}", text::hex_dump(&e.data))
}
