#!/usr/bin/env bash
# Three Shoal firmware boards (QEMU mps2-an386, Cortex-M4F) in a full mesh of UART links.
# The cluster must elect a leader, commit the leader's DtKV writes (put k1..k40), survive the
# leader board being reset (QEMU monitor `system_reset`; the board recovers its log from the
# stand-in flash region, which QEMU keeps across the reset), and every board must report the
# same DtKV digest at the same applied index. Exits 0 only on that outcome.
#
# Every link is sealed with a cluster key (shoal-seal): the script makes a random 32-byte key
# and QEMU's loader puts it at 0x203FE000 of each board. Board 3 first starts with another key:
# boards 1 and 2 must refuse it (counted as key_fail in their STATUS), form the cluster
# without it and commit; board 3 must link to nobody and learn nothing. Then board 3 is
# restarted with the cluster key and the run goes on as above.
#
# Environment: SHOAL_QEMU_PORT_BASE (default 28310, below Linux's ephemeral ports so no
# connection of an earlier step can hold one in TIME_WAIT; uses base..base+2 for links,
# base+11..13 for monitors), SHOAL_QEMU_TIMEOUT_S (default 300), CARGO_TARGET_DIR.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target-embedded}"
base="${SHOAL_QEMU_PORT_BASE:-28310}"
timeout_s="${SHOAL_QEMU_TIMEOUT_S:-300}"
out="$CARGO_TARGET_DIR/qemu-cluster"

if ! command -v qemu-system-arm >/dev/null 2>&1; then
    echo "cluster.sh: qemu-system-arm is missing; install it with: apt-get install -y qemu-system-arm" >&2
    exit 2
fi
rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || true

echo "== building firmware"
(cd "$root/platform-embedded/firmware" && cargo build --release --quiet)
elf="$CARGO_TARGET_DIR/thumbv7em-none-eabihf/release/shoal-firmware"

rm -rf "$out" && mkdir -p "$out"
head -c 32 /dev/urandom >"$out/cluster.key"
head -c 32 /dev/urandom >"$out/other.key"
declare -A pid
cleanup() {
    for p in "${pid[@]:-}"; do
        [ -n "$p" ] && kill "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT

# Links: 1-2 on base, 1-3 on base+1, 2-3 on base+2. UART0 and UART1 of each board go to its
# peers in ascending id order. The lower id listens; the higher one dials and redials.
listen() { echo "tcp:127.0.0.1:$1,server=on,wait=off"; }
dial() { echo "tcp:127.0.0.1:$1,reconnect=1"; }
serials() {
    case "$1" in
        1) echo "$(listen $base) $(listen $((base + 1)))" ;;
        2) echo "$(dial $base) $(listen $((base + 2)))" ;;
        3) echo "$(dial $((base + 1))) $(dial $((base + 2)))" ;;
    esac
}
start_board() { # id key-file
    local id=$1 key=$2 s0 s1
    read -r s0 s1 <<<"$(serials "$id")"
    qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -display none \
        -monitor "tcp:127.0.0.1:$((base + 10 + id)),server=on,wait=off" \
        -serial "$s0" -serial "$s1" \
        -semihosting-config enable=on,target=native \
        -device loader,addr=0x203FF000,data="$id",data-len=4 \
        -device loader,file="$key",addr=0x203FE000,force-raw=on \
        -kernel "$elf" >>"$out/board$id.log" 2>&1 &
    pid[$id]=$!
}
monitor() { # id command
    exec 9<>"/dev/tcp/127.0.0.1/$((base + 10 + $1))"
    printf '%s\n' "$2" >&9
    sleep 0.5
    exec 9>&-
}
last_field() { # file key field -> value of field in the last line starting with key
    grep "^$2 " "$1" 2>/dev/null | tail -n 1 | tr ' ' '\n' | sed -n "s/^$3=//p"
    true
}
fatal_check() {
    if grep -h "^FATAL" "$out"/board*.log 2>/dev/null; then
        echo "cluster.sh: a board failed" >&2
        exit 1
    fi
    # A QEMU that could not start (a port taken) or died fails the run now, not at the deadline.
    for id in "${!pid[@]}"; do
        if ! kill -0 "${pid[$id]}" 2>/dev/null; then
            echo "cluster.sh: board $id's QEMU is gone:" >&2
            tail -n 5 "$out/board$id.log" >&2
            exit 1
        fi
    done
}

echo "== starting boards 1, 2 with the cluster key and board 3 with another key (logs in $out)"
start_board 1 "$out/cluster.key"; sleep 0.3
start_board 2 "$out/cluster.key"; sleep 0.3
start_board 3 "$out/other.key"
deadline=$((SECONDS + timeout_s))

echo "== waiting for boards 1 and 2 to commit 5 keys and refuse board 3's key"
while :; do
    fatal_check
    ok=0
    for id in 1 2; do
        keys=$(last_field "$out/board$id.log" STATUS keys)
        fail=$(last_field "$out/board$id.log" STATUS key_fail)
        if [ "${keys:-0}" -ge 5 ] && [ "${fail:-0}" -ge 1 ]; then ok=$((ok + 1)); fi
    done
    [ "$ok" = 2 ] && break
    [ $SECONDS -lt $deadline ] || { echo "cluster.sh: boards 1 and 2 did not commit and refuse the wrong key in time" >&2; exit 1; }
    sleep 1
done
if ! grep -q "^SEAL node=3 .*links=sealed" "$out/board3.log"; then
    echo "cluster.sh: board 3 did not seal its links" >&2; exit 1
fi
b3_links=$(last_field "$out/board3.log" STATUS links)
b3_keys=$(last_field "$out/board3.log" STATUS keys)
b3_applied=$(last_field "$out/board3.log" STATUS applied)
if [ "$b3_links" != dd ] || [ "${b3_keys:-0}" != 0 ] || [ "${b3_applied:-0}" != 0 ]; then
    echo "cluster.sh: the wrong-key board got links=$b3_links keys=$b3_keys applied=$b3_applied" >&2; exit 1
fi
for id in 1 2; do
    echo "   board $id: $(grep '^STATUS' "$out/board$id.log" | tail -n 1 | cut -d' ' -f2-12)"
done
echo "   board 3 (other key): links=$b3_links keys=$b3_keys applied=$b3_applied"

echo "== restarting board 3 with the cluster key"
kill "${pid[3]}" 2>/dev/null || true
wait "${pid[3]}" 2>/dev/null || true
mv "$out/board3.log" "$out/board3-other-key.log"
start_board 3 "$out/cluster.key"

echo "== waiting for a leader and 15 committed keys"
leader=""
while :; do
    fatal_check
    for id in 1 2 3; do
        keys=$(last_field "$out/board$id.log" STATUS keys)
        role=$(last_field "$out/board$id.log" STATUS role)
        if [ "$role" = leader ] && [ "${keys:-0}" -ge 15 ]; then leader=$id; fi
    done
    [ -n "$leader" ] && break
    [ $SECONDS -lt $deadline ] || { echo "cluster.sh: no leader with 15 keys in time" >&2; exit 1; }
    sleep 1
done
echo "   leader is board $leader: $(grep '^STATUS' "$out/board$leader.log" | tail -n 1)"

echo "== resetting the leader board $leader (system_reset)"
boots_before=$(grep -c "^BOOT" "$out/board$leader.log")
monitor "$leader" system_reset
while [ "$(grep -c "^BOOT" "$out/board$leader.log")" -le "$boots_before" ]; do
    [ $SECONDS -lt $deadline ] || { echo "cluster.sh: board $leader did not reboot" >&2; exit 1; }
    sleep 0.5
done
grep "^BOOT" "$out/board$leader.log" | tail -n 1 | sed 's/^/   /'
if ! grep "^BOOT" "$out/board$leader.log" | tail -n 1 | grep -q recovered; then
    echo "cluster.sh: the reset board did not recover its log from flash" >&2
    exit 1
fi

echo "== waiting for all 40 keys and equal digests"
while :; do
    fatal_check
    d1=$(grep "^DIGEST" "$out/board1.log" | tail -n 1 | cut -d' ' -f3- || true)
    d2=$(grep "^DIGEST" "$out/board2.log" | tail -n 1 | cut -d' ' -f3- || true)
    d3=$(grep "^DIGEST" "$out/board3.log" | tail -n 1 | cut -d' ' -f3- || true)
    if [ -n "$d1" ] && [ "$d1" = "$d2" ] && [ "$d2" = "$d3" ]; then break; fi
    [ $SECONDS -lt $deadline ] || {
        echo "cluster.sh: digests did not agree in time: [$d1] [$d2] [$d3]" >&2
        for id in 1 2 3; do tail -n 3 "$out/board$id.log" >&2; done
        exit 1
    }
    sleep 1
done
for id in 1 2 3; do
    echo "   board $id: $(grep '^DIGEST' "$out/board$id.log" | tail -n 1)"
done
new_leader=""
for id in 1 2 3; do
    [ "$(last_field "$out/board$id.log" STATUS role)" = leader ] && new_leader=$id
done
echo "   leader after the reset: board ${new_leader:-?}"
# The stack high-water mark of each board (start-up included), for footprint.sh.
for id in 1 2 3; do last_field "$out/board$id.log" STATUS stack; done | sort -n | tail -n 1 >"$out/stack-high-water"
# The main loop's own high-water mark (the boards paint again after building the runtime).
for id in 1 2 3; do last_field "$out/board$id.log" STATUS loop_stack; done | sort -n | tail -n 1 >"$out/stack-high-water-loop"
for id in 1 2 3; do
    if [ "$(last_field "$out/board$id.log" STATUS sealed)" = 0 ]; then
        echo "cluster.sh: board $id opened no sealed link" >&2; exit 1
    fi
done
echo "cluster.sh: OK — wrong key refused, leader elected, 40 keys committed over sealed links, leader reset and recovered, digests equal"
