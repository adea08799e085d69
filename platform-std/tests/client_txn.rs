//! The client library's transactions against a real `shoald`: the builder, both branches and
//! what each operation did, an aborted branch as `ClientError::TxnAborted` with nothing
//! applied, and refusals that keep the server's words about the limit.

use std::time::Duration;

use shoal_client::protocol::{Cmp, TxnCompare, TxnEffect, TxnWrite};
use shoal_client::{BlockingClient, ClientConfig, ClientError, ReadMode, Transaction};
use shoal_kv::KvError;
use shoal_testkit::Cluster;

#[test]
fn transactions_from_the_client_library() {
    let c = Cluster::single_node();
    let config =
        ClientConfig::new([c.node(1).client.clone()]).with_timeout(Duration::from_secs(20));
    let client = BlockingClient::new(config).unwrap();
    client.mkdir(b"q").unwrap();
    let put = client.put(b"q.job", b"pending").unwrap();
    let value = |k: &[u8]| {
        client
            .get(k, ReadMode::Linearizable)
            .unwrap()
            .map(|n| n.value)
    };

    // Take the job only if nobody did: the success branch runs whole.
    let take = Transaction::new()
        .when(TxnCompare::value("q.job", "pending"))
        .when(TxnCompare::update_index("q.job", Cmp::Equal, put))
        .then(TxnWrite::remove("q.job"))
        .then(TxnWrite::mkdir("running"))
        .then(TxnWrite::put("running.job", "worker-1"))
        .then(TxnWrite::put_temp(
            "running.lease",
            "w1",
            Duration::from_secs(30),
        ))
        .otherwise(TxnWrite::put("q.lost", "worker-1"));
    let out = client.txn(take.clone()).unwrap();
    assert!(out.succeeded);
    assert!(out.index > put);
    assert_eq!(
        out.results,
        [
            TxnEffect::Removed,
            TxnEffect::Created,
            TxnEffect::Created,
            TxnEffect::Created
        ]
    );
    assert_eq!(value(b"q.job"), None);
    assert_eq!(value(b"running.job").as_deref(), Some(&b"worker-1"[..]));
    let lease = client
        .get(b"running.lease", ReadMode::Linearizable)
        .unwrap()
        .unwrap();
    assert_eq!(
        lease.owner,
        client.client_id(),
        "the session owns the temporary value"
    );

    // Again: the job is gone, so the failure branch runs.
    let out = client.txn(take).unwrap();
    assert!(!out.succeeded);
    assert_eq!(out.results, [TxnEffect::Created]);
    assert_eq!(value(b"q.lost").as_deref(), Some(&b"worker-1"[..]));

    // A refused operation aborts the branch: nothing of it is applied.
    let e = client
        .txn(
            Transaction::new()
                .when(TxnCompare::exists("running"))
                .then(TxnWrite::put("running.job", "worker-2"))
                .then(TxnWrite::remove("no.such.key")),
        )
        .unwrap_err();
    assert_eq!(
        e,
        ClientError::TxnAborted {
            succeeded: true,
            op: 1,
            error: KvError::NotFound
        }
    );
    assert_eq!(e.kv(), Some(KvError::NotFound));
    assert_eq!(e.exit_code(), 1);
    assert_eq!(value(b"running.job").as_deref(), Some(&b"worker-1"[..]));

    // Refused before proposing: the error keeps the server's words about the item and limit.
    let e = client
        .txn(Transaction::new().then(TxnWrite::put("q.big", vec![0u8; 64 * 1024 + 1])))
        .unwrap_err();
    match &e {
        ClientError::KvRefused { error, message } => {
            assert_eq!(*error, KvError::ValueTooLarge);
            assert!(message.contains("success operation 0"), "{message}");
            assert!(
                message.contains("max_value_bytes is 65536 bytes"),
                "{message}"
            );
        }
        other => panic!("expected KvRefused, got {other:?}"),
    }
    assert_eq!(e.kv(), Some(KvError::ValueTooLarge));
    let e = client.put(b"__shoal.x", b"v").unwrap_err();
    assert_eq!(
        e,
        ClientError::Kv(KvError::Reserved),
        "no limit: the plain error"
    );
}
