/*
 * Unit tests of the CLI's command line: each verb's arguments into the request it sends,
 * usage errors (exit 2, nothing sent), server errors (exit 1), help, the environment and the
 * token file. Through a fake transport (cli_fake.h): no server.
 */
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
#include <json-c/json.h>

#include "test_cli_fixture.h"

#include "imgstore/v1/host.pb-c.h"
#include "imgstore/v1/image.pb-c.h"
#include "imgstore/v1/operation.pb-c.h"
#include "imgstore/v1/group.pb-c.h"
#include "imgstore/v1/replication.pb-c.h"
#include "imgstore/v1/snapshot.pb-c.h"
#include "imgstore/v1/tier.pb-c.h"

#define SOCK "unix:/run/imgstored/test.sock"

static Imgstore__V1__Image canned_image(void)
{
	Imgstore__V1__Image img = IMGSTORE__V1__IMAGE__INIT;
	img.pool = "rbd";
	img.name = "vm1";
	img.id = "10226b8b4567";
	img.size = 10ull << 30;
	img.object_size = 4u << 20;
	img.features = 61;
	img.features_text = "layering,exclusive-lock,object-map,fast-diff,deep-flatten";
	img.source = "new";
	img.created_unix = 1714564800;
	img.in_catalog = 1;
	return img;
}

/* A usage error: exit 2, the message and the hint on stderr, nothing on stdout, no call. */
static void assert_usage(fake *f, const char *msg, const char *hint)
{
	char want[1024];

	assert_int_equal(f->rc, 2);
	snprintf(want, sizeof(want), "imgstore: %s\n%s\n", msg, hint);
	assert_string_equal(f->err, want);
	assert_string_equal(f->out, "");
	assert_int_equal(f->ncalls, 0);
	assert_int_equal(f->connects, 0);
}

/* ---- image create ---- */

static void test_create_request(void **state)
{
	fake *f = *state;
	Imgstore__V1__Image img = canned_image();

	fake_expect(f, "imgstore.v1.ImageService/CreateImage", &img);
	assert_int_equal(fake_run(f, "--server", SOCK, "image", "create", "rbd/vm1", "--size",
				  "10G", "--features", "0x3d", "--data-pool", "ecpool", NULL),
			 0);
	assert_string_equal(f->err, "");
	assert_int_equal(f->connects, 1);
	assert_string_equal(f->server, SOCK);
	assert_int_equal(f->ncalls, 1);
	Imgstore__V1__CreateImageRequest *req =
		sent(f, 0, &imgstore__v1__create_image_request__descriptor);
	assert_string_equal(req->image->pool, "rbd");
	assert_string_equal(req->image->image, "vm1");
	assert_string_equal(req->image->snapshot, "");
	assert_int_equal(req->size, 10ull << 30);
	assert_int_equal(req->features, 0x3d);
	assert_string_equal(req->data_pool, "ecpool");
	/* the created image, as key: value lines */
	assert_non_null(strstr(f->out, "\nname:           vm1\n"));
	assert_non_null(strstr(f->out, "\nsize:           10 GiB\n"));
	assert_non_null(strstr(f->out, "\ncreated_unix:   2024-05-01T12:00:00Z\n"));
}

static void test_create_option_forms(void **state)
{
	fake *f = *state;
	Imgstore__V1__Image img = canned_image();
	json_object *doc, *v;

	/* --opt=value, options before positionals, the global --format after the verb */
	fake_expect(f, "imgstore.v1.ImageService/CreateImage", &img);
	assert_int_equal(fake_run(f, "--server=" SOCK, "image", "create", "--size=512M", "--format",
				  "json", "rbd/vm1", NULL),
			 0);
	Imgstore__V1__CreateImageRequest *req =
		sent(f, 0, &imgstore__v1__create_image_request__descriptor);
	assert_int_equal(req->size, 512u << 20);
	assert_int_equal(req->features, 0);
	assert_string_equal(req->data_pool, "");
	doc = json_tokener_parse(f->out);
	assert_non_null(doc);
	assert_true(json_object_object_get_ex(doc, "size", &v));
	assert_int_equal(json_object_get_uint64(v), 10ull << 30);
	assert_true(json_object_object_get_ex(doc, "features_text", &v));
	json_object_put(doc);
}

static void test_create_usage_errors(void **state)
{
	fake *f = *state;
	const char *hint = "Try 'imgstore image create --help'.";

	fake_run(f, "--server", SOCK, "image", "create", "rbd/vm1", NULL);
	assert_usage(f, "--size is required", hint);
	fake_run(f, "--server", SOCK, "image", "create", "rbd/vm1", "--size", "10X", NULL);
	assert_usage(f, "--size: '10X' is not a size (examples: 10G, 512M, 4096)", hint);
	fake_run(f, "--server", SOCK, "image", "create", "vm1", "--size", "1G", NULL);
	assert_usage(f, "bad image spec 'vm1': expected POOL/IMAGE", hint);
	fake_run(f, "--server", SOCK, "image", "create", "rbd/vm1@s", "--size", "1G", NULL);
	assert_usage(f, "'rbd/vm1@s' names a snapshot; this takes an image: POOL/IMAGE", hint);
	fake_run(f, "--server", SOCK, "image", "create", "rbd/.tmp", "--size", "1G", NULL);
	assert_usage(f,
		     "image name '.tmp' starts with '.', which imgstore keeps for its own images",
		     hint);
	fake_run(f, "--server", SOCK, "image", "create", "rbd/vm1", "rbd/vm2", "--size", "1G",
		 NULL);
	assert_usage(f, "unexpected argument 'rbd/vm2'", hint);
	fake_run(f, "--server", SOCK, "image", "create", "--size", "1G", NULL);
	assert_usage(f,
		     "missing arguments: imgstore image create POOL/IMAGE --size SIZE "
		     "[--features N] [--data-pool POOL] [--encryption luks2]",
		     hint);
	fake_run(f, "--server", SOCK, "image", "create", "rbd/vm1", "--sise", "1G", NULL);
	assert_usage(f, "unknown option '--sise'", hint);
	fake_run(f, "--server", SOCK, "image", "create", "rbd/vm1", "--size", NULL);
	assert_usage(f, "--size needs a value: --size SIZE", hint);
	fake_run(f, "--server", SOCK, "image", "create", "rbd/vm1", "--size", "1G", "--features",
		 "lots", NULL);
	assert_usage(f, "--features: 'lots' is not a number", hint);
	fake_run(f, "--server", SOCK, "image", "create", "rbd/vm1", "--size", "1G", "--data-pool",
		 "a/b", NULL);
	assert_usage(f, "--data-pool: pool name 'a/b' contains '/'", hint);
	fake_run(f, "--server", SOCK, "image", "create", "rbd/vm1", "--size", "1G", "--format",
		 "xml", NULL);
	assert_usage(f, "--format: 'xml' is not one of table, json", hint);
	fake_run(f, "--server", SOCK, "image", "create", "rbd/vm1", "--size", "1G", "--timeout",
		 "0s", NULL);
	assert_usage(f, "--timeout: must be at least 1s", hint);
}

static void test_dispatch_usage_errors(void **state)
{
	fake *f = *state;

	fake_run(f, NULL);
	assert_usage(f, "missing NOUN: one of image, snap, op, host, repl, site, tier, group",
		     "Try 'imgstore --help'.");
	fake_run(f, "images", "ls", NULL);
	assert_usage(f, "unknown noun 'images'", "Try 'imgstore --help'.");
	fake_run(f, "--bogus", "image", "ls", NULL);
	assert_usage(f, "unknown option '--bogus'", "Try 'imgstore --help'.");
	fake_run(f, "image", NULL);
	assert_usage(f, "missing VERB after 'image'", "Try 'imgstore image --help'.");
	fake_run(f, "image", "list", NULL);
	assert_usage(f, "unknown verb 'image list'", "Try 'imgstore image --help'.");
	fake_run(f, "host", "lease", NULL);
	assert_usage(f, "missing VERB after 'host lease'", "Try 'imgstore host --help'.");
	fake_run(f, "host", "lease", "grab", NULL);
	assert_usage(f, "unknown verb 'host lease grab'", "Try 'imgstore host --help'.");
	/* a usable command line without a server */
	fake_run(f, "image", "ls", NULL);
	assert_usage(f, "no server given: use --server URL|SOCKET or set IMGSTORE_SERVER",
		     "Try 'imgstore image ls --help'.");
	fake_run(f, "--server", "example.com:8443", "image", "ls", NULL);
	assert_usage(f,
		     "--server: 'example.com:8443' is neither https://HOST:PORT, http://HOST:PORT, "
		     "a socket path nor unix:/path",
		     "Try 'imgstore image ls --help'.");
}

static void test_help_and_version(void **state)
{
	fake *f = *state;

	assert_int_equal(fake_run(f, "--help", NULL), 0);
	assert_true(!strncmp(f->out, "Usage: imgstore [GLOBAL OPTIONS] NOUN VERB [ARGS...]\n", 52));
	assert_non_null(strstr(f->out, "\n  image   images:"));
	assert_non_null(strstr(f->out, "\n  group   "));
	assert_non_null(strstr(f->out, "--token-file FILE"));
	assert_non_null(strstr(f->out, "IMGSTORE_SERVER"));
	assert_string_equal(f->err, "");

	assert_int_equal(fake_run(f, "host", "--help", NULL), 0);
	assert_non_null(
		strstr(f->out, "\n  lease acquire POOL/IMAGE --host NAME [--ttl DURATION]\n"));

	assert_int_equal(fake_run(f, "host", "lease", "--help", NULL), 0);
	assert_non_null(strstr(f->out, "lease renew"));

	/* --help wins over mistakes, needs no server, sends nothing */
	assert_int_equal(fake_run(f, "image", "create", "bad spec", "--nope", "--help", NULL), 0);
	assert_true(!strncmp(
		f->out,
		"Usage: imgstore image create POOL/IMAGE --size SIZE [--features N] "
		"[--data-pool POOL] [--encryption luks2]\n\nCreate an empty image.\n\nOptions:\n",
		strlen("Usage: imgstore image create POOL/IMAGE --size SIZE [--features N] "
		       "[--data-pool POOL] [--encryption luks2]\n\nCreate an empty "
		       "image.\n\nOptions:\n")));
	assert_non_null(strstr(f->out, "\n  --size SIZE               size of the image"));
	assert_int_equal(f->ncalls, 0);

	assert_int_equal(fake_run(f, "image", "attach-info", "-h", NULL), 0);
	assert_non_null(strstr(f->out, "--format libvirt|table|json"));

	/* every verb has help */
	const char *nouns[] = {"image", "snap", "op", "host", "repl", "site", "tier", "group"};
	for (size_t i = 0; i < sizeof(nouns) / sizeof(nouns[0]); i++) {
		assert_int_equal(fake_run(f, nouns[i], "--help", NULL), 0);
		assert_true(strlen(f->out) > 40);
	}
	assert_int_equal(fake_run(f, "--version", NULL), 0);
	assert_true(!strncmp(f->out, "imgstore ", 9));
}

static void test_environment(void **state)
{
	fake *f = *state;
	Imgstore__V1__ListImagesResponse resp = IMGSTORE__V1__LIST_IMAGES_RESPONSE__INIT;

	setenv("IMGSTORE_SERVER", "https://imgstore.example:8443", 1);
	setenv("IMGSTORE_FORMAT", "json", 1);
	setenv("IMGSTORE_CA_FILE", "/etc/imgstore/ca.pem", 1);
	fake_expect(f, "imgstore.v1.ImageService/ListImages", &resp);
	assert_int_equal(fake_run(f, "--timeout", "90s", "image", "ls", "rbd", NULL), 0);
	assert_string_equal(f->server, "https://imgstore.example:8443");
	assert_string_equal(f->ca_file, "/etc/imgstore/ca.pem");
	assert_int_equal(f->timeout_ms, 90000);
	assert_string_equal(f->out, "[\n]\n");

	/* the command line wins over the environment */
	fake_expect(f, "imgstore.v1.ImageService/ListImages", &resp);
	assert_int_equal(fake_run(f, "--server", SOCK, "-o", "table", "image", "ls", NULL), 0);
	assert_string_equal(f->server, SOCK);
	assert_string_equal(f->out, "NAME  SIZE  SOURCE  PARENT  TAGS\n");

	cli_reset(f);
	setenv("IMGSTORE_FORMAT", "yaml", 1);
	fake_run(f, "image", "ls", NULL);
	assert_usage(f, "IMGSTORE_FORMAT: 'yaml' is not one of table, json",
		     "Try 'imgstore --help'.");
	unsetenv("IMGSTORE_FORMAT");
	unsetenv("IMGSTORE_SERVER");
	unsetenv("IMGSTORE_CA_FILE");
}

static char *tmp_path(const char *name)
{
	const char *dir = getenv("IMS_TEST_TMP");
	char *p;

	if (!dir)
		dir = "/tmp";
	mkdir(dir, 0755);
	assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
	return p;
}

static void write_file(const char *path, const char *content, mode_t mode)
{
	FILE *fp;

	unlink(path);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs(content, fp);
	fclose(fp);
	chmod(path, mode);
}

static void test_token_file(void **state)
{
	fake *f = *state;
	Imgstore__V1__ListImagesResponse resp = IMGSTORE__V1__LIST_IMAGES_RESPONSE__INIT;
	char *path = tmp_path("token");
	char want[1024];

	write_file(path, "  s3cr3t-token \n# more lines are ignored\n", 0600);
	fake_expect(f, "imgstore.v1.ImageService/ListImages", &resp);
	assert_int_equal(fake_run(f, "--server", SOCK, "--token-file", path, "image", "ls", NULL),
			 0);
	assert_string_equal(f->token, "s3cr3t-token");
	assert_string_equal(f->err, "");

	/* readable by others: a warning, and it still works */
	chmod(path, 0644);
	setenv("IMGSTORE_TOKEN_FILE", path, 1);
	fake_expect(f, "imgstore.v1.ImageService/ListImages", &resp);
	assert_int_equal(fake_run(f, "--server", SOCK, "image", "ls", NULL), 0);
	assert_string_equal(f->token, "s3cr3t-token");
	snprintf(want, sizeof(want),
		 "imgstore: warning: token file '%s' is readable by others; chmod 600 it\n", path);
	assert_string_equal(f->err, want);
	unsetenv("IMGSTORE_TOKEN_FILE");

	/* empty, missing: exit 1 before connecting */
	write_file(path, "\n\n", 0600);
	assert_int_equal(fake_run(f, "--server", SOCK, "--token-file", path, "image", "ls", NULL),
			 1);
	snprintf(want, sizeof(want), "imgstore: token file '%s' holds no token on its first line\n",
		 path);
	assert_string_equal(f->err, want);
	unlink(path);
	assert_int_equal(fake_run(f, "--server", SOCK, "--token-file", path, "image", "ls", NULL),
			 1);
	snprintf(want, sizeof(want),
		 "imgstore: cannot read token file '%s': No such file or directory\n", path);
	assert_string_equal(f->err, want);
	assert_int_equal(f->connects, 2);
	free(path);
}

/* ---- server errors ---- */

static void test_server_errors(void **state)
{
	fake *f = *state;

	fake_expect_error(f, "imgstore.v1.ImageService/GetImage", -ENOENT, IMS_RPC_NOT_FOUND,
			  "no image 'rbd/vm1' on site 'a'");
	assert_int_equal(fake_run(f, "--server", SOCK, "image", "info", "rbd/vm1", NULL), 1);
	assert_string_equal(f->err, "imgstore: no image 'rbd/vm1' on site 'a'\n");
	assert_string_equal(f->out, "");

	/* control characters in the server's message never reach the terminal raw */
	fake_expect_error(f, "imgstore.v1.ImageService/GetImage", -EIO, IMS_RPC_INTERNAL,
			  "bad \x1b[2Jthing");
	assert_int_equal(fake_run(f, "--server", SOCK, "image", "info", "rbd/vm1", NULL), 1);
	assert_string_equal(f->err, "imgstore: bad \\x1b[2Jthing\n");

	/* a service declared but not implemented yet */
	fake_expect_error(f, "imgstore.v1.ReplicationService/EnableReplication", -ENOSYS,
			  IMS_RPC_UNIMPLEMENTED, "not implemented");
	assert_int_equal(
		fake_run(f, "--server", SOCK, "repl", "enable", "rbd/vm1", "--to", "b", NULL), 1);
	assert_string_equal(
		f->err,
		"imgstore: repl enable is not available on this server yet (unimplemented)\n");
	Imgstore__V1__EnableReplicationRequest *req =
		sent(f, 2, &imgstore__v1__enable_replication_request__descriptor);
	assert_string_equal(req->target_site, "b");
	assert_string_equal(req->mode, "async");
	assert_int_equal(req->rpo_seconds, 0);

	fake_expect_error(f, "imgstore.v1.HostService/RenewLease", -ENOSYS, IMS_RPC_UNIMPLEMENTED,
			  "x");
	assert_int_equal(fake_run(f, "--server", SOCK, "host", "lease", "renew", "L1", NULL), 1);
	assert_string_equal(
		f->err,
		"imgstore: host lease renew is not available on this server yet (unimplemented)\n");
}

/* ---- the other image verbs ---- */

static void test_image_verbs(void **state)
{
	fake *f = *state;
	Imgstore__V1__Image img = canned_image();
	Imgstore__V1__DeleteImageResponse del = IMGSTORE__V1__DELETE_IMAGE_RESPONSE__INIT;
	const char *hint;

	fake_expect(f, "imgstore.v1.ImageService/ResizeImage", &img);
	assert_int_equal(fake_run(f, "--server", SOCK, "image", "resize", "rbd/vm1", "--size", "5G",
				  "--allow-shrink", NULL),
			 0);
	Imgstore__V1__ResizeImageRequest *rs =
		sent(f, 0, &imgstore__v1__resize_image_request__descriptor);
	assert_int_equal(rs->size, 5ull << 30);
	assert_true(rs->allow_shrink);
	cli_reset(f);

	fake_expect(f, "imgstore.v1.ImageService/RenameImage", &img);
	fake_expect(f, "imgstore.v1.ImageService/RenameImage", &img);
	assert_int_equal(fake_run(f, "--server", SOCK, "image", "rename", "rbd/vm1", "vm2", NULL),
			 0);
	assert_int_equal(
		fake_run(f, "--server", SOCK, "image", "rename", "rbd/vm1", "rbd/vm3", NULL), 0);
	Imgstore__V1__RenameImageRequest *rn =
		sent(f, 1, &imgstore__v1__rename_image_request__descriptor);
	assert_string_equal(rn->new_name, "vm3");
	cli_reset(f);
	hint = "Try 'imgstore image rename --help'.";
	fake_run(f, "--server", SOCK, "image", "rename", "rbd/vm1", "ssd/vm1", NULL);
	assert_usage(f, "an image is renamed within its pool ('rbd'), not to 'ssd'", hint);

	fake_expect(f, "imgstore.v1.ImageService/DeleteImage", &del);
	assert_int_equal(fake_run(f, "--server", SOCK, "image", "rm", "rbd/vm1", "--trash-delay",
				  "2h", NULL),
			 0);
	assert_string_equal(f->out, "");
	fake_expect(f, "imgstore.v1.ImageService/DeleteImage", &del);
	assert_int_equal(fake_run(f, "--server", SOCK, "--format", "json", "image", "rm", "rbd/vm1",
				  "--purge", NULL),
			 0);
	assert_string_equal(f->out, "{\n  \"cold_copies_shredded\": 0\n}\n");
	Imgstore__V1__DeleteImageRequest *d0 =
		sent(f, 0, &imgstore__v1__delete_image_request__descriptor);
	Imgstore__V1__DeleteImageRequest *d1 =
		sent(f, 1, &imgstore__v1__delete_image_request__descriptor);
	assert_false(d0->purge);
	assert_int_equal(d0->trash_delay_seconds, 7200);
	assert_true(d1->purge);
	assert_int_equal(d1->trash_delay_seconds, 0);
	cli_reset(f);
	fake_run(f, "--server", SOCK, "image", "rm", "rbd/vm1", "--purge", "--trash-delay", "1h",
		 NULL);
	assert_usage(f, "--purge and --trash-delay exclude each other",
		     "Try 'imgstore image rm --help'.");
	fake_run(f, "--server", SOCK, "image", "rm", "rbd/vm1", "--purge=yes", NULL);
	assert_usage(f, "--purge takes no value", "Try 'imgstore image rm --help'.");

	/* clone: the parent must name a snapshot */
	fake_run(f, "--server", SOCK, "image", "clone", "rbd/golden", "rbd/vm9", NULL);
	assert_usage(f, "'rbd/golden' names no snapshot: expected POOL/IMAGE@SNAP",
		     "Try 'imgstore image clone --help'.");
	fake_expect(f, "imgstore.v1.ImageService/CloneImage", &img);
	assert_int_equal(
		fake_run(f, "--server", SOCK, "image", "clone", "rbd/golden@v1", "ssd/vm9", NULL),
		0);
	Imgstore__V1__CloneImageRequest *cl =
		sent(f, 0, &imgstore__v1__clone_image_request__descriptor);
	assert_string_equal(cl->parent->snapshot, "v1");
	assert_string_equal(cl->clone->pool, "ssd");
	assert_string_equal(cl->clone->image, "vm9");
}

static void test_tags(void **state)
{
	fake *f = *state;
	Imgstore__V1__Image img = canned_image();
	Imgstore__V1__Tag t1 = IMGSTORE__V1__TAG__INIT, *tags[] = {&t1};

	t1.key = "os";
	t1.value = "debian 12";
	img.tags = tags;
	img.n_tags = 1;
	fake_run(f, "--server", SOCK, "image", "tag", "rbd/vm1", "os=debian", "novalue", NULL);
	assert_usage(f, "'novalue' is not KEY=VALUE", "Try 'imgstore image tag --help'.");
	fake_run(f, "--server", SOCK, "image", "tag", "rbd/vm1", "=x", NULL);
	assert_usage(f, "'=x': empty tag key", "Try 'imgstore image tag --help'.");
	fake_run(f, "--server", SOCK, "image", "tag", "rbd/vm1", NULL);
	assert_int_equal(f->rc, 2);

	fake_expect(f, "imgstore.v1.ImageService/SetImageTag", &img);
	fake_expect(f, "imgstore.v1.ImageService/SetImageTag", &img);
	assert_int_equal(fake_run(f, "--server", SOCK, "image", "tag", "rbd/vm1", "os=debian 12",
				  "empty=", NULL),
			 0);
	Imgstore__V1__SetImageTagRequest *a =
		sent(f, 0, &imgstore__v1__set_image_tag_request__descriptor);
	Imgstore__V1__SetImageTagRequest *b =
		sent(f, 1, &imgstore__v1__set_image_tag_request__descriptor);
	assert_string_equal(a->key, "os");
	assert_string_equal(a->value, "debian 12");
	assert_string_equal(b->key, "empty");
	assert_string_equal(b->value, "");
	assert_non_null(strstr(f->out, "\ntags:           os=debian 12\n"));

	fake_expect(f, "imgstore.v1.ImageService/RemoveImageTag", &img);
	assert_int_equal(fake_run(f, "--server", SOCK, "image", "untag", "rbd/vm1", "os", NULL), 0);
	Imgstore__V1__RemoveImageTagRequest *u =
		sent(f, 2, &imgstore__v1__remove_image_tag_request__descriptor);
	assert_string_equal(u->key, "os");
}

static void test_attach_info(void **state)
{
	fake *f = *state;
	Imgstore__V1__GetAttachInfoResponse info = IMGSTORE__V1__GET_ATTACH_INFO_RESPONSE__INIT;
	char *mons[] = {"10.0.0.1:6789", "10.0.0.2:6789"};
	const char *xml = "<disk type='network' device='disk'>\n  <source protocol='rbd' "
			  "name='rbd/vm1'/>\n</disk>";

	info.monitors = mons;
	info.n_monitors = 2;
	info.pool = "rbd";
	info.image = "vm1";
	info.client_id = "hv1";
	info.libvirt_disk_xml = (char *)xml;
	fake_expect(f, "imgstore.v1.HostService/GetAttachInfo", &info);
	assert_int_equal(fake_run(f, "--server", SOCK, "image", "attach-info", "rbd/vm1",
				  "--format", "libvirt", "--client-id", "hv1", "--secret-uuid",
				  "3f1c2a4e-9b1d-4c7e-8a2f-0123456789ab", NULL),
			 0);
	char want[512];
	snprintf(want, sizeof(want), "%s\n", xml);
	assert_string_equal(f->out, want);
	Imgstore__V1__GetAttachInfoRequest *req =
		sent(f, 0, &imgstore__v1__get_attach_info_request__descriptor);
	assert_string_equal(req->client_id, "hv1");
	assert_string_equal(req->secret_uuid, "3f1c2a4e-9b1d-4c7e-8a2f-0123456789ab");

	fake_expect(f, "imgstore.v1.HostService/GetAttachInfo", &info);
	assert_int_equal(fake_run(f, "--server", SOCK, "image", "attach-info", "rbd/vm1", NULL), 0);
	assert_non_null(strstr(f->out, "monitors:         10.0.0.1:6789,10.0.0.2:6789\n"));
	assert_non_null(strstr(
		f->out, "libvirt_disk_xml: <disk type='network' device='disk'>\\n  <source"));

	/* --host: the daemon looks up that host's [host NAME] */
	fake_expect(f, "imgstore.v1.HostService/GetAttachInfo", &info);
	assert_int_equal(fake_run(f, "--server", SOCK, "image", "attach-info", "rbd/vm1", "--host",
				  "hv1.dc1", "--format", "json", NULL),
			 0);
	req = sent(f, 2, &imgstore__v1__get_attach_info_request__descriptor);
	assert_string_equal(req->host, "hv1.dc1");
	assert_string_equal(req->client_id, "");
	assert_string_equal(req->secret_uuid, "");
	fake_run(f, "--server", SOCK, "image", "attach-info", "rbd/vm1", "--host", "", NULL);
	assert_int_equal(f->rc, 2);

	fake_run(f, "--server", SOCK, "image", "attach-info", "rbd/vm1", "--secret-uuid", "nope",
		 NULL);
	assert_int_equal(f->rc, 2);
	assert_string_equal(f->err, "imgstore: --secret-uuid: 'nope' is not a UUID\n"
				    "Try 'imgstore image attach-info --help'.\n");
}

/* ---- snap, op, host, repl, tier, group ---- */

static void test_snap_verbs(void **state)
{
	fake *f = *state;
	Imgstore__V1__SnapshotInfo si = IMGSTORE__V1__SNAPSHOT_INFO__INIT;

	si.name = "s1";
	si.id = 4;
	si.size = 1u << 30;
	fake_run(f, "--server", SOCK, "snap", "create", "rbd/vm1", NULL);
	assert_usage(f, "'rbd/vm1' names no snapshot: expected POOL/IMAGE@SNAP",
		     "Try 'imgstore snap create --help'.");
	fake_run(f, "--server", SOCK, "snap", "ls", "rbd/vm1@s1", NULL);
	assert_int_equal(f->rc, 2);
	fake_expect(f, "imgstore.v1.SnapshotService/CreateSnapshot", &si);
	assert_int_equal(fake_run(f, "--server", SOCK, "snap", "create", "rbd/vm1@s1", NULL), 0);
	Imgstore__V1__CreateSnapshotRequest *req =
		sent(f, 0, &imgstore__v1__create_snapshot_request__descriptor);
	assert_string_equal(req->snapshot->image, "vm1");
	assert_string_equal(req->snapshot->snapshot, "s1");
	assert_string_equal(f->out, "name:         s1\n"
				    "id:           4\n"
				    "size:         1 GiB\n"
				    "protected:    no\n"
				    "created_unix: -\n");
}

static void test_op_and_host_verbs(void **state)
{
	fake *f = *state;
	Imgstore__V1__ListOperationsResponse ops = IMGSTORE__V1__LIST_OPERATIONS_RESPONSE__INIT;
	Imgstore__V1__Lease lease = IMGSTORE__V1__LEASE__INIT;
	Imgstore__V1__ListLeasesResponse leases = IMGSTORE__V1__LIST_LEASES_RESPONSE__INIT;

	fake_expect(f, "imgstore.v1.OperationService/ListOperations", &ops);
	fake_expect(f, "imgstore.v1.OperationService/ListOperations", &ops);
	assert_int_equal(fake_run(f, "--server", SOCK, "op", "ls", NULL), 0);
	assert_int_equal(fake_run(f, "--server", SOCK, "op", "ls", "--all", "--limit", "5", NULL),
			 0);
	Imgstore__V1__ListOperationsRequest *o0 =
		sent(f, 0, &imgstore__v1__list_operations_request__descriptor);
	Imgstore__V1__ListOperationsRequest *o1 =
		sent(f, 1, &imgstore__v1__list_operations_request__descriptor);
	assert_true(o0->active_only);
	assert_int_equal(o0->limit, 0);
	assert_false(o1->active_only);
	assert_int_equal(o1->limit, 5);
	cli_reset(f);

	fake_run(f, "--server", SOCK, "host", "lease", "acquire", "rbd/vm1", NULL);
	assert_usage(f, "--host is required", "Try 'imgstore host lease acquire --help'.");
	fake_run(f, "--server", SOCK, "host", "lease", "acquire", "rbd/vm1", "--host", "hv1",
		 "--ttl", "0", NULL);
	assert_usage(f, "--ttl: must be at least 1s", "Try 'imgstore host lease acquire --help'.");
	fake_run(f, "--server", SOCK, "host", "lease", "acquire", "rbd/vm1", "--host", "hv1",
		 "--ttl", "soon", NULL);
	assert_usage(f, "--ttl: 'soon' is not a duration (examples: 30s, 5m, 1h30m)",
		     "Try 'imgstore host lease acquire --help'.");
	fake_run(f, "--server", SOCK, "host", "register", "bad name", NULL);
	assert_usage(f, "host name 'bad name' contains a space or a control character",
		     "Try 'imgstore host register --help'.");

	lease.id = "L1";
	lease.host = "hv1";
	fake_expect(f, "imgstore.v1.HostService/AcquireLease", &lease);
	assert_int_equal(fake_run(f, "--server", SOCK, "host", "lease", "acquire", "rbd/vm1",
				  "--host", "hv1", "--ttl", "2m", NULL),
			 0);
	Imgstore__V1__AcquireLeaseRequest *ac =
		sent(f, 0, &imgstore__v1__acquire_lease_request__descriptor);
	assert_string_equal(ac->host, "hv1");
	assert_int_equal(ac->ttl_seconds, 120);
	assert_string_equal(ac->image->image, "vm1");

	fake_expect(f, "imgstore.v1.HostService/ListLeases", &leases);
	assert_int_equal(fake_run(f, "--server", SOCK, "host", "lease", "ls", "rbd", NULL), 0);
	Imgstore__V1__ListLeasesRequest *ll =
		sent(f, 1, &imgstore__v1__list_leases_request__descriptor);
	assert_string_equal(ll->image->pool, "rbd");
	assert_string_equal(ll->image->image, "");
	assert_string_equal(f->out, "ID  IMAGE  HOST  ACQUIRED  EXPIRES  GENERATION\n");
}

static void test_repl_tier_group(void **state)
{
	fake *f = *state;
	Imgstore__V1__ReplicationStatus st = IMGSTORE__V1__REPLICATION_STATUS__INIT;

	fake_run(f, "--server", SOCK, "repl", "enable", "rbd/vm1", NULL);
	assert_usage(f, "--to is required", "Try 'imgstore repl enable --help'.");
	fake_run(f, "--server", SOCK, "repl", "enable", "rbd/vm1", "--to", "b", "--mode", "semi",
		 NULL);
	assert_usage(f, "--mode: 'semi' is not one of async, sync",
		     "Try 'imgstore repl enable --help'.");
	fake_run(f, "--server", SOCK, "repl", "failover", "rbd/vm1", NULL);
	assert_usage(f, "--to is required", "Try 'imgstore repl failover --help'.");
	fake_run(f, "--server", SOCK, "tier", "push", "rbd/vm1@s1", NULL);
	assert_usage(f, "--to is required", "Try 'imgstore tier push --help'.");
	fake_run(f, "--server", SOCK, "tier", "restore", "cold1", "--to", "rbd", NULL);
	assert_usage(f, "bad image spec 'rbd': expected POOL/IMAGE",
		     "Try 'imgstore tier restore --help'.");
	/* the option is named once: "--grace", not "----grace" */
	fake_run(f, "--server", SOCK, "tier", "gc", "--grace", "soon", NULL);
	assert_usage(f, "--grace: 'soon' is not a duration (examples: 30s, 5m, 1h30m)",
		     "Try 'imgstore tier gc --help'.");
	fake_run(f, "--server", SOCK, "tier", "policy", "set", "rbd", "--cold-after", "later",
		 NULL);
	assert_usage(f, "--cold-after: 'later' is not a duration (examples: 30s, 5m, 1h30m)",
		     "Try 'imgstore tier policy set --help'.");
	fake_run(f, "--server", SOCK, "tier", "policy", "set", "rbd", "--cold-after", "30d",
		 "--after", "burn", NULL);
	assert_usage(f, "--after: 'burn' is not one of trash, purge, keep",
		     "Try 'imgstore tier policy set --help'.");

	st.image = "rbd/vm1";
	st.target = "b";
	st.rpo_seconds = 300;
	fake_expect(f, "imgstore.v1.ReplicationService/EnableReplication", &st);
	assert_int_equal(fake_run(f, "--server", SOCK, "repl", "enable", "rbd/vm1", "--to", "b",
				  "--rpo", "5m", NULL),
			 0);
	Imgstore__V1__EnableReplicationRequest *req =
		sent(f, 0, &imgstore__v1__enable_replication_request__descriptor);
	assert_int_equal(req->rpo_seconds, 300);
	assert_non_null(strstr(f->out, "rpo_seconds:          5m\n"));

	fake_expect_error(f, "imgstore.v1.ReplicationService/Failover", -ENOSYS,
			  IMS_RPC_UNIMPLEMENTED, "");
	assert_int_equal(fake_run(f, "--server", SOCK, "repl", "failover", "rbd/vm1", "--to", "b",
				  "--force", NULL),
			 1);
	Imgstore__V1__FailoverRequest *fo = sent(f, 1, &imgstore__v1__failover_request__descriptor);
	assert_true(fo->force);
	assert_string_equal(fo->target_site, "b");

	fake_expect_error(f, "imgstore.v1.TierService/Push", -ENOSYS, IMS_RPC_UNIMPLEMENTED, "");
	assert_int_equal(
		fake_run(f, "--server", SOCK, "tier", "push", "rbd/vm1@s1", "--to", "s3a", NULL),
		1);
	assert_string_equal(
		f->err,
		"imgstore: tier push is not available on this server yet (unimplemented)\n");
	Imgstore__V1__PushRequest *pr = sent(f, 2, &imgstore__v1__push_request__descriptor);
	assert_string_equal(pr->image->snapshot, "s1");
	assert_string_equal(pr->target, "s3a");

	/* group verbs check their arguments, then call GroupService */
	fake_expect_error(f, "imgstore.v1.GroupService/CreateGroup", -ENOSYS, IMS_RPC_UNIMPLEMENTED,
			  "");
	assert_int_equal(fake_run(f, "--server", SOCK, "group", "create", "rbd/vm1-disks", NULL),
			 1);
	assert_string_equal(
		f->err,
		"imgstore: group create is not available on this server yet (unimplemented)\n");
	Imgstore__V1__CreateGroupRequest *cg =
		sent(f, 3, &imgstore__v1__create_group_request__descriptor);
	assert_string_equal(cg->group->pool, "rbd");
	assert_string_equal(cg->group->group, "vm1-disks");
	fake_run(f, "--server", SOCK, "group", "snap", "rbd/g", NULL);
	assert_int_equal(f->rc, 2);
	fake_run(f, "--server", SOCK, "group", "repl", "enable", "rbd/g", NULL);
	assert_int_equal(f->rc, 2);
	assert_string_equal(
		f->err, "imgstore: --to is required\nTry 'imgstore group repl enable --help'.\n");
	assert_int_equal(f->ncalls, 4);
}

/*
 * The shapes the verbs share (cli/call.c, cli/args.c): a reply shown as a one-row table, a
 * repeated field as a table, an empty reply ({} in JSON only, or nothing at all for tier
 * policy rm), --WORD options, durations of at least 1s and a failover's --wait.
 */
static void test_shared_shapes(void **state)
{
	fake *f = *state;
	Imgstore__V1__TierPolicy pol = IMGSTORE__V1__TIER_POLICY__INIT;
	Imgstore__V1__ListPoliciesResponse pols = IMGSTORE__V1__LIST_POLICIES_RESPONSE__INIT;
	Imgstore__V1__TierPolicy *pv[1] = {&pol};
	Imgstore__V1__RemovePolicyResponse rmp = IMGSTORE__V1__REMOVE_POLICY_RESPONSE__INIT;
	Imgstore__V1__DeleteSnapshotResponse rms = IMGSTORE__V1__DELETE_SNAPSHOT_RESPONSE__INIT;
	Imgstore__V1__Host host = IMGSTORE__V1__HOST__INIT;

	pol.pool = "rbd";
	pol.cold_after_seconds = 86400;
	pol.after = "trash";
	pols.policies = pv;
	pols.n_policies = 1;
	fake_expect(f, "imgstore.v1.TierService/GetPolicy", &pol);
	assert_int_equal(fake_run(f, "--server", SOCK, "tier", "policy", "show", "rbd", NULL), 0);
	assert_string_equal(f->out, "POOL  COLD AFTER  TARGET          AFTER  UPDATED\n"
				    "rbd   1d          (the only one)  trash  -\n");
	fake_expect(f, "imgstore.v1.TierService/ListPolicies", &pols);
	assert_int_equal(fake_run(f, "--server", SOCK, "tier", "policy", "show", NULL), 0);
	assert_string_equal(f->out, "POOL  COLD AFTER  TARGET          AFTER  UPDATED\n"
				    "rbd   1d          (the only one)  trash  -\n");
	fake_expect(f, "imgstore.v1.TierService/RemovePolicy", &rmp);
	assert_int_equal(fake_run(f, "--server", SOCK, "--format", "json", "tier", "policy", "rm",
				  "rbd", NULL),
			 0);
	assert_string_equal(f->out, "");
	fake_expect(f, "imgstore.v1.SnapshotService/DeleteSnapshot", &rms);
	assert_int_equal(fake_run(f, "--server", SOCK, "snap", "rm", "rbd/vm1@s1", NULL), 0);
	assert_string_equal(f->out, "");
	fake_expect(f, "imgstore.v1.SnapshotService/DeleteSnapshot", &rms);
	assert_int_equal(
		fake_run(f, "--server", SOCK, "--format", "json", "snap", "rm", "rbd/vm1@s1", NULL),
		0);
	assert_string_equal(f->out, "{\n}\n");

	host.name = "hv1";
	host.address = "10.0.0.1";
	fake_expect(f, "imgstore.v1.HostService/RegisterHost", &host);
	assert_int_equal(fake_run(f, "--server", SOCK, "host", "register", "hv1", "--address",
				  "10.0.0.1", NULL),
			 0);
	Imgstore__V1__RegisterHostRequest *rh =
		sent(f, 5, &imgstore__v1__register_host_request__descriptor);
	assert_string_equal(rh->address, "10.0.0.1");
	assert_int_equal(f->ncalls, 6);
	cli_reset(f);

	fake_run(f, "--server", SOCK, "host", "register", "hv1", "--address", "a b", NULL);
	assert_usage(f, "--address 'a b' contains a space or a control character",
		     "Try 'imgstore host register --help'.");
	fake_run(f, "--server", SOCK, "tier", "ls", "--target", "", NULL);
	assert_usage(f, "empty --target", "Try 'imgstore tier ls --help'.");
	fake_run(f, "--server", SOCK, "group", "repl", "enable", "rbd/g", "--to", "b", "--rpo", "0",
		 NULL);
	assert_usage(f, "--rpo: must be at least 1s", "Try 'imgstore group repl enable --help'.");
	fake_run(f, "--server", SOCK, "repl", "enable", "rbd/vm1", "--to", "b", "--rpo", "0", NULL);
	assert_usage(f, "--rpo: must be at least 1s (for RPO 0 use --mode sync)",
		     "Try 'imgstore repl enable --help'.");
	fake_run(f, "--server", SOCK, "repl", "enable", "rbd/vm1", "--to", "b", "--rpo", "1m",
		 "--mode", "sync", NULL);
	assert_usage(f, "--rpo applies to --mode async only", "Try 'imgstore repl enable --help'.");
	fake_run(f, "--server", SOCK, "repl", "failover", "--from", "a", "--to", "b", "--wait",
		 "2d", NULL);
	assert_usage(f, "--wait takes a duration from 1s to 1d, not '2d'",
		     "Try 'imgstore repl failover --help'.");
	fake_run(f, "--server", SOCK, "group", "repl", "failover", "rbd/g", NULL);
	assert_usage(f, "--to is required", "Try 'imgstore group repl failover --help'.");
	fake_run(f, "--server", SOCK, "image", "resize", "rbd/vm1", NULL);
	assert_usage(f, "--size is required", "Try 'imgstore image resize --help'.");
}

/* An optional image not given goes as an empty ImageSpec, not as none. */
static void test_optional_image(void **state)
{
	fake *f = *state;
	Imgstore__V1__GetReplicationStatusResponse st =
		IMGSTORE__V1__GET_REPLICATION_STATUS_RESPONSE__INIT;

	fake_expect(f, "imgstore.v1.ReplicationService/GetReplicationStatus", &st);
	fake_expect(f, "imgstore.v1.ReplicationService/GetReplicationStatus", &st);
	fake_expect_error(f, "imgstore.v1.TierService/Restore", -ENOSYS, IMS_RPC_UNIMPLEMENTED, "");
	assert_int_equal(fake_run(f, "--server", SOCK, "repl", "status", NULL), 0);
	assert_int_equal(fake_run(f, "--server", SOCK, "repl", "status", "rbd/vm1", NULL), 0);
	assert_int_equal(fake_run(f, "--server", SOCK, "tier", "restore", "cold1", NULL), 1);
	Imgstore__V1__GetReplicationStatusRequest *all =
		sent(f, 0, &imgstore__v1__get_replication_status_request__descriptor);
	Imgstore__V1__GetReplicationStatusRequest *one =
		sent(f, 1, &imgstore__v1__get_replication_status_request__descriptor);
	Imgstore__V1__RestoreRequest *rs = sent(f, 2, &imgstore__v1__restore_request__descriptor);
	assert_non_null(all->image);
	assert_string_equal(all->image->pool, "");
	assert_string_equal(all->image->image, "");
	assert_string_equal(one->image->pool, "rbd");
	assert_string_equal(one->image->image, "vm1");
	assert_string_equal(rs->name, "cold1");
	assert_non_null(rs->to);
	assert_string_equal(rs->to->pool, "");
	assert_string_equal(rs->to->image, "");
}

/* Every verb runs something; every one-call row names a method, fields and types that exist. */
static void test_call_rows(void **state)
{
	(void)state;
	for (const ims_cli_noun *n = ims_cli__nouns; n->name; n++) {
		for (const ims_cli_verb *v = n->verbs; v->verb; v++) {
			const ims_cli_call_spec *c = v->call;
			const ProtobufCMethodDescriptor *m;
			const ProtobufCFieldDescriptor *f;

			assert_true((v->run != NULL) != (c != NULL));
			if (!c)
				continue;
			m = protobuf_c_service_descriptor_get_method_by_name(c->service, c->method);
			assert_non_null(m);
			f = c->field ? protobuf_c_message_descriptor_get_field_by_name(m->input,
										       c->field)
				     : NULL;
			assert_true((c->pos == IMS_CLI_POS_NONE) == (f == NULL));
			if (c->pos == IMS_CLI_POS_POOL || c->pos == IMS_CLI_POS_WORD)
				assert_int_equal(f->type, PROTOBUF_C_TYPE_STRING);
			else if (c->pos == IMS_CLI_POS_GROUP)
				assert_ptr_equal(f->descriptor,
						 &imgstore__v1__group_spec__descriptor);
			else if (c->pos != IMS_CLI_POS_NONE)
				assert_ptr_equal(f->descriptor,
						 &imgstore__v1__image_spec__descriptor);
			if (c->reply == IMS_CLI_REPLY_OP)
				assert_ptr_equal(m->output, &imgstore__v1__operation__descriptor);
			if (c->reply == IMS_CLI_REPLY_LIST && c->list_field) {
				f = protobuf_c_message_descriptor_get_field_by_name(m->output,
										    c->list_field);
				assert_non_null(f);
				assert_int_equal(f->label, PROTOBUF_C_LABEL_REPEATED);
				assert_int_equal(f->type, PROTOBUF_C_TYPE_MESSAGE);
			}
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		CLI_TEST(test_create_request),	    CLI_TEST(test_create_option_forms),
		CLI_TEST(test_create_usage_errors), CLI_TEST(test_dispatch_usage_errors),
		CLI_TEST(test_help_and_version),    CLI_TEST(test_environment),
		CLI_TEST(test_token_file),	    CLI_TEST(test_server_errors),
		CLI_TEST(test_image_verbs),	    CLI_TEST(test_tags),
		CLI_TEST(test_attach_info),	    CLI_TEST(test_snap_verbs),
		CLI_TEST(test_op_and_host_verbs),   CLI_TEST(test_repl_tier_group),
		CLI_TEST(test_optional_image),	    cmocka_unit_test(test_call_rows),
		CLI_TEST(test_shared_shapes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
