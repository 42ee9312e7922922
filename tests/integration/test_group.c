/*
 * Consistency groups against the two sandbox sites.
 *
 * store/group.h: create, add, snapshot, list, remove, and the refusals (unknown group, image
 * in another group, image not found), each of which changes nothing.
 *
 * replicator/group.h: a writer (group_seq_writer) writes an increasing sequence number to
 * both disks of a group while group cycles run; every cut sealed on site b must show the two
 * disks at most one write apart (disk 1 first), and equal the primary's group snapshot byte
 * for byte. A cut cycle resumes from its checkpoints; an unchanged group costs no cut.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <rbd/librbd.h>

#include "common/error.h"
#include "itest.h"
#include "replicator/group.h"
#include "store/group.h"
#include "store/image.h"

static void create(const char *name)
{
	itest_create(name, 8u << 20);
}

/* A fresh name with PREFIX in OUT (64 bytes). */
static void fresh(char out[64], const char *prefix)
{
	snprintf(out, 64, "%s", itest_name(prefix));
}

/* A fresh name with PREFIX in OUT (64 bytes), and an image of that name on site a. */
static void fresh_image(char out[64], const char *prefix)
{
	fresh(out, prefix);
	create(out);
}

static void assert_members(const char *group, size_t n, const char *first)
{
	ims_group_info *g = NULL;
	assert_int_equal(ims_group_info_get(&g, itest.a, "rbd", group), 0);
	assert_int_equal(g->nmembers, n);
	if (first) {
		assert_string_equal(g->members[0].pool, "rbd");
		assert_string_equal(g->members[0].image, first);
	}
	ims_group_info_free(g);
}

static void test_lifecycle(void **state)
{
	(void)state;
	char g[64], g2[64], d1[64], d2[64], buf[600];
	fresh(g, "grp");
	fresh(g2, "grp2");
	fresh_image(d1, "gd1");
	fresh_image(d2, "gd2");

	assert_int_equal(ims_group_create(itest.a, "rbd", g), 0);
	assert_int_equal(ims_group_create(itest.a, "rbd", g), -EEXIST);
	assert_non_null(strstr(ims_error_last(), "already exists"));
	assert_int_equal(ims_group_create(itest.a, "rbd", "bad/name"), -EINVAL);
	assert_int_equal(ims_group_create(itest.a, "nopool", g), -ENOENT);

	/* listed, sorted */
	char **names = NULL;
	size_t n = 0;
	assert_int_equal(ims_group_create(itest.a, "rbd", g2), 0);
	assert_int_equal(ims_group_list(&names, &n, itest.a, "rbd"), 0);
	bool seen = false, seen2 = false;
	for (size_t i = 0; i < n; i++) {
		seen |= strcmp(names[i], g) == 0;
		seen2 |= strcmp(names[i], g2) == 0;
		if (i)
			assert_true(strcmp(names[i - 1], names[i]) < 0);
	}
	assert_true(seen && seen2);
	ims_group_list_free(names, n);

	/* members */
	assert_int_equal(ims_group_image_add(itest.a, "rbd", g, "rbd", d1), 0);
	assert_int_equal(ims_group_image_add(itest.a, "rbd", g, "rbd", d2), 0);
	assert_members(g, 2, d1);
	assert_int_equal(ims_group_of_image(buf, sizeof(buf), itest.a, "rbd", d1), 0);
	char want[600];
	snprintf(want, sizeof(want), "rbd/%s", g);
	assert_string_equal(buf, want);

	/* refusals change nothing */
	assert_int_equal(ims_group_image_add(itest.a, "rbd", g2, "rbd", d1), -EEXIST);
	assert_non_null(strstr(ims_error_last(), "in another group"));
	assert_non_null(strstr(ims_error_last(), g));
	assert_members(g2, 0, NULL);
	assert_int_equal(ims_group_image_add(itest.a, "rbd", g, "rbd", d1), -EEXIST);
	assert_non_null(strstr(ims_error_last(), "already"));
	assert_int_equal(ims_group_image_add(itest.a, "rbd", "no-such-group", "rbd", d1), -ENOENT);
	assert_non_null(strstr(ims_error_last(), "no group 'rbd/no-such-group'"));
	assert_int_equal(ims_group_image_add(itest.a, "rbd", g2, "rbd", "no-such-image"), -ENOENT);
	assert_non_null(strstr(ims_error_last(), "no image 'rbd/no-such-image'"));
	assert_members(g2, 0, NULL);
	assert_int_equal(ims_group_image_remove(itest.a, "rbd", g2, "rbd", d1), -ENOENT);
	assert_non_null(strstr(ims_error_last(), "is not in group"));
	assert_members(g, 2, d1);

	/* group snapshots: one snapshot of every member */
	assert_int_equal(ims_group_snap_create(itest.a, "rbd", g, "s1"), 0);
	assert_int_equal(ims_group_snap_create(itest.a, "rbd", g, "s1"), -EEXIST);
	assert_int_equal(ims_group_snap_create(itest.a, "rbd", g2, "s1"), -EINVAL); /* empty */
	assert_int_equal(ims_group_snap_create(itest.a, "rbd", "no-such-group", "s1"), -ENOENT);
	ims_group_info *gi = NULL;
	assert_int_equal(ims_group_info_get(&gi, itest.a, "rbd", g), 0);
	assert_int_equal(gi->nsnaps, 1);
	assert_string_equal(gi->snaps[0].name, "s1");
	assert_true(gi->snaps[0].complete);
	ims_group_info_free(gi);
	assert_int_equal(ims_group_info_get(&gi, itest.a, "rbd", "no-such-group"), -ENOENT);
	assert_int_equal(ims_group_snap_remove(itest.a, "rbd", g, "nope"), -ENOENT);
	assert_int_equal(ims_group_snap_remove(itest.a, "rbd", g, "s1"), 0);

	/* a group with images is removed only by force; its images stay */
	assert_int_equal(ims_group_remove(itest.a, "rbd", g, false), -ENOTEMPTY);
	assert_members(g, 2, d1);
	assert_int_equal(ims_group_image_remove(itest.a, "rbd", g, "rbd", d1), 0);
	assert_members(g, 1, d2);
	assert_int_equal(ims_group_of_image(buf, sizeof(buf), itest.a, "rbd", d1), 0);
	assert_string_equal(buf, "");
	assert_int_equal(ims_group_remove(itest.a, "rbd", g, true), 0);
	assert_int_equal(ims_image_exists(itest.a, "rbd", d2), 1);
	assert_int_equal(ims_group_of_image(buf, sizeof(buf), itest.a, "rbd", d2), 0);
	assert_string_equal(buf, "");
	assert_int_equal(ims_group_remove(itest.a, "rbd", g, false), -ENOENT);
	assert_int_equal(ims_group_remove(itest.a, "rbd", g2, false), 0);

	ims_image_remove_opts ro = IMS_IMAGE_REMOVE_OPTS_INIT;
	ro.purge = true;
	assert_int_equal(ims_image_remove(itest.a, "rbd", d1, &ro), 0);
	assert_int_equal(ims_image_remove(itest.a, "rbd", d2, &ro), 0);
}

/* ---- replication ---- */

/* The id of @p image's snapshot of group snapshot @p cut on site A. */
static uint64_t cut_id(rbd_image_t img, const char *group, const char *cut)
{
	rbd_snap_info_t snaps[64];
	int max = 64, n = rbd_snap_list(img, snaps, &max);
	assert_true(n >= 0);
	uint64_t id = UINT64_MAX;
	for (int i = 0; i < n; i++) {
		rbd_snap_namespace_type_t t;
		rbd_snap_group_namespace_t g;
		if (rbd_snap_get_namespace_type(img, snaps[i].id, &t) < 0 ||
		    t != RBD_SNAP_NAMESPACE_TYPE_GROUP)
			continue;
		assert_int_equal(rbd_snap_get_group_namespace(img, snaps[i].id, &g, sizeof(g)), 0);
		if (!strcmp(g.group_name, group) && !strcmp(g.group_snap_name, cut))
			id = snaps[i].id;
		rbd_snap_group_namespace_cleanup(&g, sizeof(g));
	}
	rbd_snap_list_end(snaps);
	if (id == UINT64_MAX)
		fail_msg("no snapshot of the group snapshot %s@%s", group, cut);
	return id;
}

/* Site b's sealed cut of @p image equals site a's group snapshot of that name. */
static void assert_cut_equal(const char *group, const char *image, const char *cut)
{
	itest_image pa;
	rados_ioctx_t ib;
	rbd_image_t pb;
	itest_image_open(&pa, itest.a, "rbd", image, NULL, true);
	assert_int_equal(rbd_snap_set_by_id(pa.img, cut_id(pa.img, group, cut)), 0);
	assert_int_equal(ims_site_ioctx(&ib, itest.b, "rbd"), 0);
	if (rbd_open_read_only(ib, image, &pb, cut) != 0)
		fail_msg("site b has no snapshot %s@%s", image, cut);
	if (itest_image_first_difference(pa.img, pb) != UINT64_MAX)
		fail_msg("%s: site b's %s differs from site a's group snapshot", image, cut);
	itest_image_close(&pa);
	rbd_close(pb);
	ims_site_ioctx_close(ib);
}

/* The sequence number at offset 0 of site b's @p image at @p snap. */
static uint64_t seq_at(const char *image, const char *snap)
{
	itest_image im;
	unsigned char b[8];
	uint64_t v = 0;
	itest_image_open(&im, itest.b, "rbd", image, snap, true);
	assert_int_equal(rbd_read(im.img, 0, 8, (char *)b), 8);
	for (int i = 7; i >= 0; i--)
		v = v << 8 | b[i];
	itest_image_close(&im);
	return v;
}

/* Site b's sealed replication snapshots of @p image, oldest first (at most 256). */
static size_t sealed_on_b(const char *image, char names[][64])
{
	itest_image im;
	rbd_snap_info_t snaps[512];
	int max = 512;
	size_t k = 0;
	itest_image_open(&im, itest.b, "rbd", image, NULL, true);
	int n = rbd_snap_list(im.img, snaps, &max);
	assert_true(n >= 0);
	for (int i = 0; i < n && k < 256; i++)
		if (ims_repl_snap_time(snaps[i].name) >= 0)
			snprintf(names[k++], 64, "%s", snaps[i].name);
	rbd_snap_list_end(snaps);
	itest_image_close(&im);
	return k;
}

static int refuse_second(void *ctx, const ims_spec *image)
{
	const char *refused = ctx;
	if (strcmp(image->image, refused) == 0)
		return ims_error_set(-EBUSY, "refused by the check: %s", image->image);
	return 0;
}

static ims_spec spec_of(const char *image)
{
	ims_spec s;
	memset(&s, 0, sizeof(s));
	snprintf(s.pool, sizeof(s.pool), "rbd");
	snprintf(s.image, sizeof(s.image), "%s", image);
	return s;
}

/* ims_group_images_add/remove: all or none, whatever refuses. */
static void test_membership_all_or_none(void **state)
{
	(void)state;
	char g[64], g2[64], d1[64], d2[64], d3[64];
	fresh(g, "agrp");
	fresh(g2, "agrp2");
	fresh_image(d1, "ad1");
	fresh_image(d2, "ad2");
	fresh_image(d3, "ad3");
	assert_int_equal(ims_group_create(itest.a, "rbd", g), 0);
	assert_int_equal(ims_group_create(itest.a, "rbd", g2), 0);
	ims_spec v[3] = {spec_of(d1), spec_of(d2), spec_of(d1)};

	/* named twice, refused by the check, in another group: nothing added each time */
	assert_int_equal(ims_group_images_add(itest.a, "rbd", g, v, 3, NULL, NULL), -EINVAL);
	assert_non_null(strstr(ims_error_last(), "is named twice"));
	assert_members(g, 0, NULL);
	assert_int_equal(ims_group_images_add(itest.a, "rbd", g, v, 2, refuse_second, d2), -EBUSY);
	assert_non_null(strstr(ims_error_last(), "refused by the check"));
	assert_members(g, 0, NULL);
	ims_spec other = spec_of(d3);
	assert_int_equal(ims_group_images_add(itest.a, "rbd", g2, &other, 1, NULL, NULL), 0);
	ims_spec w[2] = {spec_of(d1), spec_of(d3)};
	assert_int_equal(ims_group_images_add(itest.a, "rbd", g, w, 2, NULL, NULL), -EEXIST);
	assert_non_null(strstr(ims_error_last(), "remove it from there first"));
	assert_members(g, 0, NULL);
	ims_spec missing = spec_of("no-such-image-xyz");
	ims_spec x[2] = {spec_of(d1), missing};
	assert_true(ims_group_images_add(itest.a, "rbd", g, x, 2, NULL, NULL) < 0);
	assert_members(g, 0, NULL);

	/* both at once; then a removal naming one outside the group removes nothing */
	assert_int_equal(ims_group_images_add(itest.a, "rbd", g, v, 2, refuse_second, "none"), 0);
	assert_members(g, 2, NULL);
	assert_int_equal(ims_group_images_remove(itest.a, "rbd", g, w, 2), -ENOENT);
	assert_non_null(strstr(ims_error_last(), "is not in group"));
	assert_members(g, 2, NULL);
	assert_int_equal(ims_group_images_remove(itest.a, "rbd", g, v, 2), 0);
	assert_members(g, 0, NULL);
	assert_int_equal(ims_group_images_remove(itest.a, "rbd", g2, &other, 1), 0);

	assert_int_equal(ims_group_remove(itest.a, "rbd", g, false), 0);
	assert_int_equal(ims_group_remove(itest.a, "rbd", g2, false), 0);
}

static int cut_after(void *ctx, uint64_t done, uint64_t total)
{
	(void)done;
	(void)total;
	return ++*(int *)ctx > 1; /* let the first progress call through, then cut */
}

/* What the steps of test_replication_consistent_cuts share. */
typedef struct {
	char g[64], d1[64], d2[64];
	ims_repl_opts o;
	ims_repl_result res;
	char last[64];		  /* the newest cut sealed */
	unsigned cuts;		  /* cuts taken while the writer ran */
	unsigned long long wrote; /* pairs the writer wrote */
} cuts_run;

/* Two 16 MiB members in a new group; the teardown removes them from both sites. */
static void cuts_make_group(cuts_run *c)
{
	fresh(c->g, "rgrp");
	fresh(c->d1, "rgd1");
	fresh(c->d2, "rgd2");
	itest_remove_later('A', true, c->g);
	itest_remove_later('B', true, c->g);
	itest_remove_later('B', false, c->d1);
	itest_remove_later('B', false, c->d2);
	itest_create(c->d1, 16u << 20);
	itest_create(c->d2, 16u << 20);
	assert_int_equal(ims_group_create(itest.a, "rbd", c->g), 0);
	assert_int_equal(ims_group_image_add(itest.a, "rbd", c->g, "rbd", c->d1), 0);
	assert_int_equal(ims_group_image_add(itest.a, "rbd", c->g, "rbd", c->d2), 0);
	c->o = (ims_repl_opts)IMS_REPL_OPTS_INIT;
	c->o.retention = 100; /* keep every cut, to check them all at the end */
}

/* A first cut before the writer: full copies of both members. */
static void cuts_first_full(cuts_run *c)
{
	assert_int_equal(ims_repl_group_sync(&c->res, itest.a, itest.b, "rbd", c->g, &c->o), 0);
	assert_true(c->res.full);
	assert_false(c->res.unchanged);
	assert_cut_equal(c->g, c->d1, c->res.sealed);
	assert_cut_equal(c->g, c->d2, c->res.sealed);
}

/* The writer runs while cuts are taken and shipped. */
static void cuts_under_writer(cuts_run *c)
{
	char writer[1024], out_path[1024];
	const char *bin = getenv("IMS_BINARY_DIR");
	assert_non_null(bin);
	snprintf(writer, sizeof(writer), "%s/tests/group_seq_writer", bin);
	snprintf(out_path, sizeof(out_path), "%s/writer.out", itest_dir());
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		if (!freopen(out_path, "w", stdout))
			_exit(3);
		execl(writer, writer, getenv("CEPH_CONF_A"), "rbd", c->d1, c->d2, (char *)NULL);
		_exit(4);
	}
	sleep(1);
	for (int i = 0; i < 40 && c->cuts < 12; i++) {
		usleep(700 * 1000);
		if (ims_repl_group_sync(&c->res, itest.a, itest.b, "rbd", c->g, &c->o) != 0)
			fail_msg("group cycle %d: %s", i, ims_error_last());
		if (c->res.unchanged)
			continue;
		assert_false(c->res.full);
		assert_string_equal(c->res.base, c->last[0] ? c->last : c->res.base);
		snprintf(c->last, sizeof(c->last), "%s", c->res.sealed);
		assert_cut_equal(c->g, c->d1, c->res.sealed);
		assert_cut_equal(c->g, c->d2, c->res.sealed);
		c->cuts++;
	}
	assert_int_equal(kill(pid, SIGTERM), 0);
	int st = 0;
	assert_int_equal(waitpid(pid, &st, 0), pid);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail_msg("the writer failed (status %d): its writes must block during a cut, not "
			 "fail",
			 st);
	FILE *f = fopen(out_path, "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%llu", &c->wrote), 1);
	fclose(f);
	assert_true(c->cuts >= 10);
	assert_true(c->wrote > c->cuts);
}

/* Every cut sealed on b shows the two disks at most one write apart, disk 1 first. */
static void cuts_one_point_in_time(cuts_run *c)
{
	static char n1[256][64], n2[256][64];
	size_t k1 = sealed_on_b(c->d1, n1), k2 = sealed_on_b(c->d2, n2);
	assert_int_equal(k1, k2);
	assert_true(k1 >= 11);
	uint64_t prev = 0;
	unsigned moving = 0;
	for (size_t i = 0; i < k1; i++) {
		assert_string_equal(n1[i], n2[i]);
		uint64_t s1 = seq_at(c->d1, n1[i]), s2 = seq_at(c->d2, n1[i]);
		if (!(s1 >= s2 && s1 - s2 <= 1))
			fail_msg("cut %s: disk 1 at %llu, disk 2 at %llu: not one point in time",
				 n1[i], (unsigned long long)s1, (unsigned long long)s2);
		assert_true(s1 >= prev);
		moving += s1 > prev;
		prev = s1;
	}
	assert_true(moving >= 10); /* the cuts caught the writer at different points */
	print_message("%zu cuts sealed on b, the writer wrote %llu pairs, the last cut at %llu\n",
		      k1, c->wrote, (unsigned long long)prev);
}

/* The secondary's group carries the cuts as group snapshots. */
static void cuts_secondary_group(cuts_run *c)
{
	ims_group_info *gb = NULL;
	assert_int_equal(ims_group_info_get(&gb, itest.b, "rbd", c->g), 0);
	assert_int_equal(gb->nmembers, 2);
	assert_true(gb->nsnaps >= 1);
	assert_string_equal(gb->snaps[gb->nsnaps - 1].name, c->last);
	ims_group_info_free(gb);
	char name[64];
	int64_t ms;
	assert_int_equal(ims_repl_group_last_sealed(name, sizeof(name), &ms, itest.b, "rbd", c->g),
			 0);
	assert_string_equal(name, c->last);
}

/* Nothing written since: the next cycles take no cut (one more may, for the writes between the
 * last anchor and its cut). */
static void cuts_unchanged(cuts_run *c)
{
	assert_int_equal(ims_repl_group_sync(&c->res, itest.a, itest.b, "rbd", c->g, &c->o), 0);
	assert_int_equal(ims_repl_group_sync(&c->res, itest.a, itest.b, "rbd", c->g, &c->o), 0);
	assert_true(c->res.unchanged);
	snprintf(c->last, sizeof(c->last), "%s", c->res.sealed);
}

/* A cut cycle: cut inside the first member's copy; the next call finishes that cut. */
static void cuts_resume(cuts_run *c)
{
	char *buf = malloc(8u << 20);
	memset(buf, 0x77, 8u << 20);
	itest_image_write(itest.a, "rbd", c->d1, 4u << 20, buf, 8u << 20);
	itest_image_write(itest.a, "rbd", c->d2, 4u << 20, buf, 4096);
	free(buf);
	int calls = 0;
	char name[64];
	ims_repl_opts cut = c->o;
	cut.progress = cut_after;
	cut.progress_ctx = &calls;
	cut.concurrency = 1;
	cut.inflight_bytes = 1u << 20;
	cut.checkpoint_bytes = 1u << 20;
	assert_int_equal(ims_repl_group_sync(&c->res, itest.a, itest.b, "rbd", c->g, &cut),
			 -ECANCELED);
	assert_int_equal(ims_repl_group_last_sealed(name, sizeof(name), NULL, itest.b, "rbd", c->g),
			 0);
	assert_string_equal(name, c->last); /* not sealed on all members */
	assert_int_equal(ims_repl_group_sync(&c->res, itest.a, itest.b, "rbd", c->g, &c->o), 0);
	assert_true(c->res.resumed);
	assert_true(strcmp(c->res.sealed, c->last) > 0);
	assert_cut_equal(c->g, c->d1, c->res.sealed);
	assert_cut_equal(c->g, c->d2, c->res.sealed);
}

/* Retention: the newest N cuts on each side, anchors with them. */
static void cuts_retention(cuts_run *c)
{
	static char n1[256][64];
	itest_image_write(itest.a, "rbd", c->d2, 0, "retained", 8);
	c->o.retention = 2;
	assert_int_equal(ims_repl_group_sync(&c->res, itest.a, itest.b, "rbd", c->g, &c->o), 0);
	assert_int_equal(sealed_on_b(c->d1, n1), 2);
	ims_group_info *ga = NULL;
	assert_int_equal(ims_group_info_get(&ga, itest.a, "rbd", c->g), 0);
	assert_int_equal(ga->nsnaps, 2);
	ims_group_info_free(ga);
	assert_int_equal(itest_sh("[ $(rbd -c \"$CEPH_CONF_A\" snap ls 'rbd/%s' | grep -c "
				  "imgstore-anchor-) = 2 ]",
				  c->d1),
			 0);
}

/* Disabling leaves no cut on the primary. */
static void cuts_forget(cuts_run *c)
{
	ims_group_info *ga = NULL;
	ims_repl_group_forget(itest.a, "rbd", c->g);
	assert_int_equal(ims_group_info_get(&ga, itest.a, "rbd", c->g), 0);
	assert_int_equal(ga->nsnaps, 0);
	ims_group_info_free(ga);
	assert_int_equal(
		itest_sh("! rbd -c \"$CEPH_CONF_A\" snap ls 'rbd/%s' | grep -q imgstore-anchor-",
			 c->d1),
		0);
}

static void test_replication_consistent_cuts(void **state)
{
	(void)state;
	static cuts_run c;
	memset(&c, 0, sizeof(c));
	cuts_make_group(&c);
	cuts_first_full(&c);
	cuts_under_writer(&c);
	cuts_one_point_in_time(&c);
	cuts_secondary_group(&c);
	cuts_unchanged(&c);
	cuts_resume(&c);
	cuts_retention(&c);
	cuts_forget(&c);
}

static void test_replication_refusals(void **state)
{
	(void)state;
	ims_repl_opts o = IMS_REPL_OPTS_INIT;
	ims_repl_result res;
	char g[64];
	fresh(g, "egrp");
	assert_int_equal(ims_repl_group_sync(&res, itest.a, itest.b, "rbd", "no-such-group", &o),
			 -ENOENT);
	assert_int_equal(ims_group_create(itest.a, "rbd", g), 0);
	assert_int_equal(ims_repl_group_sync(&res, itest.a, itest.b, "rbd", g, &o), -EINVAL);
	assert_non_null(strstr(ims_error_last(), "no images"));
	assert_int_equal(ims_group_remove(itest.a, "rbd", g, false), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lifecycle),
		cmocka_unit_test(test_membership_all_or_none),
		cmocka_unit_test(test_replication_refusals),
		cmocka_unit_test(test_replication_consistent_cuts),
	};
	return cmocka_run_group_tests_name("group", tests, itest_setup_ab, itest_teardown);
}
