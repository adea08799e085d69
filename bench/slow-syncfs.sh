#!/usr/bin/env bash
# bench/slow-syncfs.sh [EXTRA_MS] [GROUPS] [SECONDS]: what a slow filesystem sync costs busy
# groups. One release shoald (fsync always, its own temporary data dir and ports) whose every
# syncfs returns EXTRA_MS (default 100) late, through the LD_PRELOAD shim bench/slow-syncfs.c
# (a slow medium such as an SD card); shoal-bench writes with 256 clients over GROUPS (default
# 64) groups for SECONDS (default 10) twice and prints both put lines: writes/s, then latency
# p50, p90, p99, p99.9 and max. The first run includes making the sync journal. With 0 it is
# the same run without the delay. Then the sync journal's switches of half and those that
# waited for a retire. Builds the release binaries when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ms=${1:-100}
groups=${2:-64}
secs=${3:-10}
[ -x target/release/shoald ] && [ -x target/release/shoal-bench ] ||
    cargo build --release -p shoal-std --bins
work=$(mktemp -d)
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$work"' EXIT
cc -shared -fPIC -O2 -o "$work/slow-syncfs.so" bench/slow-syncfs.c -ldl
base=17400
LD_PRELOAD="$work/slow-syncfs.so" SHOAL_SLOW_SYNCFS_MS="$ms" target/release/shoald \
    --data-dir "$work/data" --node-id 1 --raft-addr 127.0.0.1:$base \
    --client-addr 127.0.0.1:$((base + 1)) --admin-addr 127.0.0.1:$((base + 2)) \
    > "$work/shoald.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    curl -sf "127.0.0.1:$((base + 2))/health" > /dev/null 2>&1 && break
    sleep 0.1
done
echo "syncfs +${ms} ms, $groups groups, 256 clients, ${secs} s each:"
echo "op           ops/s        p50        p90        p99      p99.9        max     errors"
for _ in 1 2; do
    target/release/shoal-bench put --endpoints 127.0.0.1:$((base + 1)) --groups "$groups" \
        --clients 256 --duration "${secs}s" 2>&1 | grep "^put"
done
# Switches of the journal's half, and those that waited for the other half's retire.
curl -sf "127.0.0.1:$((base + 2))/metrics" |
    grep -E "^shoal_journal_(wraps|switch_waits)_total" || true
