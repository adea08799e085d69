//! The members named at bootstrap or in a membership change: `id=raft[/client]` lists, the
//! client address a raft address implies, and the rule that no two ports share an address.

use std::net::SocketAddr;

use shoal_core::NodeId;

/// One member named at bootstrap or in a membership change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberSpec {
    /// Node id.
    pub id: NodeId,
    /// Raft address.
    pub raft_addr: String,
    /// Client address.
    pub client_addr: String,
}

/// The client address a raft address implies when none is given: the same host, port + 1.
pub fn default_client_addr(raft_addr: &str) -> Result<String, String> {
    let (host, port) = raft_addr
        .rsplit_once(':')
        .ok_or_else(|| format!("address {raft_addr:?} has no :port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("address {raft_addr:?} has an invalid port"))?;
    let next = port
        .checked_add(1)
        .ok_or_else(|| format!("address {raft_addr:?}: port + 1 overflows"))?;
    Ok(format!("{host}:{next}"))
}

/// Parse one `raft_addr[/client_addr]` pair.
pub fn parse_addr_pair(id: NodeId, s: &str) -> Result<MemberSpec, String> {
    let (raft, client) = match s.split_once('/') {
        Some((r, c)) => (r.trim().to_string(), c.trim().to_string()),
        None => {
            let r = s.trim().to_string();
            let c = default_client_addr(&r)?;
            (r, c)
        }
    };
    if raft.is_empty() || !raft.contains(':') {
        return Err(format!(
            "member {id}: raft address {raft:?} is not host:port"
        ));
    }
    Ok(MemberSpec {
        id,
        raft_addr: raft,
        client_addr: client,
    })
}

/// Parse `1=127.0.0.1:7001,2=127.0.0.1:7011/127.0.0.1:7012`.
pub fn parse_members(s: &str) -> Result<Vec<MemberSpec>, String> {
    let mut out: Vec<MemberSpec> = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (id, addr) = part
            .split_once('=')
            .ok_or_else(|| format!("member {part:?} is not id=host:port"))?;
        let id: NodeId = id
            .trim()
            .parse()
            .map_err(|_| format!("member {part:?}: id {id:?} is not a number"))?;
        if id == 0 {
            return Err(format!("member {part:?}: node id 0 is reserved"));
        }
        if out.iter().any(|m| m.id == id) {
            return Err(format!("member id {id} is listed twice"));
        }
        out.push(parse_addr_pair(id, addr)?);
    }
    Ok(out)
}

pub(super) fn check_addr(name: &str, a: &str) -> Result<(), String> {
    a.parse::<SocketAddr>()
        .map(|_| ())
        .map_err(|_| format!("{name} {a:?} is not an ip:port address"))
}

/// Two of the node's own listen addresses, or two members' addresses, must differ.
pub(super) fn check_distinct(own: &[(&str, &str)], members: &[MemberSpec]) -> Result<(), String> {
    for (i, (na, a)) in own.iter().enumerate() {
        if let Some((nb, _)) = own[..i].iter().find(|(_, b)| b == a) {
            return Err(format!(
                "{nb} and {na} are both {a}; every port needs its own address"
            ));
        }
    }
    let mut seen: Vec<(&str, NodeId)> = Vec::new();
    for m in members {
        for addr in [m.raft_addr.as_str(), m.client_addr.as_str()] {
            if let Some((_, other)) = seen.iter().find(|(a, _)| *a == addr) {
                return Err(format!(
                    "--initial-members: members {other} and {} both use {addr}; every member needs its own addresses",
                    m.id
                ));
            }
            seen.push((addr, m.id));
        }
    }
    Ok(())
}
