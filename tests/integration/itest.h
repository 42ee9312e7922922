/* Helpers of the integration tests: the fixture of a cmocka group (sites from the sandbox env,
 * cleanup of what the tests made), unique names, temp dirs, shell commands. */
#ifndef IMS_TESTS_ITEST_H
#define IMS_TESTS_ITEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <rbd/librbd.h>

#include "store/site.h"

#define KiB (1ull << 10)
#define MiB (1ull << 20)

/* The fixture of a cmocka test group:
 *
 *     cmocka_run_group_tests_name("x", tests, itest_setup_ab, itest_teardown);
 *
 * opens the sandbox's sites a and b (CEPH_CONF_A, CEPH_CONF_B) into itest.a and itest.b. The
 * teardown removes what the tests left to it (itest_create, itest_remove_later), closes the
 * sites and removes itest_dir(). A group that needs more calls these from its own setup and
 * teardown. */
typedef struct itest_sites {
	ims_site *a, *b, *c; /* NULL unless the setup opened it */
} itest_sites;
extern itest_sites itest;

int itest_setup_a(void **state);   /* site a */
int itest_setup_ab(void **state);  /* sites a and b */
int itest_setup_abc(void **state); /* sites a, b and c */
int itest_teardown(void **state);

/* Create image rbd/NAME of SIZE bytes on site a (fails the test if it cannot); the teardown
 * removes it. */
void itest_create(const char *name, uint64_t size);

/* Create pool POOL on site a for rbd (a test's own records pool; kept if it exists); fails
 * the test if it cannot. */
void itest_pool_a(const char *pool);

/* Have the teardown remove group rbd/NAME (group true) or image rbd/NAME with its snapshots
 * from site LETTER ('A', 'B', ...), groups first; best effort, what is gone already is fine. */
void itest_remove_later(char letter, bool group, const char *name);

/* An image open on a site: its pool's ioctx and its handle. */
typedef struct itest_image {
	rados_ioctx_t io;
	rbd_image_t img;
} itest_image;

/* Open POOL/NAME on SITE (at snapshot SNAP, or its head when NULL), read-only or not; fails the
 * test if it cannot. Close with itest_image_close(). */
void itest_image_open(itest_image *out, ims_site *site, const char *pool, const char *name,
		      const char *snap, bool read_only);
void itest_image_close(itest_image *im);

/* The first byte at which two open images (or snapshots) differ, UINT64_MAX if none; fails the
 * test if their sizes differ or a read fails. */
uint64_t itest_image_first_difference(rbd_image_t x, rbd_image_t y);

/* Write LEN bytes of BUF at OFF of the head of POOL/NAME on SITE; fails the test if it cannot. */
void itest_image_write(ims_site *site, const char *pool, const char *name, uint64_t off,
		       const void *buf, size_t len);

/* The value of environment variable VAR; fails the test when it is not set. */
const char *itest_env(const char *var);

/* Connect to sandbox site 'A', 'B', ... (CEPH_CONF_<L>); fails the test if it cannot. */
ims_site *itest_site(char letter);

/* The loopback address site 'A', 'B'... listens on (DIR/site-x/addr of the sandbox; 127.0.0.1
 * for a sandbox older than per-site addresses). A static buffer. */
const char *itest_site_addr(char letter);

/* A unique name with a prefix: "PREFIX-<pid>-<n>". Returns a static buffer rotated 8 ways. */
const char *itest_name(const char *prefix);

/* A fresh directory for this test binary's files, removed by itest_cleanup(). */
const char *itest_dir(void);
void itest_cleanup(void);

/* Run a shell command (printf-style); returns its exit status, -1 if it could not run. */
int itest_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The exit status of `rbd info rbd/NAME` on site a (CEPH_CONF_A): 0 when the image is there,
 * 2 when there is none. */
int itest_rbd_info(const char *name);

/* How many temporary images of imports into rbd/NAME are on site a (tmp_images_for of
 * tests/lib/sandbox.sh: by their owner objects, so that the imports of tests running beside
 * this one are not counted); -1 if that cannot be told. */
int itest_tmp_images_for(const char *name);

/* Read a whole RBD image or snapshot and compare it with a file; fails the test on a difference. */
void itest_assert_image_equals_file(ims_site *site, const char *pool, const char *image,
				    const char *snap, const char *path);

/* Write a deterministic pattern to an open image: data, zero runs, small odd writes. */
void itest_fill_pattern(const char *path, uint64_t size, unsigned seed);

#endif
