//! Where the raft thread runs (`--raft-cpu`).
//!
//! The raft thread does a node's serial work: every request in, every answer out, and each
//! round's share of the groups' flushes. With many busy groups it is the node's limit, and
//! every time another thread (a sync thread waking for its next round, a flush thread, a
//! peer's reader, a client on the same machine) runs on its core it loses that time and its
//! caches. `--raft-cpu auto` (or a CPU number) gives it a core of its own: the raft thread runs
//! on that CPU alone and every other thread of the node runs on the other CPUs this process
//! may use. Other processes are not moved; an operator who wants the core to itself keeps them
//! off it (`taskset`, `systemd`'s `CPUAffinity=`). The price: a pinned thread cannot move off a
//! CPU something else holds, so on a machine whose other work lands there it loses more than
//! it gains (docs/BENCHMARKS.md, "The raft thread on a CPU of its own"); hence off by default.
//!
//! How: before the node starts any thread, the main thread moves onto the other CPUs, so every
//! thread started from it inherits them; the main thread then becomes the raft thread and moves
//! onto the raft CPU ([`enter_raft_cpu`]); a thread the raft thread starts later would inherit
//! the raft CPU, so each one moves off it first ([`leave_raft_cpu`]). Linux only.

use std::sync::OnceLock;

/// What `--raft-cpu` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RaftCpu {
    /// The raft thread runs wherever the kernel puts it (the default).
    #[default]
    Off,
    /// The CPU this process may use that has served the fewest device interrupts (ties: the
    /// last of them).
    Auto,
    /// This CPU.
    Cpu(usize),
}

impl std::str::FromStr for RaftCpu {
    type Err = String;

    fn from_str(s: &str) -> Result<RaftCpu, String> {
        match s.trim() {
            "off" => Ok(RaftCpu::Off),
            "auto" => Ok(RaftCpu::Auto),
            n => n.parse().map(RaftCpu::Cpu).map_err(|_| {
                format!("--raft-cpu {s:?}: expected `off`, `auto` or a CPU number (0, 1, ..)")
            }),
        }
    }
}

/// The raft thread's CPU and everyone else's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// The raft thread's CPU.
    pub raft: usize,
    /// Every other CPU this process may use, for the node's other threads.
    pub others: Vec<usize>,
}

static PLAN: OnceLock<Plan> = OnceLock::new();

/// Device interrupts each CPU has served since boot, from the text of `/proc/interrupts`: the
/// rows of numbered interrupt lines (a disk's, a network card's), not the per-CPU ones (timer,
/// rescheduling). `(cpu, count)`, by the header's `CPUn` columns.
pub fn device_interrupts(text: &str) -> Vec<(usize, u64)> {
    let mut lines = text.lines();
    let cpus: Vec<usize> = lines
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|c| c.strip_prefix("CPU")?.parse().ok())
        .collect();
    let mut counts = vec![0u64; cpus.len()];
    for line in lines {
        let mut fields = line.split_whitespace();
        let numbered = fields
            .next()
            .and_then(|f| f.strip_suffix(':'))
            .is_some_and(|irq| !irq.is_empty() && irq.bytes().all(|b| b.is_ascii_digit()));
        if !numbered {
            continue;
        }
        for (c, f) in counts.iter_mut().zip(fields) {
            match f.parse::<u64>() {
                Ok(n) => *c += n,
                Err(_) => break,
            }
        }
    }
    cpus.into_iter().zip(counts).collect()
}

/// The plan for `choice` given the CPUs this process may use (`allowed`, ascending) and the
/// device interrupts each CPU served (`irqs`, [`device_interrupts`]; a CPU missing from it
/// counts as none): `Ok(None)` when the raft thread is left alone (`off`, or `auto` with a
/// single CPU, which says why). `auto` keeps the raft thread away from the CPU that takes the
/// disk's completions: on a VM whose disk interrupts all land on one CPU, the raft thread
/// there gains nothing from its own core.
pub fn choose(
    choice: RaftCpu,
    allowed: &[usize],
    irqs: &[(usize, u64)],
) -> Result<Option<Plan>, String> {
    let raft = match choice {
        RaftCpu::Off => return Ok(None),
        RaftCpu::Auto if allowed.len() < 2 => {
            log::warn!(
                "--raft-cpu auto: this process may use {} CPU(s) ({}); the raft thread is not \
                 pinned",
                allowed.len(),
                list(allowed)
            );
            return Ok(None);
        }
        RaftCpu::Auto => {
            let served = |cpu: usize| irqs.iter().find(|c| c.0 == cpu).map_or(0, |c| c.1);
            *allowed
                .iter()
                .rev()
                .min_by_key(|&&c| served(c))
                .expect("two or more")
        }
        RaftCpu::Cpu(n) if !allowed.contains(&n) => {
            return Err(format!(
                "--raft-cpu {n}: this process may use CPUs {} only",
                list(allowed)
            ))
        }
        RaftCpu::Cpu(n) if allowed.len() < 2 => {
            return Err(format!(
                "--raft-cpu {n}: this process may use CPU {n} alone, which leaves no CPU for \
                 the node's other threads; use `off`"
            ))
        }
        RaftCpu::Cpu(n) => n,
    };
    Ok(Some(Plan {
        raft,
        others: allowed.iter().copied().filter(|&c| c != raft).collect(),
    }))
}

/// Apply `choice`: call it on the main thread before the node starts any other thread. The
/// main thread moves onto the other CPUs (and every thread started from it with them); it
/// takes the raft CPU when it becomes the raft thread ([`enter_raft_cpu`]). Nothing is pinned
/// for `off`, or for `auto` with a single CPU ([`choose`]).
pub fn apply(choice: RaftCpu) -> Result<(), String> {
    if choice == RaftCpu::Off {
        return Ok(());
    }
    let allowed = sys::allowed().map_err(|e| format!("--raft-cpu: {e}"))?;
    let irqs = std::fs::read_to_string("/proc/interrupts")
        .map(|t| device_interrupts(&t))
        .unwrap_or_default();
    let Some(plan) = choose(choice, &allowed, &irqs)? else {
        return Ok(());
    };
    sys::set_current(&plan.others).map_err(|e| format!("--raft-cpu: {e}"))?;
    log::info!(
        "the raft thread runs on CPU {}, the node's other threads on CPUs {}",
        plan.raft,
        list(&plan.others)
    );
    let _ = PLAN.set(plan);
    Ok(())
}

/// The raft CPU, if the raft thread is pinned.
pub fn raft_cpu() -> Option<usize> {
    PLAN.get().map(|p| p.raft)
}

/// Move the calling thread, the raft thread, onto the raft CPU (nothing unless pinned).
pub fn enter_raft_cpu() {
    if let Some(p) = PLAN.get() {
        if let Err(e) = sys::set_current(&[p.raft]) {
            log::warn!("the raft thread stays off CPU {}: {e}", p.raft);
        }
    }
}

/// Keep the calling thread off the raft CPU: the first thing a thread the raft thread starts
/// does (it would inherit the raft CPU). Nothing unless pinned.
pub fn leave_raft_cpu() {
    if let Some(p) = PLAN.get() {
        if let Err(e) = sys::set_current(&p.others) {
            log::warn!("a thread stays on the raft CPU {}: {e}", p.raft);
        }
    }
}

fn list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(|c| c.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(target_os = "linux")]
mod sys {
    use std::io;

    /// The CPUs the calling thread may run on, ascending.
    pub fn allowed() -> io::Result<Vec<usize>> {
        // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity writes at most
        // `size_of::<cpu_set_t>()` bytes into it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok((0..libc::CPU_SETSIZE as usize)
                .filter(|&c| libc::CPU_ISSET(c, &set))
                .collect())
        }
    }

    /// Let the calling thread run on `cpus` only.
    pub fn set_current(cpus: &[usize]) -> io::Result<()> {
        // SAFETY: as in `allowed`; CPU_SET is given indexes below CPU_SETSIZE only.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_ZERO(&mut set);
            for &c in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
                libc::CPU_SET(c, &mut set);
            }
            if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use std::io;

    pub fn allowed() -> io::Result<Vec<usize>> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "pinning threads to CPUs is supported on Linux only",
        ))
    }

    pub fn set_current(_: &[usize]) -> io::Result<()> {
        allowed().map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raft_cpu_parses_off_auto_and_numbers_and_names_what_it_wants() {
        assert_eq!("off".parse(), Ok(RaftCpu::Off));
        assert_eq!("auto".parse(), Ok(RaftCpu::Auto));
        assert_eq!(" 3 ".parse(), Ok(RaftCpu::Cpu(3)));
        let e = "fast".parse::<RaftCpu>().unwrap_err();
        assert!(e.contains("`off`, `auto` or a CPU number"), "{e}");
        assert!("-1".parse::<RaftCpu>().is_err());
    }

    #[test]
    fn the_plan_gives_the_raft_thread_one_cpu_and_the_rest_the_others() {
        let four = [0, 1, 2, 3];
        assert_eq!(choose(RaftCpu::Off, &four, &[]), Ok(None));
        let auto = choose(RaftCpu::Auto, &four, &[]).unwrap().unwrap();
        assert_eq!(
            (auto.raft, auto.others),
            (3, vec![0, 1, 2]),
            "no counts: the last CPU"
        );
        let one = choose(RaftCpu::Cpu(1), &four, &[]).unwrap().unwrap();
        assert_eq!((one.raft, one.others), (1, vec![0, 2, 3]));
        // A CPU this process may not use is refused, naming those it may.
        let e = choose(RaftCpu::Cpu(5), &[2], &[]).unwrap_err();
        assert_eq!(e, "--raft-cpu 5: this process may use CPUs 2 only");
        // One CPU: auto leaves the thread alone; a number is refused (nothing left for the
        // other threads).
        assert_eq!(choose(RaftCpu::Auto, &[4], &[]), Ok(None));
        assert!(choose(RaftCpu::Cpu(4), &[4], &[])
            .unwrap_err()
            .contains("leaves no CPU for the node's other threads"));
    }

    #[test]
    fn auto_keeps_the_raft_thread_off_the_cpus_that_serve_the_devices() {
        // As on a two-CPU VM whose disk completions all land on CPU 1.
        let text = "           CPU0       CPU1       \n \
             28:          0          0 PCI-MSIX-0000:00:01.0   0-edge      virtio0-config\n \
             34:        267          0 PCI-MSIX-0000:00:05.0   1-edge      virtio4-input\n \
             36:          0   19736328 PCI-MSIX-0000:00:02.0   1-edge      virtio1-req.0\n\
            NMI:          9          8   Non-maskable interrupts\n\
            LOC:   99999999          1   Local timer interrupts\n\
            ERR:          0\n";
        let irqs = device_interrupts(text);
        assert_eq!(irqs, [(0, 267), (1, 19_736_328)], "numbered lines only");
        let auto = choose(RaftCpu::Auto, &[0, 1], &irqs).unwrap().unwrap();
        assert_eq!((auto.raft, auto.others), (0, vec![1]));
        // Among CPUs that served as few, the last; CPUs the process may not use are ignored.
        let irqs = [(0, 5), (1, 0), (2, 7), (3, 0)];
        assert_eq!(
            choose(RaftCpu::Auto, &[0, 1, 2, 3], &irqs)
                .unwrap()
                .unwrap()
                .raft,
            3
        );
        assert_eq!(
            choose(RaftCpu::Auto, &[0, 2], &irqs).unwrap().unwrap().raft,
            0
        );
        // A number is taken as given.
        assert_eq!(
            choose(RaftCpu::Cpu(1), &[0, 1], &irqs)
                .unwrap()
                .unwrap()
                .raft,
            1
        );
        // Unreadable or strange text: no counts.
        assert_eq!(device_interrupts(""), []);
        assert_eq!(device_interrupts("CPU0\n x: 5\n"), [(0, 0)]);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_moved_onto_a_cpu_runs_there_only() {
        let allowed = sys::allowed().unwrap();
        assert!(!allowed.is_empty());
        let last = *allowed.last().unwrap();
        let seen = std::thread::spawn(move || {
            sys::set_current(&[last]).unwrap();
            sys::allowed().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(seen, [last]);
        assert_eq!(
            sys::allowed().unwrap(),
            allowed,
            "other threads are not moved"
        );
    }
}
