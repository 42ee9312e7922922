#!/usr/bin/env python3
"""squeeze-luks.py IMAGE AREA QCOW2: seeds of fuzz_luks from an encrypted qcow2 qemu-img made.

AREA: the image's LUKS header area squeezed to its first active key slot (the header, then
that slot's key material from sector 2; the other slots inactive), which fuzz_luks opens
as it is. QCOW2: a tiny qcow2 (512-byte clusters, 64 KiB of disk) around that area, with two
of the image's encrypted data clusters mapped at guest clusters 0 and 5 (moved, they decrypt
to other bytes: the fuzzer only needs them read), under the 256 KiB max_len of the fuzzer.
"""
import struct
import sys

src, area_out, qcow2_out = sys.argv[1:4]
b = open(src, "rb").read()
hl = struct.unpack(">I", b[100:104])[0]
off = hl
while struct.unpack(">I", b[off:off + 4])[0] != 0x0537BE77:
    off += 8 + ((struct.unpack(">I", b[off + 4:off + 8])[0] + 7) & ~7)
luks_off, luks_len = struct.unpack(">QQ", b[off + 8:off + 24])
luks = b[luks_off:luks_off + luks_len]
key_bytes = struct.unpack(">I", luks[108:112])[0]

hdr = bytearray(luks[:592])
slot = None
for i in range(8):
    s = 208 + i * 48
    if struct.unpack(">I", hdr[s:s + 4])[0] == 0x00AC71F3 and slot is None:
        slot = i
    else:
        hdr[s:s + 4] = struct.pack(">I", 0x0000DEAD)
s = 208 + slot * 48
km_sector, stripes = struct.unpack(">II", hdr[s + 40:s + 48])
km_len = (key_bytes * stripes + 511) // 512 * 512
km = luks[km_sector * 512:km_sector * 512 + km_len]
hdr[s + 40:s + 44] = struct.pack(">I", 2)
area = bytes(hdr) + bytes(1024 - len(hdr)) + km
open(area_out, "wb").write(area)

# the tiny qcow2: header, the area, L1, L2, two data clusters
cs = 512
area_clusters = (len(area) + cs - 1) // cs
area_at = cs
l1_at = area_at + area_clusters * cs
l2_at = l1_at + cs
data_at = l2_at + cs
l1_src = struct.unpack(">Q", b[40:48])[0]
l2_src = struct.unpack(">Q", b[l1_src:l1_src + 8])[0] & 0x00FFFFFFFFFFFE00
data = b""
for i in range(2):
    e = struct.unpack(">Q", b[l2_src + 8 * i:l2_src + 8 * i + 8])[0] & 0x00FFFFFFFFFFFE00
    data += b[e:e + cs] if e else bytes(cs)
h = bytearray(cs)
struct.pack_into(">IIQIIQIIQQIIQQQQII", h, 0, 0x514649FB, 3, 0, 0, 9, 64 << 10, 2, 2,
                 l1_at, 0, 0, 0, 0, 0, 0, 0, 4, 104)
struct.pack_into(">IIQQ", h, 104, 0x0537BE77, 16, area_at, len(area))
l1 = bytearray(cs)
struct.pack_into(">Q", l1, 0, l2_at | 1 << 63)
l2 = bytearray(cs)
struct.pack_into(">Q", l2, 0, data_at | 1 << 63)
struct.pack_into(">Q", l2, 5 * 8, (data_at + cs) | 1 << 63)
out = bytes(h) + area + bytes(area_clusters * cs - len(area)) + bytes(l1) + bytes(l2) + data
open(qcow2_out, "wb").write(out)
