/*
 * libFuzzer target: bytes as the body of an RPC call, through the whole server pipeline
 * without sockets (ims_rpc_server_dispatch) with the toy handlers of tests/unit/rpc_toy.c;
 * and the same bytes as a server's answer to the client (ims_client__decode).
 *
 * Input: byte 0 picks the method path, byte 1 the token, the content type (proto, JSON, or
 * another) and the mode;
 * the rest is the body. Every answer must be well formed: a decodable message of the
 * method's output type with 200, else a JSON body with a known code and a message.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-c/json.h>

#include "common/error.h"
#include "proto/client_int.h"
#include "proto/json.h"
#include "proto/server.h"
#include "../unit/rpc_toy.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define ADMIN  "admin-fuzz-0123456789abcdef"
#define READER "reader-fuzz-0123456789abcdef"

static toy_app app;
static ims_rpc_server *server;
static ims_client *client;

static const char *const paths[] = {
	TOY_GET,
	TOY_CREATE,
	TOY_UPLOAD,
	TOY_RESIZE,
	TOY_LIST,
	TOY_DELETE,
	"/imgstore.v1.ImageService/Unknown",
};
#define NPATHS (sizeof(paths) / sizeof(paths[0]))

static const char *const auths[] = {
	"Bearer " ADMIN,
	"Bearer " READER,
	NULL,
	"Bearer not-a-token-at-all-0000",
};

static const char *const client_types[] = {
	"application/proto",
	"application/json",
	"text/html",
	NULL,
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char path[] = "/tmp/ims-fuzz-tokens-XXXXXX";
	const char *text = "admin " ADMIN " fuzz-admin\nreader " READER "\n";
	ims_rpc_server_opts o = IMS_RPC_SERVER_OPTS_INIT;
	ims_client_opts co = IMS_CLIENT_OPTS_INIT;
	int fd = mkstemp(path);

	if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) ||
	    fchmod(fd, 0600) < 0)
		abort();
	close(fd);
	toy_init(&app);
	toy_opts(&o, &app);
	o.dispatch_only = true;
	o.token_file = path;
	o.max_request_bytes = 64 * 1024;
	if (ims_rpc_server_start(&server, &o) < 0) {
		fprintf(stderr, "fuzz_rpc_dispatch: %s\n", ims_error_last());
		abort();
	}
	unlink(path);
	co.server = "http://127.0.0.1:1"; /* never connected: only its decoding is used */
	if (ims_client_open(&client, &co) < 0)
		abort();
	return 0;
}

static const ProtobufCMessageDescriptor *output_of(const char *path)
{
	for (size_t i = 0; i < toy_nmethods; i++)
		if (strcmp(toy_methods[i].path, path) == 0)
			return toy_methods[i].output;
	return NULL;
}

static void check_json(const uint8_t *body, size_t len)
{
	json_tokener *tok = json_tokener_new();
	json_object *o, *code, *msg;
	ims_rpc_code c;

	if (!tok)
		abort();
	o = json_tokener_parse_ex(tok, (const char *)body, (int)len);
	if (json_tokener_get_error(tok) != json_tokener_success || !o ||
	    !json_object_is_type(o, json_type_object) ||
	    !json_object_object_get_ex(o, "code", &code) ||
	    !json_object_object_get_ex(o, "message", &msg) ||
	    ims_rpc_code_parse(&c, json_object_get_string(code)) < 0 ||
	    !json_object_is_type(msg, json_type_string))
		abort();
	json_object_put(o);
	json_tokener_free(tok);
}

static void fuzz_server(const char *path, uint8_t sel, const uint8_t *body, size_t len)
{
	/* bits 4-5 (unused by the server side otherwise): the codec */
	const char *ct = (sel & 4)	? "application/x-protobuf"
			 : (sel & 0x10) ? "application/json"
					: "application/proto";
	const char *resp_ct = NULL;
	uint8_t *resp = NULL;
	size_t resp_len = 0;
	int status = 0;

	if (ims_rpc_server_dispatch(server, path, ct, auths[sel & 3], body, len, &status, &resp_ct,
				    &resp, &resp_len) < 0)
		abort();
	if (status == 200) {
		const ProtobufCMessageDescriptor *d = output_of(path);
		bool json = strcmp(ct, "application/json") == 0;
		if (!d || strcmp(resp_ct, json ? "application/json" : "application/proto") != 0)
			abort();
		ProtobufCMessage *m = NULL;
		if (json && ims_rpc__json_decode(&m, d, (const char *)resp, resp_len) < 0)
			abort();
		if (!json)
			m = protobuf_c_message_unpack(d, NULL, resp_len, resp);
		if (!m)
			abort();
		protobuf_c_message_free_unpacked(m, NULL);
	} else {
		if (status < 400 || status > 599 || strcmp(resp_ct, "application/json") != 0)
			abort();
		check_json(resp, resp_len);
	}
	free(resp);
}

static void fuzz_client(uint8_t pick, uint8_t sel, const uint8_t *body, size_t len)
{
	static const long statuses[] = {200, 400, 401, 403, 404, 409, 413, 429, 500, 502, 503};
	ProtobufCMessage *m = NULL;
	long status = statuses[pick % (sizeof(statuses) / sizeof(statuses[0]))];
	int r = ims_client__decode(client, status, client_types[(sel >> 4) & 3], body, len,
				   &imgstore__v1__image__descriptor, &m);

	if (r == 0) {
		if (status != 200 || !m || ims_client_last_code(client) != IMS_RPC_OK)
			abort();
		protobuf_c_message_free_unpacked(m, NULL);
	} else {
		const char *msg = ims_error_last();
		if (r > 0 || ims_client_last_code(client) == IMS_RPC_OK)
			abort();
		for (const char *p = msg; *p; p++)
			if ((unsigned char)*p < 0x20)
				abort(); /* no control character reaches a terminal */
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	if (data[1] & 8)
		fuzz_client(data[0], data[1], data + 2, size - 2);
	else
		fuzz_server(paths[data[0] % NPATHS], data[1], data + 2, size - 2);
	return 0;
}
