#!/usr/bin/env bash
# Footprint of a voting Shoal node with DtKV at the embedded default limits on Cortex-M4
# (the shoal-firmware image for QEMU mps2-an386), written to stdout and checked against the
# budget: flash (vector table + text + rodata + data image) <= 128 KiB, RAM (data + bss +
# stack high-water) <= 64 KiB.
#
# Sizes come from the ELF section headers (parsed here with python3: llvm-size / cargo size
# need the llvm-tools component, which cannot be installed on every machine). The stack
# high-water mark is measured by the firmware itself (it paints the stack at boot and reports
# the lowest overwritten word in its STATUS lines); it is taken from the last QEMU cluster run
# (platform-embedded/qemu/cluster.sh, run first if no measurement exists).
#
# SHOAL_FOOTPRINT_RAM_ENFORCE=0 reports the RAM budget without failing on it (the flash budget
# is always enforced). Exit codes: 0 within budget, 1 over budget, 2 tooling missing.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target-embedded}"
command -v python3 >/dev/null || { echo "footprint.sh: python3 is needed to read the ELF" >&2; exit 2; }
rustup target add thumbv7em-none-eabihf >/dev/null 2>&1 || true
(cd "$here/firmware" && cargo build --release --quiet)
elf="$CARGO_TARGET_DIR/thumbv7em-none-eabihf/release/shoal-firmware"
stack_file="$CARGO_TARGET_DIR/qemu-cluster/stack-high-water"
if [ ! -s "$stack_file" ]; then
    echo "== no stack measurement yet: running the QEMU cluster"
    "$here/qemu/cluster.sh"
fi
stack=$(cat "$stack_file")
loop_stack=$(cat "$stack_file-loop" 2>/dev/null || echo 0)
echo "largest RAM symbols (.symtab):"
python3 "$here/symbols.py" "$elf" 6
python3 - "$elf" "$stack" "${SHOAL_FOOTPRINT_RAM_ENFORCE:-1}" "$loop_stack" <<'PY'
import struct, sys
path, stack, enforce_ram = sys.argv[1], int(sys.argv[2]), sys.argv[3] != "0"
loop_stack = int(sys.argv[4])
data = open(path, "rb").read()
assert data[:4] == b"\x7fELF" and data[4] == 1, "expected a 32-bit ELF"
shoff, = struct.unpack_from("<I", data, 0x20)
shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
def sh(i):
    return struct.unpack_from("<IIIIIIIIII", data, shoff + i * shentsize)
names = sh(shstrndx)[4]
size = {}
for i in range(shnum):
    name_off, _type, _flags, _addr, _off, sz = sh(i)[:6]
    end = data.index(b"\0", names + name_off)
    size[data[names + name_off:end].decode()] = sz
g = lambda n: size.get(n, 0)
flash = g(".vector_table") + g(".text") + g(".rodata") + g(".data")
ram_static = g(".data") + g(".bss") + g(".uninit")
ram = ram_static + stack
KiB = 1024
print(f"section        bytes")
for n in (".vector_table", ".text", ".rodata", ".data", ".bss", ".uninit"):
    print(f"{n:<14} {g(n):>7}")
print(f"flash  (vector + text + rodata + data image): {flash:>7} B = {flash / KiB:6.1f} KiB  (budget 128 KiB)")
print(f"RAM    (data + bss):                          {ram_static:>7} B = {ram_static / KiB:6.1f} KiB")
print(f"stack  high-water (painted, QEMU cluster):    {stack:>7} B = {stack / KiB:6.1f} KiB")
print(f"stack  main loop only (painted again):      {loop_stack:>7} B = {loop_stack / KiB:6.1f} KiB")
print(f"RAM    steady state (data + bss + loop):      {ram_static + loop_stack:>7} B = {(ram_static + loop_stack) / KiB:6.1f} KiB")
print(f"RAM    total:                                 {ram:>7} B = {ram / KiB:6.1f} KiB  (budget 64 KiB)")
ok = True
if flash > 128 * KiB:
    print("footprint.sh: FLASH OVER BUDGET"); ok = False
if ram > 64 * KiB:
    print("footprint.sh: RAM OVER BUDGET" + ("" if enforce_ram else " (not enforced: SHOAL_FOOTPRINT_RAM_ENFORCE=0)"))
    ok = ok and not enforce_ram
sys.exit(0 if ok else 1)
PY
