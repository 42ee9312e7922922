/* Unit tests of common/config.h: the declarative table, good files and bad ones. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/config.h"
#include "common/error.h"

/* Every error line reported, joined by '\n'. */
typedef struct {
	char text[8192];
	int count;
} errors;

static void collect(void *ctx, const char *line)
{
	errors *e = ctx;
	size_t n = strlen(e->text);
	snprintf(e->text + n, sizeof(e->text) - n, "%s\n", line);
	e->count++;
}

static int parse(const char *text, ims_config **out, errors *e)
{
	memset(e, 0, sizeof(*e));
	return ims_config_parse(out, "test.conf", text, strlen(text), collect, e);
}

static const char *good = "# imgstored for site a\n"
			  "[site]\n"
			  "name = a\n"
			  "ceph_conf = /etc/ceph/a.conf\n"
			  "client_id = imgstore\n"
			  "keyring = /etc/ceph/a.keyring\n"
			  "\n"
			  "[peer b]\n"
			  "ceph_conf = /etc/ceph/b.conf\n"
			  "mon_timeout = 5s\n"
			  "\n"
			  "[server]\n"
			  "listen = 127.0.0.1:7443\n"
			  "tls_cert = /etc/imgstore/cert.pem\n"
			  "tls_key = /etc/imgstore/key.pem\n"
			  "unix_socket = \"/run/imgstore/imgstored.sock\"\n"
			  "token_file = /etc/imgstore/tokens\n"
			  "max_request_bytes = 8M\n"
			  "\n"
			  "[s3 cold]\n"
			  "endpoint = https://s3.example.net\n"
			  "bucket = images\n"
			  "credentials_file = /etc/imgstore/s3.cred\n"
			  "key_file = /etc/imgstore/s3.key\n"
			  "addressing = virtual\n"
			  "\n"
			  "[defaults]\n"
			  "rpo = 30s\n"
			  "bandwidth_limit = 200M\n"
			  "log_level = debug\n";

static void test_good_file(void **state)
{
	(void)state;
	ims_config *cfg = NULL;
	errors e;
	assert_int_equal(parse(good, &cfg, &e), 0);
	assert_int_equal(e.count, 0);
	assert_non_null(cfg);
	assert_string_equal(cfg->site.name, "a");
	assert_string_equal(cfg->site.ceph_conf, "/etc/ceph/a.conf");
	assert_string_equal(cfg->site.client_id, "imgstore");
	assert_string_equal(cfg->site.pool, "rbd"); /* default */
	assert_int_equal(cfg->site.mon_timeout, 10);
	assert_int_equal(cfg->npeers, 1);
	assert_string_equal(cfg->peers[0].name, "b");
	assert_string_equal(cfg->peers[0].client_id, "admin");
	assert_int_equal(cfg->peers[0].mon_timeout, 5);
	assert_null(cfg->peers[0].keyring);
	assert_ptr_equal(ims_config_peer(cfg, "b"), &cfg->peers[0]);
	assert_null(ims_config_peer(cfg, "c"));
	assert_string_equal(cfg->server.listen, "127.0.0.1:7443");
	assert_string_equal(cfg->server.unix_socket, "/run/imgstore/imgstored.sock");
	assert_int_equal(cfg->server.max_request_bytes, 8u << 20);
	assert_int_equal(cfg->server.threads, 8);
	assert_false(cfg->server.allow_plain_http);
	assert_int_equal(cfg->ns3, 1);
	const ims_config_s3 *s3 = ims_config_s3_target(cfg, "cold");
	assert_non_null(s3);
	assert_string_equal(s3->addressing, "virtual");
	assert_string_equal(s3->region, "us-east-1");
	assert_int_equal(s3->retries, 5);
	assert_int_equal(cfg->defaults.rpo, 30);
	assert_int_equal(cfg->defaults.bandwidth_limit, 200u << 20);
	assert_int_equal(cfg->defaults.inflight_bytes, 64u << 20);
	assert_int_equal(cfg->defaults.retention, 3);
	assert_string_equal(cfg->defaults.log_level, "debug");
	ims_config_free(cfg);
}

static void test_minimal_file_takes_defaults(void **state)
{
	(void)state;
	ims_config *cfg = NULL;
	errors e;
	assert_int_equal(
		parse("[site]\nname=a\nceph_conf=/c\n[server]\nunix_socket=/s\n", &cfg, &e), 0);
	assert_int_equal(cfg->defaults.rpo, 60);
	assert_int_equal(cfg->defaults.concurrency, 16);
	assert_string_equal(cfg->defaults.log_level, "info");
	assert_int_equal(cfg->server.max_request_bytes, 4u << 20);
	assert_int_equal(cfg->npeers, 0);
	ims_config_free(cfg);
}

/* A bad file fails as a whole, reports every problem, and leaves *out alone. */
static void expect_errors(const char *text, const char *expected)
{
	ims_config *cfg = (ims_config *)(uintptr_t)0x1;
	errors e;
	ims_error_clear();
	assert_int_equal(parse(text, &cfg, &e), -EINVAL);
	assert_ptr_equal(cfg, (ims_config *)(uintptr_t)0x1);
	assert_string_equal(e.text, expected);
	/* the first one is the thread's error message */
	char first[512];
	snprintf(first, sizeof(first), "%.*s", (int)(strchr(e.text, '\n') - e.text), e.text);
	assert_string_equal(ims_error_last(), first);
}

#define BASE "[site]\nname = a\nceph_conf = /c\n[server]\nunix_socket = /s\n"

static void test_unknown_key_and_section(void **state)
{
	(void)state;
	expect_errors(BASE "[defaults]\nrpo = 30s\nrpoo = 30s\n[frobs]\nx = 1\n[defaults]\n",
		      "test.conf:8: unknown key 'rpoo' in [defaults]\n"
		      "test.conf:9: unknown section [frobs]: expected [site], [peer NAME], "
		      "[server], [s3 NAME], [defaults] or [host NAME]\n"
		      "test.conf:11: [defaults] appears twice (first at line 6)\n");
}

/* A peer may have its own bandwidth limit; this site may not (it sends to peers). */
static void test_peer_bandwidth(void **state)
{
	(void)state;
	ims_config *cfg = NULL;
	errors e;
	assert_int_equal(parse(BASE "[peer b]\nceph_conf = /b\nbandwidth_limit = 50M\n[peer "
				    "c]\nceph_conf = /c2\n",
			       &cfg, &e),
			 0);
	assert_int_equal(ims_config_peer(cfg, "b")->bandwidth_limit, 50u << 20);
	assert_int_equal(ims_config_peer(cfg, "c")->bandwidth_limit, 0);
	assert_int_equal(cfg->site.bandwidth_limit, 0);
	ims_config_free(cfg);
	expect_errors("[site]\nname = a\nceph_conf = /c\nbandwidth_limit = "
		      "1M\n[server]\nunix_socket = /s\n",
		      "test.conf:4: unknown key 'bandwidth_limit' in [site]\n");
}

static void test_bad_values(void **state)
{
	(void)state;
	expect_errors(BASE "[defaults]\n"
			   "rpo = soon\n"
			   "concurrency = 0\n"
			   "inflight_bytes = 12Q\n"
			   "log_level = loud\n"
			   "alert_webhook = ftp://x\n"
			   "retention = -1\n",
		      "test.conf:7: bad value 'soon' for 'rpo': expected a duration like 30s, 5m, "
		      "1h30m, 2d\n"
		      "test.conf:8: 'concurrency' = '0' is out of range: from 1 to 256\n"
		      "test.conf:9: bad value '12Q' for 'inflight_bytes': expected a size like "
		      "4096, 64K, 10G\n"
		      "test.conf:10: bad value 'loud' for 'log_level': expected "
		      "error|warning|info|debug\n"
		      "test.conf:11: bad value 'ftp://x' for 'alert_webhook': expected an http:// "
		      "or https:// URL\n"
		      "test.conf:12: bad value '-1' for 'retention': expected a whole number\n");
}

static void test_ranges_in_units(void **state)
{
	(void)state;
	expect_errors(BASE "[server]\n", "test.conf:6: [server] appears twice (first at line 4)\n");
	expect_errors(
		"[site]\nname = a\nceph_conf = /c\n[server]\nunix_socket = /s\nmax_request_bytes = "
		"2G\n"
		"read_timeout = 2h\n",
		"test.conf:6: 'max_request_bytes' = '2G' is out of range: from 1 KiB to 1 GiB\n"
		"test.conf:7: 'read_timeout' = '2h' is out of range: from 1s to 1h\n");
}

static void test_missing_required(void **state)
{
	(void)state;
	expect_errors("[site]\nname = a\n[peer b]\nclient_id = x\n[server]\nunix_socket = /s\n[s3 "
		      "t]\nbucket = b\n",
		      "test.conf:1: [site] is missing 'ceph_conf' (The cluster's ceph.conf.)\n"
		      "test.conf:3: [peer b] is missing 'ceph_conf' (The cluster's ceph.conf.)\n"
		      "test.conf:7: [s3 t] is missing 'endpoint' (Base URL of the S3 service, "
		      "http:// or https://.)\n"
		      "test.conf:7: [s3 t] is missing 'credentials_file' (File with 'ACCESS_KEY "
		      "SECRET_KEY'; must not be readable by others.)\n"
		      "test.conf:7: [s3 t] is missing 'key_file' (File with the 32-byte "
		      "AES-256-GCM key (64 hex digits); must not be readable by others.)\n");
	expect_errors("[server]\nunix_socket = /s\n",
		      "test.conf: missing [site] section: name this site and its ceph_conf\n");
}

static void test_syntax(void **state)
{
	(void)state;
	expect_errors(
		"name = a\n" BASE "just words\n[peer]\n[peer b c]\n[site\nname = b\n",
		"test.conf:1: 'name' is outside any section: put it under [site], [server], ...\n"
		"test.conf:7: expected 'key = value', got 'just words'\n"
		"test.conf:8: [peer] needs a name: [peer NAME]\n"
		"test.conf:9: bad peer name 'b c': 1 to 32 letters, digits, '-' or '_'\n"
		"test.conf:10: bad section header '[site': expected [NAME] alone on the line or "
		"before a comment\n");
}

/* [server] instance: a name (it goes into lock cookies and operation owners), unset: none. */
static void test_instance(void **state)
{
	(void)state;
	ims_config *cfg = NULL;
	errors e;
	assert_int_equal(parse(BASE "instance = scale-2\n", &cfg, &e), 0);
	assert_string_equal(cfg->server.instance, "scale-2");
	ims_config_free(cfg);
	cfg = NULL;
	assert_int_equal(parse(BASE, &cfg, &e), 0);
	assert_null(cfg->server.instance);
	ims_config_free(cfg);
	expect_errors(BASE "instance = web 1\n",
		      "test.conf:6: bad value 'web 1' for 'instance': expected a name: 1 to 32 "
		      "letters, digits, '-' or '_', starting with a letter or digit\n");
	expect_errors(BASE "instance = -x\n",
		      "test.conf:6: bad value '-x' for 'instance': expected a name: 1 to 32 "
		      "letters, digits, '-' or '_', starting with a letter or digit\n");
	expect_errors(BASE "instance = host:1\n",
		      "test.conf:6: bad value 'host:1' for 'instance': expected a name: 1 to 32 "
		      "letters, digits, '-' or '_', starting with a letter or digit\n");
}

static void test_names_and_paths(void **state)
{
	(void)state;
	expect_errors("[site]\nname = a b\nceph_conf = relative/ceph.conf\n[peer a]\nceph_conf = "
		      "/b\nname = x\n"
		      "[peer a]\n[server]\nunix_socket = /s\nlisten = localhost\nthreads = "
		      "4\nthreads = 5\n",
		      "test.conf:2: bad value 'a b' for 'name': expected a name: 1 to 32 letters, "
		      "digits, '-' or '_', starting with a letter or digit\n"
		      "test.conf:3: bad value 'relative/ceph.conf' for 'ceph_conf': expected an "
		      "absolute path\n"
		      "test.conf:6: unknown key 'name' in [peer a]\n"
		      "test.conf:7: [peer a] appears twice\n"
		      "test.conf:10: bad value 'localhost' for 'listen': expected HOST:PORT with a "
		      "port from 1 to 65535\n"
		      "test.conf:12: 'threads' is set twice in [server]\n");
}

static void test_whole_file_checks(void **state)
{
	(void)state;
	expect_errors("[site]\nname = a\nceph_conf = /c\n[peer a]\nceph_conf = /d\n[server]\n",
		      "test.conf:4: [peer a] has this site's own name\n"
		      "test.conf:6: [server] needs 'listen' or 'unix_socket': the daemon would "
		      "serve nothing\n");
	expect_errors(
		"[site]\nname = a\nceph_conf = /c\n[server]\nlisten = 0.0.0.0:7443\ntls_key = /k\n",
		"test.conf:4: [server] needs both 'tls_cert' and 'tls_key', or neither\n"
		"test.conf:4: [server] 'listen' needs 'tls_cert' and 'tls_key' (or "
		"'allow_plain_http = true' on a trusted loopback)\n");
	/* plain HTTP is allowed when asked for */
	ims_config *cfg = NULL;
	errors e;
	assert_int_equal(parse("[site]\nname=a\nceph_conf=/"
			       "c\n[server]\nlisten=127.0.0.1:1\nallow_plain_http=yes\n",
			       &cfg, &e),
			 0);
	assert_true(cfg->server.allow_plain_http);
	ims_config_free(cfg);
}

/* A '#' or ';' after a blank (or where the value would start) begins a comment that runs to the
 * end of the line, for every kind of value and after a section header; one with no blank
 * before it is part of the value (issue 13: the example of docs/TIERING.md kept "# ..." in its
 * values). A quoted value keeps what is between its quotes. */
static void test_trailing_comments(void **state)
{
	(void)state;
	ims_config *cfg = NULL;
	errors e;
	const char *text =
		"[site]   # this site\n"
		"name = a            # name\n"
		"ceph_conf = /etc/ceph/a.conf  # path\n"
		"keyring = /etc/ceph/a.keyring;not-a-comment\n"
		"client_id = imgstore ; string, ';' comment\n"
		"pool = rbd\t# after a tab\n"
		"mon_timeout = 5s    # duration\n"
		"[peer b]; a peer\n"
		"ceph_conf = /etc/ceph/b.conf\n"
		"bandwidth_limit = 50M  # size\n"
		"[server]\n"
		"listen = 127.0.0.1:7443   # address\n"
		"allow_plain_http = yes    # bool\n"
		"threads = 4               # number\n"
		"max_request_bytes = 8M    # size\n"
		"unix_socket = \"/run/imgstore/a #1.sock\"  # quoted: its '#' stays\n"
		"import_dirs = /srv/in, /data/in   # paths\n"
		"tls_priorities = NORMAL:-VERS-ALL:+VERS-TLS1.3 ; TLS 1.3 only\n"
		"[s3 cold]\n"
		"endpoint = https://s3.example.net       # http:// only for a lab\n"
		"region = eu#1\n"
		"bucket = imgstore-cold                  # must exist\n"
		"credentials_file = /etc/imgstore/s3.cred   # \"ACCESS_KEY SECRET_KEY\"\n"
		"key_file = /etc/imgstore/s3-cold.key\n"
		"addressing = virtual                    # or path\n"
		"[defaults]\n"
		"rpo = 30s # duration\n"
		"log_level = debug # enum\n"
		"alert_webhook = https://hook.example.net/x?a=1;b=2#f   # '#', ';' inside stay\n";
	assert_int_equal(parse(text, &cfg, &e), 0);
	assert_int_equal(e.count, 0);
	assert_string_equal(cfg->site.name, "a");
	assert_string_equal(cfg->site.ceph_conf, "/etc/ceph/a.conf");
	assert_string_equal(cfg->site.keyring, "/etc/ceph/a.keyring;not-a-comment");
	assert_string_equal(cfg->site.client_id, "imgstore");
	assert_string_equal(cfg->site.pool, "rbd");
	assert_int_equal(cfg->site.mon_timeout, 5);
	assert_int_equal(cfg->npeers, 1);
	assert_string_equal(cfg->peers[0].name, "b");
	assert_string_equal(cfg->peers[0].ceph_conf, "/etc/ceph/b.conf");
	assert_int_equal(cfg->peers[0].bandwidth_limit, 50u << 20);
	assert_string_equal(cfg->server.listen, "127.0.0.1:7443");
	assert_true(cfg->server.allow_plain_http);
	assert_int_equal(cfg->server.threads, 4);
	assert_int_equal(cfg->server.max_request_bytes, 8u << 20);
	assert_string_equal(cfg->server.unix_socket, "/run/imgstore/a #1.sock");
	assert_string_equal(cfg->server.import_dirs, "/srv/in, /data/in");
	assert_string_equal(cfg->server.tls_priorities, "NORMAL:-VERS-ALL:+VERS-TLS1.3");
	const ims_config_s3 *s3 = ims_config_s3_target(cfg, "cold");
	assert_non_null(s3);
	assert_string_equal(s3->endpoint, "https://s3.example.net");
	assert_string_equal(s3->region, "eu#1");
	assert_string_equal(s3->bucket, "imgstore-cold");
	assert_string_equal(s3->credentials_file, "/etc/imgstore/s3.cred");
	assert_string_equal(s3->addressing, "virtual");
	assert_int_equal(cfg->defaults.rpo, 30);
	assert_string_equal(cfg->defaults.log_level, "debug");
	assert_string_equal(cfg->defaults.alert_webhook, "https://hook.example.net/x?a=1;b=2#f");
	ims_config_free(cfg);
}

/* What is refused around comments and quotes, each with its line. */
static void test_comments_refused(void **state)
{
	(void)state;
	expect_errors(
		BASE "[peer b] trailing words\n"
		     "[peer c]\n"
		     "ceph_conf = /c2\n"
		     "pool = \"rbd   # no closing quote\n"
		     "client_id = \"x\" y\n"
		     "keyring = # only a comment\n"
		     "mon_timeout = 30s#5s\n"
		     "osd_timeout = \"10s\"   # quoted, then a comment: fine\n",
		"test.conf:6: bad section header '[peer b] trailing words': expected [NAME] alone "
		"on the line or before a comment\n"
		"test.conf:9: bad value '\"rbd   # no closing quote' for 'pool': expected a "
		"closing '\"'\n"
		"test.conf:10: bad value '\"x\" y' for 'client_id': expected nothing but a comment "
		"after the closing '\"'\n"
		"test.conf:11: bad value '' for 'keyring': expected a value, not an empty one\n"
		"test.conf:12: bad value '30s#5s' for 'mon_timeout': expected a duration like 30s, "
		"5m, 1h30m, 2d\n");
}

static void test_binary_garbage(void **state)
{
	(void)state;
	ims_config *cfg = NULL;
	errors e;
	const char bin[] = "[site]\nname=a\0\xff\xfe";
	memset(&e, 0, sizeof(e));
	assert_int_equal(ims_config_parse(&cfg, "bin.conf", bin, sizeof(bin), collect, &e),
			 -EINVAL);
	assert_null(cfg);
	assert_string_equal(ims_error_last(),
			    "bin.conf: contains a NUL byte: not a configuration file");
	expect_errors(BASE "[defaults]\nalert_webhook = http://x\x01y\n",
		      "test.conf:7: bad value 'http://x\x01y' for 'alert_webhook': expected no "
		      "control characters\n");
}

static void test_load_from_file(void **state)
{
	(void)state;
	ims_config *cfg = NULL;
	const char *tmpdir = getenv("IMS_TEST_TMP") ? getenv("IMS_TEST_TMP") : "/tmp";
	char path[512];
	assert_int_equal(ims_config_load(&cfg, "/nonexistent/imgstored.conf", NULL, NULL), -ENOENT);
	assert_string_equal(ims_error_last(),
			    "cannot read configuration file '/nonexistent/imgstored.conf': No such "
			    "file or directory");
	snprintf(path, sizeof(path), "%s/test_config_%d.conf", tmpdir, (int)getpid());
	FILE *f = fopen(path, "w");
	if (!f) { /* the tmp dir of ctest may not exist when run by hand */
		snprintf(path, sizeof(path), "/tmp/test_config_%d.conf", (int)getpid());
		f = fopen(path, "w");
	}
	assert_non_null(f);
	fputs(good, f);
	fclose(f);
	assert_int_equal(ims_config_load(&cfg, path, NULL, NULL), 0);
	assert_string_equal(cfg->path, path);
	assert_string_equal(cfg->peers[0].ceph_conf, "/etc/ceph/b.conf");
	ims_config_free(cfg);
	unlink(path);
}

static void test_import_export_dirs(void **state)
{
	(void)state;
	ims_config *cfg = NULL;
	errors e;
	assert_int_equal(parse(BASE "import_dirs = /srv/in, /data/in\n", &cfg, &e), 0);
	assert_string_equal(cfg->server.import_dirs, "/srv/in, /data/in");
	assert_null(cfg->server.export_dirs); /* none by default */
	ims_config_free(cfg);
	expect_errors(BASE "import_dirs = /srv/in,relative\nexport_dirs = /a,,/b\n",
		      "test.conf:6: bad value '/srv/in,relative' for 'import_dirs': expected "
		      "absolute paths separated by commas\n"
		      "test.conf:7: bad value '/a,,/b' for 'export_dirs': expected absolute paths "
		      "separated by commas\n");
}

/* Paths on the daemon's host: only under the named directories, links and '..' resolved. */
static void test_path_in(void **state)
{
	(void)state;
	char root[256], in[300], out[300], dirs[700], p[600], got[4096];
	snprintf(root, sizeof(root), "/tmp/test_config_paths_%d", (int)getpid());
	snprintf(in, sizeof(in), "%s/in", root);
	snprintf(out, sizeof(out), "%s/in-not", root); /* a sibling sharing the prefix */
	snprintf(dirs, sizeof(dirs), "%s/, %s/nonexistent", in, root);
	assert_int_equal(mkdir(root, 0700), 0);
	assert_int_equal(mkdir(in, 0700), 0);
	assert_int_equal(mkdir(out, 0700), 0);
	snprintf(p, sizeof(p), "%s/disk.raw", in);
	FILE *f = fopen(p, "w");
	assert_non_null(f);
	fclose(f);
	snprintf(p, sizeof(p), "%s/secret", out);
	f = fopen(p, "w");
	assert_non_null(f);
	fclose(f);

	/* a file in the directory, also through '.' */
	snprintf(p, sizeof(p), "%s/./disk.raw", in);
	assert_int_equal(ims_config_path_in(got, sizeof(got), dirs, "import_dirs", p, true), 0);
	snprintf(p, sizeof(p), "%s/disk.raw", in);
	assert_string_equal(got, p);
	/* none configured: everything refused */
	assert_int_equal(ims_config_path_in(got, sizeof(got), NULL, "import_dirs", p, true),
			 -EPERM);
	assert_non_null(strstr(ims_error_last(), "[server] import_dirs"));
	/* outside: a sibling with the same prefix, '..', a link out, a system file */
	snprintf(p, sizeof(p), "%s/secret", out);
	assert_int_equal(ims_config_path_in(got, sizeof(got), dirs, "import_dirs", p, true),
			 -EPERM);
	snprintf(p, sizeof(p), "%s/../in-not/secret", in);
	assert_int_equal(ims_config_path_in(got, sizeof(got), dirs, "import_dirs", p, true),
			 -EPERM);
	char link[600], target[600];
	snprintf(link, sizeof(link), "%s/link", in);
	snprintf(target, sizeof(target), "%s/secret", out);
	assert_int_equal(symlink(target, link), 0);
	assert_int_equal(ims_config_path_in(got, sizeof(got), dirs, "import_dirs", link, true),
			 -EPERM);
	assert_non_null(strstr(ims_error_last(), "(really '"));
	assert_int_equal(
		ims_config_path_in(got, sizeof(got), dirs, "import_dirs", "/etc/passwd", true),
		-EPERM);
	/* a missing file: not found inside, refused outside (no probing of other directories) */
	snprintf(p, sizeof(p), "%s/missing", in);
	assert_int_equal(ims_config_path_in(got, sizeof(got), dirs, "import_dirs", p, true),
			 -ENOENT);
	assert_int_equal(ims_config_path_in(got, sizeof(got), dirs, "import_dirs",
					    "/etc/missing-file", true),
			 -EPERM);
	assert_int_equal(
		ims_config_path_in(got, sizeof(got), dirs, "import_dirs", "relative", true),
		-EINVAL);

	/* a file to create: its directory decides, it must not exist */
	snprintf(p, sizeof(p), "%s/new.raw", in);
	assert_int_equal(ims_config_path_in(got, sizeof(got), dirs, "export_dirs", p, false), 0);
	assert_string_equal(got, p);
	snprintf(p, sizeof(p), "%s/disk.raw", in);
	assert_int_equal(ims_config_path_in(got, sizeof(got), dirs, "export_dirs", p, false),
			 -EEXIST);
	snprintf(p, sizeof(p), "%s/new.raw", out);
	assert_int_equal(ims_config_path_in(got, sizeof(got), dirs, "export_dirs", p, false),
			 -EPERM);
	snprintf(p, sizeof(p), "%s/link-dir", in);
	assert_int_equal(symlink(out, p), 0);
	snprintf(p, sizeof(p), "%s/link-dir/new.raw", in);
	assert_int_equal(ims_config_path_in(got, sizeof(got), dirs, "export_dirs", p, false),
			 -EPERM);
	snprintf(p, sizeof(p), "%s/", in);
	assert_int_equal(ims_config_path_in(got, sizeof(got), dirs, "export_dirs", p, false),
			 -EINVAL);

	char cmd[400];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
	assert_int_equal(system(cmd), 0);
}

/* [host NAME]: a hypervisor's cephx user and libvirt secret, both required. */
static void test_hosts(void **state)
{
	(void)state;
	ims_config *cfg = NULL;
	errors e;
	assert_int_equal(parse(BASE "[host hv1.dc1]\ncephx_user = hv1\n"
				    "libvirt_secret = 2a5f4c1e-8d3b-4c6a-9f0e-1b2c3d4e5f60   # "
				    "virsh secret-list\n"
				    "[host hv2]\ncephx_user = hv2\nlibvirt_secret = "
				    "2A5F4C1E-8D3B-4C6A-9F0E-1B2C3D4E5F61\n",
			       &cfg, &e),
			 0);
	assert_int_equal(cfg->nhosts, 2);
	const ims_config_host *h = ims_config_host_entry(cfg, "hv1.dc1");
	assert_non_null(h);
	assert_string_equal(h->cephx_user, "hv1");
	assert_string_equal(h->libvirt_secret, "2a5f4c1e-8d3b-4c6a-9f0e-1b2c3d4e5f60");
	assert_null(ims_config_host_entry(cfg, "hv3"));
	assert_null(ims_config_host_entry(cfg, NULL));
	ims_config_free(cfg);
	expect_errors(
		BASE "[host]\n[host bad/name]\n[host hv1]\ncephx_user = hv1\nlibvirt_secret = "
		     "SECRET-UUID\n"
		     "[host hv1]\n[host hv2]\nlibvirt_secret = "
		     "2a5f4c1e-8d3b-4c6a-9f0e-1b2c3d4e5f6\nrpo = 1s\n",
		"test.conf:6: [host] needs a name: [host NAME], NAME as in the host's token line\n"
		"test.conf:7: bad host name 'bad/name': 1 to 127 letters, digits, '.', '-' or '_'\n"
		"test.conf:10: bad value 'SECRET-UUID' for 'libvirt_secret': expected a UUID like "
		"2a5f4c1e-8d3b-4c6a-9f0e-1b2c3d4e5f60\n"
		"test.conf:11: [host hv1] appears twice\n"
		"test.conf:13: bad value '2a5f4c1e-8d3b-4c6a-9f0e-1b2c3d4e5f6' for "
		"'libvirt_secret': expected a UUID like 2a5f4c1e-8d3b-4c6a-9f0e-1b2c3d4e5f60\n"
		"test.conf:14: unknown key 'rpo' in [host hv2]\n"
		"test.conf:12: [host hv2] is missing 'cephx_user' (The host's own cephx user, "
		"without 'client.' (profile rbd on the pools its VMs use); attach-info names it in "
		"the libvirt disk XML.)\n");
}

typedef struct {
	char text[1024];
} diffs;

static void collect_diff(void *ctx, const char *section, const char *key, bool reloads)
{
	diffs *d = ctx;
	size_t n = strlen(d->text);
	snprintf(d->text + n, sizeof(d->text) - n, "%s %s%s\n", section, key,
		 reloads ? " (reload)" : "");
}

/* ims_config_diff: what a SIGHUP reload compares, key by key and section by section. */
static void test_diff(void **state)
{
	(void)state;
	ims_config *a = NULL, *b = NULL;
	errors e;
	diffs d = {""};
	assert_int_equal(parse(good, &a, &e), 0);
	assert_int_equal(parse(good, &b, &e), 0);
	assert_int_equal(ims_config_diff(a, b, collect_diff, &d), 0);
	assert_string_equal(d.text, "");
	ims_config_free(b);
	/* a changed listen, a dropped peer, a new peer, a changed log level, a host added */
	char *text = strdup(good);
	char *p = strstr(text, "7443");
	memcpy(p, "7444", 4);
	p = strstr(text, "[peer b]");
	memcpy(p, "[peer c]", 8);
	p = strstr(text, "log_level = debug");
	memcpy(p, "log_level = error", 17);
	char *full = malloc(strlen(text) + 200);
	sprintf(full,
		"%s[host hv1]\ncephx_user = hv1\nlibvirt_secret = "
		"2a5f4c1e-8d3b-4c6a-9f0e-1b2c3d4e5f60\n",
		text);
	assert_int_equal(parse(full, &b, &e), 0);
	assert_int_equal(ims_config_diff(a, b, collect_diff, &d), 5);
	assert_string_equal(d.text, "[server] listen\n"
				    "[defaults] log_level (reload)\n"
				    "[peer b] *\n"
				    "[peer c] *\n"
				    "[host hv1] * (reload)\n");
	ims_config_free(a);
	/* the same host with another secret: one key */
	sprintf(full,
		"%s[host hv1]\ncephx_user = hv1\nlibvirt_secret = "
		"2a5f4c1e-8d3b-4c6a-9f0e-1b2c3d4e5f61\n",
		text);
	assert_int_equal(parse(full, &a, &e), 0);
	d.text[0] = '\0';
	assert_int_equal(ims_config_diff(a, b, collect_diff, &d), 1);
	assert_string_equal(d.text, "[host hv1] libvirt_secret (reload)\n");
	ims_config_free(a);
	ims_config_free(b);
	free(full);
	free(text);
}

static void test_reference(void **state)
{
	(void)state;
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	ims_config_write_reference(f);
	fclose(f);
	assert_non_null(strstr(buf, "| `rpo` | duration | 60s | from 1s to 30d | "));
	assert_non_null(strstr(buf, "| `ceph_conf` | path | **required** |"));
	assert_non_null(strstr(buf, "## [s3 NAME]"));
	assert_non_null(strstr(buf, "starts a comment")); /* the comment rule is stated */
	free(buf);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_good_file),
		cmocka_unit_test(test_minimal_file_takes_defaults),
		cmocka_unit_test(test_unknown_key_and_section),
		cmocka_unit_test(test_peer_bandwidth),
		cmocka_unit_test(test_bad_values),
		cmocka_unit_test(test_instance),
		cmocka_unit_test(test_ranges_in_units),
		cmocka_unit_test(test_missing_required),
		cmocka_unit_test(test_syntax),
		cmocka_unit_test(test_names_and_paths),
		cmocka_unit_test(test_whole_file_checks),
		cmocka_unit_test(test_trailing_comments),
		cmocka_unit_test(test_comments_refused),
		cmocka_unit_test(test_binary_garbage),
		cmocka_unit_test(test_load_from_file),
		cmocka_unit_test(test_import_export_dirs),
		cmocka_unit_test(test_path_in),
		cmocka_unit_test(test_hosts),
		cmocka_unit_test(test_diff),
		cmocka_unit_test(test_reference),
	};
	return cmocka_run_group_tests_name("config", tests, NULL, NULL);
}
