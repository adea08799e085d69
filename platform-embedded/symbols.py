#!/usr/bin/env python3
"""The largest RAM symbols (.data, .bss, .uninit) of a 32-bit little-endian ELF, read from
its .symtab. Usage: symbols.py ELF [COUNT]. Used by footprint.sh and docs/FOOTPRINT.md."""
import struct, sys

def ram_symbols(path):
    data = open(path, "rb").read()
    assert data[:4] == b"\x7fELF" and data[4] == 1, "expected a 32-bit ELF"
    shoff, = struct.unpack_from("<I", data, 0x20)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x2E)
    secs = [struct.unpack_from("<IIIIIIIIII", data, shoff + i * shentsize) for i in range(shnum)]
    def cstr(off):
        return data[off:data.index(b"\0", off)].decode(errors="replace")
    names = [cstr(secs[shstrndx][4] + s[0]) for s in secs]
    ram = {i for i, n in enumerate(names) if n in (".data", ".bss", ".uninit")}
    out = []
    for s in secs:
        if s[1] != 2:  # SHT_SYMTAB
            continue
        strtab = secs[s[6]][4]
        for off in range(s[4], s[4] + s[5], 16):
            name, value, size, info, other, shndx = struct.unpack_from("<IIIBBH", data, off)
            if shndx in ram and size > 0 and (info & 0xF) == 1:  # STT_OBJECT
                out.append((size, names[shndx], cstr(strtab + name)))
    return sorted(out, reverse=True)

def demangle(sym):
    """Readable path of a legacy Rust symbol (`_ZN...E`), without the hash."""
    if not sym.startswith("_ZN"):
        return sym
    i, parts = 3, []
    while i < len(sym) and sym[i].isdigit():
        j = i
        while sym[j].isdigit():
            j += 1
        n = int(sym[i:j])
        parts.append(sym[j:j + n])
        i = j + n
    if parts and parts[-1].startswith("h") and len(parts[-1]) == 17:
        parts.pop()
    return "::".join(parts)

if __name__ == "__main__":
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    for size, sec, sym in ram_symbols(sys.argv[1])[:count]:
        print(f"{size:>8} {size / 1024:6.1f} KiB  {sec:<8} {demangle(sym)}")
