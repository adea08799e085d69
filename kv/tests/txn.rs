//! Transactions: every compare kind, both branches, all-or-nothing when an operation is
//! refused, operations that see the ones before them, limits, and the stateless checks a
//! platform runs before proposing.
mod common;

use common::*;
use shoal_kv::*;

const C1: u64 = 11;
const C2: u64 = 22;

fn value_is<'a>(key: &'a str, value: &'a str) -> Compare<'a> {
    Compare::Value {
        key: key.as_bytes(),
        value: value.as_bytes(),
    }
}
fn exists(key: &str) -> Compare<'_> {
    Compare::Exists {
        key: key.as_bytes(),
    }
}
fn absent(key: &str) -> Compare<'_> {
    Compare::Absent {
        key: key.as_bytes(),
    }
}
fn updated(key: &str, cmp: Cmp, index: u64) -> Compare<'_> {
    Compare::UpdateIndex {
        key: key.as_bytes(),
        cmp,
        index,
    }
}

/// A store holding value `a` = `1` and directory `d` of `C1`, and temporary value `t` = `tv`
/// owned by `C2`.
fn value_dir_and_temp() -> Driver {
    let mut d = Driver::new(small());
    d.ok(C1, put("a", "1"));
    d.ok(C1, mkdir("d"));
    d.ok(C2, put_temp("t", "tv", 1000));
    d
}

/// Which branch ran, and what each operation did.
fn ran(r: WriteResult) -> (bool, Vec<TxnEffect>) {
    match r {
        WriteResult::Txn { succeeded, results } => (succeeded, results.into_iter().collect()),
        other => panic!("expected a transaction that ran, got {other:?}"),
    }
}

/// Whether the compares hold, judged by which branch a transaction with one marker put in
/// each branch runs.
fn holds(d: &mut Driver, c: Compare<'_>) -> bool {
    let (ok, _) = ran(d
        .run(C1, txn(&[c], &[tput("m", "s")], &[tput("m", "f")]))
        .result);
    assert_eq!(d.value("m").unwrap(), if ok { b"s" } else { b"f" });
    ok
}

#[test]
fn every_compare_kind() {
    let mut d = value_dir_and_temp();
    // Value: equal only on a plain or temporary value holding exactly these bytes.
    assert!(holds(&mut d, value_is("a", "1")));
    assert!(!holds(&mut d, value_is("a", "2")));
    assert!(!holds(&mut d, value_is("nope", "")));
    assert!(!holds(&mut d, value_is("d", "")));
    assert!(holds(&mut d, value_is("t", "tv")));
    // Exists / Absent: any kind, the root included.
    assert!(holds(&mut d, exists("d")) && holds(&mut d, exists("")));
    assert!(!holds(&mut d, exists("nope")));
    assert!(holds(&mut d, absent("nope")) && !holds(&mut d, absent("a")));
    // UpdateIndex: `a` was last written at index 1; a missing key counts as 0.
    assert_eq!(d.kv.get(b"a").unwrap().update_index, 1);
    assert!(holds(&mut d, updated("a", Cmp::Equal, 1)));
    assert!(!holds(&mut d, updated("a", Cmp::Equal, 2)));
    assert!(holds(&mut d, updated("a", Cmp::NotEqual, 2)));
    assert!(holds(&mut d, updated("a", Cmp::Less, 2)));
    assert!(!holds(&mut d, updated("a", Cmp::Less, 1)));
    assert!(holds(&mut d, updated("a", Cmp::Greater, 0)));
    assert!(holds(&mut d, updated("nope", Cmp::Equal, 0)));
    // A compare may read the reserved subtree (it only reads).
    assert!(holds(&mut d, absent("__shoal.members.9")));
    // All must hold: one false compare picks the failure branch.
    let (ok, _) = ran(d
        .run(C1, txn(&[exists("a"), absent("a")], &[tput("m", "s")], &[]))
        .result);
    assert!(!ok);
}

#[test]
fn compares_read_the_state_before_the_transaction() {
    let mut d = Driver::new(small());
    // The success branch creates `a`, but the compare saw it absent: still the success branch.
    let (ok, effects) = ran(d
        .run(
            C1,
            txn(&[absent("a")], &[tput("a", "1"), tput("b", "2")], &[]),
        )
        .result);
    assert!(ok);
    assert_eq!(effects, [TxnEffect::Created, TxnEffect::Created]);
    // Both writes carry the transaction's index.
    let index = d.index;
    for key in [&b"a"[..], b"b"] {
        assert_eq!(d.kv.get(key).unwrap().update_index, index);
    }
    // Watchers see both changes at that one index.
    let seen: Vec<_> = events(&d.kv, index, "")
        .into_iter()
        .map(|e| (e.0, e.2))
        .collect();
    assert_eq!(seen, [(index, "a".into()), (index, "b".into())]);
}

#[test]
fn both_branches_and_their_results() {
    let mut d = Driver::new(small());
    d.ok(C1, put("a", "1"));
    d.ok(C1, mkdir("d"));
    let success = [tput("a", "2"), tmkdir("d"), tmkdir("e"), tremove("a")];
    let failure = [tput("x", "f")];
    let (ok, effects) = ran(d
        .run(C1, txn(&[value_is("a", "1")], &success, &failure))
        .result);
    assert!(ok);
    assert_eq!(
        effects,
        [
            TxnEffect::Updated,
            TxnEffect::Unchanged,
            TxnEffect::Created,
            TxnEffect::Removed
        ]
    );
    assert_eq!(d.value("a"), None);
    assert_eq!(d.kv.get(b"e").unwrap().kind, NodeKind::Dir);
    assert_eq!(d.value("x"), None, "the failure branch did not run");
    // Same transaction again: `a` is gone, so the failure branch runs.
    let (ok, effects) = ran(d
        .run(C1, txn(&[value_is("a", "1")], &success, &failure))
        .result);
    assert!(!ok);
    assert_eq!(effects, [TxnEffect::Created]);
    assert_eq!(d.value("x").unwrap(), b"f");
    assert_eq!(d.kv.get(b"e").unwrap().kind, NodeKind::Dir);
    // An empty branch runs and changes nothing.
    let before = d.kv.node_count();
    let (ok, effects) = ran(d
        .run(C1, txn(&[absent("x")], &[tput("y", "1")], &[]))
        .result);
    assert!(!ok && effects.is_empty());
    assert_eq!(d.kv.node_count(), before);
}

#[test]
fn a_refused_operation_aborts_the_whole_transaction() {
    let mut d = value_dir_and_temp();
    let before = contents(&d.kv);
    let nodes = d.kv.node_count();
    let cases: [(&[TxnOp<'_>], u32, KvError); 8] = [
        (
            &[tput("a", "2"), tput("b", "2"), tremove("nope")],
            2,
            KvError::NotFound,
        ),
        (&[tput("a", "2"), tput("d", "x")], 1, KvError::IsDirectory),
        (
            &[tput("a", "2"), tput("q.r", "x")],
            1,
            KvError::ParentNotFound,
        ),
        (
            &[tput("a", "2"), tput("a.r", "x")],
            1,
            KvError::ParentNotDir,
        ),
        (&[tput("d.x", "2"), tremove("d")], 1, KvError::DirNotEmpty),
        (&[tput("b", "2"), tremove("t")], 1, KvError::NotOwner),
        (&[tmkdir("a")], 0, KvError::AlreadyExists),
        (&[tput("b", "1"), ttemp("a", "x", 100)], 1, KvError::NotTemp),
    ];
    for (ops, at, error) in cases {
        let out = d.run(C1, txn(&[], ops, &[])).result;
        assert_eq!(
            out,
            WriteResult::TxnAborted {
                succeeded: true,
                op: at,
                error
            },
            "{ops:?}"
        );
        assert_eq!(d.kv.node_count(), nodes, "{ops:?} left nodes behind");
        assert_eq!(d.value("a").unwrap(), b"1", "{ops:?} changed `a`");
    }
    // The tree is exactly the one before.
    assert_eq!(contents(&d.kv), before);
    // The failure branch aborts the same way, and says it was the chosen one.
    let out = d
        .run(
            C1,
            txn(&[absent("a")], &[], &[tput("b", "1"), tremove("zz")]),
        )
        .result;
    assert_eq!(
        out,
        WriteResult::TxnAborted {
            succeeded: false,
            op: 1,
            error: KvError::NotFound
        }
    );
    assert_eq!(contents(&d.kv), before);
}

#[test]
fn operations_see_the_ones_before_them() {
    let mut d = Driver::new(KvLimits {
        max_txn_ops: 8,
        max_leases: 2,
        ..small()
    });
    // A directory made earlier in the branch holds later puts; a removed key can come back.
    let ops = [
        tmkdir("d"),
        tput("d.x", "1"),
        tput("k", "1"),
        tremove("k"),
        tput("k", "2"),
    ];
    let (_, effects) = ran(d.run(C1, txn(&[], &ops, &[])).result);
    use TxnEffect::*;
    assert_eq!(effects, [Created, Created, Created, Removed, Created]);
    assert_eq!(d.value("d.x").unwrap(), b"1");
    assert_eq!(d.value("k").unwrap(), b"2");
    // Emptying a directory, then removing it, in one branch.
    let (_, effects) = ran(d
        .run(C1, txn(&[], &[tremove("d.x"), tremove("d")], &[]))
        .result);
    assert_eq!(effects, [Removed, Removed]);
    assert!(d.kv.get(b"d").is_err());
    // A temporary value written by the branch belongs to the session: it may replace it.
    let (_, effects) = ran(d
        .run(C1, txn(&[], &[ttemp("t", "1", 100), tput("t", "2")], &[]))
        .result);
    assert_eq!(effects, [Created, Updated]);
    let t = d.kv.get(b"t").unwrap();
    assert_eq!(
        (t.kind, t.value, t.owner),
        (NodeKind::TempValue, &b"2"[..], C1)
    );
    // ... and another session may not.
    let out = d.run(C2, txn(&[], &[tput("t", "3")], &[])).result;
    assert!(matches!(
        out,
        WriteResult::TxnAborted {
            error: KvError::NotOwner,
            ..
        }
    ));
    // A removed directory is gone for a later put under it.
    d.ok(C1, mkdir("e"));
    let out = d
        .run(C1, txn(&[], &[tremove("e"), tput("e.x", "1")], &[]))
        .result;
    assert!(matches!(
        out,
        WriteResult::TxnAborted {
            op: 1,
            error: KvError::ParentNotFound,
            ..
        }
    ));
    assert_eq!(d.kv.get(b"e").unwrap().kind, NodeKind::Dir);
}

#[test]
fn node_and_arena_budgets_count_the_whole_branch() {
    let mut limits = small();
    limits.max_nodes = 4; // the root and three
    let mut d = Driver::new(limits);
    d.ok(C1, put("a", "1"));
    // Two more fit, a third does not: nothing of the three is applied.
    let out = d
        .run(
            C1,
            txn(&[], &[tput("b", "1"), tput("c", "1"), tput("e", "1")], &[]),
        )
        .result;
    assert!(matches!(
        out,
        WriteResult::TxnAborted {
            op: 2,
            error: KvError::TooManyNodes,
            ..
        }
    ));
    assert_eq!(d.kv.node_count(), 2);
    // A removal earlier in the branch makes room, as it would one write at a time.
    let (_, effects) = ran(d
        .run(
            C1,
            txn(
                &[],
                &[tremove("a"), tput("b", "1"), tput("c", "1"), tput("e", "1")],
                &[],
            ),
        )
        .result);
    assert_eq!(effects.len(), 4);
    assert_eq!(d.kv.node_count(), 4);

    let mut limits = small();
    limits.arena_bytes = 160;
    let mut d = Driver::new(limits);
    let big = "v".repeat(60);
    d.ok(C1, put("a", &big)); // 9 + 68 = 77 bytes
    let out = d.run(C1, txn(&[], &[tput("b", &big)], &[])).result; // 77 more: 154, fits
    assert!(matches!(out, WriteResult::Txn { .. }));
    let out = d
        .run(C1, txn(&[], &[tput("a", "1"), tput("c", &big)], &[]))
        .result;
    // Shrinking `a` first frees 59 bytes: 154 - 59 + 77 = 172 > 160 still.
    assert!(matches!(
        out,
        WriteResult::TxnAborted {
            op: 1,
            error: KvError::ArenaFull,
            ..
        }
    ));
    assert_eq!(d.value("a").unwrap(), big.as_bytes());
    let (_, effects) = ran(d
        .run(C1, txn(&[], &[tremove("a"), tput("c", &big)], &[]))
        .result);
    assert_eq!(effects, [TxnEffect::Removed, TxnEffect::Created]);
}

#[test]
fn limits_and_stateless_refusals() {
    let mut d = Driver::new(small()); // max_txn_ops 4
    let five = [tput("a", "1"); 5];
    let four = [tput("a", "1"); 4];
    let cmp5 = [absent("a"); 5];
    assert_eq!(d.err(C1, txn(&[], &five, &[])), KvError::TxnTooLarge);
    assert_eq!(d.err(C1, txn(&[], &[], &five)), KvError::TxnTooLarge);
    assert_eq!(d.err(C1, txn(&cmp5, &four, &[])), KvError::TxnTooLarge);
    assert!(matches!(
        d.ok(C1, txn(&[], &four, &four)),
        WriteResult::Txn { .. }
    ));
    // An invalid operation refuses the whole transaction, even in the branch that would not
    // run, and before any compare is read.
    let long = "v".repeat(65);
    let (big, bad, reserved) = (
        [tput("a", &long)],
        [tput("a..b", "1")],
        [tput("__shoal.x", "1")],
    );
    let (root, zero, bad_cmp) = ([tremove("__shoal")], [ttemp("t", "1", 0)], [exists("a..b")]);
    let cases: [(Op<'_>, KvError); 6] = [
        (txn(&[], &[], &big), KvError::ValueTooLarge),
        (txn(&[], &bad, &[]), KvError::EmptySegment),
        (txn(&[], &reserved, &[]), KvError::Reserved),
        (txn(&[], &root, &[]), KvError::Reserved),
        (txn(&[], &zero, &[]), KvError::InvalidTtl),
        (txn(&bad_cmp, &[], &[]), KvError::EmptySegment),
    ];
    for (op, error) in cases {
        assert_eq!(d.err(C1, op), error, "{op:?}");
        let refusal = check_write(&op, C1, d.kv.limits()).unwrap_err();
        assert_eq!(refusal.error, error);
        assert!(refusal.item.is_some(), "{op:?}: the item is named");
    }
    // A temporary put needs a session.
    assert_eq!(
        d.err(0, txn(&[], &[ttemp("t", "1", 10)], &[])),
        KvError::SessionRequired
    );
    let refusal = check_write(
        &txn(&[], &[tput("a", "1"), tput("a", &long)], &[]),
        C1,
        d.kv.limits(),
    );
    assert_eq!(
        refusal,
        Err(Refusal {
            error: KvError::ValueTooLarge,
            item: Some((TxnPart::Success, 1))
        })
    );
}

#[test]
fn a_retried_transaction_gets_its_first_answer() {
    let mut d = Driver::new(small());
    let ops = [tput("a", "1")];
    let first = d.run(C1, txn(&[absent("a")], &ops, &[])).result;
    assert!(matches!(
        first,
        WriteResult::Txn {
            succeeded: true,
            ..
        }
    ));
    let seq = d.seqs[&C1];
    let retry = d.raw(Command {
        client_id: C1,
        seq,
        time_ms: d.time_ms,
        op: txn(&[absent("a")], &ops, &[]),
    });
    assert!(retry.deduplicated);
    assert_eq!(
        retry.result, first,
        "not re-evaluated against the new state"
    );
    // The answer survives a snapshot of the dedup table.
    let snap = snapshot(&d.kv);
    let mut other = Driver::new(small());
    shoal_core::io::StateMachine::restore(&mut other.kv, d.index, &mut SliceReader(&snap)).unwrap();
    assert_eq!(other.kv.digest(), d.kv.digest());
}

#[test]
fn transactions_round_trip_through_the_codec() {
    let cmps = [
        value_is("a", "1"),
        updated("b", Cmp::Greater, 7),
        absent("c"),
    ];
    let success = [tput("a", "2"), ttemp("t", "x", 50)];
    let failure = [tremove("a"), tmkdir("d")];
    let cmd = Command {
        client_id: 3,
        seq: 4,
        time_ms: 5,
        op: txn(&cmps, &success, &failure),
    };
    let bytes = encode(&cmd);
    let back = Command::decode(&bytes).unwrap();
    let Op::Txn(t) = back.op else {
        panic!("decoded {back:?}")
    };
    assert_eq!(t.compares.iter().collect::<Vec<_>>(), cmps);
    assert_eq!(t.success.iter().collect::<Vec<_>>(), success);
    assert_eq!(t.failure.iter().collect::<Vec<_>>(), failure);
    // Truncated or padded items do not decode.
    assert_eq!(
        Command::decode(&bytes[..bytes.len() - 1]),
        Err(CodecError::Malformed)
    );
    let mut padded = bytes.clone();
    padded.push(0);
    assert_eq!(Command::decode(&padded), Err(CodecError::Malformed));
}

#[test]
fn refusals_name_the_limit() {
    let l = small();
    let text = KvError::ValueTooLarge.explain(&l).to_string();
    assert!(text.contains("max_value_bytes is 64 bytes"), "{text}");
    let text = KvError::InvalidTtl.explain(&l).to_string();
    assert!(text.contains("max_ttl_ms is 1000000 ms"), "{text}");
    let text = KvError::TxnTooLarge.explain(&l).to_string();
    assert!(text.contains("max_txn_ops is 4"), "{text}");
    assert_eq!(
        KvError::NotFound.explain(&l).to_string(),
        KvError::NotFound.message()
    );
}

/// What a store holds, independent of the indices writes carried: key, kind, value, owner.
fn contents(kv: &TestKv) -> Vec<(Vec<u8>, u8, Vec<u8>, u64)> {
    let mut out = Vec::new();
    let mut dirs = vec![Vec::new()];
    while let Some(dir) = dirs.pop() {
        kv.list(&dir, |v| {
            if v.kind.is_dir() {
                dirs.push(v.key.to_vec());
            }
            out.push((v.key.to_vec(), v.kind as u8, v.value.to_vec(), v.owner));
        })
        .unwrap();
    }
    out.sort();
    out
}

/// The plan agrees with applying the operations one write at a time: a branch runs whole
/// exactly when every one of its operations would succeed in turn, it leaves the same tree,
/// and an aborted one names the first operation that would fail, with that failure.
#[test]
fn the_plan_agrees_with_one_write_at_a_time() {
    let keys = ["a", "b", "d", "d.x", "d.y", "e", "e.z"];
    let mut limits = small();
    limits.max_nodes = 6;
    limits.arena_bytes = 200;
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    let values = ["", "1", "22", &"v".repeat(40)];
    let (mut whole, mut aborted) = (0, 0);
    for _ in 0..400 {
        // The same starting state on two stores.
        let mut a = Driver::new(limits);
        let mut b = Driver::new(limits);
        for _ in 0..next(6) {
            let key = keys[next(keys.len())];
            let op = match next(3) {
                0 => put(key, values[next(values.len())]),
                1 => mkdir(key),
                _ => put_temp(key, "t", 1000),
            };
            let client = [C1, C2][next(2)];
            a.run(client, op);
            b.run(client, op);
        }
        let ops: Vec<TxnOp<'_>> = (0..1 + next(4))
            .map(|_| {
                let key = keys[next(keys.len())];
                match next(4) {
                    0 => tput(key, values[next(values.len())]),
                    1 => tremove(key),
                    2 => tmkdir(key),
                    _ => ttemp(key, "t", 1000),
                }
            })
            .collect();
        let before = contents(&a.kv);
        let out = a.run(C1, txn(&[], &ops, &[])).result;
        let mut first_failure = None;
        for (i, op) in ops.iter().enumerate() {
            if let Some(e) = b.run(C1, op.as_op()).result.error() {
                first_failure = Some((i as u32, e));
                break;
            }
        }
        match (out, first_failure) {
            (WriteResult::Txn { results, .. }, None) => {
                whole += 1;
                assert_eq!(results.len(), ops.len());
                assert_eq!(contents(&a.kv), contents(&b.kv), "{ops:?}");
            }
            (WriteResult::TxnAborted { op, error, .. }, Some((at, e))) => {
                aborted += 1;
                assert_eq!((op, error), (at, e), "{ops:?}");
                assert_eq!(contents(&a.kv), before, "{ops:?} left a trace");
            }
            (out, failure) => panic!("{ops:?}: transaction {out:?}, one at a time {failure:?}"),
        }
    }
    assert!(
        whole > 50 && aborted > 50,
        "{whole} whole, {aborted} aborted"
    );
}
