/*
 * store/pg.c: where Ceph places an object (the values below are what `ceph osd map POOL NAME`
 * said on a Ceph 16.2 sandbox), the names of the site probe's objects, which PGs a probe round
 * asks, and the site's state from the answers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/pg.h"

static uint32_t hash(const char *s)
{
	return ims_pg_hash(s, strlen(s));
}

static void the_hash_is_cephs(void **st)
{
	(void)st;
	/* `ceph osd map rbd NAME`: "pg 2.29eec818 (2.0)": the raw hash, then the PG */
	assert_int_equal(hash("a"), 0x29eec818u);
	assert_int_equal(hash("b"), 0x54aca597u);
	assert_int_equal(hash("c"), 0x4fa4bedbu);
	assert_int_equal(hash("d"), 0x322f4a94u);
	assert_int_equal(hash("e"), 0xef61efceu);
	assert_int_equal(hash("abcdefghijk"), 0xe52b8e4cu);		/* a tail of 11 */
	assert_int_equal(hash("abcdefghijkl"), 0x0b1b3ea5u);		/* one block */
	assert_int_equal(hash("imgstore.probe"), 0xeb8d4b07u);		/* block and tail */
	assert_int_equal(hash("imgstore.probe.pg.12345"), 0x158c0745u); /* 23 bytes */
	assert_int_equal(hash("abcdefghijklmnopqrstuvwxyz0123456789"), 0x92c983c7u); /* 3 blocks */
}

static void the_pg_is_the_stable_mod(void **st)
{
	(void)st;
	/* a power of two: the low bits */
	assert_int_equal(ims_pg_of(0xeb8d4b07u, 32), 0x7); /* imgstore.probe in rbd: 2.7 */
	assert_int_equal(ims_pg_of(0xe52b8e4cu, 32), 0xc); /* abcdefghijk: 2.c */
	assert_int_equal(ims_pg_of(0x54aca597u, 8), 0x7);  /* b in a pool of 8: 3.7 */
	/* pg_num 12 (`ceph osd map p12 NAME`): the low 4 bits if under 12, else the low 3 */
	assert_int_equal(ims_pg_of(0x29eec818u, 12), 0x8); /* a: 4.8 */
	assert_int_equal(ims_pg_of(0x4fa4bedbu, 12), 0xb); /* c: 4.b */
	assert_int_equal(ims_pg_of(0xef61efceu, 12), 0x6); /* e: 4.6 (0xe is past 11) */
	assert_int_equal(ims_pg_of(0xe52b8e4cu, 12), 0x4); /* abcdefghijk: 4.4 */
	assert_int_equal(ims_pg_of(0xeb8d4b07u, 12), 0x7); /* imgstore.probe: 4.7 */
	assert_int_equal(ims_pg_of(0xffffffffu, 1), 0);
}

static void one_name_lands_in_each_pg(void **st)
{
	(void)st;
	static const uint32_t sizes[] = {1, 8, 12, 32, 100, 1024};
	for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
		uint32_t n = sizes[k];
		char(*names)[IMS_PG_NAME_MAX] = calloc(n, IMS_PG_NAME_MAX);
		assert_non_null(names);
		assert_int_equal(ims_pg_names(names, n), 0);
		for (uint32_t i = 0; i < n; i++) {
			assert_int_equal(strncmp(names[i], "imgstore.probe.pg.", 18), 0);
			assert_int_equal(ims_pg_of(hash(names[i]), n), i);
		}
		free(names);
	}
	char one[1][IMS_PG_NAME_MAX];
	assert_int_equal(ims_pg_names(one, 0), -EINVAL);
	/* the same names every time: a daemon's objects and another's are the same few */
	char a[32][IMS_PG_NAME_MAX], b[32][IMS_PG_NAME_MAX];
	assert_int_equal(ims_pg_names(a, 32), 0);
	assert_int_equal(ims_pg_names(b, 32), 0);
	for (int i = 0; i < 32; i++)
		assert_string_equal(a[i], b[i]);
}

static void a_small_pool_is_asked_whole(void **st)
{
	(void)st;
	ims_pg_state state[8] = {0};
	bool busy[8] = {0};
	uint32_t out[16], cursor = 0;
	assert_int_equal(ims_pg_round(out, 16, state, busy, 8, &cursor), 8);
	for (uint32_t i = 0; i < 8; i++)
		assert_int_equal(out[i], i);
	/* a PG whose probe is still in flight is not asked twice */
	busy[3] = true;
	assert_int_equal(ims_pg_round(out, 16, state, busy, 8, &cursor), 7);
	for (size_t i = 0; i < 7; i++)
		assert_int_not_equal(out[i], 3);
	assert_int_equal(ims_pg_round(out, 16, state, busy, 0, &cursor), 0);
}

static void a_large_pool_is_asked_in_turn(void **st)
{
	(void)st;
	enum { N = 10, K = 4 };
	ims_pg_state state[N] = {0};
	bool busy[N] = {0};
	uint32_t out[K], cursor = 0;
	int asked[N] = {0};
	/* every PG within ceil(10 / 4) = 3 rounds, each once */
	for (int round = 0; round < 3; round++) {
		size_t n = ims_pg_round(out, K, state, busy, N, &cursor);
		assert_true(n >= 2 && n <= K);
		for (size_t i = 0; i < n; i++)
			asked[out[i]]++;
	}
	for (int i = 0; i < N; i++)
		assert_int_equal(asked[i], i < 2 ? 2 : 1); /* 12 slots: 0 and 1 come round again */

	/* silent ones come first, every round, at most half the round; the rotation goes on */
	state[7] = IMS_PG_SILENT;
	state[9] = IMS_PG_SILENT;
	state[5] = IMS_PG_SILENT;
	cursor = 0;
	size_t n = ims_pg_round(out, K, state, busy, N, &cursor);
	assert_int_equal(n, K);
	assert_int_equal(out[0], 5);
	assert_int_equal(out[1], 7);
	assert_int_equal(out[2], 0);
	assert_int_equal(out[3], 1);
	assert_int_equal(cursor, 2);
	/* a silent PG reached by the rotation is not asked twice */
	cursor = 6;
	n = ims_pg_round(out, K, state, busy, N, &cursor);
	assert_int_equal(n, K);
	assert_int_equal(out[0], 5);
	assert_int_equal(out[1], 7);
	assert_int_equal(out[2], 6);
	assert_int_equal(out[3], 8);
	assert_int_equal(cursor, 9);
}

static void up_partly_down(void **st)
{
	(void)st;
	ims_pg_state s[4] = {IMS_PG_ANSWERED, IMS_PG_ANSWERED, IMS_PG_UNKNOWN, IMS_PG_ANSWERED};
	uint32_t silent = 99;
	assert_int_equal(ims_pg_summary(&silent, s, 4, 4, 3), IMS_PG_UP);
	assert_int_equal(silent, 0);
	s[1] = IMS_PG_SILENT;
	assert_int_equal(ims_pg_summary(&silent, s, 4, 4, 2), IMS_PG_PARTLY);
	assert_int_equal(silent, 1);
	/* nothing answered this round: down, whatever older answers say */
	assert_int_equal(ims_pg_summary(&silent, s, 4, 2, 0), IMS_PG_DOWN);
	/* no round asked anything (every PG still in flight): the states decide */
	assert_int_equal(ims_pg_summary(NULL, s, 4, 0, 0), IMS_PG_PARTLY);
	for (int i = 0; i < 4; i++)
		s[i] = IMS_PG_SILENT;
	assert_int_equal(ims_pg_summary(&silent, s, 4, 4, 0), IMS_PG_DOWN);
	assert_int_equal(silent, 4);
	/* every PG silent, their stats still in flight, none asked this round: down */
	assert_int_equal(ims_pg_summary(&silent, s, 4, 0, 0), IMS_PG_DOWN);
}

static void the_silent_pgs_are_named(void **st)
{
	(void)st;
	ims_pg_state s[32] = {0};
	char buf[64];
	ims_pg_list_silent(buf, sizeof(buf), s, 32, 2);
	assert_string_equal(buf, "");
	s[1] = s[5] = s[0x1f] = IMS_PG_SILENT;
	ims_pg_list_silent(buf, sizeof(buf), s, 32, 2);
	assert_string_equal(buf, "2.1, 2.5, 2.1f");
	for (int i = 0; i < 32; i++)
		s[i] = IMS_PG_SILENT;
	ims_pg_list_silent(buf, sizeof(buf), s, 32, 12);
	assert_string_equal(buf, "12.0, 12.1, 12.2, 12.3, 12.4, 12.5 and 26 more");
	assert_true(strlen(buf) < sizeof(buf));
	char tiny[8];
	ims_pg_list_silent(tiny, sizeof(tiny), s, 32, 12);
	assert_true(strlen(tiny) < sizeof(tiny));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(the_hash_is_cephs),
		cmocka_unit_test(the_pg_is_the_stable_mod),
		cmocka_unit_test(one_name_lands_in_each_pg),
		cmocka_unit_test(a_small_pool_is_asked_whole),
		cmocka_unit_test(a_large_pool_is_asked_in_turn),
		cmocka_unit_test(up_partly_down),
		cmocka_unit_test(the_silent_pgs_are_named),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
