/*
 * cli/call.c: calls to the server, opening the connection on the first one so that every
 * usage error is found before anything is sent.
 */
#include "cli/cli.h"

#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "common/error.h"

static int connect_once(ims_cli *cli)
{
	ims_cli_conn conn;
	int r;

	if (cli->connected)
		return 0;
	if (!cli->server || !*cli->server)
		return ims_cli_usage(
			cli, "no server given: use --server URL|SOCKET or set IMGSTORE_SERVER");
	if (!ims_cli_server_is_unix(cli->server) && strncmp(cli->server, "https://", 8) &&
	    strncmp(cli->server, "http://", 7))
		return ims_cli_usage(
			cli,
			"--server: '%s' is neither https://HOST:PORT, http://HOST:PORT, "
			"a socket path nor unix:/path",
			cli->server);
	if (cli->token_file && !cli->token) {
		ims_error_clear();
		if (ims_cli_read_token(&cli->token, cli->token_file, cli->err) < 0)
			return ims_cli_fail(cli, "%s", ims_error_last());
	}
	memset(&conn, 0, sizeof(conn));
	conn.server = cli->server;
	conn.token = cli->token;
	conn.ca_file = cli->ca_file;
	conn.cert_file = cli->cert_file;
	conn.key_file = cli->key_file;
	conn.timeout_ms = cli->timeout_s > (uint64_t)LONG_MAX / 1000
				  ? LONG_MAX
				  : (long)(cli->timeout_s * 1000);
	if (!cli->connect)
		return ims_cli_fail(cli, "this build of imgstore has no client library");
	ims_error_clear();
	r = cli->connect(&cli->t, &conn, cli->connect_arg);
	if (r < 0)
		return ims_cli_fail(cli, "%s", ims_error_last());
	cli->connected = true;
	return 0;
}

/* @p denied NULL: every failure is printed; else a permission_denied answer is not, and sets it. */
static int call(ims_cli *cli, const char *method, const void *req,
		const ProtobufCMessageDescriptor *resp_desc, void *resp, bool *denied)
{
	ProtobufCMessage *m = NULL;
	int r;

	if ((r = connect_once(cli)))
		return r;
	ims_error_clear();
	r = cli->t.call(cli->t.ctx, method, req, resp_desc, &m);
	if (r < 0) {
		ims_rpc_code code =
			cli->t.last_code ? cli->t.last_code(cli->t.ctx) : IMS_RPC_UNKNOWN;
		if (denied && code == IMS_RPC_PERMISSION_DENIED) {
			*denied = true;
			return 1;
		}
		if (code == IMS_RPC_UNIMPLEMENTED) {
			if (cli->verb)
				return ims_cli_fail(
					cli,
					"%s %s is not available on this server yet (unimplemented)",
					cli->verb->noun, cli->verb->verb);
			return ims_cli_fail(
				cli, "%s is not available on this server yet (unimplemented)",
				method);
		}
		return ims_cli_fail(cli, "%s", ims_error_last());
	}
	*(ProtobufCMessage **)resp = m;
	return 0;
}

int ims_cli_call_denied(ims_cli *cli, const char *method, const void *req,
			const ProtobufCMessageDescriptor *resp_desc, void *resp, bool *denied)
{
	*denied = false;
	return call(cli, method, req, resp_desc, resp, denied);
}

int ims_cli_call(ims_cli *cli, const char *method, const void *req,
		 const ProtobufCMessageDescriptor *resp_desc, void *resp)
{
	return call(cli, method, req, resp_desc, resp, NULL);
}

void ims_cli_spec_to_msg(Imgstore__V1__ImageSpec *out, ims_spec *spec)
{
	imgstore__v1__image_spec__init(out);
	out->pool = spec->pool;
	out->image = spec->image;
	out->snapshot = spec->snap;
}

/* Call, print the reply as a message (@p json_only: only with --format json), free it. */
static int call_print(ims_cli *cli, const char *method, const void *req,
		      const ProtobufCMessageDescriptor *resp_desc, bool json_only)
{
	ProtobufCMessage *m = NULL;
	int r;

	if ((r = ims_cli_call(cli, method, req, resp_desc, &m)))
		return r;
	if (!json_only || cli->format == IMS_CLI_FORMAT_JSON)
		ims_cli_print_message(cli, m);
	protobuf_c_message_free_unpacked(m, NULL);
	return 0;
}

int ims_cli_call_show(ims_cli *cli, const char *method, const void *req,
		      const ProtobufCMessageDescriptor *resp_desc)
{
	return call_print(cli, method, req, resp_desc, false);
}

int ims_cli_call_empty(ims_cli *cli, const char *method, const void *req,
		       const ProtobufCMessageDescriptor *resp_desc)
{
	return call_print(cli, method, req, resp_desc, true);
}

int ims_cli_call_list(ims_cli *cli, const char *method, const void *req,
		      const ProtobufCMessageDescriptor *resp_desc, const char *field,
		      const ims_cli_column *cols)
{
	const ProtobufCFieldDescriptor *f = NULL;
	ProtobufCMessage *m = NULL;
	int r;

	if (field) {
		f = protobuf_c_message_descriptor_get_field_by_name(resp_desc, field);
		assert(f && f->label == PROTOBUF_C_LABEL_REPEATED &&
		       f->type == PROTOBUF_C_TYPE_MESSAGE);
	}
	if ((r = ims_cli_call(cli, method, req, resp_desc, &m)))
		return r;
	if (f)
		ims_cli_print_list(cli, *(ProtobufCMessage *const **)((char *)m + f->offset),
				   *(size_t *)((char *)m + f->quantifier_offset), cols);
	else
		ims_cli_print_list(cli, &m, 1, cols);
	protobuf_c_message_free_unpacked(m, NULL);
	return 0;
}

int ims_cli_call_op(ims_cli *cli, const ims_cli_args *a, const char *method, const void *req)
{
	ims_cli_wait_opts w = {.no_wait = ims_cli_opt_flag(cli, a, "no-wait")};
	Imgstore__V1__Operation *op = NULL;
	int r;

	if ((r = ims_cli_call(cli, method, req, &imgstore__v1__operation__descriptor, &op)))
		return r;
	return ims_cli_finish_op(cli, op, &w);
}
