//! `summary` and `verify`: what a source holds, and whether all of it checks out.

use std::io;

use serde_json::{json, Value};

use super::{with_groups, Console, Outcome};
use crate::journal::JournalView;
use crate::report::{GroupReport, Report, SourceInfo};

/// Identity (or geometry), groups, hard state, log bounds, log storage, snapshots, health.
pub fn summary(c: &mut Console<'_>, report: &Report) -> io::Result<Outcome> {
    let outcome = Outcome::of(report.all_problems());
    if c.json {
        let mut top = serde_json::to_value(report).expect("the report serializes");
        top["ok"] = json!(!report.has_errors());
        let groups = match top.as_object_mut().and_then(|o| o.remove("groups")) {
            Some(Value::Array(groups)) => groups,
            _ => Vec::new(),
        };
        c.print_json(&with_groups(report, top, groups))?;
        return Ok(outcome);
    }
    source_lines(c, &report.source)?;
    if let Some(j) = &report.journal {
        journal_lines(c, j)?;
    }
    let ids: Vec<String> = report.groups.iter().map(|g| g.group.to_string()).collect();
    let ids = if ids.is_empty() {
        "(none)".into()
    } else {
        ids.join(", ")
    };
    writeln!(c.out, "groups     {}", ids)?;
    for g in &report.groups {
        group_lines(c, report, g)?;
    }
    writeln!(c.out)?;
    let problems: Vec<_> = report.all_problems().collect();
    if problems.is_empty() {
        writeln!(c.out, "health     OK")?;
    } else {
        let errors = problems.iter().filter(|p| p.is_error()).count();
        writeln!(
            c.out,
            "health     {} error(s), {} warning(s)",
            errors,
            problems.len() - errors
        )?;
        for p in &problems {
            writeln!(c.out, "  {}", p)?;
        }
    }
    Ok(outcome)
}

fn source_lines(c: &mut Console<'_>, source: &SourceInfo) -> io::Result<()> {
    match source {
        SourceInfo::DataDir { data_dir, identity } => {
            writeln!(c.out, "data dir   {}", data_dir)?;
            match identity {
                Some(id) => writeln!(
                    c.out,
                    "identity   cluster {}  node {}  raft address {}",
                    id.cluster_id, id.node_id, id.raft_addr
                ),
                None => writeln!(c.out, "identity   (unreadable)"),
            }
        }
        SourceInfo::FlashImage { image, geometry: g } => {
            writeln!(c.out, "flash image {}", image)?;
            writeln!(
                c.out,
                "geometry   erase {} B, write {} B, {} sectors ({} per snapshot slot) at offset {}",
                g.erase, g.write, g.sectors, g.slot, g.offset
            )
        }
    }
}

/// "epoch N", or "epochs N-1 and N" when both halves of the journal hold live records.
fn epochs(j: &JournalView) -> String {
    match j.epochs.as_slice() {
        [older, newer] => format!("epochs {older} and {newer}"),
        _ => format!("epoch {}", j.epoch),
    }
}

/// The sync journal: epoch, records, live pieces per group, and what the next start does.
fn journal_lines(c: &mut Console<'_>, j: &JournalView) -> io::Result<()> {
    writeln!(
        c.out,
        "journal    {}, {} records ({} barriers); {} live pieces, {} bytes",
        epochs(j),
        j.records,
        j.barriers,
        j.live_pieces,
        j.live_bytes
    )?;
    for g in &j.groups {
        let mut notes = Vec::new();
        if g.not_in_segments > 0 {
            notes.push(format!("{} not in its segments", g.not_in_segments));
        }
        if g.segment_gone > 0 {
            notes.push(format!("{} of gone segments, skipped", g.segment_gone));
        }
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!("  ({})", notes.join(", "))
        };
        writeln!(
            c.out,
            "             group {}  {} live pieces  {} bytes{}",
            g.group, g.live_pieces, g.live_bytes, notes
        )?;
    }
    if j.live_pieces > 0 {
        writeln!(
            c.out,
            "           shoald writes the live pieces back into their segments at its next start\n           \
             (the same bytes where they already are, unless a power cut lost the page cache or\n           \
             shoald stopped while busy groups held bytes in the journal)"
        )?;
    }
    Ok(())
}

fn group_lines(c: &mut Console<'_>, report: &Report, g: &GroupReport) -> io::Result<()> {
    writeln!(c.out)?;
    let place = match &g.layout {
        crate::report::LogLayout::Segments { dir, .. } => dir.as_str(),
        crate::report::LogLayout::Ring { .. } => report.source.path(),
    };
    writeln!(c.out, "group {}  ({})", g.group, place)?;
    match &g.hard_state {
        Some(h) => {
            let vote = if h.vote == 0 {
                "none".into()
            } else {
                h.vote.to_string()
            };
            writeln!(
                c.out,
                "  hard state   term {}  vote {}  commit {}",
                h.term, vote, h.commit
            )?
        }
        None => writeln!(c.out, "  hard state   (unreadable)")?,
    }
    match (g.first, g.last) {
        (Some(f), Some(l)) => writeln!(
            c.out,
            "  log          {} entries: first {} (term {})  last {} (term {})",
            g.entries, f.0, f.1, l.0, l.1
        )?,
        _ => writeln!(c.out, "  log          empty")?,
    }
    let (label, text) = g.layout.describe();
    writeln!(c.out, "  {:<12} {}", label, text)?;
    if g.snapshots.is_empty() {
        return writeln!(c.out, "  snapshots    none");
    }
    writeln!(
        c.out,
        "  snapshots    {:>10} {:>6} {:>12}  members",
        "index", "term", "bytes"
    )?;
    for s in &g.snapshots {
        writeln!(
            c.out,
            "             {} {:>10} {:>6} {:>12}  {}",
            if s.current { "*" } else { " " },
            s.index,
            s.term,
            s.size_bytes,
            s.members
        )?;
    }
    Ok(())
}

/// Every finding with its place, then `OK` or `DAMAGED`; exit 1 on any error.
pub fn verify(c: &mut Console<'_>, report: &Report) -> io::Result<Outcome> {
    let problems: Vec<_> = report.all_problems().collect();
    let outcome = Outcome::of(problems.iter().copied());
    if c.json {
        let mut top = json!({"ok": !report.has_errors(), "problems": problems});
        top[report_key(report)] = json!(report.source.path());
        if let Some(j) = &report.journal {
            top["journal"] = json!(j);
        }
        let groups = report
            .groups
            .iter()
            .map(|g| {
                let mut v = g.layout.checked_json();
                v["group"] = json!(g.group);
                v["entries"] = json!(g.entries);
                v["snapshots"] = json!(g.snapshots.len());
                v
            })
            .collect();
        c.print_json(&with_groups(report, top, groups))?;
        return Ok(outcome);
    }
    for g in &report.groups {
        writeln!(
            c.out,
            "group {}: {}, {} entries, {} snapshots checked",
            g.group,
            g.layout.checked(),
            g.entries,
            g.snapshots.len()
        )?;
    }
    if let Some(j) = &report.journal {
        writeln!(
            c.out,
            "journal: {}, {} records, {} live pieces ({} bytes) checked",
            epochs(j),
            j.records,
            j.live_pieces,
            j.live_bytes
        )?;
    }
    for p in &problems {
        writeln!(c.out, "{}", p)?;
    }
    let errors = problems.iter().filter(|p| p.is_error()).count();
    if errors > 0 {
        writeln!(c.out, "DAMAGED: {} error(s)", errors)?;
    } else if problems.is_empty() {
        writeln!(c.out, "OK")?;
    } else {
        writeln!(c.out, "OK ({} warning(s))", problems.len())?;
    }
    Ok(outcome)
}

/// The JSON key naming what was read: `data_dir` or `image`.
fn report_key(report: &Report) -> &'static str {
    match report.source {
        SourceInfo::DataDir { .. } => "data_dir",
        SourceInfo::FlashImage { .. } => "image",
    }
}
