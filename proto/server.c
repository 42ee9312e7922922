/*
 * proto/server.c: the RPC server's listeners on libmicrohttpd: a TCP socket (TLS, optionally
 * with client certificates) and a Unix socket, each served by its own MHD daemon with a
 * thread pool. The request pipeline itself is in dispatch.c.
 */
#include "proto/server_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <microhttpd.h>

#include "common/error.h"
#include "common/opts.h"
#include "common/log.h"

#define DEFAULT_MAX_REQUEST  (4u << 20)
#define BODY_KEEP_MIN	     (1u << 20) /* bodies kept for reuse: 1 MiB to DEFAULT_MAX_REQUEST */
#define DEFAULT_READ_TIMEOUT 30
#define DEFAULT_THREADS	     8
#define DEFAULT_SLOW_CALLS   64
#define CONNECTION_LIMIT     256
#define UNIX_CONN_MEMORY     (256u << 10) /* MHD's memory of a connection on the Unix socket */
#define SINK_HEAD_MAX	     512u	  /* UploadChunk: its fields before the data, at most */
#define SINK_MIN	     (64u << 10)  /* smaller chunks are read whole */
#define PEM_MAX		     (1u << 20)
/* A chunked body past the limit is read and dropped so that the client gets its 413; past
 * this much more, the connection is cut instead. */
#define DISCARD_MAX (16u << 20)
/* ims_rpc_server_stop() lets calls in progress finish for this long. */
#define STOP_GRACE_MS 10000

struct ims_rpc__listener {
	ims_rpc_server *s;
	struct MHD_Daemon *d;
	int fd; /* the listening socket once quiesced: MHD leaves it to us then */
	bool is_unix;
	bool tls;
	bool cert_required;
};

typedef struct {
	bool rpc;   /* an RPC call was begun: call must be ended */
	bool plain; /* /healthz, /readyz or /metrics */
	bool early; /* resp was decided from the headers; the body is dropped */
	bool too_large;
	bool handed_off; /* a slow call: its thread answers into resp, then resumes conn */
	const char *cert_err;
	struct MHD_Connection *conn;
	ims_rpc_call call;
	ims_rpc__response resp;
	uint8_t *body;
	size_t len, cap;
	uint64_t discarded;
	/* UploadChunk's data put into its method's sink as it arrives (ims_rpc_chunk_sink):
	 * SINK_HEAD while the body's start is read into head, SINK_DATA once the sink took it */
	enum { SINK_NONE, SINK_HEAD, SINK_DATA } sink;
	void *sink_ctx;
	int sink_err;		     /* the first put's failure */
	size_t sink_pos, sink_len;   /* data put so far, of sink_len */
	uint64_t sink_total;	     /* the body's length */
	uint8_t head[SINK_HEAD_MAX]; /* the body's start: the fields before the data */
	size_t hlen;
} request;

/* ---- files and sockets -------------------------------------------------------------------- */

static int read_pem(const char *what, const char *path, char **out)
{
	struct stat st;
	int r = 0;
	int fd = ims_rpc__open_secret(what, path);

	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > PEM_MAX) {
		r = ims_error_set(-EINVAL, "%s '%s' is not a regular file of at most %u bytes",
				  what, path, PEM_MAX);
		goto out;
	}
	r = ims_rpc__read_secret(out, NULL, fd, (size_t)st.st_size, what, path);
out:
	close(fd);
	return r;
}

static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* GnuTLS says what is wrong with the files; MHD would only fail to start. */
static int check_tls_files(const ims_rpc_server_opts *o, const char *cert, const char *key,
			   const char *ca)
{
	gnutls_certificate_credentials_t cred;
	gnutls_datum_t c = {(unsigned char *)cert, (unsigned)strlen(cert)};
	gnutls_datum_t k = {(unsigned char *)key, (unsigned)strlen(key)};
	int r = 0, g;

	if (gnutls_certificate_allocate_credentials(&cred) < 0)
		return ims_error_set(-ENOMEM, "out of memory checking the TLS files");
	g = gnutls_certificate_set_x509_key_mem(cred, &c, &k, GNUTLS_X509_FMT_PEM);
	if (g < 0) {
		r = ims_error_set(-EINVAL,
				  "tls_cert '%s' and tls_key '%s' are not a PEM certificate and "
				  "its key: %s",
				  o->tls_cert, o->tls_key, gnutls_strerror(g));
		goto out;
	}
	if (ca) {
		gnutls_datum_t a = {(unsigned char *)ca, (unsigned)strlen(ca)};
		g = gnutls_certificate_set_x509_trust_mem(cred, &a, GNUTLS_X509_FMT_PEM);
		if (g <= 0) {
			r = ims_error_set(-EINVAL,
					  "tls_client_ca '%s' holds no PEM certificate%s%s",
					  o->tls_client_ca, g < 0 ? ": " : "",
					  g < 0 ? gnutls_strerror(g) : "");
			goto out;
		}
	}
out:
	gnutls_certificate_free_credentials(cred);
	return r;
}

/* A priority string that GnuTLS takes and that enables TLS 1.2 or 1.3, and nothing older. */
static int check_priorities(const char *prio)
{
	gnutls_priority_t p;
	const char *at = NULL;
	const unsigned *v = NULL;
	bool modern = false;
	int g = gnutls_priority_init(&p, prio, &at);
	int r = 0;

	if (g < 0) {
		bool where = at && at > prio && at < prio + strlen(prio);
		return ims_error_set(-EINVAL, "tls_priorities '%s' is refused by GnuTLS%s%s%s: %s",
				     prio, where ? " (at '" : "", where ? at : "",
				     where ? "')" : "", gnutls_strerror(g));
	}
	g = gnutls_priority_protocol_list(p, &v);
	for (int i = 0; i < g; i++) {
		if (v[i] == GNUTLS_SSL3 || v[i] == GNUTLS_TLS1_0 || v[i] == GNUTLS_TLS1_1) {
			r = ims_error_set(-EINVAL,
					  "tls_priorities '%s' enables %s: TLS 1.2 is the oldest "
					  "version allowed",
					  prio, gnutls_protocol_get_name((gnutls_protocol_t)v[i]));
			goto out;
		}
		if (v[i] == GNUTLS_TLS1_2 || v[i] == GNUTLS_TLS1_3)
			modern = true;
	}
	if (!modern)
		r = ims_error_set(-EINVAL,
				  "tls_priorities '%s' enables neither TLS 1.2 nor TLS 1.3", prio);
out:
	gnutls_priority_deinit(p);
	return r;
}

static int set_flags(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

static int listen_tcp(const char *address, int *out, uint16_t *port)
{
	struct addrinfo hints = {.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
				 .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	char host[256];
	const char *colon, *h = host, *p;
	int fd = -1, r, one = 1;

	if (address[0] == '[') {
		const char *end = strchr(address, ']');
		if (!end || end[1] != ':' || (size_t)(end - address - 1) >= sizeof(host))
			return ims_error_set(-EINVAL, "bad listen address '%s' (HOST:PORT)",
					     address);
		memcpy(host, address + 1, (size_t)(end - address - 1));
		host[end - address - 1] = '\0';
		p = end + 2;
	} else {
		colon = strrchr(address, ':');
		if (!colon || (size_t)(colon - address) >= sizeof(host))
			return ims_error_set(-EINVAL, "bad listen address '%s' (HOST:PORT)",
					     address);
		memcpy(host, address, (size_t)(colon - address));
		host[colon - address] = '\0';
		p = colon + 1;
	}
	if (!host[0])
		h = NULL; /* ":PORT": every address */
	r = getaddrinfo(h, p, &hints, &res);
	if (r != 0)
		return ims_error_set(-EINVAL, "cannot resolve listen address '%s': %s", address,
				     gai_strerror(r));

	fd = socket(res->ai_family, res->ai_socktype | SOCK_CLOEXEC, res->ai_protocol);
	if (fd < 0) {
		r = -errno;
		ims_error_set(r, "cannot make a socket for '%s': %s", address, ims_strerror(r));
		goto out;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, res->ai_addr, res->ai_addrlen) < 0) {
		r = -errno;
		if (r == -EADDRINUSE)
			ims_error_set(r, "listen address '%s' is already in use", address);
		else
			ims_error_set(r, "cannot bind to '%s': %s", address, ims_strerror(r));
		goto out;
	}
	if (listen(fd, 128) < 0 || (r = set_flags(fd)) < 0) {
		r = -errno;
		ims_error_set(r, "cannot listen on '%s': %s", address, ims_strerror(r));
		goto out;
	}

	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	*port = 0;
	if (getsockname(fd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET)
			*port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			*port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	*out = fd;
	fd = -1;
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	freeaddrinfo(res);
	return r;
}

/* Bind @p path, replacing a socket file nobody listens on any more. */
static int listen_unix(const char *path, int *out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = -1, r;

	if (strlen(path) >= sizeof(sa.sun_path))
		return ims_error_set(-ENAMETOOLONG, "unix_socket '%s' is longer than %zu bytes",
				     path, sizeof(sa.sun_path) - 1);
	memcpy(sa.sun_path, path, strlen(path) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		r = -errno;
		return ims_error_set(r, "cannot make a socket for '%s': %s", path, ims_strerror(r));
	}
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		struct stat st;
		r = -errno;
		if (r != -EADDRINUSE) {
			ims_error_set(r, "cannot bind unix_socket '%s': %s", path, ims_strerror(r));
			goto out;
		}
		if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode)) {
			r = ims_error_set(-EEXIST, "unix_socket '%s' exists and is not a socket",
					  path);
			goto out;
		}
		int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (probe < 0) {
			r = -errno;
			ims_error_set(r, "cannot make a socket: %s", ims_strerror(r));
			goto out;
		}
		int c = connect(probe, (struct sockaddr *)&sa, sizeof(sa));
		int e = errno;
		close(probe);
		if (c == 0 || e != ECONNREFUSED) {
			r = ims_error_set(-EADDRINUSE, "something listens on unix_socket '%s'",
					  path);
			goto out;
		}
		/* stale: its server is gone */
		if (unlink(path) < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
			r = -errno;
			ims_error_set(r, "cannot replace the stale unix_socket '%s': %s", path,
				      ims_strerror(r));
			goto out;
		}
	}
	/* Nobody can connect before listen(): set the mode first. */
	if (chmod(path, 0660) < 0) {
		r = -errno;
		ims_error_set(r, "cannot chmod unix_socket '%s': %s", path, ims_strerror(r));
		unlink(path);
		goto out;
	}
	if (listen(fd, 128) < 0 || set_flags(fd) < 0) {
		r = -errno;
		ims_error_set(r, "cannot listen on unix_socket '%s': %s", path, ims_strerror(r));
		unlink(path);
		goto out;
	}
	*out = fd;
	fd = -1;
	r = 0;
out:
	if (fd >= 0)
		close(fd);
	return r;
}

/* ---- MHD callbacks ------------------------------------------------------------------------ */

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
static void mhd_log(void *cls, const char *fmt, va_list ap)
{
	char buf[512];

	vsnprintf(buf, sizeof(buf), fmt, ap);
	buf[strcspn(buf, "\n")] = '\0';
	ims_log_debug("microhttpd: %s", buf);
}
#pragma GCC diagnostic pop

/* An answer's body from the server's kept bodies, on its way: kept again once MHD has sent it. */
typedef struct {
	ims_rpc_server *s;
	uint8_t *body;
	size_t cap;
} sent_body;

static void sent_body_done(void *cls)
{
	sent_body *t = cls;
	free(ims_rpc__body_keep(t->s, t->body, t->cap));
	free(t);
}

static enum MHD_Result queue(struct MHD_Connection *conn, ims_rpc__response *r)
{
	struct MHD_Response *mr;
	enum MHD_Result ret;

	if (r->body) {
		/* a large answer (a DownloadChunk's 2 MiB) goes back to the kept bodies when sent:
		 * fresh memory for each was mapped, faulted in page by page and unmapped again */
		sent_body *t = r->keep_to && r->cap >= BODY_KEEP_MIN ? malloc(sizeof(*t)) : NULL;
		if (t) {
			*t = (sent_body){.s = r->keep_to, .body = r->body, .cap = r->cap};
			mr = MHD_create_response_from_buffer_with_free_callback_cls(
				r->len, r->body, sent_body_done, t);
			if (!mr)
				free(t);
		} else {
			mr = MHD_create_response_from_buffer_with_free_callback(r->len, r->body,
										free);
		}
		if (!mr)
			return MHD_NO; /* r->body is freed with the request */
		r->body = NULL;
		r->len = 0;
	} else {
		mr = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
		if (!mr)
			return MHD_NO;
	}
	if (r->content_type)
		MHD_add_response_header(mr, MHD_HTTP_HEADER_CONTENT_TYPE, r->content_type);
	if (r->allow)
		MHD_add_response_header(mr, MHD_HTTP_HEADER_ALLOW, r->allow);
	if (r->www_authenticate)
		MHD_add_response_header(mr, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
	ret = MHD_queue_response(conn, (unsigned)r->status, mr);
	MHD_destroy_response(mr);
	return ret;
}

static void text_response(ims_rpc__response *r, int status, const char *content_type, char *body,
			  size_t len)
{
	memset(r, 0, sizeof(*r));
	r->status = status;
	r->content_type = content_type;
	r->body = (uint8_t *)body;
	r->len = len;
}

static void peer_address(struct ims_rpc__listener *l, struct MHD_Connection *conn, char *buf,
			 size_t cap)
{
	const union MHD_ConnectionInfo *ci;
	char ip[INET6_ADDRSTRLEN];

	snprintf(buf, cap, "%s", l->is_unix ? "unix" : "-");
	if (l->is_unix)
		return;
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (!ci || !ci->client_addr)
		return;
	if (ci->client_addr->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)ci->client_addr;
		if (inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip)))
			snprintf(buf, cap, "%s:%u", ip, ntohs(a->sin_port));
	} else if (ci->client_addr->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ci->client_addr;
		if (inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip)))
			snprintf(buf, cap, "[%s]:%u", ip, ntohs(a->sin6_port));
	}
}

/* A certificate signed by tls_client_ca, its CN into @p cn. @returns NULL or why not. */
static const char *check_client_cert(struct MHD_Connection *conn, char *cn, size_t cap)
{
	const union MHD_ConnectionInfo *ci;
	gnutls_session_t session;
	const gnutls_datum_t *peers;
	gnutls_x509_crt_t crt;
	unsigned status = 0, n = 0;
	size_t len = cap;
	int g;

	cn[0] = '\0';
	ci = MHD_get_connection_info(conn, MHD_CONNECTION_INFO_GNUTLS_SESSION);
	if (!ci || !ci->tls_session)
		return "a client certificate is required";
	session = (gnutls_session_t)ci->tls_session;
	g = gnutls_certificate_verify_peers2(session, &status);
	if (g == GNUTLS_E_NO_CERTIFICATE_FOUND)
		return "a client certificate signed by the server's tls_client_ca is required";
	if (g < 0 || status != 0)
		return "the client certificate is not signed by the server's tls_client_ca, or "
		       "has expired";
	peers = gnutls_certificate_get_peers(session, &n);
	if (!peers || n == 0 || gnutls_x509_crt_init(&crt) < 0)
		return "cannot read the client certificate";
	if (gnutls_x509_crt_import(crt, &peers[0], GNUTLS_X509_FMT_DER) < 0 ||
	    gnutls_x509_crt_get_dn_by_oid(crt, GNUTLS_OID_X520_COMMON_NAME, 0, 0, cn, &len) < 0)
		cn[0] = '\0';
	gnutls_x509_crt_deinit(crt);
	return NULL;
}

static enum MHD_Result serve_plain(ims_rpc_server *s, struct MHD_Connection *conn, request *rq,
				   const char *url, const char *method, const char *cert_err)
{
	ims_rpc__response *r = &rq->resp;

	if (cert_err) {
		ims_rpc__error_response(r, 401, IMS_RPC_UNAUTHENTICATED, cert_err);
		return queue(conn, r);
	}
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
		ims_rpc__error_response(r, 405, IMS_RPC_UNIMPLEMENTED, "use GET");
		r->allow = "GET, HEAD";
		return queue(conn, r);
	}
	if (strcmp(url, "/readyz") == 0) {
		char why[512] = "";
		bool ready = !s->opts.ready || s->opts.ready(s->opts.app, why, sizeof(why)) == 0;
		char *body = NULL;
		int n = asprintf(&body, "%s\n", why[0] ? why : ready ? "ok" : "not ready");
		if (n < 0)
			return MHD_NO;
		text_response(r, ready ? 200 : 503, "text/plain; charset=utf-8", body, (size_t)n);
		return queue(conn, r);
	}
	if (strcmp(url, "/healthz") == 0) {
		const char *h = s->opts.health ? s->opts.health(s->opts.app) : NULL;
		char *body = NULL;
		if (!h)
			h = "ok";
		int n = asprintf(&body, "%s\n", h);
		if (n < 0)
			return MHD_NO;
		text_response(r, strcmp(h, "ok") == 0 ? 200 : 503, "text/plain; charset=utf-8",
			      body, (size_t)n);
		return queue(conn, r);
	}

	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	if (!f)
		return MHD_NO;
	ims_rpc__metrics_write(&s->metrics, s->labels, f);
	pthread_mutex_lock(&s->slow_lock);
	unsigned slow = s->slow_running;
	pthread_mutex_unlock(&s->slow_lock);
	fprintf(f,
		"# HELP imgstore_rpc_slow_calls Calls of slow methods (waits, verifies) in "
		"progress, beside the request threads.\n"
		"# TYPE imgstore_rpc_slow_calls gauge\n"
		"imgstore_rpc_slow_calls %u\n"
		"# HELP imgstore_rpc_slow_calls_limit The most slow calls served at once "
		"(slow_calls).\n"
		"# TYPE imgstore_rpc_slow_calls_limit gauge\n"
		"imgstore_rpc_slow_calls_limit %u\n",
		slow, s->slow_max);
	if (s->opts.metrics)
		s->opts.metrics(s->opts.app, f);
	if (fclose(f) != 0) {
		free(buf);
		return MHD_NO;
	}
	text_response(r, 200, "text/plain; version=0.0.4; charset=utf-8", buf, len);
	return queue(conn, r);
}

/* ---- slow calls ---------------------------------------------------------------------------- */

/* One of the counts of slow calls drops: @p calls when MHD is done with one (answer sent or
 * connection closed), @p threads when its thread no longer touches MHD. */
static void slow_end(ims_rpc_server *s, unsigned calls, unsigned threads)
{
	pthread_mutex_lock(&s->slow_lock);
	s->slow_running -= calls;
	s->slow_threads -= threads;
	pthread_cond_broadcast(&s->slow_ended);
	pthread_mutex_unlock(&s->slow_lock);
}

uint8_t *ims_rpc__body_get(ims_rpc_server *s, size_t want, size_t *cap)
{
	uint8_t *b = NULL;
	if (want >= BODY_KEEP_MIN) {
		pthread_mutex_lock(&s->bodies_lock);
		for (unsigned i = 0; i < s->nbodies; i++)
			if (s->bodies[i].cap >= want) {
				b = s->bodies[i].buf;
				*cap = s->bodies[i].cap;
				s->bodies[i] = s->bodies[--s->nbodies];
				break;
			}
		pthread_mutex_unlock(&s->bodies_lock);
	}
	if (!b) {
		size_t c = want >= BODY_KEEP_MIN ? (want + 0xffffu) & ~(size_t)0xffffu : want;
		if ((b = malloc(c)))
			*cap = c;
	}
	return b;
}

uint8_t *ims_rpc__body_keep(ims_rpc_server *s, uint8_t *b, size_t cap)
{
	if (!b || cap < BODY_KEEP_MIN || cap > DEFAULT_MAX_REQUEST)
		return b;
	pthread_mutex_lock(&s->bodies_lock);
	if (s->nbodies < sizeof(s->bodies) / sizeof(s->bodies[0])) {
		s->bodies[s->nbodies].buf = b;
		s->bodies[s->nbodies++].cap = cap;
		b = NULL;
	} else {
		/* full: this one replaces a smaller one. An upload's last chunk is shorter; kept,
		 * its body fitted none of the next upload's chunks, and one chunk in four was then
		 * read into fresh memory (page faults) and freed again. */
		unsigned small = 0;
		for (unsigned i = 1; i < s->nbodies; i++)
			if (s->bodies[i].cap < s->bodies[small].cap)
				small = i;
		if (s->bodies[small].cap < cap) {
			uint8_t *old = s->bodies[small].buf;
			s->bodies[small].buf = b;
			s->bodies[small].cap = cap;
			b = old;
		}
	}
	pthread_mutex_unlock(&s->bodies_lock);
	return b;
}

/* Done with @p rq's body: kept for another request (a few of 1 to 4 MiB), or freed. */
static void body_put(ims_rpc_server *s, request *rq)
{
	uint8_t *b = rq->body;
	size_t cap = rq->cap;
	rq->body = NULL;
	rq->len = rq->cap = 0;
	free(ims_rpc__body_keep(s, b, cap));
}

static void *slow_main(void *arg)
{
	request *rq = arg;
	ims_rpc_server *s = rq->call.server;

	ims_rpc__finish(s, &rq->call, rq->body, rq->len, &rq->resp);
	body_put(s, rq);
	/* MHD calls on_access again, which queues resp; rq is not ours from here on */
	MHD_resume_connection(rq->conn);
	slow_end(s, 0, 1);
	return NULL;
}

/* One more slow call may start: counted. @returns false when slow_calls are all taken. */
static bool slow_take(ims_rpc_server *s)
{
	pthread_mutex_lock(&s->slow_lock);
	bool ok = s->slow_running < s->slow_max;
	if (ok) {
		s->slow_running++;
		s->slow_threads++;
	}
	pthread_mutex_unlock(&s->slow_lock);
	return ok;
}

bool ims_rpc_call_defer(ims_rpc_call *call)
{
	if (!call->may_defer || call->deferred || !slow_take(call->server))
		return false;
	call->deferred = true;
	return true;
}

bool ims_rpc_call_may_wait(const ims_rpc_call *call)
{
	return !call->may_defer;
}

/*
 * Run a slow call on a thread of its own with its connection suspended, so that it holds no
 * request thread; @p taken: its slow slot is counted already (a deferred call). @returns false
 * when it was not handed off: rq->resp holds the answer.
 */
static bool run_slow(ims_rpc_server *s, struct MHD_Connection *conn, request *rq, bool taken)
{
	pthread_attr_t attr;
	pthread_t th;
	int e;

	if (!taken && !slow_take(s)) {
		ims_rpc__busy(s, &rq->call, &rq->resp);
		return false;
	}
	rq->call.may_defer = false; /* on its own thread: a wait holds no request thread */
	rq->conn = conn;
	rq->handed_off = true;
	/* suspended before the thread can resume it */
	MHD_suspend_connection(conn);
	e = pthread_attr_init(&attr);
	if (e == 0) {
		pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		e = pthread_create(&th, &attr, slow_main, rq);
		pthread_attr_destroy(&attr);
	}
	if (e != 0) {
		ims_log_error("cannot start a thread for a call of %s: %s", rq->call.method->label,
			      ims_strerror(-e));
		ims_rpc__busy(s, &rq->call, &rq->resp);
		MHD_resume_connection(conn);
		slow_end(s, 0, 1);
	}
	return true;
}

/*
 * The first call for a request, its headers read: a plain page (/healthz, /readyz, /metrics)
 * is marked to be served once the request is read; an RPC is checked (ims_rpc__begin) and
 * its body buffer allocated once when Content-Length gives the size.
 */
static enum MHD_Result begin_request(struct ims_rpc__listener *l, struct MHD_Connection *conn,
				     const char *url, const char *method, void **req_cls)
{
	ims_rpc_server *s = l->s;
	char addr[64], cn[IMS_RPC__NAME_MAX + 1] = "";
	const char *cert_err = NULL;
	request *rq;

	rq = calloc(1, sizeof(*rq));
	if (!rq)
		return MHD_NO;
	*req_cls = rq;
	peer_address(l, conn, addr, sizeof(addr));
	if (l->cert_required)
		cert_err = check_client_cert(conn, cn, sizeof(cn));
	if (strcmp(url, "/healthz") == 0 || strcmp(url, "/readyz") == 0 ||
	    strcmp(url, "/metrics") == 0) {
		/* answered once the request is read: MHD keeps the connection then */
		rq->plain = true;
		rq->cert_err = cert_err;
		return MHD_YES;
	}

	const char *ct =
		MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE);
	const char *cl =
		MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
	const char *auth =
		MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
	ims_rpc__peer peer = {.addr = addr,
			      .cert_required = l->cert_required,
			      .cert_ok = l->cert_required && !cert_err,
			      .cert_cn = cn[0] ? cn : NULL,
			      .cert_err = cert_err};
	uint64_t length = 0;
	bool have_length = false;
	if (cl) {
		char *end;
		errno = 0;
		length = strtoull(cl, &end, 10);
		have_length = errno == 0 && end != cl && !*end;
		if (!have_length)
			length = UINT64_MAX; /* MHD refuses it anyway; never a buffer size */
		have_length = true;
	}
	rq->rpc = true;
	ims_rpc__head h = {
		.http_method = method,
		.path = url,
		.content_type = ct,
		.have_length = have_length,
		.length = length,
		.authorization = auth,
		.timeout_ms =
			MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Connect-Timeout-Ms"),
		.encoding = MHD_lookup_connection_value(conn, MHD_HEADER_KIND,
							MHD_HTTP_HEADER_CONTENT_ENCODING),
	};
	if (strcmp(method, "GET") == 0) {
		/* Connect's GET: the message and its encoding in the query (URL-decoded by MHD) */
		h.q_connect = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "connect");
		h.q_encoding = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "encoding");
		h.q_message = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "message");
		h.q_base64 = MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "base64");
		h.q_compression =
			MHD_lookup_connection_value(conn, MHD_GET_ARGUMENT_KIND, "compression");
	}
	if (!ims_rpc__begin(s, &rq->call, &h, &peer, &rq->resp)) {
		/* A body over the limit is not read at all (MHD closes the connection
		 * after the answer); a smaller one is read and dropped, so that the
		 * connection stays usable. */
		if (have_length && length > s->max_request_bytes)
			return queue(conn, &rq->resp);
		rq->early = true;
		return MHD_YES;
	}
	const ims_rpc_method *def = rq->call.method->def;
	if (def->sink && !def->slow && !rq->call.json && !rq->call.is_get && have_length &&
	    length >= SINK_MIN) {
		rq->sink = SINK_HEAD; /* no buffer: the data may go to the sink */
		rq->sink_total = length;
		return MHD_YES;
	}
	/* Content-Length is within the limit here: the buffer is allocated once */
	if (have_length && length > 0) {
		rq->body = ims_rpc__body_get(s, (size_t)length, &rq->cap);
		if (!rq->body)
			return MHD_NO;
	}
	return MHD_YES;
}

static enum MHD_Result receive_body(ims_rpc_server *s, request *rq, const char *upload_data,
				    size_t n);

static void sink_put(request *rq, const uint8_t *p, size_t n)
{
	if (!n || rq->sink_err)
		return;
	if (n > rq->sink_len - rq->sink_pos)
		rq->sink_err = ims_error_set(-EINVAL, "the chunk's bytes pass its length");
	else
		rq->sink_err = rq->call.method->def->sink->put(rq->sink_ctx, p, n, rq->sink_pos);
	if (rq->sink_err > 0)
		rq->sink_err = -EIO;
	rq->sink_pos += n;
}

/*
 * A piece of an UploadChunk's body while its bytes may go to the sink: its start is read
 * into head until its fields before the data are known; the sink is offered the chunk then,
 * and takes the rest as it comes. A body of another shape, or one the sink leaves, is read
 * whole as any other.
 */
static enum MHD_Result receive_sunk(ims_rpc_server *s, request *rq, const uint8_t *p, size_t n)
{
	if (rq->sink == SINK_DATA) {
		sink_put(rq, p, n);
		return MHD_YES;
	}
	size_t k = n < sizeof(rq->head) - rq->hlen ? n : sizeof(rq->head) - rq->hlen;
	memcpy(rq->head + rq->hlen, p, k);
	rq->hlen += k;
	ims_rpc__upload_chunk c;
	size_t prefix = 0;
	int st = ims_rpc__upload_chunk_head(&c, &prefix, rq->head, rq->hlen, rq->sink_total);
	if (st == 0 && rq->hlen < sizeof(rq->head) && rq->hlen < rq->sink_total)
		return MHD_YES; /* all of the piece is in head: more to come */
	char id[SINK_HEAD_MAX];
	if (st == 1 && c.data_len > 0 && c.id_len < sizeof(id)) {
		memcpy(id, c.id, c.id_len);
		id[c.id_len] = '\0'; /* a C string, to its first NUL, as protobuf-c's */
		if (rq->call.method->def->sink->begin(s->opts.app, id, c.offset, c.data_len,
						      &rq->sink_ctx) == 0) {
			rq->sink = SINK_DATA;
			rq->sink_len = c.data_len;
			sink_put(rq, rq->head + prefix, rq->hlen - prefix);
			sink_put(rq, p + k, n - k);
			return MHD_YES;
		}
	}
	/* read whole, and decoded and handled as usual */
	rq->sink = SINK_NONE;
	rq->body = ims_rpc__body_get(s, (size_t)rq->sink_total, &rq->cap);
	if (!rq->body)
		return MHD_NO;
	memcpy(rq->body, rq->head, rq->hlen);
	rq->len = rq->hlen;
	return k < n ? receive_body(s, rq, (const char *)p + k, n - k) : MHD_YES;
}

/* A piece of the body of an RPC: appended, or counted and dropped once the call is refused. */
static enum MHD_Result receive_body(ims_rpc_server *s, request *rq, const char *upload_data,
				    size_t n)
{
	if (rq->early || rq->too_large) {
		rq->discarded += n;
		return rq->discarded > DISCARD_MAX ? MHD_NO : MHD_YES;
	}
	if (rq->sink != SINK_NONE)
		return receive_sunk(s, rq, (const uint8_t *)upload_data, n);
	if (n > s->max_request_bytes - rq->len) {
		/* no Content-Length (chunked): refused as soon as it exceeds the limit */
		rq->too_large = true;
		rq->discarded = rq->len + n;
		body_put(s, rq);
		return MHD_YES;
	}
	if (rq->len + n > rq->cap) {
		size_t ncap = rq->cap ? rq->cap : 16384;
		while (ncap < rq->len + n)
			ncap *= 2;
		if (ncap > s->max_request_bytes)
			ncap = (size_t)s->max_request_bytes;
		uint8_t *b = realloc(rq->body, ncap);
		if (!b)
			return MHD_NO;
		rq->body = b;
		rq->cap = ncap;
	}
	memcpy(rq->body + rq->len, upload_data, n);
	rq->len += n;
	return MHD_YES;
}

/* The whole request is read: answer it, or hand a slow call to a worker. */
static enum MHD_Result finish_request(ims_rpc_server *s, struct MHD_Connection *conn, request *rq)
{
	if (rq->handed_off) /* resumed: the slow call's answer is in rq->resp */
		return queue(conn, &rq->resp);
	if (rq->sink == SINK_DATA) {
		int r = rq->sink_err;
		if (r == 0 && rq->sink_pos != rq->sink_len)
			r = ims_error_set(-EIO, "the chunk's body ended after %zu of %zu bytes",
					  rq->sink_pos, rq->sink_len);
		rq->sink = SINK_NONE; /* ended here */
		ims_rpc__finish_sunk(s, &rq->call, rq->sink_ctx, r, &rq->resp);
		return queue(conn, &rq->resp);
	}
	if (rq->sink == SINK_HEAD) { /* no body at all: cannot be, but read as any other */
		rq->sink = SINK_NONE;
		ims_rpc__finish(s, &rq->call, rq->head, rq->hlen, &rq->resp);
		return queue(conn, &rq->resp);
	}
	if (rq->too_large && !rq->early)
		ims_rpc__too_large(s, &rq->call, &rq->resp);
	else if (!rq->early && rq->call.method->def->slow) {
		if (run_slow(s, conn, rq, false))
			return MHD_YES;
	} else if (!rq->early) {
		rq->call.may_defer = true;
		ims_rpc__finish(s, &rq->call, rq->body, rq->len, &rq->resp);
		if (rq->call.deferred) { /* it waits: on a thread of its own, called again */
			run_slow(s, conn, rq, true);
			return MHD_YES;
		}
	}
	body_put(s, rq);
	return queue(conn, &rq->resp);
}

static enum MHD_Result on_access(void *cls, struct MHD_Connection *conn, const char *url,
				 const char *method, const char *version, const char *upload_data,
				 size_t *upload_data_size, void **req_cls)
{
	struct ims_rpc__listener *l = cls;
	ims_rpc_server *s = l->s;
	request *rq = *req_cls;

	if (!rq)
		return begin_request(l, conn, url, method, req_cls);
	if (rq->plain && *upload_data_size == 0)
		return serve_plain(s, conn, rq, url, method, rq->cert_err);
	if (!rq->rpc) {
		rq->discarded += *upload_data_size;
		*upload_data_size = 0;
		return rq->discarded > DISCARD_MAX ? MHD_NO : MHD_YES;
	}

	if (*upload_data_size) {
		size_t n = *upload_data_size;

		*upload_data_size = 0;
		return receive_body(s, rq, upload_data, n);
	}
	return finish_request(s, conn, rq);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **req_cls,
			 enum MHD_RequestTerminationCode toe)
{
	struct ims_rpc__listener *l = cls;
	request *rq = *req_cls;

	if (!rq)
		return;
	if (rq->handed_off)
		slow_end(l->s, 1, 0);
	if (rq->sink == SINK_DATA) /* the connection ended within the chunk: the sink lets go */
		rq->call.method->def->sink->end(l->s->opts.app, &rq->call, rq->sink_ctx,
						-ECONNRESET, NULL);
	if (rq->rpc)
		ims_rpc__call_end(&rq->call);
	ims_rpc__response_free(&rq->resp);
	body_put(l->s, rq);
	free(rq);
	*req_cls = NULL;
}

/* ---- start and stop ----------------------------------------------------------------------- */

static int start_listener(ims_rpc_server *s, struct ims_rpc__listener **out, int fd, bool is_unix,
			  const char *name)
{
	const ims_rpc_server_opts *o = &s->opts;
	struct ims_rpc__listener *l = calloc(1, sizeof(*l));
	struct MHD_OptionItem tls[6];
	size_t nt = 0;
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG |
			 MHD_USE_ITC | MHD_ALLOW_SUSPEND_RESUME;

	if (!l) {
		close(fd);
		return ims_error_set(-ENOMEM, "out of memory starting the RPC server");
	}
	l->s = s;
	l->fd = -1;
	l->is_unix = is_unix;
	l->tls = !is_unix && s->cert_pem;
	l->cert_required = l->tls && s->ca_pem;
	if (l->tls) {
		flags |= MHD_USE_TLS;
		tls[nt++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0, s->cert_pem};
		tls[nt++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0, s->key_pem};
		tls[nt++] =
			(struct MHD_OptionItem){MHD_OPTION_HTTPS_PRIORITIES, 0, s->tls_priorities};
		if (s->ca_pem)
			tls[nt++] =
				(struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0, s->ca_pem};
	}
	if (is_unix)
		/* MHD reads a request into its connection's memory, half of it at first: an
		 * upload's body came in reads of 16 KiB, 64 KiB with this (a quarter of the reads
		 * and calls, docs/BENCHMARKS.md). Local clients only: over TCP a TLS record is 16
		 * KiB anyway, and each connection a stranger opens may take this much. */
		tls[nt++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT,
						    (intptr_t)UNIX_CONN_MEMORY, NULL};
	tls[nt] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};

	l->d = MHD_start_daemon(
		flags, 0, NULL, NULL, on_access, l, MHD_OPTION_LISTEN_SOCKET, (MHD_socket)fd,
		MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(o->threads ? o->threads : DEFAULT_THREADS),
		MHD_OPTION_CONNECTION_LIMIT, (unsigned)CONNECTION_LIMIT,
		MHD_OPTION_CONNECTION_TIMEOUT,
		(unsigned)(o->read_timeout ? o->read_timeout : DEFAULT_READ_TIMEOUT),
		MHD_OPTION_NOTIFY_COMPLETED, on_completed, (void *)l, MHD_OPTION_EXTERNAL_LOGGER,
		mhd_log, (void *)l, MHD_OPTION_ARRAY, tls, MHD_OPTION_END);
	if (!l->d) {
		/* MHD has closed fd */
		free(l);
		return ims_error_set(-EIO, "cannot start serving %s (libmicrohttpd failed)", name);
	}
	*out = l;
	return 0;
}

static void quiesce(struct ims_rpc__listener *l)
{
	/* no new connections; the socket is ours to close, after MHD stops */
	if (l && l->d)
		l->fd = MHD_quiesce_daemon(l->d);
}

static void stop_listener(struct ims_rpc__listener *l)
{
	if (!l)
		return;
	if (l->d)
		MHD_stop_daemon(l->d);
	if (l->fd >= 0)
		close(l->fd);
	free(l);
}

static bool valid_path(const char *p)
{
	const char *slash;

	if (p[0] != '/')
		return false;
	slash = strchr(p + 1, '/');
	if (!slash || slash == p + 1 || !slash[1] || strchr(slash + 1, '/'))
		return false;
	for (const char *c = p + 1; *c; c++)
		if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
		      (*c >= '0' && *c <= '9') || *c == '_' || *c == '.' || *c == '/'))
			return false;
	return true;
}

static int setup_methods(ims_rpc_server *s, const ims_rpc_server_opts *o)
{
	if (o->nmethods && !o->methods)
		return ims_error_set(-EINVAL, "nmethods is %zu but methods is NULL", o->nmethods);
	s->methods = calloc(o->nmethods + 1, sizeof(*s->methods));
	s->labels = calloc(o->nmethods + 1, sizeof(*s->labels));
	if (!s->methods || !s->labels)
		return ims_error_set(-ENOMEM, "out of memory starting the RPC server");
	for (size_t i = 0; i < o->nmethods; i++) {
		const ims_rpc_method *m = &o->methods[i];
		if (!m->path || !valid_path(m->path) || !m->input || !m->output ||
		    m->input->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC ||
		    m->output->magic != PROTOBUF_C__MESSAGE_DESCRIPTOR_MAGIC ||
		    (unsigned)m->role > IMS_ROLE_ADMIN)
			return ims_error_set(-EINVAL, "method %zu ('%s') is not a valid RPC method",
					     i, m->path ? m->path : "");
		for (size_t j = 0; j < i; j++)
			if (strcmp(o->methods[j].path, m->path) == 0)
				return ims_error_set(-EINVAL, "method '%s' is given twice",
						     m->path);
		/* "/imgstore.v1.ImageService/CreateImage" -> "ImageService/CreateImage" */
		const char *slash = strchr(m->path + 1, '/');
		const char *svc = m->path + 1;
		for (const char *c = m->path + 1; c < slash; c++)
			if (*c == '.')
				svc = c + 1;
		s->methods[i].def = m;
		s->methods[i].label = strdup(svc);
		if (!s->methods[i].label)
			return ims_error_set(-ENOMEM, "out of memory starting the RPC server");
		s->labels[i] = s->methods[i].label;
	}
	s->nmethods = o->nmethods;
	s->labels[o->nmethods] = "unknown";
	return 0;
}

int ims_rpc_server_start(ims_rpc_server **out, const ims_rpc_server_opts *opts)
{
	ims_rpc_server *s = NULL;
	int r, fd = -1;

	if (!out)
		return ims_error_set(-EINVAL, "no server options");
	r = IMS_OPTS_CHECK(opts, IMS_RPC_SERVER_OPTS_VERSION, "server");
	if (r < 0)
		return r;
	if (opts->dispatch_only && (opts->listen || opts->unix_socket))
		return ims_error_set(-EINVAL, "dispatch_only excludes listen and unix_socket");
	if (!opts->dispatch_only && !opts->listen && !opts->unix_socket)
		return ims_error_set(-EINVAL, "neither listen nor unix_socket is set");
	if (opts->listen && !opts->allow_plain_http && (!opts->tls_cert || !opts->tls_key))
		return ims_error_set(-EINVAL,
				     "listen '%s' needs tls_cert and tls_key (or "
				     "allow_plain_http for a test setup)",
				     opts->listen);
	if (!opts->tls_cert != !opts->tls_key)
		return ims_error_set(-EINVAL, "tls_cert and tls_key go together");
	if (opts->tls_client_ca && !opts->tls_cert)
		return ims_error_set(-EINVAL, "tls_client_ca needs tls_cert and tls_key");
	if (opts->threads > 1024)
		return ims_error_set(-EINVAL, "%u threads is too many", opts->threads);
	if (opts->slow_calls > 4096)
		return ims_error_set(-EINVAL, "%u slow calls is too many", opts->slow_calls);

	s = calloc(1, sizeof(*s));
	if (!s)
		return ims_error_set(-ENOMEM, "out of memory starting the RPC server");
	s->opts = *opts;
	/* borrowed strings are not kept beyond this call */
	s->opts.listen = s->opts.unix_socket = NULL;
	s->opts.tls_cert = s->opts.tls_key = s->opts.tls_client_ca = s->opts.token_file = NULL;
	s->opts.tls_priorities = NULL;
	s->max_request_bytes =
		opts->max_request_bytes ? opts->max_request_bytes : DEFAULT_MAX_REQUEST;
	if (s->max_request_bytes > SIZE_MAX / 2)
		s->max_request_bytes = SIZE_MAX / 2;
	pthread_rwlock_init(&s->tokens_lock, NULL);
	pthread_mutex_init(&s->slow_lock, NULL);
	pthread_mutex_init(&s->bodies_lock, NULL);
	pthread_cond_init(&s->slow_ended, NULL);
	s->slow_max = opts->slow_calls ? opts->slow_calls : DEFAULT_SLOW_CALLS;
	r = ims_rpc__metrics_init(&s->metrics, opts->nmethods);
	if (r < 0)
		goto fail;
	r = setup_methods(s, opts);
	if (r < 0)
		goto fail;

	if (opts->token_file) {
		s->token_file = strdup(opts->token_file);
		if (!s->token_file) {
			r = ims_error_set(-ENOMEM, "out of memory starting the RPC server");
			goto fail;
		}
		r = ims_rpc__tokens_load(&s->tokens, s->token_file);
		if (r < 0)
			goto fail;
	}

	if (opts->listen && opts->tls_cert) {
		r = read_pem("tls_cert", opts->tls_cert, &s->cert_pem);
		if (r == 0)
			r = read_pem("tls_key", opts->tls_key, &s->key_pem);
		if (r == 0 && opts->tls_client_ca)
			r = read_pem("tls_client_ca", opts->tls_client_ca, &s->ca_pem);
		if (r == 0)
			r = check_tls_files(opts, s->cert_pem, s->key_pem, s->ca_pem);
		if (r == 0) {
			const char *prio = opts->tls_priorities ? opts->tls_priorities
								: IMS_RPC_TLS_PRIORITIES;
			s->tls_priorities = strdup(prio);
			if (!s->tls_priorities)
				r = ims_error_set(-ENOMEM, "out of memory starting the RPC server");
			else
				r = check_priorities(s->tls_priorities);
		}
		if (r < 0)
			goto fail;
	}

	if (opts->listen) {
		r = listen_tcp(opts->listen, &fd, &s->port);
		if (r < 0)
			goto fail;
		r = start_listener(s, &s->tcp, fd, false, opts->listen);
		if (r < 0)
			goto fail;
	}
	if (opts->unix_socket) {
		r = listen_unix(opts->unix_socket, &fd);
		if (r < 0)
			goto fail;
		s->unix_path = strdup(opts->unix_socket);
		if (!s->unix_path) {
			close(fd);
			unlink(opts->unix_socket);
			r = ims_error_set(-ENOMEM, "out of memory starting the RPC server");
			goto fail;
		}
		struct stat st;
		if (lstat(s->unix_path, &st) == 0) {
			s->unix_dev = st.st_dev;
			s->unix_ino = st.st_ino;
		}
		r = start_listener(s, &s->unix_l, fd, true, opts->unix_socket);
		if (r < 0)
			goto fail;
	}
	*out = s;
	return 0;
fail:
	ims_rpc_server_stop(s);
	return r;
}

uint16_t ims_rpc_server_port(const ims_rpc_server *s)
{
	return s && s->tcp ? s->port : 0;
}

int ims_rpc_server_reload_tokens(ims_rpc_server *s)
{
	ims_rpc__tokens *t = NULL, *old;
	int r;

	if (!s)
		return -EINVAL;
	if (!s->token_file)
		return 0;
	r = ims_rpc__tokens_load(&t, s->token_file);
	if (r < 0)
		return r;
	pthread_rwlock_wrlock(&s->tokens_lock);
	old = s->tokens;
	s->tokens = t;
	pthread_rwlock_unlock(&s->tokens_lock);
	ims_rpc__tokens_free(old);
	return 0;
}

void ims_rpc_server_stop(ims_rpc_server *s)
{
	if (!s)
		return;
	quiesce(s->tcp);
	quiesce(s->unix_l);
	if (s->metrics.m)
		for (int ms = 0;
		     ms < STOP_GRACE_MS && ims_rpc__metrics_get_in_flight(&s->metrics) > 0;
		     ms += 10)
			usleep(10000);
	/* MHD must not stop with a connection suspended: the slow calls end first (and are
	 * answered, or their connections time out) */
	pthread_mutex_lock(&s->slow_lock);
	while (s->slow_running > 0 || s->slow_threads > 0)
		pthread_cond_wait(&s->slow_ended, &s->slow_lock);
	pthread_mutex_unlock(&s->slow_lock);
	stop_listener(s->tcp);
	stop_listener(s->unix_l);
	if (s->unix_path) {
		struct stat st;
		/* only our own socket: another server may have replaced it since */
		if (lstat(s->unix_path, &st) == 0 && st.st_dev == s->unix_dev &&
		    st.st_ino == s->unix_ino)
			unlink(s->unix_path);
	}
	free(s->unix_path);
	ims_rpc__tokens_free(s->tokens);
	free(s->token_file);
	free_secret(s->key_pem);
	free(s->cert_pem);
	free(s->ca_pem);
	free(s->tls_priorities);
	if (s->methods)
		for (size_t i = 0; i < s->opts.nmethods; i++)
			free(s->methods[i].label);
	free(s->methods);
	free(s->labels);
	ims_rpc__metrics_destroy(&s->metrics);
	pthread_rwlock_destroy(&s->tokens_lock);
	pthread_mutex_destroy(&s->slow_lock);
	pthread_cond_destroy(&s->slow_ended);
	for (unsigned i = 0; i < s->nbodies; i++)
		free(s->bodies[i].buf);
	pthread_mutex_destroy(&s->bodies_lock);
	free(s);
}
