//! docs/DTKV.md's limits table against the code: the *shoald* column must be what `shoald`
//! resolves with no flags, each flag named there must set that limit, and the *server profile*
//! and *embedded* columns must be `KvLimits::server()` and `KvLimits::embedded()`. A default
//! changed in the code, or a number changed in the doc, fails here.

use std::collections::BTreeMap;

use clap::Parser;
use shoal_kv::KvLimits;
use shoal_std::server::config::{
    Flags, ServerConfig, DEFAULT_KV_ARENA_MB, DEFAULT_KV_EVENT_MB, DEFAULT_KV_EVENT_SLOTS,
    DEFAULT_KV_MAX_NODES,
};

/// One row of the table: the limit's name and each column's cell, by header.
type Row = BTreeMap<String, String>;

fn dtkv_doc() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/DTKV.md");
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn cells(line: &str) -> Vec<String> {
    let inner = line.trim().trim_start_matches('|').trim_end_matches('|');
    inner.split('|').map(|c| c.trim().to_string()).collect()
}

/// The first table after the `## Limits` heading, keyed by the limit's name (backticks off).
fn limits_table(doc: &str) -> BTreeMap<String, Row> {
    let after = doc
        .split_once("\n## Limits\n")
        .expect("docs/DTKV.md has a `## Limits` section")
        .1;
    let mut lines = after
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'));
    let header = cells(lines.next().expect("the limits table has a header"));
    lines.next().expect("the limits table has a separator row");
    let mut rows = BTreeMap::new();
    for line in lines {
        let c = cells(line);
        assert_eq!(
            c.len(),
            header.len(),
            "row {line:?} has another column count"
        );
        let row: Row = header.iter().cloned().zip(c).collect();
        let name = row[&header[0]].trim_matches('`').to_string();
        assert!(rows.insert(name.clone(), row).is_none(), "{name} twice");
    }
    rows
}

/// A cell's number in the limit's own unit (bytes, milliseconds or a count): `1024`,
/// `1,048,576`, `64 KiB`, `30 days`; anything after ` (` is a remark.
fn number(cell: &str) -> u64 {
    let text = cell.split(" (").next().unwrap_or(cell).replace(',', "");
    let mut words = text.split_whitespace();
    let n: u64 = words
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("cell {cell:?} does not start with a number"));
    let unit = match words.next() {
        None => 1,
        Some("KiB") => 1 << 10,
        Some("MiB") => 1 << 20,
        Some("GiB") => 1 << 30,
        Some("day" | "days") => 24 * 3_600_000,
        Some(u) => panic!("cell {cell:?}: unknown unit {u:?}"),
    };
    assert!(
        words.next().is_none(),
        "cell {cell:?}: words after the unit"
    );
    n * unit
}

/// The `--flag` a cell names, if any.
fn flag(cell: &str) -> Option<&str> {
    cell.split('`').find(|w| w.starts_with("--"))
}

/// Every limit by its name, as the table names them.
fn by_name(l: &KvLimits) -> BTreeMap<&'static str, u64> {
    let n = |v: usize| v as u64;
    BTreeMap::from([
        ("max_key_bytes", n(l.max_key_bytes)),
        ("max_value_bytes", n(l.max_value_bytes)),
        ("max_depth", n(l.max_depth)),
        ("max_nodes", n(l.max_nodes)),
        ("arena_bytes", n(l.arena_bytes)),
        ("max_sessions", n(l.max_sessions)),
        ("max_waiters_per_lock", n(l.max_waiters_per_lock)),
        ("max_waiters", n(l.max_waiters)),
        ("event_slots", n(l.event_slots)),
        ("event_bytes", n(l.event_bytes)),
        ("max_batch_items", n(l.max_batch_items)),
        ("max_ttl_ms", l.max_ttl_ms),
        ("max_txn_ops", n(l.max_txn_ops)),
        ("max_leases", n(l.max_leases)),
    ])
}

fn resolved(args: &[&str]) -> KvLimits {
    let flags = Flags::try_parse_from(std::iter::once("shoald").chain(args.iter().copied()))
        .unwrap_or_else(|e| panic!("shoald {args:?}: {e}"));
    ServerConfig::resolve(flags)
        .unwrap_or_else(|e| panic!("shoald {args:?}: {e}"))
        .kv
}

const SHOALD: &str = "shoald (default, flag)";

#[test]
fn the_limits_table_is_what_the_code_uses() {
    let table = limits_table(&dtkv_doc());
    let shoald = resolved(&[]);
    let columns = [
        (SHOALD, by_name(&shoald)),
        ("server profile", by_name(&KvLimits::server())),
        ("embedded", by_name(&KvLimits::embedded())),
    ];
    let names: Vec<&str> = columns[0].1.keys().copied().collect();
    let documented: Vec<&str> = table.keys().map(String::as_str).collect();
    assert_eq!(
        documented, names,
        "the table lists other limits than KvLimits has"
    );
    let mut wrong = Vec::new();
    for (column, values) in &columns {
        for (name, value) in values {
            let cell = table[*name]
                .get(*column)
                .unwrap_or_else(|| panic!("the limits table has no column {column:?}"));
            if number(cell) != *value {
                wrong.push(format!(
                    "{name} / {column}: the doc says {cell:?}, the code {value}"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "docs/DTKV.md is wrong:\n{}",
        wrong.join("\n")
    );
}

/// The memory each set of limits takes, as the paragraph after the table says it: "about N
/// UNIT for the embedded profile", "... for the server profile", "... for shoald's defaults",
/// each within a tenth of `KvLimits::memory_bytes()`.
#[test]
fn the_memory_the_doc_states_is_what_the_limits_take() {
    let doc = dtkv_doc().split_whitespace().collect::<Vec<_>>().join(" ");
    for (what, limits) in [
        ("the embedded profile", KvLimits::embedded()),
        ("the server profile", KvLimits::server()),
        ("shoald's defaults", resolved(&[])),
    ] {
        let bytes = limits.memory_bytes() as f64;
        let (before, _) = doc
            .split_once(&format!(" for {what}"))
            .unwrap_or_else(|| panic!("docs/DTKV.md says nothing of the memory for {what}"));
        let words: Vec<&str> = before.rsplit(' ').take(3).collect();
        assert_eq!(words.get(2), Some(&"about"), "{what}: {words:?}");
        let stated = number(&format!("{} {}", words[1], words[0])) as f64;
        assert!(
            (stated - bytes).abs() <= bytes / 10.0,
            "docs/DTKV.md says about {} {} for {what}; KvLimits::memory_bytes() is {bytes} \
             ({:.1} MiB)",
            words[1],
            words[0],
            bytes / f64::from(1 << 20)
        );
    }
}

#[test]
fn the_named_defaults_are_the_resolved_ones() {
    let kv = resolved(&[]);
    assert_eq!(kv.max_nodes, DEFAULT_KV_MAX_NODES);
    assert_eq!(kv.arena_bytes, DEFAULT_KV_ARENA_MB << 20);
    assert_eq!(kv.event_slots, DEFAULT_KV_EVENT_SLOTS);
    assert_eq!(kv.event_bytes, DEFAULT_KV_EVENT_MB << 20);
}

/// Each flag the table names sets the limit it stands next to: given 2 (MiB for the `-mb`
/// flags), that limit becomes 2 in its own unit. (Others may follow: `event_bytes` is at most
/// the arena.)
#[test]
fn each_flag_in_the_table_sets_its_limit() {
    let table = limits_table(&dtkv_doc());
    let default = by_name(&resolved(&[]));
    let mut flagged = 0;
    for (name, row) in &table {
        let Some(flag) = flag(&row[SHOALD]) else {
            continue;
        };
        flagged += 1;
        let unit = if flag.ends_with("-mb") { 1 << 20 } else { 1 };
        let moved = by_name(&resolved(&[flag, "2"]));
        assert_ne!(
            default[name.as_str()],
            2 * unit,
            "{name}: pick another test value"
        );
        assert_eq!(
            moved[name.as_str()],
            2 * unit,
            "shoald {flag} 2 must set {name}"
        );
    }
    assert!(
        flagged >= 4,
        "the table names {flagged} flags; shoald has four --kv-* limits"
    );
}

#[test]
fn the_table_parser_reads_every_form_the_doc_uses() {
    assert_eq!(number("1,048,576"), 1 << 20);
    assert_eq!(number("64 KiB"), 64 << 10);
    assert_eq!(
        number("8 MiB (`--kv-event-mb`, at most the arena)"),
        8 << 20
    );
    assert_eq!(number("1 day"), 86_400_000);
    assert_eq!(
        flag("8 MiB (`--kv-event-mb`, at most the arena)"),
        Some("--kv-event-mb")
    );
    assert_eq!(flag("30 days"), None);
}
