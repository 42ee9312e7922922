/*
 * Unit tests of an outbound stream's ring (store/format.h, ims_source_growing_sent()): chunks
 * a client fetched several at a time, answered out of order, retried, or asked ahead of the
 * export and answered empty. The ring may drop only what lies 4 MiB behind the first byte not
 * sent, and the export is drained only once every byte was sent and the client was told where it
 * ends.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include "common/error.h"
#include "store/format.h"

#define MIB (1u << 20)

/* A stream of @p len bytes, all made (put and arrived), its end known; ring of @p ring. */
static ims_source_growing *made(uint8_t *data, size_t len, size_t ring)
{
	ims_source_growing *g = NULL;
	assert_int_equal(ims_source_growing_new(&g, -1, UINT64_MAX, 1, NULL, NULL), 0);
	assert_int_equal(ims_source_growing_buffer(g, -1, ring), 0);
	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)(i * 7 + i / 4096);
	assert_int_equal(ims_source_growing_put(g, data, len, 0), 0);
	ims_source_growing_arrived(g, len);
	ims_source_growing_end(g, len);
	ims_source_growing_told_end(g); /* here only what was sent counts (test_end_told) */
	return g;
}

/* Read [off, off + len) and check it against @p data: still in the ring. */
static void readable(ims_source_growing *g, const uint8_t *data, uint64_t off, size_t len)
{
	uint8_t *buf = malloc(len);
	size_t got = 0;
	bool eof = false;
	assert_non_null(buf);
	assert_int_equal(ims_source_growing_read_some(&got, &eof, g, buf, len, off, 0), 0);
	assert_int_equal(got, len);
	assert_memory_equal(buf, data + off, len);
	free(buf);
}

static void gone(ims_source_growing *g, uint64_t off)
{
	uint8_t buf[16];
	size_t got = 0;
	bool eof = false;
	ims_error_clear();
	assert_int_equal(ims_source_growing_read_some(&got, &eof, g, buf, sizeof(buf), off, 0),
			 -ERANGE);
	assert_non_null(strstr(ims_error_last(), "was sent already"));
}

/* Make room for @p len bytes at @p off: succeeds only once enough of the ring was dropped. */
static int room(ims_source_growing *g, const uint8_t *data, uint64_t off, size_t len)
{
	return ims_source_growing_put(g, data, len, off);
}

/* Answers out of order: a range past a gap moves nothing until the gap is sent. */
static void test_out_of_order(void **state)
{
	(void)state;
	size_t len = 20u * MIB;
	uint8_t *data = malloc(len);
	assert_non_null(data);
	ims_source_growing *g = made(data, len, 16u * MIB); /* ring: 16 + 4 MiB */

	/* four chunks of 2 MiB in flight; the later three answered first */
	ims_source_growing_sent(g, 6u * MIB, 8u * MIB);
	ims_source_growing_sent(g, 4u * MIB, 6u * MIB);
	ims_source_growing_sent(g, 2u * MIB, 4u * MIB);
	/* [0, 2 MiB) was not sent: the export is not drained */
	readable(g, data, 0, 2u * MIB);
	ims_error_clear();
	assert_int_equal(ims_source_growing_drained(g), -ETIMEDOUT);
	/* the first chunk: everything up to 8 MiB is sent, what lies 4 MiB behind may go */
	ims_source_growing_sent(g, 0, 2u * MIB);
	readable(g, data, 4u * MIB, 4u * MIB);
	/* the rest, out of order again, with a gap left and then filled */
	ims_source_growing_sent(g, 16u * MIB, 20u * MIB);
	ims_source_growing_sent(g, 10u * MIB, 12u * MIB);
	ims_error_clear();
	assert_int_equal(ims_source_growing_drained(g), -ETIMEDOUT);
	ims_source_growing_sent(g, 12u * MIB, 16u * MIB);
	ims_error_clear();
	assert_int_equal(ims_source_growing_drained(g), -ETIMEDOUT); /* [8, 10) still missing */
	ims_source_growing_sent(g, 8u * MIB, 10u * MIB);
	assert_int_equal(ims_source_growing_drained(g), 0);
	ims_source_growing_free(g);
	free(data);
}

/* The ring drops only 4 MiB behind the first byte not sent, whatever was sent past it. */
static void test_drop_below_gap(void **state)
{
	(void)state;
	size_t len = 8u * MIB, ring = 4u * MIB; /* cap: 4 + 4 MiB (+ alignment) */
	uint8_t *data = malloc(16u * MIB);
	assert_non_null(data);
	ims_source_growing *g = NULL;
	assert_int_equal(ims_source_growing_new(&g, -1, UINT64_MAX, 1, NULL, NULL), 0);
	assert_int_equal(ims_source_growing_buffer(g, -1, ring), 0);
	for (size_t i = 0; i < 16u * MIB; i++)
		data[i] = (uint8_t)(i * 13 + 1);
	assert_int_equal(ims_source_growing_put(g, data, len, 0), 0);
	ims_source_growing_arrived(g, len);
	/* everything but [1, 2 MiB) sent: the writer wants 6 MiB more room, and may not take
	 * [1, 2 MiB) (the first byte not sent is 1 MiB: nothing behind it to drop) */
	ims_source_growing_sent(g, 2u * MIB, len);
	ims_source_growing_sent(g, 0, 1u * MIB);
	ims_error_clear();
	assert_int_equal(room(g, data + len, len, 6u * MIB), -ETIMEDOUT);
	readable(g, data, 1u * MIB, 1u * MIB);
	/* the missing chunk (fetched late, answered): 8 MiB sent, up to 4 MiB may go */
	ims_source_growing_sent(g, 1u * MIB, 2u * MIB);
	assert_int_equal(room(g, data + len, len, 4u * MIB), 0);
	ims_source_growing_arrived(g, len + 4u * MIB);
	gone(g, 0);
	readable(g, data, 4u * MIB, 4u * MIB); /* 4 MiB behind stays */
	ims_source_growing_free(g);
	free(data);
}

/* A chunk retried after its answer, ranges that overlap, and answers asked ahead of the export
 * that came back empty count for nothing they did not hold. */
static void test_retry_and_empty(void **state)
{
	(void)state;
	size_t len = 6u * MIB;
	uint8_t *data = malloc(len), buf[64];
	assert_non_null(data);
	ims_source_growing *g = NULL;
	size_t got = 0;
	bool eof = false;
	assert_int_equal(ims_source_growing_new(&g, -1, UINT64_MAX, 1, NULL, NULL), 0);
	assert_int_equal(ims_source_growing_buffer(g, -1, 16u * MIB), 0);
	for (size_t i = 0; i < len; i++)
		data[i] = (uint8_t)(i * 3);
	assert_int_equal(ims_source_growing_put(g, data, 2u * MIB, 0), 0);
	ims_source_growing_arrived(g, 2u * MIB);
	/* a chunk asked ahead of what was made: an empty answer, and the daemon says sent [off,
	 * off) or a range past what arrived: neither counts */
	assert_int_equal(ims_source_growing_read_some(&got, &eof, g, buf, sizeof(buf), 4u * MIB, 0),
			 0);
	assert_true(got == 0 && !eof);
	ims_source_growing_sent(g, 4u * MIB, 4u * MIB);
	ims_source_growing_sent(g, 4u * MIB, 6u * MIB); /* not made yet: not sent */
	ims_source_growing_sent(g, 0, 2u * MIB);
	ims_source_growing_sent(g, 0, 2u * MIB); /* a retry of an answered chunk */
	ims_source_growing_sent(g, 1u * MIB, 2u * MIB);
	/* the rest is made; only what was really sent counts: [2, 6 MiB) is not */
	assert_int_equal(ims_source_growing_put(g, data + 2u * MIB, 4u * MIB, 2u * MIB), 0);
	ims_source_growing_arrived(g, len);
	ims_source_growing_end(g, len);
	ims_error_clear();
	assert_int_equal(ims_source_growing_drained(g), -ETIMEDOUT);
	readable(g, data, 2u * MIB, 4u * MIB);
	/* overlapping answers (a chunk whose zeros ran into the next one's range) */
	ims_source_growing_sent(g, 4u * MIB, 5u * MIB);
	ims_source_growing_sent(g, 3u * MIB, 6u * MIB);
	ims_error_clear();
	assert_int_equal(ims_source_growing_drained(g), -ETIMEDOUT); /* [2, 3 MiB) missing */
	ims_source_growing_sent(g, 2u * MIB, 4u * MIB);
	ims_source_growing_told_end(g);
	assert_int_equal(ims_source_growing_drained(g), 0);
	ims_source_growing_free(g);
	free(data);
}

static void send_blocks(ims_source_growing *g, unsigned from, unsigned to, int step)
{
	for (int b = (int)from; step > 0 ? b < (int)to : b > (int)to; b += step)
		ims_source_growing_sent(g, (uint64_t)b * 4096u, (uint64_t)(b + 1) * 4096u);
}

/* Many ranges past a gap: kept in order, merged as they touch; past the limit (64) one is
 * forgotten, and the export waits for it as for a chunk never asked, until it is sent again. */
static void test_many_ranges(void **state)
{
	(void)state;
	size_t len = 200u * 4096u;
	uint8_t *data = malloc(len);
	assert_non_null(data);
	ims_source_growing *g = made(data, len, 1u * MIB);
	/* 20 ranges backwards, then the blocks between them backwards: they merge into one */
	send_blocks(g, 41, 1, -2);
	send_blocks(g, 40, 0, -2);
	ims_error_clear();
	assert_int_equal(ims_source_growing_drained(g), -ETIMEDOUT); /* blocks 0, 1 */
	send_blocks(g, 0, 2, 1);
	send_blocks(g, 42, 200, 1);
	assert_int_equal(ims_source_growing_drained(g), 0);
	ims_source_growing_free(g);

	g = made(data, len, 1u * MIB);
	send_blocks(g, 1, 200, 2);   /* 100 ranges past the gap: 1 to 127 kept */
	send_blocks(g, 0, 128, 2);   /* the gaps up to block 128 */
	send_blocks(g, 128, 200, 2); /* 129, 131... were forgotten: holes */
	ims_error_clear();
	assert_int_equal(ims_source_growing_drained(g), -ETIMEDOUT);
	send_blocks(g, 129, 200, 2); /* sent again */
	assert_int_equal(ims_source_growing_drained(g), 0);
	ims_source_growing_free(g);
	free(data);
}

typedef struct {
	ims_source_growing *g;
	unsigned asked; /* the stop callback's calls: drained still waited */
} end_waiter;

/* drained's stop callback: it still waits, so the client is told the end now */
static int tell_end(void *arg)
{
	end_waiter *w = arg;
	if (w->asked++ == 0)
		ims_source_growing_told_end(w->g);
	return 0;
}

/* The last byte sent before the end was known (its answer said no eof): the export waits for
 * the client to ask where it ends (an answer with eof) rather than end and leave that ask
 * without a stream. */
static void test_end_told(void **state)
{
	(void)state;
	size_t len = 2u * MIB;
	uint8_t *data = calloc(1, len), buf[64];
	size_t got = 0;
	bool eof = true;
	end_waiter w = {0};
	assert_non_null(data);
	assert_int_equal(ims_source_growing_new(&w.g, -1, UINT64_MAX, 30, tell_end, &w), 0);
	assert_int_equal(ims_source_growing_buffer(w.g, -1, MIB), 0);
	assert_int_equal(ims_source_growing_put(w.g, data, MIB, 0), 0);
	ims_source_growing_arrived(w.g, MIB);
	assert_int_equal(ims_source_growing_put(w.g, data + MIB, MIB, MIB), 0);
	ims_source_growing_arrived(w.g, len);
	/* the last chunk read and sent while the size is not known: no eof */
	assert_int_equal(
		ims_source_growing_read_some(&got, &eof, w.g, buf, sizeof(buf), len - 64, 0), 0);
	assert_true(got == 64 && !eof);
	ims_source_growing_sent(w.g, 0, len);
	ims_source_growing_end(w.g, len);
	/* every byte sent, the end not told: drained waits (its stop callback runs and tells) */
	assert_int_equal(ims_source_growing_drained(w.g), 0);
	assert_int_equal(w.asked, 1);
	/* the ask that follows finds the end */
	assert_int_equal(ims_source_growing_read_some(&got, &eof, w.g, buf, sizeof(buf), len, 0),
			 0);
	assert_true(got == 0 && eof);
	ims_source_growing_free(w.g);
	free(data);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_out_of_order),	cmocka_unit_test(test_drop_below_gap),
		cmocka_unit_test(test_retry_and_empty), cmocka_unit_test(test_many_ranges),
		cmocka_unit_test(test_end_told),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
