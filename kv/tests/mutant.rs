//! The planted bug `kv-dedup-ignored` is off by default and, once selected, applies a retried
//! write twice. (Its own test binary: the switch is process-wide.)
#![cfg(feature = "mutants")]
mod common;

use common::*;
use shoal_kv::*;

#[test]
fn dedup_ignored_mutant_applies_retries_twice_only_when_selected() {
    let cas = Op::CompareAndSet {
        key: b"k",
        expect: None,
        value: b"1",
    };
    let cmd = Command {
        client_id: 1,
        seq: 1,
        time_ms: 1,
        op: cas,
    };
    let mut d = Driver::new(small());
    assert_eq!(d.raw(cmd).result, WriteResult::Done);
    assert!(
        d.raw(cmd).deduplicated,
        "compiled in but not selected: dedup still works"
    );

    assert!(!kv_mutant_enable("no-such-bug"));
    assert!(kv_mutant_enable(KV_DEDUP_IGNORED));
    let mut d = Driver::new(small());
    assert_eq!(d.raw(cmd).result, WriteResult::Done);
    let retry = d.raw(cmd);
    assert!(!retry.deduplicated);
    assert_eq!(
        retry.result,
        WriteResult::Failed(KvError::CasMismatch),
        "applied twice"
    );
    kv_mutant_disable_all();
}
