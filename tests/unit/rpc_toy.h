/*
 * tests/unit/rpc_toy.h: a toy RPC service over the generated messages, for the transport's
 * tests and fuzzer: canned answers, an error path, and the calls and audit lines it saw.
 */
#ifndef IMS_TESTS_RPC_TOY_H
#define IMS_TESTS_RPC_TOY_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

#include "imgstore/v1/image.pb-c.h"
#include "proto/server.h"

/* reader; of image "defer": deferred to a thread of its own (ims_rpc_call_defer) where it waits
 * as WaitImage does, or answered at once with size 0 when no slow call is free */
#define TOY_GET	   "/imgstore.v1.ImageService/GetImage"
#define TOY_LIST   "/imgstore.v1.ImageService/ListImages"  /* no role */
#define TOY_RESIZE "/imgstore.v1.ImageService/ResizeImage" /* host, mutating */
#define TOY_CREATE "/imgstore.v1.ImageService/CreateImage" /* admin, mutating */
#define TOY_DELETE "/imgstore.v1.ImageService/DeleteImage" /* admin, no handler */
#define TOY_RENAME "/imgstore.v1.ImageService/RenameImage" /* answers the wrong type */
#define TOY_UPLOAD "/imgstore.v1.ImageService/UploadChunk" /* host, mutating */
#define TOY_WAIT   "/imgstore.v1.ImageService/WaitImage"   /* reader, slow: see slow_waiting */

/*
 * Assertions on an answer of the toy service: any struct with int status, char *body and
 * (for errors) code and message strings, as the tests parse them. Each frees the body; they
 * are macros so that cmocka names the test's line. The test includes cmocka.h.
 */
/* The answer has STATUS. */
#define expect_status(a, st)                                                                       \
	do {                                                                                       \
		assert_int_equal((a)->status, (st));                                               \
		free((a)->body);                                                                   \
	} while (0)

/* The answer has STATUS and the text BODY. */
#define expect_answer(a, st, text)                                                                 \
	do {                                                                                       \
		assert_int_equal((a)->status, (st));                                               \
		assert_string_equal((a)->body, (text));                                            \
		free((a)->body);                                                                   \
	} while (0)

/* The answer is the error STATUS with CODE. */
#define expect_code(a, st, cd)                                                                     \
	do {                                                                                       \
		assert_int_equal((a)->status, (st));                                               \
		assert_string_equal((a)->code, (cd));                                              \
		free((a)->body);                                                                   \
	} while (0)

/* The answer is the error STATUS with CODE and MESSAGE. */
#define expect_error(a, st, cd, msg)                                                               \
	do {                                                                                       \
		assert_int_equal((a)->status, (st));                                               \
		assert_string_equal((a)->code, (cd));                                              \
		assert_string_equal((a)->message, (msg));                                          \
		free((a)->body);                                                                   \
	} while (0)

#define TOY_MAX_AUDIT 256

typedef struct {
	pthread_mutex_t lock;
	unsigned calls;	       /* handler calls */
	const char *health;    /* what /healthz says; NULL: ok */
	const char *not_ready; /* why /readyz says 503; NULL: ready */
	char audit[TOY_MAX_AUDIT][1024];
	unsigned naudit;
	unsigned sleep_ms; /* GetImage of "slow" sleeps this long; of "budget": answers the
			    * caller's budget (Connect-Timeout-Ms) left as its size, UINT64_MAX
			    * for none */
	/* WaitImage (a GetImage that blocks) waits until slow_release, for at most 60 s */
	pthread_cond_t slow_cond;
	unsigned slow_waiting; /* WaitImage calls blocked now */
	bool slow_release;
} toy_app;

extern const ims_rpc_method toy_methods[];
extern const size_t toy_nmethods;

void toy_init(toy_app *app);
/** Options that serve toy_methods with @p app (hooks set; listeners not). */
void toy_opts(ims_rpc_server_opts *o, toy_app *app);
unsigned toy_calls(toy_app *app);
/** How many WaitImage calls are blocked now. */
unsigned toy_slow_waiting(toy_app *app);
/** Let the blocked WaitImage calls return (@p release), or make the next ones block. */
void toy_slow_release(toy_app *app, bool release);
/** Copy the last audit line into @p buf, "" if none; @returns how many there were. */
unsigned toy_last_audit(toy_app *app, char *buf, size_t cap);

#endif
