/*
 * Unit tests of the CLI's long work: import (the daemon reads the file, or an upload in
 * chunks), export (the daemon writes the file, or a sparse download), waiting on operations
 * with progress, their failures, Ctrl-C cancelling, and giving up after --timeout.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <json-c/json.h>

#include "test_cli_fixture.h"

#include "imgstore/v1/image.pb-c.h"
#include "imgstore/v1/operation.pb-c.h"
#include "imgstore/v1/snapshot.pb-c.h"

#define SOCK "unix:/run/imgstored/test.sock"
#define URL  "https://imgstore.example:8443"

#define QUEUED	  IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_QUEUED
#define RUNNING	  IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_RUNNING
#define SUCCEEDED IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_SUCCEEDED
#define FAILED	  IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_FAILED
#define CANCELLED IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_CANCELLED

#define WAIT_OP	  "imgstore.v1.OperationService/WaitOperation"
#define CANCEL_OP "imgstore.v1.OperationService/CancelOperation"

static char tmpdir[PATH_MAX];

/* cli_setup() and the directory of the test files */
static int setup(void **state)
{
	const char *dir = getenv("IMS_TEST_TMP");

	snprintf(tmpdir, sizeof(tmpdir), "%s", dir ? dir : "/tmp/test_cli_ops");
	mkdir(tmpdir, 0755);
	return cli_setup(state);
}

#define OPS_TEST(test) cmocka_unit_test_setup_teardown(test, setup, cli_teardown)

static char *path_in_tmp(const char *name)
{
	char *p;
	assert_true(asprintf(&p, "%s/%s", tmpdir, name) > 0);
	unlink(p);
	return p;
}

static Imgstore__V1__Operation op_in(int state, uint64_t done, uint64_t total)
{
	Imgstore__V1__Operation op = IMGSTORE__V1__OPERATION__INIT;
	op.id = "op-42";
	op.kind = "import";
	op.target = "rbd/vm1";
	op.state = state;
	op.bytes_done = done;
	op.bytes_total = total;
	if (state == SUCCEEDED) {
		op.started_unix = 1714564800;
		op.finished_unix = 1714564812;
	}
	return op;
}

static void make_file(const char *path, size_t size, unsigned char fill)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	unsigned char *buf = malloc(size ? size : 1);

	assert_true(fd >= 0);
	assert_non_null(buf);
	for (size_t i = 0; i < size; i++)
		buf[i] = (unsigned char)(fill + i * 7);
	assert_int_equal(write(fd, buf, size), (ssize_t)size);
	close(fd);
	free(buf);
}

/* ---- import ---- */

static void test_import_local_waits(void **state)
{
	fake *f = *state;
	char *file = path_in_tmp("disk.qcow2");
	char *real;
	Imgstore__V1__Operation q = op_in(QUEUED, 0, 0),
				r1 = op_in(RUNNING, 1ull << 30, 2ull << 30),
				done = op_in(SUCCEEDED, 2ull << 30, 2ull << 30);

	make_file(file, 1000, 1);
	real = realpath(file, NULL);
	fake_expect(f, "imgstore.v1.ImageService/ImportImage", &q);
	fake_expect(f, WAIT_OP, &r1);
	fake_expect(f, WAIT_OP, &done);
	assert_int_equal(fake_run(f, "--server", SOCK, "image", "import", file, "rbd/vm1",
				  "--format", "qcow2", NULL),
			 0);
	Imgstore__V1__ImportImageRequest *req =
		sent(f, 0, &imgstore__v1__import_image_request__descriptor);
	assert_string_equal(req->source_path, real);
	assert_string_equal(req->upload_id, "");
	assert_string_equal(req->format, "qcow2");
	assert_string_equal(req->image->pool, "rbd");
	Imgstore__V1__WaitOperationRequest *w =
		sent(f, 1, &imgstore__v1__wait_operation_request__descriptor);
	assert_string_equal(w->id, "op-42");
	assert_int_equal(w->timeout_ms, 1000);
	assert_string_equal(f->out, "import rbd/vm1: succeeded, 2 GiB in 12s\n");
	assert_string_equal(f->err, "import rbd/vm1: queued\n"
				    "import rbd/vm1: 50% (1 GiB of 2 GiB)\n");
	free(real);
	unlink(file);
	free(file);
}

static void test_import_no_wait_and_json(void **state)
{
	fake *f = *state;
	char *file = path_in_tmp("disk.raw");
	Imgstore__V1__Operation q = op_in(QUEUED, 0, 0), done = op_in(SUCCEEDED, 10, 10);
	json_object *doc, *v;

	make_file(file, 10, 1);
	fake_expect(f, "imgstore.v1.ImageService/ImportImage", &q);
	assert_int_equal(fake_run(f, "--server", "/run/imgstored/test.sock", "image", "import",
				  file, "rbd/vm1", "--no-wait", NULL),
			 0);
	assert_string_equal(f->out, "op-42\n");
	assert_int_equal(f->ncalls, 1);

	fake_expect(f, "imgstore.v1.ImageService/ImportImage", &done);
	assert_int_equal(fake_run(f, "--server", SOCK, "--format", "json", "image", "import", file,
				  "rbd/vm1", NULL),
			 0);
	doc = json_tokener_parse(f->out);
	assert_non_null(doc);
	assert_true(json_object_object_get_ex(doc, "state", &v));
	assert_string_equal(json_object_get_string(v), "succeeded");
	assert_true(json_object_object_get_ex(doc, "id", &v));
	assert_string_equal(json_object_get_string(v), "op-42");
	json_object_put(doc);

	/* usage errors and a missing file: nothing sent */
	cli_reset(f);
	fake_run(f, "--server", SOCK, "image", "import", file, "rbd/vm1", "--format", "iso", NULL);
	assert_int_equal(f->rc, 2);
	assert_string_equal(
		f->err,
		"imgstore: --format: 'iso' is not one of auto, raw, qcow2, vmdk, vdi, vhdx, vpc\n"
		"Try 'imgstore image import --help'.\n");
	unlink(file);
	fake_run(f, "--server", SOCK, "image", "import", file, "rbd/vm1", NULL);
	assert_int_equal(f->rc, 1);
	assert_non_null(strstr(f->err, "No such file or directory"));
	assert_int_equal(f->ncalls, 0);
	free(file);
}

static void test_import_upload_chunks(void **state)
{
	fake *f = *state;
	char *file = path_in_tmp("upload.raw");
	const size_t size = 5u << 20;
	Imgstore__V1__BeginUploadResponse begin = IMGSTORE__V1__BEGIN_UPLOAD_RESPONSE__INIT;
	Imgstore__V1__UploadChunkResponse chunk = IMGSTORE__V1__UPLOAD_CHUNK_RESPONSE__INIT;
	Imgstore__V1__Operation done = op_in(SUCCEEDED, size, size);
	unsigned char *want = malloc(size);
	int fd;

	make_file(file, size, 3);
	fd = open(file, O_RDONLY);
	assert_int_equal(read(fd, want, size), (ssize_t)size);
	close(fd);

	/* the server offers 4 MiB chunks: the CLI sends 2 MiB at most, in order */
	begin.upload_id = "up-1";
	begin.max_chunk_bytes = 4u << 20;
	fake_expect(f, "imgstore.v1.ImageService/BeginUpload", &begin);
	for (int i = 0; i < 3; i++)
		fake_expect(f, "imgstore.v1.ImageService/UploadChunk", &chunk);
	fake_expect(f, "imgstore.v1.ImageService/ImportImage", &done);
	/* over the network, the upload is implied */
	assert_int_equal(fake_run(f, "--server", URL, "image", "import", file, "rbd/vm1", NULL), 0);
	assert_int_equal(f->ncalls, 5);
	Imgstore__V1__BeginUploadRequest *b =
		sent(f, 0, &imgstore__v1__begin_upload_request__descriptor);
	assert_int_equal(b->size, size);
	const size_t offs[] = {0, 2u << 20, 4u << 20}, lens[] = {2u << 20, 2u << 20, 1u << 20};
	for (int i = 0; i < 3; i++) {
		Imgstore__V1__UploadChunkRequest *c =
			sent(f, 1 + (size_t)i, &imgstore__v1__upload_chunk_request__descriptor);
		assert_string_equal(c->upload_id, "up-1");
		assert_int_equal(c->offset, offs[i]);
		assert_int_equal(c->data.len, lens[i]);
		assert_memory_equal(c->data.data, want + offs[i], lens[i]);
	}
	Imgstore__V1__ImportImageRequest *imp =
		sent(f, 4, &imgstore__v1__import_image_request__descriptor);
	assert_string_equal(imp->upload_id, "up-1");
	assert_string_equal(imp->source_path, "");
	assert_string_equal(imp->format, "");
	assert_non_null(strstr(f->err, "upload rbd/vm1: 40% (2 MiB of 5 MiB)\n"));

	/* --upload on a Unix socket; a smaller chunk size is honoured */
	cli_reset(f);
	begin.max_chunk_bytes = 3u << 20 >> 1; /* 1.5 MiB */
	fake_expect(f, "imgstore.v1.ImageService/BeginUpload", &begin);
	for (int i = 0; i < 4; i++)
		fake_expect(f, "imgstore.v1.ImageService/UploadChunk", &chunk);
	fake_expect(f, "imgstore.v1.ImageService/ImportImage", &done);
	assert_int_equal(
		fake_run(f, "--server", SOCK, "image", "import", file, "rbd/vm1", "--upload", NULL),
		0);
	Imgstore__V1__UploadChunkRequest *last =
		sent(f, 4, &imgstore__v1__upload_chunk_request__descriptor);
	assert_int_equal(last->offset, 3 * (3u << 20 >> 1));
	assert_int_equal(last->data.len, size - 3 * (3u << 20 >> 1));
	free(want);
	unlink(file);
	free(file);
}

/* ---- waiting: failure, Ctrl-C, timeout ---- */

static void test_wait_failure(void **state)
{
	fake *f = *state;
	Imgstore__V1__Operation run = op_in(RUNNING, 0, 0), failed = op_in(FAILED, 0, 0);
	json_object *doc, *v;

	failed.error = "qcow2: backing files are not supported ('base.qcow2')";
	fake_expect(f, "imgstore.v1.ImageService/FlattenImage", &run);
	fake_expect(f, WAIT_OP, &failed);
	assert_int_equal(fake_run(f, "--server", SOCK, "image", "flatten", "rbd/vm1", NULL), 1);
	assert_string_equal(f->out, "");
	assert_string_equal(f->err,
			    "import rbd/vm1: started\n"
			    "imgstore: qcow2: backing files are not supported ('base.qcow2')\n");

	/* JSON: the document tells how it ended, and the exit status too */
	fake_expect(f, "imgstore.v1.ImageService/FlattenImage", &failed);
	assert_int_equal(
		fake_run(f, "--server", SOCK, "-o", "json", "image", "flatten", "rbd/vm1", NULL),
		1);
	doc = json_tokener_parse(f->out);
	assert_non_null(doc);
	assert_true(json_object_object_get_ex(doc, "state", &v));
	assert_string_equal(json_object_get_string(v), "failed");
	json_object_put(doc);

	/* a failure without a message still says something */
	failed.error = "";
	fake_expect(f, "imgstore.v1.SnapshotService/RollbackSnapshot", &failed);
	assert_int_equal(fake_run(f, "--server", SOCK, "snap", "rollback", "rbd/vm1@s1", NULL), 1);
	assert_string_equal(f->err, "imgstore: import rbd/vm1 failed\n");

	/* the server goes away while waiting */
	fake_expect(f, "imgstore.v1.SnapshotService/RollbackSnapshot", &run);
	fake_expect_error(
		f, WAIT_OP, -ECONNREFUSED, IMS_RPC_UNAVAILABLE,
		"cannot reach imgstored at '/run/imgstored/test.sock': Connection refused");
	assert_int_equal(fake_run(f, "--server", SOCK, "snap", "rollback", "rbd/vm1@s1", NULL), 1);
	assert_string_equal(f->err,
			    "import rbd/vm1: started\n"
			    "imgstore: cannot reach imgstored at '/run/imgstored/test.sock': "
			    "Connection refused\n");
}

static void test_ctrl_c_cancels(void **state)
{
	fake *f = *state;
	Imgstore__V1__Operation run = op_in(RUNNING, 1, 4), cancelling = op_in(RUNNING, 2, 4),
				cancelled = op_in(CANCELLED, 2, 4);

	/* Ctrl-C arrives during the first wait */
	f->interrupt_at_call = 1;
	fake_expect(f, "imgstore.v1.ImageService/FlattenImage", &run);
	fake_expect(f, WAIT_OP, &run);
	fake_expect(f, CANCEL_OP, &cancelling);
	fake_expect(f, WAIT_OP, &cancelled);
	assert_int_equal(fake_run(f, "--server", SOCK, "image", "flatten", "rbd/vm1", NULL), 1);
	Imgstore__V1__CancelOperationRequest *c =
		sent(f, 2, &imgstore__v1__cancel_operation_request__descriptor);
	assert_string_equal(c->id, "op-42");
	assert_string_equal(f->err, "import rbd/vm1: 25% (1 B of 4 B)\n"
				    "imgstore: cancelling import rbd/vm1 (operation op-42)\n"
				    "imgstore: import rbd/vm1 cancelled\n");
	assert_string_equal(f->out, "");
}

static void test_op_wait_timeout(void **state)
{
	fake *f = *state;
	Imgstore__V1__Operation run = op_in(RUNNING, 0, 0), done = op_in(SUCCEEDED, 0, 0);

	/* every call takes 1 s on the fake clock: 3 waits, then --timeout 3s is over */
	fake_expect(f, "imgstore.v1.OperationService/GetOperation", &run);
	for (int i = 0; i < 3; i++)
		fake_expect(f, WAIT_OP, &run);
	assert_int_equal(
		fake_run(f, "--server", SOCK, "op", "wait", "op-42", "--timeout", "3s", NULL), 1);
	assert_int_equal(f->ncalls, 4);
	assert_string_equal(f->err,
			    "import rbd/vm1: started\n"
			    "imgstore: gave up waiting after 3s: import rbd/vm1 is still running "
			    "(operation op-42)\n");

	fake_expect(f, "imgstore.v1.OperationService/GetOperation", &done);
	assert_int_equal(fake_run(f, "--server", SOCK, "op", "wait", "op-42", NULL), 0);
	assert_string_equal(f->out, "import rbd/vm1: succeeded in 12s\n");
	assert_string_equal(f->err, "");
}

/* A forced site failover whose outcome is known while its old copies are still being made
 * secondaries (Operation.decided): `repl failover` returns 0 a grace after it first sees that,
 * printing what is known and how to follow the rest; if the operation ends within the grace,
 * its end is printed as always; `op wait` waits for the end. */
#define DECIDED                                                                                    \
	"3 image(s) and group(s) of site 'a' in pool 'rbd' are the primary on site 'b' (0.7s); "   \
	"the operation goes on: site 'a''s old copy of 1 of them is still being made secondary "   \
	"(vm3); 1 copy there was not reached, its writers not fenced yet (vm2)"

static Imgstore__V1__Operation failover_op(int state, bool decided)
{
	Imgstore__V1__Operation op = op_in(state, 0, 0);
	op.kind = "failover";
	op.target = "rbd/*";
	op.decided = decided;
	if (decided)
		op.result = DECIDED;
	return op;
}

static void test_failover_decided(void **state)
{
	fake *f = *state;
	Imgstore__V1__Operation run = failover_op(RUNNING, false), dec = failover_op(RUNNING, true),
				done = failover_op(SUCCEEDED, true);
	char *details[] = {"image rbd/vm3 ok 30.20s: site 'b' is the primary of 'rbd/vm3'"};
	json_object *doc, *v;

	/* every call takes 1 s on the fake clock: decided seen at the first wait, then 3 s */
	fake_expect(f, "imgstore.v1.ReplicationService/Failover", &run);
	for (int i = 0; i < 4; i++)
		fake_expect(f, WAIT_OP, &dec);
	assert_int_equal(fake_run(f, "--server", SOCK, "repl", "failover", "--from", "a", "--to",
				  "b", "--force", NULL),
			 0);
	assert_int_equal(f->ncalls, 5);
	assert_string_equal(f->out, "failover rbd/*: " DECIDED "\n");
	assert_string_equal(f->err, "failover rbd/*: started\n"
				    "imgstore: operation op-42 goes on in the daemon: `imgstore op "
				    "wait op-42` waits for its end, `imgstore op get op-42` shows "
				    "it\n");

	/* it ends within the grace: its end, as always */
	done.result = "3 image(s) and group(s) of site 'a' in pool 'rbd' failed over";
	done.details = details;
	done.n_details = 1;
	fake_expect(f, "imgstore.v1.ReplicationService/Failover", &run);
	fake_expect(f, WAIT_OP, &dec);
	fake_expect(f, WAIT_OP, &done);
	assert_int_equal(fake_run(f, "--server", SOCK, "repl", "failover", "--from", "a", "--to",
				  "b", "--force", NULL),
			 0);
	assert_string_equal(f->out, "failover rbd/*: succeeded in 12s: 3 image(s) and group(s) "
				    "of site 'a' in pool 'rbd' failed over\n"
				    "  image rbd/vm3 ok 30.20s: site 'b' is the primary of "
				    "'rbd/vm3'\n");

	/* JSON: the operation as it stands, still running, decided */
	fake_expect(f, "imgstore.v1.ReplicationService/Failover", &dec);
	for (int i = 0; i < 3; i++)
		fake_expect(f, WAIT_OP, &dec);
	assert_int_equal(fake_run(f, "--server", SOCK, "-o", "json", "repl", "failover", "--from",
				  "a", "--to", "b", "--force", NULL),
			 0);
	doc = json_tokener_parse(f->out);
	assert_non_null(doc);
	assert_true(json_object_object_get_ex(doc, "state", &v));
	assert_string_equal(json_object_get_string(v), "running");
	assert_true(json_object_object_get_ex(doc, "decided", &v));
	assert_true(json_object_get_boolean(v));
	json_object_put(doc);

	/* Ctrl-C during the grace ends the wait; nothing is cancelled (what is left cannot stop) */
	cli_reset(f);
	f->interrupt_at_call = 2;
	fake_expect(f, "imgstore.v1.ReplicationService/Failover", &run);
	fake_expect(f, WAIT_OP, &dec);
	fake_expect(f, WAIT_OP, &dec);
	assert_int_equal(fake_run(f, "--server", SOCK, "repl", "failover", "--from", "a", "--to",
				  "b", "--force", NULL),
			 0);
	assert_int_equal(f->ncalls, 3);
	assert_string_equal(f->out, "failover rbd/*: " DECIDED "\n");
	assert_null(strstr(f->err, "cancelling"));
	f->interrupt_at_call = -1;

	/* `op wait` waits for the end */
	cli_reset(f);
	fake_expect(f, "imgstore.v1.OperationService/GetOperation", &dec);
	for (int i = 0; i < 5; i++)
		fake_expect(f, WAIT_OP, &dec);
	fake_expect(f, WAIT_OP, &done);
	assert_int_equal(fake_run(f, "--server", SOCK, "op", "wait", "op-42", NULL), 0);
	assert_int_equal(f->ncalls, 7);
	assert_non_null(strstr(f->out, "failover rbd/*: succeeded in 12s: "));
}

/* A path the daemon may not read (outside its [server] import_dirs): the CLI uploads; another
 * refusal is printed as it is. */
static void test_import_path_refused_uploads(void **state)
{
	fake *f = *state;
	char *file = path_in_tmp("refused.raw");
	Imgstore__V1__BeginUploadResponse begin = IMGSTORE__V1__BEGIN_UPLOAD_RESPONSE__INIT;
	Imgstore__V1__UploadChunkResponse chunk = IMGSTORE__V1__UPLOAD_CHUNK_RESPONSE__INIT;
	Imgstore__V1__Operation done = op_in(SUCCEEDED, 1000, 1000);

	make_file(file, 1000, 5);
	begin.upload_id = "up-7";
	begin.max_chunk_bytes = 2u << 20;
	fake_expect_error(f, "imgstore.v1.ImageService/ImportImage", -EPERM,
			  IMS_RPC_PERMISSION_DENIED,
			  "'/x' is not in the [server] import_dirs of the daemon (/srv)");
	fake_expect(f, "imgstore.v1.ImageService/BeginUpload", &begin);
	fake_expect(f, "imgstore.v1.ImageService/UploadChunk", &chunk);
	fake_expect(f, "imgstore.v1.ImageService/ImportImage", &done);
	assert_int_equal(fake_run(f, "--server", SOCK, "image", "import", file, "rbd/vm1", NULL),
			 0);
	assert_int_equal(f->ncalls, 4);
	Imgstore__V1__ImportImageRequest *imp =
		sent(f, 3, &imgstore__v1__import_image_request__descriptor);
	assert_string_equal(imp->upload_id, "up-7");
	assert_string_equal(imp->source_path, "");
	assert_string_equal(f->out, "import rbd/vm1: succeeded, 1000 B in 12s\n");

	/* another error: printed, nothing uploaded */
	cli_reset(f);
	fake_expect_error(f, "imgstore.v1.ImageService/ImportImage", -EEXIST,
			  IMS_RPC_ALREADY_EXISTS, "image 'rbd/vm1' already exists on site 'a'");
	assert_int_equal(fake_run(f, "--server", SOCK, "image", "import", file, "rbd/vm1", NULL),
			 1);
	assert_int_equal(f->ncalls, 1);
	assert_string_equal(f->err, "imgstore: image 'rbd/vm1' already exists on site 'a'\n");
	unlink(file);
	free(file);
}

/* ---- export ---- */

/* A path the daemon may not write (outside its [server] export_dirs): the CLI downloads. */
/* A typed error's reason is shown after the message, for scripts to match on. */
static void test_error_reason(void **state)
{
	fake *f = *state;

	fake_expect_error_reason(f, "imgstore.v1.SnapshotService/CreateSnapshot", -EBUSY,
				 IMS_RPC_FAILED_PRECONDITION,
				 "'rbd/vm1' on site 'b' is a secondary", "NOT_PRIMARY");
	assert_int_equal(fake_run(f, "--server", SOCK, "snap", "create", "rbd/vm1@s1", NULL), 1);
	assert_string_equal(f->err,
			    "imgstore: 'rbd/vm1' on site 'b' is a secondary (NOT_PRIMARY)\n");
}

static void test_export_path_refused_downloads(void **state)
{
	fake *f = *state;
	char *file = path_in_tmp("refused-out.raw");
	Imgstore__V1__Operation done = op_in(SUCCEEDED, 4096, 4096);
	Imgstore__V1__DownloadChunkResponse c = IMGSTORE__V1__DOWNLOAD_CHUNK_RESPONSE__INIT;
	uint8_t data[4096];
	struct stat st;

	memset(data, 0x5a, sizeof(data));
	c.data.data = data;
	c.data.len = sizeof(data);
	c.total_bytes = sizeof(data);
	c.eof = 1;
	done.kind = "export";
	fake_expect_error(f, "imgstore.v1.ImageService/ExportImage", -EPERM,
			  IMS_RPC_PERMISSION_DENIED,
			  "'/x' is not in the [server] export_dirs of the daemon (/srv)");
	fake_expect(f, "imgstore.v1.ImageService/ExportImage", &done);
	fake_expect(f, "imgstore.v1.ImageService/DownloadChunk", &c);
	assert_int_equal(fake_run(f, "--server", SOCK, "image", "export", "rbd/vm1", file, NULL),
			 0);
	Imgstore__V1__ExportImageRequest *req =
		sent(f, 0, &imgstore__v1__export_image_request__descriptor);
	assert_string_equal(req->dest_path, file);
	req = sent(f, 1, &imgstore__v1__export_image_request__descriptor);
	assert_string_equal(req->dest_path, "");
	assert_int_equal(stat(file, &st), 0);
	assert_int_equal(st.st_size, 4096);
	unlink(file);

	/* --no-wait needs the daemon to write the file: the refusal is the answer */
	cli_reset(f);
	fake_expect_error(f, "imgstore.v1.ImageService/ExportImage", -EPERM,
			  IMS_RPC_PERMISSION_DENIED,
			  "'/x' is not in the [server] export_dirs of the daemon (/srv)");
	assert_int_equal(fake_run(f, "--server", SOCK, "image", "export", "rbd/vm1", file,
				  "--no-wait", NULL),
			 1);
	assert_int_equal(f->ncalls, 1);
	assert_non_null(strstr(f->err, "export_dirs"));
	free(file);
}

static void test_export_local(void **state)
{
	fake *f = *state;
	char *file = path_in_tmp("out.qcow2");
	Imgstore__V1__Operation done = op_in(SUCCEEDED, 0, 0);
	char cwd[PATH_MAX], want[PATH_MAX + 16];

	done.kind = "export";
	fake_expect(f, "imgstore.v1.ImageService/ExportImage", &done);
	assert_int_equal(fake_run(f, "--server", SOCK, "image", "export", "rbd/vm1@s1", file,
				  "--format", "qcow2", NULL),
			 0);
	Imgstore__V1__ExportImageRequest *req =
		sent(f, 0, &imgstore__v1__export_image_request__descriptor);
	assert_string_equal(req->dest_path, file);
	assert_string_equal(req->format, "qcow2");
	assert_string_equal(req->image->snapshot, "s1");

	/* a relative FILE is sent absolute */
	assert_non_null(getcwd(cwd, sizeof(cwd)));
	fake_expect(f, "imgstore.v1.ImageService/ExportImage", &done);
	assert_int_equal(fake_run(f, "--server", SOCK, "image", "export", "rbd/vm1", "rel.raw",
				  "--no-wait", NULL),
			 0);
	req = sent(f, 1, &imgstore__v1__export_image_request__descriptor);
	snprintf(want, sizeof(want), "%s/rel.raw", cwd);
	assert_string_equal(req->dest_path, want);
	assert_string_equal(f->out, "op-42\n");

	/* never over an existing file; --no-wait needs the daemon to write the file */
	make_file(file, 1, 0);
	assert_int_equal(fake_run(f, "--server", SOCK, "image", "export", "rbd/vm1", file, NULL),
			 1);
	snprintf(want, sizeof(want), "imgstore: '%s' exists; export never writes over a file\n",
		 file);
	assert_string_equal(f->err, want);
	unlink(file);
	fake_run(f, "--server", URL, "image", "export", "rbd/vm1", file, "--no-wait", NULL);
	assert_int_equal(f->rc, 2);
	assert_int_equal(f->ncalls, 2);
	free(file);
}

static void test_export_download_sparse(void **state)
{
	fake *f = *state;
	char *file = path_in_tmp("download.raw");
	char partial[PATH_MAX];
	const size_t total = (4u << 20) + 4096;
	Imgstore__V1__Operation run = op_in(RUNNING, 0, total),
				done = op_in(SUCCEEDED, total, total);
	Imgstore__V1__DownloadChunkResponse c1 = IMGSTORE__V1__DOWNLOAD_CHUNK_RESPONSE__INIT,
					    c2 = IMGSTORE__V1__DOWNLOAD_CHUNK_RESPONSE__INIT,
					    c3 = IMGSTORE__V1__DOWNLOAD_CHUNK_RESPONSE__INIT;
	uint8_t *zeros = calloc(1, 2u << 20), *data = calloc(1, 2u << 20), tail[4096];
	uint8_t *back = malloc(total);
	struct stat st;
	int fd;

	run.kind = done.kind = "export";
	/* 2 MiB of zeros, 2 MiB with data in the middle 64 KiB run only, then a 4 KiB tail of zeros
	 */
	memset(data + (1u << 20), 0xab, 65536);
	memset(tail, 0, sizeof(tail));
	c1.data.data = zeros;
	c1.data.len = 2u << 20;
	c1.total_bytes = total;
	c2.data.data = data;
	c2.data.len = 2u << 20;
	c2.total_bytes = total;
	c3.data.data = tail;
	c3.data.len = sizeof(tail);
	c3.total_bytes = total;
	c3.eof = 1;
	fake_expect(f, "imgstore.v1.ImageService/ExportImage", &run);
	fake_expect(f, WAIT_OP, &done);
	fake_expect(f, "imgstore.v1.ImageService/DownloadChunk", &c1);
	fake_expect(f, "imgstore.v1.ImageService/DownloadChunk", &c2);
	fake_expect(f, "imgstore.v1.ImageService/DownloadChunk", &c3);
	assert_int_equal(fake_run(f, "--server", URL, "image", "export", "rbd/vm1", file, NULL), 0);
	Imgstore__V1__ExportImageRequest *req =
		sent(f, 0, &imgstore__v1__export_image_request__descriptor);
	assert_string_equal(req->dest_path, "");
	for (size_t i = 0; i < 3; i++) {
		Imgstore__V1__DownloadChunkRequest *d =
			sent(f, 2 + i, &imgstore__v1__download_chunk_request__descriptor);
		assert_string_equal(d->operation_id, "op-42");
		assert_int_equal(d->offset, i * (2u << 20));
		assert_int_equal(d->length, 2u << 20);
	}
	char want[PATH_MAX + 100];
	snprintf(want, sizeof(want), "export rbd/vm1: succeeded, 4.0 MiB written to %s\n", file);
	assert_string_equal(f->out, want);

	/* the file: its full length, the bytes exactly, holes where the zeros were */
	assert_int_equal(stat(file, &st), 0);
	assert_int_equal(st.st_size, total);
	assert_true((uint64_t)st.st_blocks * 512 < (1u << 20));
	fd = open(file, O_RDONLY);
	assert_int_equal(read(fd, back, total), (ssize_t)total);
	close(fd);
	assert_memory_equal(back, zeros, 2u << 20);
	assert_memory_equal(back + (2u << 20), data, 2u << 20);
	assert_memory_equal(back + (4u << 20), tail, sizeof(tail));
	snprintf(partial, sizeof(partial), "%s.partial", file);
	assert_int_equal(access(partial, F_OK), -1);

	/* a download cut short leaves neither FILE nor FILE.partial */
	unlink(file);
	cli_reset(f);
	fake_expect(f, "imgstore.v1.ImageService/ExportImage", &done);
	fake_expect(f, "imgstore.v1.ImageService/DownloadChunk", &c1);
	fake_expect_error(f, "imgstore.v1.ImageService/DownloadChunk", -ENOENT, IMS_RPC_NOT_FOUND,
			  "no spooled export for operation 'op-42'");
	assert_int_equal(fake_run(f, "--server", URL, "image", "export", "rbd/vm1", file, NULL), 1);
	assert_non_null(strstr(f->err, "imgstore: no spooled export for operation 'op-42'\n"));
	assert_int_equal(access(file, F_OK), -1);
	assert_int_equal(access(partial, F_OK), -1);

	/* a server that claims more than it announced is refused */
	cli_reset(f);
	c2.total_bytes = 3u << 20;
	c1.total_bytes = 3u << 20;
	fake_expect(f, "imgstore.v1.ImageService/ExportImage", &done);
	fake_expect(f, "imgstore.v1.ImageService/DownloadChunk", &c1);
	fake_expect(f, "imgstore.v1.ImageService/DownloadChunk", &c2);
	assert_int_equal(fake_run(f, "--server", URL, "image", "export", "rbd/vm1", file, NULL), 1);
	assert_non_null(
		strstr(f->err, "imgstore: the server sent more than asked for at byte 2097152\n"));
	assert_int_equal(access(file, F_OK), -1);
	assert_int_equal(access(partial, F_OK), -1);

	free(zeros);
	free(data);
	free(back);
	free(file);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		OPS_TEST(test_import_local_waits),
		OPS_TEST(test_import_no_wait_and_json),
		OPS_TEST(test_import_upload_chunks),
		OPS_TEST(test_wait_failure),
		OPS_TEST(test_ctrl_c_cancels),
		OPS_TEST(test_op_wait_timeout),
		OPS_TEST(test_failover_decided),
		OPS_TEST(test_import_path_refused_uploads),
		OPS_TEST(test_export_path_refused_downloads),
		OPS_TEST(test_export_local),
		OPS_TEST(test_export_download_sparse),
		OPS_TEST(test_error_reason),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
