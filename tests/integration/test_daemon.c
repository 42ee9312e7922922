/*
 * imgstored end to end, through libimgstore against the sandbox's daemon of site a (TLS, and
 * the Unix socket): every implemented method round-trips, the role matrix, unimplemented
 * services, uploads and downloads, operations, leases and attach info, and a daemon killed in
 * the middle of an import.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "imgstore/v1/host.pb-c.h"
#include "imgstore/v1/image.pb-c.h"
#include "imgstore/v1/operation.pb-c.h"
#include "imgstore/v1/replication.pb-c.h"
#include "imgstore/v1/site.pb-c.h"
#include "imgstore/v1/snapshot.pb-c.h"
#include "itest.h"
#include "proto/client.h"
#include "store/lease.h"
#include "store/site.h"

static char admin_tok[128], host_tok[128], host2_tok[128], reader_tok[128];

static void read_token(const char *var, char *out, size_t len)
{
	const char *path = itest_env(var);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(out, (int)len, f));
	out[strcspn(out, "\r\n")] = '\0';
	fclose(f);
}

static ims_client *client_as(const char *token, bool unix_socket)
{
	ims_client_opts o = IMS_CLIENT_OPTS_INIT;
	o.server = getenv(unix_socket ? "IMGSTORE_SOCKET_A" : "IMGSTORE_SERVER_A");
	o.token = token;
	o.ca_file = getenv("IMGSTORE_CA_FILE");
	assert_non_null(o.server);
	ims_client *c = NULL;
	if (ims_client_open(&c, &o) < 0)
		fail_msg("client: %s", ims_error_last());
	return c;
}

static ims_client *C; /* admin over TLS */

static int setup(void **state)
{
	(void)state;
	read_token("IMGSTORE_TOKEN_FILE", admin_tok, sizeof(admin_tok));
	read_token("IMGSTORE_HOST_TOKEN_FILE", host_tok, sizeof(host_tok));
	read_token("IMGSTORE_HOST2_TOKEN_FILE", host2_tok, sizeof(host2_tok));
	read_token("IMGSTORE_READER_TOKEN_FILE", reader_tok, sizeof(reader_tok));
	C = client_as(admin_tok, false);
	return 0;
}

static int teardown(void **state)
{
	ims_client_close(C);
	return itest_teardown(state);
}

#define CALL(c, svc, method, req, out_type, resp)                                                  \
	ims_client_call((c), "imgstore.v1." svc "/" method, &(req)->base,                          \
			&imgstore__v1__##out_type##__descriptor, (ProtobufCMessage **)(resp))

static void spec(Imgstore__V1__ImageSpec *s, const char *image, const char *snap)
{
	imgstore__v1__image_spec__init(s);
	s->pool = "rbd";
	s->image = (char *)image;
	s->snapshot = (char *)(snap ? snap : "");
}

static void free_msg(void *m)
{
	if (m)
		protobuf_c_message_free_unpacked(m, NULL);
}

/* DeleteImage of S (with its snapshots when PURGE) as client CL: the call's result. */
static int delete_image(ims_client *cl, Imgstore__V1__ImageSpec *s, bool purge)
{
	Imgstore__V1__DeleteImageRequest del = IMGSTORE__V1__DELETE_IMAGE_REQUEST__INIT;
	Imgstore__V1__DeleteImageResponse *dr = NULL;
	del.image = s;
	del.purge = purge;
	int r = CALL(cl, "ImageService", "DeleteImage", &del, delete_image_response, &dr);
	free_msg(dr);
	return r;
}

/* ReleaseLease of lease ID as client CL: the call's result. */
static int release_lease(ims_client *cl, const char *id)
{
	Imgstore__V1__ReleaseLeaseRequest rl = IMGSTORE__V1__RELEASE_LEASE_REQUEST__INIT;
	Imgstore__V1__ReleaseLeaseResponse *rr = NULL;
	rl.lease_id = (char *)id;
	int r = CALL(cl, "HostService", "ReleaseLease", &rl, release_lease_response, &rr);
	free_msg(rr);
	return r;
}

/* Wait until the operation ends; returns its final state and frees nothing else. */
static Imgstore__V1__Operation *wait_op(ims_client *c, const char *id)
{
	for (int i = 0; i < 300; i++) {
		Imgstore__V1__WaitOperationRequest w = IMGSTORE__V1__WAIT_OPERATION_REQUEST__INIT;
		Imgstore__V1__Operation *op = NULL;
		w.id = (char *)id;
		w.timeout_ms = 2000;
		if (CALL(c, "OperationService", "WaitOperation", &w, operation, &op) < 0)
			fail_msg("wait %s: %s", id, ims_error_last());
		if (op->state >= IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_SUCCEEDED)
			return op;
		free_msg(op);
	}
	fail_msg("operation %s did not end in 10 minutes", id);
	return NULL;
}

static void assert_op_ok(Imgstore__V1__Operation *op)
{
	if (op->state != IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_SUCCEEDED)
		fail_msg("operation %s (%s %s) ended in state %d: %s", op->id, op->kind, op->target,
			 op->state, op->error);
}

static Imgstore__V1__Image *get_image(ims_client *c, const char *name)
{
	Imgstore__V1__GetImageRequest g = IMGSTORE__V1__GET_IMAGE_REQUEST__INIT;
	Imgstore__V1__ImageSpec s;
	Imgstore__V1__Image *img = NULL;
	spec(&s, name, NULL);
	g.image = &s;
	int r = CALL(c, "ImageService", "GetImage", &g, image, &img);
	return r < 0 ? NULL : img;
}

/* test_image_methods: create; again, already_exists; a bad name. */
static void image_create(Imgstore__V1__ImageSpec *s, const char *name)
{
	Imgstore__V1__CreateImageRequest cr = IMGSTORE__V1__CREATE_IMAGE_REQUEST__INIT;
	cr.image = s;
	cr.size = 64 * MiB;
	Imgstore__V1__Image *img = NULL;
	assert_int_equal(CALL(C, "ImageService", "CreateImage", &cr, image, &img), 0);
	assert_string_equal(img->name, name);
	assert_int_equal(img->size, 64 * MiB);
	assert_string_equal(img->source, "new");
	free_msg(img);
	/* again: already_exists with the store's message */
	assert_int_equal(CALL(C, "ImageService", "CreateImage", &cr, image, &img), -EEXIST);
	assert_int_equal(ims_client_last_code(C), IMS_RPC_ALREADY_EXISTS);
	assert_non_null(strstr(ims_error_last(), "already exists"));
	/* a bad name: invalid_argument, nothing made */
	Imgstore__V1__ImageSpec bad;
	spec(&bad, "bad/name", NULL);
	cr.image = &bad;
	assert_int_equal(CALL(C, "ImageService", "CreateImage", &cr, image, &img), -EINVAL);
	assert_int_equal(ims_client_last_code(C), IMS_RPC_INVALID_ARGUMENT);
}

/* test_image_methods: resize (a shrink only when allowed), tags, the list. */
static void image_resize_and_tags(Imgstore__V1__ImageSpec *s, const char *name)
{
	Imgstore__V1__Image *img = NULL;
	Imgstore__V1__ResizeImageRequest rs = IMGSTORE__V1__RESIZE_IMAGE_REQUEST__INIT;
	rs.image = s;
	rs.size = 32 * MiB;
	assert_int_equal(CALL(C, "ImageService", "ResizeImage", &rs, image, &img), -EINVAL);
	rs.allow_shrink = 1;
	assert_int_equal(CALL(C, "ImageService", "ResizeImage", &rs, image, &img), 0);
	assert_int_equal(img->size, 32 * MiB);
	free_msg(img);

	Imgstore__V1__SetImageTagRequest st = IMGSTORE__V1__SET_IMAGE_TAG_REQUEST__INIT;
	st.image = s;
	st.key = "os";
	st.value = "debian";
	assert_int_equal(CALL(C, "ImageService", "SetImageTag", &st, image, &img), 0);
	assert_int_equal(img->n_tags, 1);
	assert_string_equal(img->tags[0]->value, "debian");
	free_msg(img);

	Imgstore__V1__ListImagesRequest ls = IMGSTORE__V1__LIST_IMAGES_REQUEST__INIT;
	Imgstore__V1__ListImagesResponse *list = NULL;
	assert_int_equal(CALL(C, "ImageService", "ListImages", &ls, list_images_response, &list),
			 0);
	assert_string_equal(list->pool, "rbd");
	bool found = false;
	for (size_t i = 0; i < list->n_images; i++)
		if (strcmp(list->images[i]->name, name) == 0 && list->images[i]->n_tags == 1)
			found = true;
	assert_true(found);
	free_msg(list);

	Imgstore__V1__RemoveImageTagRequest rt = IMGSTORE__V1__REMOVE_IMAGE_TAG_REQUEST__INIT;
	rt.image = s;
	rt.key = "os";
	assert_int_equal(CALL(C, "ImageService", "RemoveImageTag", &rt, image, &img), 0);
	assert_int_equal(img->n_tags, 0);
	free_msg(img);
}

/* test_image_methods: snapshots, clone, flatten, rollback. */
static void image_snapshots(Imgstore__V1__ImageSpec *s, const char *name, const char *clone_name)
{
	Imgstore__V1__Image *img = NULL;
	Imgstore__V1__ImageSpec snap;
	spec(&snap, name, "s1");
	Imgstore__V1__CreateSnapshotRequest cs = IMGSTORE__V1__CREATE_SNAPSHOT_REQUEST__INIT;
	cs.snapshot = &snap;
	Imgstore__V1__SnapshotInfo *si = NULL;
	assert_int_equal(CALL(C, "SnapshotService", "CreateSnapshot", &cs, snapshot_info, &si), 0);
	assert_string_equal(si->name, "s1");
	free_msg(si);
	Imgstore__V1__ListSnapshotsRequest lsn = IMGSTORE__V1__LIST_SNAPSHOTS_REQUEST__INIT;
	lsn.image = s;
	Imgstore__V1__ListSnapshotsResponse *snaps = NULL;
	assert_int_equal(
		CALL(C, "SnapshotService", "ListSnapshots", &lsn, list_snapshots_response, &snaps),
		0);
	assert_int_equal(snaps->n_snapshots, 1);
	free_msg(snaps);

	Imgstore__V1__ImageSpec clone;
	spec(&clone, clone_name, NULL);
	Imgstore__V1__CloneImageRequest cl = IMGSTORE__V1__CLONE_IMAGE_REQUEST__INIT;
	cl.parent = &snap;
	cl.clone = &clone;
	assert_int_equal(CALL(C, "ImageService", "CloneImage", &cl, image, &img), 0);
	assert_non_null(strstr(img->parent, "@s1"));
	free_msg(img);
	Imgstore__V1__FlattenImageRequest fl = IMGSTORE__V1__FLATTEN_IMAGE_REQUEST__INIT;
	fl.image = &clone;
	Imgstore__V1__Operation *op = NULL;
	assert_int_equal(CALL(C, "ImageService", "FlattenImage", &fl, operation, &op), 0);
	assert_string_equal(op->kind, "flatten");
	Imgstore__V1__Operation *done = wait_op(C, op->id);
	assert_op_ok(done);
	free_msg(done);
	free_msg(op);
	img = get_image(C, clone_name);
	assert_non_null(img);
	assert_string_equal(img->parent, "");
	free_msg(img);

	Imgstore__V1__RollbackSnapshotRequest rb = IMGSTORE__V1__ROLLBACK_SNAPSHOT_REQUEST__INIT;
	rb.snapshot = &snap;
	assert_int_equal(CALL(C, "SnapshotService", "RollbackSnapshot", &rb, operation, &op), 0);
	done = wait_op(C, op->id);
	assert_op_ok(done);
	free_msg(done);
	free_msg(op);
	Imgstore__V1__DeleteSnapshotRequest ds = IMGSTORE__V1__DELETE_SNAPSHOT_REQUEST__INIT;
	ds.snapshot = &snap;
	Imgstore__V1__DeleteSnapshotResponse *dsr = NULL;
	assert_int_equal(
		CALL(C, "SnapshotService", "DeleteSnapshot", &ds, delete_snapshot_response, &dsr),
		0);
	free_msg(dsr);
}

/* test_image_methods: rename, then delete the image and its clone. */
static void image_rename_and_delete(Imgstore__V1__ImageSpec *s, const char *name,
				    const char *renamed, const char *clone_name)
{
	Imgstore__V1__Image *img = NULL;
	Imgstore__V1__ImageSpec clone;
	spec(&clone, clone_name, NULL);
	Imgstore__V1__RenameImageRequest rn = IMGSTORE__V1__RENAME_IMAGE_REQUEST__INIT;
	rn.image = s;
	rn.new_name = (char *)renamed;
	assert_int_equal(CALL(C, "ImageService", "RenameImage", &rn, image, &img), 0);
	assert_string_equal(img->name, renamed);
	free_msg(img);
	assert_null(get_image(C, name));
	assert_int_equal(ims_client_last_code(C), IMS_RPC_NOT_FOUND);

	Imgstore__V1__ImageSpec rs2;
	spec(&rs2, renamed, NULL);
	assert_int_equal(delete_image(C, &rs2, true), 0);
	assert_int_equal(delete_image(C, &clone, true), 0);
	assert_null(get_image(C, renamed));
}

/* Create image rbd/NAME of SIZE bytes through the API (spec in S). */
static void rpc_create(Imgstore__V1__ImageSpec *s, const char *name, uint64_t size)
{
	spec(s, name, NULL);
	Imgstore__V1__CreateImageRequest cr = IMGSTORE__V1__CREATE_IMAGE_REQUEST__INIT;
	cr.image = s;
	cr.size = size;
	Imgstore__V1__Image *img = NULL;
	assert_int_equal(CALL(C, "ImageService", "CreateImage", &cr, image, &img), 0);
	free_msg(img);
}

static void test_image_methods(void **state)
{
	(void)state;
	const char *name = itest_name("rpc");
	char renamed[160], clone_name[200];
	snprintf(renamed, sizeof(renamed), "%s-r", name);
	snprintf(clone_name, sizeof(clone_name), "%s-clone", name);
	Imgstore__V1__ImageSpec s;
	spec(&s, name, NULL);
	image_create(&s, name);
	image_resize_and_tags(&s, name);
	image_snapshots(&s, name, clone_name);
	image_rename_and_delete(&s, name, renamed, clone_name);
}

/* What the steps of test_import_export share. */
typedef struct {
	char raw[512], qcow[512], out_path[512], dl[512];
	Imgstore__V1__ImageSpec s1, s2; /* imported by path, by upload */
	const char *by_path, *by_upload;
} xfer;

/* test_import_export: a pattern file, its qcow2 copy under import_dirs, an import by path. */
static void xfer_import_by_path(xfer *x)
{
	const char *in_dir = getenv("IMGSTORE_IMPORT_DIR"),
		   *out_dir = getenv("IMGSTORE_EXPORT_DIR");
	assert_non_null(in_dir);
	assert_non_null(out_dir);
	/* by path only in the daemon's [server] import_dirs and export_dirs */
	snprintf(x->raw, sizeof(x->raw), "%s/src.raw", itest_dir());
	snprintf(x->qcow, sizeof(x->qcow), "%s/%s.qcow2", in_dir, itest_name("src"));
	snprintf(x->out_path, sizeof(x->out_path), "%s/%s.raw", out_dir, itest_name("exported"));
	snprintf(x->dl, sizeof(x->dl), "%s/downloaded.qcow2", itest_dir());
	itest_fill_pattern(x->raw, 20 * MiB + 512, 3);
	assert_int_equal(itest_sh("qemu-img convert -O qcow2 '%s' '%s'", x->raw, x->qcow), 0);

	x->by_path = itest_name("by-path");
	x->by_upload = itest_name("by-upload");
	spec(&x->s1, x->by_path, NULL);
	spec(&x->s2, x->by_upload, NULL);

	Imgstore__V1__ImportImageRequest im = IMGSTORE__V1__IMPORT_IMAGE_REQUEST__INIT;
	im.image = &x->s1;
	im.source_path = x->qcow;
	Imgstore__V1__Operation *op = NULL, *done;
	assert_int_equal(CALL(C, "ImageService", "ImportImage", &im, operation, &op), 0);
	assert_string_equal(op->kind, "import");
	done = wait_op(C, op->id);
	assert_op_ok(done);
	assert_int_equal(done->bytes_done, 20 * MiB + 512);
	free_msg(done);
	free_msg(op);
	/* the name is taken now: refused at once, before any operation */
	assert_int_equal(CALL(C, "ImageService", "ImportImage", &im, operation, &op), -EEXIST);
}

/* test_import_export: upload the qcow2 in chunks, then import it; both imports alike. */
static void xfer_import_upload(xfer *x)
{
	struct stat st;
	assert_int_equal(stat(x->qcow, &st), 0);
	Imgstore__V1__BeginUploadRequest bu = IMGSTORE__V1__BEGIN_UPLOAD_REQUEST__INIT;
	bu.size = (uint64_t)st.st_size;
	Imgstore__V1__BeginUploadResponse *up = NULL;
	assert_int_equal(CALL(C, "ImageService", "BeginUpload", &bu, begin_upload_response, &up),
			 0);
	assert_true(up->max_chunk_bytes > 0);
	int fd = open(x->qcow, O_RDONLY);
	uint8_t *buf = malloc(up->max_chunk_bytes);
	uint64_t off = 0;
	while (off < (uint64_t)st.st_size) {
		ssize_t n = pread(fd, buf, up->max_chunk_bytes, (off_t)off);
		assert_true(n > 0);
		Imgstore__V1__UploadChunkRequest ch = IMGSTORE__V1__UPLOAD_CHUNK_REQUEST__INIT;
		Imgstore__V1__UploadChunkResponse *cr = NULL;
		ch.upload_id = up->upload_id;
		ch.offset = off;
		ch.data.data = buf;
		ch.data.len = (size_t)n;
		assert_int_equal(
			CALL(C, "ImageService", "UploadChunk", &ch, upload_chunk_response, &cr), 0);
		off += (uint64_t)n;
		assert_int_equal(cr->received_bytes, off);
		free_msg(cr);
	}
	/* a chunk at the wrong offset is refused */
	Imgstore__V1__UploadChunkRequest bad = IMGSTORE__V1__UPLOAD_CHUNK_REQUEST__INIT;
	Imgstore__V1__UploadChunkResponse *cr = NULL;
	bad.upload_id = up->upload_id;
	bad.offset = 0;
	bad.data.data = buf;
	bad.data.len = 1;
	assert_int_equal(CALL(C, "ImageService", "UploadChunk", &bad, upload_chunk_response, &cr),
			 -EINVAL);
	close(fd);
	free(buf);
	Imgstore__V1__ImportImageRequest im = IMGSTORE__V1__IMPORT_IMAGE_REQUEST__INIT;
	Imgstore__V1__Operation *op = NULL, *done;
	im.image = &x->s2;
	im.source_path = "";
	im.upload_id = up->upload_id;
	assert_int_equal(CALL(C, "ImageService", "ImportImage", &im, operation, &op), 0);
	done = wait_op(C, op->id);
	assert_op_ok(done);
	free_msg(done);
	free_msg(op);
	free_msg(up);

	Imgstore__V1__Image *a = get_image(C, x->by_path), *b = get_image(C, x->by_upload);
	assert_non_null(a);
	assert_non_null(b);
	assert_int_equal(strlen(a->content_sha256), 64);
	assert_string_equal(a->content_sha256, b->content_sha256);
	assert_string_equal(a->source, "qcow2");
	free_msg(a);
	free_msg(b);
}

/* test_import_export: export to a path on the daemon's host, then to the spool as qcow2 and
 * download it. */
static void xfer_export(xfer *x)
{
	Imgstore__V1__Operation *op = NULL, *done;
	Imgstore__V1__ExportImageRequest ex = IMGSTORE__V1__EXPORT_IMAGE_REQUEST__INIT;
	ex.image = &x->s2;
	ex.dest_path = x->out_path;
	assert_int_equal(CALL(C, "ImageService", "ExportImage", &ex, operation, &op), 0);
	done = wait_op(C, op->id);
	assert_op_ok(done);
	free_msg(done);
	free_msg(op);
	assert_int_equal(itest_sh("cmp -s '%s' '%s'", x->out_path, x->raw), 0);
	assert_int_equal(CALL(C, "ImageService", "ExportImage", &ex, operation, &op), -EEXIST);

	/* export to the spool as qcow2 and download it */
	ex.dest_path = "";
	ex.format = "qcow2";
	assert_int_equal(CALL(C, "ImageService", "ExportImage", &ex, operation, &op), 0);
	done = wait_op(C, op->id);
	assert_op_ok(done);
	FILE *f = fopen(x->dl, "w");
	assert_non_null(f);
	for (uint64_t pos = 0;;) {
		Imgstore__V1__DownloadChunkRequest dq = IMGSTORE__V1__DOWNLOAD_CHUNK_REQUEST__INIT;
		Imgstore__V1__DownloadChunkResponse *dc = NULL;
		dq.operation_id = done->id;
		dq.offset = pos;
		assert_int_equal(
			CALL(C, "ImageService", "DownloadChunk", &dq, download_chunk_response, &dc),
			0);
		assert_int_equal(fwrite(dc->data.data, 1, dc->data.len, f), dc->data.len);
		pos += dc->data.len;
		bool eof = dc->eof;
		free_msg(dc);
		if (eof)
			break;
	}
	fclose(f);
	free_msg(done);
	free_msg(op);
	assert_int_equal(
		itest_sh("qemu-img check -q '%s' && qemu-img compare -q -f qcow2 -F raw '%s' '%s'",
			 x->dl, x->dl, x->raw),
		0);
}

/* test_import_export: the operations are listed, newest first; the images deleted. */
static void xfer_list_and_delete(xfer *x)
{
	Imgstore__V1__ListOperationsRequest lo = IMGSTORE__V1__LIST_OPERATIONS_REQUEST__INIT;
	Imgstore__V1__ListOperationsResponse *ops = NULL;
	assert_int_equal(
		CALL(C, "OperationService", "ListOperations", &lo, list_operations_response, &ops),
		0);
	assert_true(ops->n_operations >= 4);
	assert_true(ops->operations[0]->created_unix >=
		    ops->operations[ops->n_operations - 1]->created_unix);
	free_msg(ops);

	assert_int_equal(delete_image(C, &x->s1, true), 0);
	assert_int_equal(delete_image(C, &x->s2, true), 0);
	unlink(x->qcow);
	unlink(x->out_path);
}

/* Import from a path on the daemon's host, and from an upload; export to a path and to the
 * spool for download; every copy must be byte-identical. */
static void test_import_export(void **state)
{
	(void)state;
	xfer x;
	memset(&x, 0, sizeof(x));
	xfer_import_by_path(&x);
	xfer_import_upload(&x);
	xfer_export(&x);
	xfer_list_and_delete(&x);
}

/* An import by path reads only files under [server] import_dirs, an export by path writes only
 * under export_dirs, symbolic links and '..' resolved first; every refusal is
 * permission_denied and changes nothing. */
static void test_paths_refused(void **state)
{
	(void)state;
	const char *sb = getenv("IMGSTORE_SANDBOX"), *in_dir = getenv("IMGSTORE_IMPORT_DIR"),
		   *out_dir = getenv("IMGSTORE_EXPORT_DIR");
	assert_non_null(sb);
	assert_non_null(in_dir);
	assert_non_null(out_dir);
	const char *name = itest_name("paths");
	char keyring[512], link[512], dotdot[512], outside[512], link_dir[512], via_link[600];
	snprintf(keyring, sizeof(keyring), "%s/site-a/keyring", sb);
	snprintf(link, sizeof(link), "%s/%s.img", in_dir, itest_name("to-keyring"));
	snprintf(dotdot, sizeof(dotdot), "%s/../admin.token", in_dir);
	assert_int_equal(access(keyring, R_OK), 0); /* the daemon could read it */
	assert_int_equal(symlink(keyring, link), 0);

	Imgstore__V1__ImageSpec s;
	spec(&s, name, NULL);
	Imgstore__V1__ImportImageRequest im = IMGSTORE__V1__IMPORT_IMAGE_REQUEST__INIT;
	Imgstore__V1__Operation *op = NULL;
	im.image = &s;
	im.format = "raw";
	const char *refused[] = {"/etc/passwd", keyring, link, dotdot, "/proc/self/environ"};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		im.source_path = (char *)refused[i];
		if (CALL(C, "ImageService", "ImportImage", &im, operation, &op) != -EPERM)
			fail_msg("import of '%s' was not refused: %s", refused[i],
				 ims_error_last());
		assert_int_equal(ims_client_last_code(C), IMS_RPC_PERMISSION_DENIED);
		assert_non_null(strstr(ims_error_last(), "import_dirs"));
		assert_null(get_image(C, name)); /* nothing made */
	}
	unlink(link);

	/* export: a file outside export_dirs, directly or through a symbolic link to a directory */
	rpc_create(&s, name, MiB);
	snprintf(outside, sizeof(outside), "%s/outside.raw", itest_dir());
	snprintf(link_dir, sizeof(link_dir), "%s/%s", out_dir, itest_name("to-tmp"));
	snprintf(via_link, sizeof(via_link), "%s/outside.raw", link_dir);
	assert_int_equal(symlink(itest_dir(), link_dir), 0);
	Imgstore__V1__ExportImageRequest ex = IMGSTORE__V1__EXPORT_IMAGE_REQUEST__INIT;
	ex.image = &s;
	const char *bad_dest[] = {outside, via_link};
	for (size_t i = 0; i < 2; i++) {
		ex.dest_path = (char *)bad_dest[i];
		if (CALL(C, "ImageService", "ExportImage", &ex, operation, &op) != -EPERM)
			fail_msg("export to '%s' was not refused: %s", bad_dest[i],
				 ims_error_last());
		assert_int_equal(ims_client_last_code(C), IMS_RPC_PERMISSION_DENIED);
		assert_non_null(strstr(ims_error_last(), "export_dirs"));
	}
	assert_int_equal(access(outside, F_OK), -1); /* nothing written */
	unlink(link_dir);

	assert_int_equal(delete_image(C, &s, true), 0);
}

static void test_roles(void **state)
{
	(void)state;
	const char *name = itest_name("roles");
	Imgstore__V1__ImageSpec s;
	spec(&s, name, NULL);
	Imgstore__V1__CreateImageRequest cr = IMGSTORE__V1__CREATE_IMAGE_REQUEST__INIT;
	cr.image = &s;
	cr.size = MiB;
	Imgstore__V1__Image *img = NULL;
	Imgstore__V1__AcquireLeaseRequest al = IMGSTORE__V1__ACQUIRE_LEASE_REQUEST__INIT;
	al.image = &s;
	al.host = "sandbox-host"; /* the host token's name: a host takes leases for itself only */
	Imgstore__V1__Lease *lease = NULL;

	ims_client *none = client_as(NULL, false),
		   *wrong = client_as("not-a-token-at-all-xxxx", false);
	ims_client *reader = client_as(reader_tok, false), *host = client_as(host_tok, true);

	assert_true(CALL(none, "ImageService", "CreateImage", &cr, image, &img) < 0);
	assert_int_equal(ims_client_last_code(none), IMS_RPC_UNAUTHENTICATED);
	assert_true(CALL(wrong, "ImageService", "GetImage", &cr, image, &img) < 0);
	assert_int_equal(ims_client_last_code(wrong), IMS_RPC_UNAUTHENTICATED);

	assert_true(CALL(reader, "ImageService", "CreateImage", &cr, image, &img) < 0);
	assert_int_equal(ims_client_last_code(reader), IMS_RPC_PERMISSION_DENIED);
	assert_true(CALL(host, "ImageService", "CreateImage", &cr, image, &img) < 0);
	assert_int_equal(ims_client_last_code(host), IMS_RPC_PERMISSION_DENIED);
	assert_int_equal(CALL(C, "ImageService", "CreateImage", &cr, image, &img), 0);
	free_msg(img);

	img = get_image(reader, name); /* reader may read */
	assert_non_null(img);
	free_msg(img);
	assert_true(CALL(reader, "HostService", "AcquireLease", &al, lease, &lease) < 0);
	assert_int_equal(ims_client_last_code(reader), IMS_RPC_PERMISSION_DENIED);
	assert_int_equal(CALL(host, "HostService", "AcquireLease", &al, lease, &lease),
			 0); /* over the socket */
	assert_string_equal(lease->host, "sandbox-host");
	assert_int_equal(release_lease(host, lease->id), 0);
	free_msg(lease);

	/* a replication mode the daemon does not know is refused, naming it */
	Imgstore__V1__EnableReplicationRequest en = IMGSTORE__V1__ENABLE_REPLICATION_REQUEST__INIT;
	Imgstore__V1__ReplicationStatus *enr = NULL;
	en.image = &s;
	en.target_site = "b";
	en.mode = "semi";
	assert_true(CALL(C, "ReplicationService", "EnableReplication", &en, replication_status,
			 &enr) < 0);
	assert_int_equal(ims_client_last_code(C), IMS_RPC_INVALID_ARGUMENT);
	assert_non_null(strstr(ims_error_last(), "unknown mode 'semi': expected async or sync"));

	/* a failover is the admin's: a reader is refused before anything runs */
	Imgstore__V1__FailoverRequest fo = IMGSTORE__V1__FAILOVER_REQUEST__INIT;
	Imgstore__V1__Operation *fop = NULL;
	fo.image = &s;
	fo.target_site = "b";
	assert_true(CALL(reader, "ReplicationService", "Failover", &fo, operation, &fop) < 0);
	assert_int_equal(ims_client_last_code(reader), IMS_RPC_PERMISSION_DENIED);

	/* the sites: this daemon's own first, answering; an unknown one is named as such */
	Imgstore__V1__ListSitesRequest ls = IMGSTORE__V1__LIST_SITES_REQUEST__INIT;
	Imgstore__V1__ListSitesResponse *lsr = NULL;
	assert_int_equal(CALL(reader, "SiteService", "ListSites", &ls, list_sites_response, &lsr),
			 0);
	assert_true(lsr->n_sites >= 1);
	assert_true(lsr->sites[0]->local);
	assert_string_equal(lsr->sites[0]->health, "up");
	assert_true(lsr->sites[0]->fsid[0] != '\0');
	for (size_t i = 1; i < lsr->n_sites; i++)
		assert_false(lsr->sites[i]->local);
	Imgstore__V1__GetSiteStatusRequest gs = IMGSTORE__V1__GET_SITE_STATUS_REQUEST__INIT;
	Imgstore__V1__Site *site = NULL;
	gs.name = lsr->sites[0]->name;
	assert_int_equal(CALL(reader, "SiteService", "GetSiteStatus", &gs, site, &site), 0);
	assert_string_equal(site->name, lsr->sites[0]->name);
	assert_true(site->local);
	free_msg(site);
	site = NULL;
	free_msg(lsr);
	gs.name = "nowhere";
	assert_true(CALL(reader, "SiteService", "GetSiteStatus", &gs, site, &site) < 0);
	assert_int_equal(ims_client_last_code(reader), IMS_RPC_NOT_FOUND);
	assert_non_null(strstr(ims_error_last(), "no site 'nowhere'"));

	assert_true(delete_image(reader, &s, true) < 0);
	assert_int_equal(delete_image(C, &s, true), 0);
	ims_client_close(none);
	ims_client_close(wrong);
	ims_client_close(reader);
	ims_client_close(host);
}

/* test_leases_and_attach: a host registers itself, never another. */
static void lease_register_host(ims_client *h)
{
	Imgstore__V1__RegisterHostRequest rh = IMGSTORE__V1__REGISTER_HOST_REQUEST__INIT;
	Imgstore__V1__Host *host = NULL;
	rh.name = "sandbox-host";
	rh.address = "192.0.2.10";
	assert_int_equal(CALL(h, "HostService", "RegisterHost", &rh, host, &host), 0);
	free_msg(host);
	rh.name = "sandbox-host2"; /* another host's record: refused */
	assert_int_equal(CALL(h, "HostService", "RegisterHost", &rh, host, &host), -EPERM);
	assert_int_equal(ims_client_last_code(h), IMS_RPC_PERMISSION_DENIED);
	rh.name = "bad host!";
	assert_int_equal(CALL(h, "HostService", "RegisterHost", &rh, host, &host), -EINVAL);
}

/* test_leases_and_attach: a lease is its host's alone to renew and release (an admin's too);
 * a reader sees it without its id. */
static void leases_of_two_hosts(Imgstore__V1__ImageSpec *s, ims_client *h, ims_client *h2)
{
	ims_client *reader = client_as(reader_tok, false);
	Imgstore__V1__AcquireLeaseRequest al = IMGSTORE__V1__ACQUIRE_LEASE_REQUEST__INIT;
	Imgstore__V1__Lease *l1 = NULL, *l2 = NULL;
	al.image = s;
	al.host = "sandbox-host2"; /* taking a lease in another host's name */
	al.ttl_seconds = 30;
	assert_int_equal(CALL(h, "HostService", "AcquireLease", &al, lease, &l1), -EPERM);
	assert_int_equal(ims_client_last_code(h), IMS_RPC_PERMISSION_DENIED);
	assert_non_null(
		strstr(ims_error_last(),
		       "caller 'sandbox-host' may not take a lease for host 'sandbox-host2'"));
	al.host = "sandbox-host";
	assert_int_equal(CALL(h, "HostService", "AcquireLease", &al, lease, &l1), 0);
	assert_string_equal(l1->host, "sandbox-host");
	assert_true(l1->expires_unix - l1->acquired_unix == 30);
	al.host = "sandbox-host2"; /* the other host, for itself: the image is taken */
	assert_true(CALL(h2, "HostService", "AcquireLease", &al, lease, &l2) < 0);
	assert_int_equal(ims_client_last_code(h2), IMS_RPC_FAILED_PRECONDITION);
	assert_non_null(strstr(ims_error_last(), "leased by host 'sandbox-host'"));

	/* the other host may neither renew nor release it, even knowing its id */
	Imgstore__V1__RenewLeaseRequest rn = IMGSTORE__V1__RENEW_LEASE_REQUEST__INIT;
	rn.lease_id = l1->id;
	rn.ttl_seconds = 3600;
	assert_int_equal(CALL(h2, "HostService", "RenewLease", &rn, lease, &l2), -EPERM);
	assert_int_equal(ims_client_last_code(h2), IMS_RPC_PERMISSION_DENIED);
	assert_int_equal(release_lease(h2, l1->id), -EPERM);
	assert_int_equal(ims_client_last_code(h2), IMS_RPC_PERMISSION_DENIED);

	/* unchanged: still the first host's, same expiry; a reader sees it without its id */
	Imgstore__V1__ListLeasesRequest ll = IMGSTORE__V1__LIST_LEASES_REQUEST__INIT;
	Imgstore__V1__ListLeasesResponse *leases = NULL;
	ll.image = s;
	assert_int_equal(
		CALL(reader, "HostService", "ListLeases", &ll, list_leases_response, &leases), 0);
	assert_int_equal(leases->n_leases, 1);
	assert_string_equal(leases->leases[0]->host, "sandbox-host");
	assert_string_equal(leases->leases[0]->id, "");
	assert_int_equal(leases->leases[0]->expires_unix, l1->expires_unix);
	free_msg(leases);

	rn.ttl_seconds = 300;
	assert_int_equal(CALL(h, "HostService", "RenewLease", &rn, lease, &l2), 0);
	assert_true(l2->expires_unix >= l1->expires_unix + 200);
	free_msg(l2);

	assert_int_equal(CALL(h, "HostService", "ListLeases", &ll, list_leases_response, &leases),
			 0);
	assert_int_equal(leases->n_leases, 1);
	assert_string_equal(leases->leases[0]->host, "sandbox-host");
	assert_string_equal(leases->leases[0]->id, l1->id); /* a host sees ids */
	free_msg(leases);

	assert_int_equal(release_lease(h, l1->id), 0);
	assert_true(release_lease(h, l1->id) < 0);
	assert_int_equal(ims_client_last_code(h), IMS_RPC_NOT_FOUND);
	al.host = "sandbox-host2"; /* free now */
	assert_int_equal(CALL(h2, "HostService", "AcquireLease", &al, lease, &l2), 0);
	/* an admin acts for any host: an operator releasing a dead host's lease */
	assert_int_equal(release_lease(C, l2->id), 0);
	free_msg(l2);
	free_msg(l1);
	ims_client_close(reader);
}

/* test_leases_and_attach: a lease a failover broke (ims_lease_break, as its lease step does)
 * is refused on renewal with the reason FENCED, to its own host (another learns nothing); an
 * unknown lease is still not_found without a reason. */
static void fenced_lease_renewal(Imgstore__V1__ImageSpec *s, ims_client *h, ims_client *h2)
{
	Imgstore__V1__AcquireLeaseRequest al = IMGSTORE__V1__ACQUIRE_LEASE_REQUEST__INIT;
	Imgstore__V1__RenewLeaseRequest rn = IMGSTORE__V1__RENEW_LEASE_REQUEST__INIT;
	Imgstore__V1__Lease *l = NULL, *l2 = NULL;
	unsigned broken = 0;
	al.image = s;
	al.host = "sandbox-host";
	al.ttl_seconds = 30;
	assert_int_equal(CALL(h, "HostService", "AcquireLease", &al, lease, &l), 0);
	ims_site *site = itest_site('A'); /* the daemon's records pool: its default, rbd */
	assert_int_equal(ims_lease_break(&broken, site, "rbd", s->pool, s->image), 0);
	ims_site_close(site);
	assert_int_equal(broken, 1);

	rn.lease_id = l->id;
	rn.ttl_seconds = 30;
	assert_int_equal(CALL(h2, "HostService", "RenewLease", &rn, lease, &l2), -EPERM);
	assert_string_equal(ims_client_last_reason(h2), "");
	assert_true(CALL(h, "HostService", "RenewLease", &rn, lease, &l2) < 0);
	assert_int_equal(ims_client_last_code(h), IMS_RPC_FAILED_PRECONDITION);
	assert_string_equal(ims_client_last_reason(h), IMS_RPC_REASON_FENCED);
	assert_non_null(strstr(ims_error_last(), "is stale: a failover of 'rbd/"));
	assert_non_null(strstr(ims_error_last(), "fenced host 'sandbox-host'"));
	/* nothing came back: no lease to release, the image is free to lease again */
	assert_int_equal(release_lease(h, l->id), -ENOENT);
	assert_int_equal(CALL(h, "HostService", "AcquireLease", &al, lease, &l2), 0);
	assert_int_equal(release_lease(h, l2->id), 0);
	free_msg(l2);
	l2 = NULL;

	rn.lease_id = "lease-000000000000000000000000";
	assert_int_equal(CALL(h, "HostService", "RenewLease", &rn, lease, &l2), -ENOENT);
	assert_int_equal(ims_client_last_code(h), IMS_RPC_NOT_FOUND);
	assert_string_equal(ims_client_last_reason(h), "");
	free_msg(l);
}

/* test_leases_and_attach: attach-info for a host from its [host] section; none for a host
 * without one, nor for a host asking with another's identity. */
static void attach_info_of_hosts(Imgstore__V1__ImageSpec *s, ims_client *h, ims_client *h2)
{
	Imgstore__V1__GetAttachInfoRequest ai = IMGSTORE__V1__GET_ATTACH_INFO_REQUEST__INIT;
	Imgstore__V1__GetAttachInfoResponse *info = NULL;
	ai.image = s;
	/* sandbox-host has a [host] section: its own cephx user and libvirt secret */
	const char *secret = getenv("IMGSTORE_HOST_SECRET_UUID");
	assert_non_null(secret);
	assert_int_equal(
		CALL(h, "HostService", "GetAttachInfo", &ai, get_attach_info_response, &info), 0);
	assert_string_equal(info->host, "sandbox-host");
	assert_string_equal(info->client_id, "sandbox-host");
	assert_string_equal(info->secret_uuid, secret);
	assert_non_null(strstr(info->libvirt_disk_xml, "<auth username='sandbox-host'>"));
	char want[256];
	snprintf(want, sizeof(want), "uuid='%s'", secret);
	assert_non_null(strstr(info->libvirt_disk_xml, want));
	free_msg(info);
	/* sandbox-host2 has none: refused, never the daemon's own cephx user */
	assert_true(CALL(h2, "HostService", "GetAttachInfo", &ai, get_attach_info_response, &info) <
		    0);
	assert_int_equal(ims_client_last_code(h2), IMS_RPC_FAILED_PRECONDITION);
	assert_non_null(
		strstr(ims_error_last(),
		       "no cephx user and libvirt secret are known for host 'sandbox-host2'"));
	/* a host may not ask with another host's identity */
	ai.host = "sandbox-host2";
	assert_int_equal(
		CALL(h, "HostService", "GetAttachInfo", &ai, get_attach_info_response, &info),
		-EPERM);
	assert_int_equal(ims_client_last_code(h), IMS_RPC_PERMISSION_DENIED);
}

/* test_leases_and_attach: an admin names the host, or gets a clear refusal; a cephx user and
 * secret given are used as they are, whoever asks. */
static void attach_info_named(Imgstore__V1__ImageSpec *s, const char *name, ims_client *h2)
{
	Imgstore__V1__GetAttachInfoRequest ai = IMGSTORE__V1__GET_ATTACH_INFO_REQUEST__INIT;
	Imgstore__V1__GetAttachInfoResponse *info = NULL;
	char want[256];
	ai.image = s;
	/* an admin names the host, or gets a clear refusal */
	ai.host = NULL;
	assert_true(CALL(C, "HostService", "GetAttachInfo", &ai, get_attach_info_response, &info) <
		    0);
	assert_int_equal(ims_client_last_code(C), IMS_RPC_FAILED_PRECONDITION);
	assert_non_null(strstr(ims_error_last(), "attach-info needs a host"));
	ai.host = "sandbox-host";
	assert_int_equal(
		CALL(C, "HostService", "GetAttachInfo", &ai, get_attach_info_response, &info), 0);
	assert_string_equal(info->client_id, "sandbox-host");
	free_msg(info);
	ai.host = "bad host!";
	assert_int_equal(
		CALL(C, "HostService", "GetAttachInfo", &ai, get_attach_info_response, &info),
		-EINVAL);
	ai.host = NULL;
	ai.client_id = "bad user!";
	ai.secret_uuid = "5e0f0d4c-0000-4000-8000-000000000001";
	assert_int_equal(
		CALL(C, "HostService", "GetAttachInfo", &ai, get_attach_info_response, &info),
		-EINVAL);
	/* both given: used as they are, whoever asks */
	ai.client_id = "hv9";
	ai.secret_uuid = "5e0f0d4c-0000-4000-8000-000000000001";
	assert_int_equal(
		CALL(h2, "HostService", "GetAttachInfo", &ai, get_attach_info_response, &info), 0);
	assert_string_equal(info->host, "");
	assert_string_equal(info->client_id, "hv9");
	assert_true(info->n_monitors >= 1);
	char mon[80];
	snprintf(mon, sizeof(mon), "%s:", itest_site_addr('A'));
	assert_non_null(strstr(info->monitors[0], mon));
	assert_string_equal(info->site, "a");
	assert_int_equal(strlen(info->cluster_fsid), 36);
	snprintf(want, sizeof(want), "<source protocol='rbd' name='rbd/%s'>", name);
	assert_non_null(strstr(info->libvirt_disk_xml, want));
	assert_non_null(
		strstr(info->libvirt_disk_xml, "uuid='5e0f0d4c-0000-4000-8000-000000000001'"));
	snprintf(want, sizeof(want), "<host name='%s' port='", itest_site_addr('A'));
	assert_non_null(strstr(info->libvirt_disk_xml, want));
	free_msg(info);
}

static void test_leases_and_attach(void **state)
{
	(void)state;
	const char *name = itest_name("lease");
	Imgstore__V1__ImageSpec s;
	rpc_create(&s, name, MiB);
	/* two hypervisors, each with its own host token (names sandbox-host, sandbox-host2) */
	ims_client *h = client_as(host_tok, false), *h2 = client_as(host2_tok, false);
	lease_register_host(h);
	leases_of_two_hosts(&s, h, h2);
	fenced_lease_renewal(&s, h, h2);
	attach_info_of_hosts(&s, h, h2);
	attach_info_named(&s, name, h2);
	ims_client_close(h2);
	ims_client_close(h);
}

/* Bytes that are not a request: clear errors, and the daemon keeps serving. */
static void test_malformed_requests(void **state)
{
	(void)state;
	const char *url = getenv("IMGSTORE_SERVER_A"), *ca = getenv("IMGSTORE_CA_FILE");
	char big[512];
	snprintf(big, sizeof(big), "%s/big.bin", itest_dir());
	assert_int_equal(itest_sh("head -c 5242880 /dev/urandom > '%s'", big), 0);
#define CURL_STATUS(extra, path)                                                                   \
	itest_sh("test \"$(curl -s -o /dev/null -w '%%{http_code}' --cacert '%s' -H "              \
		 "'Authorization: Bearer %s' " extra " '%s%s')\" = %s",                            \
		 ca, admin_tok, url, path, expect)
	const char *expect;
	expect = "400"; /* random bytes */
	assert_int_equal(
		CURL_STATUS("-H 'Content-Type: application/proto' --data-binary @/etc/hostname",
			    "/imgstore.v1.ImageService/GetImage"),
		0);
	expect = "415"; /* wrong content type */
	assert_int_equal(CURL_STATUS("-H 'Content-Type: text/plain' --data-binary '{}'",
				     "/imgstore.v1.ImageService/GetImage"),
			 0);
	expect = "400"; /* JSON that is not JSON */
	assert_int_equal(CURL_STATUS("-H 'Content-Type: application/json' --data-binary '{\"name'",
				     "/imgstore.v1.ImageService/GetImage"),
			 0);
	expect = "404"; /* unknown method */
	assert_int_equal(CURL_STATUS("-H 'Content-Type: application/proto' --data-binary ''",
				     "/imgstore.v1.ImageService/Frobnicate"),
			 0);
	char big_arg[600];
	snprintf(big_arg, sizeof(big_arg), "-H 'Content-Type: application/proto' --data-binary @%s",
		 big);
	expect = "413"; /* oversized, refused before decoding */
	int st = itest_sh("test \"$(curl -s -o /dev/null -w '%%{http_code}' --cacert '%s' -H "
			  "'Authorization: Bearer %s' "
			  "%s '%s/imgstore.v1.ImageService/GetImage')\" = 413 || test \"$(curl -s "
			  "-o /dev/null -w "
			  "'%%{http_code}' --cacert '%s' -H 'Authorization: Bearer %s' %s "
			  "'%s/imgstore.v1.ImageService/GetImage')\" = 429",
			  ca, admin_tok, big_arg, url, ca, admin_tok, big_arg, url);
	assert_int_equal(st, 0);
	/* the error body is JSON with a code */
	assert_int_equal(
		itest_sh("curl -s --cacert '%s' -H 'Authorization: Bearer %s' -H 'Content-Type: "
			 "application/proto' "
			 "--data-binary @/etc/hostname '%s/imgstore.v1.ImageService/GetImage' | "
			 "jq -e '.code == \"invalid_argument\" and (.message | length > 0)' "
			 ">/dev/null",
			 ca, admin_tok, url),
		0);
	/* still serving */
	Imgstore__V1__ListImagesRequest ls = IMGSTORE__V1__LIST_IMAGES_REQUEST__INIT;
	Imgstore__V1__ListImagesResponse *list = NULL;
	assert_int_equal(CALL(C, "ImageService", "ListImages", &ls, list_images_response, &list),
			 0);
	free_msg(list);
	/* health and metrics need no token */
	assert_int_equal(itest_sh("curl -sf --cacert '%s' '%s/healthz' | grep -q ok", ca, url), 0);
	assert_int_equal(itest_sh("curl -sf --cacert '%s' '%s/metrics' | grep -q "
				  "'^imgstore_operations{state=\"running\"}'",
				  ca, url),
			 0);
	/* every mutating call left an audit line, with no token in it */
	char audit[512];
	snprintf(audit, sizeof(audit), "%s/site-a/log/audit.log", getenv("IMGSTORE_SANDBOX"));
	assert_int_equal(itest_sh("grep -q 'method=ImageService/CreateImage' '%s'", audit), 0);
	assert_int_equal(itest_sh("grep -qF -- '%s' '%s'", admin_tok, audit), 1);
}

/* SIGKILL in the middle of an import, restart: the operation shows failed, no image carries
 * the name, and the temporary image is removed once its watch lapses. */
static void test_daemon_killed_during_import(void **state)
{
	(void)state;
	char big[512];
	assert_non_null(getenv("IMGSTORE_IMPORT_DIR"));
	snprintf(big, sizeof(big), "%s/%s.raw", getenv("IMGSTORE_IMPORT_DIR"),
		 itest_name("killed"));
	assert_int_equal(itest_sh("head -c %d /dev/urandom > '%s'", 400 << 20, big), 0);
	const char *name = itest_name("killed");
	Imgstore__V1__ImageSpec s;
	spec(&s, name, NULL);
	Imgstore__V1__ImportImageRequest im = IMGSTORE__V1__IMPORT_IMAGE_REQUEST__INIT;
	im.image = &s;
	im.source_path = big;
	Imgstore__V1__Operation *op = NULL;
	assert_int_equal(CALL(C, "ImageService", "ImportImage", &im, operation, &op), 0);
	/* wait until it has written something */
	for (int i = 0; i < 200; i++) {
		Imgstore__V1__GetOperationRequest g = IMGSTORE__V1__GET_OPERATION_REQUEST__INIT;
		Imgstore__V1__Operation *cur = NULL;
		g.id = op->id;
		assert_int_equal(CALL(C, "OperationService", "GetOperation", &g, operation, &cur),
				 0);
		bool started = cur->bytes_done > 0;
		assert_true(cur->state <= IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_RUNNING);
		free_msg(cur);
		if (started)
			break;
		usleep(20000);
	}
	const char *src = getenv("IMS_SOURCE_DIR"), *sb = getenv("IMGSTORE_SANDBOX");
	assert_int_equal(itest_sh("'%s/scripts/sandbox' stop-daemon '%s' a --kill", src, sb), 0);
	assert_int_equal(itest_sh("'%s/scripts/sandbox' start-daemon '%s' a", src, sb), 0);
	ims_client_close(C);
	C = client_as(admin_tok, false);

	Imgstore__V1__GetOperationRequest g = IMGSTORE__V1__GET_OPERATION_REQUEST__INIT;
	Imgstore__V1__Operation *after = NULL;
	g.id = op->id;
	assert_int_equal(CALL(C, "OperationService", "GetOperation", &g, operation, &after), 0);
	assert_int_equal(after->state, IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_FAILED);
	assert_non_null(strstr(after->error, "interrupted"));
	free_msg(after);
	free_msg(op);
	assert_null(get_image(C, name));
	assert_int_equal(ims_client_last_code(C), IMS_RPC_NOT_FOUND);
	/* the daemon removes the temporary within a minute or so (watch lapse + its 30 s tick) */
	int left = -1;
	for (int i = 0; i < 60 && left != 0; i++) {
		left = itest_tmp_images_for(name);
		if (left)
			sleep(2);
	}
	assert_int_equal(left, 0);
	unlink(big);
}

/* ---- slow calls hold no request thread ---------------------------------------------------- */

#define NWAIT 32

typedef struct {
	const char *id;
	int result;
	int state;
} op_waiter;

static unsigned waits_returned;
static pthread_mutex_t waits_lock = PTHREAD_MUTEX_INITIALIZER;

static void *wait_long(void *arg)
{
	op_waiter *w = arg;
	ims_client_opts o = IMS_CLIENT_OPTS_INIT;
	ims_client *c = NULL;

	o.server = getenv("IMGSTORE_SERVER_A");
	o.token = reader_tok;
	o.ca_file = getenv("IMGSTORE_CA_FILE");
	o.timeout_ms = 90000;
	w->result = ims_client_open(&c, &o);
	if (w->result == 0) {
		Imgstore__V1__WaitOperationRequest q = IMGSTORE__V1__WAIT_OPERATION_REQUEST__INIT;
		Imgstore__V1__Operation *op = NULL;
		q.id = (char *)w->id;
		q.timeout_ms = 60000;
		w->result = CALL(c, "OperationService", "WaitOperation", &q, operation, &op);
		if (w->result == 0)
			w->state = op->state;
		free_msg(op);
	}
	ims_client_close(c);
	pthread_mutex_lock(&waits_lock);
	waits_returned++;
	pthread_mutex_unlock(&waits_lock);
	return NULL;
}

static unsigned returned_waits(void)
{
	pthread_mutex_lock(&waits_lock);
	unsigned n = waits_returned;
	pthread_mutex_unlock(&waits_lock);
	return n;
}

/* The record of an operation of another daemon, written straight into RADOS: waits on it poll
 * it until it ends, which is when the test says so. */
static void put_foreign_op(const char *id, int state)
{
	long t = (long)time(NULL);
	assert_int_equal(
		itest_sh("rados -c '%s' -p rbd setomapval imgstore.operations %s "
			 "'{\"id\":\"%s\",\"kind\":\"import\",\"target\":\"rbd/elsewhere\","
			 "\"site\":\"a\",\"state\":%d,\"bytes_done\":0,\"bytes_total\":0,"
			 "\"error\":\"\",\"created\":%ld,\"started\":%ld,\"finished\":%ld,"
			 "\"owner\":\"elsewhere#1\",\"heartbeat\":%ld,\"result_path\":\"\","
			 "\"result\":\"\"}'",
			 getenv("CEPH_CONF_A"), id, id, state, t, t, state > 2 ? t : 0, t),
		0);
}

/* A gauge of site a's /metrics, -1 if it cannot be read */
static long gauge(const char *metric)
{
	char cmd[512], line[128];
	long v = -1;
	snprintf(cmd, sizeof(cmd),
		 "curl -sf --max-time 5 --unix-socket '%s' http://localhost/metrics | "
		 "sed -n 's/^%s //p'",
		 getenv("IMGSTORE_SOCKET_A"), metric);
	FILE *p = popen(cmd, "r");
	assert_non_null(p);
	if (fgets(line, sizeof(line), p))
		v = strtol(line, NULL, 10);
	pclose(p);
	return v;
}

/*
 * 32 WaitOperation calls of a reader (60 s timeout) on an operation that ends only when the
 * test ends it hold no request thread (the daemon has 8): RenewLease is answered while every
 * one of them is still outstanding, and they all return once it ends.
 */
static void test_waits_leave_renew_lease(void **state)
{
	(void)state;
	const char *name = itest_name("slowcalls");
	char id[40];
	pthread_t th[NWAIT];
	op_waiter w[NWAIT];

	snprintf(id, sizeof(id), "op-%08lx%08x", (unsigned long)time(NULL), (unsigned)getpid());
	Imgstore__V1__ImageSpec s;
	rpc_create(&s, name, MiB);
	ims_client *h = client_as(host_tok, false);
	Imgstore__V1__RegisterHostRequest rh = IMGSTORE__V1__REGISTER_HOST_REQUEST__INIT;
	Imgstore__V1__Host *host = NULL;
	rh.name = "sandbox-host"; /* the host token's own name: a host acts for itself only */
	rh.address = "192.0.2.11";
	assert_int_equal(CALL(h, "HostService", "RegisterHost", &rh, host, &host), 0);
	free_msg(host);
	Imgstore__V1__AcquireLeaseRequest al = IMGSTORE__V1__ACQUIRE_LEASE_REQUEST__INIT;
	Imgstore__V1__Lease *lease = NULL, *renewed = NULL;
	al.image = &s;
	al.host = "sandbox-host";
	al.ttl_seconds = 30;
	assert_int_equal(CALL(h, "HostService", "AcquireLease", &al, lease, &lease), 0);

	put_foreign_op(id, 2 /* running */);
	waits_returned = 0;
	for (int i = 0; i < NWAIT; i++) {
		w[i] = (op_waiter){.id = id, .result = 1};
		assert_int_equal(pthread_create(&th[i], NULL, wait_long, &w[i]), 0);
	}
	/* every wait in the daemon at once (the bound only guards against a hang) */
	long n = -1;
	for (int i = 0; i < 150 && n != NWAIT; i++) {
		usleep(200000);
		n = gauge("imgstore_rpc_in_flight");
	}
	assert_int_equal(n, NWAIT);
	assert_int_equal(gauge("imgstore_rpc_slow_calls"), NWAIT);

	Imgstore__V1__RenewLeaseRequest rn = IMGSTORE__V1__RENEW_LEASE_REQUEST__INIT;
	rn.lease_id = lease->id;
	rn.ttl_seconds = 60;
	assert_int_equal(CALL(h, "HostService", "RenewLease", &rn, lease, &renewed), 0);
	assert_true(renewed->expires_unix >= lease->expires_unix);
	/* answered while all the waits were still outstanding */
	assert_int_equal(returned_waits(), 0);
	assert_int_equal(gauge("imgstore_rpc_in_flight"), NWAIT);

	put_foreign_op(id, 3 /* succeeded */);
	for (int i = 0; i < NWAIT; i++) {
		pthread_join(th[i], NULL);
		assert_int_equal(w[i].result, 0);
		assert_int_equal(w[i].state,
				 IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_SUCCEEDED);
	}
	assert_int_equal(itest_sh("rados -c '%s' -p rbd rmomapkey imgstore.operations %s",
				  getenv("CEPH_CONF_A"), id),
			 0);

	assert_int_equal(release_lease(h, lease->id), 0);
	free_msg(renewed);
	free_msg(lease);
	ims_client_close(h);
	assert_int_equal(delete_image(C, &s, false), 0);
}

/* The daemon removes the temporaries of interrupted imports in every RBD pool, not only its
 * default one: an orphan in another pool is gone once a restarted daemon has started. */
static void test_daemon_cleans_tmp_in_every_pool(void **state)
{
	(void)state;
	const char *conf = getenv("CEPH_CONF_A");
	char pool[64];
	snprintf(pool, sizeof(pool), "tmpclean-%d", (int)getpid());
	assert_int_equal(
		itest_sh("timeout 60 ceph -c '%s' osd pool create '%s' 8 >/dev/null 2>&1 && "
			 "rbd -c '%s' pool init '%s'",
			 conf, pool, conf, pool),
		0);
	assert_int_equal(
		itest_sh("rbd -c '%s' create --size 4M '%s/.imgstore-tmp-orphan'", conf, pool), 0);
	const char *src = getenv("IMS_SOURCE_DIR"), *sb = getenv("IMGSTORE_SANDBOX");
	assert_int_equal(itest_sh("'%s/scripts/sandbox' stop-daemon '%s' a", src, sb), 0);
	assert_int_equal(itest_sh("'%s/scripts/sandbox' start-daemon '%s' a", src, sb), 0);
	ims_client_close(C);
	C = client_as(admin_tok, false);
	int left = itest_sh("rbd -c '%s' ls '%s' | grep -q '^\\.imgstore-tmp-orphan$'", conf,
			    pool) == 0;
	itest_sh("timeout 60 ceph -c '%s' osd pool rm '%s' '%s' --yes-i-really-really-mean-it "
		 ">/dev/null 2>&1",
		 conf, pool, pool);
	assert_int_equal(left, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_image_methods),
		cmocka_unit_test(test_import_export),
		cmocka_unit_test(test_paths_refused),
		cmocka_unit_test(test_roles),
		cmocka_unit_test(test_leases_and_attach),
		cmocka_unit_test(test_malformed_requests),
		cmocka_unit_test(test_waits_leave_renew_lease),
		cmocka_unit_test(test_daemon_killed_during_import),
		cmocka_unit_test(test_daemon_cleans_tmp_in_every_pool),
	};
	return cmocka_run_group_tests_name("daemon", tests, setup, teardown);
}
