/*
 * replicator/digest.c: the list of a compaction's checkpoint (ims_repl__digest_gap_text()), the
 * runs of entries removed: entries dropped and the runs an earlier checkpoint listed, adjacent
 * ones merged into one run carrying the hash of its last entry. Pure logic, no cluster.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "replicator/replicator_internal.h"

/* Entries of the given seqs, each with the hash "h<seq>". */
static ims_digest_entry *entries(const uint64_t *seqs, size_t n)
{
	ims_digest_entry *v = calloc(n ? n : 1, sizeof(*v));
	assert_non_null(v);
	for (size_t i = 0; i < n; i++) {
		v[i].seq = seqs[i];
		snprintf(v[i].hash, sizeof(v[i].hash), "h%llu", (unsigned long long)seqs[i]);
	}
	return v;
}

static ims_repl__digest_gap mkgap(uint64_t first, uint64_t last, const char *hash)
{
	ims_repl__digest_gap g = {.first = first, .last = last};
	snprintf(g.hash, sizeof(g.hash), "%s", hash);
	return g;
}

/* The text for entries @p seqs, old runs @p gaps, @p drop; its counts checked against
 * @p ngaps, @p covered. */
static void expect_text(const uint64_t *seqs, size_t n, const ims_repl__digest_gap *gaps, size_t ng,
			const uint64_t *drop, size_t nd, const char *want, uint64_t want_ngaps,
			uint64_t want_covered)
{
	ims_digest_entry *v = entries(seqs, n);
	size_t len = 0;
	uint64_t ngaps = 99, covered = 99;
	char *t = ims_repl__digest_gap_text(&len, &ngaps, &covered, v, n, gaps, ng, drop, nd);
	assert_non_null(t);
	assert_string_equal(t, want);
	assert_int_equal(len, strlen(want));
	assert_int_equal(ngaps, want_ngaps);
	assert_int_equal(covered, want_covered);
	free(t);
	free(v);
}

/* Nothing dropped, no old runs: an empty list. */
static void test_nothing(void **state)
{
	(void)state;
	const uint64_t seqs[] = {1, 2, 3};
	expect_text(seqs, 3, NULL, 0, NULL, 0, "", 0, 0);
}

/* Consecutive entries dropped form one run, with the hash of its last; a kept entry splits. */
static void test_runs_of_entries(void **state)
{
	(void)state;
	const uint64_t seqs[] = {1, 2, 3, 4, 5, 6};
	const uint64_t drop[] = {2, 3, 5};
	expect_text(seqs, 6, NULL, 0, drop, 3, "2 3 h3\n5 5 h5\n", 2, 3);
	const uint64_t all[] = {1, 2, 3, 4, 5, 6};
	expect_text(seqs, 6, NULL, 0, all, 6, "1 6 h6\n", 1, 6);
}

/* An old run and the entry right after it merge: the hash is the entry's (the last of both). */
static void test_old_run_then_entry(void **state)
{
	(void)state;
	const uint64_t seqs[] = {1, 5, 6, 7};
	const ims_repl__digest_gap gaps[] = {mkgap(2, 4, "g4")};
	const uint64_t drop[] = {5, 7};
	expect_text(seqs, 4, gaps, 1, drop, 2, "2 5 h5\n7 7 h7\n", 2, 5);
}

/* An entry and the old run right after it merge: the hash is the run's. */
static void test_entry_then_old_run(void **state)
{
	(void)state;
	const uint64_t seqs[] = {1, 4, 5};
	const ims_repl__digest_gap gaps[] = {mkgap(2, 3, "g3")};
	const uint64_t drop[] = {1};
	expect_text(seqs, 3, gaps, 1, drop, 1, "1 3 g3\n", 1, 3);
}

/* Old runs are kept as they were when nothing next to them is dropped, also two that touch
 * (merged: they are one run now) and one after the last entry. */
static void test_old_runs_kept(void **state)
{
	(void)state;
	const uint64_t seqs[] = {4, 8, 9};
	const ims_repl__digest_gap gaps[] = {mkgap(1, 3, "g3"), mkgap(5, 6, "g6"),
					     mkgap(7, 7, "g7"), mkgap(10, 12, "g12")};
	expect_text(seqs, 3, gaps, 4, NULL, 0, "1 3 g3\n5 7 g7\n10 12 g12\n", 3, 9);
}

/* Entries and old runs alternating, all dropped: one run from the first to the last. */
static void test_all_merge(void **state)
{
	(void)state;
	const uint64_t seqs[] = {1, 4, 7, 8};
	const ims_repl__digest_gap gaps[] = {mkgap(2, 3, "g3"), mkgap(5, 6, "g6")};
	const uint64_t drop[] = {1, 4, 7};
	expect_text(seqs, 4, gaps, 2, drop, 3, "1 7 h7\n", 1, 7);
}

/* A seq in @p drop that is no entry of the log changes nothing. */
static void test_drop_unknown(void **state)
{
	(void)state;
	const uint64_t seqs[] = {1, 2, 3};
	const uint64_t drop[] = {2, 40};
	expect_text(seqs, 3, NULL, 0, drop, 2, "2 2 h2\n", 1, 1);
}

/* Many runs: the text's buffer holds them all (each line at its longest). */
static void test_many(void **state)
{
	(void)state;
	enum { N = 2000 };
	uint64_t *seqs = calloc(N, sizeof(uint64_t)), *drop = calloc(N, sizeof(uint64_t));
	assert_non_null(seqs);
	assert_non_null(drop);
	size_t nd = 0;
	for (size_t i = 0; i < N; i++) {
		seqs[i] = UINT64_MAX - 2 * N + 2 * i; /* every other seq: no two adjacent */
		drop[nd++] = seqs[i];
	}
	ims_digest_entry *v = entries(seqs, N);
	for (size_t i = 0; i < N; i++)
		memset(v[i].hash, 'f', sizeof(v[i].hash) - 1);
	size_t len = 0;
	uint64_t ngaps = 0, covered = 0;
	char *t = ims_repl__digest_gap_text(&len, &ngaps, &covered, v, N, NULL, 0, drop, nd);
	assert_non_null(t);
	assert_int_equal(ngaps, N);
	assert_int_equal(covered, N);
	assert_int_equal(strlen(t), len);
	size_t lines = 0;
	for (const char *p = t; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, N);
	free(t);
	free(v);
	free(seqs);
	free(drop);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nothing),
		cmocka_unit_test(test_runs_of_entries),
		cmocka_unit_test(test_old_run_then_entry),
		cmocka_unit_test(test_entry_then_old_run),
		cmocka_unit_test(test_old_runs_kept),
		cmocka_unit_test(test_all_merge),
		cmocka_unit_test(test_drop_unknown),
		cmocka_unit_test(test_many),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
