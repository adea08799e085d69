//! Open files: each hosted group keeps [`FDS_PER_GROUP`] descriptors open (its log segment,
//! its log and snapshot dirs, its hard-state file), so the number of groups a node can host is
//! bounded by its open-file limit. At start shoald raises its soft limit to the hard one (the
//! soft default of 1,024 would stop a node at about 200 groups); then a group that would leave
//! less than the connections' reserve free is refused in words an operator can act on —
//! creating it (on group 0's leader), opening it at start, or joining it — instead of failing
//! later with "too many open files" in the middle of a segment roll or a snapshot.

use std::fmt;

use super::config::ServerConfig;

/// Descriptors one hosted group holds open (measured: `/proc/PID/fd` of a node with 200 idle
/// groups lists 201 × {segment, log dir, snapshot dir, hard state}).
pub const FDS_PER_GROUP: u64 = 4;
/// Descriptors kept for what is not a group or a connection: listeners, the event loop, the
/// sync threads' files, a background snapshot being written, a segment being prepared, the
/// data dir lock, standard streams.
const BASE_RESERVE: u64 = 64;

/// The node's open-file limit and what it keeps back for connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FdBudget {
    /// The soft `RLIMIT_NOFILE` in force.
    pub limit: u64,
    /// Descriptors kept for connections and the node's own files.
    pub reserve: u64,
}

/// A group that does not fit the open-file limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TooManyGroups {
    /// Groups the node would host with it.
    pub groups: u64,
    /// Descriptors they and the reserve need.
    pub needed: u64,
    /// The budget.
    pub budget: FdBudget,
}

impl fmt::Display for TooManyGroups {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "this node cannot host {} groups: they need about {} open files ({} per group and {} \
             kept for connections and the node's own files) and its open-file limit is {}; raise \
             the limit (LimitNOFILE= in the service unit, `ulimit -n` in a shell) and restart it",
            self.groups, self.needed, FDS_PER_GROUP, self.budget.reserve, self.budget.limit
        )
    }
}

impl FdBudget {
    /// The budget of a node configured by `cfg` under the open-file limit `limit`.
    pub fn new(cfg: &ServerConfig, limit: u64) -> FdBudget {
        let connections = cfg.client_limits.max_connections
            + cfg.peer_limits.max_connections
            + cfg.admin_limits.max_connections;
        FdBudget {
            limit,
            reserve: BASE_RESERVE + connections as u64,
        }
    }

    /// Whether the node may host `groups` groups.
    pub fn check(&self, groups: usize) -> Result<(), TooManyGroups> {
        let groups = groups as u64;
        let needed = self.reserve + groups * FDS_PER_GROUP;
        if needed <= self.limit {
            Ok(())
        } else {
            Err(TooManyGroups {
                groups,
                needed,
                budget: *self,
            })
        }
    }
}

/// Raise this process's soft open-file limit to its hard limit; returns the soft limit in force
/// afterwards (unchanged when it cannot be read or raised, which is logged).
pub fn raise_soft_limit() -> u64 {
    let mut l = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) != 0 {
            log::warn!("cannot read the open-file limit; assuming 1024");
            return 1024;
        }
        if l.rlim_cur >= l.rlim_max {
            return l.rlim_cur;
        }
        let was = l.rlim_cur;
        l.rlim_cur = l.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &l) != 0 {
            log::warn!(
                "cannot raise the open-file limit from {was} to {}; staying at {was}",
                l.rlim_max
            );
            return was;
        }
        log::info!("open-file limit raised from {was} to {}", l.rlim_max);
        l.rlim_max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budget(limit: u64, reserve: u64) -> FdBudget {
        FdBudget { limit, reserve }
    }

    #[test]
    fn groups_fit_until_the_reserve_would_be_touched() {
        let b = budget(1_000, 200);
        assert!(b.check(0).is_ok());
        assert!(b.check(200).is_ok(), "200 × 4 + 200 = 1,000 fits exactly");
        let e = b.check(201).unwrap_err();
        assert_eq!(e.needed, 1_004);
        let text = e.to_string();
        assert!(text.contains("cannot host 201 groups"), "{text}");
        assert!(text.contains("open-file limit is 1000"), "{text}");
        assert!(text.contains("LimitNOFILE"), "{text}");
    }

    #[test]
    fn the_reserve_counts_every_kind_of_connection() {
        let cfg = ServerConfig::resolve(crate::server::config::Flags::default()).unwrap();
        let b = FdBudget::new(&cfg, 65_536);
        let conns = cfg.client_limits.max_connections
            + cfg.peer_limits.max_connections
            + cfg.admin_limits.max_connections;
        assert_eq!(b.reserve, BASE_RESERVE + conns as u64);
        assert!(conns > 0);
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_one() {
        let soft = raise_soft_limit();
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit only writes the struct passed by pointer.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) }, 0);
        assert_eq!(soft, l.rlim_cur);
        assert_eq!(l.rlim_cur, l.rlim_max);
    }
}
