/*
 * tests/unit/test_cli_fixture.h: what the CLI's cmocka tests (test_cli_*.c) share around
 * cli_fake.h: a fake for each test, and the requests the CLI sent, decoded and freed with it.
 */
#ifndef IMS_TESTS_TEST_CLI_FIXTURE_H
#define IMS_TESTS_TEST_CLI_FIXTURE_H

#include <stdlib.h>

#include "cli_fake.h"

#define CLI_SENT_MAX 256

/* the requests sent() decoded, until cli_reset() or cli_teardown() (one test binary each) */
static ProtobufCMessage *cli_sent[CLI_SENT_MAX];
static size_t cli_nsent;

/* A cmocka test with a fresh fake in *state (cli_setup(), cli_teardown()). */
#define CLI_TEST(test) cmocka_unit_test_setup_teardown(test, cli_setup, cli_teardown)

/* cmocka setup: a fresh fake in *@p state. */
static inline int cli_setup(void **state)
{
	fake *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	fake_init(f);
	*state = f;
	return 0;
}

static inline void cli_sent_free(void)
{
	for (size_t i = 0; i < cli_nsent; i++)
		protobuf_c_message_free_unpacked(cli_sent[i], NULL);
	cli_nsent = 0;
}

static inline int cli_teardown(void **state)
{
	cli_sent_free();
	fake_free(*state);
	free(*state);
	return 0;
}

/* A fresh fake for the next part of a test: no call expected or made. */
static inline void cli_reset(fake *f)
{
	cli_sent_free();
	fake_free(f);
	fake_init(f);
}

/* The request of call @p i (fake_request()), freed by cli_reset() or cli_teardown(). */
static inline void *sent(fake *f, size_t i, const ProtobufCMessageDescriptor *desc)
{
	ProtobufCMessage *m = fake_request(f, i, desc);

	assert_true(cli_nsent < CLI_SENT_MAX);
	cli_sent[cli_nsent++] = m;
	return m;
}

#endif
