#!/usr/bin/env bash
# Build the amd64 .deb, install it on this machine, run what it installed, remove it.
# Needs root (dpkg -i); .ci/run calls it. Leaves the machine as it found it, but for the
# `shoal` user's data dir, which the package keeps on purpose (postrm).
set -euo pipefail
cd "$(dirname "$0")/../.."
fail() { echo "package test: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root to install a package"

deb=$(packaging/deb/build.sh amd64 | tail -1)
echo "built $deb ($(du -h "$deb" | cut -f1))"
[ "$(dpkg-deb --field "$deb" Package)" = shoal ] || fail "no control file naming the package"
if dpkg -s shoal >/dev/null 2>&1; then fail "a shoal package is installed already"; fi

dpkg -i "$deb"
trap 'dpkg -P shoal >/dev/null 2>&1 || true' EXIT

# What the package put in place.
for f in /usr/bin/shoald /usr/bin/shoalctl /usr/bin/shoal-inspect /etc/shoal/shoald.toml \
    /etc/default/shoald /lib/systemd/system/shoald.service /usr/share/man/man1/shoald.1.gz \
    /usr/share/man/man1/shoalctl.1.gz /usr/share/bash-completion/completions/shoalctl \
    /usr/share/zsh/vendor-completions/_shoalctl /usr/share/fish/vendor_completions.d/shoalctl.fish \
    /usr/share/doc/shoal/OPERATIONS.md; do
    [ -e "$f" ] || fail "$f missing"
done
getent passwd shoal >/dev/null || fail "no shoal user"
[ "$(stat -c %U:%a /var/lib/shoal)" = "shoal:700" ] || fail "/var/lib/shoal: $(stat -c %U:%a /var/lib/shoal)"
[ "$(stat -c %G:%a /etc/shoal/shoald.toml)" = "shoal:640" ] || fail "shoald.toml not readable by shoal only"
for b in shoald shoalctl shoal-inspect; do
    "/usr/bin/$b" --version | grep -q "^$b " || fail "$b --version"
done
if command -v systemd-analyze >/dev/null; then
    systemd-analyze verify --man=no /lib/systemd/system/shoald.service \
        || fail "systemd-analyze verify found problems in the unit"
fi

# The installed server, as the unit runs it (its user, its config), on free ports.
port=$(( 20000 + RANDOM % 20000 ))
export SHOAL_RAFT_ADDR=127.0.0.1:$port SHOAL_CLIENT_ADDR=127.0.0.1:$((port + 1)) \
    SHOAL_ADMIN_ADDR=127.0.0.1:$((port + 2))
setpriv --reuid=shoal --regid=shoal --init-groups \
    /usr/bin/shoald --config /etc/shoal/shoald.toml >/tmp/shoald-package.log 2>&1 &
pid=$!
ctl() { /usr/bin/shoalctl --endpoints "127.0.0.1:$((port + 1))" "$@"; }
for _ in $(seq 1 100); do ctl health >/dev/null 2>&1 && break; sleep 0.1; done
ctl health >/dev/null || { cat /tmp/shoald-package.log; fail "the installed shoald is not healthy"; }
ctl mkdir pkg && ctl put pkg.k installed && [ "$(ctl get pkg.k)" = installed ] \
    || fail "the installed shoalctl could not write and read"
kill -TERM "$pid"
wait "$pid" || fail "shoald did not stop cleanly: $(cat /tmp/shoald-package.log)"
/usr/bin/shoal-inspect verify /var/lib/shoal >/dev/null || fail "shoal-inspect verify of the data dir"
[ "$(stat -c %U /var/lib/shoal/identity)" = shoal ] || fail "the data dir's files are not shoal's"

# Removed: binaries gone, data kept; purged: user gone, data still kept.
dpkg -r shoal
[ ! -e /usr/bin/shoald ] || fail "shoald left after remove"
[ -e /etc/shoal/shoald.toml ] || fail "a conffile removed before purge"
dpkg -P shoal
trap - EXIT
[ -d /var/lib/shoal ] || fail "the data dir must survive a purge"
rm -rf /var/lib/shoal
echo "package test: ok"
