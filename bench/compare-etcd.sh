#!/usr/bin/env bash
# Shoal and etcd side by side on this machine: same cluster sizes on loopback, same workload,
# same closed-loop client model, one table of ratios (Shoal / etcd) from one run.
#
#   bench/compare-etcd.sh                 # about 3 minutes of measuring after the builds
#   DURATION=10s bench/compare-etcd.sh    # longer windows
#   bench/compare-etcd.sh --tls           # both with TLS on client and peer ports (or TLS=1)
#
# Environment:
#   DURATION, WARMUP   measured window and unrecorded load before it, per run (5s, 1s)
#   RESULTS_DIR        keep every run's JSON and the table there (default: a temporary dir,
#                      removed at the end)
#   CARGO_TARGET_DIR   where Shoal's shoald and shoal-bench are built (default target/)
#   ETCD_BENCH_TARGET_DIR  where bench/etcd-bench is built (default bench/etcd-bench/target)
#   TLS=1              as --tls: shoal-certs makes a CA, one certificate per member (its URI SAN
#                      names the member for Shoal; localhost and 127.0.0.1 for both) and a client
#                      certificate; etcd and Shoal get the same files on their client ports
#                      (--cert-file, --key-file, --trusted-ca-file, --client-cert-auth) and their
#                      peer ports (--peer-cert-file, --peer-key-file, --peer-trusted-ca-file:
#                      mutual TLS), and both load generators connect with the client certificate
#
# It installs etcd-server and protobuf-compiler from apt if they are missing, builds both load
# generators in release, and then for every case starts a fresh cluster (temporary data dirs,
# 127.0.0.1 only, fsync on: shoald --fsync always, etcd's default), runs the load, records the
# servers' memory and stops the cluster. Shoal's clusters are started and stopped by
# `shoal-bench --local N`; etcd's by this script. Everything it started is killed and every
# temporary dir removed on exit, error or Ctrl-C.
set -euo pipefail

TLS=${TLS:-0}
for arg in "$@"; do
    case $arg in
    --tls) TLS=1 ;;
    *)
        echo "unknown argument $arg (only --tls)" >&2
        exit 2
        ;;
    esac
done

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DURATION=${DURATION:-5s}
WARMUP=${WARMUP:-1s}
KEY_SIZE=16
VALUE_SIZE=100
KEYSPACE=10000
CONNS=4
SHOAL_TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
ETCD_BENCH_TARGET=${ETCD_BENCH_TARGET_DIR:-$ROOT/bench/etcd-bench/target}

say() { printf '== %s\n' "$*" >&2; }

# --- what a fresh machine lacks ------------------------------------------------------------
need=()
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
if ((${#need[@]})); then
    say "installing ${need[*]} from apt"
    SUDO=
    [ "$(id -u)" = 0 ] || SUDO=sudo
    $SUDO apt-get update
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y "${need[@]}"
fi

say "building shoald, shoal-bench and shoal-certs (release) in $SHOAL_TARGET"
(cd "$ROOT" && CARGO_TARGET_DIR="$SHOAL_TARGET" cargo build --release --bin shoald --bin shoal-bench --bin shoal-certs)
say "building etcd-bench (release) in $ETCD_BENCH_TARGET"
CARGO_TARGET_DIR="$ETCD_BENCH_TARGET" cargo build --release \
    --manifest-path "$ROOT/bench/etcd-bench/Cargo.toml"
SHOAL_BENCH=$SHOAL_TARGET/release/shoal-bench
ETCD_BENCH=$ETCD_BENCH_TARGET/release/etcd-bench

# --- cleanup: everything this script started, by pid -----------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/compare-etcd.XXXXXX")
ETCD_PIDS=()
BENCH_PID=
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    # shoal-bench stops and removes its own cluster on SIGTERM.
    if [ -n "$BENCH_PID" ]; then kill -TERM "$BENCH_PID" 2>/dev/null || true; fi
    stop_etcd
    if [ -n "$BENCH_PID" ]; then wait "$BENCH_PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

RESULTS=${RESULTS_DIR:-$WORK/results}
mkdir -p "$RESULTS"

# --- TLS: one CA, a certificate per member and one for the clients, used by both systems -----
SHOAL_TLS=()
ETCD_BENCH_TLS=()
if [ "$TLS" = 1 ]; then
    CERTS=$WORK/certs
    CERTS_BIN=$SHOAL_TARGET/release/shoal-certs
    "$CERTS_BIN" ca --out "$CERTS" >/dev/null
    # shoal-bench --local names its members 1..N in cluster 1.
    for i in 1 2 3; do
        "$CERTS_BIN" node --ca "$CERTS" --cluster-id 1 --node-id "$i" --out "$CERTS" >/dev/null
    done
    "$CERTS_BIN" client --ca "$CERTS" --cn bench --out "$CERTS" >/dev/null
    CLIENT_TLS=(--cacert "$CERTS/ca.pem" --cert "$CERTS/client-bench.pem" --key "$CERTS/client-bench-key.pem")
    SHOAL_TLS=("${CLIENT_TLS[@]}")
    for f in --cert-file="$CERTS/node-{id}.pem" --key-file="$CERTS/node-{id}-key.pem" \
        --trusted-ca-file="$CERTS/ca.pem" --client-cert-auth \
        --peer-cert-file="$CERTS/node-{id}.pem" --peer-key-file="$CERTS/node-{id}-key.pem" \
        --peer-trusted-ca-file="$CERTS/ca.pem"; do
        SHOAL_TLS+=("--shoald-arg=$f")
    done
    ETCD_BENCH_TLS=("${CLIENT_TLS[@]}")
fi

# If the script itself is SIGKILLed, etcd dies with it where setpriv knows --pdeathsig.
PDEATH=()
if command -v setpriv >/dev/null 2>&1 && setpriv --help 2>&1 | grep -q pdeathsig; then
    PDEATH=(setpriv --pdeathsig KILL --)
fi

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
# Ports come from below the kernel's ephemeral range, so that no outgoing connection (of the
# load generators, shoald or etcd itself) can hold one as its local port when etcd binds it.
EPHEMERAL_LOW=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 32768)
PORT_LOW=10000
PORT_HIGH=$((EPHEMERAL_LOW - 1))
[ "$PORT_HIGH" -gt $((PORT_LOW + 1000)) ] || PORT_HIGH=$((PORT_LOW + 20000))
NEXT_PORT=$((PORT_LOW + RANDOM % (PORT_HIGH - PORT_LOW - 500)))
# free_port: sets PORT to a port nothing listens on (not run in a subshell: NEXT_PORT moves on).
free_port() {
    while port_in_use "$NEXT_PORT"; do NEXT_PORT=$((NEXT_PORT + 1)); done
    PORT=$NEXT_PORT
    NEXT_PORT=$((NEXT_PORT + 1))
    [ "$NEXT_PORT" -lt "$PORT_HIGH" ] || NEXT_PORT=$PORT_LOW
}

# start_etcd N: a fresh N-member etcd cluster on 127.0.0.1; sets ETCD_PIDS, ETCD_ENDPOINTS and
# ETCD_DIR. A member that exits within its first second (a port taken in between, say) makes the
# whole cluster start again on other ports, up to 3 times.
RUN_NO=0
start_etcd() {
    local n=$1 attempt
    for attempt in 1 2 3; do
        start_etcd_once "$n"
        sleep 1
        if etcd_alive; then return 0; fi
        say "an etcd member exited at start (attempt $attempt): $(tail -n 1 "$ETCD_DIR"/n*.log | cut -c1-300)"
        stop_etcd
    done
    say "could not start etcd"
    return 1
}

etcd_alive() {
    local p
    for p in "${ETCD_PIDS[@]}"; do kill -0 "$p" 2>/dev/null || return 1; done
}

start_etcd_once() {
    local n=$1 i cluster=""
    RUN_NO=$((RUN_NO + 1))
    ETCD_DIR=$WORK/etcd-$RUN_NO
    mkdir -p "$ETCD_DIR"
    local cports=() pports=() scheme=http tls=()
    if [ "$TLS" = 1 ]; then scheme=https; fi
    for ((i = 1; i <= n; i++)); do
        free_port
        cports+=("$PORT")
        free_port
        pports+=("$PORT")
        cluster+="${cluster:+,}n$i=$scheme://127.0.0.1:${pports[i - 1]}"
    done
    ETCD_PIDS=()
    ETCD_ENDPOINTS=
    for ((i = 1; i <= n; i++)); do
        local c=${cports[i - 1]} p=${pports[i - 1]}
        if [ "$TLS" = 1 ]; then
            tls=(--cert-file "$CERTS/node-$i.pem" --key-file "$CERTS/node-$i-key.pem"
                --trusted-ca-file "$CERTS/ca.pem" --client-cert-auth
                --peer-cert-file "$CERTS/node-$i.pem" --peer-key-file "$CERTS/node-$i-key.pem"
                --peer-trusted-ca-file "$CERTS/ca.pem" --peer-client-cert-auth)
        fi
        "${PDEATH[@]}" etcd --name "n$i" --data-dir "$ETCD_DIR/n$i" "${tls[@]}" \
            --listen-client-urls "$scheme://127.0.0.1:$c" --advertise-client-urls "$scheme://127.0.0.1:$c" \
            --listen-peer-urls "$scheme://127.0.0.1:$p" --initial-advertise-peer-urls "$scheme://127.0.0.1:$p" \
            --initial-cluster "$cluster" --initial-cluster-token "compare-$$-$RUN_NO" \
            --initial-cluster-state new --logger zap --log-level warn \
            >"$ETCD_DIR/n$i.log" 2>&1 &
        ETCD_PIDS+=($!)
        ETCD_ENDPOINTS+="${ETCD_ENDPOINTS:+,}127.0.0.1:$c"
    done
}

stop_etcd() {
    local p
    for p in "${ETCD_PIDS[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${ETCD_PIDS[@]}"; do
        # etcd exits within a second on SIGTERM; SIGKILL whatever is still there after 5 s.
        for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    ETCD_PIDS=()
}

# run_bg OUT CMD...: run a load generator in the background (so traps fire at once) and wait.
run_bg() {
    local out=$1
    shift
    "$@" >"$out" 2>"$out.log" &
    BENCH_PID=$!
    local rc=0
    wait "$BENCH_PID" || rc=$?
    BENCH_PID=
    if [ "$rc" != 0 ]; then
        say "failed (exit $rc): $*"
        tail -n 20 "$out.log" >&2 || true
    fi
    return 0
}

COMMON=(--key-size "$KEY_SIZE" --value-size "$VALUE_SIZE" --keyspace "$KEYSPACE"
    --conns "$CONNS" --duration "$DURATION" --warmup "$WARMUP" --json)

# run_shoal CASE NODES WORKLOAD CLIENTS [extra shoal-bench flags]
run_shoal() {
    local name=$1 n=$2 w=$3 c=$4
    shift 4
    say "Shoal $name"
    run_bg "$RESULTS/$name.shoal.json" \
        "$SHOAL_BENCH" "$w" --local "$n" --fsync always --clients "$c" "${COMMON[@]}" "${SHOAL_TLS[@]}" "$@"
}

# run_etcd CASE NODES WORKLOAD CLIENTS [extra etcd-bench flags]
run_etcd() {
    local name=$1 n=$2 w=$3 c=$4
    shift 4
    say "etcd $name"
    start_etcd "$n" || return 0
    run_bg "$RESULTS/$name.etcd.json" \
        "$ETCD_BENCH" "$w" --endpoints "$ETCD_ENDPOINTS" --pids "$(
            IFS=,
            echo "${ETCD_PIDS[*]}"
        )" --clients "$c" "${COMMON[@]}" "${ETCD_BENCH_TLS[@]}" "$@"
    # A member lost during the run would have made it a smaller cluster: keep no number from it.
    if ! etcd_alive; then
        say "an etcd member died during $name; its result is discarded"
        mv "$RESULTS/$name.etcd.json" "$RESULTS/$name.etcd.discarded" 2>/dev/null || true
    fi
    stop_etcd
    for f in "$ETCD_DIR"/n*.log; do cp "$f" "$RESULTS/$name.etcd-$(basename "$f")" 2>/dev/null || true; done
}

START=$(date +%s)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
say "measuring: $DURATION per run after $WARMUP warm-up; results in $RESULTS"

# Each case runs on Shoal and then on etcd right after it, so both see the same machine.
for n in 1 3; do
    for c in 1 256; do
        run_shoal "put-${n}n-${c}c" "$n" put "$c"
        run_etcd "put-${n}n-${c}c" "$n" put "$c"
    done
done
run_shoal get-3n-256c-linearizable 3 get 256 --consistency linearizable
run_etcd get-3n-256c-linearizable 3 get 256 --consistency linearizable --preload paced
run_shoal get-3n-256c-lease 3 get 256 --consistency lease
run_shoal get-3n-256c-local 3 get 256 --consistency local
run_etcd get-3n-256c-serializable 3 get 256 --consistency serializable --preload paced
# etcd 3.4 copies its read buffer, as large as the biggest write burst so far, on every read.
run_etcd get-3n-256c-linearizable-burst 3 get 256 --consistency linearizable --preload fast

LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
{
    echo "Shoal $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') vs $(etcd --version | head -n 1)"
    echo "$(date -u +%Y-%m-%d) · $(nproc) cores · load average before $LOAD_BEFORE, after $LOAD_AFTER" \
        "· $((($(date +%s) - START))) s of runs · $DURATION per run after $WARMUP warm-up"
    echo "keys ${KEY_SIZE} B, values ${VALUE_SIZE} B, keyspace $KEYSPACE, $CONNS connections," \
        "closed loop (1 request in flight per client), all requests to the leader, fsync on"
    if [ "$TLS" = 1 ]; then
        echo "TLS on both: client ports with client certificates (--client-cert-auth), mutual TLS" \
            "between members; one CA and the same certificates (shoal-certs) for both"
    else
        echo "no TLS"
    fi
    echo
    "$ETCD_BENCH" report "$RESULTS"
} | tee "$RESULTS/table.md"
