use super::records::record_name;
use super::*;
use shoal_client::protocol::{AuthOp, Credentials, ReadMode, TxnCompare, TxnWrite, WriteOp};

#[test]
fn the_auth_subtree_is_the_one_the_tools_hide() {
    assert_eq!(AUTH_DIR.as_bytes(), shoal_kv::system::AUTH_DIR);
}

fn perm(access: Access, key: &str, prefix: bool) -> Permission {
    Permission {
        access,
        key: key.as_bytes().to_vec(),
        prefix,
    }
}

fn state() -> AuthState {
    let mut s = AuthState {
        config: Some(AuthConfig {
            enabled: true,
            token_key: [7; 32],
        }),
        ..AuthState::default()
    };
    let user = |roles: &[&str], epoch| UserRecord {
        hash: String::new(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        epoch,
    };
    s.users.insert("root".into(), user(&["root"], 1));
    s.users.insert("alice".into(), user(&["app", "logs"], 2));
    s.users.insert("bob".into(), user(&["gone"], 3));
    s.roles.insert(
        "app".into(),
        RoleRecord {
            permissions: vec![
                perm(Access::ReadWrite, "app", true),
                perm(Access::Read, "cfg.url", false),
            ],
        },
    );
    s.roles.insert(
        "logs".into(),
        RoleRecord {
            permissions: vec![perm(Access::Write, "logs", true)],
        },
    );
    s
}

fn get(key: &str) -> Request {
    Request::Get {
        key: key.as_bytes().to_vec(),
        mode: ReadMode::Linearizable,
    }
}

fn put(key: &str) -> Request {
    Request::Write {
        client_id: 1,
        seq: 1,
        op: WriteOp::Put {
            key: key.as_bytes().to_vec(),
            value: vec![],
        },
    }
}

fn cert(user: &str) -> Principal {
    Principal::from_verified_cn(user)
}

#[test]
fn prefixes_are_subtrees_and_exact_keys_are_exact() {
    let s = state();
    assert!(s.may("alice", Access::Read, b"app"));
    assert!(s.may("alice", Access::Write, b"app.db.url"));
    assert!(
        !s.may("alice", Access::Read, b"apple"),
        "a prefix is a subtree, not bytes"
    );
    assert!(s.may("alice", Access::Read, b"cfg.url"));
    assert!(!s.may("alice", Access::Write, b"cfg.url"), "read only");
    assert!(
        !s.may("alice", Access::Read, b"cfg.url.x"),
        "an exact key has no subtree"
    );
    assert!(s.may("alice", Access::Write, b"logs.1"));
    assert!(!s.may("alice", Access::Read, b"logs.1"), "write only");
    assert!(
        !s.may("bob", Access::Read, b"app"),
        "a missing role allows nothing"
    );
    assert!(!s.may("nobody", Access::Read, b"app"));
    assert!(s.may("root", Access::Write, b"anything.at.all"));
    assert!(s.may_read_subtree("alice", b"app.db"));
    assert!(!s.may_read_subtree("alice", b"cfg"));
    assert!(!s.may_read_subtree("alice", b""));
    assert!(s.may_read_subtree("root", b""));
}

#[test]
fn requests_need_their_permissions_once_enabled() {
    let mut s = state();
    let alice = cert("alice");
    let now = 1000;
    assert_eq!(s.check(Some(&alice), now, &get("app.x")), Ok(()));
    assert!(matches!(
        s.check(Some(&alice), now, &get("other")),
        Err(Refusal::Denied(_))
    ));
    assert!(matches!(
        s.check(Some(&alice), now, &put("cfg.url")),
        Err(Refusal::Denied(_))
    ));
    let batch = Request::Write {
        client_id: 1,
        seq: 1,
        op: WriteOp::BatchPut {
            pairs: vec![(b"app.a".to_vec(), vec![]), (b"x".to_vec(), vec![])],
        },
    };
    assert!(
        matches!(s.check(Some(&alice), now, &batch), Err(Refusal::Denied(m)) if m.contains("\"x\"")),
        "every key of a batch is checked"
    );
    let lock = Request::Write {
        client_id: 1,
        seq: 1,
        op: WriteOp::TryLock {
            key: b"cfg.url".to_vec(),
            lease_ms: 1,
            wait_ms: 0,
        },
    };
    assert!(
        matches!(s.check(Some(&alice), now, &lock), Err(Refusal::Denied(_))),
        "locks need write"
    );
    let txn = |compare: &str, write: &str, other: &str| Request::Write {
        client_id: 1,
        seq: 1,
        op: WriteOp::Txn {
            compares: vec![TxnCompare::Exists {
                key: compare.as_bytes().to_vec(),
            }],
            success: vec![TxnWrite::Put {
                key: write.as_bytes().to_vec(),
                value: vec![],
            }],
            failure: vec![TxnWrite::Remove {
                key: other.as_bytes().to_vec(),
            }],
        },
    };
    assert_eq!(
        s.check(Some(&alice), now, &txn("cfg.url", "app.a", "app.b")),
        Ok(())
    );
    for (c, w, o) in [
        ("secret", "app.a", "app.b"),
        ("app.x", "cfg.url", "app.b"),
        ("app.x", "app.a", "x"),
    ] {
        assert!(
            matches!(
                s.check(Some(&alice), now, &txn(c, w, o)),
                Err(Refusal::Denied(_))
            ),
            "a transaction needs read on what it compares and write on both branches: {c} {w} {o}"
        );
    }
    assert!(matches!(
        s.check(Some(&alice), now, &Request::Snapshot),
        Err(Refusal::Denied(_))
    ));
    assert!(matches!(
        s.check(Some(&alice), now, &Request::Auth(AuthOp::Disable)),
        Err(Refusal::Denied(_))
    ));
    assert_eq!(
        s.check(Some(&alice), now, &Request::Auth(AuthOp::UserList)),
        Ok(())
    );
    assert_eq!(
        s.check(Some(&cert("root")), now, &Request::Auth(AuthOp::Disable)),
        Ok(())
    );
    assert!(matches!(
        s.check(None, now, &get("app.x")),
        Err(Refusal::AuthFailed(_))
    ));
    // Reads are checked when served; on arrival only the login is.
    assert_eq!(s.check_arrival(Some(&alice), now, &get("other")), Ok(()));
    assert!(s.check_arrival(None, now, &get("app.x")).is_err());
    assert!(s.check_arrival(Some(&alice), now, &put("other")).is_err());
    assert_eq!(s.check(None, now, &Request::Health), Ok(()));
    let login = Request::Authenticate(Credentials::Token(vec![]));
    assert_eq!(s.check(None, now, &login), Ok(()));
    assert!(matches!(
        s.check(Some(&cert("mallory")), now, &get("app.x")),
        Err(Refusal::AuthFailed(_))
    ));
    // Off: everything goes, except reading the auth records.
    s.config.as_mut().unwrap().enabled = false;
    assert_eq!(s.check(None, now, &put("x")), Ok(()));
    assert_eq!(s.check(None, now, &Request::Snapshot), Ok(()));
    assert!(matches!(
        s.check(None, now, &get("__shoal.auth.users.root")),
        Err(Refusal::Denied(_))
    ));
    assert_eq!(s.check(None, now, &get("__shoal.members.1")), Ok(()));
}

#[test]
fn watch_events_are_filtered_by_read_permission() {
    let s = state();
    let alice = cert("alice");
    assert!(event_visible(&s, Some(&alice), 0, b"app.x"));
    assert!(!event_visible(&s, Some(&alice), 0, b"logs.x"), "write-only");
    assert!(!event_visible(&s, None, 0, b"app.x"));
    assert!(!event_visible(
        &s,
        Some(&cert("root")),
        0,
        b"__shoal.auth.config"
    ));
    assert!(event_visible(
        &s,
        Some(&cert("root")),
        0,
        b"__shoal.members.1"
    ));
}

#[test]
fn tokens_verify_expire_and_die_with_the_password_or_key() {
    let mut s = state();
    let t = s.issue_token("alice", 5000).unwrap();
    let who = s.check_token(&t, 4999).unwrap();
    assert_eq!(who.user(), "alice");
    assert!(
        matches!(s.check_token(&t, 5000), Err(Refusal::AuthFailed(m)) if m.contains("expired"))
    );
    // A changed byte anywhere breaks the tag.
    for i in 0..t.len() {
        let mut bad = t.clone();
        bad[i] ^= 1;
        assert!(s.check_token(&bad, 0).is_err(), "byte {i}");
    }
    // A new password epoch voids the token, and so does a new key.
    s.users.get_mut("alice").unwrap().epoch = 9;
    assert!(s.check_token(&t, 0).is_err());
    assert!(matches!(s.valid_user(&who, 0), Err(Refusal::AuthFailed(_))));
    s.users.get_mut("alice").unwrap().epoch = 2;
    assert!(s.check_token(&t, 0).is_ok());
    s.config.as_mut().unwrap().token_key = [8; 32];
    assert!(s.check_token(&t, 0).is_err());
    assert!(s.issue_token("nobody", 1).is_none());
}

#[test]
fn passwords_hash_and_verify_and_records_round_trip() {
    let h = hash_password("s3cret").unwrap();
    assert!(h.starts_with("$argon2id$"));
    assert!(verify_password(&h, "s3cret"));
    assert!(!verify_password(&h, "s3cret!"));
    assert!(!verify_password("garbage", "s3cret"));
    let rec = UserRecord {
        hash: h,
        roles: vec!["root".into()],
        epoch: 4,
    };
    let bytes = encode_record(&rec);
    assert_eq!(decode_record::<UserRecord>(&bytes), Some(rec));
    let mut other = bytes.clone();
    other[0] = 2;
    assert_eq!(decode_record::<UserRecord>(&other), None);
    assert_eq!(
        record_name(b"__shoal.auth.users.alice", USERS_DIR).as_deref(),
        Some("alice")
    );
    assert_eq!(record_name(b"__shoal.auth.users.a.b", USERS_DIR), None);
    assert!(check_name("user", "a-b_C9").is_ok());
    assert!(check_name("user", "a.b").is_err());
    assert!(check_name("user", "").is_err());
}
