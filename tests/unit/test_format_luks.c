/*
 * Unit tests of LUKS-encrypted qcow2 images (store/format_luks.c, format_qcow2.c): the LUKS1
 * header parser on hostile headers crafted in memory, and real images made by qemu-img with
 * a passphrase file, read whole and compared with qemu-img's own decryption
 * (`qemu-img convert --object secret,... --image-opts ... -O raw`), then patched into hostile
 * ones.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "store/format.h"
#include "store/format_internal.h"
#include "tests/unit/format_test_util.h"

#define PASS "correct horse battery"
#define AREA (1u << 20)

/* ---------------------------------------------------------------------------------------- */
/* the header parser on crafted headers */

static void put32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

/* A header qemu-img would make (aes xts-plain64 sha256, 64-byte key), slot 0 active. */
static void good_header(uint8_t h[IMS_FORMAT__LUKS_HEADER_BYTES])
{
	memset(h, 0, IMS_FORMAT__LUKS_HEADER_BYTES);
	memcpy(h, "LUKS\xba\xbe\0\1", 8);
	strcpy((char *)h + 8, "aes");
	strcpy((char *)h + 40, "xts-plain64");
	strcpy((char *)h + 72, "sha256");
	put32(h + 104, 4096); /* payload offset (unused in qcow2) */
	put32(h + 108, 64);   /* key bytes */
	put32(h + 164, 1000); /* digest iterations */
	for (unsigned i = 0; i < 8; i++) {
		uint8_t *s = h + 208 + i * 48;
		put32(s, i == 0 ? 0x00ac71f3u : 0x0000deadu);
		put32(s + 4, 2000);	    /* iterations */
		put32(s + 40, 8 + i * 504); /* key material, sectors */
		put32(s + 44, 4000);	    /* stripes */
	}
}

static void expect_parse(const uint8_t *h, uint64_t area, uint32_t max_iter, int err,
			 const char *msg)
{
	ims_format__luks_info info;
	int r;

	ims_error_clear();
	r = ims_format__luks_parse(&info, h, IMS_FORMAT__LUKS_HEADER_BYTES, area, max_iter);
	if (r != err || (msg && !strstr(ims_error_last(), msg)))
		fail_msg("parse: got %d '%s', wanted %d '%s'", r, ims_error_last(), err,
			 msg ? msg : "");
	if (!err)
		return;
	assert_null(strchr(ims_error_last(), '\n'));
}

static void test_parse_good(void **state)
{
	uint8_t h[IMS_FORMAT__LUKS_HEADER_BYTES];
	ims_format__luks_info info;

	(void)state;
	good_header(h);
	assert_int_equal(ims_format__luks_parse(&info, h, sizeof(h), AREA, 5000), 0);
	assert_int_equal(info.key_bytes, 64);
	assert_int_equal(info.iv, IMS_FORMAT__LUKS_IV_PLAIN64);
	assert_true(info.slots[0].active);
	assert_false(info.slots[1].active);
	assert_int_equal(info.slots[0].km_off, 8 * 512);
	assert_int_equal(info.slots[0].km_len, 64 * 4000);
	/* the modes qemu-img makes */
	strcpy((char *)h + 40, "cbc-essiv:sha256");
	put32(h + 108, 32);
	assert_int_equal(ims_format__luks_parse(&info, h, sizeof(h), AREA, 5000), 0);
	assert_int_equal(info.iv, IMS_FORMAT__LUKS_IV_ESSIV);
	memset(h + 40, 0, 32);
	strcpy((char *)h + 40, "cbc-plain");
	put32(h + 108, 24);
	assert_int_equal(ims_format__luks_parse(&info, h, sizeof(h), AREA, 5000), 0);
	assert_int_equal(info.iv, IMS_FORMAT__LUKS_IV_PLAIN);
}

static void test_parse_hostile(void **state)
{
	uint8_t h[IMS_FORMAT__LUKS_HEADER_BYTES];

	(void)state;
	good_header(h);
	expect_parse(h, 100, 5000, -EINVAL, "LUKS: truncated header");
	h[0] = 'X';
	expect_parse(h, AREA, 5000, -EINVAL, "LUKS: bad magic");
	good_header(h);
	h[7] = 2;
	expect_parse(h, AREA, 5000, -ENOTSUP, "LUKS: version 2 is not supported");

	/* names: unterminated, empty, not printable, unknown */
	good_header(h);
	memset(h + 8, 'a', 32);
	expect_parse(h, AREA, 5000, -EINVAL, "the cipher name field is not terminated");
	good_header(h);
	h[40] = 0;
	expect_parse(h, AREA, 5000, -EINVAL, "the cipher mode field is empty");
	good_header(h);
	h[73] = 0x01;
	expect_parse(h, AREA, 5000, -EINVAL, "the hash field is not printable");
	good_header(h);
	strcpy((char *)h + 8, "twofish");
	expect_parse(h, AREA, 5000, -ENOTSUP, "LUKS: cipher 'twofish' is not supported");
	good_header(h);
	strcpy((char *)h + 40, "ecb");
	expect_parse(h, AREA, 5000, -ENOTSUP, "LUKS: cipher mode 'ecb' is not supported");
	good_header(h);
	strcpy((char *)h + 40, "xts-essiv:sha256");
	expect_parse(h, AREA, 5000, -ENOTSUP, "cipher mode 'xts-essiv:sha256' is not supported");
	good_header(h);
	strcpy((char *)h + 40, "cbc-essiv:sha1");
	put32(h + 108, 32);
	expect_parse(h, AREA, 5000, -ENOTSUP, "cipher mode 'cbc-essiv:sha1' is not supported");
	good_header(h);
	strcpy((char *)h + 72, "md5");
	expect_parse(h, AREA, 5000, -ENOTSUP, "LUKS: hash 'md5' is not supported");

	/* key sizes */
	good_header(h);
	put32(h + 108, 0);
	expect_parse(h, AREA, 5000, -EINVAL, "LUKS: key size 0 bytes");
	put32(h + 108, 65);
	expect_parse(h, AREA, 5000, -EINVAL, "LUKS: key size 65 bytes");
	put32(h + 108, 48);
	expect_parse(h, AREA, 5000, -ENOTSUP, "a 48-byte key does not fit aes in xts mode");

	/* iterations: none, over the ceiling, all the slots together */
	good_header(h);
	put32(h + 164, 0);
	expect_parse(h, AREA, 5000, -EINVAL, "master key digest asks 0 PBKDF2 iterations");
	put32(h + 164, 0xffffffffu);
	expect_parse(h, AREA, 5000, -ENOTSUP,
		     "master key digest asks 4294967295 PBKDF2 iterations (1..5000 are accepted)");
	good_header(h);
	put32(h + 208 + 4, 5001);
	expect_parse(h, AREA, 5000, -ENOTSUP,
		     "key slot 0 asks 5001 PBKDF2 iterations (1..5000 are accepted)");
	put32(h + 208 + 4, 0);
	expect_parse(h, AREA, 5000, -EINVAL, "key slot 0 asks 0 PBKDF2 iterations");
	good_header(h);
	for (unsigned i = 0; i < 3; i++) {
		put32(h + 208 + i * 48, 0x00ac71f3u);
		put32(h + 208 + i * 48 + 4, 4000);
	}
	/* 3 x 4000 iterations of 2 sha256 blocks (a 64-byte key) */
	expect_parse(h, 2 * AREA, 5000, -ENOTSUP,
		     "the key slots ask 24000 PBKDF2 rounds together (iterations times key "
		     "blocks; at most 20000 are accepted)");
	strcpy((char *)h + 72, "sha512"); /* one block each */
	expect_parse(h, 2 * AREA, 5000, 0, NULL);

	/* slots: state, stripes, key material outside the area or in the header */
	good_header(h);
	put32(h + 208 + 48, 0x12345678u);
	expect_parse(h, AREA, 5000, -EINVAL, "key slot 1 has state 0x12345678");
	good_header(h);
	put32(h + 208, 0x0000deadu);
	expect_parse(h, AREA, 5000, -EINVAL, "LUKS: no key slot is active");
	good_header(h);
	put32(h + 208 + 44, 0);
	expect_parse(h, AREA, 5000, -EINVAL, "key slot 0 has 0 stripes");
	put32(h + 208 + 44, 4001);
	expect_parse(h, AREA, 5000, -EINVAL, "key slot 0 has 4001 stripes");
	good_header(h);
	expect_parse(h, 4096 + 64 * 4000 - 512, 5000, -EINVAL,
		     "the key material of slot 0 (offset 4096, 256000 bytes) lies outside");
	put32(h + 208 + 40, 0);
	expect_parse(h, AREA, 5000, -EINVAL, "the key material of slot 0 (offset 0");
	put32(h + 208 + 40, 0xffffffffu);
	expect_parse(h, AREA, 5000, -EINVAL, "the key material of slot 0");
}

/* ---------------------------------------------------------------------------------------- */
/* images qemu-img made */

/*
 * qemu-img measures the CPU time of PBKDF2 to count iterations (a second or more per image,
 * whatever iter-time says: few images here) and fails on about half the tries ("Unable to get
 * accurate CPU usage"): tests/lib/qemu-luks tries again on that error only.
 */
static void make_encrypted(const char *name, const char *opts)
{
	ft_run(QEMU_LUKS " qemu-img convert -f raw -O qcow2 --object "
			 "secret,id=s0,file='%s' -o encrypt.format=luks,encrypt.key-secret=s0,"
			 "encrypt.iter-time=10%s%s '%s' '%s'",
	       ft_path("pass"), opts[0] ? "," : "", opts, ft_path("pattern.raw"), ft_path(name));
}

/* What qemu-img reads of @p name with the passphrase. */
static void qemu_decrypt(const char *name, const char *raw)
{
	ft_run("qemu-img convert --object secret,id=s0,file='%s' --image-opts "
	       "driver=qcow2,file.filename='%s',encrypt.key-secret=s0 -O raw '%s'",
	       ft_path("pass"), ft_path(name), ft_path(raw));
}

static const ims_format_secret secret = {PASS, sizeof(PASS) - 1, 0};

static int setup(void **state)
{
	int r = ft_setup_qemu(state);
	if (r == 0)
		ft_write_file(ft_path("pass"), PASS, sizeof(PASS) - 1);
	return r;
}

static void check_variant(const char *name, const char *opts, size_t piece)
{
	ft_walk w;

	make_encrypted(name, opts);
	qemu_decrypt(name, "want.raw");
	ft_compare_secret(ft_path(name), IMS_FORMAT_QCOW2, ft_path("want.raw"), piece, &secret, &w);
	assert_true(w.data_extents > 0);
	ft_run("rm -f '%s' '%s'", ft_path(name), ft_path("want.raw"));
}

static void test_qemu_ciphers(void **state)
{
	(void)state;
	/* qemu-img's default: aes-256 xts-plain64, sha256 */
	check_variant("default.qcow2", "", 65536);
	check_variant("aes128.qcow2", "cluster_size=4K,encrypt.cipher-alg=aes-128", 3 * 65536 + 7);
	check_variant("ext.qcow2", "extended_l2=on,cluster_size=64K", 4095);
	check_variant("essiv.qcow2",
		      "encrypt.cipher-alg=aes-256,encrypt.cipher-mode=cbc,"
		      "encrypt.ivgen-alg=essiv,encrypt.ivgen-hash-alg=sha256",
		      65536 + 512);
	check_variant("plain64.qcow2",
		      "cluster_size=512,encrypt.cipher-alg=aes-128,encrypt.cipher-mode=cbc,"
		      "encrypt.ivgen-alg=plain64,encrypt.hash-alg=sha512",
		      1000);
}

/* Written by the guest after creation: the sectors of partial clusters. */
static void test_qemu_io_writes(void **state)
{
	ft_walk w;

	(void)state;
	ft_run(QEMU_LUKS " qemu-img create -q -f qcow2 --object "
			 "secret,id=s0,file='%s' -o encrypt.format=luks,encrypt.key-secret=s0,"
			 "encrypt.iter-time=10 '%s' 4M",
	       ft_path("pass"), ft_path("io.qcow2"));
	ft_run("qemu-io --object secret,id=s0,file='%s' --image-opts "
	       "driver=qcow2,file.filename='%s',encrypt.key-secret=s0 -c 'write -P 0xab 3M 512' "
	       "-c 'write -P 0x5c 4096 8192' -c 'write -P 0x11 1M 64k' -c 'write -z 1M 4096' "
	       ">/dev/null",
	       ft_path("pass"), ft_path("io.qcow2"));
	qemu_decrypt("io.qcow2", "io.raw");
	ft_compare_secret(ft_path("io.qcow2"), IMS_FORMAT_AUTO, ft_path("io.raw"), 4096 + 17,
			  &secret, &w);
	assert_true(w.data_bytes >= 3 * 65536);
}

static int open_file(const char *name, const ims_format_secret *s)
{
	ims_format_reader *r = NULL;
	ims_source src;
	size_t len;
	uint8_t *b = ft_read_file(ft_path(name), &len);
	ims_source_mem_ctx ctx;
	int err;

	ims_source_mem(&src, &ctx, b, len);
	ims_error_clear();
	err = ims_format_open_secret(&r, &src, IMS_FORMAT_AUTO, s);
	ims_format_close(r);
	free(b);
	if (err < 0)
		assert_null(strchr(ims_error_last(), '\n'));
	return err;
}

/* The offset of the LUKS header in @p b (the crypto header extension). */
static uint64_t luks_offset(const uint8_t *b)
{
	uint64_t off;

	for (off = ims_format__be32(b + 100); ims_format__be32(b + off) != 0x0537be77u;)
		off += 8 + ((ims_format__be32(b + off + 4) + 7u) & ~7u);
	return ims_format__be64(b + off + 8);
}

/* Patch @p len bytes at @p off (from the LUKS header when @p in_luks) of "enc.qcow2" into
 * "bad.qcow2". */
static void patch(bool in_luks, uint64_t off, const void *bytes, size_t len)
{
	size_t n;
	uint8_t *b = ft_read_file(ft_path("enc.qcow2"), &n);

	if (in_luks)
		off += luks_offset(b);
	memcpy(b + off, bytes, len);
	ft_write_file(ft_path("bad.qcow2"), b, n);
	free(b);
}

static void expect_bad(int err, const char *msg)
{
	int r = open_file("bad.qcow2", &secret);
	if (r != err || !strstr(ims_error_last(), msg))
		fail_msg("got %d '%s', wanted %d '%s'", r, ims_error_last(), err, msg);
}

static void test_qemu_refused(void **state)
{
	static const ims_format_secret wrong = {"wrong", 5, 0};
	static const ims_format_secret low = {PASS, sizeof(PASS) - 1, 1000};
	uint8_t big[4] = {0x7f, 0xff, 0xff, 0xff}, zero[8] = {0};
	int r;

	(void)state;
	make_encrypted("enc.qcow2", "cluster_size=4K");
	r = open_file("enc.qcow2", NULL);
	assert_int_equal(r, -EINVAL);
	assert_string_equal(ims_error_last(),
			    "qcow2: the image is LUKS-encrypted; give --passphrase-file");
	assert_int_equal(open_file("enc.qcow2", &wrong), -EINVAL);
	assert_string_equal(ims_error_last(), "no key slot opens with this passphrase");
	/* qemu-img's iterations are over a low ceiling: refused before PBKDF2 runs */
	assert_int_equal(open_file("enc.qcow2", &low), -ENOTSUP);
	assert_non_null(strstr(ims_error_last(), "PBKDF2 iterations (1..1000 are accepted)"));
	assert_int_equal(open_file("enc.qcow2", &secret), 0);

	/* a passphrase for images that are not encrypted: refused */
	ft_run("qemu-img convert -f raw -O qcow2 '%s' '%s'", ft_path("pattern.raw"),
	       ft_path("plain.qcow2"));
	assert_int_equal(open_file("plain.qcow2", &secret), -EINVAL);
	assert_string_equal(ims_error_last(),
			    "a passphrase was given but the image (qcow2) is not encrypted");
	assert_int_equal(open_file("pattern.raw", &secret), -EINVAL);
	assert_string_equal(ims_error_last(),
			    "a passphrase was given but the image (raw) is not encrypted");

	/* the LUKS header patched: magic, cipher, iterations over the ceiling, key material */
	patch(true, 0, "XXXX", 4);
	expect_bad(-EINVAL, "LUKS: bad magic");
	patch(true, 8, "twofish", 8);
	expect_bad(-ENOTSUP, "LUKS: cipher 'twofish' is not supported");
	patch(true, 208 + 4, big, 4);
	expect_bad(-ENOTSUP, "key slot 0 asks 2147483647 PBKDF2 iterations (1..10000000 are");
	patch(true, 164, big, 4);
	expect_bad(-ENOTSUP, "master key digest asks 2147483647 PBKDF2 iterations");
	patch(true, 208 + 40, big, 4);
	expect_bad(-EINVAL, "the key material of slot 0");
	/* the key material changed: the digest does not match */
	patch(true, 4096 + 100, "garbage!", 8);
	expect_bad(-EINVAL, "no key slot opens with this passphrase");

	/* the extension: gone, pointing into the header or past the end */
	{
		size_t n;
		uint8_t *b = ft_read_file(ft_path("enc.qcow2"), &n);
		uint64_t off = ims_format__be32(b + 100);
		while (ims_format__be32(b + off) != 0x0537be77u)
			off += 8 + ((ims_format__be32(b + off + 4) + 7u) & ~7u);
		free(b);
		patch(false, off, "\x12\x34\x56\x78", 4);
		expect_bad(-EINVAL, "no valid encryption header extension");
		patch(false, off + 8, zero, 8);
		expect_bad(-EINVAL, "the encryption header (offset 0x0");
		patch(false, off + 8, "\x00\x00\x01\x00\x00\x00\x00\x00", 8);
		expect_bad(-EINVAL, "past the end of the file");
	}
	/* the legacy AES method stays refused */
	patch(false, 32, "\0\0\0\1", 4);
	expect_bad(-ENOTSUP, "(crypt_method 1, AES)");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_good),   cmocka_unit_test(test_parse_hostile),
		cmocka_unit_test(test_qemu_ciphers), cmocka_unit_test(test_qemu_io_writes),
		cmocka_unit_test(test_qemu_refused),
	};
	return cmocka_run_group_tests_name("format_luks", tests, setup, ft_teardown);
}
