/*
 * replicator/failover.c: the failover journal's record on store/record.h reads what the code
 * before it wrote (its keys and JSON), and writes the same keys and values.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "replicator/failover.h"
#include "replicator/replicator_internal.h"

/* As the hand-written encoder wrote it (json-c, JSON_C_TO_STRING_PLAIN, in this key order). */
static const char old_record[] =
	"{\"target\":\"b\",\"step\":\"promote\",\"generation\":7,\"old_generation\":6,"
	"\"started_ms\":1764700000123,\"forced\":true,\"group\":true,"
	"\"cut\":\"imgstore-anchor-1764700000000\"}";

static ims_repl_journal sample(void)
{
	ims_repl_journal j;
	memset(&j, 0, sizeof(j));
	strcpy(j.target, "b");
	j.step = IMS_REPL_STEP_PROMOTE;
	j.generation = 7;
	j.old_generation = 6;
	j.started_ms = 1764700000123;
	j.forced = true;
	j.unit = IMS_REPL_GROUP;
	strcpy(j.cut, "imgstore-anchor-1764700000000");
	return j;
}

static void assert_journal_equal(const ims_repl_journal *a, const ims_repl_journal *b)
{
	assert_string_equal(a->target, b->target);
	assert_int_equal(a->step, b->step);
	assert_int_equal(a->generation, b->generation);
	assert_int_equal(a->old_generation, b->old_generation);
	assert_int_equal(a->started_ms, b->started_ms);
	assert_int_equal(a->forced, b->forced);
	assert_int_equal(a->unit, b->unit);
	assert_string_equal(a->cut, b->cut);
}

static void reads_a_record_of_the_old_code(void **state)
{
	(void)state;
	json_object *o = json_tokener_parse(old_record);
	assert_non_null(o);
	ims_repl_journal got, want = sample();
	ims_repl__journal_decode(&got, o);
	assert_journal_equal(&got, &want);
	json_object_put(o);
}

static void writes_the_same_keys_and_values(void **state)
{
	(void)state;
	ims_repl_journal j = sample();
	json_object *mine = ims_repl__journal_encode(&j), *old = json_tokener_parse(old_record);
	assert_non_null(mine);
	assert_non_null(old);
	assert_int_equal(json_object_object_length(mine), 8);
	assert_true(json_object_equal(mine, old));
	json_object_put(mine);
	json_object_put(old);
}

static void round_trip_through_text(void **state)
{
	(void)state;
	const ims_repl_step steps[] = {IMS_REPL_STEP_SYNC, IMS_REPL_STEP_DEMOTE,
				       IMS_REPL_STEP_PROMOTE, IMS_REPL_STEP_REVERSE};
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		ims_repl_journal j = sample(), got;
		j.step = steps[i];
		j.forced = i % 2;
		j.unit = i / 2 ? IMS_REPL_GROUP : IMS_REPL_IMAGE;
		json_object *o = ims_repl__journal_encode(&j);
		char *text = strdup(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		json_object_put(o);
		o = json_tokener_parse(text);
		free(text);
		ims_repl__journal_decode(&got, o);
		json_object_put(o);
		assert_journal_equal(&got, &j);
	}
}

static void an_unknown_step_and_missing_fields_read_as_zero(void **state)
{
	(void)state;
	json_object *o = json_tokener_parse("{\"target\":\"a\",\"step\":\"teleport\"}");
	ims_repl_journal got;
	ims_repl__journal_decode(&got, o);
	json_object_put(o);
	assert_string_equal(got.target, "a");
	assert_int_equal(got.step, 0); /* ims_repl_journal_get() calls it incomplete */
	assert_int_equal(got.generation, 0);
	assert_false(got.forced);
	assert_string_equal(got.cut, "");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(reads_a_record_of_the_old_code),
		cmocka_unit_test(writes_the_same_keys_and_values),
		cmocka_unit_test(round_trip_through_text),
		cmocka_unit_test(an_unknown_step_and_missing_fields_read_as_zero),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
