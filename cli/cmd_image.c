/*
 * cli/cmd_image.c: imgstore image VERB: create, import, export, clone, ls, info, resize,
 * rename, rm, flatten, tag, untag, attach-info.
 */
#include "cli/cli.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "common/units.h"

#include "imgstore/v1/host.pb-c.h"
#include "imgstore/v1/image.pb-c.h"
#include "imgstore/v1/operation.pb-c.h"

#define IMAGE_SVC     "imgstore.v1.ImageService/"
#define IMAGE_SERVICE (&imgstore__v1__image_service__descriptor)

/* An export is written in runs of this size; runs of zeros are left as holes. */
#define ZERO_RUN (64u << 10)

static const char *const import_formats[] = {"auto", "raw",  "qcow2", "vmdk",
					     "vdi",  "vhdx", "vpc",   NULL};
static const char *const export_formats[] = {"raw", "qcow2", "vmdk", NULL};
static const char *const attach_formats[] = {"libvirt", "table", "json", NULL};
static const char *const encryptions[] = {"luks2", NULL};

/* --features N and --data-pool POOL, shared by create, import and clone */
static int features_and_pool(ims_cli *cli, const ims_cli_args *a, uint64_t *features,
			     const char **data_pool)
{
	const char *v;
	int r;

	*features = 0;
	*data_pool = "";
	if ((v = ims_cli_opt_value(cli, a, "features")) &&
	    (r = ims_cli_arg_uint(cli, features, "features", v, UINT64_MAX)))
		return r;
	if ((v = ims_cli_opt_value(cli, a, "data-pool"))) {
		if ((r = ims_cli_arg_name(cli, IMS_NAME_POOL, "--data-pool", v)))
			return r;
		*data_pool = v;
	}
	return 0;
}

static int call_image(ims_cli *cli, const char *method, const void *req)
{
	return ims_cli_call_show(cli, method, req, &imgstore__v1__image__descriptor);
}

/* ---- create ---- */

static const ims_cli_opt create_opts[] = {
	{"size", "SIZE", "size of the image (required): 10G, 512M, 1T"},
	{"features", "N",
	 "RBD feature bits (default: layering, exclusive-lock, object-map, fast-diff, "
	 "deep-flatten)"},
	{"data-pool", "POOL", "pool for the data objects (an erasure-coded pool)"},
	{"encryption", "luks2", "encrypt at rest: LUKS2, AES-256, a key of its own (SECURITY.md)"},
	{NULL, NULL, NULL},
};

static int image_create(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__CreateImageRequest req = IMGSTORE__V1__CREATE_IMAGE_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	ims_spec spec;
	int r;

	if ((r = ims_cli_arg_image(cli, &spec, &ms, a->pos[0], false, false)) ||
	    (r = ims_cli_opt_size(cli, &req.size, a, "size", true)) ||
	    (r = features_and_pool(cli, a, &req.features, (const char **)&req.data_pool)) ||
	    (r = ims_cli_opt_choice(cli, &req.encryption, a, "encryption", encryptions, "")))
		return r;
	req.image = &ms;
	return call_image(cli, IMAGE_SVC "CreateImage", &req);
}

/* ---- import ---- */

static const ims_cli_opt import_opts[] = {
	{"format", "auto|raw|qcow2|vmdk|vdi|vhdx|vpc",
	 "format of FILE (default auto: found from its bytes; vpc is VHD)"},
	{"upload", NULL,
	 "send the bytes even when the daemon could read FILE itself (Unix socket)"},
	IMS_CLI_OPT_NO_WAIT,
	{"features", "N", "RBD feature bits of the new image"},
	{"data-pool", "POOL", "pool for the data objects"},
	{"encryption", "luks2", "encrypt the new image at rest (as image create)"},
	{"passphrase-file", "PATH",
	 "FILE is a LUKS-encrypted qcow2: its passphrase is the bytes of PATH (as qemu's "
	 "secret,file= reads them: a trailing newline counts). Without --encryption luks2 the "
	 "image is stored decrypted, unencrypted at rest"},
	{NULL, NULL, NULL},
};

#define PASSPHRASE_MAX (64u << 10)

/* The bytes of --passphrase-file PATH into @p out (free with explicit_bzero() and free()). */
static int read_passphrase(ims_cli *cli, ProtobufCBinaryData *out, const char *path)
{
	struct stat st;
	uint8_t *buf = NULL;
	size_t got = 0;
	int fd, r = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = ims_cli_fail(cli, "cannot open the passphrase file '%s': %s", path,
				 strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode) || st.st_size <= 0 || (uint64_t)st.st_size > PASSPHRASE_MAX) {
		r = ims_cli_fail(cli,
				 "the passphrase file '%s' must be a regular file of 1 byte to "
				 "64 KiB",
				 path);
		goto out;
	}
	buf = malloc((size_t)st.st_size);
	if (!buf) {
		r = ims_cli_fail(cli, "out of memory");
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = ims_cli_fail(cli, "cannot read the passphrase file '%s': %s", path,
					 n < 0 ? strerror(errno) : "it shrank");
			goto out;
		}
		got += (size_t)n;
	}
	out->data = buf;
	out->len = got;
	buf = NULL;
out:
	if (buf) {
		explicit_bzero(buf, (size_t)st.st_size);
		free(buf);
	}
	if (fd >= 0)
		close(fd);
	return r;
}

/* pread() until @p len bytes or the end of the file. @returns bytes read or -errno. */
static ssize_t read_full(int fd, void *buf, size_t len, off_t off)
{
	size_t got = 0;

	while (got < len) {
		ssize_t n = pread(fd, (char *)buf + got, len - got, off + (off_t)got);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

/* The bytes in order, one chunk at a time: for a daemon that imports only a complete upload. */
static int upload_in_order(ims_cli *cli, int fd, uint64_t size, const char *path, const char *label,
			   const Imgstore__V1__BeginUploadResponse *b)
{
	ims_cli_progress prog;
	uint64_t off = 0;
	size_t chunk;
	char *buf = NULL;
	int r = 0;

	chunk = IMS_CLI_CHUNK_MAX;
	if (b->max_chunk_bytes && b->max_chunk_bytes < chunk)
		chunk = (size_t)b->max_chunk_bytes;
	buf = malloc(chunk);
	if (!buf)
		return ims_cli_fail(cli, "out of memory");
	ims_cli_progress_init(&prog, cli, label);
	ims_cli_arm_sigint(cli, true);
	while (off < size) {
		Imgstore__V1__UploadChunkRequest creq = IMGSTORE__V1__UPLOAD_CHUNK_REQUEST__INIT;
		Imgstore__V1__UploadChunkResponse *cresp = NULL;
		size_t want = size - off < chunk ? (size_t)(size - off) : chunk;
		ssize_t n;

		if (cli->interrupted && *cli->interrupted) {
			ims_cli_progress_end(&prog);
			r = ims_cli_fail(cli, "%s cancelled", label);
			goto out;
		}
		n = read_full(fd, buf, want, (off_t)off);
		if (n < 0 || (size_t)n < want) {
			ims_cli_progress_end(&prog);
			r = ims_cli_fail(cli, "cannot read '%s' at byte %llu: %s", path,
					 (unsigned long long)off,
					 n < 0 ? strerror((int)-n) : "the file got shorter");
			goto out;
		}
		creq.upload_id = b->upload_id;
		creq.offset = off;
		creq.data.data = (uint8_t *)buf;
		creq.data.len = want;
		if ((r = ims_cli_call(cli, IMAGE_SVC "UploadChunk", &creq,
				      &imgstore__v1__upload_chunk_response__descriptor, &cresp))) {
			ims_cli_progress_end(&prog);
			goto out;
		}
		off += want;
		protobuf_c_message_free_unpacked(&cresp->base, NULL);
		ims_cli_progress_update(&prog, 0, off, size);
	}
	ims_cli_progress_end(&prog);
out:
	ims_cli_arm_sigint(cli, false);
	free(buf);
	return r;
}

/*
 * The streamed upload: UPLOAD_STREAMS connections, over TLS and over a Unix socket, each with
 * one chunk in flight, all within the daemon's window past the first byte it lacks. Memory:
 * one chunk per connection.
 */
#define UPLOAD_STREAMS 4

typedef struct upload_state upload_state;

typedef struct {
	upload_state *up;
	ims_cli_transport t;
	pthread_t thread;
	uint64_t inflight; /* offset of the chunk being sent; UINT64_MAX: none */
} upload_stream;

struct upload_state {
	int fd;
	const char *path, *id;
	uint64_t size, window;
	size_t chunk;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t next; /* the next chunk to send */
	uint64_t sent; /* bytes the daemon took */
	unsigned running;
	int err; /* the first failure */
	char msg[600];
	upload_stream streams[UPLOAD_STREAMS];
	unsigned nstreams;
};

/* The first byte the daemon may lack: the lowest chunk in flight, or the next to send. */
static uint64_t upload_low_locked(const upload_state *u)
{
	uint64_t low = u->next;
	for (unsigned i = 0; i < u->nstreams; i++)
		if (u->streams[i].inflight < low)
			low = u->streams[i].inflight;
	return low;
}

static void upload_fail_locked(upload_state *u, int r, const char *msg)
{
	if (!u->err) {
		u->err = r;
		snprintf(u->msg, sizeof(u->msg), "%s", msg);
	}
	pthread_cond_broadcast(&u->cond);
}

static int upload_send(upload_state *u, upload_stream *s, uint8_t *buf, uint64_t off, size_t want,
		       char *msg, size_t msglen)
{
	Imgstore__V1__UploadChunkRequest creq = IMGSTORE__V1__UPLOAD_CHUNK_REQUEST__INIT;
	ProtobufCMessage *cresp = NULL;
	ssize_t n = read_full(u->fd, buf, want, (off_t)off);

	if (n < 0 || (size_t)n < want) {
		snprintf(msg, msglen, "cannot read '%s' at byte %llu: %s", u->path,
			 (unsigned long long)off,
			 n < 0 ? strerror((int)-n) : "the file got shorter");
		return n < 0 ? (int)n : -EIO;
	}
	creq.upload_id = (char *)u->id;
	creq.offset = off;
	creq.data.data = buf;
	creq.data.len = want;
	ims_error_clear();
	int r = s->t.call(s->t.ctx, IMAGE_SVC "UploadChunk", &creq.base,
			  &imgstore__v1__upload_chunk_response__descriptor, &cresp);
	if (r < 0) {
		snprintf(msg, msglen, "%s", ims_error_last());
		return r;
	}
	protobuf_c_message_free_unpacked(cresp, NULL);
	return 0;
}

static void *upload_stream_run(void *arg)
{
	upload_stream *s = arg;
	upload_state *u = s->up;
	uint8_t *buf = malloc(u->chunk);
	char msg[sizeof(u->msg)];

	pthread_mutex_lock(&u->lock);
	if (!buf)
		upload_fail_locked(u, -ENOMEM, "out of memory");
	for (;;) {
		size_t want = u->size - u->next < u->chunk ? (size_t)(u->size - u->next) : u->chunk;
		if (u->err || u->next >= u->size)
			break;
		if (u->next + want > upload_low_locked(u) + u->window) {
			pthread_cond_wait(&u->cond, &u->lock);
			continue;
		}
		uint64_t off = u->next;
		u->next += want;
		s->inflight = off;
		pthread_mutex_unlock(&u->lock);
		int r = upload_send(u, s, buf, off, want, msg, sizeof(msg));
		pthread_mutex_lock(&u->lock);
		s->inflight = UINT64_MAX;
		if (r < 0)
			upload_fail_locked(u, r, msg);
		else
			u->sent += want;
		pthread_cond_broadcast(&u->cond);
	}
	u->running--;
	pthread_cond_broadcast(&u->cond);
	pthread_mutex_unlock(&u->lock);
	free(buf);
	return NULL;
}

/* Wait for the streams, showing progress; Ctrl-C stops them. */
static void upload_watch(ims_cli *cli, upload_state *u, const char *label)
{
	ims_cli_progress prog;

	ims_cli_progress_init(&prog, cli, label);
	ims_cli_arm_sigint(cli, true);
	pthread_mutex_lock(&u->lock);
	while (u->running) {
		struct timespec at;
		clock_gettime(CLOCK_REALTIME, &at);
		at.tv_nsec += 200000000L;
		if (at.tv_nsec >= 1000000000L) {
			at.tv_sec++;
			at.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&u->cond, &u->lock, &at);
		uint64_t sent = u->sent;
		if (cli->interrupted && *cli->interrupted)
			upload_fail_locked(u, -ECANCELED, "cancelled");
		pthread_mutex_unlock(&u->lock);
		ims_cli_progress_update(&prog, 0, sent, u->size);
		pthread_mutex_lock(&u->lock);
	}
	pthread_mutex_unlock(&u->lock);
	ims_cli_progress_end(&prog);
	ims_cli_arm_sigint(cli, false);
}

/* @returns 0, or a negative errno with @p msg saying why (nothing printed). */
static int upload_streamed(ims_cli *cli, int fd, uint64_t size, const char *path, const char *label,
			   const Imgstore__V1__BeginUploadResponse *b, char *msg, size_t msglen)
{
	upload_state *u = calloc(1, sizeof(*u));
	int r = 0;

	if (!u) {
		snprintf(msg, msglen, "out of memory");
		return -ENOMEM;
	}
	u->fd = fd;
	u->path = path;
	u->id = b->upload_id;
	u->size = size;
	u->chunk = IMS_CLI_CHUNK_MAX;
	if (b->max_chunk_bytes && b->max_chunk_bytes < u->chunk)
		u->chunk = (size_t)b->max_chunk_bytes;
	u->window = b->window_bytes > u->chunk ? b->window_bytes : u->chunk;
	pthread_mutex_init(&u->lock, NULL);
	pthread_cond_init(&u->cond, NULL);
	/* four connections over a Unix socket too: with one, the import waited for the bytes
	 * (the next chunk read from the file only once the last was answered), 0.6 to 1.4 s of
	 * a 3 s import (docs/BENCHMARKS.md) */
	for (unsigned i = 0; i < UPLOAD_STREAMS; i++) {
		upload_stream *s = &u->streams[i];
		s->up = u;
		s->inflight = UINT64_MAX;
		ims_error_clear();
		if ((r = ims_cli_connect_another(cli, &s->t)) < 0)
			break;
		u->nstreams++;
	}
	if (!u->nstreams) {
		snprintf(msg, msglen, "%s", ims_error_last());
		goto out;
	}
	r = 0;
	pthread_mutex_lock(&u->lock);
	for (unsigned i = 0; i < u->nstreams; i++) {
		if (pthread_create(&u->streams[i].thread, NULL, upload_stream_run,
				   &u->streams[i]) != 0) {
			upload_fail_locked(u, -EAGAIN, "cannot start the upload's threads");
			break;
		}
		u->running++;
	}
	unsigned started = u->running;
	pthread_mutex_unlock(&u->lock);
	upload_watch(cli, u, label);
	for (unsigned i = 0; i < started; i++)
		pthread_join(u->streams[i].thread, NULL);
	r = u->err;
	if (r < 0)
		snprintf(msg, msglen, "%s", u->msg);
out:
	for (unsigned i = 0; i < u->nstreams; i++)
		u->streams[i].t.close(u->streams[i].t.ctx);
	pthread_mutex_destroy(&u->lock);
	pthread_cond_destroy(&u->cond);
	free(u);
	return r;
}

/*
 * A streamed upload failed: the import's own failure says more (a corrupt image, the
 * upload refused since); else the operation is cancelled and the upload's error shown.
 */
static int streamed_failed(ims_cli *cli, const Imgstore__V1__Operation *op, int err,
			   const char *msg, const char *label)
{
	Imgstore__V1__WaitOperationRequest wreq = IMGSTORE__V1__WAIT_OPERATION_REQUEST__INIT;
	Imgstore__V1__CancelOperationRequest creq = IMGSTORE__V1__CANCEL_OPERATION_REQUEST__INIT;
	Imgstore__V1__Operation *now = NULL;
	int r;

	wreq.id = op->id;
	wreq.timeout_ms = err == -ECANCELED ? 0 : 2000;
	if (ims_cli_call(cli, "imgstore.v1.OperationService/WaitOperation", &wreq,
			 &imgstore__v1__operation__descriptor, &now) == 0 &&
	    now->state == IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_FAILED && now->error &&
	    *now->error) {
		r = ims_cli_fail(cli, "%s", now->error);
		goto out;
	}
	if (now)
		protobuf_c_message_free_unpacked(&now->base, NULL);
	now = NULL;
	creq.id = op->id;
	ims_cli_call(cli, "imgstore.v1.OperationService/CancelOperation", &creq,
		     &imgstore__v1__operation__descriptor, &now);
	if (err == -ECANCELED)
		r = ims_cli_fail(cli, "%s cancelled", label);
	else
		r = ims_cli_fail(cli, "%s: %s", label, msg);
out:
	if (now)
		protobuf_c_message_free_unpacked(&now->base, NULL);
	return r;
}

/*
 * Send FILE's bytes and import them into @p req's image: while they arrive when the daemon
 * can (several chunks in flight), else upload first and import after.
 */
static int upload_and_import(ims_cli *cli, int fd, uint64_t size, const char *path,
			     const char *label, Imgstore__V1__ImportImageRequest *req,
			     Imgstore__V1__Operation **op)
{
	Imgstore__V1__BeginUploadRequest breq = IMGSTORE__V1__BEGIN_UPLOAD_REQUEST__INIT;
	Imgstore__V1__BeginUploadResponse *b = NULL;
	char msg[600];
	int r;

	breq.size = size;
	if ((r = ims_cli_call(cli, IMAGE_SVC "BeginUpload", &breq,
			      &imgstore__v1__begin_upload_response__descriptor, &b)))
		return r;
	req->upload_id = b->upload_id;
	if (!b->import_while_uploading) {
		if ((r = upload_in_order(cli, fd, size, path, label, b)) == 0)
			r = ims_cli_call(cli, IMAGE_SVC "ImportImage", req,
					 &imgstore__v1__operation__descriptor, op);
		goto out;
	}
	req->while_uploading = 1;
	if ((r = ims_cli_call(cli, IMAGE_SVC "ImportImage", req,
			      &imgstore__v1__operation__descriptor, op)))
		goto out;
	int err = upload_streamed(cli, fd, size, path, label, b, msg, sizeof(msg));
	if (err < 0) {
		r = streamed_failed(cli, *op, err, msg, label);
		protobuf_c_message_free_unpacked(&(*op)->base, NULL);
		*op = NULL;
	}
out:
	req->upload_id = (char *)"";
	protobuf_c_message_free_unpacked(&b->base, NULL);
	return r;
}

static int image_import(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__ImportImageRequest req = IMGSTORE__V1__IMPORT_IMAGE_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	Imgstore__V1__Operation *op = NULL;
	ims_cli_wait_opts w = {.no_wait = ims_cli_opt_flag(cli, a, "no-wait")};
	const char *file = a->pos[0], *v;
	char *real = NULL;
	char label[820], specbuf[800];
	struct stat st;
	uint64_t size;
	ims_spec spec;
	bool upload;
	int fd = -1, r;

	if ((r = ims_cli_arg_spec(cli, &spec, a->pos[1], false, false)))
		return r;
	if ((r = ims_cli_opt_choice(cli, &req.format, a, "format", import_formats, "")))
		return r;
	if ((r = features_and_pool(cli, a, &req.features, (const char **)&req.data_pool)) ||
	    (r = ims_cli_opt_choice(cli, &req.encryption, a, "encryption", encryptions, "")))
		return r;
	if ((v = ims_cli_opt_value(cli, a, "passphrase-file")) &&
	    (r = read_passphrase(cli, &req.passphrase, v)))
		return r;
	upload = ims_cli_opt_flag(cli, a, "upload") || !ims_cli_server_is_unix(cli->server);

	fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0 || fstat(fd, &st) < 0) {
		r = ims_cli_fail(cli, "cannot open '%s': %s", file, strerror(errno));
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		r = ims_cli_fail(cli, "'%s' is a directory", file);
		goto out;
	}
	if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
	} else {
		off_t end = lseek(fd, 0, SEEK_END);
		if (end < 0) {
			r = ims_cli_fail(cli, "cannot find the size of '%s': %s", file,
					 strerror(errno));
			goto out;
		}
		size = (uint64_t)end;
	}
	ims_spec_format(specbuf, sizeof(specbuf), &spec);
	ims_cli_spec_to_msg(&ms, &spec);
	req.image = &ms;
	if (!upload) {
		bool denied;
		real = realpath(file, NULL);
		if (!real) {
			r = ims_cli_fail(cli, "cannot resolve '%s': %s", file, strerror(errno));
			goto out;
		}
		req.source_path = real;
		/* the file this CLI opened: a daemon that sees another one there (a private /tmp)
		 * refuses, and the bytes are sent instead */
		req.source_dev = (uint64_t)st.st_dev;
		req.source_ino = (uint64_t)st.st_ino;
		r = ims_cli_call_denied(cli, IMAGE_SVC "ImportImage", &req,
					&imgstore__v1__operation__descriptor, &op, &denied);
		if (r && !denied)
			goto out;
		/* not in the daemon's [server] import_dirs, or not the same file as the daemon sees
		 * it: send the bytes instead */
		upload = denied;
		req.source_path = (char *)"";
		req.source_dev = req.source_ino = 0;
	}
	if (upload) {
		snprintf(label, sizeof(label), "upload %s", specbuf);
		if ((r = upload_and_import(cli, fd, size, file, label, &req, &op)))
			goto out;
	}
	r = ims_cli_finish_op(cli, op, &w);
out:
	if (fd >= 0)
		close(fd);
	free(real);
	if (req.passphrase.data) {
		explicit_bzero(req.passphrase.data, req.passphrase.len);
		free(req.passphrase.data);
	}
	return r;
}

/* ---- export ---- */

static const ims_cli_opt export_opts[] = {
	{"format", "raw|qcow2|vmdk",
	 "format of FILE (default raw, sparse; vmdk: streamOptimized, for VMware)"},
	{"no-wait", NULL,
	 "print the operation id and return (Unix socket only: the daemon writes FILE)"},
	{NULL, NULL, NULL},
};

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return false;
	return true;
}

/* Write @p len bytes at @p off, leaving runs of zeros as holes. @returns 0 or -errno. */
static int write_sparse(int fd, const uint8_t *data, size_t len, uint64_t off)
{
	for (size_t i = 0; i < len; i += ZERO_RUN) {
		size_t n = len - i < ZERO_RUN ? len - i : ZERO_RUN;
		size_t done = 0;
		if (all_zero(data + i, n))
			continue;
		while (done < n) {
			ssize_t w = pwrite(fd, data + i + done, n - done, (off_t)(off + i + done));
			if (w < 0) {
				if (errno == EINTR)
					continue;
				return -errno;
			}
			done += (size_t)w;
		}
	}
	return 0;
}

/* Publish @p partial as @p file, never over an existing file. @returns 0 or -errno. */
static int publish(const char *partial, const char *file)
{
	if (renameat2(AT_FDCWD, partial, AT_FDCWD, file, RENAME_NOREPLACE) == 0)
		return 0;
	if (errno != EINVAL && errno != ENOSYS)
		return -errno;
	/* a file system without RENAME_NOREPLACE: link() refuses an existing name too */
	if (link(partial, file) < 0)
		return -errno;
	unlink(partial);
	return 0;
}

static int sync_dir_of(const char *file)
{
	char dir[PATH_MAX];
	const char *slash = strrchr(file, '/');
	int fd;

	if (!slash)
		snprintf(dir, sizeof(dir), ".");
	else if (slash == file)
		snprintf(dir, sizeof(dir), "/");
	else
		snprintf(dir, sizeof(dir), "%.*s", (int)(slash - file), file);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	fsync(fd);
	close(fd);
	return 0;
}

#define STREAM_IDLE_S 300 /* a streamed export that makes no byte for this long is given up */

/*
 * A streamed export fetched by DOWNLOAD_STREAMS connections, each with one chunk in flight
 * (a daemon that says in_any_order: it counts the ranges it sent). The file is cut into
 * windows of one chunk (IMS_CLI_CHUNK_MAX); a connection takes the next window and fetches it
 * to its end (answers may be shorter: data stops where a run of zeros starts), each request
 * with within_length so that no answer runs into another window. The end is known from the
 * first answer with eof; windows past it are answered eof at once.
 */
#define DOWNLOAD_STREAMS 4

typedef struct download_state download_state;

typedef struct {
	download_state *dl;
	ims_cli_transport t;
	pthread_t thread;
} download_stream;

struct download_state {
	int fd;
	const char *op_id, *partial;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t next;	   /* the next window starts here */
	uint64_t total;	   /* the export's size, UINT64_MAX until an answer says eof */
	uint64_t done;	   /* bytes fetched (data and zeros) */
	time_t idle_since; /* when a byte last came */
	unsigned running;
	int err; /* the first failure */
	char msg[600];
	/* the first call that failed: fatal unless the download turns out complete without it
	 * (a window past the end, asked after the export had ended and left the daemon) */
	int call_err;
	char call_msg[600];
	download_stream streams[DOWNLOAD_STREAMS];
	unsigned nstreams;
};

static void download_fail_locked(download_state *d, int r, const char *msg)
{
	if (!d->err) {
		d->err = r;
		snprintf(d->msg, sizeof(d->msg), "%s", msg);
	}
	pthread_cond_broadcast(&d->cond);
}

/* Fetch [pos, end) (a window) on @p s. @returns 0, 1 (a call failed) or a negative errno; @p msg
 * says why. */
static int download_window(download_stream *s, uint64_t pos, uint64_t end, char *msg, size_t msglen)
{
	download_state *d = s->dl;
	unsigned pause_ms = 0;
	int e;

	while (pos < end) {
		Imgstore__V1__DownloadChunkRequest req = IMGSTORE__V1__DOWNLOAD_CHUNK_REQUEST__INIT;
		Imgstore__V1__DownloadChunkResponse *resp = NULL;
		pthread_mutex_lock(&d->lock);
		int err = d->err;
		bool idle = time(NULL) - d->idle_since > STREAM_IDLE_S;
		pthread_mutex_unlock(&d->lock);
		if (err)
			return 0; /* another connection failed: it says why */
		req.operation_id = (char *)d->op_id;
		req.offset = pos;
		req.length = end - pos;
		req.skip_zeros = true;
		req.within_length = true;
		ims_error_clear();
		int r = s->t.call(s->t.ctx, IMAGE_SVC "DownloadChunk", &req.base,
				  &imgstore__v1__download_chunk_response__descriptor,
				  (ProtobufCMessage **)&resp);
		if (r < 0) {
			snprintf(msg, msglen, "%s", ims_error_last());
			return 1; /* the caller decides */
		}
		uint64_t n = resp->data.len + resp->zero_bytes;
		if ((resp->zero_bytes && resp->data.len) || n > end - pos ||
		    (resp->eof && n && resp->total_bytes != pos + n) ||
		    (resp->eof && !n && resp->total_bytes > pos)) {
			snprintf(msg, msglen, "the server sent more than asked for at byte %llu",
				 (unsigned long long)pos);
			protobuf_c_message_free_unpacked(&resp->base, NULL);
			return -EPROTO;
		}
		if (!n && !resp->eof && idle) {
			snprintf(msg, msglen, "the server sent no data at byte %llu before the end",
				 (unsigned long long)pos);
			protobuf_c_message_free_unpacked(&resp->base, NULL);
			return -ETIMEDOUT;
		}
		if (!n && !resp->eof) {
			/* not made yet, and the daemon did not wait for it: ask again after a
			 * pause, 5 ms doubling up to 200 ms */
			protobuf_c_message_free_unpacked(&resp->base, NULL);
			pause_ms = pause_ms ? (pause_ms >= 100 ? 200 : pause_ms * 2) : 5;
			struct timespec ts = {0, (long)pause_ms * 1000000L};
			nanosleep(&ts, NULL);
			continue;
		}
		pause_ms = 0;
		if ((e = write_sparse(d->fd, resp->data.data, resp->data.len, pos)) < 0) {
			snprintf(msg, msglen, "cannot write '%s': %s", d->partial, strerror(-e));
			protobuf_c_message_free_unpacked(&resp->base, NULL);
			return e;
		}
		pos += n;
		bool eof = resp->eof;
		uint64_t total = resp->total_bytes;
		protobuf_c_message_free_unpacked(&resp->base, NULL);
		pthread_mutex_lock(&d->lock);
		d->done += n;
		if (n)
			d->idle_since = time(NULL);
		if (eof && d->total != UINT64_MAX && d->total != total) {
			snprintf(msg, msglen, "the server gave two sizes: %llu and %llu bytes",
				 (unsigned long long)d->total, (unsigned long long)total);
			pthread_mutex_unlock(&d->lock);
			return -EPROTO;
		}
		if (eof)
			d->total = total;
		pthread_cond_broadcast(&d->cond);
		pthread_mutex_unlock(&d->lock);
		if (eof)
			break;
	}
	return 0;
}

static void *download_stream_run(void *arg)
{
	download_stream *s = arg;
	download_state *d = s->dl;
	char msg[sizeof(d->msg)];

	pthread_mutex_lock(&d->lock);
	while (!d->err && d->next < d->total) {
		uint64_t pos = d->next;
		uint64_t end = (pos / IMS_CLI_CHUNK_MAX + 1) * IMS_CLI_CHUNK_MAX;
		d->next = end;
		pthread_mutex_unlock(&d->lock);
		int r = download_window(s, pos, end, msg, sizeof(msg));
		pthread_mutex_lock(&d->lock);
		if (r < 0)
			download_fail_locked(d, r, msg);
		if (r == 1) { /* the call failed: this connection stops, the others go on */
			if (!d->call_err) {
				d->call_err = -EIO;
				snprintf(d->call_msg, sizeof(d->call_msg), "%s", msg);
			}
			break;
		}
	}
	d->running--;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	return NULL;
}

/*
 * Fetch a streamed export from @p from on (the bytes before it written already) on several
 * connections; Ctrl-C stops them. @returns 0 with *@p total the export's size, or the exit
 * status (printed).
 */
static int download_parallel(ims_cli *cli, int fd, const char *op_id, const char *partial,
			     uint64_t from, ims_cli_progress *prog, uint64_t *total)
{
	download_state *d = calloc(1, sizeof(*d));
	int r = 0;

	if (!d)
		return ims_cli_fail(cli, "out of memory");
	d->fd = fd;
	d->op_id = op_id;
	d->partial = partial;
	d->next = from;
	d->done = from;
	d->total = UINT64_MAX;
	d->idle_since = time(NULL);
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->cond, NULL);
	for (unsigned i = 0; i < DOWNLOAD_STREAMS; i++) {
		download_stream *s = &d->streams[i];
		s->dl = d;
		ims_error_clear();
		if (ims_cli_connect_another(cli, &s->t) < 0)
			break;
		d->nstreams++;
	}
	if (!d->nstreams) {
		r = ims_cli_fail(cli, "%s", ims_error_last());
		goto out;
	}
	pthread_mutex_lock(&d->lock);
	for (unsigned i = 0; i < d->nstreams; i++) {
		if (pthread_create(&d->streams[i].thread, NULL, download_stream_run,
				   &d->streams[i]) != 0) {
			download_fail_locked(d, -EAGAIN, "cannot start the download's threads");
			break;
		}
		d->running++;
	}
	unsigned started = d->running;
	while (d->running) {
		struct timespec at;
		clock_gettime(CLOCK_REALTIME, &at);
		at.tv_nsec += 200000000L;
		if (at.tv_nsec >= 1000000000L) {
			at.tv_sec++;
			at.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&d->cond, &d->lock, &at);
		if (cli->interrupted && *cli->interrupted)
			download_fail_locked(d, -ECANCELED, "cancelled");
		uint64_t done = d->done, size = d->total == UINT64_MAX ? 0 : d->total;
		pthread_mutex_unlock(&d->lock);
		ims_cli_progress_update(prog, 0, done, size);
		pthread_mutex_lock(&d->lock);
	}
	pthread_mutex_unlock(&d->lock);
	for (unsigned i = 0; i < started; i++)
		pthread_join(d->streams[i].thread, NULL);
	if (d->err)
		r = ims_cli_fail(cli, "%s", d->msg);
	else if (d->call_err && (d->total == UINT64_MAX || d->done != d->total))
		r = ims_cli_fail(cli, "%s", d->call_msg);
	else if (d->total == UINT64_MAX || d->done != d->total)
		r = ims_cli_fail(cli, "the download ended at byte %llu of %llu",
				 (unsigned long long)d->done, (unsigned long long)d->total);
	else
		*total = d->total;
out:
	for (unsigned i = 0; i < d->nstreams; i++)
		d->streams[i].t.close(d->streams[i].t.ctx);
	pthread_mutex_destroy(&d->lock);
	pthread_cond_destroy(&d->cond);
	free(d);
	return r;
}

/* Download the export @p op_id to @p file; @p streamed: while it runs (chunks may be empty). */
static int download(ims_cli *cli, const char *op_id, bool streamed, const char *file,
		    const char *label, uint64_t *written)
{
	time_t idle_since = time(NULL);
	unsigned pause_ms = 0;
	Imgstore__V1__DownloadChunkResponse *resp = NULL;
	ims_cli_progress prog;
	char partial[PATH_MAX];
	uint64_t off = 0, total = 0;
	bool eof = false, in_any_order = false;
	int fd, r = 0, e;

	if ((size_t)snprintf(partial, sizeof(partial), "%s.partial", file) >= sizeof(partial))
		return ims_cli_fail(cli, "'%s': the name is too long", file);
	fd = open(partial, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return ims_cli_fail(cli, "cannot create '%s': %s", partial, strerror(errno));
	ims_cli_progress_init(&prog, cli, label);
	ims_cli_arm_sigint(cli, true);
	while (!eof) {
		Imgstore__V1__DownloadChunkRequest req = IMGSTORE__V1__DOWNLOAD_CHUNK_REQUEST__INIT;

		if (cli->interrupted && *cli->interrupted) {
			r = ims_cli_fail(cli, "%s cancelled", label);
			goto out;
		}
		req.operation_id = (char *)op_id;
		req.offset = off;
		req.length = IMS_CLI_CHUNK_MAX;
		req.skip_zeros = streamed; /* runs of zeros come as a count: holes in FILE */
		req.within_length = streamed;
		if ((r = ims_cli_call(cli, IMAGE_SVC "DownloadChunk", &req,
				      &imgstore__v1__download_chunk_response__descriptor, &resp)))
			goto out;
		if (resp->data.len > IMS_CLI_CHUNK_MAX || (resp->zero_bytes && resp->data.len) ||
		    (resp->total_bytes &&
		     off + resp->data.len + resp->zero_bytes > resp->total_bytes)) {
			r = ims_cli_fail(cli, "the server sent more than asked for at byte %llu",
					 (unsigned long long)off);
			goto out;
		}
		if (resp->data.len == 0 && resp->zero_bytes == 0 && !resp->eof &&
		    (!streamed || time(NULL) - idle_since > STREAM_IDLE_S)) {
			r = ims_cli_fail(cli, "the server sent no data at byte %llu before the end",
					 (unsigned long long)off);
			goto out;
		}
		if (resp->data.len || resp->zero_bytes) {
			idle_since = time(NULL);
			pause_ms = 0;
		} else if (!resp->eof) {
			/* the daemon had no bytes and did not wait for them (its waiting threads
			 * are taken): ask again after a pause, 5 ms doubling up to 200 ms */
			pause_ms = pause_ms ? (pause_ms >= 100 ? 200 : pause_ms * 2) : 5;
			struct timespec ts = {0, (long)pause_ms * 1000000L};
			nanosleep(&ts, NULL);
		}
		if ((e = write_sparse(fd, resp->data.data, resp->data.len, off)) < 0) {
			r = ims_cli_fail(cli, "cannot write '%s': %s", partial, strerror(-e));
			goto out;
		}
		off += resp->data.len + resp->zero_bytes;
		total = resp->total_bytes;
		eof = resp->eof;
		in_any_order = resp->in_any_order;
		protobuf_c_message_free_unpacked(&resp->base, NULL);
		resp = NULL;
		ims_cli_progress_update(&prog, 0, off, total);
		if (streamed && in_any_order && !eof) {
			/* the daemon takes several chunks at once: fetch the rest so */
			if ((r = download_parallel(cli, fd, op_id, partial, off, &prog, &total)))
				goto out;
			off = total;
			break;
		}
	}
	if (total && off != total) {
		r = ims_cli_fail(cli, "the download ended at byte %llu of %llu",
				 (unsigned long long)off, (unsigned long long)total);
		goto out;
	}
	/* holes at the end need the length set */
	if (ftruncate(fd, (off_t)off) < 0 || fsync(fd) < 0) {
		r = ims_cli_fail(cli, "cannot write '%s': %s", partial, strerror(errno));
		goto out;
	}
	if (close(fd) < 0) {
		fd = -1;
		r = ims_cli_fail(cli, "cannot write '%s': %s", partial, strerror(errno));
		goto out;
	}
	fd = -1;
	if ((e = publish(partial, file)) < 0) {
		r = ims_cli_fail(cli, "cannot rename '%s' to '%s': %s", partial, file,
				 strerror(-e));
		goto out;
	}
	sync_dir_of(file);
	*written = off;
out:
	ims_cli_arm_sigint(cli, false);
	ims_cli_progress_end(&prog);
	if (resp)
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	if (fd >= 0)
		close(fd);
	if (r)
		unlink(partial);
	return r;
}

static int image_export(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__ExportImageRequest req = IMGSTORE__V1__EXPORT_IMAGE_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	Imgstore__V1__Operation *op = NULL;
	ims_cli_wait_opts w = {.no_wait = ims_cli_opt_flag(cli, a, "no-wait")};
	const char *file = a->pos[1];
	char dest[PATH_MAX], specbuf[800], label[820], line[PATH_MAX + 900], size[32];
	struct stat st;
	uint64_t written = 0;
	ims_spec spec;
	bool local = ims_cli_server_is_unix(cli->server);
	int r;

	if ((r = ims_cli_arg_spec(cli, &spec, a->pos[0], true, false)))
		return r;
	if ((r = ims_cli_opt_choice(cli, &req.format, a, "format", export_formats, "")))
		return r;
	if (!*file)
		return ims_cli_usage(cli, "empty FILE");
	if (w.no_wait && !local)
		return ims_cli_usage(cli, "--no-wait needs a Unix socket server: over the network "
					  "the CLI downloads FILE once the export is done");
	if (lstat(file, &st) == 0)
		return ims_cli_fail(cli, "'%s' exists; export never writes over a file", file);
	if (local) {
		/* the daemon writes the file: it needs the absolute name */
		if (file[0] == '/') {
			snprintf(dest, sizeof(dest), "%s", file);
		} else {
			char cwd[PATH_MAX];
			if (!getcwd(cwd, sizeof(cwd)))
				return ims_cli_fail(cli, "cannot find the current directory: %s",
						    strerror(errno));
			if ((size_t)snprintf(dest, sizeof(dest), "%s/%s", cwd, file) >=
			    sizeof(dest))
				return ims_cli_fail(cli, "'%s': the name is too long", file);
		}
		req.dest_path = dest;
		/* the directory this CLI sees: a daemon that sees another one there (a private
		 * /tmp) refuses, and the export is downloaded instead */
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s", dest);
		char *slash = strrchr(dir, '/');
		slash[slash == dir ? 1 : 0] = '\0';
		if (stat(dir, &st) == 0) {
			req.dest_dir_dev = (uint64_t)st.st_dev;
			req.dest_dir_ino = (uint64_t)st.st_ino;
		}
	}
	ims_spec_format(specbuf, sizeof(specbuf), &spec);
	ims_cli_spec_to_msg(&ms, &spec);
	req.image = &ms;
	if (local && !w.no_wait) {
		bool denied;
		r = ims_cli_call_denied(cli, IMAGE_SVC "ExportImage", &req,
					&imgstore__v1__operation__descriptor, &op, &denied);
		if (r == 0)
			return ims_cli_finish_op(cli, op, &w);
		if (!denied)
			return r;
		/* not in the daemon's [server] export_dirs, or another directory as the daemon sees
		 * it: export to its spool, download */
		local = false;
		req.dest_path = (char *)"";
		req.dest_dir_dev = req.dest_dir_ino = 0;
	}
	/* a download: streamed while the export runs where the daemon can (raw, vmdk, qcow2) */
	req.stream = !local;
	if ((r = ims_cli_call(cli, IMAGE_SVC "ExportImage", &req,
			      &imgstore__v1__operation__descriptor, &op)))
		return r;
	if (local)
		return ims_cli_finish_op(cli, op, &w);

	snprintf(label, sizeof(label), "download %s", specbuf);
	if (op->streamed) {
		r = download(cli, op->id, true, file, label, &written);
		if (r == 0) { /* how it ended: the daemon ends it once the last byte was read */
			r = ims_cli_wait(cli, &op, 0);
		} else { /* the export would wait for this client until its stall time */
			Imgstore__V1__CancelOperationRequest creq =
				IMGSTORE__V1__CANCEL_OPERATION_REQUEST__INIT;
			Imgstore__V1__Operation *now = NULL;
			creq.id = op->id;
			if (ims_cli_call(cli, "imgstore.v1.OperationService/CancelOperation", &creq,
					 &imgstore__v1__operation__descriptor, &now) == 0)
				protobuf_c_message_free_unpacked(&now->base, NULL);
		}
	} else {
		r = ims_cli_wait(cli, &op, 0);
		if (r == 0)
			r = download(cli, op->id, false, file, label, &written);
	}
	if (cli->format == IMS_CLI_FORMAT_JSON) {
		/* the document says how the operation ended, also when that is a failure */
		if (r == 0 || op->state == IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_FAILED ||
		    op->state == IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_CANCELLED)
			ims_cli_print_message(cli, &op->base);
	} else if (r == 0) {
		snprintf(line, sizeof(line), "export %s: succeeded, %s written to %s", specbuf,
			 ims_format_size(size, sizeof(size), written), file);
		ims_cli_print_line(cli, line);
	}
	protobuf_c_message_free_unpacked(&op->base, NULL);
	return r;
}

/* ---- clone ---- */

static const ims_cli_opt clone_opts[] = {
	{"features", "N", "RBD feature bits of the clone"},
	{"data-pool", "POOL", "pool for the clone's data objects"},
	{NULL, NULL, NULL},
};

static int image_clone(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__CloneImageRequest req = IMGSTORE__V1__CLONE_IMAGE_REQUEST__INIT;
	Imgstore__V1__ImageSpec mp, mc;
	ims_spec parent, clone;
	int r;

	if ((r = ims_cli_arg_image(cli, &parent, &mp, a->pos[0], true, true)) ||
	    (r = ims_cli_arg_image(cli, &clone, &mc, a->pos[1], false, false)) ||
	    (r = features_and_pool(cli, a, &req.features, (const char **)&req.data_pool)))
		return r;
	req.parent = &mp;
	req.clone = &mc;
	return call_image(cli, IMAGE_SVC "CloneImage", &req);
}

/* ---- ls, info ---- */

static const char *summary_size(char *buf, size_t len, const ProtobufCMessage *m)
{
	const Imgstore__V1__ImageSummary *s = (const Imgstore__V1__ImageSummary *)m;

	if (!s->in_catalog && s->size == 0)
		return "-";
	return ims_format_size(buf, len, s->size);
}

/* A cold image (pushed to object storage) shows where it went instead of where it came from. */
static const char *summary_source(char *buf, size_t len, const ProtobufCMessage *m)
{
	const Imgstore__V1__ImageSummary *s = (const Imgstore__V1__ImageSummary *)m;
	bool cold = s->cold_target && s->cold_target[0];
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(
		m->descriptor, cold ? "cold_target" : "source");
	char tmp[1024];

	if (!cold)
		return ims_cli_format_field(buf, len, m, f); /* escaped like every other cell */
	snprintf(buf, len, "cold:%s", ims_cli_format_field(tmp, sizeof(tmp), m, f));
	return buf;
}

static const ims_cli_column image_columns[] = {
	{"NAME", "name", NULL},	    {"SIZE", NULL, summary_size}, {"SOURCE", NULL, summary_source},
	{"PARENT", "parent", NULL}, {"TAGS", "tags", NULL},	  {NULL, NULL, NULL},
};

/* ---- resize, rename, rm, flatten ---- */

static const ims_cli_opt resize_opts[] = {
	{"size", "SIZE", "the new size (required)"},
	{"allow-shrink", NULL, "allow a smaller size: the data past it is lost"},
	{NULL, NULL, NULL},
};

static int image_resize(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__ResizeImageRequest req = IMGSTORE__V1__RESIZE_IMAGE_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	ims_spec spec;
	int r;

	if ((r = ims_cli_arg_image(cli, &spec, &ms, a->pos[0], false, false)) ||
	    (r = ims_cli_opt_size(cli, &req.size, a, "size", true)))
		return r;
	req.allow_shrink = ims_cli_opt_flag(cli, a, "allow-shrink");
	req.image = &ms;
	return call_image(cli, IMAGE_SVC "ResizeImage", &req);
}

static int image_rename(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__RenameImageRequest req = IMGSTORE__V1__RENAME_IMAGE_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	const char *newname = a->pos[1];
	ims_spec spec, dst;
	int r;

	if ((r = ims_cli_arg_image(cli, &spec, &ms, a->pos[0], false, false)))
		return r;
	if (strchr(newname, '/')) {
		/* POOL/NEWNAME is accepted when it stays in the pool */
		if ((r = ims_cli_arg_spec(cli, &dst, newname, false, false)))
			return r;
		if (strcmp(dst.pool, spec.pool))
			return ims_cli_usage(
				cli, "an image is renamed within its pool ('%s'), not to '%s'",
				spec.pool, dst.pool);
		newname = strchr(newname, '/') + 1;
	}
	if ((r = ims_cli_arg_name(cli, IMS_NAME_IMAGE, "NEWNAME", newname)))
		return r;
	req.image = &ms;
	req.new_name = (char *)newname;
	return call_image(cli, IMAGE_SVC "RenameImage", &req);
}

static const ims_cli_opt rm_opts[] = {
	{"purge", NULL, "delete at once, snapshots included, instead of moving to the trash"},
	{"trash-delay", "DURATION", "how long the image stays in the trash (default 24h)"},
	{"shred", NULL,
	 "encrypted image: destroy its key here and on its replicas' sites, then purge"},
	{NULL, NULL, NULL},
};

static int image_rm(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__DeleteImageRequest req = IMGSTORE__V1__DELETE_IMAGE_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	const char *delay = ims_cli_opt_value(cli, a, "trash-delay");
	ims_spec spec;
	int r;

	if ((r = ims_cli_arg_image(cli, &spec, &ms, a->pos[0], false, false)))
		return r;
	req.purge = ims_cli_opt_flag(cli, a, "purge");
	req.shred = ims_cli_opt_flag(cli, a, "shred");
	if (delay) {
		if (req.shred)
			return ims_cli_usage(cli, "--shred and --trash-delay exclude each other");
		if (req.purge)
			return ims_cli_usage(cli, "--purge and --trash-delay exclude each other");
		if ((r = ims_cli_arg_duration(cli, &req.trash_delay_seconds, "trash-delay", delay,
					      UINT32_MAX)))
			return r;
	}
	req.image = &ms;
	if (!req.shred)
		return ims_cli_call_empty(cli, IMAGE_SVC "DeleteImage", &req,
					  &imgstore__v1__delete_image_response__descriptor);
	Imgstore__V1__DeleteImageResponse *resp = NULL;
	if ((r = ims_cli_call(cli, IMAGE_SVC "DeleteImage", &req,
			      &imgstore__v1__delete_image_response__descriptor, (void *)&resp)))
		return r;
	if (cli->format == IMS_CLI_FORMAT_JSON)
		ims_cli_print_message(cli, &resp->base);
	else
		fprintf(cli->out,
			"shredded '%s/%s': its key is destroyed here and on its replicas; %u cold "
			"cop%s on the tier unreadable too\n",
			spec.pool, spec.image, resp->cold_copies_shredded,
			resp->cold_copies_shredded == 1 ? "y" : "ies");
	protobuf_c_message_free_unpacked(&resp->base, NULL);
	return 0;
}

/* ---- tag, untag ---- */

static int check_tag_key(ims_cli *cli, const char *key, size_t n, const char *arg)
{
	if (n == 0)
		return ims_cli_usage(cli, "'%s': empty tag key", arg);
	if (n > 128)
		return ims_cli_usage(cli, "'%s': a tag key is at most 128 bytes", arg);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)key[i];
		if (c <= 0x20 || c == 0x7f)
			return ims_cli_usage(
				cli, "'%s': a tag key has no spaces or control characters", arg);
	}
	return 0;
}

/*
 * One call for each KEY=VALUE (@p keys: the KEYs) or, @p keys NULL, each KEY after the image;
 * the image is printed as the last call left it.
 */
static int tag_calls(ims_cli *cli, const ims_cli_args *a, Imgstore__V1__ImageSpec *ms,
		     char (*keys)[129])
{
	Imgstore__V1__SetImageTagRequest set = IMGSTORE__V1__SET_IMAGE_TAG_REQUEST__INIT;
	Imgstore__V1__RemoveImageTagRequest rm = IMGSTORE__V1__REMOVE_IMAGE_TAG_REQUEST__INIT;
	const char *method = keys ? IMAGE_SVC "SetImageTag" : IMAGE_SVC "RemoveImageTag";
	const void *req = keys ? (const void *)&set : (const void *)&rm;
	Imgstore__V1__Image *img = NULL;
	int r;

	set.image = rm.image = ms;
	for (unsigned i = 1; i < a->npos; i++) {
		if (keys) {
			set.key = keys[i];
			set.value = strchr(a->pos[i], '=') + 1;
		} else {
			rm.key = (char *)a->pos[i];
		}
		if (i + 1 == a->npos)
			return call_image(cli, method, req);
		if ((r = ims_cli_call(cli, method, req, &imgstore__v1__image__descriptor, &img)))
			return r;
		protobuf_c_message_free_unpacked(&img->base, NULL);
	}
	return 0;
}

static int image_tag(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__ImageSpec ms;
	char keys[IMS_CLI_MAX_POS][129];
	ims_spec spec;
	int r;

	if ((r = ims_cli_arg_image(cli, &spec, &ms, a->pos[0], false, false)))
		return r;
	/* check every pair before the first call: all or nothing on a typo */
	for (unsigned i = 1; i < a->npos; i++) {
		const char *eq = strchr(a->pos[i], '=');
		if (!eq)
			return ims_cli_usage(cli, "'%s' is not KEY=VALUE", a->pos[i]);
		if ((r = check_tag_key(cli, a->pos[i], (size_t)(eq - a->pos[i]), a->pos[i])))
			return r;
		for (const char *p = eq + 1; *p; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				return ims_cli_usage(cli,
						     "'%s': a tag value has no control characters",
						     a->pos[i]);
		snprintf(keys[i], sizeof(keys[i]), "%.*s", (int)(eq - a->pos[i]), a->pos[i]);
	}
	return tag_calls(cli, a, &ms, keys);
}

static int image_untag(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__ImageSpec ms;
	ims_spec spec;
	int r;

	if ((r = ims_cli_arg_image(cli, &spec, &ms, a->pos[0], false, false)))
		return r;
	for (unsigned i = 1; i < a->npos; i++)
		if ((r = check_tag_key(cli, a->pos[i], strlen(a->pos[i]), a->pos[i])))
			return r;
	return tag_calls(cli, a, &ms, NULL);
}

/* ---- attach-info ---- */

static const ims_cli_opt attach_opts[] = {
	{"format", "libvirt|table|json", "libvirt: print the <disk> XML for the volume as is"},
	{"host", "NAME",
	 "the hypervisor host whose [host NAME] of the daemon's configuration names the "
	 "cephx user and libvirt secret (default: the caller's own host token)"},
	{"client-id", "ID", "cephx user of the host (default: cephx_user of its [host NAME])"},
	{"secret-uuid", "UUID",
	 "libvirt secret holding that user's key (default: libvirt_secret of its [host NAME])"},
	{NULL, NULL, NULL},
};

static int image_attach_info(ims_cli *cli, const ims_cli_args *a)
{
	Imgstore__V1__GetAttachInfoRequest req = IMGSTORE__V1__GET_ATTACH_INFO_REQUEST__INIT;
	Imgstore__V1__ImageSpec ms;
	Imgstore__V1__GetAttachInfoResponse *info = NULL;
	const char *format = ims_cli_opt_value(cli, a, "format");
	const char *uuid = ims_cli_opt_value(cli, a, "secret-uuid");
	bool libvirt = false;
	ims_spec spec;
	int r;

	if ((r = ims_cli_arg_image(cli, &spec, &ms, a->pos[0], false, false)))
		return r;
	if (format) {
		if ((r = ims_cli_arg_choice(cli, "format", format, attach_formats)))
			return r;
		libvirt = !strcmp(format, "libvirt");
		if (!libvirt)
			cli->format = !strcmp(format, "json") ? IMS_CLI_FORMAT_JSON
							      : IMS_CLI_FORMAT_TABLE;
	}
	if ((r = ims_cli_opt_word(cli, &req.client_id, a, "client-id", false)) ||
	    (r = ims_cli_opt_word(cli, &req.host, a, "host", false)))
		return r;
	if (uuid) {
		if (!ims_uuid_valid(uuid))
			return ims_cli_usage(cli, "--secret-uuid: '%s' is not a UUID", uuid);
		req.secret_uuid = (char *)uuid;
	}
	req.image = &ms;
	if ((r = ims_cli_call(cli, "imgstore.v1.HostService/GetAttachInfo", &req,
			      &imgstore__v1__get_attach_info_response__descriptor, &info)))
		return r;
	if (libvirt) {
		const char *xml = info->libvirt_disk_xml ? info->libvirt_disk_xml : "";
		if (cli->out_tty) {
			size_t n = strlen(xml) * 6 + 1;
			char *esc = malloc(n);
			if (esc)
				fprintf(cli->out, "%s\n", ims_cli_escape(esc, n, xml, true));
			free(esc);
		} else {
			fprintf(cli->out, "%s\n", xml);
		}
		if (info->encryption && info->encryption[0])
			fprintf(stderr,
				"imgstore: '%s/%s' is encrypted (%s): the host needs the private "
				"libvirt secret %s holding its passphrase (luks_passphrase "
				"of "
				"--format json); see docs/SECURITY.md\n",
				info->pool, info->image, info->encryption, info->luks_secret_uuid);
	} else {
		ims_cli_print_message(cli, &info->base);
	}
	protobuf_c_message_free_unpacked(&info->base, NULL);
	return 0;
}

const ims_cli_verb ims_cli__image_verbs[] = {
	{"image", "create",
	 "POOL/IMAGE --size SIZE [--features N] [--data-pool POOL] [--encryption luks2]",
	 "Create an empty image.", create_opts, 1, 1, image_create, NULL},
	{"image", "import",
	 "FILE POOL/IMAGE [--format auto|raw|qcow2|vmdk|vdi|vhdx|vpc] [--upload] [--no-wait] "
	 "[--encryption luks2] [--passphrase-file PATH]",
	 "Import a raw, qcow2, vmdk, vdi, vhdx or vpc (VHD) disk image file as a new image.",
	 import_opts, 2, 2, image_import, NULL},
	{"image", "export", "POOL/IMAGE[@SNAP] FILE [--format raw|qcow2|vmdk] [--no-wait]",
	 "Export an image or a snapshot to a new file.", export_opts, 2, 2, image_export, NULL},
	{"image", "clone", "POOL/IMAGE@SNAP POOL/CLONE [--features N] [--data-pool POOL]",
	 "Clone a snapshot (golden image) into a new copy-on-write image.", clone_opts, 2, 2,
	 image_clone, NULL},
	{"image", "ls", "[POOL]", "List the images of a pool (default: the site's default pool).",
	 ims_cli__no_opts, 0, 1, NULL,
	 &(const ims_cli_call_spec){IMAGE_SERVICE, "ListImages", IMS_CLI_POS_POOL, "pool", "POOL",
				    IMS_CLI_REPLY_LIST, "images", image_columns, NULL}},
	{"image", "info", "POOL/IMAGE", "Show an image: size, features, parent, snapshots, tags.",
	 ims_cli__no_opts, 1, 1, NULL,
	 &(const ims_cli_call_spec){IMAGE_SERVICE, "GetImage", IMS_CLI_POS_IMAGE, "image", NULL,
				    IMS_CLI_REPLY_SHOW, NULL, NULL, NULL}},
	{"image", "resize", "POOL/IMAGE --size SIZE [--allow-shrink]", "Grow (or shrink) an image.",
	 resize_opts, 1, 1, image_resize, NULL},
	{"image", "rename", "POOL/IMAGE NEWNAME", "Rename an image within its pool.",
	 ims_cli__no_opts, 2, 2, image_rename, NULL},
	{"image", "rm", "POOL/IMAGE [--purge] [--trash-delay DURATION] [--shred]",
	 "Remove an image: to the RBD trash (24h by default), or at once with --purge.", rm_opts, 1,
	 1, image_rm, NULL},
	{"image", "flatten", "POOL/IMAGE [--no-wait]",
	 "Copy a clone's parent data into it so that it stands alone.", ims_cli__wait_opts, 1, 1,
	 NULL,
	 &(const ims_cli_call_spec){IMAGE_SERVICE, "FlattenImage", IMS_CLI_POS_IMAGE, "image", NULL,
				    IMS_CLI_REPLY_OP, NULL, NULL, NULL}},
	{"image", "tag", "POOL/IMAGE KEY=VALUE...", "Set tags on an image.", ims_cli__no_opts, 2,
	 IMS_CLI_MAX_POS, image_tag, NULL},
	{"image", "untag", "POOL/IMAGE KEY...", "Remove tags from an image.", ims_cli__no_opts, 2,
	 IMS_CLI_MAX_POS, image_untag, NULL},
	{"image", "attach-info",
	 "POOL/IMAGE [--format libvirt|table|json] [--host NAME] [--client-id ID] [--secret-uuid "
	 "UUID]",
	 "Show what a hypervisor host needs to attach the image (libvirt <disk> XML).", attach_opts,
	 1, 1, image_attach_info, NULL},
	{NULL, NULL, NULL, NULL, NULL, 0, 0, NULL, NULL},
};

/* KEK rotation (docs/SECURITY.md): one call, its counts shown. */
const ims_cli_verb ims_cli__key_verbs[] = {
	{"key", "rewrap", "",
	 "Wrap every data key of the site (encrypted images, trash and replicas included, and the "
	 "tier's encrypted cold images) with the current KEK ([server] kek_file), off "
	 "kek_previous_file's; idempotent.",
	 ims_cli__no_opts, 0, 0, NULL,
	 &(const ims_cli_call_spec){IMAGE_SERVICE, "RewrapKeys", IMS_CLI_POS_NONE, NULL, NULL,
				    IMS_CLI_REPLY_SHOW, NULL, NULL, NULL}},
	{NULL, NULL, NULL, NULL, NULL, 0, 0, NULL, NULL},
};
