/*
 * store/: sites, images, snapshots, clones, tags, the catalog and the JSON records in omap,
 * against a sandbox cluster.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <rbd/librbd.h>

#include "common/error.h"
#include "itest.h"
#include "store/catalog.h"
#include "store/image.h"
#include "store/omap.h"
#include "store/record.h"
#include "store/site.h"
#include "store/store_internal.h"

static void test_site_errors(void **state)
{
	(void)state;
	ims_site *s = NULL;
	ims_site_opts o = IMS_SITE_OPTS_INIT;
	o.name = "x";
	o.ceph_conf = "/nonexistent/ceph.conf";
	assert_int_equal(ims_site_connect(&s, &o), -ENOENT);
	assert_string_equal(ims_error_last(),
			    "site 'x': cannot read ceph.conf '/nonexistent/ceph.conf': No such "
			    "file or directory");
	assert_null(s);

	/* A site whose monitor is down: a bounded wait, then -ETIMEDOUT. The conf is site a's with
	 * the monitor moved to a port where nothing listens. */
	char conf[512];
	snprintf(conf, sizeof(conf), "%s/dead.conf", itest_dir());
	assert_int_equal(itest_sh("sed 's/^mon host = .*/mon host = v2:127.0.0.1:9/' '%s' > '%s'",
				  getenv("CEPH_CONF_A"), conf),
			 0);
	o.ceph_conf = conf;
	o.mon_timeout = 3;
	time_t t0 = time(NULL);
	assert_int_equal(ims_site_connect(&s, &o), -ETIMEDOUT);
	assert_true(time(NULL) - t0 <= 30);
	assert_non_null(strstr(ims_error_last(), "the monitors did not answer within 3s"));

	char addrs[256], fsid[64];
	assert_int_equal(ims_site_mon_addrs(addrs, sizeof(addrs), itest.a), 0);
	char want[80];
	snprintf(want, sizeof(want), "%s:", itest_site_addr('A'));
	assert_non_null(strstr(addrs, want));
	assert_int_equal(ims_site_fsid(fsid, sizeof(fsid), itest.a), 0);
	assert_int_equal(strlen(fsid), 36);
}

static void test_image_lifecycle(void **state)
{
	(void)state;
	const char *name = itest_name("img");
	char renamed[128];
	snprintf(renamed, sizeof(renamed), "%s-renamed", name);
	ims_image_create_opts co = IMS_IMAGE_CREATE_OPTS_INIT;
	co.size = 64 * MiB;

	assert_int_equal(ims_image_create(itest.a, "rbd", name, &co), 0);
	assert_int_equal(ims_image_create(itest.a, "rbd", name, &co), -EEXIST);
	assert_non_null(strstr(ims_error_last(), "already exists"));
	assert_int_equal(ims_image_create(itest.a, "nopool", name, &co), -ENOENT);
	assert_string_equal(ims_error_last(), "no pool 'nopool' on site 'a'");

	ims_image_info *info = NULL;
	assert_int_equal(ims_image_info_get(&info, itest.a, "rbd", name), 0);
	assert_int_equal(info->size, 64 * MiB);
	assert_int_equal(info->object_size, 4 * MiB);
	assert_int_equal(info->features, IMS_IMAGE_DEFAULT_FEATURES);
	assert_string_equal(info->features_str,
			    "layering,exclusive-lock,object-map,fast-diff,deep-flatten");
	assert_int_equal(info->used_bytes, 0);
	assert_null(info->parent);
	assert_non_null(info->catalog);
	assert_string_equal(info->catalog->source, "new");
	assert_true(info->catalog->created > 0);
	ims_image_info_free(info);

	/* grow; shrink only when allowed */
	assert_int_equal(ims_image_resize(itest.a, "rbd", name, 128 * MiB, false), 0);
	assert_int_equal(ims_image_resize(itest.a, "rbd", name, 32 * MiB, false), -EINVAL);
	assert_string_equal(
		ims_error_last() + strlen(ims_error_last()) -
			strlen("from 128 MiB to 32 MiB discards data; allow it explicitly"),
		"from 128 MiB to 32 MiB discards data; allow it explicitly");
	assert_int_equal(ims_image_info_get(&info, itest.a, "rbd", name), 0);
	assert_int_equal(info->size, 128 * MiB);
	assert_int_equal(info->catalog->size, 128 * MiB);
	ims_image_info_free(info);
	assert_int_equal(ims_image_resize(itest.a, "rbd", name, 32 * MiB, true), 0);

	/* tags: in the image metadata and the catalog */
	assert_int_equal(ims_image_tag_set(itest.a, "rbd", name, "os", "debian-12"), 0);
	assert_int_equal(ims_image_tag_set(itest.a, "rbd", name, "owner", "team-a"), 0);
	assert_int_equal(ims_image_tag_set(itest.a, "rbd", name, "os", "debian-13"), 0);
	assert_int_equal(ims_image_tag_set(itest.a, "rbd", name, "bad key", "x"), -EINVAL);
	assert_int_equal(ims_image_tag_remove(itest.a, "rbd", name, "owner"), 0);
	assert_int_equal(ims_image_tag_remove(itest.a, "rbd", name, "owner"), -ENOENT);
	assert_int_equal(ims_image_info_get(&info, itest.a, "rbd", name), 0);
	assert_int_equal(info->catalog->ntags, 1);
	assert_string_equal(ims_catalog_tag(info->catalog, "os"), "debian-13");
	ims_image_info_free(info);
	assert_int_equal(
		itest_sh("rbd -c '%s' image-meta get rbd/%s imgstore.tag.os | grep -qx debian-13",
			 getenv("CEPH_CONF_A"), name),
		0);

	/* rename carries the catalog entry */
	assert_int_equal(ims_image_rename(itest.a, "rbd", name, renamed), 0);
	assert_int_equal(ims_image_info_get(&info, itest.a, "rbd", name), -ENOENT);
	assert_int_equal(ims_image_info_get(&info, itest.a, "rbd", renamed), 0);
	assert_non_null(info->catalog);
	assert_string_equal(ims_catalog_tag(info->catalog, "os"), "debian-13");
	ims_image_info_free(info);

	/* list: ours, with tags, sorted */
	ims_image_list_entry *list = NULL;
	size_t n = 0;
	assert_int_equal(ims_image_list(&list, &n, itest.a, "rbd"), 0);
	bool found = false;
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			assert_true(strcmp(list[i - 1].name, list[i].name) < 0);
		assert_true(list[i].name[0] != '.');
		if (strcmp(list[i].name, renamed) == 0) {
			found = true;
			assert_true(list[i].in_catalog);
			assert_string_equal(ims_catalog_tag(&list[i].entry, "os"), "debian-13");
		}
	}
	assert_true(found);
	ims_image_list_free(list, n);

	/* remove goes to the trash by default and leaves the catalog */
	ims_image_remove_opts ro = IMS_IMAGE_REMOVE_OPTS_INIT;
	assert_int_equal(ims_image_remove(itest.a, "rbd", renamed, &ro), 0);
	assert_int_equal(ims_image_info_get(&info, itest.a, "rbd", renamed), -ENOENT);
	assert_int_equal(itest_sh("rbd -c '%s' trash ls rbd | grep -qw '%s'", getenv("CEPH_CONF_A"),
				  renamed),
			 0);
	assert_int_equal(ims_image_remove(itest.a, "rbd", renamed, &ro), -ENOENT);
	rados_ioctx_t io;
	ims_catalog_entry *e = NULL;
	assert_int_equal(ims_site_ioctx(&io, itest.a, "rbd"), 0);
	assert_int_equal(ims_catalog_get(&e, io, renamed), -ENOENT);
	ims_site_ioctx_close(io);
}

/* Regression: the list found catalog entries by a binary search over an array it altered as
 * it went (a found name became ""), and missed some when RBD listed names out of order. */
static void test_list_finds_every_catalog_entry(void **state)
{
	(void)state;
	static const char *const sorted[] = {"a", "b", "c", "d"}, *const order[] = {"d", "a", "c",
										    "b"};
	ims_catalog_entry cat[4];
	ims_image_list_entry got[4];
	memset(cat, 0, sizeof(cat));
	memset(got, 0, sizeof(got));
	for (int i = 0; i < 4; i++) {
		cat[i].name = strdup(sorted[i]);
		cat[i].source = strdup("new");
		got[i].name = strdup(order[i]);
	}
	assert_int_equal(ims_store__catalog_join(got, 4, cat, 4), 0);
	for (int i = 0; i < 4; i++) {
		assert_true(got[i].in_catalog);
		assert_string_equal(got[i].entry.name, order[i]);
		assert_string_equal(got[i].entry.source, "new");
		assert_string_equal(cat[i].name, sorted[i]); /* still sorted */
		assert_null(cat[i].source);		     /* moved */
		ims_catalog_entry_clear(&cat[i]);
	}
	for (int i = 0; i < 4; i++) {
		free(got[i].name);
		ims_catalog_entry_clear(&got[i].entry);
	}

	/* and through RBD: every image made through the store is in the catalog */
	enum { N = 8 };
	char names[N][128];
	const char *base = itest_name("many");
	ims_image_create_opts co = IMS_IMAGE_CREATE_OPTS_INIT;
	co.size = 1 * MiB;
	for (int i = 0; i < N; i++) {
		snprintf(names[i], sizeof(names[i]), "%s-%02d", base, i);
		assert_int_equal(ims_image_create(itest.a, "rbd", names[i], &co), 0);
	}
	ims_image_list_entry *list = NULL;
	size_t n = 0;
	assert_int_equal(ims_image_list(&list, &n, itest.a, "rbd"), 0);
	int found = 0;
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			assert_true(strcmp(list[i - 1].name, list[i].name) < 0);
		if (strncmp(list[i].name, base, strlen(base)) != 0)
			continue;
		found++;
		assert_true(list[i].in_catalog);
		assert_non_null(list[i].entry.name);
		assert_string_equal(list[i].entry.name, list[i].name);
		assert_string_equal(list[i].entry.source, "new");
	}
	assert_int_equal(found, N);
	ims_image_list_free(list, n);
	ims_image_remove_opts ro = IMS_IMAGE_REMOVE_OPTS_INIT;
	ro.purge = true;
	for (int i = 0; i < N; i++)
		assert_int_equal(ims_image_remove(itest.a, "rbd", names[i], &ro), 0);
}

static void test_bad_names_touch_nothing(void **state)
{
	(void)state;
	ims_image_create_opts co = IMS_IMAGE_CREATE_OPTS_INIT;
	co.size = MiB;
	assert_int_equal(ims_image_create(itest.a, "rbd", "bad/name", &co), -EINVAL);
	assert_string_equal(ims_error_last(), "image name 'bad/name' contains '/'");
	assert_int_equal(ims_image_create(itest.a, "rbd", ".imgstore-tmp-x", &co), -EINVAL);
	assert_int_equal(ims_image_create(itest.a, "rbd", "ctl\x07", &co), -EINVAL);
	assert_int_equal(ims_snap_create(itest.a, "rbd", "whatever", "a@b"), -EINVAL);
	co.size = 0;
	assert_int_equal(ims_image_create(itest.a, "rbd", "zero-size", &co), -EINVAL);
	assert_string_equal(ims_error_last(), "an image needs a size above 0");
	assert_int_equal(
		itest_sh("rbd -c '%s' info rbd/zero-size >/dev/null 2>&1", getenv("CEPH_CONF_A")),
		2);
}

static void write_at(const char *pool, const char *image, uint64_t off, const char *data)
{
	itest_image_write(itest.a, pool, image, off, data, strlen(data));
}

static void read_at(const char *pool, const char *image, const char *snap, uint64_t off, char *buf,
		    size_t len)
{
	itest_image im;
	itest_image_open(&im, itest.a, pool, image, snap, true);
	assert_int_equal(rbd_read(im.img, off, len, buf), (ssize_t)len);
	itest_image_close(&im);
}

static void test_snapshots(void **state)
{
	(void)state;
	const char *name = itest_name("snap");
	ims_image_create_opts co = IMS_IMAGE_CREATE_OPTS_INIT;
	co.size = 16 * MiB;
	char buf[16];

	assert_int_equal(ims_image_create(itest.a, "rbd", name, &co), 0);
	write_at("rbd", name, 5 * MiB, "before");
	assert_int_equal(ims_snap_create(itest.a, "rbd", name, "s1"), 0);
	assert_int_equal(ims_snap_create(itest.a, "rbd", name, "s1"), -EEXIST);
	write_at("rbd", name, 5 * MiB, "after!");
	assert_int_equal(ims_snap_create(itest.a, "rbd", name, "s2"), 0);

	ims_snap_info *snaps = NULL;
	size_t n = 0;
	assert_int_equal(ims_snap_list(&snaps, &n, itest.a, "rbd", name), 0);
	assert_int_equal(n, 2);
	assert_string_equal(snaps[0].name, "s1");
	assert_string_equal(snaps[1].name, "s2");
	assert_true(snaps[0].timestamp > 0);
	assert_false(snaps[0].is_protected);
	ims_snap_list_free(snaps, n);

	read_at("rbd", name, "s1", 5 * MiB, buf, 6);
	assert_memory_equal(buf, "before", 6);
	assert_int_equal(ims_snap_rollback(itest.a, "rbd", name, "s1", NULL, NULL), 0);
	read_at("rbd", name, NULL, 5 * MiB, buf, 6);
	assert_memory_equal(buf, "before", 6);
	assert_int_equal(ims_snap_rollback(itest.a, "rbd", name, "nope", NULL, NULL), -ENOENT);

	assert_int_equal(ims_snap_remove(itest.a, "rbd", name, "s2"), 0);
	assert_int_equal(ims_snap_remove(itest.a, "rbd", name, "s2"), -ENOENT);
	char expect[256];
	snprintf(expect, sizeof(expect), "no snapshot 'rbd/%s@s2'", name);
	assert_string_equal(ims_error_last(), expect);

	ims_image_remove_opts ro = IMS_IMAGE_REMOVE_OPTS_INIT;
	ro.purge = true; /* with its snapshot s1 */
	assert_int_equal(ims_image_remove(itest.a, "rbd", name, &ro), 0);
	assert_int_equal(itest_rbd_info(name), 2);
}

typedef struct {
	int calls;
	int cancel_at;
	uint64_t last_total;
} progress_count;

static int count_progress(void *ctx, uint64_t done, uint64_t total)
{
	progress_count *p = ctx;
	(void)done;
	p->calls++;
	p->last_total = total;
	return p->cancel_at && p->calls >= p->cancel_at;
}

static void test_golden_clones(void **state)
{
	(void)state;
	char golden[128], vm1[160], vm2[160], buf[16];
	snprintf(golden, sizeof(golden), "%s", itest_name("golden"));
	snprintf(vm1, sizeof(vm1), "%s-vm1", golden);
	snprintf(vm2, sizeof(vm2), "%s-vm2", golden);
	ims_image_create_opts co = IMS_IMAGE_CREATE_OPTS_INIT;
	co.size = 32 * MiB;

	assert_int_equal(ims_image_create(itest.a, "rbd", golden, &co), 0);
	for (int i = 0; i < 8; i++)
		write_at("rbd", golden, (uint64_t)i * 4 * MiB, "golden-os");
	assert_int_equal(ims_snap_create(itest.a, "rbd", golden, "base"), 0);

	ims_image_create_opts clone_opts = IMS_IMAGE_CREATE_OPTS_INIT;
	assert_int_equal(ims_image_clone(itest.a, "rbd", golden, "nosnap", "rbd", vm1, &clone_opts),
			 -ENOENT);
	assert_int_equal(ims_image_clone(itest.a, "rbd", golden, "base", "rbd", vm1, &clone_opts),
			 0);
	assert_int_equal(ims_image_clone(itest.a, "rbd", golden, "base", "rbd", vm2, &clone_opts),
			 0);
	assert_int_equal(ims_image_clone(itest.a, "rbd", golden, "base", "rbd", vm2, &clone_opts),
			 -EEXIST);

	/* a clone sees the golden data and writes its own */
	read_at("rbd", vm1, NULL, 4 * MiB, buf, 9);
	assert_memory_equal(buf, "golden-os", 9);
	write_at("rbd", vm1, 4 * MiB, "vm1-data!");
	read_at("rbd", golden, "base", 4 * MiB, buf, 9);
	assert_memory_equal(buf, "golden-os", 9);

	ims_image_info *info = NULL;
	assert_int_equal(ims_image_info_get(&info, itest.a, "rbd", vm1), 0);
	char parent[256];
	snprintf(parent, sizeof(parent), "rbd/%s@base", golden);
	assert_string_equal(info->parent, parent);
	assert_string_equal(info->catalog->source, "clone");
	assert_string_equal(info->catalog->parent, parent);
	ims_image_info_free(info);

	/* the golden snapshot cannot go while clones need it; the message names them */
	assert_int_equal(ims_snap_remove(itest.a, "rbd", golden, "base"), -EBUSY);
	assert_non_null(strstr(ims_error_last(), "has 2 clones"));
	assert_non_null(strstr(ims_error_last(), vm1));

	/* flatten with progress, and a cancelled flatten */
	progress_count pc = {0};
	assert_int_equal(ims_image_flatten(itest.a, "rbd", golden, count_progress, &pc), -EINVAL);
	progress_count cancel = {.cancel_at = 1};
	int r = ims_image_flatten(itest.a, "rbd", vm2, count_progress, &cancel);
	assert_true(r == -ECANCELED || r == 0); /* librbd may finish before it asks */
	if (r == -ECANCELED) {
		assert_int_equal(ims_image_info_get(&info, itest.a, "rbd", vm2), 0);
		assert_non_null(info->parent);
		ims_image_info_free(info);
	}
	assert_int_equal(ims_image_flatten(itest.a, "rbd", vm1, count_progress, &pc), 0);
	assert_true(pc.calls > 0);
	assert_int_equal(ims_image_info_get(&info, itest.a, "rbd", vm1), 0);
	assert_null(info->parent);
	assert_null(info->catalog->parent);
	ims_image_info_free(info);
	read_at("rbd", vm1, NULL, 4 * MiB, buf, 9);
	assert_memory_equal(buf, "vm1-data!", 9);
	read_at("rbd", vm1, NULL, 8 * MiB, buf, 9);
	assert_memory_equal(buf, "golden-os", 9);

	ims_image_remove_opts ro = IMS_IMAGE_REMOVE_OPTS_INIT;
	ro.purge = true;
	assert_int_equal(ims_image_remove(itest.a, "rbd", golden, &ro),
			 -EBUSY); /* vm2 may still need it */
	assert_int_equal(ims_image_remove(itest.a, "rbd", vm2, &ro), 0);
	assert_int_equal(ims_image_remove(itest.a, "rbd", vm1, &ro), 0);
	assert_int_equal(ims_image_remove(itest.a, "rbd", golden, &ro), 0);
}

static size_t snap_count(const char *pool, const char *name)
{
	ims_snap_info *snaps = NULL;
	size_t n = 0;
	assert_int_equal(ims_snap_list(&snaps, &n, itest.a, pool, name), 0);
	ims_snap_list_free(snaps, n);
	return n;
}

/* A purge that cannot remove the image removes nothing: not even the snapshots it would have
 * removed first (the image open by a VM, or clones of a later snapshot). */
static void test_purge_refused_changes_nothing(void **state)
{
	(void)state;
	char name[128], kid[160];
	snprintf(name, sizeof(name), "%s", itest_name("purge"));
	snprintf(kid, sizeof(kid), "%s-kid", name);
	ims_image_create_opts co = IMS_IMAGE_CREATE_OPTS_INIT;
	co.size = 16 * MiB;
	ims_image_remove_opts ro = IMS_IMAGE_REMOVE_OPTS_INIT;
	ro.purge = true;

	assert_int_equal(ims_image_create(itest.a, "rbd", name, &co), 0);
	assert_int_equal(ims_snap_create(itest.a, "rbd", name, "s1"), 0);
	assert_int_equal(ims_snap_create(itest.a, "rbd", name, "s2"), 0);

	/* clones of the later snapshot s2: s1 stays too */
	ims_image_create_opts clone_opts = IMS_IMAGE_CREATE_OPTS_INIT;
	assert_int_equal(ims_image_clone(itest.a, "rbd", name, "s2", "rbd", kid, &clone_opts), 0);
	assert_int_equal(ims_image_remove(itest.a, "rbd", name, &ro), -EBUSY);
	char expect[512];
	snprintf(expect, sizeof(expect),
		 "snapshot 'rbd/%s@s2' has 1 clone (rbd/%s): flatten or remove them first; nothing "
		 "removed",
		 name, kid);
	assert_string_equal(ims_error_last(), expect);
	assert_int_equal(snap_count("rbd", name), 2);
	assert_int_equal(ims_image_remove(itest.a, "rbd", kid, &ro), 0);

	/* open by a client (another connection, as a VM would be): nothing removed either */
	ims_site *vm = itest_site('A');
	rados_ioctx_t io;
	rbd_image_t img;
	assert_int_equal(ims_site_ioctx(&io, vm, "rbd"), 0);
	assert_int_equal(rbd_open(io, name, &img, NULL), 0);
	assert_int_equal(ims_image_remove(itest.a, "rbd", name, &ro), -EBUSY);
	snprintf(expect, sizeof(expect), "image 'rbd/%s' is open by 1 client; nothing removed",
		 name);
	assert_string_equal(ims_error_last(), expect);
	assert_int_equal(snap_count("rbd", name), 2);
	ims_image_info *info = NULL;
	assert_int_equal(ims_image_info_get(&info, itest.a, "rbd", name), 0);
	assert_non_null(info->catalog);
	ims_image_info_free(info);
	rbd_close(img);
	ims_site_ioctx_close(io);
	ims_site_close(vm);

	assert_int_equal(ims_image_remove(itest.a, "rbd", name, &ro), 0);
	assert_int_equal(itest_rbd_info(name), 2);

	/* in a group, with a group snapshot: s1 stays, and so does the group's snapshot */
	const char *conf = getenv("CEPH_CONF_A");
	char group[160];
	snprintf(group, sizeof(group), "%s-g", name);
	assert_int_equal(ims_image_create(itest.a, "rbd", name, &co), 0);
	assert_int_equal(ims_snap_create(itest.a, "rbd", name, "s1"), 0);
	assert_int_equal(itest_sh("rbd -c '%s' group create rbd/%s && rbd -c '%s' group image add "
				  "rbd/%s rbd/%s && "
				  "rbd -c '%s' group snap create rbd/%s@gs >/dev/null",
				  conf, group, conf, group, name, conf, group),
			 0);
	assert_int_equal(snap_count("rbd", name), 2);
	assert_int_equal(ims_image_remove(itest.a, "rbd", name, &ro), -EBUSY);
	snprintf(expect, sizeof(expect),
		 "image 'rbd/%s' is in group '%s': remove it from the group first; nothing removed",
		 name, group);
	assert_string_equal(ims_error_last(), expect);
	assert_int_equal(snap_count("rbd", name), 2);
	/* out of the group, its group snapshot may stay on the image: still nothing removed then */
	assert_int_equal(
		itest_sh("rbd -c '%s' group image remove rbd/%s rbd/%s", conf, group, name), 0);
	if (snap_count("rbd", name) == 2) {
		assert_int_equal(ims_image_remove(itest.a, "rbd", name, &ro), -EBUSY);
		assert_non_null(strstr(ims_error_last(), "has a snapshot of group"));
		assert_int_equal(snap_count("rbd", name), 2);
	}
	assert_int_equal(itest_sh("rbd -c '%s' group rm rbd/%s", conf, group), 0);
	assert_int_equal(ims_image_remove(itest.a, "rbd", name, &ro), 0);
}

typedef struct {
	unsigned seen, damaged;
} walked;

static int walk_one(void *ctx, const char *key, json_object *val)
{
	walked *w = ctx;
	(void)key;
	w->seen++;
	w->damaged += val == NULL;
	return 0;
}

/* Keeps the records that have a field "n", leaves out the others. */
static int decode_n(void *elem, const char *key, json_object *val)
{
	json_object *n;
	(void)key;
	if (!val || !json_object_object_get_ex(val, "n", &n))
		return 1;
	*(int64_t *)elem = json_object_get_int64(n);
	return 0;
}

/* store/record.h: JSON records in the omap of one object, damaged ones included. */
static void test_records(void **state)
{
	(void)state;
	char obj[64], msg[IMS_ERROR_MSG_MAX + 64];
	snprintf(obj, sizeof(obj), "%s", itest_name("records"));
	ims_records rs = IMS_RECORDS_SITE(itest.a, "rbd", obj);
	json_object *o = json_object_new_object(), *got = NULL, *n;
	json_object_object_add(o, "n", json_object_new_int64(7));

	assert_int_equal(ims_record_get(&got, &rs, "k1"), -ENOENT);
	snprintf(msg, sizeof(msg), "no record 'k1' in %s", obj);
	assert_string_equal(ims_error_last(), msg);
	assert_int_equal(ims_record_del(&rs, "k1"), 0); /* neither key nor object: no error */
	assert_int_equal(ims_record_put(&rs, "k1", o), 0);
	assert_int_equal(ims_record_put(&rs, "k2", o), 0);
	assert_int_equal(ims_record_get(&got, &rs, "k1"), 0);
	assert_true(json_object_object_get_ex(got, "n", &n));
	assert_int_equal(json_object_get_int64(n), 7);
	json_object_put(got);

	/* replace: only a record still there is written (a runner's write-back after an rm) */
	json_object *o8 = json_object_new_object();
	json_object_object_add(o8, "n", json_object_new_int64(8));
	assert_int_equal(ims_record_replace(&rs, "k2", o8), 0);
	assert_int_equal(ims_record_get(&got, &rs, "k2"), 0);
	assert_true(json_object_object_get_ex(got, "n", &n));
	assert_int_equal(json_object_get_int64(n), 8);
	json_object_put(got);
	assert_int_equal(ims_record_replace(&rs, "gone", o8), -ENOENT);
	snprintf(msg, sizeof(msg), "no record 'gone' in %s", obj);
	assert_string_equal(ims_error_last(), msg);
	assert_int_equal(ims_record_get(&got, &rs, "gone"), -ENOENT); /* nothing written */
	ims_records nowhere = IMS_RECORDS_SITE(itest.a, "rbd", itest_name("records-none"));
	assert_int_equal(ims_record_replace(&nowhere, "k1", o8), -ENOENT); /* no object either */
	json_object_put(o8);
	assert_int_equal(ims_record_put(&rs, "k2", o), 0);

	/* a value that is not a JSON object: -EBADMSG alone, NULL in a walk, left out of a list */
	rados_ioctx_t io;
	assert_int_equal(ims_site_ioctx(&io, itest.a, "rbd"), 0);
	ims_records on_io = IMS_RECORDS_IO(io, obj);
	assert_int_equal(ims_omap_set(io, obj, "k3", "not json", 8), 0);
	got = NULL;
	assert_int_equal(ims_record_get(&got, &on_io, "k3"), -EBADMSG);
	assert_null(got);
	walked w = {0, 0};
	assert_int_equal(ims_record_foreach(&rs, walk_one, &w), 0);
	assert_int_equal(w.seen, 3);
	assert_int_equal(w.damaged, 1);
	void *list = NULL;
	size_t count = 0;
	assert_int_equal(ims_record_list(&list, &count, &rs, sizeof(int64_t), decode_n, NULL), 0);
	assert_int_equal(count, 2);
	assert_int_equal(((int64_t *)list)[0], 7);
	free(list);

	/* a quiet set leaves the thread's message as it was */
	ims_records quiet = IMS_RECORDS_SITE_QUIET(itest.a, "imgstore-no-such-pool", obj);
	ims_error_set(-EIO, "an earlier error");
	assert_true(ims_record_put(&quiet, "k1", o) < 0);
	assert_string_equal(ims_error_last(), "an earlier error");

	const char *keys[] = {"k1", "k2", "k3"};
	assert_int_equal(ims_record_del_many(&on_io, keys, 3), 0);
	assert_int_equal(ims_record_get(&got, &rs, "k2"), -ENOENT);
	w.seen = 0;
	assert_int_equal(ims_record_foreach(&rs, walk_one, &w), 0);
	assert_int_equal(w.seen, 0);
	rados_remove(io, obj);
	ims_site_ioctx_close(io);
	json_object_put(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_site_errors),
		cmocka_unit_test(test_image_lifecycle),
		cmocka_unit_test(test_list_finds_every_catalog_entry),
		cmocka_unit_test(test_bad_names_touch_nothing),
		cmocka_unit_test(test_snapshots),
		cmocka_unit_test(test_golden_clones),
		cmocka_unit_test(test_purge_refused_changes_nothing),
		cmocka_unit_test(test_records),
	};
	return cmocka_run_group_tests_name("store", tests, itest_setup_a, itest_teardown);
}
