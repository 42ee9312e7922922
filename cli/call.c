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

static int open_transport(ims_cli *cli, ims_cli_transport *out)
{
	ims_cli_conn conn;

	memset(&conn, 0, sizeof(conn));
	conn.server = cli->server;
	conn.token = cli->token;
	conn.ca_file = cli->ca_file;
	conn.cert_file = cli->cert_file;
	conn.key_file = cli->key_file;
	conn.timeout_ms = cli->timeout_s > (uint64_t)LONG_MAX / 1000
				  ? LONG_MAX
				  : (long)(cli->timeout_s * 1000);
	return cli->connect(out, &conn, cli->connect_arg);
}

static int connect_once(ims_cli *cli)
{
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
	if (!cli->connect)
		return ims_cli_fail(cli, "this build of imgstore has no client library");
	ims_error_clear();
	r = open_transport(cli, &cli->t);
	if (r < 0)
		return ims_cli_fail(cli, "%s", ims_error_last());
	cli->connected = true;
	return 0;
}

int ims_cli_connect_another(ims_cli *cli, ims_cli_transport *out)
{
	assert(cli->connected);
	return open_transport(cli, out);
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
		/* a typed error's reason, for scripts to match on */
		const char *reason = cli->t.last_reason ? cli->t.last_reason(cli->t.ctx) : "";
		if (reason && reason[0])
			return ims_cli_fail(cli, "%s (%s)", ims_error_last(), reason);
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

int ims_cli_arg_group(ims_cli *cli, ims_spec *spec, Imgstore__V1__GroupSpec *out, const char *s,
		      bool snap_required)
{
	int r = ims_cli_arg_spec(cli, spec, s, snap_required, snap_required);

	if (r)
		return r;
	imgstore__v1__group_spec__init(out);
	out->pool = spec->pool;
	out->group = spec->image;
	out->snapshot = spec->snap;
	return 0;
}

static void print_json_only(ims_cli *cli, const ProtobufCMessage *m)
{
	if (cli->format == IMS_CLI_FORMAT_JSON)
		ims_cli_print_message(cli, m);
}

static void print_nothing(ims_cli *cli, const ProtobufCMessage *m)
{
	(void)cli;
	(void)m;
}

int ims_cli_call_print(ims_cli *cli, const char *method, const void *req,
		       const ProtobufCMessageDescriptor *resp_desc, ims_cli_show_fn show)
{
	ProtobufCMessage *m = NULL;
	int r;

	if ((r = ims_cli_call(cli, method, req, resp_desc, &m)))
		return r;
	show(cli, m);
	protobuf_c_message_free_unpacked(m, NULL);
	return 0;
}

int ims_cli_call_show(ims_cli *cli, const char *method, const void *req,
		      const ProtobufCMessageDescriptor *resp_desc)
{
	return ims_cli_call_print(cli, method, req, resp_desc, ims_cli_print_message);
}

int ims_cli_call_empty(ims_cli *cli, const char *method, const void *req,
		       const ProtobufCMessageDescriptor *resp_desc)
{
	return ims_cli_call_print(cli, method, req, resp_desc, print_json_only);
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
	ims_cli_wait_opts w = {.no_wait = ims_cli_opt_flag(cli, a, "no-wait"),
			       .until_decided = true};
	Imgstore__V1__Operation *op = NULL;
	int r;

	if ((r = ims_cli_call(cli, method, req, &imgstore__v1__operation__descriptor, &op)))
		return r;
	return ims_cli_finish_op(cli, op, &w);
}

/* Where the request's field @p name is: a field of @p type, not repeated. */
static void *request_field(ProtobufCMessage *req, const char *name, ProtobufCType type)
{
	const ProtobufCFieldDescriptor *f =
		protobuf_c_message_descriptor_get_field_by_name(req->descriptor, name);

	assert(f && f->type == type && f->label != PROTOBUF_C_LABEL_REPEATED);
	return (char *)req + f->offset;
}

/* Check the positional of @p c and put it into @p req; @p spec and @p msg hold it. */
static int put_positional(ims_cli *cli, const ims_cli_call_spec *c, const ims_cli_args *a,
			  ProtobufCMessage *req, ims_spec *spec, ProtobufCMessage *msg)
{
	bool snap = c->pos == IMS_CLI_POS_SNAP;
	const char *s = a->npos ? a->pos[0] : NULL;
	int r = 0;

	if (c->pos == IMS_CLI_POS_NONE || (!s && c->pos != IMS_CLI_POS_IMAGE))
		return 0;
	switch (c->pos) {
	case IMS_CLI_POS_IMAGE:
	case IMS_CLI_POS_SNAP:
		r = ims_cli_arg_image(cli, spec, (Imgstore__V1__ImageSpec *)msg, s, snap, snap);
		break;
	case IMS_CLI_POS_GROUP:
		r = ims_cli_arg_group(cli, spec, (Imgstore__V1__GroupSpec *)msg, s, false);
		break;
	case IMS_CLI_POS_POOL: r = ims_cli_arg_name(cli, IMS_NAME_POOL, c->what, s); break;
	case IMS_CLI_POS_WORD: r = ims_cli_arg_word(cli, c->what, s); break;
	case IMS_CLI_POS_NONE: break;
	}
	if (r)
		return r;
	if (c->pos == IMS_CLI_POS_POOL || c->pos == IMS_CLI_POS_WORD)
		*(const char **)request_field(req, c->field, PROTOBUF_C_TYPE_STRING) = s;
	else
		*(ProtobufCMessage **)request_field(req, c->field, PROTOBUF_C_TYPE_MESSAGE) = msg;
	return 0;
}

int ims_cli_run_call(ims_cli *cli, const ims_cli_call_spec *c, const ims_cli_args *a)
{
	const ProtobufCMethodDescriptor *m =
		protobuf_c_service_descriptor_get_method_by_name(c->service, c->method);
	union {
		ProtobufCMessage base;
		Imgstore__V1__ImageSpec image;
		Imgstore__V1__GroupSpec group;
	} msg;
	ProtobufCMessage *req;
	char method[256];
	ims_spec spec;
	int r;

	assert(m && "method not in the service");
	snprintf(method, sizeof(method), "%s/%s", c->service->name, m->name);
	req = malloc(m->input->sizeof_message);
	if (!req)
		return ims_cli_fail(cli, "out of memory");
	protobuf_c_message_init(m->input, req);
	if ((r = put_positional(cli, c, a, req, &spec, &msg.base)))
		goto out;
	switch (c->reply) {
	case IMS_CLI_REPLY_SHOW:
		r = ims_cli_call_print(cli, method, req, m->output,
				       c->show ? c->show : ims_cli_print_message);
		break;
	case IMS_CLI_REPLY_EMPTY: r = ims_cli_call_empty(cli, method, req, m->output); break;
	case IMS_CLI_REPLY_OP:
		assert(m->output == &imgstore__v1__operation__descriptor);
		r = ims_cli_call_op(cli, a, method, req);
		break;
	case IMS_CLI_REPLY_LIST:
		r = ims_cli_call_list(cli, method, req, m->output, c->list_field, c->cols);
		break;
	case IMS_CLI_REPLY_NONE:
		r = ims_cli_call_print(cli, method, req, m->output, print_nothing);
		break;
	}
out:
	free(req);
	return r;
}
