/* tests/unit/cli_fake.c: a transport with canned responses for the CLI's unit tests. */
#include "cli_fake.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/error.h"

static int fake_call(void *ctx, const char *method, const ProtobufCMessage *req,
		     const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp)
{
	fake *f = ctx;
	fake_step *s;
	size_t i = f->ncalls;

	assert_true(f->ncalls < FAKE_MAX_STEPS);
	snprintf(f->calls[i].method, sizeof(f->calls[i].method), "%s", method);
	f->calls[i].len = protobuf_c_message_get_packed_size(req);
	f->calls[i].req = malloc(f->calls[i].len + 1);
	assert_non_null(f->calls[i].req);
	protobuf_c_message_pack(req, f->calls[i].req);
	f->ncalls++;
	f->clock += f->tick;
	if (f->interrupt_at_call >= 0 && (size_t)f->interrupt_at_call == i)
		f->interrupted = 1;

	if (f->next >= f->nsteps)
		fail_msg("unexpected call %zu: %s", i, method);
	s = &f->steps[f->next++];
	assert_string_equal(method, s->method);
	snprintf(f->last_reason, sizeof(f->last_reason), "%s", s->reason);
	if (s->err) {
		f->last = s->code;
		return ims_error_set(s->err, "%s", s->msg);
	}
	*resp = protobuf_c_message_unpack(resp_desc, NULL, s->resp_len, s->resp);
	assert_non_null(*resp);
	f->last = IMS_RPC_OK;
	return 0;
}

static ims_rpc_code fake_last_code(void *ctx)
{
	return ((fake *)ctx)->last;
}

static const char *fake_last_reason(void *ctx)
{
	return ((fake *)ctx)->last_reason;
}

static void fake_close(void *ctx)
{
	(void)ctx;
}

static int fake_connect(ims_cli_transport *out, const ims_cli_conn *conn, void *arg)
{
	fake *f = arg;

	f->connects++;
	snprintf(f->server, sizeof(f->server), "%s", conn->server ? conn->server : "");
	snprintf(f->token, sizeof(f->token), "%s", conn->token ? conn->token : "");
	snprintf(f->ca_file, sizeof(f->ca_file), "%s", conn->ca_file ? conn->ca_file : "");
	f->timeout_ms = conn->timeout_ms;
	out->ctx = f;
	out->call = fake_call;
	out->last_code = fake_last_code;
	out->last_reason = fake_last_reason;
	out->close = fake_close;
	return 0;
}

static double fake_now(void *arg)
{
	return ((fake *)arg)->clock;
}

void fake_init(fake *f)
{
	static const char *const vars[] = {"IMGSTORE_SERVER",	"IMGSTORE_TOKEN_FILE",
					   "IMGSTORE_CA_FILE",	"IMGSTORE_CERT_FILE",
					   "IMGSTORE_KEY_FILE", "IMGSTORE_FORMAT"};

	memset(f, 0, sizeof(*f));
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	f->interrupt_at_call = -1;
	f->clock = 1000.0;
	f->tick = 1.0;
}

void fake_free(fake *f)
{
	for (size_t i = 0; i < f->nsteps; i++)
		free(f->steps[i].resp);
	for (size_t i = 0; i < f->ncalls; i++)
		free(f->calls[i].req);
	free(f->out);
	free(f->err);
	f->out = f->err = NULL;
}

void fake_expect(fake *f, const char *method, const void *resp)
{
	fake_step *s;

	assert_true(f->nsteps < FAKE_MAX_STEPS);
	s = &f->steps[f->nsteps++];
	memset(s, 0, sizeof(*s));
	snprintf(s->method, sizeof(s->method), "%s", method);
	s->resp_len = protobuf_c_message_get_packed_size(resp);
	s->resp = malloc(s->resp_len + 1);
	assert_non_null(s->resp);
	protobuf_c_message_pack(resp, s->resp);
}

void fake_expect_error(fake *f, const char *method, int err, ims_rpc_code code, const char *msg)
{
	fake_step *s;

	assert_true(f->nsteps < FAKE_MAX_STEPS);
	s = &f->steps[f->nsteps++];
	memset(s, 0, sizeof(*s));
	snprintf(s->method, sizeof(s->method), "%s", method);
	s->err = err;
	s->code = code;
	snprintf(s->msg, sizeof(s->msg), "%s", msg);
}

void fake_expect_error_reason(fake *f, const char *method, int err, ims_rpc_code code,
			      const char *msg, const char *reason)
{
	fake_expect_error(f, method, err, code, msg);
	snprintf(f->steps[f->nsteps - 1].reason, sizeof(f->steps[0].reason), "%s", reason);
}

int fake_runv(fake *f, char **argv)
{
	size_t outlen = 0, errlen = 0;
	FILE *out, *err;
	int argc = 0;

	while (argv[argc])
		argc++;
	free(f->out);
	free(f->err);
	f->out = f->err = NULL;
	out = open_memstream(&f->out, &outlen);
	err = open_memstream(&f->err, &errlen);
	assert_non_null(out);
	assert_non_null(err);
	ims_cli_init(&f->cli);
	f->cli.out = out;
	f->cli.err = err;
	f->cli.out_tty = false;
	f->cli.err_tty = false;
	f->cli.connect = fake_connect;
	f->cli.connect_arg = f;
	f->cli.interrupted = &f->interrupted;
	f->cli.now = fake_now;
	f->cli.now_arg = f;
	f->rc = ims_cli_main(&f->cli, argc, argv);
	ims_cli_cleanup(&f->cli);
	fclose(out);
	fclose(err);
	return f->rc;
}

int fake_run(fake *f, ...)
{
	char *argv[64];
	int n = 0;
	va_list ap;

	argv[n++] = "imgstore";
	va_start(ap, f);
	for (;;) {
		char *a = va_arg(ap, char *);
		assert_true(n < 63);
		argv[n] = a;
		if (!a)
			break;
		n++;
	}
	va_end(ap);
	return fake_runv(f, argv);
}

void *fake_request(fake *f, size_t i, const ProtobufCMessageDescriptor *desc)
{
	void *m;

	assert_true(i < f->ncalls);
	m = protobuf_c_message_unpack(desc, NULL, f->calls[i].len, f->calls[i].req);
	assert_non_null(m);
	return m;
}
