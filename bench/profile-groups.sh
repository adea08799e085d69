#!/usr/bin/env bash
# Where the raft thread's CPU goes per write with many active groups against one group.
#
#   bench/profile-groups.sh [GROUPS] [SECONDS]      (defaults: 64 groups, 6 s of profile)
#
# Builds `shoald` and `shoal-bench` with frame pointers (into target/profile-fp, so perf's call
# graphs hold through Shoal's code), then for 1 group and for GROUPS groups: starts one node
# with `--raft-threads 1` (every flush on the raft thread) on a temporary data dir, runs
# `shoal-bench put --groups N --clients 256`, records the raft thread with `perf record -g`
# for SECONDS mid-run, and prints ns of the raft thread's CPU per write under each of Shoal's
# functions (callees included), both cases side by side. Writes in the window are estimated
# from the run's rate. Needs `perf` (apt: linux-perf) and root or perf_event_paranoid <= 1.
# Run it on an otherwise idle machine; the figures are for finding where time goes, not for
# comparing builds (docs/BENCHMARKS.md, "64 groups: the raft thread is the limit").
set -euo pipefail
groups="${1:-64}"
secs="${2:-6}"
root="$(cd "$(dirname "$0")/.." && pwd)"
target="$root/target/profile-fp"
command -v perf >/dev/null || { echo "profile-groups.sh: perf is needed (apt-get install linux-perf)" >&2; exit 2; }
echo "== building with frame pointers into $target"
(cd "$root" && RUSTFLAGS="-Cforce-frame-pointers=yes" CARGO_TARGET_DIR="$target" \
    cargo build --release --quiet -p shoal-std --bin shoald --bin shoal-bench)
bin="$target/release"
work="$(mktemp -d)"
node=""
cleanup() {
    [ -n "$node" ] && kill "$node" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# profile N: one run with N groups; leaves $work/N.data and $work/N.writes
profile() {
    local n="$1" base=27400
    rm -rf "$work/data"
    "$bin/shoald" --data-dir "$work/data" --raft-threads 1 \
        --raft-addr "127.0.0.1:$base" --client-addr "127.0.0.1:$((base + 1))" \
        --admin-addr "127.0.0.1:$((base + 2))" > "$work/shoald-$n.log" 2>&1 &
    node=$!
    for _ in $(seq 1 100); do
        curl -sf "127.0.0.1:$((base + 2))/health" > /dev/null 2>&1 && break
        sleep 0.1
    done
    "$bin/shoal-bench" put --endpoints "127.0.0.1:$((base + 1))" --groups "$n" --clients 256 \
        --duration "$((secs + 8))s" > "$work/bench-$n.txt" 2>&1 &
    local bench=$!
    sleep 5
    perf record -F 2000 -g -t "$node" -o "$work/$n.data" -- sleep "$secs" > /dev/null 2>&1
    wait "$bench"
    kill "$node"; wait "$node" 2>/dev/null || true
    node=""
    local rate
    rate=$(awk '$1 == "put" {print $2}' "$work/bench-$n.txt")
    [ -n "$rate" ] || { echo "no put rate for $n groups:"; cat "$work/bench-$n.txt"; exit 1; } >&2
    echo "   $n group(s): $rate writes/s"
    echo $((rate * secs)) > "$work/$n.writes"
}

for n in 1 "$groups"; do
    echo "== $n group(s)"
    profile "$n"
done

python3 - "$work" "$groups" <<'PY'
import re, subprocess, sys
work, groups = sys.argv[1], sys.argv[2]

def per_write(n):
    out = subprocess.run(
        ["perf", "report", "-i", f"{work}/{n}.data", "--children", "--sort", "sym",
         "-g", "none", "--percent-limit", "0.3"],
        capture_output=True, text=True, check=True).stdout
    writes = int(open(f"{work}/{n}.writes").read())
    total, rows = None, {}
    for line in out.splitlines():
        m = re.search(r"Event count \(approx.\): (\d+)", line)
        if m:
            total = int(m.group(1))
        m = re.match(r"\s+([\d.]+)%\s+[\d.]+%\s+\[.\]\s+(.*)", line)
        if m and "shoal" in m.group(2):
            rows[m.group(2).strip()[:110]] = float(m.group(1)) / 100
    return {k: v * total / writes for k, v in rows.items()}

many, one = per_write(groups), per_write("1")
print(f"\nns of the raft thread's CPU per write, callees included ({groups} groups | 1 group | difference):")
for k in sorted(set(many) | set(one), key=lambda k: -max(many.get(k, 0), one.get(k, 0)))[:45]:
    a, b = many.get(k, 0), one.get(k, 0)
    print(f"{a:8.0f} {b:8.0f} {a - b:+8.0f}  {k}")
PY
