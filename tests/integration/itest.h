/* Helpers of the integration tests: sites from the sandbox env, temp dirs, shell commands. */
#ifndef IMS_TESTS_ITEST_H
#define IMS_TESTS_ITEST_H

#include <stddef.h>
#include <stdint.h>

#include "store/site.h"

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

/* Read a whole RBD image or snapshot and compare it with a file; fails the test on a difference. */
void itest_assert_image_equals_file(ims_site *site, const char *pool, const char *image,
				    const char *snap, const char *path);

/* Write a deterministic pattern to an open image: data, zero runs, small odd writes. */
void itest_fill_pattern(const char *path, uint64_t size, unsigned seed);

#endif
