/*
 * tests/unit/cli_fake.h: drive the CLI (cli/cli.h) with canned responses instead of a server.
 *
 * A test queues the calls it expects, each with the response (or the error) the server would
 * give, runs an argv, and then checks the exit status, stdout, stderr and the requests the
 * CLI sent (decoded from the bytes it would have put on the wire).
 */
#ifndef IMS_TESTS_CLI_FAKE_H
#define IMS_TESTS_CLI_FAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cli/cli.h"

#define FAKE_MAX_STEPS 64

typedef struct {
	char method[128]; /* expected, e.g. "imgstore.v1.ImageService/CreateImage" */
	uint8_t *resp;	  /* packed response */
	size_t resp_len;
	int err; /* < 0: fail with it */
	ims_rpc_code code;
	char msg[256];
	char reason[64]; /* the typed error's reason, "" for none */
} fake_step;

typedef struct {
	fake_step steps[FAKE_MAX_STEPS];
	size_t nsteps, next;
	struct {
		char method[128];
		uint8_t *req;
		size_t len;
	} calls[FAKE_MAX_STEPS];
	size_t ncalls;
	ims_rpc_code last;
	char last_reason[64];
	/* what the CLI opened the connection with */
	int connects;
	char server[256], token[256], ca_file[256];
	long timeout_ms;
	/* the clock the CLI sees: advances by `tick` seconds at every call */
	double clock, tick;
	/* the CLI's SIGINT flag */
	volatile sig_atomic_t interrupted;
	/* set `interrupted` when this call (0-based) is made; -1: never */
	int interrupt_at_call;

	ims_cli cli;
	int rc;
	char *out, *err;
} fake;

/** Set up @p f and its CLI (non-terminal output, fake clock); clears IMGSTORE_* variables. */
void fake_init(fake *f);
void fake_free(fake *f);

/** Expect a call of @p method answered with @p resp. */
void fake_expect(fake *f, const char *method, const void *resp);
/** Expect a call of @p method that fails with @p err, @p code and @p msg. */
void fake_expect_error(fake *f, const char *method, int err, ims_rpc_code code, const char *msg);
/** The same with a typed error detail of @p reason. */
void fake_expect_error_reason(fake *f, const char *method, int err, ims_rpc_code code,
			      const char *msg, const char *reason);

/** Run `imgstore ARGS...` (a NULL-terminated list); sets rc, out and err. */
int fake_run(fake *f, ...);
int fake_runv(fake *f, char **argv);

/** The request of call @p i, decoded; free with protobuf_c_message_free_unpacked(). */
void *fake_request(fake *f, size_t i, const ProtobufCMessageDescriptor *desc);

#endif
