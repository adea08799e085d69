//! The shell examples of the Markdown docs, run as written against a real node.
//!
//! A fenced code block right after the line [`DEV_NODE`] (an HTML comment, so GitHub shows
//! nothing of it) is an example that one fresh development node runs as written.
//! [`marked_examples`] reads them out of a document; [`run_on_dev_node`] starts a node with
//! `shoald`'s defaults on free ports and runs the example's commands in order, each with
//! `sh -e -c` in a work dir shared by the example's commands (files one writes, the next
//! reads), and fails naming the document, line, section and command of the first one that
//! exits non-zero. What differs from a dev node on its default ports is handled so:
//!
//! - the workspace's binaries built for the test (`shoalctl`, `shoal-inspect`, ...) come first
//!   on `PATH`;
//! - `SHOAL_ENDPOINTS` is the node's client address, so `shoalctl` without `--endpoints` reaches
//!   it as it reaches a dev node on `127.0.0.1:7002`;
//! - in the command text `127.0.0.1:7001`, `127.0.0.1:7002` and `127.0.0.1:7003` become the
//!   node's raft, client and admin addresses.
//!
//! A command whose line ends in `# prints X` must print `X` as its last line of output (`a && b
//! # prints 1`: what `b` prints). A line
//! ending in `\` goes on on the next; a here-document (`<<'END'` ... `END`) is part of its
//! command. Lines that are blank or only a `#` comment are not run.

use std::path::{Path, PathBuf};
use std::process::Command;

use shoal_client::protocol::ReadMode;

use crate::cli::{run, Output, CTL_WAIT};
use crate::{wait_for, Cluster, WAIT};

/// The line that marks the next code block as runnable by one fresh dev node.
pub const DEV_NODE: &str = "<!-- doc-test: dev node -->";

/// One marked code block.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Example {
    /// The document, as given to [`marked_examples`].
    pub doc: String,
    /// The heading the block stands under.
    pub section: String,
    /// Its commands, in order.
    pub commands: Vec<DocCommand>,
}

/// One command of an [`Example`]: a line, with its continuation lines and here-document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocCommand {
    /// The document's line number (from 1) of its first line.
    pub line: usize,
    /// The shell text, as in the document.
    pub text: String,
    /// The last line it must print, from a trailing `# prints X`.
    pub prints: Option<String>,
}

/// The marked examples of the Markdown file `path`; `name` is how messages call it.
///
/// # Panics
/// When the file cannot be read, or a marker is not followed by a code block.
pub fn marked_examples(path: &Path, name: &str) -> Vec<Example> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("read {} ({name}): {e}", path.display()));
    examples_in(&text, name)
}

/// [`marked_examples`] of a document's text.
pub fn examples_in(text: &str, name: &str) -> Vec<Example> {
    let lines: Vec<&str> = text.lines().collect();
    let mut section = String::new();
    let mut examples = Vec::new();
    let mut i = 0;
    let mut in_fence = false;
    while i < lines.len() {
        let line = lines[i].trim_start();
        if line.starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence && line.starts_with('#') {
            section = line.trim_start_matches('#').trim().to_string();
        } else if !in_fence && line.trim_end() == DEV_NODE {
            let fence = lines.get(i + 1).map(|l| l.trim_start()).unwrap_or("");
            assert!(
                fence.starts_with("```"),
                "{name}:{}: {DEV_NODE} must stand right before a code block",
                i + 1
            );
            let indent = lines[i + 1].len() - fence.len();
            let body_start = i + 2;
            let len = lines[body_start..]
                .iter()
                .position(|l| l.trim() == "```")
                .unwrap_or_else(|| panic!("{name}:{}: the code block never ends", i + 2));
            let body: Vec<&str> = lines[body_start..body_start + len]
                .iter()
                .map(|l| l.get(indent..).unwrap_or(l.trim_start()))
                .collect();
            examples.push(Example {
                doc: name.to_string(),
                section: section.clone(),
                commands: commands(&body, body_start + 1),
            });
            i = body_start + len + 1;
            continue;
        }
        i += 1;
    }
    examples
}

/// The commands of a block whose first line is the document's line `first`.
fn commands(body: &[&str], first: usize) -> Vec<DocCommand> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let start = i;
        let line = body[i];
        i += 1;
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let mut text = line.to_string();
        while text.ends_with('\\') && i < body.len() {
            text.push('\n');
            text.push_str(body[i]);
            i += 1;
        }
        if let Some(end) = heredoc_end(line) {
            while i < body.len() {
                text.push('\n');
                text.push_str(body[i]);
                i += 1;
                if body[i - 1].trim() == end {
                    break;
                }
            }
        }
        let prints = line
            .rsplit_once("# prints ")
            .map(|(_, want)| want.trim().to_string());
        out.push(DocCommand {
            line: first + start,
            text,
            prints,
        });
    }
    out
}

/// The word that ends the here-document a line opens (`<<'END'`, `<<END`, `<<-"END"`).
fn heredoc_end(line: &str) -> Option<String> {
    let rest = line
        .split_once("<<")?
        .1
        .trim_start_matches('-')
        .trim_start();
    let word: String = rest
        .trim_start_matches(['\'', '"'])
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect();
    (!word.is_empty()).then_some(word)
}

/// Start a fresh single-node cluster with `shoald`'s defaults (only ids, addresses, data dir
/// and its client address in the member list set), wait until it leads, has written its
/// member record and its `/health` says ok, and run `example` against it.
///
/// # Panics
/// At the first command that exits non-zero, runs past [`CTL_WAIT`] or ends its output with
/// another line than its `# prints`, naming the document, line, section and command, with its output.
pub fn run_on_dev_node(example: &Example) {
    let mut cluster = Cluster::builder().voters([1]).shoald_defaults().build();
    cluster.start(1);
    cluster.wait_leader(0);
    // Ready as an operator finds it: the leader has also written its own member record (a
    // step after its election that examples reading `__shoal.members` rely on).
    wait_for("node 1's member record", WAIT, || {
        cluster
            .get(1, 0, "__shoal.members.1", ReadMode::Linearizable)
            .is_some()
    });
    cluster.wait_healthy(1);
    let work = cluster.root().join("work");
    std::fs::create_dir_all(&work).expect("a work dir for the example");
    let node = cluster.node(1);
    let path = search_path();
    for c in &example.commands {
        let text = c
            .text
            .replace("127.0.0.1:7001", &node.raft)
            .replace("127.0.0.1:7002", &node.client)
            .replace("127.0.0.1:7003", &node.admin);
        let place = format!(
            "{}:{} (section \"{}\"): `{}`",
            example.doc, c.line, example.section, c.text
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-e", "-c", &text])
            .current_dir(&work)
            .env("PATH", &path)
            .env("SHOAL_ENDPOINTS", &node.client);
        let out: Output =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cmd, None, CTL_WAIT)))
                .unwrap_or_else(|e| {
                    let why = e
                        .downcast_ref::<String>()
                        .cloned()
                        .unwrap_or_else(|| "it panicked".into());
                    panic!("{place} did not finish: {why}")
                });
        let ran = if text == c.text {
            String::new()
        } else {
            format!(" (run as `{text}`)")
        };
        assert!(
            out.code == 0,
            "{place} exited {}{ran}\n--- stdout ---\n{}--- stderr ---\n{}",
            out.code,
            out.out,
            out.err
        );
        if let Some(want) = &c.prints {
            let last = out.out.trim_end().lines().last().unwrap_or("");
            assert_eq!(
                last, want,
                "{place} printed another last line\n--- stdout ---\n{}",
                out.out
            );
        }
    }
}

/// The workspace's binary dir, then the test's own `PATH`.
fn search_path() -> std::ffi::OsString {
    let mut dirs: Vec<PathBuf> = vec![crate::bins::bin_dir()];
    if let Some(p) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&p));
    }
    std::env::join_paths(dirs).expect("PATH entries without separators")
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# Title\n\n## Quick start\n\n```sh\nunmarked\n```\n\n\
        <!-- doc-test: dev node -->\n```sh\n# a comment line\nshoalctl put a 1   # prints ok\n\n\
        shoalctl get \\\n  a\ncat <<'END'\nx\n\nEND\necho done\n```\n\n### Later\n\n\
        1. Step:\n\n   <!-- doc-test: dev node -->\n   ```sh\n   shoalctl list\n   ```\n";

    #[test]
    fn marked_blocks_only_with_their_lines_sections_and_outputs() {
        let ex = examples_in(DOC, "DOC");
        assert_eq!(ex.len(), 2);
        assert_eq!(ex[0].section, "Quick start");
        let texts: Vec<(usize, &str)> = ex[0]
            .commands
            .iter()
            .map(|c| (c.line, c.text.as_str()))
            .collect();
        assert_eq!(
            texts,
            [
                (12, "shoalctl put a 1   # prints ok"),
                (14, "shoalctl get \\\n  a"),
                (16, "cat <<'END'\nx\n\nEND"),
                (20, "echo done"),
            ]
        );
        assert_eq!(ex[0].commands[0].prints.as_deref(), Some("ok"));
        assert_eq!(ex[0].commands[1].prints, None);
        assert_eq!(ex[1].section, "Later");
        assert_eq!(ex[1].commands[0].text, "shoalctl list");
    }

    #[test]
    fn a_marker_without_a_block_is_refused() {
        let err =
            std::panic::catch_unwind(|| examples_in("<!-- doc-test: dev node -->\ntext\n", "D"))
                .unwrap_err();
        let msg = err.downcast_ref::<String>().expect("a formatted message");
        assert!(msg.contains("D:1"), "{msg}");
    }
}
