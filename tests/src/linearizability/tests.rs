//! The checker on small histories reasoned out by hand, on a search that runs out of budget,
//! and on random executions: real ones (always linearizable) and corrupted ones (mostly caught).

use super::*;
use shoal_core::rng::Rng;

type RegOp = Operation<u64, RegisterOp, RegisterRet>;

/// `client`'s `o` on `key`, invoked at `invoke` and answered `r` at `ret`.
fn answered<K, O, R>(client: u64, key: K, o: O, invoke: u64, ret: u64, r: R) -> Operation<K, O, R> {
    Operation {
        client,
        key,
        op: o,
        invoke,
        response: Some((ret, r)),
    }
}
fn op(client: u64, o: RegisterOp, invoke: u64, ret: u64, r: RegisterRet) -> RegOp {
    answered(client, 0, o, invoke, ret, r)
}
fn lost(client: u64, o: RegisterOp, invoke: u64) -> RegOp {
    Operation {
        client,
        key: 0,
        op: o,
        invoke,
        response: None,
    }
}
fn w(client: u64, v: u64, a: u64, b: u64) -> RegOp {
    op(client, RegisterOp::Write(v), a, b, RegisterRet::Written)
}
fn r(client: u64, v: Option<u64>, a: u64, b: u64) -> RegOp {
    op(client, RegisterOp::Read, a, b, RegisterRet::Value(v))
}
/// `h` checked against a fresh `M` within the default budget.
fn checked<M: Model + Default, K: Debug>(h: &[Operation<K, M::Op, M::Ret>]) -> Outcome {
    check(&M::default(), h, DEFAULT_STEP_BUDGET)
}
fn reg(h: &[RegOp]) -> Outcome {
    checked::<Register, _>(h)
}
fn bad(o: &Outcome) -> bool {
    matches!(o, Outcome::NotLinearizable(_))
}

#[test]
fn empty_and_sequential_histories() {
    assert!(reg(&[]).is_linearizable());
    assert!(reg(&[r(1, None, 0, 1), w(1, 5, 2, 3), r(2, Some(5), 4, 5)]).is_linearizable());
}

#[test]
fn concurrent_write_may_or_may_not_be_seen() {
    // The read overlaps the write: both answers are fine.
    assert!(reg(&[w(1, 1, 0, 10), r(2, Some(1), 5, 6)]).is_linearizable());
    assert!(reg(&[w(1, 1, 0, 10), r(2, None, 5, 6)]).is_linearizable());
    // Touching intervals count as concurrent.
    assert!(reg(&[w(1, 1, 0, 10), r(2, None, 10, 12)]).is_linearizable());
}

#[test]
fn stale_read_is_caught() {
    let o = reg(&[w(1, 1, 0, 10), w(1, 2, 20, 30), r(2, Some(1), 40, 50)]);
    let Outcome::NotLinearizable(v) = &o else {
        panic!("{o:?}")
    };
    assert_eq!(v.ops_on_key, 3);
    assert!(v.stuck_on.contains("Read"), "{v}");
}

#[test]
fn lost_write_is_caught() {
    assert!(bad(&reg(&[w(1, 1, 0, 10), r(2, None, 20, 30)])));
}

#[test]
fn read_of_a_never_written_value_is_caught() {
    assert!(bad(&reg(&[
        w(1, 1, 0, 10),
        w(2, 2, 0, 10),
        r(3, Some(7), 0, 20)
    ])));
}

#[test]
fn concurrent_writes_seen_in_an_impossible_order_are_caught() {
    // Either order of the two writes is fine, but readers cannot see 1, then 2, then 1.
    let base = [w(1, 1, 0, 100), w(2, 2, 0, 100)];
    let mut h = base.to_vec();
    h.extend([r(3, Some(1), 10, 20), r(4, Some(2), 30, 40)]);
    assert!(reg(&h).is_linearizable());
    h.push(r(5, Some(1), 50, 60));
    assert!(bad(&reg(&h)));
    // Also while the writes are still running: two readers see them in opposite orders.
    let h2 = [
        w(1, 1, 0, 100),
        w(2, 2, 0, 100),
        r(3, Some(1), 10, 20),
        r(3, Some(2), 30, 40),
        r(4, Some(2), 10, 20),
        r(4, Some(1), 30, 40),
    ];
    assert!(bad(&reg(&h2)));
}

#[test]
fn compare_and_set() {
    let cas = |c, e, n, a, b, ok| {
        op(
            c,
            RegisterOp::Cas { expect: e, new: n },
            a,
            b,
            RegisterRet::Swapped(ok),
        )
    };
    // Two concurrent CAS from the same expected value: only one may win.
    assert!(reg(&[
        w(1, 0, 0, 1),
        cas(2, Some(0), 5, 2, 10, true),
        cas(3, Some(0), 6, 2, 10, false)
    ])
    .is_linearizable());
    assert!(bad(&reg(&[
        w(1, 0, 0, 1),
        cas(2, Some(0), 5, 2, 10, true),
        cas(3, Some(0), 6, 2, 10, true)
    ])));
    assert!(
        bad(&reg(&[cas(2, Some(0), 5, 2, 10, true)])),
        "expects a value never written"
    );
}

#[test]
fn lost_answers_may_take_effect_late_or_never() {
    // Took effect before the read.
    assert!(reg(&[lost(1, RegisterOp::Write(1), 5), r(2, Some(1), 100, 110)]).is_linearizable());
    // Never took effect (or not yet).
    assert!(reg(&[lost(1, RegisterOp::Write(1), 5), r(2, None, 100, 110)]).is_linearizable());
    // Seen, then unseen: a lost write cannot be undone.
    assert!(bad(&reg(&[
        lost(1, RegisterOp::Write(1), 5),
        r(2, Some(1), 100, 110),
        r(2, None, 120, 130)
    ])));
    // It cannot take effect before it was invoked.
    assert!(bad(&reg(&[
        r(2, Some(1), 0, 4),
        lost(1, RegisterOp::Write(1), 5)
    ])));
    // A lost CAS may have won.
    let lost_cas = lost(
        1,
        RegisterOp::Cas {
            expect: Some(0),
            new: 9,
        },
        20,
    );
    assert!(reg(&[w(1, 0, 0, 10), lost_cas.clone(), r(2, Some(9), 100, 110)]).is_linearizable());
    assert!(reg(&[w(1, 0, 0, 10), lost_cas, r(2, Some(0), 100, 110)]).is_linearizable());
}

#[test]
fn per_key_partitioning_finds_the_bad_key() {
    let mut h = vec![w(1, 1, 0, 10), r(2, Some(1), 20, 30)];
    let mut k7 = vec![w(1, 1, 0, 10), w(1, 2, 20, 30), r(2, Some(1), 40, 50)];
    for o in &mut k7 {
        o.key = 7;
    }
    h.extend(k7.iter().cloned());
    let o = check_per_key(&h, |_| Register::default(), DEFAULT_STEP_BUDGET);
    let Outcome::NotLinearizable(v) = o else {
        panic!("{o:?}")
    };
    assert_eq!(v.key, "7");
    // Without the partition, values of different keys would collide.
    h.truncate(2);
    assert!(check_per_key(&h, |_| Register::default(), DEFAULT_STEP_BUDGET).is_linearizable());
}

#[test]
fn budget_exhaustion_is_unknown_not_a_violation() {
    // Many concurrent writes and a final impossible read: the search must try many orders.
    let mut h: Vec<RegOp> = (0..14).map(|i| w(i, i, 0, 100)).collect();
    h.push(r(99, Some(1000), 200, 210));
    match check(&Register::default(), &h, 50) {
        Outcome::Unknown { steps, .. } => assert!(steps > 50),
        o => panic!("{o:?}"),
    }
    assert!(
        bad(&check(&Register::default(), &h, DEFAULT_STEP_BUDGET)),
        "memoization keeps it tractable"
    );
}

#[test]
fn counter_model() {
    let add = |c, n, a, b| answered(c, (), CounterOp::Add(n), a, b, CounterRet::Added);
    let read = |c, n, a, b| answered(c, (), CounterOp::Read, a, b, CounterRet::Total(n));
    let ok = [
        add(1, 1, 0, 10),
        add(2, 2, 0, 10),
        read(3, 1, 0, 10),
        read(3, 3, 20, 30),
    ];
    assert!(checked::<Counter, _>(&ok).is_linearizable());
    let lost_add = [add(1, 1, 0, 10), add(2, 2, 0, 10), read(3, 2, 20, 30)];
    assert!(bad(&checked::<Counter, _>(&lost_add)));
}

#[test]
fn append_model_pins_the_order() {
    let app = |c, x, a, b| answered(c, (), AppendOp::Append(x), a, b, AppendRet::Appended);
    let read = |c, v: Vec<u64>, a, b| answered(c, (), AppendOp::Read, a, b, AppendRet::Items(v));
    let ok = [
        app(1, 1, 0, 10),
        app(2, 2, 0, 10),
        read(3, vec![2, 1], 20, 30),
    ];
    assert!(checked::<AppendList, _>(&ok).is_linearizable());
    let reordered = [
        app(1, 1, 0, 10),
        app(2, 2, 20, 30),
        read(3, vec![2, 1], 40, 50),
    ];
    assert!(bad(&checked::<AppendList, _>(&reordered)));
}

#[test]
fn kv_key_model_fits_the_trait() {
    let o = |c, op, a, b, r| answered(c, "app.x", op, a, b, r);
    let h = [
        o(1, KvOp::Put(b"a".to_vec()), 0, 10, KvRet::Done),
        o(
            2,
            KvOp::Cas {
                expect: Some(b"a".to_vec()),
                new: None,
            },
            20,
            30,
            KvRet::Swapped(true),
        ),
        o(3, KvOp::Remove, 40, 50, KvRet::Removed(false)),
        o(3, KvOp::Get, 60, 70, KvRet::Value(None)),
    ];
    assert!(check_per_key(&h, |_| KvKey::default(), DEFAULT_STEP_BUDGET).is_linearizable());
    let mut bad_h = h.to_vec();
    bad_h[3].response = Some((70, KvRet::Value(Some(b"a".to_vec()))));
    assert!(bad(&check_per_key(
        &bad_h,
        |_| KvKey::default(),
        DEFAULT_STEP_BUDGET
    )));
}

#[test]
fn transactions_over_several_keys_are_all_or_nothing() {
    let o = |c, op, a, b, r| answered(c, "pair", op, a, b, r);
    let v = |s: &str| Some(s.as_bytes().to_vec());
    let both = |x: &str| KvOp::Txn {
        compares: vec![(0, TxnCond::Absent)],
        success: vec![(0, v(x)), (1, v(x))],
        failure: vec![(1, None), (0, v(x))],
    };
    let ran = |succeeded, aborted| KvRet::Txn { succeeded, aborted };
    let h = [
        o(1, both("a"), 0, 10, ran(true, false)),
        o(
            2,
            KvOp::ReadAll,
            20,
            30,
            KvRet::Values(vec![v("a"), v("a")]),
        ),
        // The compare fails; the failure branch removes key 1, then writes key 0.
        o(1, both("b"), 40, 50, ran(false, false)),
        o(2, KvOp::ReadAll, 60, 70, KvRet::Values(vec![v("b"), None])),
        // Again: key 1 is gone, so the remove aborts the branch and nothing changes.
        o(1, both("c"), 80, 90, ran(false, true)),
        o(
            2,
            KvOp::ReadAll,
            100,
            110,
            KvRet::Values(vec![v("b"), None]),
        ),
    ];
    let init = |_: &&str| KvKey::object(2);
    assert!(check_per_key(&h, init, DEFAULT_STEP_BUDGET).is_linearizable());
    // Half of the first transaction seen: no legal order.
    let mut half = h.to_vec();
    half[1].response = Some((30, KvRet::Values(vec![v("a"), None])));
    assert!(bad(&check_per_key(&half, init, DEFAULT_STEP_BUDGET)));
    // An aborted branch that left its first write behind: no legal order either.
    let mut partial = h.to_vec();
    partial[5].response = Some((110, KvRet::Values(vec![v("b"), None])));
    partial[4].op = KvOp::Txn {
        compares: vec![],
        success: vec![(0, v("c")), (1, None)],
        failure: vec![],
    };
    partial[4].response = Some((90, ran(true, true)));
    assert!(check_per_key(&partial, init, DEFAULT_STEP_BUDGET).is_linearizable());
    partial[5].response = Some((110, KvRet::Values(vec![v("c"), None])));
    assert!(bad(&check_per_key(&partial, init, DEFAULT_STEP_BUDGET)));
}

/// A history produced by a real sequential execution: each operation takes effect at a
/// random point inside its interval, in that order, so the history is linearizable by
/// construction. Some answers are lost; a lost operation may or may not have taken effect.
fn generated_history(seed: u64, n_ops: usize, n_keys: u64) -> Vec<RegOp> {
    let mut rng = Rng::new(seed);
    struct Planned {
        key: u64,
        client: u64,
        op: RegisterOp,
        invoke: u64,
        ret: u64,
        point: u64,
        lost: bool,
        applied: bool,
    }
    let mut plan: Vec<Planned> = (0..n_ops)
        .map(|i| {
            let invoke = rng.range(0, 2_000);
            let ret = invoke + rng.range(0, 150);
            let point = rng.range(invoke, ret + 1);
            let op = match rng.range(0, 3) {
                0 => RegisterOp::Read,
                1 => RegisterOp::Write(i as u64),
                _ => RegisterOp::Cas {
                    expect: Some(rng.range(0, i as u64 + 1)).filter(|_| rng.chance(4, 5)),
                    new: i as u64,
                },
            };
            let lost = rng.chance(1, 10);
            let applied = !lost || rng.chance(1, 2);
            Planned {
                key: rng.range(0, n_keys),
                client: rng.range(1, 6),
                op,
                invoke,
                ret,
                point,
                lost,
                applied,
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..n_ops).collect();
    order.sort_by_key(|&i| (plan[i].point, i));
    let mut state: BTreeMap<u64, Register> = BTreeMap::new();
    let mut results = vec![None; n_ops];
    for i in order {
        let p = &plan[i];
        if !p.applied {
            continue;
        }
        let reg = state.entry(p.key).or_default();
        let (next, got) = reg.step(&p.op);
        *reg = next;
        results[i] = Some(got);
    }
    plan.drain(..)
        .zip(results)
        .map(|(p, got)| Operation {
            client: p.client,
            key: p.key,
            op: p.op,
            invoke: p.invoke,
            response: if p.lost {
                None
            } else {
                Some((p.ret, got.expect("answered ops were applied")))
            },
        })
        .collect()
}

#[test]
fn randomized_real_executions_always_pass() {
    for seed in 0..300 {
        let h = generated_history(seed, 60, 3);
        let o = check_per_key(&h, |_| Register::default(), DEFAULT_STEP_BUDGET);
        assert!(o.is_linearizable(), "seed {seed}: {o:?}");
    }
}

#[test]
fn randomized_corrupted_executions_are_mostly_caught() {
    // Change one answered read to a value nobody ever wrote: always a violation.
    for seed in 0..100 {
        let mut h = generated_history(seed, 40, 1);
        if let Some(o) = h
            .iter_mut()
            .find(|o| o.op == RegisterOp::Read && o.response.is_some())
        {
            let t = o.response.as_ref().map(|r| r.0).expect("answered");
            o.response = Some((t, RegisterRet::Value(Some(1_000_000))));
            assert!(
                bad(&check_per_key(
                    &h,
                    |_| Register::default(),
                    DEFAULT_STEP_BUDGET
                )),
                "seed {seed}"
            );
        }
    }
}
