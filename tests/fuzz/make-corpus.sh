#!/bin/sh
# The fuzzers' seed corpus: tiny qcow2, vmdk, vdi, vhdx and vpc images of the kinds the readers
# meet, made by qemu-img and qemu-io (qemu-utils) into DIR/FORMAT (vhdx: squeezed by
# compact-vhdx.py, python3, as fuzz_vhdx.c takes it). Usage: make-corpus.sh DIR
set -eu

out=${1:?usage: make-corpus.sh DIR}
for tool in qemu-img qemu-io; do
	command -v "$tool" >/dev/null 2>&1 || {
		echo "make-corpus.sh: '$tool' is not installed (apt-get install qemu-utils)" >&2
		exit 1
	}
done
rm -rf "$out"
mkdir -p "$out/qcow2" "$out/vmdk" "$out/vdi" "$out/vhdx" "$out/vpc" "$out/luks" "$out/tmp"
# absolute: qemu-img resolves a backing file's name against its image's folder
out=$(cd "$out" && pwd)
q=$out/qcow2
v=$out/vmdk
t=$out/tmp

# a 64 KiB disk: text, zeros, a few bytes at an odd offset
yes 'imgstore fuzz seed' | head -c 20000 >"$t/d.raw"
truncate -s 65536 "$t/d.raw"
printf 'odd bytes\001\377' | dd of="$t/d.raw" bs=1 seek=40001 conv=notrunc 2>/dev/null

img() { qemu-img "$@" >/dev/null; }
io() { fmt=$1; file=$2; shift 2; qemu-io -f "$fmt" "$@" "$file" >/dev/null; }

img convert -f raw -O qcow2 -o compat=0.10,cluster_size=512 "$t/d.raw" "$q/v2-512.qcow2"
img convert -f raw -O qcow2 -o compat=1.1,cluster_size=512 "$t/d.raw" "$q/v3-512.qcow2"
img convert -f raw -O qcow2 -c -o cluster_size=512 "$t/d.raw" "$q/deflate-512.qcow2"
img convert -f raw -O qcow2 -c -o cluster_size=4K "$t/d.raw" "$q/deflate-4k.qcow2"
img convert -f raw -O qcow2 -c -o cluster_size=512,compression_type=zstd "$t/d.raw" \
	"$q/zstd-512.qcow2"
img create -f qcow2 -o cluster_size=16K,extended_l2=on "$q/ext-16k.qcow2" 64K
io qcow2 "$q/ext-16k.qcow2" -c 'write -P 0xab 1024 1536' -c 'write -z 2048 4096' \
	-c 'write -P 0x11 32K 16K'
img create -f qcow2 -o cluster_size=512 "$q/zero-512.qcow2" 64K
io qcow2 "$q/zero-512.qcow2" -c 'write -P 0xab 0 4K' -c 'write -z 1K 1K' -c 'write -P 1 60001 3'
img create -f qcow2 -o cluster_size=512,lazy_refcounts=on "$q/lazy-512.qcow2" 64K
io qcow2 "$q/lazy-512.qcow2" -c 'write -P 0x22 8K 2K'
img create -f qcow2 -o cluster_size=512 -u -F qcow2 -b base.qcow2 "$q/backing-512.qcow2" 64K

img convert -f raw -O vmdk -o subformat=monolithicSparse "$t/d.raw" "$v/sparse.vmdk"
img convert -f raw -O vmdk -o subformat=streamOptimized "$t/d.raw" "$v/stream.vmdk"
img create -f vmdk -o zeroed_grain=on "$v/zeroed.vmdk" 64K
io vmdk "$v/zeroed.vmdk" -c 'write -P 0x33 0 64K' -c 'write -z 0 64K'
img create -f vmdk -o subformat=monolithicFlat "$v/flat.vmdk" 64K
rm -f "$v/flat-flat.vmdk"
img create -f vmdk "$t/base.vmdk" 64K
img create -f vmdk -F vmdk -b "$t/base.vmdk" "$v/delta.vmdk"

# vdi: dynamic (blocks of 1 MiB, so a disk of a few blocks) and static; vpc: dynamic, with a
# CHS geometry or its exact size, and fixed (its footer at the end)
img convert -f raw -O vdi -o static=off "$t/d.raw" "$out/vdi/dynamic.vdi"
img convert -f raw -O vdi -o static=on "$t/d.raw" "$out/vdi/static.vdi"
img create -f vdi "$out/vdi/holes.vdi" 3M
io vdi "$out/vdi/holes.vdi" -c 'write -P 0x44 1M 4K'
img convert -f raw -O vpc -o subformat=dynamic "$t/d.raw" "$out/vpc/dynamic.vhd"
img convert -f raw -O vpc -o subformat=dynamic,force_size=on "$t/d.raw" "$out/vpc/force.vhd"
img convert -f raw -O vpc -o subformat=fixed "$t/d.raw" "$out/vpc/fixed.vhd"
img create -f vpc "$out/vpc/holes.vhd" 5M
io vpc "$out/vpc/holes.vhd" -c 'write -P 0x44 2M 4K'
# vhdx: a disk of 64 KiB in one 1 MiB block (written; written, then zeroed), squeezed as
# fuzz_vhdx.c takes it
img create -f vhdx -o block_size=1M "$t/w.vhdx" 64K
io vhdx "$t/w.vhdx" -c 'write -P 0x55 10K 4K'
python3 "$(dirname "$0")/compact-vhdx.py" --squeeze "$t/w.vhdx" "$out/vhdx/written.vhdx"
img create -f vhdx -o block_size=1M "$t/z.vhdx" 64K
io vhdx "$t/z.vhdx" -c 'write -P 0x55 0 64K' -c 'write -z 0 32K'
python3 "$(dirname "$0")/compact-vhdx.py" --squeeze "$t/z.vhdx" "$out/vhdx/zeroed.vhdx"

# luks: encrypted qcow2 images with fuzz_luks.c's passphrase and few PBKDF2 iterations
# (iter-time 1 ms), squeezed to one key slot (squeeze-luks.py): the header area alone, and a
# tiny qcow2 around it. qemu-img counts the iterations by the CPU time it measures and now and
# then fails to ("Unable to get accurate CPU usage"): a few tries.
printf 'imgstore fuzz' >"$t/pass"
luks() {
	name=$1
	shift
	"$(dirname "$0")/../lib/qemu-luks" qemu-img convert -f raw -O qcow2 \
		--object "secret,id=s0,file=$t/pass" \
		-o "encrypt.format=luks,encrypt.key-secret=s0,encrypt.iter-time=1$*" \
		"$t/d.raw" "$t/$name.qcow2" >/dev/null ||
		{ echo "make-corpus.sh: qemu-img failed on $name" >&2; exit 1; }
	python3 "$(dirname "$0")/squeeze-luks.py" "$t/$name.qcow2" "$out/luks/$name.area" \
		"$out/luks/$name.qcow2"
}
luks xts128 ,encrypt.cipher-alg=aes-128
luks essiv ,encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha256
luks plain64-sha1 ,encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,encrypt.ivgen-alg=plain64,encrypt.hash-alg=sha1

rm -rf "$t"
