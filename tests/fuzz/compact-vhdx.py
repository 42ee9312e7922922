#!/usr/bin/env python3
"""compact-vhdx.py [--squeeze] IN OUT: a small copy of a VHDX that qemu-img made with block_size=1M (log at
1 MiB, BAT at 2 MiB, metadata at 3 MiB, a disk of one block whose first bytes are written): no
log, the BAT at 1 MiB, the metadata at 2 MiB, the block at 3 MiB,
checksums recomputed: 4 MiB instead of 9. With --squeeze, the input of fuzz_vhdx.c: the
first 320 KiB, then 64 KiB from 1 MiB, 128 KiB from 2 MiB and 64 KiB from 3 MiB (the disk of
the seeds is 64 KiB), which that fuzzer puts back in place."""
import struct
import sys

MiB = 1 << 20


def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def fix(buf, off, length):
    struct.pack_into("<I", buf, off + 4, 0)
    struct.pack_into("<I", buf, off + 4, crc32c(bytes(buf[off:off + length])))


args = sys.argv[1:]
squeeze = args[0] == "--squeeze"
if squeeze:
    args = args[1:]
src = open(args[0], "rb").read()
head = bytearray(src[:MiB])
for h in (64 << 10, 128 << 10):
    struct.pack_into("<IQ", head, h + 68, 0, MiB)  # no log (QEMU wants its offset at 1 MiB or more)
    fix(head, h, 4096)
r1 = 192 << 10
bat_guid = bytes.fromhex("6677c22d23f600429d64115e9bfd4a08")
count = struct.unpack_from("<I", head, r1 + 8)[0]
for i in range(count):
    e = r1 + 16 + 32 * i
    if head[e:e + 16] == bat_guid:
        old_bat = struct.unpack_from("<Q", head, e + 16)[0]
        struct.pack_into("<QI", head, e + 16, MiB, MiB)
    else:
        old_meta = struct.unpack_from("<Q", head, e + 16)[0]
        struct.pack_into("<QI", head, e + 16, 2 * MiB, MiB)
fix(head, r1, 64 << 10)
head[256 << 10:320 << 10] = head[r1:r1 + (64 << 10)]
bat = bytearray(src[old_bat:old_bat + 4096])
entry = struct.unpack_from("<Q", bat, 0)[0]
block = src[(entry >> 20) << 20:((entry >> 20) << 20) + MiB]
struct.pack_into("<Q", bat, 0, (3 * MiB) | (entry & 0xFFFFF))
out = bytearray(3 * MiB + len(block))
out[:MiB] = head
out[MiB:MiB + 4096] = bat
out[2 * MiB:2 * MiB + (68 << 10)] = src[old_meta:old_meta + (68 << 10)]
out[3 * MiB:] = block
if squeeze:
    out = (out[:320 << 10] + out[MiB:MiB + (64 << 10)] + out[2 * MiB:2 * MiB + (128 << 10)]
           + out[3 * MiB:3 * MiB + (64 << 10)])
open(args[1], "wb").write(out)
