/*
 * tests/unit/test_cli_examples.c: the examples of `imgstore NOUN VERB --help` (cli/examples.c)
 * name verbs that exist, show in their verb's --help, and pass the command line's checks: run
 * with a server that cannot be reached, none ends in a usage error (exit 2). Whether they
 * work against a real site is test_cli_help_examples.sh's business (integration).
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/cli.h"
#include "common/error.h"

static int unreachable(ims_cli_transport *out, const ims_cli_conn *conn, void *arg)
{
	(void)out;
	(void)conn;
	(void)arg;
	return ims_error_set(-ECONNREFUSED, "no server in this test");
}

/* Run one command line ("imgstore image ls rbd"); @returns the exit status, stderr in @p err. */
static int run_line(const char *line, char *err, size_t errlen)
{
	char copy[1024], *argv[64], *save = NULL;
	int argc = 0, rc;
	char *ebuf = NULL;
	size_t elen = 0;
	ims_cli cli;

	assert_true(strlen(line) < sizeof(copy));
	snprintf(copy, sizeof(copy), "%s", line);
	for (char *w = strtok_r(copy, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		assert_true(argc < 63);
		argv[argc++] = w;
	}
	argv[argc] = NULL;
	ims_cli_init(&cli);
	cli.connect = unreachable;
	cli.out = fopen("/dev/null", "w");
	cli.err = open_memstream(&ebuf, &elen);
	assert_non_null(cli.out);
	assert_non_null(cli.err);
	cli.out_tty = cli.err_tty = false;
	rc = ims_cli_main(&cli, argc, argv);
	ims_cli_cleanup(&cli);
	fclose(cli.out);
	fclose(cli.err);
	snprintf(err, errlen, "%s", ebuf ? ebuf : "");
	free(ebuf);
	return rc;
}

static void test_examples_parse(void **state)
{
	size_t n = 0, lines = 0;

	(void)state;
	setenv("IMGSTORE_SERVER", "https://127.0.0.1:1", 1);
	unsetenv("IMGSTORE_TOKEN_FILE");
	unsetenv("IMGSTORE_FORMAT");
	for (const ims_cli_example *e = ims_cli__examples; e->noun; e++, n++) {
		const ims_cli_verb *v = ims_cli_find_verb(e->noun, e->verb);
		if (!v)
			fail_msg("an example of '%s %s', which is no verb", e->noun, e->verb);
		assert_true(e->what[0] && e->commands[0]);
		for (const char *c = e->commands; *c;) {
			char line[1024], err[2048];
			size_t len = strcspn(c, "\n");
			int rc;

			assert_true(len < sizeof(line));
			memcpy(line, c, len);
			line[len] = '\0';
			if (strncmp(line, "imgstore ", 9) != 0)
				fail_msg("'%s %s': '%s' does not start with 'imgstore '", e->noun,
					 e->verb, line);
			/* no quoting, globbing or redirection: the test runs the words as they are
			 */
			for (const char *p = line; *p; p++)
				if (strchr("'\"\\$`*?|;&<>()#~", *p) || (unsigned char)*p >= 0x80 ||
				    *p == '\t')
					fail_msg("'%s' has a character the shell would act on",
						 line);
			rc = run_line(line, err, sizeof(err));
			if (rc == IMS_CLI_EXIT_USAGE)
				fail_msg("'%s' is a usage error: %s", line, err);
			assert_int_equal(rc, IMS_CLI_EXIT_ERROR); /* it got as far as the server */
			lines++;
			c += len;
			if (*c)
				c++;
		}
	}
	assert_true(n > 0 && lines >= n);
}

/* Each example's lines show in its verb's --help, under "Examples:", in order. */
static void test_examples_in_help(void **state)
{
	(void)state;
	for (const ims_cli_example *e = ims_cli__examples; e->noun; e++) {
		const ims_cli_verb *v = ims_cli_find_verb(e->noun, e->verb);
		char *buf = NULL, want[2048];
		size_t len = 0;
		ims_cli cli;
		FILE *f = open_memstream(&buf, &len);

		assert_non_null(v);
		ims_cli_init(&cli);
		ims_cli_help_verb(&cli, f, v);
		fclose(f);
		snprintf(want, sizeof(want), "  # %s\n  ", e->what);
		const char *at = strstr(buf, "\nExamples:\n");
		assert_non_null(at);
		at = strstr(at, want);
		if (!at)
			fail_msg("'%s %s --help' lacks '%s'", e->noun, e->verb, e->what);
		at += strlen(want);
		for (const char *c = e->commands; *c;) {
			size_t n = strcspn(c, "\n");
			assert_true(strncmp(at, c, n) == 0);
			at += n;
			assert_true(*at == '\n');
			at++;
			c += n;
			if (*c) {
				c++;
				assert_true(strncmp(at, "  ", 2) == 0);
				at += 2;
			}
		}
		free(buf);
	}
}

/* The verbs the issue asks examples of have some. */
static void test_most_used_verbs_have_examples(void **state)
{
	static const char *const want[][2] = {
		{"image", "import"}, {"image", "export"}, {"image", "create"},
		{"image", "ls"},     {"image", "info"},	  {"image", "attach-info"},
		{"repl", "enable"},  {"repl", "status"},  {"repl", "failover"},
		{"repl", "sync"},    {"tier", "push"},	  {"tier", "restore"},
		{"snap", "create"},  {"snap", "ls"},	  {"group", "create"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		bool found = false;
		for (const ims_cli_example *e = ims_cli__examples; e->noun; e++)
			if (!strcmp(e->noun, want[i][0]) && !strcmp(e->verb, want[i][1]))
				found = true;
		if (!found)
			fail_msg("no example of '%s %s'", want[i][0], want[i][1]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_examples_parse),
		cmocka_unit_test(test_examples_in_help),
		cmocka_unit_test(test_most_used_verbs_have_examples),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
