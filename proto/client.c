/*
 * proto/client.c: libimgstore, the client of imgstored's RPC API, on libcurl.
 *
 * One easy handle per client, reused for every call, so that libcurl keeps the connection
 * (and its TLS session) alive between calls. The answer is untrusted: its size is capped, its
 * JSON error body parsed with json-c, its message stripped of control characters.
 */
#include "proto/client.h"
#include "proto/client_int.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <json-c/json.h>

#include "common/error.h"
#include "common/opts.h"
#include "imgstore/v1/common.pb-c.h"
#include "proto/json.h"

#define DEFAULT_TIMEOUT_MS	   60000L
#define DEFAULT_CONNECT_TIMEOUT_MS 5000L
#define METHOD_MAX		   256

struct ims_client {
	CURL *curl;
	struct curl_slist *headers;
	char *base;    /* "https://HOST:PORT", or "http://localhost" over a Unix socket */
	char *display; /* the server as the caller wrote it, for messages */
	char errbuf[CURL_ERROR_SIZE];
	ims_rpc_code last_code;
	char last_reason[IMS_RPC_REASON_MAX]; /* of the last failure's ErrorInfo, "" if none */
};

typedef struct {
	uint8_t *p;
	size_t len, cap;
	bool too_big;
} answer;

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_init(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud)
{
	answer *a = ud;
	size_t n = size * nmemb;

	if (n > IMS_CLIENT__MAX_RESPONSE - a->len) {
		a->too_big = true;
		return 0;
	}
	if (a->len + n > a->cap) {
		size_t cap = a->cap ? a->cap : 4096;
		while (cap < a->len + n)
			cap *= 2;
		uint8_t *p = realloc(a->p, cap);
		if (!p)
			return 0;
		a->p = p;
		a->cap = cap;
	}
	memcpy(a->p + a->len, data, n);
	a->len += n;
	return n;
}

static bool printable(const char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || (unsigned char)*s == 0x7f)
			return false;
	return true;
}

/* @p src with control characters replaced by '?', cut to fit; @p src may be @p dst. */
static void printable_copy(char *dst, size_t cap, const char *src)
{
	size_t i = 0;

	for (; src[i] && i + 1 < cap; i++)
		dst[i] = ((unsigned char)src[i] < 0x20 || (unsigned char)src[i] == 0x7f) ? '?'
											 : src[i];
	dst[i] = '\0';
}

static int check_file(const char *what, const char *path)
{
	if (path && access(path, R_OK) < 0) {
		int r = -errno;
		if (r == -ENOENT)
			return ims_error_set(r, "%s '%s' does not exist", what, path);
		return ims_error_set(r, "cannot read %s '%s': %s", what, path, ims_strerror(r));
	}
	return 0;
}

void ims_client_close(ims_client *c)
{
	if (!c)
		return;
	if (c->curl)
		curl_easy_cleanup(c->curl);
	/* the Authorization header holds the token */
	for (struct curl_slist *h = c->headers; h; h = h->next)
		explicit_bzero(h->data, strlen(h->data));
	curl_slist_free_all(c->headers);
	free(c->base);
	free(c->display);
	free(c);
}

/* The options as given, before anything is allocated. */
static int check_opts(const ims_client_opts *opts)
{
	int r = IMS_OPTS_CHECK(opts, IMS_CLIENT_OPTS_VERSION, "client");
	if (r < 0)
		return r;
	if (!opts->server || !opts->server[0])
		return ims_error_set(-EINVAL, "no server address given");
	if (!printable(opts->server) || strchr(opts->server, ' '))
		return ims_error_set(-EINVAL, "bad server address: it has spaces or control "
					      "characters");
	if (opts->token && (!opts->token[0] || !printable(opts->token)))
		return ims_error_set(-EINVAL, "the token is empty or has control characters");
	if (opts->timeout_ms < 0 || opts->connect_timeout_ms < 0)
		return ims_error_set(-EINVAL, "negative timeout");
	if (opts->key_file && !opts->cert_file)
		return ims_error_set(-EINVAL, "key_file needs cert_file");
	r = check_file("CA file", opts->ca_file);
	if (r == 0)
		r = check_file("client certificate", opts->cert_file);
	if (r == 0)
		r = check_file("client key", opts->key_file);
	return r;
}

static int nomem(void)
{
	return ims_error_set(-ENOMEM, "out of memory opening a client");
}

/*
 * The URL every call is sent to, from the server address: "http://localhost" for a Unix
 * socket (@p unix_path set to its path), else the address without trailing slashes.
 */
static int set_base(ims_client *c, const char *server, const char **unix_path)
{
	*unix_path = NULL;
	if (strncmp(server, "unix:", 5) == 0)
		*unix_path = server + 5;
	else if (server[0] == '/')
		*unix_path = server;
	if (*unix_path) {
		if ((*unix_path)[0] != '/')
			return ims_error_set(-EINVAL,
					     "bad server address '%s': a Unix socket is an "
					     "absolute path",
					     server);
		c->base = strdup("http://localhost");
	} else if (strncasecmp(server, "http://", 7) == 0 ||
		   strncasecmp(server, "https://", 8) == 0) {
		size_t n = strlen(server);
		const char *host = strstr(server, "://") + 3;
		while (n && server[n - 1] == '/')
			n--;
		if (!*host || *host == '/')
			return ims_error_set(-EINVAL, "bad server address '%s': no host", server);
		c->base = strndup(server, n);
	} else {
		return ims_error_set(-EINVAL,
				     "bad server address '%s': expected https://HOST:PORT, "
				     "http://HOST:PORT or a Unix socket path",
				     server);
	}
	return c->base ? 0 : nomem();
}

/* The headers of every call; the token's copy is wiped once curl has its own. A deadline the
 * caller set goes to the server as the call's budget (Connect-Timeout-Ms, at most 10 digits). */
static int set_headers(ims_client *c, const char *token, long timeout_ms)
{
	struct curl_slist *h;
	char *auth = NULL;

	c->headers = curl_slist_append(NULL, "Content-Type: application/proto");
	if (!c->headers || !curl_slist_append(c->headers, "Connect-Protocol-Version: 1"))
		return nomem();
	if (timeout_ms > 0) {
		char budget[48];
		snprintf(budget, sizeof(budget), "Connect-Timeout-Ms: %ld",
			 timeout_ms > 9999999999L ? 9999999999L : timeout_ms);
		if (!curl_slist_append(c->headers, budget))
			return nomem();
	}
	if (!token)
		return 0;
	if (asprintf(&auth, "Authorization: Bearer %s", token) < 0)
		return nomem();
	h = curl_slist_append(c->headers, auth);
	explicit_bzero(auth, strlen(auth));
	free(auth);
	return h ? 0 : nomem();
}

static int set_curl_options(ims_client *c, const ims_client_opts *opts, const char *unix_path)
{
	CURL *e = c->curl;
	bool ok = true;

	ok &= curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->errbuf) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_HTTPHEADER, c->headers) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_POST, 1L) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https") == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_USERAGENT, "libimgstore") == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_TIMEOUT_MS,
			       opts->timeout_ms ? opts->timeout_ms : DEFAULT_TIMEOUT_MS) ==
	      CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS,
			       opts->connect_timeout_ms ? opts->connect_timeout_ms
							: DEFAULT_CONNECT_TIMEOUT_MS) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_MAXFILESIZE_LARGE,
			       (curl_off_t)IMS_CLIENT__MAX_RESPONSE) == CURLE_OK;
	ok &= curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L) == CURLE_OK;
	if (unix_path)
		ok &= curl_easy_setopt(e, CURLOPT_UNIX_SOCKET_PATH, unix_path) == CURLE_OK;
	if (opts->ca_file)
		ok &= curl_easy_setopt(e, CURLOPT_CAINFO, opts->ca_file) == CURLE_OK;
	if (opts->cert_file)
		ok &= curl_easy_setopt(e, CURLOPT_SSLCERT, opts->cert_file) == CURLE_OK;
	if (opts->key_file)
		ok &= curl_easy_setopt(e, CURLOPT_SSLKEY, opts->key_file) == CURLE_OK;
	if (!ok)
		return ims_error_set(-EINVAL, "libcurl refused the options for '%s'", opts->server);
	return 0;
}

int ims_client_open(ims_client **out, const ims_client_opts *opts)
{
	ims_client *c = NULL;
	const char *unix_path = NULL;
	int r;

	if (!out || !opts)
		return ims_error_set(-EINVAL, "no client options");
	if ((r = check_opts(opts)) < 0)
		return r;

	pthread_once(&curl_once, curl_init);
	if (curl_init_result != CURLE_OK)
		return ims_error_set(-ENOMEM, "cannot initialize libcurl: %s",
				     curl_easy_strerror(curl_init_result));

	c = calloc(1, sizeof(*c));
	if (!c)
		return nomem();
	c->display = strdup(opts->server);
	if (!c->display) {
		r = nomem();
		goto fail;
	}
	if ((r = set_base(c, opts->server, &unix_path)) < 0)
		goto fail;
	c->curl = curl_easy_init();
	if (!c->curl) {
		r = nomem();
		goto fail;
	}
	if ((r = set_headers(c, opts->token, opts->timeout_ms)) < 0 ||
	    (r = set_curl_options(c, opts, unix_path)) < 0)
		goto fail;
	c->last_code = IMS_RPC_OK;
	*out = c;
	return 0;
fail:
	ims_client_close(c);
	return r;
}

ims_rpc_code ims_client_last_code(const ims_client *c)
{
	return c ? c->last_code : IMS_RPC_UNKNOWN;
}

const char *ims_client_last_reason(const ims_client *c)
{
	return c ? c->last_reason : "";
}

/* The reason of the first imgstore.v1.ErrorInfo in a Connect error's "details", into
 * c->last_reason; anything else (other types, bad base64, undecodable) is skipped. */
static void read_reason(ims_client *c, json_object *details)
{
	size_t n = json_object_is_type(details, json_type_array) ? json_object_array_length(details)
								 : 0;

	for (size_t i = 0; i < n && i < 16 && !c->last_reason[0]; i++) {
		json_object *d = json_object_array_get_idx(details, i), *t, *v;
		unsigned char *raw = NULL;
		size_t len = 0;
		if (!json_object_is_type(d, json_type_object) ||
		    !json_object_object_get_ex(d, "type", &t) ||
		    !json_object_object_get_ex(d, "value", &v) ||
		    !json_object_is_type(t, json_type_string) ||
		    !json_object_is_type(v, json_type_string))
			continue;
		const char *type = json_object_get_string(t);
		/* "type.googleapis.com/" is allowed before the name */
		if (strncmp(type, "type.googleapis.com/", 20) == 0)
			type += 20;
		if (strcmp(type, IMS_RPC_ERROR_INFO_TYPE) != 0)
			continue;
		if (ims_rpc__base64_decode(&raw, &len, json_object_get_string(v),
					   (size_t)json_object_get_string_len(v)) < 0)
			continue;
		Imgstore__V1__ErrorInfo *info = imgstore__v1__error_info__unpack(NULL, len, raw);
		free(raw);
		if (!info)
			continue;
		/* shown to people and switched on: printable, bounded */
		printable_copy(c->last_reason, sizeof(c->last_reason), info->reason);
		imgstore__v1__error_info__free_unpacked(info, NULL);
	}
}

/* "imgstore.v1.ImageService/CreateImage", with or without a leading '/'. */
static bool valid_method(const char *m)
{
	size_t slashes = 0, n = strlen(m);

	if (n == 0 || n > METHOD_MAX)
		return false;
	for (const char *p = m; *p; p++) {
		if (*p == '/')
			slashes++;
		else if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
			   (*p >= '0' && *p <= '9') || *p == '_' || *p == '.'))
			return false;
	}
	return slashes == 1 && m[0] != '/' && m[n - 1] != '/';
}

static int transport_error(ims_client *c, CURLcode cc)
{
	const char *detail = c->errbuf[0] ? c->errbuf : curl_easy_strerror(cc);

	switch (cc) {
	case CURLE_COULDNT_CONNECT:
		c->last_code = IMS_RPC_UNAVAILABLE;
		return ims_error_set(-ECONNREFUSED, "cannot reach imgstored at '%s': %s",
				     c->display, detail);
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		c->last_code = IMS_RPC_UNAVAILABLE;
		return ims_error_set(-EHOSTUNREACH, "cannot reach imgstored at '%s': %s",
				     c->display, detail);
	case CURLE_OPERATION_TIMEDOUT:
		c->last_code = IMS_RPC_DEADLINE_EXCEEDED;
		return ims_error_set(-ETIMEDOUT, "imgstored at '%s' did not answer in time: %s",
				     c->display, detail);
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_PEER_FAILED_VERIFICATION:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
	case CURLE_SSL_INVALIDCERTSTATUS:
	case CURLE_USE_SSL_FAILED:
		c->last_code = IMS_RPC_UNAVAILABLE;
		return ims_error_set(-EPROTO, "TLS with imgstored at '%s' failed: %s", c->display,
				     detail);
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
		c->last_code = IMS_RPC_UNAVAILABLE;
		return ims_error_set(-ECONNRESET, "connection to imgstored at '%s' lost: %s",
				     c->display, detail);
	case CURLE_OUT_OF_MEMORY:
		c->last_code = IMS_RPC_UNKNOWN;
		return ims_error_set(-ENOMEM, "out of memory calling imgstored at '%s'",
				     c->display);
	default:
		c->last_code = IMS_RPC_UNKNOWN;
		return ims_error_set(-EIO, "calling imgstored at '%s' failed: %s", c->display,
				     detail);
	}
}

/* Connect's code for an HTTP status that came without a Connect error body. */
static ims_rpc_code code_from_http(long status)
{
	switch (status) {
	case 400: return IMS_RPC_INTERNAL;
	case 401: return IMS_RPC_UNAUTHENTICATED;
	case 403: return IMS_RPC_PERMISSION_DENIED;
	case 404: return IMS_RPC_UNIMPLEMENTED;
	case 408: return IMS_RPC_DEADLINE_EXCEEDED; /* a budget (Connect-Timeout-Ms) ran out */
	case 429:
	case 502:
	case 503:
	case 504: return IMS_RPC_UNAVAILABLE;
	default: return IMS_RPC_UNKNOWN;
	}
}

static bool media_is(const char *ct, const char *type)
{
	size_t n;

	if (!ct)
		return false;
	while (*ct == ' ')
		ct++;
	n = strcspn(ct, "; \t");
	return n == strlen(type) && strncasecmp(ct, type, n) == 0;
}

int ims_client__decode(ims_client *c, long status, const char *content_type, const uint8_t *body,
		       size_t len, const ProtobufCMessageDescriptor *desc, ProtobufCMessage **resp)
{
	static const uint8_t empty[1];

	c->last_reason[0] = '\0';
	if (status == 200) {
		if (!media_is(content_type, "application/proto")) {
			char shown[64];
			printable_copy(shown, sizeof(shown), content_type ? content_type : "");
			c->last_code = IMS_RPC_UNKNOWN;
			return ims_error_set(-EPROTO,
					     "imgstored at '%s' answered with Content-Type '%s', "
					     "not application/proto",
					     c->display, shown);
		}
		ProtobufCMessage *m =
			protobuf_c_message_unpack(desc, NULL, len, body ? body : empty);
		if (!m) {
			c->last_code = IMS_RPC_UNKNOWN;
			return ims_error_set(-EPROTO,
					     "imgstored at '%s' answered with a malformed %s",
					     c->display, desc->name);
		}
		c->last_code = IMS_RPC_OK;
		*resp = m;
		return 0;
	}

	ims_rpc_code code = code_from_http(status);
	char msg[IMS_ERROR_MSG_MAX] = "";
	bool connect_error = false;

	if (media_is(content_type, "application/json") && len <= INT32_MAX) {
		json_tokener *tok = json_tokener_new();
		json_object *o = NULL, *jc, *jm;
		if (tok) {
			o = json_tokener_parse_ex(tok, (const char *)(body ? body : empty),
						  (int)len);
			if (json_tokener_get_error(tok) != json_tokener_success) {
				json_object_put(o);
				o = NULL;
			}
			json_tokener_free(tok);
		}
		if (o && json_object_is_type(o, json_type_object) &&
		    json_object_object_get_ex(o, "code", &jc) &&
		    json_object_is_type(jc, json_type_string)) {
			connect_error = true;
			/* a code this client does not know is "unknown" (Connect) */
			if (ims_rpc_code_parse(&code, json_object_get_string(jc)) < 0)
				code = IMS_RPC_UNKNOWN;
			if (json_object_object_get_ex(o, "message", &jm) &&
			    json_object_is_type(jm, json_type_string))
				snprintf(msg, sizeof(msg), "%s", json_object_get_string(jm));
			json_object *jd;
			if (json_object_object_get_ex(o, "details", &jd))
				read_reason(c, jd);
		}
		json_object_put(o);
	}
	/* the message goes to terminals and logs: no escape sequences */
	printable_copy(msg, sizeof(msg), msg);
	c->last_code = code;
	if (!connect_error)
		return ims_error_set(ims_rpc_errno_from_code(code),
				     "imgstored at '%s' answered HTTP %ld without a Connect error",
				     c->display, status);
	if (!msg[0])
		snprintf(msg, sizeof(msg), "%s", ims_rpc_code_name(code));
	return ims_error_set(ims_rpc_errno_from_code(code), "%s", msg);
}

int ims_client_call(ims_client *c, const char *method, const ProtobufCMessage *req,
		    const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp)
{
	answer a = {0};
	uint8_t *buf = NULL;
	char *url = NULL;
	char *ct = NULL;
	long status = 0;
	CURLcode cc;
	int r;

	if (!c || !method || !req || !resp_desc || !resp)
		return ims_error_set(-EINVAL, "bad arguments to ims_client_call");
	if (method[0] == '/')
		method++;
	if (!valid_method(method))
		return ims_error_set(-EINVAL, "bad method name '%s' (Package.Service/Method)",
				     method);

	size_t n = protobuf_c_message_get_packed_size(req);
	buf = malloc(n ? n : 1);
	if (!buf || asprintf(&url, "%s/%s", c->base, method) < 0) {
		url = NULL;
		r = ims_error_set(-ENOMEM, "out of memory calling %s", method);
		goto out;
	}
	protobuf_c_message_pack(req, buf);

	c->errbuf[0] = '\0';
	if (curl_easy_setopt(c->curl, CURLOPT_URL, url) != CURLE_OK ||
	    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, buf) != CURLE_OK ||
	    curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)n) != CURLE_OK ||
	    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &a) != CURLE_OK) {
		r = ims_error_set(-ENOMEM, "out of memory calling %s", method);
		goto out;
	}
	cc = curl_easy_perform(c->curl);
	if (cc == CURLE_WRITE_ERROR && a.too_big) {
		c->last_code = IMS_RPC_UNKNOWN;
		r = ims_error_set(-EPROTO, "imgstored at '%s' sent more than %u MiB", c->display,
				  (unsigned)(IMS_CLIENT__MAX_RESPONSE >> 20));
		goto out;
	}
	if (cc == CURLE_FILESIZE_EXCEEDED) {
		c->last_code = IMS_RPC_UNKNOWN;
		r = ims_error_set(-EPROTO, "imgstored at '%s' announced more than %u MiB",
				  c->display, (unsigned)(IMS_CLIENT__MAX_RESPONSE >> 20));
		goto out;
	}
	if (cc != CURLE_OK) {
		r = transport_error(c, cc);
		goto out;
	}
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_getinfo(c->curl, CURLINFO_CONTENT_TYPE, &ct);
	r = ims_client__decode(c, status, ct, a.p, a.len, resp_desc, resp);
out:
	free(a.p);
	free(buf);
	free(url);
	return r;
}
