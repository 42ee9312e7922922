/*
 * cli/main.c: `imgstore`, wired to libimgstore. Everything else is in the ims_cli library
 * (cli/cli.h), which the unit tests drive without a server.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "proto/client.h"

/* The globals the CLI has: what its SIGINT handler can touch. */
static volatile sig_atomic_t interrupted;
static volatile sig_atomic_t sigint_armed;

/*
 * While the CLI waits on an operation or moves data, the first Ctrl-C asks it to cancel
 * (SA_RESETHAND: a second one ends it at once); at any other time Ctrl-C ends it at once.
 */
static void on_sigint(int sig)
{
	if (!sigint_armed) {
		signal(sig, SIG_DFL);
		raise(sig);
		return;
	}
	interrupted = 1;
}

static int client_call(void *ctx, const char *method, const ProtobufCMessage *req,
		       const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp)
{
	return ims_client_call(ctx, method, req, resp_desc, resp);
}

static ims_rpc_code client_last_code(void *ctx)
{
	return ims_client_last_code(ctx);
}

static const char *client_last_reason(void *ctx)
{
	return ims_client_last_reason(ctx);
}

static void client_close(void *ctx)
{
	ims_client_close(ctx);
}

static int client_connect(ims_cli_transport *out, const ims_cli_conn *conn, void *arg)
{
	ims_client_opts opts = IMS_CLIENT_OPTS_INIT;
	ims_client *c = NULL;
	int r;

	(void)arg;
	opts.server = conn->server;
	opts.token = conn->token;
	opts.ca_file = conn->ca_file;
	opts.cert_file = conn->cert_file;
	opts.key_file = conn->key_file;
	opts.timeout_ms = conn->timeout_ms;
	r = ims_client_open(&c, &opts);
	if (r < 0)
		return r;
	out->ctx = c;
	out->call = client_call;
	out->last_code = client_last_code;
	out->last_reason = client_last_reason;
	out->close = client_close;
	return 0;
}

int main(int argc, char **argv)
{
	struct sigaction sa;
	ims_cli cli;
	int r;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigint;
	sa.sa_flags = SA_RESETHAND;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	ims_cli_init(&cli);
	cli.connect = client_connect;
	cli.interrupted = &interrupted;
	cli.sigint_armed = &sigint_armed;
	r = ims_cli_main(&cli, argc, argv);
	ims_cli_cleanup(&cli);
	if (fflush(stdout) != 0 && r == 0)
		r = IMS_CLI_EXIT_ERROR;
	return r;
}
