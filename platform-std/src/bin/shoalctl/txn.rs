//! `shoalctl txn`: a DtKV transaction from the shell, typed (three blank-line-separated
//! sections: compares, success operations, failure operations) or as a JSON document, and its
//! answer in words or JSON.
//!
//! ```text
//! value app.mode = blue            exists KEY | absent KEY | update-index KEY (=|!=|<|>) N
//!
//! put app.mode green               put KEY VALUE | del KEY | mkdir KEY
//! put-temp app.owner me --ttl 30s  put-temp KEY VALUE --ttl DURATION
//!
//! put app.log "lost the race"
//! ```
//!
//! The same as JSON:
//!
//! ```json
//! {"compares": [{"key": "app.mode", "value": "blue"}],
//!  "success":  [{"op": "put", "key": "app.mode", "value": "green"},
//!               {"op": "put-temp", "key": "app.owner", "value": "me", "ttl": "30s"}],
//!  "failure":  [{"op": "put", "key": "app.log", "value": "lost the race"}]}
//! ```
//! A JSON compare has a `key` and one of `"value": "..."`, `"exists": true|false` or
//! `"update_index": N` with `"cmp": "=" | "!=" | "<" | ">"` (default `=`).

use std::io::BufRead;

use serde::Deserialize;
use serde_json::{json, Value};
use shoal_client::protocol::{Cmp, TxnCompare, TxnEffect, TxnWrite};
use shoal_client::{Client, ClientError, Transaction, TxnOutcome};

use super::answer::{print_answer, print_error, text, Answer};
use super::{parse_duration, Output};

/// Which section of typed input a line belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Compares,
    Success,
    Failure,
}

impl Section {
    /// The prompt shown before the section when typing at a terminal.
    pub fn prompt(self) -> &'static str {
        match self {
            Section::Compares => "compares (value K = V, exists K, absent K, update-index K < N), then a blank line:",
            Section::Success => "success operations (put K V, del K, mkdir K, put-temp K V --ttl D), then a blank line:",
            Section::Failure => "failure operations, then a blank line or end of input:",
        }
    }
}

/// Collects typed lines into a transaction, section by section.
#[derive(Default)]
pub struct Typed {
    txn: Transaction,
    section: usize,
    line_no: usize,
}

impl Typed {
    /// The section the next line goes to, or `None` once all three ended.
    pub fn section(&self) -> Option<Section> {
        [Section::Compares, Section::Success, Section::Failure]
            .get(self.section)
            .copied()
    }

    /// Take one line; a blank line ends the current section, `#` starts a comment line.
    pub fn line(&mut self, line: &str) -> Result<(), String> {
        self.line_no += 1;
        let trimmed = line.trim();
        if trimmed.starts_with('#') {
            return Ok(());
        }
        let Some(section) = self.section() else {
            return if trimmed.is_empty() {
                Ok(())
            } else {
                Err(format!(
                    "line {}: `{trimmed}` comes after the failure section ended; a transaction has three sections",
                    self.line_no
                ))
            };
        };
        if trimmed.is_empty() {
            self.section += 1;
            return Ok(());
        }
        let words = shlex::split(trimmed)
            .ok_or_else(|| format!("line {}: unbalanced quotes in `{trimmed}`", self.line_no))?;
        let at = |e: String| format!("line {}: {e}", self.line_no);
        match section {
            Section::Compares => self.txn.compares.push(parse_compare(&words).map_err(at)?),
            Section::Success => self.txn.success.push(parse_op(&words).map_err(at)?),
            Section::Failure => self.txn.failure.push(parse_op(&words).map_err(at)?),
        }
        Ok(())
    }

    /// The transaction typed so far.
    pub fn finish(self) -> Transaction {
        self.txn
    }
}

fn parse_cmp(s: &str) -> Result<Cmp, String> {
    Ok(match s {
        "=" | "==" => Cmp::Equal,
        "!=" => Cmp::NotEqual,
        "<" => Cmp::Less,
        ">" => Cmp::Greater,
        other => return Err(format!("`{other}` is not a comparison; use =, !=, < or >")),
    })
}

fn parse_compare(words: &[String]) -> Result<TxnCompare, String> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    Ok(match w.as_slice() {
        ["value", key, "=", value] => TxnCompare::value(key, value),
        ["exists", key] => TxnCompare::exists(key),
        ["absent", key] => TxnCompare::absent(key),
        ["update-index", key, cmp, index] => TxnCompare::update_index(
            key,
            parse_cmp(cmp)?,
            index
                .parse()
                .map_err(|_| format!("`{index}` is not a raft index"))?,
        ),
        _ => {
            return Err(format!(
                "`{}` is not a compare; write `value KEY = VALUE`, `exists KEY`, `absent KEY` or \
                 `update-index KEY (=|!=|<|>) INDEX`",
                words.join(" ")
            ))
        }
    })
}

fn parse_op(words: &[String]) -> Result<TxnWrite, String> {
    let w: Vec<&str> = words.iter().map(String::as_str).collect();
    Ok(match w.as_slice() {
        ["put", key, value] => TxnWrite::put(key, value),
        ["del" | "rm" | "remove", key] => TxnWrite::remove(key),
        ["mkdir", key] => TxnWrite::mkdir(key),
        ["put-temp", key, value, "--ttl", ttl] | ["put-temp", key, value, ttl] => {
            TxnWrite::put_temp(key, value, parse_duration(ttl)?)
        }
        _ => {
            return Err(format!(
                "`{}` is not a transaction operation; write `put KEY VALUE`, `del KEY`, \
                 `mkdir KEY` or `put-temp KEY VALUE --ttl DURATION`",
                words.join(" ")
            ))
        }
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonTxn {
    #[serde(default)]
    compares: Vec<JsonCompare>,
    #[serde(default)]
    success: Vec<JsonOp>,
    #[serde(default)]
    failure: Vec<JsonOp>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonCompare {
    key: String,
    value: Option<String>,
    exists: Option<bool>,
    update_index: Option<u64>,
    cmp: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
enum JsonOp {
    Put {
        key: String,
        value: String,
    },
    #[serde(alias = "rm", alias = "remove")]
    Del {
        key: String,
    },
    Mkdir {
        key: String,
    },
    PutTemp {
        key: String,
        value: String,
        ttl: String,
    },
}

/// A transaction from its JSON document.
pub fn from_json(doc: &str) -> Result<Transaction, String> {
    let t: JsonTxn =
        serde_json::from_str(doc).map_err(|e| format!("the transaction JSON is invalid: {e}"))?;
    let mut txn = Transaction::new();
    for (i, c) in t.compares.into_iter().enumerate() {
        let compare = match (c.value, c.exists, c.update_index, c.cmp.as_deref()) {
            (Some(v), None, None, None) => TxnCompare::value(&c.key, v),
            (None, Some(true), None, None) => TxnCompare::exists(&c.key),
            (None, Some(false), None, None) => TxnCompare::absent(&c.key),
            (None, None, Some(index), cmp) => TxnCompare::update_index(
                &c.key,
                parse_cmp(cmp.unwrap_or("=")).map_err(|e| format!("compare {i}: {e}"))?,
                index,
            ),
            _ => {
                return Err(format!(
                    "compare {i} (key `{}`): give exactly one of \"value\", \"exists\" or \
                     \"update_index\" (with an optional \"cmp\")",
                    c.key
                ))
            }
        };
        txn.compares.push(compare);
    }
    let op = |o: JsonOp| -> Result<TxnWrite, String> {
        Ok(match o {
            JsonOp::Put { key, value } => TxnWrite::put(key, value),
            JsonOp::Del { key } => TxnWrite::remove(key),
            JsonOp::Mkdir { key } => TxnWrite::mkdir(key),
            JsonOp::PutTemp { key, value, ttl } => {
                TxnWrite::put_temp(key, value, parse_duration(&ttl)?)
            }
        })
    };
    txn.success = t.success.into_iter().map(op).collect::<Result<_, _>>()?;
    txn.failure = t.failure.into_iter().map(op).collect::<Result<_, _>>()?;
    Ok(txn)
}

fn op_words(op: &TxnWrite) -> (&'static str, &[u8]) {
    match op {
        TxnWrite::Put { key, .. } => ("put", key),
        TxnWrite::Remove { key } => ("del", key),
        TxnWrite::Mkdir { key } => ("mkdir", key),
        TxnWrite::PutTemp { key, .. } => ("put-temp", key),
    }
}

fn effect_word(e: TxnEffect) -> &'static str {
    match e {
        TxnEffect::Created => "created",
        TxnEffect::Updated => "updated",
        TxnEffect::Removed => "removed",
        TxnEffect::Unchanged => "unchanged",
    }
}

/// The answer to an applied transaction: the branch that ran and what each operation did.
pub fn answer(txn: &Transaction, out: &TxnOutcome) -> Answer {
    let (branch, ops) = if out.succeeded {
        ("success", &txn.success)
    } else {
        ("failure", &txn.failure)
    };
    let mut lines = vec![format!("{branch} (index {})", out.index)];
    let mut results = Vec::new();
    for (op, effect) in ops.iter().zip(&out.results) {
        let (name, key) = op_words(op);
        lines.push(format!("{name} {}: {}", text(key), effect_word(*effect)));
        results.push(json!({"op": name, "key": text(key), "result": effect_word(*effect)}));
    }
    Answer::new(
        json!({
            "ok": true,
            "index": out.index,
            "succeeded": out.succeeded,
            "branch": branch,
            "results": Value::Array(results),
        }),
        lines.join("\n"),
    )
}

/// `shoalctl txn`: read the transaction (typed sections on stdin, or JSON from `file`), apply
/// it, and answer; returns the exit code.
pub async fn run(client: &Client, output: Output, file: Option<&str>) -> i32 {
    let read = match file {
        Some(path) => {
            let doc = if path == "-" {
                std::io::read_to_string(std::io::stdin())
            } else {
                std::fs::read_to_string(path)
            };
            doc.map_err(|e| format!("cannot read the transaction from `{path}`: {e}"))
                .and_then(|doc| from_json(&doc))
        }
        None => read_typed(),
    };
    let transaction = match read {
        Ok(t) => t,
        Err(message) => {
            let e = ClientError::BadRequest { message };
            print_error(output, &e);
            return e.exit_code();
        }
    };
    match client.txn(transaction.clone()).await {
        Ok(out) => {
            print_answer(output, &answer(&transaction, &out));
            0
        }
        Err(e) => {
            print_error(output, &e);
            e.exit_code()
        }
    }
}

/// Typed transaction sections from stdin, with a prompt per section at a terminal.
fn read_typed() -> Result<shoal_client::Transaction, String> {
    use std::io::IsTerminal;
    let stdin = std::io::stdin();
    let prompt = stdin.is_terminal();
    let mut typed = Typed::default();
    let mut shown = None;
    let mut lines = stdin.lock().lines();
    while let Some(section) = typed.section() {
        if prompt && shown != Some(section) {
            shown = Some(section);
            eprintln!("{}", section.prompt());
        }
        let Some(line) = lines.next() else { break };
        typed.line(&line.map_err(|e| format!("reading stdin: {e}"))?)?;
    }
    Ok(typed.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(input: &str) -> Result<Transaction, String> {
        let mut t = Typed::default();
        for line in input.lines() {
            t.line(line)?;
        }
        Ok(t.finish())
    }

    #[test]
    fn typed_sections_make_a_transaction() {
        let t = typed(
            "value a = 1\nexists b\nabsent c\nupdate-index d > 7\n\nput a 2\n\
             put-temp t 'x y' --ttl 30s\n\n# a comment\ndel b\nmkdir e\n",
        )
        .unwrap();
        assert_eq!(
            t.compares,
            [
                TxnCompare::value("a", "1"),
                TxnCompare::exists("b"),
                TxnCompare::absent("c"),
                TxnCompare::update_index("d", Cmp::Greater, 7),
            ]
        );
        assert_eq!(
            t.success,
            [
                TxnWrite::put("a", "2"),
                TxnWrite::put_temp("t", "x y", std::time::Duration::from_secs(30)),
            ]
        );
        assert_eq!(t.failure, [TxnWrite::remove("b"), TxnWrite::mkdir("e")]);
    }

    #[test]
    fn typed_mistakes_name_the_line() {
        let e = typed("value a 1\n").unwrap_err();
        assert!(
            e.starts_with("line 1:") && e.contains("value KEY = VALUE"),
            "{e}"
        );
        let e = typed("\nput a\n").unwrap_err();
        assert!(
            e.starts_with("line 2:") && e.contains("put KEY VALUE"),
            "{e}"
        );
        let e = typed("update-index a ~ 3\n").unwrap_err();
        assert!(e.contains("not a comparison"), "{e}");
        let e = typed("\n\n\nput a 1\n").unwrap_err();
        assert!(e.contains("three sections"), "{e}");
    }

    #[test]
    fn json_makes_the_same_transaction() {
        let t = from_json(
            r#"{"compares": [{"key": "a", "value": "1"}, {"key": "b", "exists": true},
                             {"key": "c", "exists": false},
                             {"key": "d", "update_index": 7, "cmp": ">"}],
                "success": [{"op": "put", "key": "a", "value": "2"},
                            {"op": "put-temp", "key": "t", "value": "x y", "ttl": "30s"}],
                "failure": [{"op": "del", "key": "b"}, {"op": "mkdir", "key": "e"}]}"#,
        )
        .unwrap();
        let typed = typed(
            "value a = 1\nexists b\nabsent c\nupdate-index d > 7\n\nput a 2\n\
             put-temp t 'x y' --ttl 30s\n\ndel b\nmkdir e\n",
        )
        .unwrap();
        assert_eq!(t, typed);
        let e =
            from_json(r#"{"compares": [{"key": "a", "value": "1", "exists": true}]}"#).unwrap_err();
        assert!(e.contains("exactly one"), "{e}");
        let e = from_json(r#"{"success": [{"op": "frob", "key": "a"}]}"#).unwrap_err();
        assert!(e.contains("invalid"), "{e}");
    }
}
