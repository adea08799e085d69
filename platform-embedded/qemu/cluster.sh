#!/usr/bin/env bash
# Three Shoal firmware boards (QEMU mps2-an386, Cortex-M4F) in a full mesh of UART links.
# The cluster must elect a leader, commit the leader's DtKV writes (put k1..k40), survive the
# leader board being reset (QEMU monitor `system_reset`; the board recovers its log from the
# stand-in flash region, which QEMU keeps across the reset), and every board must report the
# same DtKV digest at the same applied index. Exits 0 only on that outcome.
#
# Environment: SHOAL_QEMU_PORT_BASE (default 47310; uses base..base+2 for links, base+11..13
# for monitors), SHOAL_QEMU_TIMEOUT_S (default 300), CARGO_TARGET_DIR.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target-embedded}"
base="${SHOAL_QEMU_PORT_BASE:-47310}"
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
start_board() {
    local id=$1 s0 s1
    read -r s0 s1 <<<"$(serials "$id")"
    qemu-system-arm -cpu cortex-m4 -machine mps2-an386 -display none \
        -monitor "tcp:127.0.0.1:$((base + 10 + id)),server=on,wait=off" \
        -serial "$s0" -serial "$s1" \
        -semihosting-config enable=on,target=native \
        -device loader,addr=0x203FF000,data="$id",data-len=4 \
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
}

echo "== starting boards 1, 2, 3 (logs in $out)"
for id in 1 2 3; do start_board "$id"; sleep 0.3; done
deadline=$((SECONDS + timeout_s))

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
echo "cluster.sh: OK — leader elected, 40 keys committed, leader reset and recovered, digests equal"
