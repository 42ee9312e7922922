/*
 * proto/server.h: the RPC server on libmicrohttpd (thread pool; slow methods on threads of
 * their own, see ims_rpc_method.slow).
 *
 * The server owns transport concerns: listeners (TCP with TLS, a Unix socket), the body size
 * limit (checked before anything is decoded), timeouts, keep-alive, authentication (bearer
 * tokens from a token file, or a client certificate), the role check of each method,
 * decoding and encoding, the audit line of every mutating call, request metrics, /healthz and
 * /metrics. Handlers see decoded messages and return 0 or a negative errno with a message set
 * by ims_error_set().
 *
 * Authentication. A bearer token is what gives a caller a name and a role: every method whose
 * role is above IMS_ROLE_NONE needs one, on every listener. A client certificate only proves
 * that the host may connect at all: with tls_client_ca set, a TCP client without a certificate
 * signed by it is refused (401 unauthenticated, /healthz and /metrics included) before its
 * token is looked at, and a verified certificate's CN is recorded (ims_rpc_call_cert_cn(), the
 * audit line's cert=) but grants no role. Without a token_file no token is valid, so only
 * methods of role IMS_ROLE_NONE can be called. The Unix socket (mode 0660) asks for tokens
 * too: its file mode decides who may connect, the token who may do what.
 *
 * Checks, in this order, each answered with a Connect error (JSON body):
 *   unknown path                 404 unimplemented
 *   not POST (or GET for a method that is not mutating)   405 unimplemented (Allow:)
 *   bad Connect-Timeout-Ms       400 invalid_argument
 *   GET without connect=v1 and encoding=proto|json   400 invalid_argument
 *   Content-Type neither application/proto nor application/json   415 invalid_argument
 *   Content-Encoding other than identity   501 unimplemented
 *   body over max_request_bytes  413 resource_exhausted (from Content-Length before reading
 *                                the body; a chunked body as soon as it grows past the limit)
 *   client certificate, token    401 unauthenticated
 *   role                         403 permission_denied
 *   method without handler       501 unimplemented
 *   slow method, slow_calls busy 429 resource_exhausted (see ims_rpc_method.slow)
 *   Connect-Timeout-Ms ran out   408 deadline_exceeded (checked before the handler and after)
 *   undecodable body             400 invalid_argument "malformed request: ..."
 *   the handler's errno          ims_rpc_code_from_errno(), with ims_error_last() as message
 *
 * Audit: every call of a method with mutating=true, whatever its outcome, gives one line
 *   audit caller=NAME role=ROLE peer=PEER [cert=CN] method=ImageService/CreateImage
 *         target=rbd/vm1 result=ok
 * with caller=- role=- before authentication, target=- until the handler sets one, and
 * msg="..." after result= for a failure. Values with other characters than [A-Za-z0-9-_./@:+[]]
 * are quoted, with \" \\ and \xNN escapes. No token ever appears.
 */
#ifndef IMS_PROTO_SERVER_H
#define IMS_PROTO_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <protobuf-c/protobuf-c.h>

#include "proto/rpc.h"

typedef struct ims_rpc_server ims_rpc_server;

/** One call in progress, handed to the handler. */
typedef struct ims_rpc_call ims_rpc_call;

/**
 * Who calls: the token's NAME, or "token-N" for a token without a name on line N of the
 * token file; "-" when the method needs no role and no token was given. Borrowed.
 */
const char *ims_rpc_call_caller(const ims_rpc_call *call);
ims_role ims_rpc_call_role(const ims_rpc_call *call);
/** The peer: "IP:PORT", "[IPv6]:PORT", "unix", or "dispatch" for ims_rpc_server_dispatch(). */
const char *ims_rpc_call_peer(const ims_rpc_call *call);
/**
 * The CN of the client certificate verified against tls_client_ca, or NULL (no CA set, the
 * Unix socket, dispatch). It grants no role: see "Authentication" above. Borrowed.
 */
const char *ims_rpc_call_cert_cn(const ims_rpc_call *call);

/**
 * Zeroed memory that lives until the response is encoded and queued: build responses with it.
 * NULL on ENOMEM.
 */
void *ims_rpc_call_alloc(ims_rpc_call *call, size_t size);
char *ims_rpc_call_strdup(ims_rpc_call *call, const char *s);
/**
 * The reason of the call's failure, sent as an imgstore.v1.ErrorInfo in the Connect error's
 * details (IMS_RPC_REASON_*, or another UPPER_SNAKE_CASE word; others are ignored). Without
 * it, ims_rpc_reason_from_errno() of the handler's errno. Copied.
 */
void ims_rpc_call_set_reason(ims_rpc_call *call, const char *reason);

/**
 * What is left of the caller's budget (the Connect-Timeout-Ms header), in milliseconds rounded
 * up (a wait of that long ends at the deadline): 0 once it ran out, -1 when the caller set none. A
 * handler that waits or works for long bounds itself with it; the server answers deadline_exceeded
 * anyway once the budget ran out.
 */
int64_t ims_rpc_call_remaining_ms(const ims_rpc_call *call);
/**
 * From the handler of a quick method that finds it must wait after all (bytes not made yet):
 * ask to be called again, with the same request, on a thread of its own while its connection is
 * suspended, as a slow method is (see ims_rpc_method.slow), so that the wait holds no request
 * thread. Counted against slow_calls.
 * @returns true: the handler returns IMS_RPC_DEFERRED at once, and is called again later on its
 *          own thread (where this returns false); false when the call is on its own thread
 *          already, comes through ims_rpc_server_dispatch(), or slow_calls are all taken: the
 *          handler answers now, without waiting.
 */
bool ims_rpc_call_defer(ims_rpc_call *call);
#define IMS_RPC_DEFERRED 1 /* a handler's return after ims_rpc_call_defer() said true */
/** Whether the handler may wait without holding one of MHD's request threads: true on a thread
 *  of its own (a slow method, a deferred call) or through ims_rpc_server_dispatch(). */
bool ims_rpc_call_may_wait(const ims_rpc_call *call);

/** What the call works on, for the audit line ("rbd/vm1"). Copied. */
void ims_rpc_call_set_target(ims_rpc_call *call, const char *target);

/**
 * A method's handler. @p req is decoded and borrowed; the handler sets *resp to a message of
 * the method's output type built with ims_rpc_call_alloc() (or static storage).
 *
 * @returns 0, or a negative errno (mapped with ims_rpc_code_from_errno) with ims_error_set()
 *          giving the message sent to the client.
 */
typedef int (*ims_rpc_handler)(void *app, ims_rpc_call *call, const ProtobufCMessage *req,
			       ProtobufCMessage **resp);

/*
 * Where the bytes of an UploadChunk go, put there as they arrive instead of into a request
 * buffer first: a copy less of every chunk, and no buffer for it. Used for a binary POST of
 * imgstore.v1.UploadChunkRequest whose data field comes last (as protobuf-c packs it); any
 * other body is read whole and given to the handler, which must then do the same work.
 */
typedef struct {
	/* A chunk of @p len bytes (len > 0) for @p upload_id at @p offset comes: take it (0,
	 * with *@p ctx for put and end), or leave it to the handler (nonzero: the handler then
	 * refuses it, or takes it, as it sees fit). */
	int (*begin)(void *app, const char *upload_id, uint64_t offset, size_t len, void **ctx);
	/* @p n bytes at @p pos of the chunk's data, in order: 0, or a negative errno with
	 * ims_error_set() (no more put; end gets it). */
	int (*put)(void *ctx, const uint8_t *data, size_t n, size_t pos);
	/* All were put (@p r 0) or not (@p r the put's error; -ECONNRESET: the connection was
	 * lost, and @p resp is NULL): release what begin took. @returns as a handler does, the
	 * answer in *@p resp (built with ims_rpc_call_alloc() on @p call). */
	int (*end)(void *app, ims_rpc_call *call, void *ctx, int r, ProtobufCMessage **resp);
} ims_rpc_chunk_sink;

typedef struct {
	const char *path; /* "/imgstore.v1.ImageService/CreateImage" */
	const ProtobufCMessageDescriptor *input;
	const ProtobufCMessageDescriptor *output;
	ims_role role;	    /* the least role that may call it */
	bool mutating;	    /* gets an audit line */
	ims_rpc_handler fn; /* NULL: answers unimplemented */
	/*
	 * The handler may block for long (a wait, a verify, a synchronous seal): it runs on a
	 * thread of its own while its connection is suspended, so that the request threads stay
	 * free for quick calls. At most slow_calls of them run at once; one more is refused
	 * with 429 resource_exhausted.
	 */
	bool slow;
	/* for UploadChunk: where its bytes go as they arrive (not with slow); NULL: none */
	const ims_rpc_chunk_sink *sink;
} ims_rpc_method;

/* TLS 1.2 at least: a client offering only TLS 1.1 or older fails its handshake. */
#define IMS_RPC_TLS_PRIORITIES "NORMAL:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2"

#define IMS_RPC_SERVER_OPTS_VERSION 1
typedef struct {
	unsigned version;
	const char *listen;	 /* "HOST:PORT" or NULL */
	const char *unix_socket; /* path or NULL; made with mode 0660, a stale socket replaced */
	const char *tls_cert;	 /* PEM; required with listen unless allow_plain_http */
	const char *tls_key;
	const char *tls_client_ca; /* when set, TCP clients must present a certificate it signed */
	/* GnuTLS priority string of the TLS listener; NULL: IMS_RPC_TLS_PRIORITIES. It may enable
	 * TLS 1.2 and 1.3 only: older versions are refused at start. */
	const char *tls_priorities;
	bool allow_plain_http;
	const char *token_file;	    /* "ROLE TOKEN [NAME]" lines; must not be readable by others */
	uint64_t max_request_bytes; /* 0: 4 MiB */
	unsigned read_timeout;	    /* seconds; 0: 30 */
	unsigned threads;	    /* 0: 8; each listener has this many */
	unsigned slow_calls; /* 0: 64; calls of slow methods running at once (all listeners) */
	const ims_rpc_method *methods; /* borrowed: must outlive the server */
	size_t nmethods;
	void *app; /* passed to handlers and hooks */
	/* /healthz, the process lives: "ok" or a one-line reason it is unhealthy (503); NULL:
	 * always ok */
	const char *(*health)(void *app);
	/* /readyz, the daemon can do its job (its site answers): 0, or nonzero with a one-line
	 * reason in @p why (503); NULL: ready while it serves. Must not wait for a cluster. */
	int (*ready)(void *app, char *why, size_t len);
	/* extra Prometheus text appended to /metrics; may be NULL */
	void (*metrics)(void *app, FILE *out);
	/* one audit line per mutating call; NULL: ims_log_info */
	void (*audit)(void *app, const char *line);
	/*
	 * No listener at all: the server answers only ims_rpc_server_dispatch() (tests,
	 * fuzzers). listen and unix_socket must then be NULL; without it, at least one of them
	 * must be set, so that a configuration that names no listener fails to start.
	 */
	bool dispatch_only;
} ims_rpc_server_opts;
#define IMS_RPC_SERVER_OPTS_INIT                                                                   \
	{                                                                                          \
		.version = IMS_RPC_SERVER_OPTS_VERSION                                             \
	}

/**
 * Start serving. The strings of @p opts are copied; the methods table and app are borrowed.
 * The hooks (health, metrics, audit) and handlers run on the server's threads, concurrently.
 *
 * @returns -EINVAL for bad options (TLS files missing, a TCP listener without TLS and without
 *          allow_plain_http, no listener without dispatch_only, a bad method table, a
 *          certificate that does not match its key, a tls_priorities that GnuTLS does not
 *          parse or that enables a version older than TLS 1.2 or no TLS version at all, a
 *          bad token file line), -EACCES if the
 *          token file is readable or writable by group or others or is not a regular file,
 *          -EADDRINUSE if the address is taken or a server listens on unix_socket already,
 *          -EEXIST if unix_socket exists and is no socket, -ENOENT if a file does not exist.
 */
int ims_rpc_server_start(ims_rpc_server **out, const ims_rpc_server_opts *opts);

/** The TCP port actually bound (useful with port 0), 0 without a TCP listener. */
uint16_t ims_rpc_server_port(const ims_rpc_server *s);

/** Re-read the token file (SIGHUP). On error the old tokens stay. */
int ims_rpc_server_reload_tokens(ims_rpc_server *s);

/**
 * Stop accepting, let the calls in progress finish (quick ones for at most 10 s, slow ones
 * until their handlers return), free; the Unix socket file is removed. Accepts NULL.
 */
void ims_rpc_server_stop(ims_rpc_server *s);

/**
 * The whole request path without sockets, for tests and the fuzzer: authenticate
 * @p authorization ("Bearer ..." or NULL), check method, content type and size, decode, call,
 * encode. Writes the HTTP status, the response content type and body (malloc'ed; the caller
 * frees it). Metrics and audit lines are as for a call over a socket, with peer "dispatch".
 *
 * @param[out] resp_content_type "application/proto" or "application/json"; static.
 * @returns 0 whatever the call's outcome (see @p status), -EINVAL for bad arguments, -ENOMEM.
 */
int ims_rpc_server_dispatch(ims_rpc_server *s, const char *path, const char *content_type,
			    const char *authorization, const uint8_t *body, size_t len, int *status,
			    const char **resp_content_type, uint8_t **resp, size_t *resp_len);

#endif
