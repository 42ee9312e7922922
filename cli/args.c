/*
 * cli/args.c: the command line: global options and the environment, finding NOUN VERB,
 * parsing a verb's options and positionals, checked argument values, and --help.
 */
#include "cli/cli.h"

#include <assert.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/error.h"
#include "common/units.h"

#ifndef IMS_VERSION
#define IMS_VERSION "0.0.0"
#endif

const ims_cli_noun ims_cli__nouns[] = {
	{"image", "images: create, import, export, clone, list, inspect, resize, remove, tag",
	 ims_cli__image_verbs},
	{"snap", "snapshots of an image: create, list, roll back, remove", ims_cli__snap_verbs},
	{"op", "long-running operations: list, show, wait for, cancel", ims_cli__op_verbs},
	{"host", "hypervisor hosts and their leases on images", ims_cli__host_verbs},
	{"repl", "replication of images to other sites", ims_cli__repl_verbs},
	{"site", "the sites the daemon knows", ims_cli__site_verbs},
	{"tier", "cold tiering of images to object storage", ims_cli__tier_verbs},
	{"group", "consistency groups: the disks of one VM together", ims_cli__group_verbs},
	{"audit", "the audit log's hash chain, checked where its files are", ims_cli__audit_verbs},
	{"key", "the site's key-encryption key: rewrap the data keys after a rotation",
	 ims_cli__key_verbs},
	{NULL, NULL, NULL},
};
#define N_NOUNS (sizeof(ims_cli__nouns) / sizeof(ims_cli__nouns[0]) - 1)

/* Global options: before NOUN, or after the verb when the verb has no option of that name. */
enum {
	G_SERVER,
	G_TOKEN_FILE,
	G_CA_FILE,
	G_CERT_FILE,
	G_KEY_FILE,
	G_FORMAT,
	G_OUTPUT,
	G_TIMEOUT,
	G_COUNT
};
const ims_cli_opt ims_cli__global_opts[] = {
	[G_SERVER] = {"server", "URL|SOCKET",
		      "the daemon: https://HOST:PORT, http://HOST:PORT, /path or unix:/path "
		      "(IMGSTORE_SERVER)"},
	[G_TOKEN_FILE] = {"token-file", "FILE",
			  "file holding the bearer token on its first line (IMGSTORE_TOKEN_FILE)"},
	[G_CA_FILE] = {"ca-file", "FILE",
		       "CA certificate that signed the server's (IMGSTORE_CA_FILE); default: the "
		       "system's"},
	[G_CERT_FILE] =
		{"cert-file", "FILE",
		 "client certificate (PEM) for servers that ask for one (IMGSTORE_CERT_FILE)"},
	[G_KEY_FILE] = {"key-file", "FILE", "key of --cert-file (IMGSTORE_KEY_FILE)"},
	[G_FORMAT] = {"format", "table|json",
		      "output: aligned tables or one JSON document (IMGSTORE_FORMAT)"},
	[G_OUTPUT] = {"output", "table|json",
		      "the same as --format, for verbs that have a --format of their own"},
	[G_TIMEOUT] = {"timeout", "DURATION", "limit on each call to the server (default 60s)"},
	[G_COUNT] = {NULL, NULL, NULL},
};

const ims_cli_opt ims_cli__no_opts[] = {IMS_CLI_OPT_END};
const ims_cli_opt ims_cli__wait_opts[] = {IMS_CLI_OPT_NO_WAIT, IMS_CLI_OPT_END};

static const char *const format_choices[] = {"table", "json", NULL};

void ims_cli_init(ims_cli *cli)
{
	memset(cli, 0, sizeof(*cli));
	cli->out = stdout;
	cli->err = stderr;
	cli->out_tty = isatty(STDOUT_FILENO) == 1;
	cli->err_tty = isatty(STDERR_FILENO) == 1;
	cli->poll_ms = 1000;
	cli->plain_interval = 5.0;
}

void ims_cli_cleanup(ims_cli *cli)
{
	if (!cli)
		return;
	if (cli->connected && cli->t.close)
		cli->t.close(cli->t.ctx);
	cli->connected = false;
	memset(&cli->t, 0, sizeof(cli->t));
	if (cli->token) {
		/* a secret: do not leave it in freed memory */
		memset(cli->token, 0, strlen(cli->token));
		free(cli->token);
		cli->token = NULL;
	}
}

/* ---- failures ---- */

static void vprint_error(ims_cli *cli, const char *prefix, const char *fmt, va_list ap)
	__attribute__((format(printf, 3, 0)));

static void vprint_error(ims_cli *cli, const char *prefix, const char *fmt, va_list ap)
{
	char msg[1024], esc[2048];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	fprintf(cli->err, "imgstore: %s%s\n", prefix, ims_cli_escape(esc, sizeof(esc), msg, false));
}

static void print_try(ims_cli *cli)
{
	if (cli->verb)
		fprintf(cli->err, "Try 'imgstore %s %s --help'.\n", cli->verb->noun,
			cli->verb->verb);
	else if (cli->noun)
		fprintf(cli->err, "Try 'imgstore %s --help'.\n", cli->noun);
	else
		fprintf(cli->err, "Try 'imgstore --help'.\n");
}

/* The body of the printf-like functions below: `imgstore: PREFIX<fmt, ...>` on stderr. */
#define PRINT_ERROR(cli, prefix, fmt)                                                              \
	do {                                                                                       \
		va_list ap;                                                                        \
		va_start(ap, fmt);                                                                 \
		vprint_error(cli, prefix, fmt, ap);                                                \
		va_end(ap);                                                                        \
	} while (0)

int ims_cli_usage(ims_cli *cli, const char *fmt, ...)
{
	PRINT_ERROR(cli, "", fmt);
	print_try(cli);
	return IMS_CLI_EXIT_USAGE;
}

int ims_cli_fail(ims_cli *cli, const char *fmt, ...)
{
	PRINT_ERROR(cli, "", fmt);
	return IMS_CLI_EXIT_ERROR;
}

void ims_cli_warn(ims_cli *cli, const char *fmt, ...)
{
	PRINT_ERROR(cli, "warning: ", fmt);
}

/* ---- checked values ---- */

int ims_cli_arg_spec(ims_cli *cli, ims_spec *out, const char *s, bool snap_allowed,
		     bool snap_required)
{
	ims_error_clear();
	if (ims_spec_parse(out, s, NULL, snap_allowed, snap_required) < 0)
		return ims_cli_usage(cli, "%s", ims_error_last());
	return 0;
}

int ims_cli_arg_image(ims_cli *cli, ims_spec *spec, Imgstore__V1__ImageSpec *out, const char *s,
		      bool snap_allowed, bool snap_required)
{
	int r;

	memset(spec, 0, sizeof(*spec));
	if (s && (r = ims_cli_arg_spec(cli, spec, s, snap_allowed, snap_required)))
		return r;
	ims_cli_spec_to_msg(out, spec);
	return 0;
}

int ims_cli_opt_word(ims_cli *cli, char **out, const ims_cli_args *a, const char *name,
		     bool required)
{
	const char *v = ims_cli_opt_value(cli, a, name);
	char what[64];
	int r;

	snprintf(what, sizeof(what), "--%s", name);
	if (!v && required)
		return ims_cli_usage(cli, "%s is required", what);
	if (v && (r = ims_cli_arg_word(cli, what, v)))
		return r;
	*out = v ? (char *)v : (char *)"";
	return 0;
}

int ims_cli_opt_choice(ims_cli *cli, char **out, const ims_cli_args *a, const char *name,
		       const char *const *choices, const char *dflt)
{
	const char *v = ims_cli_opt_value(cli, a, name);
	int r;

	if (v && (r = ims_cli_arg_choice(cli, name, v, choices)))
		return r;
	*out = (char *)(v ? v : dflt);
	return 0;
}

int ims_cli_opt_size(ims_cli *cli, uint64_t *out, const ims_cli_args *a, const char *name,
		     bool required)
{
	const char *v = ims_cli_opt_value(cli, a, name);

	if (!v && required)
		return ims_cli_usage(cli, "--%s is required", name);
	return v ? ims_cli_arg_size(cli, out, name, v) : 0;
}

int ims_cli_opt_seconds(ims_cli *cli, uint32_t *out, const ims_cli_args *a, const char *name,
			const char *zero_hint)
{
	const char *v = ims_cli_opt_value(cli, a, name);
	uint64_t secs;
	int r;

	*out = 0;
	if (!v)
		return 0;
	if ((r = ims_cli_arg_duration(cli, &secs, name, v, UINT32_MAX)))
		return r;
	if (secs == 0)
		return ims_cli_usage(cli, "--%s: must be at least 1s%s", name, zero_hint);
	*out = (uint32_t)secs;
	return 0;
}

int ims_cli_opt_fence_wait(ims_cli *cli, uint32_t *out, const ims_cli_args *a)
{
	const char *wait = ims_cli_opt_value(cli, a, "wait");
	uint64_t secs = 0;

	if (wait && (ims_parse_duration(&secs, wait) < 0 || secs == 0 || secs > 86400))
		return ims_cli_usage(cli, "--wait takes a duration from 1s to 1d, not '%s'", wait);
	*out = (uint32_t)secs;
	return 0;
}

int ims_cli_arg_name(ims_cli *cli, ims_name_kind kind, const char *what, const char *s)
{
	ims_error_clear();
	if (ims_name_check(kind, s) < 0)
		return ims_cli_usage(cli, "%s: %s", what, ims_error_last());
	return 0;
}

int ims_cli_arg_size(ims_cli *cli, uint64_t *out, const char *opt, const char *s)
{
	int r = ims_parse_size(out, s);

	if (r == -ERANGE)
		return ims_cli_usage(cli, "--%s: '%s' is too large", opt, s);
	if (r < 0)
		return ims_cli_usage(cli, "--%s: '%s' is not a size (examples: 10G, 512M, 4096)",
				     opt, s);
	return 0;
}

int ims_cli_opt_chunk(ims_cli *cli, uint32_t *out, const ims_cli_args *a)
{
	const char *s = ims_cli_opt_value(cli, a, "chunk");
	uint64_t bytes;
	int r;

	if (!s)
		return 0;
	if ((r = ims_cli_arg_size(cli, &bytes, "chunk", s)))
		return r;
	if (bytes < 4096 || bytes > (1u << 30) || (bytes & (bytes - 1)))
		return ims_cli_usage(cli, "--chunk: a power of two from 4K to 1G");
	*out = (uint32_t)bytes;
	return 0;
}

int ims_cli_arg_duration(ims_cli *cli, uint64_t *out, const char *opt, const char *s, uint64_t max)
{
	uint64_t v;
	int r = ims_parse_duration(&v, s);

	if (r == -ERANGE || (r == 0 && v > max))
		return ims_cli_usage(cli, "--%s: '%s' is too long", opt, s);
	if (r < 0)
		return ims_cli_usage(cli, "--%s: '%s' is not a duration (examples: 30s, 5m, 1h30m)",
				     opt, s);
	*out = v;
	return 0;
}

int ims_cli_arg_uint(ims_cli *cli, uint64_t *out, const char *opt, const char *s, uint64_t max)
{
	char *end;
	unsigned long long v;

	if (!s || !isdigit((unsigned char)s[0]))
		return ims_cli_usage(cli, "--%s: '%s' is not a number", opt, s ? s : "");
	errno = 0;
	v = strtoull(s, &end, 0);
	if (*end)
		return ims_cli_usage(cli, "--%s: '%s' is not a number", opt, s);
	if (errno == ERANGE || v > max)
		return ims_cli_usage(cli, "--%s: '%s' is too large (at most %" PRIu64 ")", opt, s,
				     max);
	*out = v;
	return 0;
}

int ims_cli_arg_word(ims_cli *cli, const char *what, const char *s)
{
	size_t n = s ? strlen(s) : 0;

	if (n == 0)
		return ims_cli_usage(cli, "empty %s", what);
	if (n > 255)
		return ims_cli_usage(cli, "%s is %zu bytes long; the limit is 255", what, n);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c == 0x7f)
			return ims_cli_usage(cli, "%s '%s' contains a space or a control character",
					     what, s);
	}
	return 0;
}

int ims_cli_arg_choice(ims_cli *cli, const char *opt, const char *s, const char *const *choices)
{
	char list[256] = "";
	size_t off = 0;

	for (size_t i = 0; choices[i]; i++) {
		if (!strcmp(s, choices[i]))
			return 0;
		off += (size_t)snprintf(list + off, sizeof(list) - off, "%s%s", i ? ", " : "",
					choices[i]);
		if (off >= sizeof(list))
			off = sizeof(list) - 1;
	}
	return ims_cli_usage(cli, "--%s: '%s' is not one of %s", opt, s, list);
}

bool ims_cli_server_is_unix(const char *server)
{
	return server && (server[0] == '/' || !strncmp(server, "unix:", 5));
}

int ims_cli_read_token(char **out, const char *path, FILE *warn)
{
	char buf[4096];
	struct stat st;
	ssize_t n;
	int fd, r = 0;
	char *tok, *end, *nl;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return ims_error_set(-errno, "cannot read token file '%s': %s", path,
				     strerror(errno));
	if (fstat(fd, &st) < 0) {
		r = ims_error_set(-errno, "cannot read token file '%s': %s", path, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = ims_error_set(-EINVAL, "token file '%s' is not a regular file", path);
		goto out;
	}
	if (warn && (st.st_mode & (S_IRGRP | S_IROTH)))
		fprintf(warn,
			"imgstore: warning: token file '%s' is readable by others; chmod 600 it\n",
			path);
	n = read(fd, buf, sizeof(buf) - 1);
	if (n < 0) {
		r = ims_error_set(-errno, "cannot read token file '%s': %s", path, strerror(errno));
		goto out;
	}
	buf[n] = '\0';
	nl = strchr(buf, '\n');
	if (nl)
		*nl = '\0';
	else if ((size_t)n == sizeof(buf) - 1) {
		r = ims_error_set(-EINVAL, "token file '%s': the first line is too long", path);
		goto out;
	}
	tok = buf;
	while (isspace((unsigned char)*tok))
		tok++;
	end = tok + strlen(tok);
	while (end > tok && isspace((unsigned char)end[-1]))
		*--end = '\0';
	if (!*tok) {
		r = ims_error_set(-EINVAL, "token file '%s' holds no token on its first line",
				  path);
		goto out;
	}
	for (const char *p = tok; *p; p++) {
		if ((unsigned char)*p < 0x20 || *p == 0x7f) {
			r = ims_error_set(-EINVAL,
					  "token file '%s': the token has a control character",
					  path);
			goto out;
		}
	}
	*out = strdup(tok);
	if (!*out)
		r = ims_error_set(-ENOMEM, "out of memory");
out:
	memset(buf, 0, sizeof(buf));
	close(fd);
	return r;
}

/* ---- verbs ---- */

const ims_cli_verb *ims_cli_find_verb(const char *noun, const char *verb)
{
	for (size_t i = 0; i < N_NOUNS; i++) {
		if (strcmp(ims_cli__nouns[i].name, noun))
			continue;
		for (const ims_cli_verb *v = ims_cli__nouns[i].verbs; v->verb; v++)
			if (!strcmp(v->verb, verb))
				return v;
	}
	return NULL;
}

static const ims_cli_noun *find_noun(const char *name)
{
	for (size_t i = 0; i < N_NOUNS; i++)
		if (!strcmp(ims_cli__nouns[i].name, name))
			return &ims_cli__nouns[i];
	return NULL;
}

static int opt_index(const ims_cli_opt *opts, const char *name, size_t namelen)
{
	for (int i = 0; opts && opts[i].name; i++)
		if (strlen(opts[i].name) == namelen && !strncmp(opts[i].name, name, namelen))
			return i;
	return -1;
}

const char *ims_cli_opt_value(const ims_cli *cli, const ims_cli_args *a, const char *name)
{
	int i = opt_index(cli->verb->opts, name, strlen(name));

	assert(i >= 0 && "option not in the verb's table");
	return i >= 0 ? a->val[i] : NULL;
}

bool ims_cli_opt_flag(const ims_cli *cli, const ims_cli_args *a, const char *name)
{
	return ims_cli_opt_value(cli, a, name) != NULL;
}

/* Apply a global option; @returns 0 or 2. */
static int set_global(ims_cli *cli, int which, const char *value, const char *given_as)
{
	uint64_t secs;
	int r;

	switch (which) {
	case G_SERVER:
		if (!*value)
			return ims_cli_usage(cli, "--server: empty address");
		cli->server = value;
		break;
	case G_TOKEN_FILE: cli->token_file = value; break;
	case G_CA_FILE: cli->ca_file = value; break;
	case G_CERT_FILE: cli->cert_file = value; break;
	case G_KEY_FILE: cli->key_file = value; break;
	case G_FORMAT:
	case G_OUTPUT:
		if ((r = ims_cli_arg_choice(cli, given_as, value, format_choices)))
			return r;
		cli->format = !strcmp(value, "json") ? IMS_CLI_FORMAT_JSON : IMS_CLI_FORMAT_TABLE;
		break;
	case G_TIMEOUT:
		if ((r = ims_cli_arg_duration(cli, &secs, given_as, value, 86400ull * 365)))
			return r;
		if (secs == 0)
			return ims_cli_usage(cli, "--timeout: must be at least 1s");
		cli->timeout_s = secs;
		break;
	}
	return 0;
}

static int read_env(ims_cli *cli)
{
	const char *v;

	if ((v = getenv("IMGSTORE_SERVER")) && *v)
		cli->server = v;
	if ((v = getenv("IMGSTORE_TOKEN_FILE")) && *v)
		cli->token_file = v;
	if ((v = getenv("IMGSTORE_CA_FILE")) && *v)
		cli->ca_file = v;
	if ((v = getenv("IMGSTORE_CERT_FILE")) && *v)
		cli->cert_file = v;
	if ((v = getenv("IMGSTORE_KEY_FILE")) && *v)
		cli->key_file = v;
	if ((v = getenv("IMGSTORE_FORMAT")) && *v) {
		if (strcmp(v, "table") && strcmp(v, "json"))
			return ims_cli_usage(cli, "IMGSTORE_FORMAT: '%s' is not one of table, json",
					     v);
		cli->format = !strcmp(v, "json") ? IMS_CLI_FORMAT_JSON : IMS_CLI_FORMAT_TABLE;
	}
	return 0;
}

static bool is_help(const char *s)
{
	return !strcmp(s, "--help") || !strcmp(s, "-h");
}

/*
 * Parse "--name[=value]" (or "-o VALUE") at argv[*i] against the verb's options (when @p v)
 * and then the global ones. @returns 0 or 2.
 */
static int parse_option(ims_cli *cli, const ims_cli_verb *v, ims_cli_args *a, int argc, char **argv,
			int *i)
{
	const char *arg = argv[*i], *name, *eq, *value = NULL;
	size_t namelen;
	int idx;
	const ims_cli_opt *opt;
	bool global = false;

	if (!strcmp(arg, "-o")) {
		name = "output";
		namelen = 6;
		eq = NULL;
	} else if (arg[0] == '-' && arg[1] == '-') {
		name = arg + 2;
		eq = strchr(name, '=');
		namelen = eq ? (size_t)(eq - name) : strlen(name);
	} else {
		return ims_cli_usage(cli, "unknown option '%s'", arg);
	}
	idx = v ? opt_index(v->opts, name, namelen) : -1;
	if (idx >= 0) {
		opt = &v->opts[idx];
	} else {
		idx = opt_index(ims_cli__global_opts, name, namelen);
		if (idx < 0)
			return ims_cli_usage(cli, "unknown option '--%.*s'", (int)namelen, name);
		opt = &ims_cli__global_opts[idx];
		global = true;
	}
	if (!opt->metavar) {
		if (eq)
			return ims_cli_usage(cli, "--%s takes no value", opt->name);
		value = "";
	} else if (eq) {
		value = eq + 1;
	} else {
		if (*i + 1 >= argc)
			return ims_cli_usage(cli, "--%s needs a value: --%s %s", opt->name,
					     opt->name, opt->metavar);
		value = argv[++*i];
	}
	if (global)
		return set_global(cli, idx, value, opt->name);
	a->val[idx] = value;
	return 0;
}

static unsigned verb_words(const ims_cli_verb *v)
{
	return strchr(v->verb, ' ') ? 2 : 1;
}

/* Whether argv[at..] starts with the words of @p v's name. */
static bool verb_matches(const ims_cli_verb *v, int argc, char **argv, int at)
{
	const char *sp = strchr(v->verb, ' ');

	if (!sp)
		return at < argc && !strcmp(argv[at], v->verb);
	return at + 1 < argc && strlen(argv[at]) == (size_t)(sp - v->verb) &&
	       !strncmp(argv[at], v->verb, (size_t)(sp - v->verb)) && !strcmp(argv[at + 1], sp + 1);
}

static bool is_verb_prefix(const ims_cli_noun *n, const char *word)
{
	for (const ims_cli_verb *v = n->verbs; v->verb; v++) {
		const char *sp = strchr(v->verb, ' ');
		if (sp && strlen(word) == (size_t)(sp - v->verb) &&
		    !strncmp(word, v->verb, (size_t)(sp - v->verb)))
			return true;
	}
	return false;
}

static int run_verb(ims_cli *cli, const ims_cli_verb *v, int argc, char **argv, int at)
{
	ims_cli_args a;
	bool dashdash = false;
	int r;

	memset(&a, 0, sizeof(a));
	cli->verb = v;
	/* --help wins over any mistake elsewhere on the line */
	for (int i = at; i < argc && strcmp(argv[i], "--"); i++) {
		if (is_help(argv[i])) {
			ims_cli_help_verb(cli, cli->out, v);
			return IMS_CLI_EXIT_OK;
		}
	}
	for (int i = at; i < argc; i++) {
		const char *arg = argv[i];
		if (!dashdash && !strcmp(arg, "--")) {
			dashdash = true;
			continue;
		}
		if (!dashdash && arg[0] == '-' && arg[1] != '\0') {
			if ((r = parse_option(cli, v, &a, argc, argv, &i)))
				return r;
			continue;
		}
		if (a.npos >= IMS_CLI_MAX_POS || a.npos >= v->max_pos)
			return ims_cli_usage(cli, "unexpected argument '%s'", arg);
		a.pos[a.npos++] = arg;
	}
	if (a.npos < v->min_pos)
		return ims_cli_usage(cli, "missing arguments: imgstore %s %s %s", v->noun, v->verb,
				     v->synopsis);
	return v->run ? v->run(cli, &a) : ims_cli_run_call(cli, v->call, &a);
}

int ims_cli_main(ims_cli *cli, int argc, char **argv)
{
	const ims_cli_noun *n;
	int i, r;

	if ((r = read_env(cli)))
		return r;
	for (i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (is_help(arg)) {
			ims_cli_help_main(cli, cli->out);
			return IMS_CLI_EXIT_OK;
		}
		if (!strcmp(arg, "--version")) {
			fprintf(cli->out, "imgstore %s\n", IMS_VERSION);
			return IMS_CLI_EXIT_OK;
		}
		if (!strcmp(arg, "--")) {
			i++;
			break;
		}
		if (arg[0] != '-' || arg[1] == '\0')
			break;
		if ((r = parse_option(cli, NULL, NULL, argc, argv, &i)))
			return r;
	}
	if (i >= argc)
		return ims_cli_usage(cli, "missing NOUN: one of image, snap, op, host, repl, site, "
					  "tier, group");
	n = find_noun(argv[i]);
	if (!n)
		return ims_cli_usage(cli, "unknown noun '%s'", argv[i]);
	cli->noun = n->name;
	i++;
	if (i < argc && is_help(argv[i])) {
		ims_cli_help_noun(cli, cli->out, n->name);
		return IMS_CLI_EXIT_OK;
	}
	if (i >= argc)
		return ims_cli_usage(cli, "missing VERB after '%s'", n->name);
	for (const ims_cli_verb *v = n->verbs; v->verb; v++)
		if (verb_matches(v, argc, argv, i))
			return run_verb(cli, v, argc, argv, i + (int)verb_words(v));
	if (is_verb_prefix(n, argv[i])) {
		if (i + 1 < argc && is_help(argv[i + 1])) {
			ims_cli_help_noun(cli, cli->out, n->name);
			return IMS_CLI_EXIT_OK;
		}
		if (i + 1 >= argc)
			return ims_cli_usage(cli, "missing VERB after '%s %s'", n->name, argv[i]);
		return ims_cli_usage(cli, "unknown verb '%s %s %s'", n->name, argv[i], argv[i + 1]);
	}
	return ims_cli_usage(cli, "unknown verb '%s %s'", n->name, argv[i]);
}

/* ---- help ---- */

static void print_opts(FILE *f, const ims_cli_opt *opts)
{
	for (size_t i = 0; opts && opts[i].name; i++) {
		char lhs[64];
		snprintf(lhs, sizeof(lhs), "--%s%s%s", opts[i].name, opts[i].metavar ? " " : "",
			 opts[i].metavar ? opts[i].metavar : "");
		if (strlen(lhs) > 24)
			fprintf(f, "  %s\n  %-24s  %s\n", lhs, "", opts[i].help);
		else
			fprintf(f, "  %-24s  %s\n", lhs, opts[i].help);
	}
}

/* "Examples:", then each example: "  # what" and its command lines, indented by two. */
static void print_examples(FILE *f, const ims_cli_verb *v)
{
	bool any = false;

	for (const ims_cli_example *e = ims_cli__examples; e->noun; e++) {
		if (strcmp(e->noun, v->noun) || strcmp(e->verb, v->verb))
			continue;
		fprintf(f, "%s  # %s\n", any ? "" : "\nExamples:\n", e->what);
		for (const char *c = e->commands; *c;) {
			size_t n = strcspn(c, "\n");
			fprintf(f, "  %.*s\n", (int)n, c);
			c += n;
			if (*c)
				c++;
		}
		any = true;
	}
}

void ims_cli_help_main(ims_cli *cli, FILE *f)
{
	(void)cli;
	fprintf(f, "Usage: imgstore [GLOBAL OPTIONS] NOUN VERB [ARGS...]\n\n"
		   "The command-line client of imgstored: KVM disk images on Ceph RBD.\n\n"
		   "Nouns:\n");
	for (size_t i = 0; i < N_NOUNS; i++)
		fprintf(f, "  %-7s %s\n", ims_cli__nouns[i].name, ims_cli__nouns[i].summary);
	fprintf(f, "\nGlobal options (before NOUN, or after the verb unless the verb has an "
		   "option of that name):\n");
	print_opts(f, ims_cli__global_opts);
	fprintf(f, "  %-24s  %s\n  %-24s  %s\n  %-24s  %s\n", "-o table|json", "short for --output",
		"--help", "show help: 'imgstore NOUN --help', 'imgstore NOUN VERB --help'",
		"--version", "print the version");
	fprintf(f,
		"\nEnvironment: IMGSTORE_SERVER, IMGSTORE_TOKEN_FILE, IMGSTORE_CA_FILE,\n"
		"IMGSTORE_CERT_FILE, IMGSTORE_KEY_FILE, IMGSTORE_FORMAT give the defaults of the\n"
		"options above.\n\n"
		"Exit status: 0 success, 1 error, 2 usage error.\n"
		"Sizes are written 10G, 512M, 4096; durations 30s, 5m, 1h30m.\n"
		"Every verb, with examples: 'man imgstore'.\n");
}

void ims_cli_help_noun(ims_cli *cli, FILE *f, const char *noun)
{
	const ims_cli_noun *n = find_noun(noun);

	(void)cli;
	if (!n)
		return;
	fprintf(f, "Usage: imgstore %s VERB [ARGS...]\n\n%c%s.\n\nVerbs:\n", n->name,
		toupper((unsigned char)n->summary[0]), n->summary + 1);
	for (const ims_cli_verb *v = n->verbs; v->verb; v++)
		fprintf(f, "  %s %s\n      %s\n", v->verb, v->synopsis, v->summary);
	fprintf(f,
		"\nRun 'imgstore %s VERB --help' for the options and examples of a verb,\n"
		"'imgstore --help' for the global ones.\n",
		n->name);
}

void ims_cli_help_verb(ims_cli *cli, FILE *f, const ims_cli_verb *v)
{
	(void)cli;
	fprintf(f, "Usage: imgstore %s %s %s\n\n%s\n", v->noun, v->verb, v->synopsis, v->summary);
	fprintf(f, "\nOptions:\n");
	print_opts(f, v->opts);
	fprintf(f, "  %-24s  %s\n", "--help", "show this help");
	print_examples(f, v);
	fprintf(f, "\nGlobal options (--server, --token-file, --format, --timeout...): see "
		   "'imgstore --help'.\n");
}
