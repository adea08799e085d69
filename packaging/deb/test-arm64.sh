#!/usr/bin/env bash
# Cross-build the arm64 .deb (for Raspberry Pi OS / Debian arm64), check what it holds, and run
# its binaries under qemu-aarch64 user emulation: --version of each, then the packaged shoald as
# a dev node that this machine's shoalctl writes to and reads from, then shoal-inspect on its
# data dir. Needs gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user (apt; .ci/run
# installs them) and the rustup target aarch64-unknown-linux-gnu.
set -euo pipefail
cd "$(dirname "$0")/../.."
fail() { echo "arm64 package test: $*" >&2; exit 1; }
for tool in aarch64-linux-gnu-gcc qemu-aarch64 dpkg-deb; do
    command -v "$tool" >/dev/null || fail "$tool is missing (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)"
done

deb=$(packaging/deb/build.sh arm64 | tail -1)
echo "built $deb ($(du -h "$deb" | cut -f1))"
[ "$(dpkg-deb --field "$deb" Architecture)" = arm64 ] || fail "the control file does not say arm64"
[ "$(dpkg-deb --field "$deb" Package)" = shoal ] || fail "the package is not named shoal"

root=$(mktemp -d)
data=$(mktemp -d)
pid=
# Only the emulated shoald, if one still runs (never `kill 0`: that is the whole process group).
trap 'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$root" "$data"' EXIT
dpkg-deb -x "$deb" "$root"
run() { qemu-aarch64 -L /usr/aarch64-linux-gnu "$root/usr/bin/$1" "${@:2}"; }
for b in shoald shoalctl shoal-inspect; do
    # ELF header: class 2 (64-bit) at byte 4, machine 183 (AArch64) at bytes 18-19.
    machine=$(od -An -t u2 -j 18 -N 2 "$root/usr/bin/$b" | tr -d ' ')
    [ "$machine" = 183 ] || fail "$b is not an AArch64 binary (e_machine $machine)"
    run "$b" --version | grep -q "^$b " || fail "$b --version under qemu-aarch64"
done
for f in /etc/shoal/shoald.toml /lib/systemd/system/shoald.service /usr/share/man/man1/shoald.1.gz; do
    [ -e "$root$f" ] || fail "$f missing from the package"
done

# The packaged server, emulated, as a dev node on free ports; the host's shoalctl talks to it.
port=$(( 20000 + RANDOM % 20000 ))
qemu-aarch64 -L /usr/aarch64-linux-gnu "$root/usr/bin/shoald" --data-dir "$data" --raft-addr "127.0.0.1:$port" \
    --client-addr "127.0.0.1:$((port + 1))" --admin-addr "127.0.0.1:$((port + 2))" \
    >"$data.log" 2>&1 &
pid=$!
ctl() { cargo run -q --release --bin shoalctl -- --endpoints "127.0.0.1:$((port + 1))" "$@"; }
for _ in $(seq 1 300); do ctl health >/dev/null 2>&1 && break; sleep 0.2; done
ctl health >/dev/null || { cat "$data.log"; fail "the emulated arm64 shoald never became healthy"; }
ctl mkdir arm && ctl put arm.k emulated && [ "$(ctl get arm.k)" = emulated ] \
    || fail "writing to and reading from the arm64 shoald"
kill -TERM "$pid"
wait "$pid" || { cat "$data.log"; fail "the arm64 shoald did not stop cleanly"; }
pid=
run shoal-inspect verify "$data" >/dev/null || fail "the arm64 shoal-inspect could not verify the data dir"
rm -f "$data.log"
echo "arm64 package test: ok"
