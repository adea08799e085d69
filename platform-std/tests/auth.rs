//! Users, roles and permissions on real `shoald` processes: the matrix of what each user may
//! and may not do (shoalctl's exit codes and JSON codes, the client library's variants), and
//! auth state and tokens across a leader change, a full restart and a snapshot install.

use std::time::Duration;

use shoal_client::protocol::{Request, Response};
use shoal_client::{
    Access, BlockingClient, ClientConfig, ClientError, Permission, ReadMode, WatchItem,
};
use shoal_testkit::cli::{shoalctl_with_input, AUTH_USERS};
use shoal_testkit::client::Conn;
use shoal_testkit::{wait_some, Cluster, ClusterBuilder, Output, WAIT};

/// `shoalctl --user USER ARGS -o json` against every serving node.
fn ctl_as(c: &Cluster, user: Option<&str>, args: &[&str]) -> Output {
    let mut all = vec!["-o", "json"];
    if let Some(u) = user {
        all.extend(["--user", u]);
    }
    all.extend(args);
    c.ctl(&all)
}

/// Assert a refusal: exit 1 and the JSON error `code`.
fn refused(o: &Output, code: &str) {
    assert_eq!(o.code, 1, "{o}");
    assert_eq!(o.json()["error"], code, "{o}");
}

fn client(c: &Cluster, user: Option<(&str, &str)>) -> BlockingClient {
    let mut cfg = ClientConfig::new(c.clients()).with_timeout(Duration::from_secs(10));
    if let Some((u, p)) = user {
        cfg = cfg.with_user(u, p);
    }
    BlockingClient::new(cfg).expect("a client")
}

/// root, alice (role `app`: readwrite on the subtree `app`, read on the key `cfg.url`), bob
/// (no role), some data, and auth enabled.
/// The cluster `b` builds, started, with auth set up by [`set_up`]; and its leader.
fn with_auth(b: ClusterBuilder) -> (Cluster, u64) {
    let mut c = b.build();
    c.start_all();
    let leader = c.wait_leader(0);
    set_up(&c);
    (c, leader)
}

fn set_up(c: &Cluster) {
    let ok = |args: &[&str]| {
        ctl_as(c, None, args).ok();
    };
    // Enabling needs the user root first.
    let o = ctl_as(c, None, &["auth", "enable"]);
    assert_eq!(o.code, 1, "{o}");
    assert!(o.out.contains("user root"), "{o}");
    for step in AUTH_USERS {
        ok(step);
    }
    ok(&["user", "add", "bob:bobpw"]);
    ok(&["role", "grant-permission", "app", "read", "cfg.url"]);
    ok(&["mkdir", "app"]);
    ok(&["mkdir", "cfg"]);
    ok(&["put", "cfg.url", "http://x"]);
    ok(&["put", "secret", "s"]);
    ok(&["auth", "enable"]);
}

#[test]
fn users_and_roles_allow_and_deny() {
    let (c, _) = with_auth(Cluster::builder());
    let alice = Some("alice:alicepw");
    let root = Some("root:rootpw");

    // Nobody logged in: refused, status and health still answer.
    refused(&ctl_as(&c, None, &["get", "cfg.url"]), "AuthFailed");
    refused(&ctl_as(&c, None, &["put", "x", "1"]), "AuthFailed");
    assert_eq!(ctl_as(&c, None, &["status"]).code, 0);
    refused(
        &ctl_as(&c, Some("alice:wrong"), &["get", "cfg.url"]),
        "AuthFailed",
    );
    refused(
        &ctl_as(&c, Some("nobody:x"), &["get", "cfg.url"]),
        "AuthFailed",
    );

    // alice: read and write in her subtree, read the one key, nothing else.
    ctl_as(&c, alice, &["put", "app.a", "1"]).ok();
    assert_eq!(ctl_as(&c, alice, &["get", "app.a"]).json()["value"], "1");
    assert_eq!(
        ctl_as(&c, alice, &["get", "cfg.url"]).json()["value"],
        "http://x"
    );
    ctl_as(&c, alice, &["list", "app"]).ok();
    refused(
        &ctl_as(&c, alice, &["put", "cfg.url", "y"]),
        "PermissionDenied",
    );
    refused(&ctl_as(&c, alice, &["get", "secret"]), "PermissionDenied");
    refused(
        &ctl_as(&c, alice, &["put", "apple", "1"]),
        "PermissionDenied",
    );
    refused(&ctl_as(&c, alice, &["list"]), "PermissionDenied");
    refused(&ctl_as(&c, alice, &["list", "cfg"]), "PermissionDenied");
    // Locks and temporary nodes need write.
    let lock_ok = ctl_as(&c, alice, &["lock", "app.l", "--lease", "5s", "--", "true"]);
    assert_eq!(lock_ok.code, 0, "{lock_ok}");
    refused(
        &ctl_as(
            &c,
            alice,
            &["lock", "cfg.url", "--lease", "5s", "--", "true"],
        ),
        "PermissionDenied",
    );
    ctl_as(&c, alice, &["put-temp", "app.t", "v", "--ttl", "30s"]).ok();
    refused(
        &ctl_as(&c, alice, &["put-temp", "cfg.t", "v", "--ttl", "30s"]),
        "PermissionDenied",
    );
    // Operator overrides, snapshots and lease revokes need root, even inside alice's subtree;
    // a lease alice may take and keep alive.
    refused(
        &ctl_as(&c, alice, &["del", "--force", "app.t"]),
        "PermissionDenied",
    );
    refused(
        &ctl_as(&c, alice, &["lock", "release", "--force", "app.l"]),
        "PermissionDenied",
    );
    let backup = c.root().join("alice.shoal");
    let backup = backup.to_str().expect("utf-8 path");
    refused(
        &ctl_as(&c, alice, &["snapshot", "save", backup]),
        "PermissionDenied",
    );
    let lease = ctl_as(&c, alice, &["lease", "grant", "30s"]);
    let id = lease.json()["id"].as_u64().expect("a lease id");
    refused(
        &ctl_as(&c, alice, &["lease", "revoke", &id.to_string()]),
        "PermissionDenied",
    );
    ctl_as(&c, root, &["lease", "revoke", &id.to_string()]).ok();
    ctl_as(&c, root, &["del", "--force", "app.t"]).ok();
    // A transaction needs read on what it compares and write on both branches.
    let txn = |input: &str| {
        let args = ["-o", "json", "--user", "alice:alicepw", "txn"];
        shoalctl_with_input(&c.clients().join(","), &args, Some(input.as_bytes()))
    };
    let o = txn("exists cfg.url\n\nput app.tx 1\n\nput app.ty 2\n");
    assert_eq!(o.code, 0, "{o}");
    refused(
        &txn("exists cfg.url\n\nput app.tx 1\n\nput secret 2\n"),
        "PermissionDenied",
    );
    refused(
        &txn("exists secret\n\nput app.tx 1\n\nput app.ty 2\n"),
        "PermissionDenied",
    );
    // Admin operations need root.
    for args in [
        &["snapshot"][..],
        &["leader", "transfer", "2"],
        &["member", "remove", "3"],
        &["--group", "7", "group", "create", "1,2,3"],
        &["user", "add", "eve:evepw"],
        &[
            "role",
            "grant-permission",
            "app",
            "readwrite",
            "",
            "--prefix",
        ],
        &["auth", "disable"],
    ] {
        refused(&ctl_as(&c, alice, args), "PermissionDenied");
    }
    // Nobody reads the auth records, not even root.
    refused(
        &ctl_as(&c, root, &["get", "__shoal.auth.config"]),
        "PermissionDenied",
    );
    refused(
        &ctl_as(&c, root, &["list", "__shoal.auth.users"]),
        "PermissionDenied",
    );
    // bob holds no role.
    refused(
        &ctl_as(&c, Some("bob:bobpw"), &["get", "app.a"]),
        "PermissionDenied",
    );

    // The client library: the same refusals as their own variants; a batch needs every key.
    let a = client(&c, Some(("alice", "alicepw")));
    a.put(b"app.b", b"2").expect("alice writes in app");
    let batch = a.batch_put(&[(&b"app.c"[..], &b"3"[..]), (&b"other"[..], &b"4"[..])]);
    assert!(
        matches!(&batch, Err(ClientError::PermissionDenied { message }) if message.contains("other")),
        "{batch:?}"
    );
    let many = a.batch_get(&[&b"app.a"[..], &b"secret"[..]], ReadMode::Linearizable);
    assert!(
        matches!(many, Err(ClientError::PermissionDenied { .. })),
        "{many:?}"
    );
    let nobody = client(&c, None);
    assert!(matches!(
        nobody.get(b"app.a", ReadMode::Linearizable),
        Err(ClientError::AuthFailed { .. })
    ));
    let wrong = client(&c, Some(("alice", "nope")));
    let e = wrong.get(b"app.a", ReadMode::Linearizable).unwrap_err();
    assert!(matches!(e, ClientError::AuthFailed { .. }), "{e:?}");
    assert_eq!(e.exit_code(), 1);

    // A watch of everything delivers only what alice may read: it starts at root's first
    // write, and root's writes outside alice's permissions never show.
    let r = client(&c, Some(("root", "rootpw")));
    let from = r.put(b"secret", b"s2").expect("root writes anywhere");
    r.put(b"cfg.other", b"o").expect("root writes anywhere");
    r.put(b"app.w", b"seen").expect("root writes anywhere");
    let mut w = a.watch(&[&b""[..]], from);
    loop {
        match w.next_blocking() {
            Some(Ok(WatchItem::Event(ev))) => {
                assert!(
                    ev.key.starts_with(b"app"),
                    "alice saw an event of {:?}",
                    String::from_utf8_lossy(&ev.key)
                );
                if ev.key == b"app.w" {
                    break;
                }
            }
            Some(Ok(_)) => {}
            other => panic!("the watch ended: {other:?}"),
        }
    }
    drop(w);

    // Permissions granted through the library count at once: alice may now list cfg.
    let cfg = Permission {
        access: Access::Read,
        key: b"cfg".to_vec(),
        prefix: true,
    };
    r.role_grant_permission("app", cfg).expect("root grants");
    ctl_as(&c, alice, &["list", "cfg"]).ok();
    ctl_as(
        &c,
        root,
        &["role", "revoke-permission", "app", "cfg", "--prefix"],
    )
    .ok();
    refused(&ctl_as(&c, alice, &["list", "cfg"]), "PermissionDenied");
    // A role someone holds cannot go.
    refused(&ctl_as(&c, root, &["role", "delete", "app"]), "Conflict");

    // Revoking the role takes effect at once; granting root gives everything.
    ctl_as(&c, root, &["user", "revoke-role", "alice", "app"]).ok();
    refused(&ctl_as(&c, alice, &["get", "app.a"]), "PermissionDenied");
    ctl_as(&c, root, &["user", "grant-role", "bob", "root"]).ok();
    ctl_as(&c, Some("bob:bobpw"), &["get", "secret"]).ok();
    let roles = ctl_as(&c, root, &["role", "get", "app"]).json();
    assert_eq!(roles["permissions"].as_array().unwrap().len(), 2, "{roles}");
    let users = ctl_as(&c, alice, &["user", "list"]).json();
    assert_eq!(users["users"], serde_json::json!(["alice", "bob", "root"]));
    // root cannot be deleted while auth is on.
    refused(&ctl_as(&c, root, &["user", "delete", "root"]), "Conflict");

    // Disabling needs root; afterwards nobody needs to log in.
    refused(&ctl_as(&c, alice, &["auth", "disable"]), "PermissionDenied");
    ctl_as(&c, root, &["auth", "disable"]).ok();
    ctl_as(&c, None, &["put", "x", "1"]).ok();
    assert_eq!(
        ctl_as(&c, None, &["auth", "status"]).json()["enabled"],
        false
    );
}

/// A token, as a node issued it to alice.
fn login(addr: &str, user: &str, password: &str) -> Vec<u8> {
    let mut conn = Conn::open(addr).expect("connect");
    match conn.login(user, password).expect("an answer") {
        Response::Token { token, .. } => token.0,
        other => panic!("login of {user} answered {other:?}"),
    }
}

/// Whether node `addr` takes `token`, and lets its user read `key` on that connection.
fn token_reads(addr: &str, token: &[u8], key: &str) -> Result<(), String> {
    let mut conn = Conn::open(addr).map_err(|e| e.to_string())?;
    match conn.login_token(token).map_err(|e| e.to_string())? {
        Response::Token { .. } => {}
        other => return Err(format!("token refused: {other:?}")),
    }
    let get = Request::Get {
        key: key.as_bytes().to_vec(),
        mode: ReadMode::Local,
    };
    match conn.call(0, get).map_err(|e| e.to_string())? {
        Response::Node { node: Some(_), .. } => Ok(()),
        other => Err(format!("read answered {other:?}")),
    }
}

#[test]
fn auth_state_and_tokens_survive_leader_change_restart_and_snapshot_install() {
    let (mut c, first) = with_auth(
        Cluster::builder()
            .spares([4])
            .fsync("never")
            // Small segments, so that a snapshot frees the start of the log.
            .args(&["--segment-mb", "1"]),
    );
    let root = Some("root:rootpw");
    ctl_as(&c, Some("alice:alicepw"), &["put", "app.k", "v"]).ok();

    // A token issued by the leader is taken by every member, also after the leader moved.
    let token = login(&c.node(first).client, "alice", "alicepw");
    let next = [1, 2, 3].into_iter().find(|&i| i != first).unwrap();
    let r = client(&c, Some(("root", "rootpw")));
    wait_some("a new leader", WAIT, || {
        let _ = r.transfer_leader(next);
        c.status(next, 0).filter(|s| s.role == "leader")
    });
    for id in [1, 2, 3] {
        let addr = c.node(id).client.clone();
        wait_some(&format!("node {id} to take the token"), WAIT, || {
            token_reads(&addr, &token, "app.k").ok()
        });
    }
    // A client holding only the token speaks for alice through the new leader.
    let by_token = client(&c, None);
    by_token.async_client().set_token(token.clone());
    by_token
        .put(b"app.t", b"1")
        .expect("a write with alice's token");
    assert!(matches!(
        by_token.get(b"secret", ReadMode::Linearizable),
        Err(ClientError::PermissionDenied { .. })
    ));

    // Every node restarts: auth is still on, users and token key are the same.
    for id in [1, 2, 3] {
        c.stop(id);
    }
    c.start_all();
    c.wait_leader(0);
    refused(&ctl_as(&c, None, &["get", "app.k"]), "AuthFailed");
    assert_eq!(
        ctl_as(&c, root, &["auth", "status"]).json()["enabled"],
        true
    );
    for id in [1, 2, 3] {
        let addr = c.node(id).client.clone();
        wait_some(
            &format!("node {id} to take the token after a restart"),
            WAIT,
            || token_reads(&addr, &token, "app.k").ok(),
        );
    }

    // A node that joins late learns the auth state from a snapshot: the log before it is gone
    // (the servers keep 10 000 entries behind a snapshot, and drop whole 1 MiB segments).
    let mut conn = Conn::open(&c.node(c.wait_leader(0)).client).expect("connect");
    assert!(matches!(
        conn.login("root", "rootpw"),
        Ok(Response::Token { .. })
    ));
    conn.pipelined_puts(0, (77, 1), "app.fill", &[b'x'; 2048], 11_000);
    for id in [1, 2, 3] {
        let snap = Request::Snapshot;
        let mut conn = Conn::open(&c.node(id).client).expect("connect");
        assert!(matches!(
            conn.login("root", "rootpw"),
            Ok(Response::Token { .. })
        ));
        let r = conn.call(0, snap).expect("an answer");
        assert!(
            matches!(r, Response::Done { .. }),
            "snapshot on {id}: {r:?}"
        );
    }
    c.start_joining(4);
    ctl_as(&c, root, &["member", "add", "4", &c.node(4).raft.clone()]).ok();
    let addr4 = c.node(4).client.clone();
    wait_some("node 4 to take alice's token", WAIT, || {
        token_reads(&addr4, &token, "app.k").ok()
    });
    let s4 = c.status(4, 0).expect("node 4 answers");
    assert!(
        s4.snapshot_index > 10_000,
        "node 4 started from a snapshot: {s4:?}"
    );
    let mut conn = Conn::open(&addr4).expect("connect");
    let r = conn.call(
        0,
        Request::Get {
            key: b"app.k".to_vec(),
            mode: ReadMode::Local,
        },
    );
    assert!(
        matches!(
            &r,
            Ok(Response::Error {
                code: shoal_client::protocol::ErrorCode::AuthFailed,
                ..
            })
        ),
        "node 4 checks users too: {r:?}"
    );
    // Changing alice's password ends her logins on every node.
    ctl_as(&c, root, &["user", "passwd", "alice:newpw"]).ok();
    for id in [1, 2, 3, 4] {
        let addr = c.node(id).client.clone();
        wait_some(&format!("node {id} to refuse the old token"), WAIT, || {
            token_reads(&addr, &token, "app.k").err()
        });
    }
}

/// Logins expire (`--auth-token-ttl`): a node refuses the old token, the client library logs
/// in again by itself, and an open watch goes on after its login ended.
#[test]
fn expired_logins_are_refused_and_the_client_logs_in_again() {
    let (c, _) = with_auth(
        Cluster::builder()
            .voters([1])
            .fsync("never")
            .args(&["--auth-token-ttl", "1s"]),
    );
    wait_some("/metrics to say auth is on", WAIT, || {
        (c.gauge(1, "shoal_auth_enabled") == 1).then_some(())
    });
    let addr = c.node(1).client.clone();
    let token = login(&addr, "alice", "alicepw");
    let a = client(&c, Some(("alice", "alicepw")));
    a.put(b"app.before", b"1").expect("alice writes");
    let mut w = a.watch(&[&b"app"[..]], 0);
    // Wait until the node refuses the token: the login is over.
    wait_some("the token to expire", WAIT, || {
        token_reads(&addr, &token, "app.before").err()
    });
    let mut conn = Conn::open(&addr).expect("connect");
    match conn.login_token(&token).expect("an answer") {
        Response::Error { message, .. } => assert!(message.contains("expired"), "{message}"),
        other => panic!("an expired token was taken: {other:?}"),
    }
    // The library's connection is still bound to the ended login: its next call is refused,
    // and it logs in again and succeeds.
    a.put(b"app.after", b"2").expect("the client logs in again");
    // The watch was ended by the node and resumed by the client after a new login.
    loop {
        match w.next_blocking() {
            Some(Ok(WatchItem::Event(ev))) if ev.key == b"app.after" => break,
            Some(Ok(_)) => {}
            other => panic!("the watch ended: {other:?}"),
        }
    }
    // Counted: alice's logins (ours, the library's, the watch's) and the expired token's
    // refusal above (a refused request is counted too, but whether the library's next call
    // met one depends on whether its connection was still open).
    wait_some("/metrics to count logins and refusals", WAIT, || {
        let logins = c.gauge(1, "shoal_auth_logins_total");
        let failures = c.gauge(1, "shoal_auth_login_failures_total");
        (logins >= 3 && failures >= 1).then_some(())
    });
}

/// With auth on, `lease ttl` names only the keys tied to the lease that the user may read
/// (root sees them all): the lease itself, and how many keys it holds, stay anyone's to see.
#[test]
fn lease_listings_name_only_the_keys_the_user_may_read() {
    let (c, _) = with_auth(Cluster::builder().voters([1]));
    let (root, alice, bob) = (
        Some("root:rootpw"),
        Some("alice:alicepw"),
        Some("bob:bobpw"),
    );
    let lease = ctl_as(&c, root, &["lease", "grant", "60s"]);
    let id = lease.json()["id"].as_u64().expect("a lease id").to_string();
    for key in ["app.svc", "cfg.hidden"] {
        ctl_as(&c, root, &["put-temp", key, "v", "--lease", &id]).ok();
    }
    let keys = |user: Option<&str>| {
        let o = ctl_as(&c, user, &["lease", "ttl", &id]);
        assert_eq!(o.code, 0, "{o}");
        let j = o.json();
        assert_eq!(j["tied"], 2, "{o}");
        let mut keys: Vec<String> = j["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k.as_str().expect("a key").to_string())
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(keys(root), ["app.svc", "cfg.hidden"]);
    assert_eq!(keys(alice), ["app.svc"]);
    assert!(keys(bob).is_empty());
    // The list of every lease names no keys, and shows the lease to any user.
    let listed = ctl_as(&c, bob, &["lease", "list"]);
    assert!(listed.out.contains(&id), "{listed}");
}
