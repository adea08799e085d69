#!/usr/bin/env bash
# Issue 14's hostile clients all at once against one release shoald, while a normal client
# measures its latency alone and under the attack; prints the node's peak RSS, its threads and
# the limits it hit. Exits non-zero when the node exits or its peak RSS passes the limit.
#
#   bench/hostile-load.sh                         # 10 s per phase, RSS limit 256 MiB
#   DURATION=30s bench/hostile-load.sh --json     # longer phases, one JSON object
#
# Environment:
#   DURATION, WARMUP   each phase's measured window and its unrecorded start (10s, 1s)
#   RSS_LIMIT_MB       peak RSS above which the run fails (256)
#   CARGO_TARGET_DIR   where shoald and shoal-bench are built (default target/)
# Further arguments go to `shoal-bench hostile` (for example --fsync never, --clients 16,
# --shoald-arg=--client-buffers-mb=32). The attack: 20 connections announcing 16 MiB frames
# and 20 announcing 1.9 MiB ones never finished, 8 pipelining Gets of a 60 KB value without
# reading, BatchGets of 20,000 keys, 10 sending 20,000 watches without reading while 1 KB
# writes go to the watched key, 2,000 idle client connections, 500 raft-port strangers (see
# platform-std/src/bin/shoal-bench/hostile.rs). The one node, its temporary data dir and every
# connection go away at the end, on error or Ctrl-C.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
cd "$ROOT"
cargo build --release --bin shoald --bin shoal-bench >&2
exec "$TARGET/release/shoal-bench" hostile --local 1 \
    --duration "${DURATION:-10s}" --warmup "${WARMUP:-1s}" \
    --rss-limit-mb "${RSS_LIMIT_MB:-256}" "$@"
