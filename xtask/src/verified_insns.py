#!/usr/bin/env python3
"""verified_insns of every loaded BPF program (BPF_OBJ_GET_INFO_BY_FD), largest first: run it as
root while an agent holds its programs (e.g. `audit-agent trace -- sleep 10`) to see where the
verifier's work at start goes. Usage: verified_insns.py [N] (the N largest, default 40)."""
import ctypes, os, struct, sys
libc = ctypes.CDLL(None, use_errno=True)
def bpf(cmd, attr):
    buf = ctypes.create_string_buffer(attr, len(attr))
    r = libc.syscall(321, cmd, buf, len(attr))
    return r, buf.raw
rows = []; pid = 0
while True:
    r, raw = bpf(11, struct.pack("=IIII", pid, 0, 0, 0) + b"\0" * 48)  # PROG_GET_NEXT_ID
    if r < 0: break
    pid = struct.unpack_from("=I", raw, 4)[0]
    fd, _ = bpf(13, struct.pack("=I", pid) + b"\0" * 60)  # PROG_GET_FD_BY_ID
    if fd < 0: continue
    info = ctypes.create_string_buffer(256)
    attr = struct.pack("=IIQ", fd, 256, ctypes.addressof(info)) + b"\0" * 48
    r, _ = bpf(15, attr)
    os.close(fd)
    name = info.raw[64:80].split(b"\0")[0].decode()
    rows.append((struct.unpack_from("=I", info.raw, 216)[0], name))
rows.sort(reverse=True)
n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
print("total", sum(r[0] for r in rows))
for v, name in rows[:n]: print(f"{v:9d} {name}")
