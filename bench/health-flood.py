#!/usr/bin/env python3
"""Ask a node for its health again and again on one connection, keeping INFLIGHT requests in
flight for SECONDS, and print how many answers came back and the size of the last.

    bench/health-flood.py 127.0.0.1:7002 9 8 [health|node-status]

A `Health` answer names every group the node hosts. Run it against a node with many groups
while `shoal-bench put` writes to it, to see what clients asking for health cost the others
(docs/BENCHMARKS.md, "Health answers at a thousand groups"). `node-status` sends
`NodeStatus` (what `shoalctl status --cluster` asks each member; its answer holds the node's
health too) instead. Builds the request frame itself: protocol version 2, no TLS, no login
(neither request needs one).
"""
import socket
import struct
import sys
import time


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


# The requests' tags in postcard (their places in `Request`).
TAGS = {"health": 15, "node-status": 16}


def health_request(request_id: int, kind: str = "health") -> bytes:
    # postcard: version (u16 varint), id (varint), group 0, cluster 0 (any), the request's tag.
    assert request_id < 128
    body = bytes([2, request_id, 0, 0, TAGS[kind]])
    head = struct.pack("<IB", len(body) + 1, 1)  # length (version byte included), version
    return head + body + struct.pack("<I", crc32c(head + body))


def main() -> None:
    host, port = sys.argv[1].rsplit(":", 1)
    seconds, inflight = float(sys.argv[2]), int(sys.argv[3])
    req = health_request(1, sys.argv[4] if len(sys.argv) > 4 else "health")
    s = socket.create_connection((host, int(port)))
    s.settimeout(10)
    end = time.time() + seconds
    answers, size, buf, waiting = 0, 0, b"", inflight
    s.sendall(req * inflight)
    while waiting > 0:
        data = s.recv(1 << 20)
        if not data:
            sys.exit("the node closed the connection")
        buf += data
        while len(buf) >= 4:
            size = struct.unpack("<I", buf[:4])[0]
            if len(buf) < 4 + size + 4:
                break
            buf = buf[4 + size + 4:]
            answers += 1
            waiting -= 1
            if time.time() < end:
                s.sendall(req)
                waiting += 1
    print(f"{answers} health answers, the last {size} bytes")


if __name__ == "__main__":
    main()
