//! Groups are defined once for the cluster, through group 0's log: a second, different
//! definition of a group id is refused wherever it is asked (it used to give the asking node a
//! group of its own); group 0 cannot be removed (it used to come back empty after a restart,
//! its vote history gone); a removed group's data is deleted on every member after the grace
//! period, also on a member that was down when it was removed; groups survive restarts; a node
//! added to a group later creates it when the group's leader first sends to it.
#![cfg(unix)]

use std::path::Path;

use shoal_client::protocol::{MemberChange, ReadMode, Request, Response};
use shoal_core::message::{Message, Vote};
use shoal_core::wire::{self, Body};
use shoal_core::NO_NODE;
use shoal_testkit::client::series_value;
use shoal_testkit::peer::{Identity, PeerInbox, PeerLink};
use shoal_testkit::{wait_for, wait_some, Cluster, ClusterBuilder, WAIT};

/// The entries of `dir` whose names start with `prefix`.
fn entries(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_group_has_one_definition_group_0_stays_and_removed_groups_free_their_disk() {
    let mut c = Cluster::builder()
        .args(&["--group-remove-grace", "1s"])
        .build();
    c.start_all();
    c.wait_leader(0);

    // `group create 8` with 1,2,3 through node 1, then with 3 alone through node 3: the second
    // is refused, naming the definition that holds, and node 3 gets no group of its own.
    c.ctl_at(&[1], &["--group", "8", "group", "create", "1,2,3"])
        .ok();
    let second = c.ctl_at(&[3], &["--group", "8", "group", "create", "3"]);
    assert_ne!(second.code, 0, "{second}");
    assert!(
        second.err.contains("already exists with members [1, 2, 3]"),
        "{second}"
    );
    // The same definition again is fine (a retried create).
    c.ctl_at(&[2], &["--group", "8", "group", "create", "3,2,1"])
        .ok();
    let leader8 = c.wait_leader(8);
    for id in [1u64, 2, 3] {
        wait_for(&format!("node {id} to host group 8"), WAIT, || {
            c.groups(id) == Some(vec![0, 8])
        });
        let s = c.status(id, 8).expect("status of group 8");
        let mut members: Vec<u64> = s.members.iter().map(|m| m.id).collect();
        members.sort_unstable();
        assert_eq!(members, vec![1, 2, 3], "node {id}: {s:?}");
        // The admin port's /groups says the same as the client port's GroupList.
        let (code, body) = c.http_get(id, "/groups").expect("GET /groups");
        assert_eq!((code, body.trim()), (200, "[0,8]"), "node {id}");
    }
    c.put(8, 81, 1, "in8", "v");
    c.assert_reads(3, 8, "in8", "v");
    // A node outside group 0 cannot be a member, and the records are readable, not writable.
    let r = c.call_any(8, Request::GroupCreate { members: vec![9] }, "create");
    assert!(
        matches!(&r, Response::Error { message, .. } if message.contains("node 9 is not a member of the cluster")),
        "{r:?}"
    );
    let list = c.ctl(&["list", "__shoal.groups"]);
    assert!(list.ok().contains("__shoal.groups.8"), "{list}");
    let write = c.ctl(&["put", "__shoal.groups.8", "mine"]);
    assert_ne!(write.code, 0, "{write}");
    assert!(write.err.contains("__shoal"), "{write}");

    // Group 0 cannot be removed, through any node.
    for id in [1u64, 2, 3] {
        let out = c.ctl_at(&[id], &["--group", "0", "group", "remove"]);
        assert_ne!(out.code, 0, "{out}");
        assert!(out.err.contains("group 0 cannot be removed"), "{out}");
    }
    assert!(c.node(1).dir.join("group-0").is_dir());

    // Groups survive a restart, data and all.
    let term0 = c.status(3, 0).unwrap().term;
    c.stop(3);
    c.start(3);
    wait_for("node 3 to host group 8 again", WAIT, || {
        c.get(3, 8, "in8", ReadMode::Local) == Some(b"v".to_vec())
    });
    assert!(c.status(3, 0).unwrap().term >= term0);

    // Remove group 8 while node 2 is down: nodes 1 and 3 stop it, set its data aside and
    // delete it after the grace period; node 2 does the same when it comes back.
    let down = if leader8 == 2 { 3 } else { 2 };
    c.kill(down);
    let up: Vec<u64> = [1u64, 2, 3].into_iter().filter(|&i| i != down).collect();
    c.ctl_at(&up, &["--group", "8", "group", "remove"]).ok();
    for &id in &up {
        wait_for(&format!("node {id} to free group 8"), WAIT, || {
            c.groups(id) == Some(vec![0])
                && entries(&c.node(id).dir, "group-8").is_empty()
                && entries(&c.node(id).dir, "removed-group-8").is_empty()
        });
        wait_for(&format!("node {id} to count the freed dir"), WAIT, || {
            c.gauge(id, "shoal_group_dirs_freed_total") == 1
                && c.gauge(id, "shoal_group_dirs_pending_removal") == 0
        });
        // The raft loop no longer works on it: at most group 0 is in its round.
        wait_for(
            &format!("node {id} to drop group 8 from its rounds"),
            WAIT,
            || c.gauge(id, "shoal_groups_active") <= 1,
        );
    }
    assert!(c.node(down).dir.join("group-8").is_dir());
    c.start(down);
    wait_for(&format!("node {down} to free group 8 too"), WAIT, || {
        c.groups(down) == Some(vec![0])
            && entries(&c.node(down).dir, "group-8").is_empty()
            && entries(&c.node(down).dir, "removed-group-8").is_empty()
    });
    // A removed group's id is not used again.
    let again = c.ctl(&["--group", "8", "group", "create", "1,2,3"]);
    assert_ne!(again.code, 0, "{again}");
    assert!(again.err.contains("group 8 was removed"), "{again}");
}

#[test]
fn a_node_added_to_a_group_creates_it_when_its_leader_sends() {
    let mut c = Cluster::builder().spares([4]).build();
    c.start_all();
    c.wait_leader(0);
    c.ctl(&["--group", "5", "group", "create", "1,2,3"]).ok();
    c.wait_leader(5);
    c.put(5, 51, 1, "g5", "before");

    // Only members of the cluster can join a group.
    let add4 = Request::ChangeMembers(MemberChange::Add {
        id: 4,
        raft_addr: c.node(4).raft.clone(),
        observer: false,
    });
    let r = c.call_any(5, add4.clone(), "add node 4 to group 5");
    assert!(
        matches!(&r, Response::Error { message, .. } if message.contains("not a member of the cluster")),
        "{r:?}"
    );
    // In group 0 first (which writes its member record), then in group 5.
    c.start_joining(4);
    let r = c.call_any(0, add4.clone(), "add node 4 to group 0");
    assert!(matches!(r, Response::Done { .. }), "{r:?}");
    let r = c.call_any(5, add4, "add node 4 to group 5");
    assert!(matches!(r, Response::Done { .. }), "{r:?}");
    wait_for("node 4 to serve group 5", WAIT, || {
        c.get(4, 5, "g5", ReadMode::Local) == Some(b"before".to_vec())
    });
    let s = c.status(4, 5).expect("status");
    assert!(
        s.members.iter().any(|m| m.id == 4 && m.role == "voter"),
        "{s:?}"
    );
    c.put(5, 51, 2, "g5", "after");
    c.assert_reads(4, 5, "g5", "after");
    // Its member record is readable everywhere, in words through shoalctl.
    let rec = c.ctl(&["get", "__shoal.members.4"]);
    assert!(rec.ok().contains(&c.node(4).raft), "{rec}");
}

/// Node 3 is played by the test, holding a copy of group 7 whose members differ: node 1
/// refuses its group handshake (naming both member lists), counts it and takes none of its
/// group 7 frames; the same node with the right members passes and is heard.
#[test]
fn the_group_handshake_refuses_a_copy_of_a_group_with_other_members() {
    const TERM: u64 = 1 << 40;
    let mut c = Cluster::builder().build();
    c.start(1);
    c.start(2);
    c.wait_leader(0);
    let me = Identity {
        cluster_id: 1,
        node_id: 3,
        members: vec![1, 2, 3],
    };
    let inbox = PeerInbox::listen(&me, &c.node(3).raft).expect("node 3's raft address");
    c.ctl(&["--group", "7", "group", "create", "1,2,3"]).ok();
    c.wait_leader(7);
    let (mut link, _) = PeerLink::dial(&me, 1, &c.node(1).raft).expect("dial node 1");
    let vote = me.frame(
        7,
        1,
        &Body::Raft(Message::Vote(Vote {
            term: TERM,
            last_index: 0,
            last_term: 0,
            transfer: true,
        })),
    );
    let greeting = |f: &wire::Frame<'_>| {
        f.header.group == 7
            && f.header.from == 1
            && matches!(&f.body, Body::Hello(h) if h.expected_peer == 3)
    };
    // Node 1 drops the vote and greets node 3 for group 7, naming its members.
    link.send(&vote).unwrap();
    let hello = inbox
        .next_matching(WAIT, greeting)
        .expect("a group 7 Hello");
    match wire::decode(&hello).unwrap().0.body {
        Body::Hello(h) => assert_eq!(h.members.as_slice(), &[1, 2, 3]),
        other => panic!("{other:?}"),
    }
    // The copy with node 3 alone is refused, with both member lists in the log.
    link.send(&me.frame(7, 1, &me.hello(7, 1, &[3]))).unwrap();
    let refusal = inbox
        .next_matching(WAIT, |f| {
            f.header.group == 7 && matches!(f.body, Body::HelloRefused(_))
        })
        .expect("a refusal");
    match wire::decode(&refusal).unwrap().0.body {
        Body::HelloRefused(why) => {
            assert!(
                why.contains("not a member in the peer's configuration"),
                "{why}"
            )
        }
        other => panic!("{other:?}"),
    }
    wait_for("the refusal to be counted", WAIT, || {
        c.gauge(1, "shoal_group_handshake_refusals_total") >= 1
    });
    assert!(
        c.node(1)
            .log()
            .contains("refused the group handshake of node 3"),
        "{}",
        c.node(1).log()
    );
    // Its frames stay dropped: each one is answered with a new greeting, never taken.
    wait_some("another greeting for a dropped vote", WAIT, || {
        link.send(&vote).unwrap();
        inbox.next_matching(std::time::Duration::from_millis(100), greeting)
    });
    assert!(c.status(1, 7).unwrap().term < TERM);
    // With the members node 1 has, the handshake passes and the vote is heard.
    link.send(&me.frame(7, 1, &me.hello(7, 1, &[1, 2, 3])))
        .unwrap();
    inbox
        .next_matching(WAIT, |f| {
            f.header.group == 7 && matches!(&f.body, Body::Hello(h) if h.expected_peer == NO_NODE)
        })
        .expect("an accepting Hello");
    link.send(&vote).unwrap();
    wait_for("node 1 to hear node 3 in group 7", WAIT, || {
        c.status(1, 7).is_some_and(|s| s.term >= TERM)
    });
}

/// Connection limits that keep 92 descriptors in reserve (64 + 16 client + 8 peer + 4 admin).
fn small_reserve(b: ClusterBuilder) -> ClusterBuilder {
    b.args(&[
        "--client-max-connections",
        "16",
        "--peer-max-connections",
        "8",
        "--admin-max-connections",
        "4",
    ])
}

/// A node hosts as many groups as its open-file limit has room for (one descriptor each, one
/// more for one group in four, besides a reserve for its connections): one more is refused when it is created, in words naming the
/// limit, and the node keeps serving the groups it has; a restart under a lower limit is refused
/// at start in the same words (nothing lost); under the old limit every group comes back.
#[test]
fn groups_past_the_open_file_limit_are_refused_in_words_and_lose_nothing() {
    // Reserve: 64 + 16 client + 8 peer + 4 admin connections = 92; 3 groups (0, 1, 2) need
    // 3 + 1 more: 96.
    let mut c = small_reserve(Cluster::builder().voters([1])).build();
    c.node_mut(1).max_open_files = Some(96);
    c.start(1);
    c.wait_leader(0);
    for g in ["1", "2"] {
        c.ctl(&["--group", g, "group", "create", "1"]).ok();
    }
    c.wait_leader(2);
    c.put(1, 11, 1, "one", "1");
    c.put(2, 12, 1, "two", "2");
    // An idle group holds one descriptor: its segment (not its dirs, hard state or snapshot).
    let pid = c.node_mut(1).proc_mut().expect("running").pid();
    for g in [0, 1, 2] {
        let dir = format!("/group-{g}/");
        wait_for(&format!("group {g} to hold one file"), WAIT, || {
            let open: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
                .expect("the node's descriptors")
                .flatten()
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .map(|t| t.to_string_lossy().to_string())
                .filter(|t| t.contains(&dir))
                .collect();
            open.len() == 1 && open[0].ends_with(".log")
        });
    }

    let third = c.ctl(&["--group", "3", "group", "create", "1"]);
    assert_ne!(third.code, 0, "{third}");
    for words in [
        "cannot host 4 groups",
        "open-file limit is 96",
        "LimitNOFILE",
    ] {
        assert!(third.err.contains(words), "{words:?} in {third}");
    }
    assert_eq!(c.groups(1), Some(vec![0, 1, 2]), "no group 3 anywhere");
    c.put(0, 10, 1, "zero", "0");
    c.put(2, 12, 2, "two", "2b");

    // Restarted under room for two groups: refused at start, saying why.
    assert!(c.stop(1).success());
    c.node_mut(1).max_open_files = Some(95);
    c.start(1);
    let status = c.wait_exit(1, WAIT);
    assert_eq!(status.code(), Some(2), "{}", c.node(1).log());
    assert!(
        c.node(1).log().contains("cannot host 3 groups"),
        "{}",
        c.node(1).log()
    );

    // Under the old limit every group and its data is back.
    c.node_mut(1).max_open_files = Some(96);
    c.start(1);
    c.wait_leader(2);
    assert_eq!(c.groups(1), Some(vec![0, 1, 2]));
    assert_eq!(
        c.get(1, 1, "one", ReadMode::Linearizable),
        Some(b"1".to_vec())
    );
    assert_eq!(
        c.get(1, 2, "two", ReadMode::Linearizable),
        Some(b"2b".to_vec())
    );
}

/// Start nodes 1 and 2, wait for group 0's leader (returned), then start node 3: a refusal of
/// node 3's then comes from a member, not from group 0's leader checking its own room.
fn start_node_3_last(c: &mut Cluster) -> u64 {
    c.start(1);
    c.start(2);
    let l0 = c.wait_leader(0);
    c.start(3);
    l0
}

/// Define `groups` on nodes 1, 2 and 3 through group 0's leader `l0`.
fn define_groups(c: &Cluster, l0: u64, groups: impl Iterator<Item = u32>) {
    for g in groups {
        c.ctl_at(
            &[l0],
            &["--group", &g.to_string(), "group", "create", "1,2,3"],
        )
        .ok();
    }
}

/// A member without room for one more group (its open-file limit) does not create it, says why
/// once (not at every retry), and the group is served by the members that have room.
#[test]
fn a_member_without_room_for_a_group_says_why_once_and_the_others_serve_it() {
    let mut c = small_reserve(Cluster::builder()).build();
    // Node 3 has room for group 0 and one more (92 + 2 + 1); nodes 1 and 2 for many.
    // Node 3 starts once 1 and 2 have a leader: the refusal must come from a member, not
    // from group 0's leader checking its own room.
    c.node_mut(3).max_open_files = Some(95);
    let l0 = start_node_3_last(&mut c);
    define_groups(&c, l0, 1..=2);
    c.wait_leader(2);
    c.put(2, 21, 1, "k", "v");
    assert_eq!(
        c.get(1, 2, "k", ReadMode::Linearizable),
        Some(b"v".to_vec())
    );
    wait_for("node 3 to host group 1 only", WAIT, || {
        c.groups(3) == Some(vec![0, 1])
    });
    const WHY: &str = "group 2: cannot create it: group 2: this node cannot host 3 groups";
    wait_for("node 3 to say why", WAIT, || c.node(3).log().contains(WHY));
    // Tried again every 10 s, logged once.
    std::thread::sleep(std::time::Duration::from_secs(12));
    assert_eq!(
        c.node(3).log().matches(WHY).count(),
        1,
        "{}",
        c.node(3).log()
    );
    c.put(2, 21, 2, "k", "w");
    assert_eq!(
        c.get(2, 2, "k", ReadMode::Linearizable),
        Some(b"w".to_vec())
    );
}

/// A member that comes back to find many groups defined opens their storage together, but no
/// more than its open-file limit has room for: with room for two more groups and four
/// defined while it was down, it creates two, refuses the others in words naming the limit,
/// and the group it hosts serves from it.
#[test]
fn a_member_back_to_many_new_groups_creates_what_its_limit_has_room_for() {
    let mut c = small_reserve(Cluster::builder()).build();
    let l0 = start_node_3_last(&mut c);
    wait_for("node 3 to host group 0", WAIT, || {
        c.groups(3) == Some(vec![0])
    });
    c.stop(3);
    define_groups(&c, l0, 1..=4);
    // Room for group 0 and two more (92 + 3 + 1).
    c.node_mut(3).max_open_files = Some(96);
    c.start(3);
    wait_for("node 3 to host two new groups", WAIT, || {
        c.groups(3).is_some_and(|g| g.len() == 3)
    });
    const WHY: &str = "this node cannot host 4 groups";
    wait_for("node 3 to say why", WAIT, || c.node(3).log().contains(WHY));
    // It stays at what fits, and a group it created serves from it.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let hosted = c.groups(3).expect("node 3 answers");
    assert_eq!(hosted.len(), 3, "{hosted:?}");
    let g = hosted[1];
    c.put(g, 31, 1, "k", "v");
    c.make_leader(3, g);
    assert_eq!(
        c.get(3, g, "k", ReadMode::Linearizable),
        Some(b"v".to_vec())
    );
}

/// The watch history of a node's groups shares `--kv-events-node-mb`: each group gets the
/// budget over the next power of two of the groups the node hosts, at most `--kv-event-mb`,
/// as groups are created, after a restart, and after groups are removed.
#[test]
fn a_nodes_groups_share_its_watch_history_budget() {
    let mut c = Cluster::builder()
        .voters([1])
        .fsync("never")
        .args(&["--kv-events-node-mb", "16"])
        .build();
    c.start(1);
    c.wait_leader(0);
    let bytes = |c: &Cluster, g: u32, want: u64| {
        let series = format!("shoal_kv_event_bytes{{group=\"{g}\"}}");
        wait_for(
            &format!("group {g}'s history to hold {want} bytes"),
            WAIT,
            || {
                c.http_get(1, "/metrics")
                    .and_then(|(_, body)| shoal_testkit::client::series_value(&body, &series))
                    == Some(want)
            },
        );
    };
    bytes(&c, 0, 8 << 20); // alone: the per-group cap
    const GROUPS: u32 = 7;
    c.create_groups(1..=GROUPS, "1");
    // Eight groups share 16 MiB, the first ones made included.
    for g in 0..=GROUPS {
        bytes(&c, g, 2 << 20);
    }
    c.kill(1);
    c.start(1);
    for g in 0..=GROUPS {
        c.wait_leader(g);
        bytes(&c, g, 2 << 20);
    }
    for g in 4..=GROUPS {
        c.ctl(&["--group", &g.to_string(), "group", "remove"]).ok();
    }
    // Four left: 4 MiB each.
    for g in 0..4 {
        bytes(&c, g, 4 << 20);
    }
}

/// `/metrics` on a node hosting more groups than `--metrics-group-series`: one node-wide series
/// per family instead of one per group (a node with thousands of groups stays cheap to
/// scrape), counting every group's writes; under the limit, each group has its own.
#[test]
fn past_metrics_group_series_a_family_is_one_node_wide_series() {
    let mut c = Cluster::builder()
        .voters([1])
        .args(&["--metrics-group-series", "2"])
        .build();
    c.start(1);
    c.wait_leader(0);
    let (_, body) = c.http_get(1, "/metrics").expect("/metrics");
    assert!(
        body.contains("shoal_proposals_total{group=\"0\"}"),
        "one group, under the limit: its own series\n{body}"
    );
    for g in ["1", "2"] {
        c.ctl(&["--group", g, "group", "create", "1"]).ok();
    }
    c.wait_leader(2);
    c.put(1, 11, 1, "one", "1");
    c.put(2, 12, 1, "two", "2");
    c.put(2, 12, 2, "two", "2b");
    wait_for("three groups, node-wide series", WAIT, || {
        let (_, body) = c.http_get(1, "/metrics").expect("/metrics");
        series_value(&body, "shoal_groups_hosted") == Some(3)
            && series_value(&body, "shoal_proposals_total").is_some_and(|n| n >= 3)
    });
    let (_, body) = c.http_get(1, "/metrics").expect("/metrics");
    assert!(
        !body.contains("group=\"1\""),
        "no series of group 1:\n{body}"
    );
    assert_eq!(series_value(&body, "shoal_is_leader"), Some(3), "{body}");
    assert_eq!(
        series_value(&body, "shoal_groups_unhealthy"),
        Some(0),
        "{body}"
    );
    assert!(
        !body.contains("\nshoal_term"),
        "terms are left out:\n{body}"
    );
}

/// A client's `Health` answer names every group the node hosts; judged and serialized again
/// for each request, one client asking again and again on a node with 1,000 groups took
/// nearly all of the raft thread (other clients' writes fell from 135k/s to 15k/s). So did
/// `NodeStatus`, whose answer carries the same health (14k/s). The health is judged at most
/// every 100 ms for both: 300 requests of each in flight on one connection are all answered,
/// each naming every group (and `NodeStatus` its own group's status), from a few judgements;
/// a group created since is named within a moment.
#[test]
fn health_requests_share_one_answer_for_a_moment() {
    use shoal_client::protocol::HealthInfo;
    use shoal_testkit::client::{encode_request, Conn};
    const GROUPS: u32 = 12;
    const ASKED: u64 = 300;
    let mut c = Cluster::builder().voters([1]).build();
    c.start(1);
    c.wait_leader(0);
    c.create_groups(1..=GROUPS, "1");
    let counts = |c: &Cluster| {
        let (_, body) = c.http_get(1, "/metrics").expect("/metrics");
        let n = |s: &str| series_value(&body, s).unwrap_or_else(|| panic!("no {s}: {body}"));
        (
            n("shoal_client_health_answers_total"),
            n("shoal_client_health_judged_total"),
        )
    };
    let before = counts(&c);
    let mut conn = Conn::open(&c.node(1).client).expect("connect");
    let mut out = Vec::new();
    // Odd ids ask for health, even ones for the node's status in group 5.
    for id in 1..=2 * ASKED {
        match id % 2 {
            1 => encode_request(id, 0, Request::Health, &mut out),
            _ => encode_request(id, 5, Request::NodeStatus, &mut out),
        }
    }
    let started = std::time::Instant::now();
    conn.send_raw(&out).expect("send");
    let every: Vec<u32> = (0..=GROUPS).collect();
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 * ASKED as usize {
        let f = conn.next_frame().expect("an answer");
        let groups = match (f.id % 2, f.response) {
            (1, Response::Health(HealthInfo { groups, .. })) => groups,
            (0, Response::NodeStatus(s)) => {
                assert_eq!((s.status.group, s.status.leader), (5, 1), "{s:?}");
                assert!(s.health.healthy, "{s:?}");
                s.health.groups
            }
            (_, other) => panic!("request {} answered {other:?}", f.id),
        };
        let named: Vec<u32> = groups.iter().map(|g| g.group).collect();
        assert_eq!(named, every, "request {}", f.id);
        assert!(seen.insert(f.id), "request {} answered twice", f.id);
    }
    let took_ms = started.elapsed().as_millis() as u64;
    wait_for("the answers counted", WAIT, || {
        counts(&c).0 >= before.0 + ASKED
    });
    let (answers, judged) = counts(&c);
    assert_eq!(answers - before.0, ASKED);
    // At most one judgement per 100 ms the answers took, and the first.
    assert!(
        judged - before.1 <= took_ms / 100 + 2,
        "{} judgements for {} answers in {took_ms} ms",
        judged - before.1,
        2 * ASKED
    );
    // A reused answer is no older than 100 ms: a new group is named soon, in both.
    c.ctl(&["--group", "99", "group", "create", "1"]).ok();
    c.wait_leader(99);
    wait_for("group 99 named in a Health answer", WAIT, || {
        match conn.call(0, Request::Health).expect("health") {
            Response::Health(h) => h.groups.iter().any(|g| g.group == 99),
            other => panic!("{other:?}"),
        }
    });
    match conn.call(99, Request::NodeStatus).expect("node status") {
        Response::NodeStatus(s) => {
            assert_eq!(s.status.group, 99);
            assert!(s.health.groups.iter().any(|g| g.group == 99), "{s:?}");
        }
        other => panic!("{other:?}"),
    }
}
