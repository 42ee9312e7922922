/* The generated protobuf-c code round-trips a message and refuses truncated bytes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "imgstore/v1/common.pb-c.h"

static void test_operation_round_trip(void **state)
{
	(void)state;
	Imgstore__V1__Operation op = IMGSTORE__V1__OPERATION__INIT;
	op.id = "op-1";
	op.kind = "import";
	op.target = "rbd/golden";
	op.state = IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_RUNNING;
	op.bytes_done = 1ull << 33;
	op.bytes_total = 1ull << 34;

	size_t len = imgstore__v1__operation__get_packed_size(&op);
	uint8_t *buf = malloc(len);
	assert_non_null(buf);
	assert_int_equal(imgstore__v1__operation__pack(&op, buf), len);

	Imgstore__V1__Operation *back = imgstore__v1__operation__unpack(NULL, len, buf);
	assert_non_null(back);
	assert_string_equal(back->target, "rbd/golden");
	assert_int_equal(back->state, IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_RUNNING);
	assert_int_equal(back->bytes_done, 1ull << 33);
	imgstore__v1__operation__free_unpacked(back, NULL);

	/* cut inside the last field: refused, not misread */
	assert_null(imgstore__v1__operation__unpack(NULL, len - 1, buf));
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {cmocka_unit_test(test_operation_round_trip)};
	return cmocka_run_group_tests_name("proto", tests, NULL, NULL);
}
