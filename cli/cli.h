/*
 * cli/cli.h: the imgstore command-line client, as a library (ims_cli) that main.c wires to
 * libimgstore and that the unit tests drive with canned responses.
 *
 * The CLI never talks to libimgstore directly: every call goes through an ims_cli_transport,
 * which main.c opens with ims_client_open() on the first call (so that usage errors are
 * found before any connection). That keeps everything here testable without a server and
 * keeps the architecture rule visible: cli/ sees the public client API and common/ only.
 *
 * Verbs return an exit status, not an errno: 0 success, 1 error (message on stderr as
 * `imgstore: <one line>`), 2 usage error.
 */
#ifndef IMS_CLI_CLI_H
#define IMS_CLI_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <protobuf-c/protobuf-c.h>

#include "common/spec.h"
#include "proto/rpc.h"

#include "imgstore/v1/common.pb-c.h"
#include "imgstore/v1/group.pb-c.h"
#include "imgstore/v1/replication.pb-c.h"

#define IMS_CLI_EXIT_OK	   0
#define IMS_CLI_EXIT_ERROR 1
#define IMS_CLI_EXIT_USAGE 2

/* Upload and download chunks are never larger than this, whatever the server offers. */
#define IMS_CLI_CHUNK_MAX (2u << 20)

typedef enum {
	IMS_CLI_FORMAT_TABLE = 0,
	IMS_CLI_FORMAT_JSON = 1,
} ims_cli_format;

/** How to reach the server: the global options, resolved against the environment. */
typedef struct {
	const char *server; /* URL, "/path" or "unix:/path" */
	const char *token;  /* read from the token file; NULL: none */
	const char *ca_file;
	const char *cert_file;
	const char *key_file;
	long timeout_ms; /* one call; 0: the library's default */
} ims_cli_conn;

/** One open connection. main.c fills it from libimgstore; tests from a fake. */
typedef struct {
	void *ctx;
	/* as ims_client_call(): 0 or a negative errno with ims_error_last() set */
	int (*call)(void *ctx, const char *method, const ProtobufCMessage *req,
		    const ProtobufCMessageDescriptor *resp_desc, ProtobufCMessage **resp);
	ims_rpc_code (*last_code)(void *ctx);
	/* the reason of the last failure's typed error detail ("STALE_LEASE"), "" if none; may
	 * be NULL */
	const char *(*last_reason)(void *ctx);
	void (*close)(void *ctx);
} ims_cli_transport;

/** Opens @p out for @p conn. @returns 0 or a negative errno with ims_error_last() set. */
typedef int (*ims_cli_connect_fn)(ims_cli_transport *out, const ims_cli_conn *conn, void *arg);

typedef struct ims_cli_verb ims_cli_verb;

/** The CLI's context: global options, output streams, the connection once open. */
typedef struct {
	/* global options (environment first, then the command line) */
	const char *server;
	const char *token_file;
	const char *ca_file;
	const char *cert_file;
	const char *key_file;
	ims_cli_format format;
	uint64_t timeout_s; /* --timeout: one call; 0: the library's default */

	FILE *out, *err;
	bool out_tty, err_tty;

	ims_cli_connect_fn connect;
	void *connect_arg;
	ims_cli_transport t;
	bool connected;
	char *token;

	/* set by main's SIGINT handler; NULL: never interrupted */
	const volatile sig_atomic_t *interrupted;
	/*
	 * The CLI sets it to 1 while Ctrl-C means "cancel" (waiting on an operation, an upload,
	 * a download); main's handler ends the process at once while it is 0. NULL: not used.
	 */
	volatile sig_atomic_t *sigint_armed;
	/* a monotonic clock in seconds; tests replace it */
	double (*now)(void *arg);
	void *now_arg;
	/* WaitOperation's timeout_ms per poll (1000) */
	unsigned poll_ms;
	/* seconds between plain progress lines when stderr is no terminal (5) */
	double plain_interval;

	const char *noun;	  /* the noun given, for messages */
	const ims_cli_verb *verb; /* the verb running, for messages */
} ims_cli;

/**
 * Set up @p cli with defaults: stdout/stderr, isatty() of both, the monotonic clock.
 * The caller sets connect (and interrupted) before ims_cli_main().
 */
void ims_cli_init(ims_cli *cli);

/** Close the connection and free what ims_cli_main() allocated. Accepts a half-used @p cli. */
void ims_cli_cleanup(ims_cli *cli);

/**
 * Run `imgstore ARGV...` (argv[0] is the program name). Reads IMGSTORE_SERVER,
 * IMGSTORE_TOKEN_FILE, IMGSTORE_CA_FILE, IMGSTORE_CERT_FILE, IMGSTORE_KEY_FILE and
 * IMGSTORE_FORMAT with getenv().
 *
 * @returns the exit status: 0, 1 or 2.
 */
int ims_cli_main(ims_cli *cli, int argc, char **argv);

/* ---- verbs and their arguments (args.c) ---- */

typedef struct {
	const char *name;    /* "size" for --size */
	const char *metavar; /* "SIZE"; NULL for a flag */
	const char *help;    /* one line */
} ims_cli_opt;

/* The entries many verbs' option tables share. */
#define IMS_CLI_OPT_NO_WAIT                                                                        \
	{                                                                                          \
		"no-wait", NULL, "print the operation id and return without waiting"               \
	}
#define IMS_CLI_OPT_END                                                                            \
	{                                                                                          \
		NULL, NULL, NULL                                                                   \
	}

/* The option tables of verbs that have no option, and of those with --no-wait alone (args.c). */
extern const ims_cli_opt ims_cli__no_opts[];
extern const ims_cli_opt ims_cli__wait_opts[];

#define IMS_CLI_MAX_OPTS 16
#define IMS_CLI_MAX_POS	 64

/** A verb's command line after parsing: positionals and option values. */
typedef struct {
	const char *pos[IMS_CLI_MAX_POS];
	unsigned npos;
	/* by index in the verb's option table; NULL: not given; "" for a given flag */
	const char *val[IMS_CLI_MAX_OPTS];
} ims_cli_args;

typedef struct ims_cli_call_spec ims_cli_call_spec;

struct ims_cli_verb {
	const char *noun;
	const char *verb;	 /* may be two words: "lease acquire" */
	const char *synopsis;	 /* what follows NOUN VERB, e.g. "POOL/IMAGE --size SIZE" */
	const char *summary;	 /* one line */
	const ims_cli_opt *opts; /* ends with { NULL } */
	unsigned min_pos, max_pos;
	int (*run)(ims_cli *cli, const ims_cli_args *a);
	/* a verb that is one call and nothing else: run is NULL, ims_cli_run_call() runs this */
	const ims_cli_call_spec *call;
};

/* The verbs of each noun (cmd_*.c), each table ending with a zeroed entry. */
extern const ims_cli_verb ims_cli__image_verbs[];
extern const ims_cli_verb ims_cli__snap_verbs[];
extern const ims_cli_verb ims_cli__op_verbs[];
extern const ims_cli_verb ims_cli__host_verbs[];
extern const ims_cli_verb ims_cli__repl_verbs[];
extern const ims_cli_verb ims_cli__site_verbs[];
extern const ims_cli_verb ims_cli__tier_verbs[];
extern const ims_cli_verb ims_cli__group_verbs[];
extern const ims_cli_verb ims_cli__audit_verbs[];
extern const ims_cli_verb ims_cli__key_verbs[];

/** A noun: its name, a one-line summary, its verbs. */
typedef struct {
	const char *name;
	const char *summary;
	const ims_cli_verb *verbs;
} ims_cli_noun;

/* Every noun, in the order of `imgstore --help`, ending with a zeroed entry (args.c). */
extern const ims_cli_noun ims_cli__nouns[];
/* The global options (args.c), ending with { NULL }: --server, --token-file... */
extern const ims_cli_opt ims_cli__global_opts[];

/**
 * An example of a verb, shown by `imgstore NOUN VERB --help` and in imgstore(1) (examples.c).
 * @p commands holds one command line or several ('\n' between them), each a complete
 * `imgstore ...` command that runs as written against a site (tests/integration/
 * test_cli_help_examples.sh runs every one, in the order --help shows them).
 */
typedef struct {
	const char *noun;
	const char *verb;
	const char *what;     /* one line: what it does */
	const char *commands; /* "imgstore ...", '\n'-separated */
} ims_cli_example;

/* Every example, grouped by verb in the order of the verbs' tables; ends with a zeroed entry. */
extern const ims_cli_example ims_cli__examples[];

/** The verb NOUN VERB ("host", "lease acquire"), or NULL. */
const ims_cli_verb *ims_cli_find_verb(const char *noun, const char *verb);

/** @returns the value of option @p name (a name of the current verb's table), or NULL. */
const char *ims_cli_opt_value(const ims_cli *cli, const ims_cli_args *a, const char *name);
bool ims_cli_opt_flag(const ims_cli *cli, const ims_cli_args *a, const char *name);

/* ---- failures ---- */

/** Print `imgstore: MSG` and `Try 'imgstore NOUN VERB --help'.`; @returns 2. */
int ims_cli_usage(ims_cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/** Print `imgstore: MSG` (control characters escaped); @returns 1. */
int ims_cli_fail(ims_cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void ims_cli_warn(ims_cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- checked arguments: each returns 0 or prints a usage error and returns 2 ---- */

int ims_cli_arg_spec(ims_cli *cli, ims_spec *out, const char *s, bool snap_allowed,
		     bool snap_required);
int ims_cli_arg_name(ims_cli *cli, ims_name_kind kind, const char *what, const char *s);
int ims_cli_arg_size(ims_cli *cli, uint64_t *out, const char *opt, const char *s);
int ims_cli_arg_duration(ims_cli *cli, uint64_t *out, const char *opt, const char *s, uint64_t max);
int ims_cli_arg_uint(ims_cli *cli, uint64_t *out, const char *opt, const char *s, uint64_t max);
/** A free-form identifier (operation and lease ids, host and site names, targets). */
int ims_cli_arg_word(ims_cli *cli, const char *what, const char *s);
/** One of @p choices (NULL-terminated). */
int ims_cli_arg_choice(ims_cli *cli, const char *opt, const char *s, const char *const *choices);

/**
 * POOL/IMAGE[@SNAP] @p s into @p spec and the wire @p out, which borrows its strings from
 * @p spec (ims_cli_arg_spec() then ims_cli_spec_to_msg()). @p s NULL (an optional image not
 * given): an ImageSpec whose fields are all "".
 */
int ims_cli_arg_image(ims_cli *cli, ims_spec *spec, Imgstore__V1__ImageSpec *out, const char *s,
		      bool snap_allowed, bool snap_required);

/**
 * POOL/GROUP[@SNAP] @p s into @p spec and the wire @p out, which borrows its strings from
 * @p spec; @p snap_required: the snapshot is required, else refused.
 */
int ims_cli_arg_group(ims_cli *cli, ims_spec *spec, Imgstore__V1__GroupSpec *out, const char *s,
		      bool snap_required);

/**
 * Option --@p name of the current verb, checked as ims_cli_arg_word("--NAME"): @p out is its
 * value, or "" when it is not given. @p required: not given is "--NAME is required".
 */
int ims_cli_opt_word(ims_cli *cli, char **out, const ims_cli_args *a, const char *name,
		     bool required);

/**
 * Option --@p name of the current verb, one of @p choices (NULL-terminated) as
 * ims_cli_arg_choice() checks it: @p out is its value, or @p dflt when it is not given.
 */
int ims_cli_opt_choice(ims_cli *cli, char **out, const ims_cli_args *a, const char *name,
		       const char *const *choices, const char *dflt);

/**
 * Option --@p name of the current verb, a duration of 1s to 2^32-1s: @p out is 0 when it is not
 * given. 0s is refused with "--NAME: must be at least 1s" and @p zero_hint ("" for none).
 */
int ims_cli_opt_seconds(ims_cli *cli, uint32_t *out, const ims_cli_args *a, const char *name,
			const char *zero_hint);

/** A verify's --chunk: a power of two from 4K to 1G; @p out is left as it is when not given. */
int ims_cli_opt_chunk(ims_cli *cli, uint32_t *out, const ims_cli_args *a);

/** A failover's --wait: a duration from 1s to 1d; @p out is 0 when it is not given. */
int ims_cli_opt_fence_wait(ims_cli *cli, uint32_t *out, const ims_cli_args *a);

/** Option --@p name of the current verb, a size (10G, 512M...); @p required: "--NAME is required".
 */
int ims_cli_opt_size(ims_cli *cli, uint64_t *out, const ims_cli_args *a, const char *name,
		     bool required);

/** Whether @p server names a Unix socket ("/path" or "unix:/path"). */
bool ims_cli_server_is_unix(const char *server);

/**
 * Read a token file: its first line, whitespace trimmed. Warns on @p warn when the file is
 * readable by its group or others.
 *
 * @param[out] out the token; free() it.
 * @returns -ENOENT, -EACCES... with ims_error_last() naming the file; -EINVAL for an empty
 *          token.
 */
int ims_cli_read_token(char **out, const char *path, FILE *warn);

/* ---- calls (call.c) ---- */

/** A column of a table: a field of the row message, or a function. */
typedef struct {
	const char *header;
	const char *field;
	const char *(*fn)(char *buf, size_t len, const ProtobufCMessage *row);
} ims_cli_column;

/**
 * Call @p method, opening the connection first if needed. On failure print the error
 * (`imgstore: <server's message>`, or "NOUN VERB is not available on this server yet
 * (unimplemented)").
 *
 * @param[out] resp free with protobuf_c_message_free_unpacked(resp, NULL).
 * @returns 0 or the exit status.
 */
int ims_cli_call(ims_cli *cli, const char *method, const void *req,
		 const ProtobufCMessageDescriptor *resp_desc, void *resp);

/**
 * Open one more connection like the first (which must be open): for a thread of its own.
 * Prints nothing.
 *
 * @returns 0 or a negative errno with ims_error_last() set; close it with out->close(out->ctx).
 */
int ims_cli_connect_another(ims_cli *cli, ims_cli_transport *out);

/**
 * As ims_cli_call(), except that a permission_denied answer is not printed: *@p denied is set
 * and 1 returned, so that the caller can try another way (an upload instead of a path the
 * daemon may not read).
 */
int ims_cli_call_denied(ims_cli *cli, const char *method, const void *req,
			const ProtobufCMessageDescriptor *resp_desc, void *resp, bool *denied);

/** Fill a wire ImageSpec from a parsed one; the strings are borrowed from @p spec. */
void ims_cli_spec_to_msg(Imgstore__V1__ImageSpec *out, ims_spec *spec);

/*
 * What most verbs do once their request is built: call, print the reply in one of the usual
 * ways, free it. Each @returns 0 or the exit status.
 */

/** Print the reply with ims_cli_print_message(). */
int ims_cli_call_show(ims_cli *cli, const char *method, const void *req,
		      const ProtobufCMessageDescriptor *resp_desc);

/** An empty reply: nothing for humans, the (empty) JSON document with --format json. */
int ims_cli_call_empty(ims_cli *cli, const char *method, const void *req,
		       const ProtobufCMessageDescriptor *resp_desc);

/**
 * Print the repeated message field @p field of the reply with ims_cli_print_list();
 * @p field NULL: the reply itself is the one row.
 */
int ims_cli_call_list(ims_cli *cli, const char *method, const void *req,
		      const ProtobufCMessageDescriptor *resp_desc, const char *field,
		      const ims_cli_column *cols);

/**
 * Call @p method, which starts an operation, and finish it as ims_cli_finish_op() does,
 * with the verb's --no-wait (every such verb has one).
 */
int ims_cli_call_op(ims_cli *cli, const ims_cli_args *a, const char *method, const void *req);

/** Print a reply for humans or as JSON, as a verb of its own does. */
typedef void (*ims_cli_show_fn)(ims_cli *cli, const ProtobufCMessage *resp);

/** As ims_cli_call_show(), printing the reply with @p show. */
int ims_cli_call_print(ims_cli *cli, const char *method, const void *req,
		       const ProtobufCMessageDescriptor *resp_desc, ims_cli_show_fn show);

/* ---- verbs that are one call (call.c): a row of the verb's table instead of a function ---- */

/** What the positional of a one-call verb is, checked as the ims_cli_arg_*() of that kind. */
typedef enum {
	IMS_CLI_POS_NONE,  /* the verb takes no positional */
	IMS_CLI_POS_IMAGE, /* POOL/IMAGE into an ImageSpec field */
	IMS_CLI_POS_SNAP,  /* POOL/IMAGE@SNAP into an ImageSpec field */
	IMS_CLI_POS_GROUP, /* POOL/GROUP into a GroupSpec field */
	IMS_CLI_POS_POOL,  /* a pool name into a string field */
	IMS_CLI_POS_WORD,  /* an identifier (ims_cli_arg_word()) into a string field */
} ims_cli_pos_kind;

/** How a one-call verb prints the reply: as ims_cli_call_show(), _empty(), _op(), _list(). */
typedef enum {
	IMS_CLI_REPLY_SHOW,
	IMS_CLI_REPLY_EMPTY,
	IMS_CLI_REPLY_OP,
	IMS_CLI_REPLY_LIST,
	IMS_CLI_REPLY_NONE, /* nothing, not even with --format json */
} ims_cli_reply_kind;

/**
 * A verb that is one call: the positional goes into the request's field @p field, the request
 * to @p method of @p service, the reply is printed as @p reply says. The request and reply
 * types are the method's. When the verb's min_pos is 0 and no positional is given, an image
 * goes as an empty ImageSpec, a pool or a word as "".
 */
struct ims_cli_call_spec {
	const ProtobufCServiceDescriptor *service;
	const char *method; /* the method's name in @p service: "CreateSnapshot" */
	ims_cli_pos_kind pos;
	const char *field;
	const char *what; /* POOL, WORD: the positional's name in messages ("lease id") */
	ims_cli_reply_kind reply;
	const char *list_field;	    /* LIST: as ims_cli_call_list() */
	const ims_cli_column *cols; /* LIST */
	ims_cli_show_fn show;	    /* SHOW: NULL for ims_cli_print_message() */
};

/** Run @p c with the command line @p a. @returns the exit status. */
int ims_cli_run_call(ims_cli *cli, const ims_cli_call_spec *c, const ims_cli_args *a);

/* ---- operations (wait.c) ---- */

typedef struct {
	bool no_wait;
	uint64_t timeout_s; /* 0: wait as long as it takes */
	/* stop waiting once the daemon says the outcome is known (Operation.decided) and the
	 * rest has gone on for IMS_CLI_DECIDED_GRACE_S: a forced failover whose old copies are
	 * slow to make secondaries; `op wait` waits for the end */
	bool until_decided;
} ims_cli_wait_opts;
#define IMS_CLI_DECIDED_GRACE_S 3.0

/**
 * Wait for @p op (owned; replaced as it progresses) to finish, with progress on stderr;
 * cancel it on SIGINT. Prints nothing on stdout.
 *
 * @returns 0 when it SUCCEEDED, else 1 after printing why.
 */
int ims_cli_wait(ims_cli *cli, Imgstore__V1__Operation **op, uint64_t timeout_s);

/** ims_cli_wait(), returning 0 early as @p w says (until_decided): then *@p op still runs. */
int ims_cli_wait_opts_run(ims_cli *cli, Imgstore__V1__Operation **op, const ims_cli_wait_opts *w);

/**
 * What every verb that starts an operation does with it: with --no-wait print its id (JSON:
 * the operation) and return 0; else wait and print a one-line summary (JSON: the final
 * operation). With @p w until_decided, an operation whose outcome is known while it goes on
 * (a forced site failover) ends the wait: its result line, and on stderr how to follow it
 * (JSON: the operation as it stands). Frees @p op.
 */
int ims_cli_finish_op(ims_cli *cli, Imgstore__V1__Operation *op, const ims_cli_wait_opts *w);

/** Say whether Ctrl-C cancels (true: it sets *interrupted) or ends the CLI (false). */
void ims_cli_arm_sigint(ims_cli *cli, bool armed);

/** Progress of a transfer or an operation, drawn on stderr. */
typedef struct {
	ims_cli *cli;
	char label[512]; /* "import rbd/vm1", escaped */
	double start, last_sample, last_print;
	uint64_t last_done;
	double rate;  /* bytes/s, smoothed; < 0 until known */
	size_t drawn; /* width of the bar drawn last (a terminal) */
	bool printed_any;
	int last_state;
	/* the latest values, and whether the terminal shows them */
	int cur_state;
	uint64_t cur_done, cur_total;
	bool stale;
} ims_cli_progress;

void ims_cli_progress_init(ims_cli_progress *p, ims_cli *cli, const char *label);
/** @p state: an OperationState, or 0 for a transfer of the client's own. */
void ims_cli_progress_update(ims_cli_progress *p, int state, uint64_t done, uint64_t total);
/** Draw the latest values if the bar lags behind, and end its line (a terminal). */
void ims_cli_progress_end(ims_cli_progress *p);

/** "[#####     ] 52% 1 GiB/2 GiB 210 MiB/s"; @p rate < 0 leaves the rate out. */
char *ims_cli_format_bar(char *buf, size_t len, uint64_t done, uint64_t total, double rate);
/** "import rbd/vm1: 52% (1 GiB of 2 GiB)" */
char *ims_cli_format_plain(char *buf, size_t len, const char *label, int state, uint64_t done,
			   uint64_t total);

/* ---- output (output.c) ---- */

/**
 * Copy @p s into @p buf escaping what a terminal would act on: C0 controls, DEL, C1
 * controls and bytes that are not UTF-8 become \n, \t, \xNN or \u00NN. @p keep_newlines
 * keeps '\n' and '\t' as they are (multi-line documents such as libvirt XML).
 *
 * @returns @p buf, truncated to @p len.
 */
char *ims_cli_escape(char *buf, size_t len, const char *s, bool keep_newlines);

/** "2024-05-01T12:00:00Z"; 0 gives "-". */
char *ims_cli_format_time(char *buf, size_t len, int64_t unix_seconds);

/** An OperationState as JSON and tables write it: "succeeded", "running"... */
const char *ims_cli_op_state_name(int state);

/**
 * A message as JSON: every field under its proto name, defaults included; enums as their
 * lower-case short name; repeated Tag as an object {"key": "value"}; 64-bit integers as
 * numbers. The caller owns the result (json_object_put()).
 */
struct json_object *ims_cli_json_message(const ProtobufCMessage *msg);

/** Print @p msg: JSON, or `key: value` lines with sizes and times for humans. */
void ims_cli_print_message(ims_cli *cli, const ProtobufCMessage *msg);

/**
 * Print @p rows: a JSON array, or a table with a header and aligned columns (@p cols ends
 * with { NULL }).
 */
void ims_cli_print_list(ims_cli *cli, ProtobufCMessage *const *rows, size_t n,
			const ims_cli_column *cols);

/** Format one field of @p msg for a human (what tables and key: value lines show). */
const char *ims_cli_format_field(char *buf, size_t len, const ProtobufCMessage *msg,
				 const ProtobufCFieldDescriptor *f);

/** Print a JSON document on stdout, pretty-printed, and drop the reference. */
void ims_cli_print_json(ims_cli *cli, struct json_object *doc);

/** For humans: a line "@p indent differs at offset O, N bytes" for each mismatch of @p v. */
void ims_cli_print_mismatches(ims_cli *cli, const char *indent,
			      const Imgstore__V1__VerifyImageResponse *v);

/** Print @p s (escaped for a terminal) followed by a newline on stdout. */
void ims_cli_print_line(ims_cli *cli, const char *s);

/* ---- help (args.c) ---- */

void ims_cli_help_main(ims_cli *cli, FILE *f);
void ims_cli_help_noun(ims_cli *cli, FILE *f, const char *noun);
void ims_cli_help_verb(ims_cli *cli, FILE *f, const ims_cli_verb *v);

/* ---- reference (ref.c): imgstore(1) and the bash completion, from the tables above ---- */

/** Write the manual page imgstore(1) (roff, man macros) to @p f. */
void ims_cli_write_man(FILE *f, const char *version);
/** Write the bash completion of `imgstore` to @p f. */
void ims_cli_write_bash_completion(FILE *f);

#endif
