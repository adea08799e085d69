//! TLS on the client and admin ports with real processes and certificates made in the test:
//! shoalctl over TLS with a client certificate; plaintext, missing, wrong-CA and expired client
//! certificates refused with a log line that says which and why; `/health` and `/metrics`
//! readable without a client certificate, the rest of the admin port not.
#![cfg(unix)]

use std::time::Duration;

use shoal_client::protocol::Response;
use shoal_testkit::certs::cert_der;
use shoal_testkit::cli::AUTH_USERS;
use shoal_testkit::client::{limit_series, Conn};
use shoal_testkit::{shoalctl, wait_for, CertPair, Certs, Cluster, WAIT};

/// A single node whose client port requires a client certificate of the cluster's CA.
fn node_with_client_cert_auth() -> (Cluster, Certs) {
    tls_node(true, &[])
}

/// A single node serving TLS on its client port (`cert_auth`: requiring a client certificate
/// of the cluster's CA), with `extra` flags.
fn tls_node(cert_auth: bool, extra: &[&str]) -> (Cluster, Certs) {
    let (c, certs, _) = tls_node_serving(cert_auth, extra);
    (c, certs)
}

/// [`tls_node`], and the certificate its client port serves.
fn tls_node_serving(cert_auth: bool, extra: &[&str]) -> (Cluster, Certs, CertPair) {
    let mut c = Cluster::builder().voters([1]).args(extra).build();
    let certs = Certs::new(&c.root().join("certs"));
    let own = certs.node(1, 1);
    let flags = certs.client_port_flags(&own, cert_auth);
    c.node_mut(1).args.extend(flags);
    c.start(1);
    (c, certs, own)
}

fn ctl(
    c: &Cluster,
    certs: &Certs,
    pair: Option<&CertPair>,
    args: &[&str],
) -> shoal_testkit::Output {
    let mut all: Vec<String> = certs.ctl_flags(pair);
    all.extend(args.iter().map(|s| s.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    shoalctl(&c.node(1).client, &all)
}

#[test]
fn the_client_port_serves_tls_clients_with_certificates_and_refuses_the_rest() {
    let (c, certs) = node_with_client_cert_auth();
    let alice = certs.client("alice");
    wait_for("a write over TLS", WAIT, || {
        ctl(&c, &certs, Some(&alice), &["put", "k", "v"]).code == 0
    });
    let got = ctl(&c, &certs, Some(&alice), &["get", "k"]);
    assert_eq!(got.ok().trim(), "v");
    let log = || c.node(1).log();

    // Plaintext client.
    let plain = shoalctl(&c.node(1).client, &["--timeout", "2s", "get", "k"]);
    assert_ne!(plain.code, 0, "a plaintext client was served: {plain:?}");
    wait_for("the plaintext client logged", WAIT, || {
        log().contains("client port: TLS with") && log().contains("does not speak TLS")
    });
    // TLS without a client certificate.
    let anon = ctl(&c, &certs, None, &["--timeout", "2s", "get", "k"]);
    assert_ne!(anon.code, 0, "a client without a certificate was served");
    wait_for("the missing certificate logged", WAIT, || {
        log().contains("no client certificate was presented")
    });
    // A client certificate of another CA.
    let other = Certs::new(&c.root().join("other-ca"));
    let mallory = other.client("alice");
    let wrong = ctl(&c, &certs, Some(&mallory), &["--timeout", "2s", "get", "k"]);
    assert_ne!(wrong.code, 0, "a certificate of another CA was accepted");
    wait_for("the other CA logged", WAIT, || {
        log().contains("not signed by a CA in --trusted-ca-file")
    });
    // An expired client certificate of the right CA.
    let old = certs.client_with(
        "alice",
        "expired",
        &["--valid-from", "2020-01-01", "--days", "1"],
    );
    let expired = ctl(&c, &certs, Some(&old), &["--timeout", "2s", "get", "k"]);
    assert_ne!(expired.code, 0, "an expired certificate was accepted");
    wait_for("the expired certificate logged", WAIT, || {
        log().contains("the certificate has expired")
    });
    // Every refusal is on /metrics, which needs no client certificate.
    let admin = c.node(1).admin.clone();
    wait_for("four refusals counted", WAIT, || {
        certs
            .https_metric(&admin, "shoal_tls_client_refused_total")
            .is_some_and(|n| n >= 4)
    });
    // The node still serves.
    assert_eq!(
        ctl(&c, &certs, Some(&alice), &["get", "k"]).ok().trim(),
        "v"
    );
}

#[test]
fn health_and_metrics_need_no_client_certificate_and_the_rest_of_the_admin_port_does() {
    let (c, certs) = node_with_client_cert_auth();
    let admin = c.node(1).admin.clone();
    let alice = certs.client("alice");
    wait_for(
        "/health over TLS without a client certificate",
        WAIT,
        || matches!(certs.https_get(&admin, "/health", None), Ok((200, _))),
    );
    let (code, _) = certs.https_get(&admin, "/metrics", None).expect("/metrics");
    assert_eq!(code, 200);
    let (code, body) = certs.https_get(&admin, "/status", None).expect("/status");
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("client certificate"), "{body}");
    let (code, body) = certs
        .https_get(&admin, "/status", Some(&alice))
        .expect("/status with a certificate");
    assert_eq!(code, 200, "{body}");
    // Plain HTTP on the TLS admin port gets nothing.
    assert!(c.http_get(1, "/health").is_none_or(|(code, _)| code != 200));
}

/// The TLS handshake counts as the connection's first frame: a client that opens a TCP
/// connection to a TLS client port and never sends its ClientHello, or sends part of one, is
/// closed once `--client-frame-timeout` passes (long before the idle timeout), counted as a hit
/// of that limit, and the node goes on serving.
#[test]
fn a_tls_handshake_that_is_never_finished_is_closed_by_the_frame_timeout() {
    let (c, certs) = tls_node(
        false,
        &[
            "--client-frame-timeout",
            "2s",
            "--client-idle-timeout",
            "300s",
        ],
    );
    wait_for("a write over TLS", WAIT, || {
        ctl(&c, &certs, None, &["put", "k", "v"]).code == 0
    });
    let client = c.node(1).client.clone();
    let mut silent = Conn::open_within(&client, Duration::from_secs(15)).unwrap();
    let mut halfway = Conn::open_within(&client, Duration::from_secs(15)).unwrap();
    // A handshake record announcing 512 bytes, of which none follow.
    halfway.send_raw(&[0x16, 0x03, 0x01, 0x02, 0x00]).unwrap();
    for conn in [&mut silent, &mut halfway] {
        // Far below the idle timeout: only the frame timeout can close it in time.
        conn.assert_closed_within(Duration::from_secs(60));
    }
    let admin = c.node(1).admin.clone();
    wait_for("two hits of --client-frame-timeout", WAIT, || {
        certs.https_metric(&admin, &limit_series("client-frame-timeout")) == Some(2)
    });
    assert_eq!(ctl(&c, &certs, None, &["get", "k"]).ok().trim(), "v");
}

/// With `--client-cert-auth`, a client is the user its certificate's CN names: once auth is on,
/// its requests are checked against that user's roles without a login; a CN that names no user
/// is refused.
#[test]
fn a_client_certificate_logs_in_as_the_user_its_cn_names() {
    let (c, certs) = node_with_client_cert_auth();
    let alice = certs.client("alice");
    let root = certs.client("root");
    let nobody = certs.client("mallory");
    let as_ = |pair: &CertPair, args: &[&str]| {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        ctl(&c, &certs, Some(pair), &all)
    };
    wait_for("a write over TLS", WAIT, || {
        as_(&alice, &["mkdir", "app"]).code == 0
    });
    let more: &[&[&str]] = &[&["mkdir", "other"], &["auth", "enable"]];
    for step in AUTH_USERS.iter().chain(more) {
        let o = as_(&root, step);
        assert_eq!(o.code, 0, "{step:?}: {o}");
    }
    // alice's certificate: her permissions, no password asked.
    let o = as_(&alice, &["put", "app.x", "1"]);
    assert_eq!(o.code, 0, "{o}");
    assert_eq!(as_(&alice, &["get", "app.x"]).json()["value"], "1");
    let o = as_(&alice, &["put", "other.y", "2"]);
    assert_eq!(o.code, 1, "{o}");
    assert_eq!(o.json()["error"], "PermissionDenied", "{o}");
    // root's certificate: the root role.
    let o = as_(&root, &["put", "other.y", "2"]);
    assert_eq!(o.code, 0, "{o}");
    // A CN that names no user.
    let o = as_(&nobody, &["get", "app.x"]);
    assert_eq!(o.code, 1, "{o}");
    assert_eq!(o.json()["error"], "AuthFailed", "{o}");
}

/// Certificate files replaced on disk, with no signal, are re-read within
/// `--cert-check-interval`: a bad file keeps the certificate in force and the log says why; a
/// renewed certificate and key are what the next connection sees.
#[test]
fn replaced_certificate_files_are_reread_without_a_signal() {
    let (c, certs, own) = tls_node_serving(false, &["--cert-check-interval", "1s"]);
    let client = c.node(1).client.clone();
    let served = || certs.tls_open(&client, None).map(|t| t.served_cert()).ok();
    let first = cert_der(&own.cert);
    wait_for("the first certificate served", WAIT, || {
        served().as_ref() == Some(&first)
    });
    let log = || c.node(1).log();

    std::fs::write(&own.cert, b"not a certificate").expect("spoil the certificate");
    wait_for("the failed reload logged", WAIT, || {
        log().contains("a certificate or key file changed: certificates not reloaded")
    });
    assert_eq!(
        served(),
        Some(first.clone()),
        "a bad file replaced the certificate"
    );

    let renewed = certs.node_with(1, 1, "renewed", &[]);
    let next = cert_der(&renewed.cert);
    assert_ne!(next, first);
    std::fs::copy(&renewed.key, &own.key).expect("install the renewed key");
    std::fs::copy(&renewed.cert, &own.cert).expect("install the renewed certificate");
    wait_for("the renewed certificate served", WAIT, || {
        served().as_ref() == Some(&next)
    });
    assert!(log().contains("a certificate or key file changed: certificates and keys re-read"));
    let admin = c.node(1).admin.clone();
    wait_for("the reload counted", WAIT, || {
        certs
            .https_metric(&admin, "shoal_tls_reloads_total")
            .is_some_and(|n| n >= 1)
    });
}

/// A TLS client over `--client-max-connections` gets what a plaintext one gets: inside a
/// finished TLS session, an `Unavailable` answer of id 0 that names the limit, then the end of
/// the connection; the refusal is counted as a hit of that limit.
#[test]
fn a_tls_client_over_the_connection_limit_is_told_why() {
    let (c, certs) = tls_node(false, &["--client-max-connections", "1"]);
    let client = c.node(1).client.clone();
    let _held = shoal_testkit::wait_some("the one connection served", WAIT, || {
        certs.tls_open(&client, None).ok()
    });
    let mut over = certs
        .tls_open(&client, None)
        .expect("the TLS handshake of a connection over the limit");
    let refusal = over.next_frame().expect("an answer");
    assert_eq!(refusal.id, 0);
    match refusal.response {
        Response::Unavailable { message } => {
            assert!(message.contains("client-max-connections=1"), "{message}")
        }
        other => panic!("not the refusal: {other:?}"),
    }
    assert!(over.next_frame().is_err(), "the connection stayed open");
    // The client library and shoalctl see it too.
    let o = ctl(&c, &certs, None, &["--timeout", "3s", "get", "k"]);
    assert_ne!(o.code, 0, "{o}");
    assert!(o.err.contains("client-max-connections"), "{o}");
    let admin = c.node(1).admin.clone();
    wait_for("the refusals counted", WAIT, || {
        certs
            .https_metric(&admin, &limit_series("client-max-connections"))
            .is_some_and(|n| n >= 2)
    });
}

/// A TLS admin port over `--admin-max-connections` answers 503 inside a TLS session (a
/// plaintext answer would be a broken handshake to a TLS client).
#[test]
fn a_tls_admin_port_over_its_connection_limit_answers_503_over_tls() {
    let (c, certs) = tls_node(
        false,
        &[
            "--admin-max-connections",
            "1",
            "--admin-request-timeout",
            "60s",
        ],
    );
    let admin = c.node(1).admin.clone();
    wait_for("/health over TLS", WAIT, || {
        matches!(certs.https_get(&admin, "/health", None), Ok((200, _)))
    });
    // Holds the one connection: its handshake is done, its request never comes.
    let _held = certs.tls_open(&admin, None).expect("a TLS connection");
    let (code, body) = certs
        .https_get(&admin, "/health", None)
        .expect("an answer over TLS");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("too many admin connections"), "{body}");
}
