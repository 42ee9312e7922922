/*
 * proto/server_int.h: what the files of the RPC server share (server.c: listeners and
 * libmicrohttpd; dispatch.c: the request pipeline; tokens.c; metrics.c). Not installed.
 */
#ifndef IMS_PROTO_SERVER_INT_H
#define IMS_PROTO_SERVER_INT_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#include <time.h>

#include "common/hash.h"
#include "proto/server.h"

/* ---- tokens.c ---------------------------------------------------------------------------- */

#define IMS_RPC__TOKEN_MIN 16
#define IMS_RPC__TOKEN_MAX 512
#define IMS_RPC__NAME_MAX  64

typedef struct {
	uint8_t digest[IMS_SHA256_LEN]; /* SHA-256 of the token: the token itself is not kept */
	ims_role role;
	char name[IMS_RPC__NAME_MAX + 1];
} ims_rpc__token;

typedef struct {
	ims_rpc__token *v;
	size_t n;
} ims_rpc__tokens;

/**
 * Open a secret file (a token file, a TLS key) for reading; never a terminal, never blocking
 * on a FIFO.
 *
 * @returns the descriptor, or -ENOENT ("WHAT 'PATH' does not exist"), -EACCES... with the
 *          message set.
 */
int ims_rpc__open_secret(const char *what, const char *path);

/**
 * Read the @p size bytes of the open regular file @p fd (a secret: a token file, a TLS key)
 * into a NUL-terminated buffer, wiped and freed on failure. A file that got shorter is read
 * to its end. @p what and @p path name it in the messages: "cannot read WHAT 'PATH': ...".
 *
 * @param[out] out the contents; free with explicit_bzero() and free().
 * @param[out] out_len their length; may be NULL.
 * @returns -ENOMEM, or the errno of read().
 */
int ims_rpc__read_secret(char **out, size_t *out_len, int fd, size_t size, const char *what,
			 const char *path);

/**
 * Read and check a token file (mode, type, syntax).
 *
 * @returns -ENOENT if it does not exist, -EACCES if group or others may read or write it or
 *          it is no regular file, -EINVAL for a bad line (the message names FILE:LINE, never
 *          the token).
 */
int ims_rpc__tokens_load(ims_rpc__tokens **out, const char *path);
void ims_rpc__tokens_free(ims_rpc__tokens *t);

/**
 * Find the token in constant time (in the token and in the set).
 *
 * @returns the entry or NULL; borrowed from @p t.
 */
const ims_rpc__token *ims_rpc__tokens_find(const ims_rpc__tokens *t, const char *token, size_t len);

/* ---- metrics.c --------------------------------------------------------------------------- */

#define IMS_RPC__NBUCKETS 10 /* the last one is +Inf */

typedef struct {
	uint64_t requests[IMS_RPC_UNAUTHENTICATED + 1]; /* by code */
	uint64_t buckets[IMS_RPC__NBUCKETS];		/* not cumulative */
	double sum;
	uint64_t count;
} ims_rpc__method_metrics;

typedef struct {
	pthread_mutex_t lock;
	size_t nmethods; /* the methods, then one slot for unknown paths */
	ims_rpc__method_metrics *m;
	int64_t in_flight;
} ims_rpc__metrics;

int ims_rpc__metrics_init(ims_rpc__metrics *mx, size_t nmethods);
void ims_rpc__metrics_destroy(ims_rpc__metrics *mx);
void ims_rpc__metrics_in_flight(ims_rpc__metrics *mx, int delta);
int64_t ims_rpc__metrics_get_in_flight(ims_rpc__metrics *mx);
void ims_rpc__metrics_record(ims_rpc__metrics *mx, size_t slot, ims_rpc_code code, double seconds);
/** Prometheus text; @p names[slot] is the method label of each slot. */
void ims_rpc__metrics_write(ims_rpc__metrics *mx, const char *const *names, FILE *out);

/* ---- dispatch.c -------------------------------------------------------------------------- */

typedef struct {
	const ims_rpc_method *def;
	char *label; /* "ImageService/CreateImage": for metrics and the audit line */
} ims_rpc__method;

struct ims_rpc_server {
	ims_rpc_server_opts opts; /* strings not kept: see the copies below */
	char *token_file;
	uint64_t max_request_bytes;

	ims_rpc__method *methods;
	size_t nmethods;
	const char **labels; /* nmethods + 1: the metrics label of each slot */

	pthread_rwlock_t tokens_lock;
	ims_rpc__tokens *tokens;
	ims_rpc__metrics metrics;

	/* server.c */
	struct ims_rpc__listener *tcp, *unix_l;
	uint16_t port;
	char *unix_path;
	dev_t unix_dev; /* the socket file we made, unlinked at stop if it is still ours */
	ino_t unix_ino;
	char *cert_pem, *key_pem, *ca_pem;
	char *tls_priorities;
	/* calls of slow methods, each on a thread of its own */
	pthread_mutex_t slow_lock;
	pthread_cond_t slow_ended;
	unsigned slow_running; /* from the hand-off to MHD's end of the request */
	unsigned slow_threads; /* threads still running */
	unsigned slow_max;
	/* request bodies of 1 MiB and more (upload chunks), kept for the next request: memory
	 * already mapped, not a fresh mmap and its page faults per chunk */
	pthread_mutex_t bodies_lock;
	struct {
		uint8_t *buf;
		size_t cap;
	} bodies[4];
	unsigned nbodies;
};

/*
 * Keep request body @p b (@p cap bytes) for a later request: in a free place of the cache, or
 * in place of a smaller one when it is full. @returns what the caller frees: @p b when it is
 * not kept (too small, too large, or no smaller one to replace), the one it replaced, or NULL.
 */
uint8_t *ims_rpc__body_keep(ims_rpc_server *s, uint8_t *b, size_t cap);

/*
 * A buffer for a body of @p want bytes, its capacity in *@p cap: a kept one (of a request or
 * an answer that went before) if one fits, else fresh memory (rounded up to 64 KiB from 1 MiB,
 * so that it fits the next one of about the same size when it is kept in turn). NULL: out of
 * memory. Free it with free() or give it back with ims_rpc__body_keep().
 */
uint8_t *ims_rpc__body_get(ims_rpc_server *s, size_t want, size_t *cap);

/*
 * An UploadChunkRequest read in place (proto/upload_chunk.c): its upload_id (not
 * NUL-terminated) and data point into the body read, nothing is copied. The last of a
 * repeated field wins; an absent one is empty (pointing at a static byte).
 */
typedef struct {
	const uint8_t *id;
	size_t id_len;
	uint64_t offset;
	const uint8_t *data;
	size_t data_len;
} ims_rpc__upload_chunk;

/* Read @p len bytes of @p body as an UploadChunkRequest in place: what protobuf-c's unpack
 * takes, and nothing else. @returns 0, or -EINVAL with ims_error_set() saying where it broke. */
int ims_rpc__upload_chunk_scan(ims_rpc__upload_chunk *out, const uint8_t *body, size_t len);

/*
 * The start of an UploadChunkRequest body of @p total bytes, @p have of them in @p head: 1
 * when it is well-formed fields and then the data field, last, running to the end of the
 * body (the fields are then those ims_rpc__upload_chunk_scan() finds in the whole body, its
 * data at *@p prefix, not in @p head); 0 when more bytes may tell; -1 when it is not of that
 * shape (the whole body is then read and scanned as usual).
 */
int ims_rpc__upload_chunk_head(ims_rpc__upload_chunk *out, size_t *prefix, const uint8_t *head,
			       size_t have, size_t total);

/* A block of the per-call arena. */
typedef struct ims_rpc__block {
	struct ims_rpc__block *next;
	max_align_t data[];
} ims_rpc__block;

/* What the transport knows of the peer before the call. */
typedef struct {
	const char *addr;     /* "IP:PORT", "unix", "dispatch" */
	bool cert_required;   /* TLS listener with tls_client_ca */
	bool cert_ok;	      /* a client certificate signed by tls_client_ca */
	const char *cert_cn;  /* its CN, or NULL */
	const char *cert_err; /* why it was refused, when cert_required && !cert_ok */
} ims_rpc__peer;

struct ims_rpc_call {
	ims_rpc_server *server;
	const ims_rpc__method *method; /* NULL for an unknown path */
	size_t slot;		       /* metrics slot */
	struct timespec start;
	bool authenticated;
	bool in_flight;
	ims_role role;
	char caller[IMS_RPC__NAME_MAX + 1];
	char peer[64];
	char cert_cn[IMS_RPC__NAME_MAX + 1];
	char *target;
	ims_rpc__block *blocks;
	char reason[IMS_RPC_REASON_MAX]; /* ims_rpc_call_set_reason(), "" if none */
	bool json; /* application/json (or GET encoding=json): the request and the answer */
	/* Connect-Timeout-Ms: the call answers deadline_exceeded once the deadline passed */
	bool has_deadline;
	uint64_t timeout_ms;
	struct timespec deadline; /* CLOCK_MONOTONIC */
	/* ims_rpc_call_defer(): may_defer on a request thread of MHD (not on a slow call's own
	 * thread, not through ims_rpc_server_dispatch()); deferred once a slow slot is taken */
	bool may_defer;
	bool deferred;
	/* a GET call: its message, from the query, in the arena */
	bool is_get;
	uint8_t *get_body;
	size_t get_len;
};

/* An answer ready to send. */
typedef struct {
	int status;
	const char *content_type; /* static */
	uint8_t *body;		  /* malloc'ed */
	size_t len;
	size_t cap;		 /* body's capacity, when it came from the server's kept bodies */
	ims_rpc_server *keep_to; /* ...of this server: back there once sent, not freed */
	ims_rpc_code code;
	const char *allow;     /* for 405, or NULL */
	bool www_authenticate; /* for 401 */
} ims_rpc__response;

/* The paths of the methods declared `option idempotency_level = NO_SIDE_EFFECTS`, NULL-ended
 * (generated from the .proto files by proto/idempotent.awk): these may be called with GET. */
extern const char *const ims_rpc__no_side_effects[];

/* What the transport read of a request before its body. */
typedef struct {
	const char *http_method; /* "POST", "GET", ... */
	const char *path;
	const char *content_type; /* NULL if absent */
	bool have_length;	  /* whether a Content-Length was sent (length) */
	uint64_t length;
	const char *authorization; /* NULL if absent */
	const char *timeout_ms;	   /* Connect-Timeout-Ms, or NULL */
	const char *encoding;	   /* Content-Encoding, or NULL */
	/* GET: the query parameters connect, encoding, message (URL-decoded), base64,
	 * compression; NULL if absent */
	const char *q_connect, *q_encoding, *q_message, *q_base64, *q_compression;
} ims_rpc__head;

/**
 * The checks that need only the headers: path, method (POST; GET for a method that is not
 * mutating, with its message in the query), content type (application/proto or
 * application/json), Connect-Timeout-Ms, declared size, authentication, role.
 *
 * @returns true if the body should be read and ims_rpc__finish() called; false when @p resp
 *          holds the answer already. Either way ims_rpc__call_end() must follow.
 */
bool ims_rpc__begin(ims_rpc_server *s, ims_rpc_call *call, const ims_rpc__head *h,
		    const ims_rpc__peer *peer, ims_rpc__response *resp);

/** Decode @p body (a GET call's message instead), call the handler, encode; deadline_exceeded
 * when the call's budget runs out before the handler is called or while it runs. */
void ims_rpc__finish(ims_rpc_server *s, ims_rpc_call *call, const uint8_t *body, size_t len,
		     ims_rpc__response *resp);

/**
 * A call whose chunk's bytes went to its method's sink as they arrived
 * (ims_rpc_chunk_sink): end it with @p r (0 when all were put) and encode its answer, as
 * ims_rpc__finish() does a handler's.
 */
void ims_rpc__finish_sunk(ims_rpc_server *s, ims_rpc_call *call, void *ctx, int r,
			  ims_rpc__response *resp);

/** The answer to a body that grew past max_request_bytes while it was read. */
void ims_rpc__too_large(ims_rpc_server *s, ims_rpc_call *call, ims_rpc__response *resp);

/** The answer to a slow call when slow_calls of them are running already. */
void ims_rpc__busy(ims_rpc_server *s, ims_rpc_call *call, ims_rpc__response *resp);

/** Free what the call holds (arena, target). */
void ims_rpc__call_end(ims_rpc_call *call);

/** A JSON error answer outside a call (/healthz...). */
void ims_rpc__error_response(ims_rpc__response *resp, int status, ims_rpc_code code,
			     const char *msg);

/** The same with an imgstore.v1.ErrorInfo of @p reason (if not NULL) in its "details". */
void ims_rpc__error_response_reason(ims_rpc__response *resp, int status, ims_rpc_code code,
				    const char *msg, const char *reason);

void ims_rpc__response_free(ims_rpc__response *resp);

#endif
