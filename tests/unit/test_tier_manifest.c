/* tier/manifest.h: sealing (zstd + AES-256-GCM) and the manifest parser, on hostile input. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tier/manifest.h"

static ims_seal_key key1 = {{1, 2, 3}}, key2 = {{9, 9, 9}};

static void test_seal_roundtrip(void **state)
{
	(void)state;
	uint8_t data[100000], *s1, *s2, *out;
	size_t l1, l2, lo;
	for (size_t i = 0; i < sizeof(data); i++)
		data[i] = (uint8_t)(i / 1000);
	assert_int_equal(ims_seal(&s1, &l1, &key1, "chunks/x", data, sizeof(data), 0), 0);
	assert_true(l1 < sizeof(data)); /* compressed */
	assert_int_equal(s1[4], IMS_SEAL_ZSTD);
	assert_int_equal(ims_seal(&s2, &l2, &key1, "chunks/x", data, sizeof(data), 0), 0);
	assert_memory_not_equal(s1 + 8, s2 + 8, 12); /* a fresh nonce each time */
	assert_int_equal(ims_unseal(&out, &lo, &key1, "chunks/x", s1, l1, sizeof(data)), 0);
	assert_int_equal(lo, sizeof(data));
	assert_memory_equal(out, data, sizeof(data));
	free(out);
	/* another key, another name, a flipped bit, a short object, too large: refused */
	assert_int_equal(ims_unseal(&out, &lo, &key2, "chunks/x", s1, l1, sizeof(data)), -EBADMSG);
	assert_int_equal(ims_unseal(&out, &lo, &key1, "chunks/y", s1, l1, sizeof(data)), -EBADMSG);
	s1[l1 / 2] ^= 1;
	assert_int_equal(ims_unseal(&out, &lo, &key1, "chunks/x", s1, l1, sizeof(data)), -EBADMSG);
	s1[l1 / 2] ^= 1;
	s1[4] = 0;
	assert_int_equal(ims_unseal(&out, &lo, &key1, "chunks/x", s1, l1, sizeof(data)), -EBADMSG);
	s1[4] = IMS_SEAL_ZSTD;
	assert_int_equal(ims_unseal(&out, &lo, &key1, "chunks/x", s1, 10, sizeof(data)), -EBADMSG);
	assert_int_equal(ims_unseal(&out, &lo, &key1, "chunks/x", s1, l1, sizeof(data) - 1),
			 -EBADMSG);
	free(s1);
	free(s2);
	/* random bytes stay as they are (no gain from zstd) */
	uint8_t rnd[4096];
	uint64_t x = 7;
	for (size_t i = 0; i < sizeof(rnd); i++) {
		x = x * 6364136223846793005ull + 1;
		rnd[i] = (uint8_t)(x >> 56);
	}
	assert_int_equal(ims_seal(&s1, &l1, &key1, "k", rnd, sizeof(rnd), 0), 0);
	assert_int_equal(s1[4], 0);
	assert_int_equal(l1, sizeof(rnd) + IMS_SEAL_OVERHEAD);
	assert_int_equal(ims_unseal(&out, &lo, &key1, "k", s1, l1, sizeof(rnd)), 0);
	assert_memory_equal(out, rnd, sizeof(rnd));
	free(out);
	free(s1);
}

static const char good[] =
	"{\"version\":1,\"name\":\"rbd/vm1@s\",\"pool\":\"rbd\",\"image\":\"vm1\",\"snap\":\"s\","
	"\"size\":10485760,\"features\":61,\"order\":22,\"chunk_size\":4194304,\"pushed\":"
	"1700000000,"
	"\"source\":\"raw\",\"content_sha256\":\"\",\"stored_bytes\":5,"
	"\"chunks\":[[0,4194304,\"%s\"],[8388608,2097152,\"%s\"]],"
	"\"zeros\":[[4194304,4194304]],\"tags\":{\"os\":\"debian\"}}";
#define H1 "0000000000000000000000000000000000000000000000000000000000000001"
#define H2 "abcdef0000000000000000000000000000000000000000000000000000000002"

static int parse_fmt(const char *fmt, const char *a, const char *b)
{
	char text[4096];
	ims_manifest *m = NULL;
	(void)fmt;
	snprintf(text, sizeof(text), good, a, b);
	int r = ims_manifest_parse(&m, text, strlen(text));
	ims_manifest_free(m);
	return r;
}

static int parse_text(const char *text)
{
	ims_manifest *m = NULL;
	int r = ims_manifest_parse(&m, text, strlen(text));
	ims_manifest_free(m);
	return r;
}

static void test_manifest_roundtrip(void **state)
{
	(void)state;
	char text[4096], *enc;
	size_t len;
	ims_manifest *m = NULL, *m2 = NULL;
	snprintf(text, sizeof(text), good, H1, H2);
	assert_int_equal(ims_manifest_parse(&m, text, strlen(text)), 0);
	assert_string_equal(m->name, "rbd/vm1@s");
	assert_int_equal(m->nchunks, 2);
	assert_int_equal(m->chunks[1].off, 8388608);
	assert_int_equal(m->chunks[1].sha256[0], 0xab);
	assert_int_equal(m->nzeros, 1);
	assert_int_equal(m->ntags, 1);
	assert_int_equal(ims_manifest_encode(&enc, &len, m), 0);
	assert_int_equal(ims_manifest_parse(&m2, enc, len), 0);
	assert_int_equal(m2->size, m->size);
	assert_memory_equal(m2->chunks, m->chunks, 2 * sizeof(*m->chunks));
	free(enc);
	ims_manifest_free(m);
	ims_manifest_free(m2);
}

/* An encrypted image's wrapped key: absent reads as "", kept through a round trip, not
 * written for a plain image; anything but a short [0-9a-z:] string is refused. */
static void test_manifest_wrapped_key(void **state)
{
	(void)state;
	char text[4096], *enc;
	size_t len;
	ims_manifest *m = NULL, *m2 = NULL;
	snprintf(text, sizeof(text), good, H1, H2);
	assert_int_equal(ims_manifest_parse(&m, text, strlen(text)), 0);
	assert_string_equal(m->wrapped_key, "");
	assert_int_equal(ims_manifest_encode(&enc, &len, m), 0);
	assert_null(strstr(enc, "wrapped_key"));
	free(enc);
	free(m->wrapped_key);
	m->wrapped_key = strdup("v1:0123456789abcdef:00ff");
	assert_int_equal(ims_manifest_encode(&enc, &len, m), 0);
	assert_int_equal(ims_manifest_parse(&m2, enc, len), 0);
	assert_string_equal(m2->wrapped_key, "v1:0123456789abcdef:00ff");
	free(enc);
	ims_manifest_free(m2);
	ims_manifest_free(m);

	static const char *bad[] = {"\"wrapped_key\":1,", "\"wrapped_key\":\"V1:AB\",",
				    "\"wrapped_key\":\"a b\",", "\"wrapped_key\":null,", NULL};
	for (int i = 0; bad[i]; i++) {
		char t2[4200];
		const char *at = strstr(text, "\"stored_bytes\"");
		snprintf(t2, sizeof(t2), "%.*s%s%s", (int)(at - text), text, bad[i], at);
		assert_int_equal(parse_text(t2), -EBADMSG);
	}
	char longkey[200], t3[4400];
	memset(longkey, 'a', sizeof(longkey) - 1);
	longkey[sizeof(longkey) - 1] = '\0';
	const char *at = strstr(text, "\"stored_bytes\"");
	snprintf(t3, sizeof(t3), "%.*s\"wrapped_key\":\"%s\",%s", (int)(at - text), text, longkey,
		 at);
	assert_int_equal(parse_text(t3), -EBADMSG);
	snprintf(t3, sizeof(t3), "%.*s\"wrapped_key\":\"shredded\",%s", (int)(at - text), text, at);
	assert_int_equal(parse_text(t3), 0);
}

/* IMS_MANIFEST_TAGS_MAX tags encode and parse back; one more is refused (push checks that
 * before uploading anything). */
static void test_manifest_tags_max(void **state)
{
	(void)state;
	char text[4096], *enc, k[32];
	size_t len;
	ims_manifest *m = NULL, *m2 = NULL;
	snprintf(text, sizeof(text), good, H1, H2);
	assert_int_equal(ims_manifest_parse(&m, text, strlen(text)), 0);
	ims_manifest_tag *tags = realloc(m->tags, (IMS_MANIFEST_TAGS_MAX + 1) * sizeof(*tags));
	assert_non_null(tags);
	m->tags = tags;
	for (size_t i = m->ntags; i < IMS_MANIFEST_TAGS_MAX + 1; i++) {
		snprintf(k, sizeof(k), "k%zu", i);
		m->tags[i].key = strdup(k);
		m->tags[i].value = strdup("v");
	}
	m->ntags = IMS_MANIFEST_TAGS_MAX;
	assert_int_equal(ims_manifest_encode(&enc, &len, m), 0);
	assert_int_equal(ims_manifest_parse(&m2, enc, len), 0);
	assert_int_equal(m2->ntags, IMS_MANIFEST_TAGS_MAX);
	ims_manifest_free(m2);
	free(enc);
	m->ntags = IMS_MANIFEST_TAGS_MAX + 1;
	assert_int_equal(ims_manifest_encode(&enc, &len, m), 0);
	assert_int_equal(ims_manifest_parse(&m2, enc, len), -EBADMSG);
	free(enc);
	ims_manifest_free(m);
}

static void test_manifest_hostile(void **state)
{
	(void)state;
	char text[4096];
	assert_int_equal(parse_fmt(good, H1, H2), 0);
	/* bad hashes */
	assert_int_equal(parse_fmt(good, "xyz", H2), -EBADMSG);
	assert_int_equal(
		parse_fmt(good, H1,
			  "ABCDEF0000000000000000000000000000000000000000000000000000000002"),
		-EBADMSG);
	/* not JSON, not an object, trailing bytes, too deep */
	assert_int_equal(parse_text(""), -EBADMSG);
	assert_int_equal(parse_text("[1,2]"), -EBADMSG);
	snprintf(text, sizeof(text), good, H1, H2);
	strcat(text, " x");
	assert_int_equal(parse_text(text), -EBADMSG);
	assert_int_equal(parse_text("{\"a\":[[[[[[[[[[[[1]]]]]]]]]]]]}"), -EBADMSG);
	/* every edit below breaks one rule */
	static const struct {
		const char *from, *to;
	} edits[] = {
		{"\"version\":1", "\"version\":2"},
		{"\"version\":1", "\"version\":\"1\""},
		{"\"name\":\"rbd/vm1@s\"", "\"name\":\"rbd/vm2@s\""},
		{"\"pool\":\"rbd\"", "\"pool\":\"r/b\""},
		{"\"image\":\"vm1\"", "\"image\":\".tmp\""},
		{"\"size\":10485760", "\"size\":-1"},
		{"\"size\":10485760", "\"size\":10485759"},
		{"\"size\":10485760", "\"size\":1e9"},
		{"\"order\":22", "\"order\":99"},
		{"\"chunk_size\":4194304", "\"chunk_size\":1"},
		{"[8388608,2097152", "[2097152,2097152"}, /* overlaps chunk 0 */
		{"[8388608,2097152", "[8388608,4194305"}, /* longer than chunk_size, past the end */
		{"[8388608,2097152", "[8388608,0"},
		{"\"zeros\":[[4194304,4194304]]", "\"zeros\":[]"},
		{"\"zeros\":[[4194304,4194304]]", "\"zeros\":[[4194304,1]]"},
		{"\"tags\":{\"os\":\"debian\"}", "\"tags\":{\"os\":1}"},
		{"\"chunks\":[", "\"chunks\":{\"a\":["},
	};
	for (size_t i = 0; i < sizeof(edits) / sizeof(edits[0]); i++) {
		char base[4096], out[4096];
		snprintf(base, sizeof(base), good, H1, H2);
		char *at = strstr(base, edits[i].from);
		assert_non_null(at);
		snprintf(out, sizeof(out), "%.*s%s%s", (int)(at - base), base, edits[i].to,
			 at + strlen(edits[i].from));
		if (parse_text(out) != -EBADMSG)
			fail_msg("edit %zu accepted: %s", i, out);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seal_roundtrip),
		cmocka_unit_test(test_manifest_roundtrip),
		cmocka_unit_test(test_manifest_hostile),
		cmocka_unit_test(test_manifest_tags_max),
		cmocka_unit_test(test_manifest_wrapped_key),
	};
	return cmocka_run_group_tests_name("tier_manifest", tests, NULL, NULL);
}
