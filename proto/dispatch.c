/*
 * proto/dispatch.c: the request pipeline of the RPC server, the same with sockets (server.c)
 * and without (ims_rpc_server_dispatch): path, HTTP method, content type, size,
 * authentication, role, decoding, the handler, encoding; then metrics and the audit line.
 */
#include "proto/server_int.h"

#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <json-c/json.h>

#include "common/error.h"
#include "common/log.h"
#include "imgstore/v1/common.pb-c.h"
#include "imgstore/v1/image.pb-c.h"
#include "proto/json.h"

#define CT_PROTO "application/proto"
#define CT_JSON	 "application/json"

/* ---- per-call memory ---------------------------------------------------------------------- */

/*
 * Large protobuf requests are unpacked into an arena kept from one request to the next
 * (UploadChunk, the largest, is read in place instead: upload_chunk_in_place()): protobuf-c copies
 * a bytes field into memory of its allocator, and with malloc each chunk's copy landed in fresh
 * pages (12 % of the daemon's time in page faults while a streamed import ran, docs/BENCHMARKS.md).
 * A few arenas stay cached, the rest are freed: the memory kept is ARENAS_KEPT times a chunk and a
 * little.
 */
#define ARENA_MIN_BODY (64u << 10) /* smaller bodies: protobuf-c's default allocator */
#define ARENA_SLACK    (64u << 10) /* beyond the body: the message structs and strings */
#define ARENAS_KEPT    4

typedef struct {
	uint8_t *mem;
	size_t cap, used;
} unpack_arena;

static pthread_mutex_t arenas_lock = PTHREAD_MUTEX_INITIALIZER;
static unpack_arena arenas[ARENAS_KEPT];
static unsigned narenas;

static void *arena_alloc(void *ctx, size_t size)
{
	unpack_arena *a = ctx;
	size_t n = (size + 15u) & ~(size_t)15u;
	if (n >= size && n <= a->cap - a->used) {
		void *p = a->mem + a->used;
		a->used += n;
		return p;
	}
	return malloc(size); /* beyond the arena: freed by arena_free */
}

static void arena_free(void *ctx, void *p)
{
	unpack_arena *a = ctx;
	if ((uint8_t *)p >= a->mem && (uint8_t *)p < a->mem + a->cap)
		return; /* the arena's: all of it goes back at once */
	free(p);
}

/* An arena of at least @p need bytes (one kept from before when it is large enough). */
static bool arena_take(unpack_arena *a, size_t need)
{
	pthread_mutex_lock(&arenas_lock);
	if (narenas)
		*a = arenas[--narenas];
	else
		memset(a, 0, sizeof(*a));
	pthread_mutex_unlock(&arenas_lock);
	a->used = 0;
	if (a->cap >= need)
		return true;
	free(a->mem);
	a->cap = (need + (256u << 10) - 1) / (256u << 10) * (256u << 10);
	a->mem = malloc(a->cap);
	if (!a->mem)
		a->cap = 0;
	return a->mem != NULL;
}

static void arena_give_back(unpack_arena *a)
{
	pthread_mutex_lock(&arenas_lock);
	if (narenas < ARENAS_KEPT) {
		arenas[narenas++] = *a;
		a->mem = NULL;
	}
	pthread_mutex_unlock(&arenas_lock);
	free(a->mem);
}

void *ims_rpc_call_alloc(ims_rpc_call *call, size_t size)
{
	ims_rpc__block *b;

	if (!call || size > SIZE_MAX - sizeof(*b))
		return NULL;
	b = calloc(1, sizeof(*b) + size);
	if (!b)
		return NULL;
	b->next = call->blocks;
	call->blocks = b;
	return b->data;
}

char *ims_rpc_call_strdup(ims_rpc_call *call, const char *s)
{
	if (!s)
		return NULL;
	size_t n = strlen(s) + 1;
	char *p = ims_rpc_call_alloc(call, n);
	if (p)
		memcpy(p, s, n);
	return p;
}

void ims_rpc_call_set_target(ims_rpc_call *call, const char *target)
{
	if (!call)
		return;
	free(call->target);
	call->target = target ? strdup(target) : NULL;
}

void ims_rpc_call_set_reason(ims_rpc_call *call, const char *reason)
{
	size_t n = reason ? strlen(reason) : 0;

	if (!call || n == 0 || n >= sizeof(call->reason))
		return;
	for (size_t i = 0; i < n; i++)
		if (!((reason[i] >= 'A' && reason[i] <= 'Z') ||
		      (reason[i] >= '0' && reason[i] <= '9') || reason[i] == '_'))
			return;
	memcpy(call->reason, reason, n + 1);
}

const char *ims_rpc_call_caller(const ims_rpc_call *call)
{
	return call->caller;
}

ims_role ims_rpc_call_role(const ims_rpc_call *call)
{
	return call->role;
}

const char *ims_rpc_call_peer(const ims_rpc_call *call)
{
	return call->peer;
}

const char *ims_rpc_call_cert_cn(const ims_rpc_call *call)
{
	return call->cert_cn[0] ? call->cert_cn : NULL;
}

void ims_rpc__call_end(ims_rpc_call *call)
{
	while (call->blocks) {
		ims_rpc__block *next = call->blocks->next;
		free(call->blocks);
		call->blocks = next;
	}
	free(call->target);
	call->target = NULL;
	if (call->in_flight) {
		ims_rpc__metrics_in_flight(&call->server->metrics, -1);
		call->in_flight = false;
	}
}

/* ---- answers ------------------------------------------------------------------------------ */

void ims_rpc__response_free(ims_rpc__response *resp)
{
	free(resp->body);
	resp->body = NULL;
	resp->len = resp->cap = 0;
	resp->keep_to = NULL;
}

/* "details": [{"type": "imgstore.v1.ErrorInfo", "value": BASE64, "debug": {...}}] */
static json_object *error_details(const char *reason)
{
	Imgstore__V1__ErrorInfo info = IMGSTORE__V1__ERROR_INFO__INIT;
	uint8_t buf[2 * IMS_RPC_REASON_MAX + 32];
	json_object *arr = json_object_new_array(), *d = json_object_new_object(),
		    *dbg = json_object_new_object();
	char *value;

	info.reason = (char *)reason;
	info.domain = IMS_RPC_ERROR_DOMAIN;
	assert(protobuf_c_message_get_packed_size(&info.base) <= sizeof(buf));
	size_t n = protobuf_c_message_pack(&info.base, buf);
	value = ims_rpc__base64_encode(buf, n, false);
	if (!arr || !d || !dbg || !value) {
		json_object_put(arr);
		json_object_put(d);
		json_object_put(dbg);
		free(value);
		return NULL;
	}
	json_object_object_add(d, "type", json_object_new_string(IMS_RPC_ERROR_INFO_TYPE));
	json_object_object_add(d, "value", json_object_new_string(value));
	/* for people reading it with curl; clients decode the value */
	json_object_object_add(dbg, "reason", json_object_new_string(reason));
	json_object_object_add(dbg, "domain", json_object_new_string(IMS_RPC_ERROR_DOMAIN));
	json_object_object_add(d, "debug", dbg);
	json_object_array_add(arr, d);
	free(value);
	return arr;
}

void ims_rpc__error_response(ims_rpc__response *resp, int status, ims_rpc_code code,
			     const char *msg)
{
	ims_rpc__error_response_reason(resp, status, code, msg, NULL);
}

void ims_rpc__error_response_reason(ims_rpc__response *resp, int status, ims_rpc_code code,
				    const char *msg, const char *reason)
{
	char clean[IMS_ERROR_MSG_MAX + 8];
	json_object *o = json_object_new_object();

	memset(resp, 0, sizeof(*resp));
	resp->status = status;
	resp->code = code;
	resp->content_type = CT_JSON;
	if (!o)
		return;
	ims_rpc__utf8_clean(clean, sizeof(clean), msg ? msg : "");
	json_object_object_add(o, "code", json_object_new_string(ims_rpc_code_name(code)));
	json_object_object_add(o, "message", json_object_new_string(clean));
	if (reason && reason[0]) {
		json_object *details = error_details(reason);
		if (details)
			json_object_object_add(o, "details", details);
	}
	const char *text = json_object_to_json_string_ext(
		o, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE);
	if (text) {
		size_t n = strlen(text);
		resp->body = malloc(n + 1);
		if (resp->body) {
			memcpy(resp->body, text, n + 1);
			resp->len = n;
		}
	}
	json_object_put(o);
}

/* ---- audit -------------------------------------------------------------------------------- */

typedef struct {
	char b[2048];
	size_t n;
} line_buf;

static void put(line_buf *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(line_buf *l, const char *fmt, ...)
{
	va_list ap;

	if (l->n >= sizeof(l->b) - 1)
		return;
	va_start(ap, fmt);
	int n = vsnprintf(l->b + l->n, sizeof(l->b) - l->n, fmt, ap);
	va_end(ap);
	if (n > 0)
		l->n += (size_t)n;
	if (l->n > sizeof(l->b) - 1)
		l->n = sizeof(l->b) - 1;
}

static bool bare(const char *s)
{
	if (!*s)
		return false;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		unsigned char c = *p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      strchr("-_./@:+[]", c)))
			return false;
	}
	return true;
}

/* A value that cannot break the line apart or be mistaken for another key: bare when it is
 * made of safe characters, else quoted with \" \\ and \xNN escapes; at most @p max bytes. */
static void put_value(line_buf *l, const char *key, const char *v, bool quote, size_t max)
{
	if (!v)
		v = "-";
	if (!quote && bare(v) && strlen(v) <= max) {
		put(l, " %s=%s", key, v);
		return;
	}
	put(l, " %s=\"", key);
	size_t i = 0;
	for (const unsigned char *p = (const unsigned char *)v; *p && i < max; p++, i++) {
		if (*p == '"' || *p == '\\')
			put(l, "\\%c", *p);
		else if (*p < 0x20 || *p >= 0x7f)
			put(l, "\\x%02x", *p);
		else
			put(l, "%c", *p);
	}
	put(l, "%s\"", *(const unsigned char *)v && i >= max ? "..." : "");
}

static void audit(ims_rpc_server *s, ims_rpc_call *call, ims_rpc_code code, const char *msg)
{
	line_buf l = {.n = 0};

	put(&l, "audit");
	put_value(&l, "caller", call->authenticated ? call->caller : "-", false, 64);
	put_value(&l, "role", call->authenticated ? ims_role_name(call->role) : "-", false, 16);
	put_value(&l, "peer", call->peer, false, 64);
	if (call->cert_cn[0])
		put_value(&l, "cert", call->cert_cn, false, 64);
	put_value(&l, "method", call->method->label, false, 128);
	put_value(&l, "target", call->target, false, 256);
	put(&l, " result=%s", ims_rpc_code_name(code));
	if (code != IMS_RPC_OK)
		put_value(&l, "msg", msg, true, 512);
	l.b[l.n] = '\0';
	if (s->opts.audit)
		s->opts.audit(s->opts.app, l.b);
	else
		ims_log_info("%s", l.b);
}

/* ---- the pipeline ------------------------------------------------------------------------- */

static double elapsed(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* The end of every call: metrics, audit, in-flight gauge. */
static void conclude(ims_rpc_call *call, ims_rpc__response *resp, const char *msg)
{
	ims_rpc_server *s = call->server;

	ims_rpc__metrics_record(&s->metrics, call->slot, resp->code, elapsed(&call->start));
	if (call->method && call->method->def->mutating)
		audit(s, call, resp->code, msg);
	if (call->in_flight) {
		ims_rpc__metrics_in_flight(&s->metrics, -1);
		call->in_flight = false;
	}
}

static void fail(ims_rpc_call *call, ims_rpc__response *resp, int status, ims_rpc_code code,
		 const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void fail(ims_rpc_call *call, ims_rpc__response *resp, int status, ims_rpc_code code,
		 const char *fmt, ...)
{
	char msg[IMS_ERROR_MSG_MAX];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	ims_rpc__error_response(resp, status, code, msg);
	conclude(call, resp, msg);
}

static const ims_rpc__method *find_method(ims_rpc_server *s, const char *path, size_t *slot)
{
	for (size_t i = 0; i < s->nmethods; i++) {
		if (strcmp(s->methods[i].def->path, path) == 0) {
			*slot = i;
			return &s->methods[i];
		}
	}
	return NULL;
}

/* The codec a media type names: 1 proto, 2 JSON, 0 neither. Parameters (charset) are allowed;
 * JSON is UTF-8 in any case. */
static int codec_of(const char *ct)
{
	size_t n;

	if (!ct)
		return 0;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	n = strcspn(ct, "; \t");
	if (n == strlen(CT_PROTO) && strncasecmp(ct, CT_PROTO, n) == 0)
		return 1;
	if (n == strlen(CT_JSON) && strncasecmp(ct, CT_JSON, n) == 0)
		return 2;
	return 0;
}

/* Connect-Timeout-Ms: 1 to 10 digits. @returns false if it is something else. */
static bool parse_timeout(const char *v, uint64_t *ms)
{
	size_t n = 0;

	*ms = 0;
	while (v[n] >= '0' && v[n] <= '9' && n < 11) {
		*ms = *ms * 10 + (uint64_t)(v[n] - '0');
		n++;
	}
	return n >= 1 && n <= 10 && !v[n];
}

/* A short, printable rendering of a client-supplied string for a message. */
static const char *shown(const char *s, char *buf, size_t cap)
{
	size_t o = 0;

	for (const unsigned char *p = (const unsigned char *)s; *p && o + 4 < cap; p++)
		buf[o++] = (*p >= 0x20 && *p < 0x7f) ? (char)*p : '?';
	if (s[o] && o + 4 >= cap) {
		memcpy(buf + o, "...", 3);
		o += 3;
	}
	buf[o] = '\0';
	return buf;
}

/* @returns true when authenticated (or when no token was given and none is needed). */
static bool authenticate(ims_rpc_server *s, ims_rpc_call *call, const char *authorization,
			 ims_rpc__response *resp)
{
	const char *tok;
	size_t len;

	if (!authorization) {
		if (call->method->def->role == IMS_ROLE_NONE)
			return true;
		fail(call, resp, 401, IMS_RPC_UNAUTHENTICATED,
		     "%s needs a bearer token (Authorization: Bearer TOKEN)", call->method->label);
		resp->www_authenticate = true;
		return false;
	}
	tok = authorization;
	while (*tok == ' ')
		tok++;
	if (strncasecmp(tok, "Bearer ", 7) != 0) {
		fail(call, resp, 401, IMS_RPC_UNAUTHENTICATED,
		     "the Authorization header must be 'Bearer TOKEN'");
		resp->www_authenticate = true;
		return false;
	}
	tok += 7;
	while (*tok == ' ')
		tok++;
	len = strlen(tok);
	while (len && (tok[len - 1] == ' ' || tok[len - 1] == '\t'))
		len--;

	pthread_rwlock_rdlock(&s->tokens_lock);
	const ims_rpc__token *t = ims_rpc__tokens_find(s->tokens, tok, len);
	if (t) {
		call->role = t->role;
		snprintf(call->caller, sizeof(call->caller), "%s", t->name);
		call->authenticated = true;
	}
	pthread_rwlock_unlock(&s->tokens_lock);
	if (!t) {
		fail(call, resp, 401, IMS_RPC_UNAUTHENTICATED, "invalid bearer token");
		resp->www_authenticate = true;
		return false;
	}
	return true;
}

/* Whether GET is allowed: declared NO_SIDE_EFFECTS in the schema, and not audited as
 * mutating by the server that serves it (both must agree that it is a read). */
static bool takes_get(const ims_rpc__method *m)
{
	if (m->def->mutating)
		return false;
	for (const char *const *p = ims_rpc__no_side_effects; *p; p++)
		if (strcmp(*p, m->def->path) == 0)
			return true;
	return false;
}

/* A GET call (Connect's encoding of an idempotent unary call in the query): its message is
 * decoded into the call's arena. @returns false with the answer in @p resp. */
static bool begin_get(ims_rpc_call *call, const ims_rpc__head *h, ims_rpc__response *resp)
{
	char buf[80];
	const char *m = h->q_message ? h->q_message : "";

	if (!takes_get(call->method)) {
		fail(call, resp, 405, IMS_RPC_UNIMPLEMENTED,
		     "%s takes POST only; GET is for the reads declared idempotency_level "
		     "NO_SIDE_EFFECTS",
		     call->method->label);
		resp->allow = "POST";
		return false;
	}
	if (!h->q_connect || strcmp(h->q_connect, "v1") != 0) {
		fail(call, resp, 400, IMS_RPC_INVALID_ARGUMENT,
		     "a GET call needs the query parameter connect=v1");
		return false;
	}
	if (!h->q_encoding ||
	    (strcmp(h->q_encoding, "proto") != 0 && strcmp(h->q_encoding, "json") != 0)) {
		fail(call, resp, 400, IMS_RPC_INVALID_ARGUMENT,
		     "a GET call needs the query parameter encoding=proto or encoding=json, not "
		     "'%s'",
		     h->q_encoding ? shown(h->q_encoding, buf, 40) : "");
		return false;
	}
	if (h->q_compression && strcmp(h->q_compression, "identity") != 0) {
		fail(call, resp, 501, IMS_RPC_UNIMPLEMENTED,
		     "compression '%s' is not supported: send compression=identity or none",
		     shown(h->q_compression, buf, 40));
		return false;
	}
	call->json = strcmp(h->q_encoding, "json") == 0;
	size_t len = strlen(m);
	if (h->q_base64 && strcmp(h->q_base64, "1") == 0) {
		unsigned char *raw;
		size_t n;
		if (ims_rpc__base64_decode(&raw, &n, m, len) < 0) {
			fail(call, resp, 400, IMS_RPC_INVALID_ARGUMENT,
			     "the query parameter message is no base64: %s", ims_error_last());
			return false;
		}
		call->get_body = ims_rpc_call_alloc(call, n + 1);
		if (call->get_body)
			memcpy(call->get_body, raw, n);
		free(raw);
		call->get_len = n;
	} else {
		call->get_body = ims_rpc_call_alloc(call, len + 1);
		if (call->get_body)
			memcpy(call->get_body, m, len);
		call->get_len = len;
	}
	if (!call->get_body) {
		fail(call, resp, 500, IMS_RPC_INTERNAL, "out of memory reading a GET call");
		return false;
	}
	call->is_get = true;
	return true;
}

bool ims_rpc__begin(ims_rpc_server *s, ims_rpc_call *call, const ims_rpc__head *h,
		    const ims_rpc__peer *peer, ims_rpc__response *resp)
{
	char buf[160];
	const char *http_method = h->http_method, *path = h->path;
	const char *content_type = h->content_type;
	bool have_length = h->have_length;
	uint64_t length = h->length;
	uint64_t timeout_ms = 0;

	memset(call, 0, sizeof(*call));
	memset(resp, 0, sizeof(*resp));
	call->server = s;
	clock_gettime(CLOCK_MONOTONIC, &call->start);
	snprintf(call->caller, sizeof(call->caller), "-");
	snprintf(call->peer, sizeof(call->peer), "%s", peer->addr);
	if (peer->cert_ok && peer->cert_cn)
		snprintf(call->cert_cn, sizeof(call->cert_cn), "%s", peer->cert_cn);
	call->slot = s->nmethods;
	ims_rpc__metrics_in_flight(&s->metrics, 1);
	call->in_flight = true;

	call->method = find_method(s, path, &call->slot);
	if (!call->method) {
		/* Connect answers an unknown procedure with 404 */
		fail(call, resp, 404, IMS_RPC_UNIMPLEMENTED, "no method '%s'",
		     shown(path, buf, 120));
		return false;
	}
	bool get = strcmp(http_method, "GET") == 0;
	if (!get && strcmp(http_method, "POST") != 0) {
		bool g = takes_get(call->method);
		fail(call, resp, 405, IMS_RPC_UNIMPLEMENTED, "%s takes POST%s, not %s",
		     call->method->label, g ? " or GET" : "", shown(http_method, buf, 20));
		resp->allow = g ? "POST, GET" : "POST";
		return false;
	}
	if (h->timeout_ms) {
		if (!parse_timeout(h->timeout_ms, &timeout_ms)) {
			fail(call, resp, 400, IMS_RPC_INVALID_ARGUMENT,
			     "Connect-Timeout-Ms must be 1 to 10 digits, not '%s'",
			     shown(h->timeout_ms, buf, 20));
			return false;
		}
		call->timeout_ms = timeout_ms;
		call->deadline = call->start;
		call->deadline.tv_sec += (time_t)(timeout_ms / 1000);
		call->deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (call->deadline.tv_nsec >= 1000000000L) {
			call->deadline.tv_sec++;
			call->deadline.tv_nsec -= 1000000000L;
		}
		call->has_deadline = true;
	}
	if (get) {
		if (!begin_get(call, h, resp))
			return false;
	} else {
		int codec = codec_of(content_type);
		if (!codec) {
			fail(call, resp, 415, IMS_RPC_INVALID_ARGUMENT,
			     "the request's Content-Type must be " CT_PROTO " or " CT_JSON
			     ", not '%s'",
			     content_type ? shown(content_type, buf, 60) : "");
			return false;
		}
		call->json = codec == 2;
		if (h->encoding && strcasecmp(h->encoding, "identity") != 0) {
			fail(call, resp, 501, IMS_RPC_UNIMPLEMENTED,
			     "Content-Encoding '%s' is not supported: send the body uncompressed",
			     shown(h->encoding, buf, 40));
			return false;
		}
	}
	if (have_length && length > s->max_request_bytes) {
		fail(call, resp, 413, IMS_RPC_RESOURCE_EXHAUSTED,
		     "a request body of %" PRIu64 " bytes exceeds the limit of %" PRIu64 " bytes",
		     length, s->max_request_bytes);
		return false;
	}
	if (peer->cert_required && !peer->cert_ok) {
		fail(call, resp, 401, IMS_RPC_UNAUTHENTICATED, "%s",
		     peer->cert_err ? peer->cert_err : "a client certificate is required");
		return false;
	}
	if (!authenticate(s, call, h->authorization, resp))
		return false;
	if (call->role < call->method->def->role) {
		fail(call, resp, 403, IMS_RPC_PERMISSION_DENIED,
		     "'%s' (role %s) may not call %s, which needs role %s", call->caller,
		     ims_role_name(call->role), call->method->label,
		     ims_role_name(call->method->def->role));
		return false;
	}
	if (!call->method->def->fn) {
		fail(call, resp, 501, IMS_RPC_UNIMPLEMENTED, "%s is not implemented",
		     call->method->label);
		return false;
	}
	return true;
}

void ims_rpc__too_large(ims_rpc_server *s, ims_rpc_call *call, ims_rpc__response *resp)
{
	fail(call, resp, 413, IMS_RPC_RESOURCE_EXHAUSTED,
	     "the request body exceeds the limit of %" PRIu64 " bytes", s->max_request_bytes);
}

void ims_rpc__busy(ims_rpc_server *s, ims_rpc_call *call, ims_rpc__response *resp)
{
	fail(call, resp, 429, IMS_RPC_RESOURCE_EXHAUSTED,
	     "%s refused: %u slow calls (waits, verifies, synchronous seals) are in progress, "
	     "the server's limit (slow_calls); try again later",
	     call->method->label, s->slow_max);
}

/* Whether the call's Connect-Timeout-Ms has run out; answered with deadline_exceeded then. */
static bool expired(ims_rpc_call *call, ims_rpc__response *resp, const char *when)
{
	struct timespec now;

	if (!call->has_deadline)
		return false;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (now.tv_sec < call->deadline.tv_sec ||
	    (now.tv_sec == call->deadline.tv_sec && now.tv_nsec < call->deadline.tv_nsec))
		return false;
	fail(call, resp, ims_rpc_code_http_status(IMS_RPC_DEADLINE_EXCEEDED),
	     IMS_RPC_DEADLINE_EXCEEDED,
	     "the call's budget (Connect-Timeout-Ms %" PRIu64 ") ran out %s", call->timeout_ms,
	     when);
	return true;
}

int64_t ims_rpc_call_remaining_ms(const ims_rpc_call *call)
{
	struct timespec now;

	if (!call || !call->has_deadline)
		return -1;
	clock_gettime(CLOCK_MONOTONIC, &now);
	int64_t ns = (int64_t)(call->deadline.tv_sec - now.tv_sec) * 1000000000 +
		     (call->deadline.tv_nsec - now.tv_nsec);
	/* rounded up: a handler that waits this long ends at the deadline, not just before */
	return ns > 0 ? (ns + 999999) / 1000000 : 0;
}

/* The answer of a handler's result @p r and message @p out: encoded, or the error. */
static void answer(ims_rpc_call *call, int r, ProtobufCMessage *out, ims_rpc__response *resp)
{
	const ims_rpc_method *def = call->method->def;

	if (r < 0) {
		ims_rpc_code code = ims_rpc_code_from_errno(r);
		/* a handler that set no message still gets a readable one */
		const char *msg = ims_error_last_code() ? ims_error_last() : ims_strerror(r);
		const char *reason = call->reason[0] ? call->reason : ims_rpc_reason_from_errno(r);
		ims_rpc__error_response_reason(resp, ims_rpc_code_http_status(code), code, msg,
					       reason);
		conclude(call, resp, msg);
		return;
	}
	if (!out || out->descriptor != def->output) {
		ims_log_error("the handler of %s returned %s instead of a %s", call->method->label,
			      out ? out->descriptor->name : "nothing", def->output->name);
		fail(call, resp, 500, IMS_RPC_INTERNAL, "the server failed to build a response");
		return;
	}
	/* the client has given up by now: what it gets must say so, even if the call (a
	 * mutating one) took effect */
	if (expired(call, resp,
		    def->mutating ? "while it was served (it may have taken effect)"
				  : "while it was served"))
		return;

	if (call->json) {
		char *text = NULL;
		size_t n = 0;
		if (ims_rpc__json_encode(&text, &n, out) < 0) {
			fail(call, resp, 500, IMS_RPC_INTERNAL,
			     "the server failed to encode a %s: %s", def->output->name,
			     ims_error_last());
			return;
		}
		resp->body = (uint8_t *)text;
		resp->len = n;
		resp->content_type = CT_JSON;
	} else {
		size_t n = protobuf_c_message_get_packed_size(out);
		resp->body = ims_rpc__body_get(call->server, n ? n : 1, &resp->cap);
		resp->keep_to = call->server;
		if (!resp->body) {
			fail(call, resp, 500, IMS_RPC_INTERNAL,
			     "out of memory encoding the response");
			return;
		}
		resp->len = protobuf_c_message_pack(out, resp->body);
		resp->content_type = CT_PROTO;
	}
	resp->status = 200;
	resp->code = IMS_RPC_OK;
	conclude(call, resp, NULL);
}

/*
 * An UploadChunkRequest (2 MiB of bytes a chunk) read in place: its data points into @p body,
 * which outlives the handler (server.c frees or keeps it after ims_rpc__finish), where
 * protobuf-c's unpack copied every chunk once more. @returns NULL with the answer in @p resp.
 */
static ProtobufCMessage *upload_chunk_in_place(ims_rpc_call *call, const uint8_t *body, size_t len,
					       ims_rpc__response *resp)
{
	ims_rpc__upload_chunk c;
	if (ims_rpc__upload_chunk_scan(&c, body, len) < 0) {
		fail(call, resp, 400, IMS_RPC_INVALID_ARGUMENT,
		     "malformed request: %zu bytes that are no valid %s (%s)", len,
		     imgstore__v1__upload_chunk_request__descriptor.name, ims_error_last());
		return NULL;
	}
	Imgstore__V1__UploadChunkRequest *q = ims_rpc_call_alloc(call, sizeof(*q));
	char *id = q && c.id_len < SIZE_MAX ? ims_rpc_call_alloc(call, c.id_len + 1) : NULL;
	if (!id) {
		fail(call, resp, 500, IMS_RPC_INTERNAL, "out of memory reading a request");
		return NULL;
	}
	imgstore__v1__upload_chunk_request__init(q);
	memcpy(id, c.id, c.id_len); /* NUL-terminated by the zeroed block, as protobuf-c does */
	q->upload_id = id;
	q->offset = c.offset;
	q->data.data = (uint8_t *)c.data;
	q->data.len = c.data_len;
	return &q->base;
}

void ims_rpc__finish(ims_rpc_server *s, ims_rpc_call *call, const uint8_t *body, size_t len,
		     ims_rpc__response *resp)
{
	static const uint8_t empty[1];
	const ims_rpc_method *def = call->method->def;
	ProtobufCMessage *req = NULL, *out = NULL;
	unpack_arena arena = {0};
	ProtobufCAllocator alloc = {.alloc = arena_alloc, .free = arena_free}, *pa = NULL;
	bool in_place = false; /* req is the call's memory, pointing into body */
	int r;

	memset(resp, 0, sizeof(*resp));
	if (call->is_get) {
		body = call->get_body;
		len = call->get_len;
	}
	if (len > s->max_request_bytes) {
		ims_rpc__too_large(s, call, resp);
		return;
	}
	if (expired(call, resp, "before it was served"))
		return;
	if (call->json) {
		r = ims_rpc__json_decode(&req, def->input, (const char *)(body ? body : empty),
					 len);
		if (r < 0) {
			if (r == -ENOMEM)
				fail(call, resp, 500, IMS_RPC_INTERNAL, "%s", ims_error_last());
			else
				fail(call, resp, 400, IMS_RPC_INVALID_ARGUMENT,
				     "malformed request: no valid JSON %s: %s", def->input->name,
				     ims_error_last());
			return;
		}
	} else if (def->input == &imgstore__v1__upload_chunk_request__descriptor) {
		if (!(req = upload_chunk_in_place(call, body, len, resp)))
			return;
		in_place = true;
	} else {
		if (len >= ARENA_MIN_BODY && len <= SIZE_MAX - ARENA_SLACK &&
		    arena_take(&arena, len + ARENA_SLACK)) {
			alloc.allocator_data = &arena;
			pa = &alloc;
		}
		req = protobuf_c_message_unpack(def->input, pa, len, body ? body : empty);
		if (!req) {
			if (pa)
				arena_give_back(&arena);
			fail(call, resp, 400, IMS_RPC_INVALID_ARGUMENT,
			     "malformed request: %zu bytes that are no valid %s", len,
			     def->input->name);
			return;
		}
	}

	ims_error_clear();
	r = def->fn(s->opts.app, call, req, &out);
	if (r == IMS_RPC_DEFERRED && call->deferred)
		goto out; /* called again on its own thread (proto/server.c): no answer yet */
	answer(call, r, out, resp);
out:
	if (in_place)
		; /* the call's memory: freed with the call */
	else if (req && !call->json)
		protobuf_c_message_free_unpacked(req, pa);
	else if (req)
		protobuf_c_message_free_unpacked(req, NULL);
	if (pa)
		arena_give_back(&arena);
}

void ims_rpc__finish_sunk(ims_rpc_server *s, ims_rpc_call *call, void *ctx, int r,
			  ims_rpc__response *resp)
{
	ProtobufCMessage *out = NULL;

	memset(resp, 0, sizeof(*resp));
	ims_error_clear();
	r = call->method->def->sink->end(s->opts.app, call, ctx, r, &out);
	answer(call, r, out, resp);
}

/* ---- without sockets ---------------------------------------------------------------------- */

int ims_rpc_server_dispatch(ims_rpc_server *s, const char *path, const char *content_type,
			    const char *authorization, const uint8_t *body, size_t len, int *status,
			    const char **resp_content_type, uint8_t **resp, size_t *resp_len)
{
	ims_rpc__peer peer = {.addr = "dispatch"};
	ims_rpc__response r;
	ims_rpc_call call;

	if (!s || !path || !status || !resp_content_type || !resp || !resp_len || (!body && len))
		return -EINVAL;
	ims_rpc__head h = {.http_method = "POST",
			   .path = path,
			   .content_type = content_type,
			   .have_length = true,
			   .length = len,
			   .authorization = authorization};
	if (ims_rpc__begin(s, &call, &h, &peer, &r))
		ims_rpc__finish(s, &call, body, len, &r);
	ims_rpc__call_end(&call);
	if (!r.body)
		return ims_error_set(-ENOMEM, "out of memory answering a call of '%s'", path);
	*status = r.status;
	*resp_content_type = r.content_type;
	*resp = r.body;
	*resp_len = r.len;
	return 0;
}
