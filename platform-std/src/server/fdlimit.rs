//! Open files: an idle group keeps one descriptor open (its log segment); a busy one holds a
//! second now and then (the next segment being prepared, a hard-state save until it is synced,
//! a dir while an entry changes, a snapshot being written or read), so the number of groups a
//! node can host is bounded by its open-file limit. At start shoald raises its soft limit to
//! the hard one (the usual soft default of 1,024 would stop a node at about 800 groups); then
//! a group that would eat into the descriptors kept for connections is refused in words an
//! operator can act on — when it is created (on group 0's leader), opened at start, or joined
//! — instead of failing later with "too many open files".

use std::fmt;

use super::config::ServerConfig;

/// Descriptors every hosted group holds open (measured: `/proc/PID/fd` of a node with 200 idle
/// groups lists one segment file per group and nothing else per group).
pub const FDS_PER_GROUP: u64 = 1;
/// One group in this many is counted with a second descriptor, for the files busy groups hold
/// for a moment (each of those opens is refused, not fatal, when none is left).
pub const BUSY_SHARE: u64 = 4;
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
            "this node cannot host {} groups: they need about {} open files ({} per group, one \
             more for one group in {}, and {} kept for connections and the node's own files) and \
             its open-file limit is {}; raise the limit (LimitNOFILE= in the service unit, \
             `ulimit -n` in a shell) and restart it",
            self.groups,
            self.needed,
            FDS_PER_GROUP,
            BUSY_SHARE,
            self.budget.reserve,
            self.budget.limit
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
        let needed = self.reserve + groups * FDS_PER_GROUP + groups.div_ceil(BUSY_SHARE);
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
        assert!(b.check(640).is_ok(), "640 + 160 + 200 = 1,000 fits exactly");
        let e = b.check(641).unwrap_err();
        assert_eq!(e.needed, 1_002);
        let e = b.check(201).map(|()| b.check(700).unwrap_err()).unwrap();
        assert_eq!(e.needed, 200 + 700 + 175);
        let text = e.to_string();
        assert!(text.contains("cannot host 700 groups"), "{text}");
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
