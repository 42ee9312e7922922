/*
 * Unit tests of what the CLI prints: JSON documents with the proto field names, key: value
 * lines, aligned tables, escaping of server strings, times, and the progress bar and lines.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "test_cli_fixture.h"

#include "imgstore/v1/group.pb-c.h"
#include "imgstore/v1/image.pb-c.h"
#include "imgstore/v1/operation.pb-c.h"

#define SOCK "/run/imgstored/test.sock"

static const char *esc(const char *s, bool keep)
{
	static char buf[256];
	return ims_cli_escape(buf, sizeof(buf), s, keep);
}

static void test_escape(void **state)
{
	(void)state;
	char small[8];

	assert_string_equal(esc("plain name", false), "plain name");
	assert_string_equal(esc("caf\xc3\xa9 \xe2\x82\xac", false), "caf\xc3\xa9 \xe2\x82\xac");
	assert_string_equal(esc("a\x1b[31mred", false), "a\\x1b[31mred");
	assert_string_equal(esc("l1\nl2\tx\r", false), "l1\\nl2\\tx\\r");
	assert_string_equal(esc("l1\nl2\tx\r", true), "l1\nl2\tx\\r");
	assert_string_equal(esc("del\x7f", false), "del\\x7f");
	/* C1 controls (CSI is U+009B) and bytes that are not UTF-8 */
	assert_string_equal(esc("x\xc2\x9b"
				"2J",
				false),
			    "x\\u009b2J");
	assert_string_equal(esc("raw\x9b"
				"2J",
				false),
			    "raw\\x9b2J");
	assert_string_equal(esc("\xff\xfe", false), "\\xff\\xfe");
	assert_string_equal(esc("\xc0\xaf", false), "\\xc0\\xaf");	    /* overlong '/' */
	assert_string_equal(esc("\xed\xa0\x80", false), "\\xed\\xa0\\x80"); /* a surrogate */
	assert_string_equal(esc("\xe2\x82", false), "\\xe2\\x82");	    /* cut short */
	assert_string_equal(esc(NULL, false), "");
	/* truncation never cuts an escape or a character in two */
	assert_string_equal(ims_cli_escape(small, sizeof(small), "abcd\x1b", false), "abcd");
	assert_string_equal(ims_cli_escape(small, sizeof(small), "abcdef\xc3\xa9", false),
			    "abcdef");
}

static void test_time_and_states(void **state)
{
	(void)state;
	char buf[32];

	assert_string_equal(ims_cli_format_time(buf, sizeof(buf), 0), "-");
	assert_string_equal(ims_cli_format_time(buf, sizeof(buf), 1714564800),
			    "2024-05-01T12:00:00Z");
	assert_string_equal(ims_cli_format_time(buf, sizeof(buf), 1), "1970-01-01T00:00:01Z");
	assert_string_equal(
		ims_cli_op_state_name(IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_QUEUED),
		"queued");
	assert_string_equal(
		ims_cli_op_state_name(IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_CANCELLED),
		"cancelled");
	assert_string_equal(ims_cli_op_state_name(42), "unspecified");
}

static json_object *get(json_object *o, const char *key)
{
	json_object *v = NULL;
	if (!json_object_object_get_ex(o, key, &v))
		fail_msg("no field '%s'", key);
	return v;
}

static void test_json_image(void **state)
{
	(void)state;
	Imgstore__V1__Image img = IMGSTORE__V1__IMAGE__INIT;
	Imgstore__V1__SnapshotInfo s1 = IMGSTORE__V1__SNAPSHOT_INFO__INIT, *snaps[] = {&s1};
	Imgstore__V1__Tag t1 = IMGSTORE__V1__TAG__INIT, t2 = IMGSTORE__V1__TAG__INIT;
	Imgstore__V1__Tag *tags[] = {&t1, &t2};
	json_object *doc, *v;

	img.pool = "rbd";
	img.name = "vm1";
	img.size = 0xfffffffffffff000ull; /* past INT64_MAX: still a number, exactly */
	img.used_bytes = 1234;
	img.parent = "rbd/golden@v1";
	img.snapshots = snaps;
	img.n_snapshots = 1;
	img.tags = tags;
	img.n_tags = 2;
	img.in_catalog = 1;
	img.created_unix = 1714564800;
	s1.name = "s1";
	s1.id = 7;
	s1.protected_ = 1;
	t1.key = "os";
	t1.value = "debian";
	t2.key = "tier";
	t2.value = "gold\x1b";

	doc = ims_cli_json_message(&img.base);
	assert_non_null(doc);
	assert_string_equal(json_object_get_string(get(doc, "pool")), "rbd");
	assert_string_equal(json_object_get_string(get(doc, "name")), "vm1");
	assert_int_equal(json_object_get_type(get(doc, "size")), json_type_int);
	assert_true(json_object_get_uint64(get(doc, "size")) == 0xfffffffffffff000ull);
	assert_int_equal(json_object_get_int64(get(doc, "used_bytes")), 1234);
	assert_int_equal(json_object_get_int64(get(doc, "created_unix")), 1714564800);
	assert_true(json_object_get_boolean(get(doc, "in_catalog")));
	/* every field is there, defaults included, under its proto name */
	assert_string_equal(json_object_get_string(get(doc, "data_pool")), "");
	assert_string_equal(json_object_get_string(get(doc, "content_sha256")), "");
	assert_int_equal(json_object_object_length(doc), 17);
	v = get(doc, "tags");
	assert_int_equal(json_object_get_type(v), json_type_object);
	assert_string_equal(json_object_get_string(get(v, "os")), "debian");
	assert_string_equal(json_object_get_string(get(v, "tier")), "gold\x1b");
	v = get(doc, "snapshots");
	assert_int_equal(json_object_array_length(v), 1);
	v = json_object_array_get_idx(v, 0);
	assert_string_equal(json_object_get_string(get(v, "name")), "s1");
	assert_true(json_object_get_boolean(get(v, "protected")));
	assert_int_equal(json_object_get_int64(get(v, "id")), 7);
	/* json-c escapes the control character: the document is safe to print */
	assert_non_null(strstr(json_object_to_json_string(doc), "gold\\u001b"));
	json_object_put(doc);
}

static void test_json_operation(void **state)
{
	(void)state;
	Imgstore__V1__Operation op = IMGSTORE__V1__OPERATION__INIT;
	json_object *doc;

	op.id = "op-1";
	op.kind = "import";
	op.target = "rbd/vm1";
	op.state = IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_SUCCEEDED;
	op.bytes_done = op.bytes_total = 2ull << 30;
	doc = ims_cli_json_message(&op.base);
	assert_string_equal(json_object_get_string(get(doc, "state")), "succeeded");
	assert_string_equal(json_object_get_string(get(doc, "kind")), "import");
	assert_int_equal(json_object_get_int64(get(doc, "bytes_total")), 2ll << 30);
	assert_string_equal(json_object_get_string(get(doc, "error")), "");
	assert_string_equal(json_object_get_string(get(doc, "site")), "");
	assert_string_equal(json_object_get_string(get(doc, "result")), "");
	assert_int_equal(json_object_array_length(get(doc, "details")), 0);
	assert_false(json_object_get_boolean(get(doc, "streamed")));
	assert_false(json_object_get_boolean(get(doc, "decided")));
	assert_int_equal(json_object_object_length(doc), 15);
	json_object_put(doc);
}

static void test_image_ls_table_and_json(void **state)
{
	fake *f = *state;
	Imgstore__V1__ListImagesResponse resp = IMGSTORE__V1__LIST_IMAGES_RESPONSE__INIT;
	Imgstore__V1__ImageSummary a = IMGSTORE__V1__IMAGE_SUMMARY__INIT;
	Imgstore__V1__ImageSummary b = IMGSTORE__V1__IMAGE_SUMMARY__INIT;
	Imgstore__V1__ImageSummary c = IMGSTORE__V1__IMAGE_SUMMARY__INIT;
	Imgstore__V1__ImageSummary *rows[] = {&a, &b, &c};
	Imgstore__V1__Tag t1 = IMGSTORE__V1__TAG__INIT, t2 = IMGSTORE__V1__TAG__INIT;
	Imgstore__V1__Tag *tags[] = {&t1, &t2};
	json_object *doc;

	t1.key = "os";
	t1.value = "debian";
	t2.key = "role";
	t2.value = "web";
	a.name = "golden-debian12";
	a.size = 10ull << 30;
	a.source = "qcow2";
	a.in_catalog = 1;
	a.tags = tags;
	a.n_tags = 2;
	b.name = "vm1";
	b.size = 3ull << 29;
	b.source = "clone";
	b.parent = "rbd/golden-debian12@v1";
	b.in_catalog = 1;
	c.name = "caf\xc3\xa9\x1b]0;pwned\x07";
	resp.pool = "rbd";
	resp.images = rows;
	resp.n_images = 3;

	fake_expect(f, "imgstore.v1.ImageService/ListImages", &resp);
	assert_int_equal(fake_run(f, "--server", SOCK, "image", "ls", "rbd", NULL), 0);
	assert_string_equal(
		f->out,
		"NAME                  SIZE     SOURCE  PARENT                  TAGS\n"
		"golden-debian12       10 GiB   qcow2   -                       "
		"os=debian,role=web\n"
		"vm1                   1.5 GiB  clone   rbd/golden-debian12@v1  -\n"
		"caf\xc3\xa9\\x1b]0;pwned\\x07  -        -       -                       -\n");

	fake_expect(f, "imgstore.v1.ImageService/ListImages", &resp);
	assert_int_equal(fake_run(f, "--server", SOCK, "--format", "json", "image", "ls", NULL), 0);
	doc = json_tokener_parse(f->out);
	assert_non_null(doc);
	assert_int_equal(json_object_get_type(doc), json_type_array);
	assert_int_equal(json_object_array_length(doc), 3);
	json_object *row = json_object_array_get_idx(doc, 1);
	assert_string_equal(json_object_get_string(get(row, "parent")), "rbd/golden-debian12@v1");
	assert_int_equal(json_object_get_int64(get(row, "size")), 3ll << 29);
	row = json_object_array_get_idx(doc, 0);
	assert_string_equal(json_object_get_string(get(get(row, "tags"), "role")), "web");
	json_object_put(doc);
}

/* Names with quotes and backslashes: the JSON of `group rm` and `group snap --rm` stays valid
 * (built by json-c), the text line says it plainly. */
static void test_group_removed_names(void **state)
{
	fake *f = *state;
	Imgstore__V1__DeleteGroupResponse resp = IMGSTORE__V1__DELETE_GROUP_RESPONSE__INIT;
	json_object *doc;

	fake_expect(f, "imgstore.v1.GroupService/DeleteGroup", &resp);
	assert_int_equal(fake_run(f, "--server", SOCK, "--format", "json", "group", "rm",
				  "rbd/a\"b\\c", NULL),
			 0);
	doc = json_tokener_parse(f->out);
	assert_non_null(doc);
	assert_string_equal(json_object_get_string(get(doc, "removed")), "rbd/a\"b\\c");
	json_object_put(doc);

	Imgstore__V1__DeleteGroupSnapshotResponse sresp =
		IMGSTORE__V1__DELETE_GROUP_SNAPSHOT_RESPONSE__INIT;
	fake_expect(f, "imgstore.v1.GroupService/DeleteGroupSnapshot", &sresp);
	assert_int_equal(fake_run(f, "--server", SOCK, "--format", "json", "group", "snap",
				  "rbd/g\"1@s\"}", "--rm", NULL),
			 0);
	doc = json_tokener_parse(f->out);
	assert_non_null(doc);
	assert_string_equal(json_object_get_string(get(doc, "removed")), "rbd/g\"1@s\"}");
	json_object_put(doc);

	fake_expect(f, "imgstore.v1.GroupService/DeleteGroup", &resp);
	assert_int_equal(fake_run(f, "--server", SOCK, "group", "rm", "rbd/a\"b", NULL), 0);
	assert_string_equal(f->out, "removed group rbd/a\"b\n");
}

static void test_key_value_lines(void **state)
{
	fake *f = *state;
	Imgstore__V1__Operation op = IMGSTORE__V1__OPERATION__INIT;

	op.id = "op-7";
	op.kind = "export";
	op.target = "rbd/vm1@s1";
	op.state = IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_FAILED;
	op.bytes_done = 1288490188; /* 1.2 GiB: the exact bytes follow */
	op.bytes_total = 2ull << 30;
	op.error = "disk full\nreally";
	op.created_unix = 1714564800;
	op.started_unix = 1714564801;
	fake_expect(f, "imgstore.v1.OperationService/GetOperation", &op);
	assert_int_equal(fake_run(f, "--server", SOCK, "op", "get", "op-7", NULL), 0);
	assert_string_equal(f->out, "id:            op-7\n"
				    "kind:          export\n"
				    "target:        rbd/vm1@s1\n"
				    "state:         failed\n"
				    "bytes_done:    1.2 GiB (1288490188 bytes)\n"
				    "bytes_total:   2 GiB\n"
				    "error:         disk full\\nreally\n"
				    "created_unix:  2024-05-01T12:00:00Z\n"
				    "started_unix:  2024-05-01T12:00:01Z\n"
				    "finished_unix: -\n"
				    "site:          -\n"
				    "result:        -\n"
				    "details:       -\n");
}

static void test_op_ls_table(void **state)
{
	fake *f = *state;
	Imgstore__V1__ListOperationsResponse resp = IMGSTORE__V1__LIST_OPERATIONS_RESPONSE__INIT;
	Imgstore__V1__Operation a = IMGSTORE__V1__OPERATION__INIT,
				b = IMGSTORE__V1__OPERATION__INIT;
	Imgstore__V1__Operation *rows[] = {&a, &b};

	a.id = "op-1";
	a.kind = "import";
	a.target = "rbd/vm1";
	a.state = IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_RUNNING;
	a.bytes_done = 1;
	a.bytes_total = 3;
	a.created_unix = 1714564800;
	b.id = "op-2";
	b.kind = "flatten";
	b.target = "rbd/clone1";
	b.state = IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_QUEUED;
	resp.operations = rows;
	resp.n_operations = 2;
	fake_expect(f, "imgstore.v1.OperationService/ListOperations", &resp);
	assert_int_equal(fake_run(f, "--server", SOCK, "op", "ls", NULL), 0);
	assert_string_equal(
		f->out,
		"ID    KIND     TARGET      STATE    PROGRESS  CREATED               ERROR\n"
		"op-1  import   rbd/vm1     running  33%       2024-05-01T12:00:00Z  -\n"
		"op-2  flatten  rbd/clone1  queued   -         -                     -\n");
}

static void test_progress_formats(void **state)
{
	(void)state;
	char buf[128];

	assert_string_equal(
		ims_cli_format_bar(buf, sizeof(buf), 1117782016, 2ull << 30, 210.0 * (1 << 20)),
		"[#####     ] 52% 1.0 GiB/2 GiB 210 MiB/s");
	assert_string_equal(ims_cli_format_bar(buf, sizeof(buf), 0, 2ull << 30, -1),
			    "[          ] 0% 0 B/2 GiB");
	assert_string_equal(ims_cli_format_bar(buf, sizeof(buf), 3ull << 30, 2ull << 30, -1),
			    "[##########] 100% 2 GiB/2 GiB");
	assert_string_equal(ims_cli_format_bar(buf, sizeof(buf), 5u << 20, 0, 1u << 20),
			    "5 MiB 1 MiB/s");
	assert_string_equal(
		ims_cli_format_plain(buf, sizeof(buf), "import rbd/vm1",
				     IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_RUNNING,
				     1117782016, 2ull << 30),
		"import rbd/vm1: 52% (1.0 GiB of 2 GiB)");
	assert_string_equal(
		ims_cli_format_plain(buf, sizeof(buf), "import rbd/vm1",
				     IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_QUEUED, 0,
				     2ull << 30),
		"import rbd/vm1: queued");
	assert_string_equal(ims_cli_format_plain(buf, sizeof(buf), "flatten rbd/c", 2, 0, 0),
			    "flatten rbd/c: started");
	assert_string_equal(ims_cli_format_plain(buf, sizeof(buf), "upload rbd/c", 0, 4096, 0),
			    "upload rbd/c: 4 KiB");
}

static double test_clock(void *arg)
{
	return ((fake *)arg)->clock;
}

/* stderr of the progress tests: a memory stream */
typedef struct {
	char *buf;
	size_t len;
	FILE *f;
} captured;

/* Set up the CLI of @p f for a progress test: stderr into @p err, a terminal or not, the clock
 * f->clock from 0. */
static void progress_cli(fake *f, captured *err, bool tty)
{
	err->buf = NULL;
	err->len = 0;
	err->f = open_memstream(&err->buf, &err->len);
	assert_non_null(err->f);
	ims_cli_init(&f->cli);
	f->cli.err = err->f;
	f->cli.err_tty = tty;
	f->cli.now = test_clock;
	f->cli.now_arg = f;
	f->clock = 0;
}

/* End @p p and check what @p err got. */
static void progress_check(ims_cli_progress *p, captured *err, const char *want)
{
	ims_cli_progress_end(p);
	fclose(err->f);
	assert_string_equal(err->buf, want);
	free(err->buf);
}

static const int running = IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_RUNNING;

/* Plain lines (stderr no terminal): the first at once, then at most every 5 s, and on every
 * change of state. */
static void test_progress_plain_throttle(void **state)
{
	fake *f = *state;
	ims_cli_progress p;
	captured err;
	double t;

	progress_cli(f, &err, false);
	f->cli.plain_interval = 5.0;
	ims_cli_progress_init(&p, &f->cli, "import rbd/vm1");
	ims_cli_progress_update(&p, 1, 0, 100); /* queued */
	for (t = 1; t <= 12; t++) {
		f->clock = t;
		ims_cli_progress_update(&p, running, (uint64_t)t * 5, 100);
	}
	f->clock = 12.5;
	ims_cli_progress_update(&p, 3, 100, 100); /* a new state is always shown */
	progress_check(&p, &err,
		       "import rbd/vm1: queued\n"
		       "import rbd/vm1: 5% (5 B of 100 B)\n"
		       "import rbd/vm1: 30% (30 B of 100 B)\n"
		       "import rbd/vm1: 55% (55 B of 100 B)\n"
		       "import rbd/vm1: 100% (100 B of 100 B)\n");
}

/* On a terminal: one line redrawn with \r, padded over a longer previous one, and a rate. */
static void test_progress_bar_redraw(void **state)
{
	fake *f = *state;
	ims_cli_progress p;
	captured err;

	progress_cli(f, &err, true);
	ims_cli_progress_init(&p, &f->cli, "import rbd/vm1");
	ims_cli_progress_update(&p, running, 0, 4u << 20);
	f->clock = 1;
	ims_cli_progress_update(&p, running, 1u << 20, 4u << 20);
	f->clock = 1.1; /* too soon: not redrawn */
	ims_cli_progress_update(&p, running, 2u << 20, 4u << 20);
	f->clock = 2;
	ims_cli_progress_update(&p, running, 3u << 20, 4u << 20);
	progress_check(&p, &err,
		       "\r[          ] 0% 0 B/4 MiB"
		       "\r[##        ] 25% 1 MiB/4 MiB 1 MiB/s"
		       "\r[#######   ] 75% 3 MiB/4 MiB 1.3 MiB/s"
		       "\n");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_time_and_states),
		cmocka_unit_test(test_json_image),
		cmocka_unit_test(test_json_operation),
		CLI_TEST(test_image_ls_table_and_json),
		CLI_TEST(test_key_value_lines),
		CLI_TEST(test_op_ls_table),
		cmocka_unit_test(test_progress_formats),
		CLI_TEST(test_group_removed_names),
		CLI_TEST(test_progress_plain_throttle),
		CLI_TEST(test_progress_bar_redraw),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
