//! What shoalctl prints: an [`Answer`] (JSON for `-o json`, words for people, an exit code),
//! errors in the same two shapes, and the JSON of nodes and values every command family shares.

use std::io::Write;

use base64::Engine;
use serde_json::{json, Value};
use shoal_client::{ClientError, NodeInfo};

use super::Output;

/// An answer: JSON for `-o json`, text for people, and the exit code (0 unless the answer
/// itself is a failure, as an unhealthy node's health is).
pub struct Answer {
    /// The answer for `-o json`.
    pub json: Value,
    /// The answer for people (nothing printed when empty).
    pub text: String,
    /// The exit code.
    pub code: i32,
}

impl Answer {
    /// An answer that succeeded (exit 0).
    pub fn new(json: Value, text: impl Into<String>) -> Answer {
        Answer {
            json,
            text: text.into(),
            code: 0,
        }
    }

    /// The same answer with exit code `code`.
    pub fn with_code(self, code: i32) -> Answer {
        Answer { code, ..self }
    }
}

/// Print `e` as the output format asks and leave with its exit code.
pub fn exit_with_error(output: Output, e: &ClientError) -> ! {
    print_error(output, e);
    std::process::exit(e.exit_code());
}

/// Print `e`: its JSON on stdout for `-o json` (a script reads stdout), else words on stderr.
pub fn print_error(output: Output, e: &ClientError) {
    match output {
        Output::Json => {
            say(error_json(e));
        }
        Output::Text => eprintln!("shoalctl: {e}"),
    }
}

/// Print one line on stdout; false when the reader has gone (`shoalctl member list | head -1`).
/// Then there is nobody left to tell: the output is dropped quietly and the exit code stays
/// what the command's outcome makes it (a batch stops, as a shell pipeline's writer would).
pub fn say(line: impl std::fmt::Display) -> bool {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{line}").and_then(|()| out.flush()) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => false,
        Err(e) => {
            eprintln!("shoalctl: cannot write the output: {e}");
            std::process::exit(1);
        }
    }
}

/// An error as JSON: its class, exit code, name and message, and what the cluster said.
pub fn error_json(e: &ClientError) -> Value {
    let mut v = json!({
        "ok": false,
        "class": e.class().as_str(),
        "exit": e.exit_code(),
        "error": e.name(),
        "message": e.to_string(),
    });
    if let Some(kv) = e.kv() {
        v["kv_code"] = json!(kv.code());
    }
    if let ClientError::TxnAborted { succeeded, op, .. } = e {
        v["branch"] = json!(if *succeeded { "success" } else { "failure" });
        v["op"] = json!(op);
    }
    v
}

/// Print `answer` as the output format asks.
pub fn print_answer(output: Output, answer: &Answer) {
    match output {
        Output::Json => {
            say(&answer.json);
        }
        Output::Text => {
            if !answer.text.is_empty() {
                say(&answer.text);
            }
        }
    }
}

/// Key or value bytes for people (invalid UTF-8 shown replaced).
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A value for JSON: UTF-8 text when valid, else base64.
pub fn value_json(bytes: &[u8]) -> (Value, &'static str) {
    match std::str::from_utf8(bytes) {
        Ok(s) => (json!(s), "utf8"),
        Err(_) => (
            json!(base64::engine::general_purpose::STANDARD.encode(bytes)),
            "base64",
        ),
    }
}

/// A node as JSON, its value as [`value_json`] writes it.
pub fn node_json(n: &NodeInfo) -> Value {
    let (value, encoding) = value_json(&n.value);
    json!({
        "key": text(&n.key),
        "kind": format!("{:?}", n.kind),
        "value": value,
        "value_encoding": encoding,
        "create_index": n.create_index,
        "update_index": n.update_index,
        "owner": n.owner,
        "deadline_ms": n.deadline_ms,
        "fence": n.fence,
        "count": n.count,
    })
}

/// The answer to a write: the raft index it was committed at.
pub fn written(index: u64) -> Answer {
    Answer::new(
        json!({"ok": true, "index": index}),
        format!("ok (index {index})"),
    )
}

/// A list of names (users, roles), one a line.
pub fn names_answer(what: &str, names: Vec<String>) -> Answer {
    let t = names.join("\n");
    Answer::new(json!({"ok": true, what: names}), t)
}
