#include "itest.h"

#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/error.h"
#include "store/group.h"
#include "store/image.h"

itest_sites itest;

const char *itest_env(const char *var)
{
	const char *v = getenv(var);
	if (!v)
		fail_msg("%s is not set: run through tests/with-sandbox", var);
	return v;
}

ims_site *itest_site(char letter)
{
	char var[32], name[2] = {(char)(letter | 0x20), 0};
	snprintf(var, sizeof(var), "CEPH_CONF_%c", letter);
	const char *conf = itest_env(var);
	ims_site_opts o = IMS_SITE_OPTS_INIT;
	o.name = name;
	o.ceph_conf = conf;
	ims_site *s = NULL;
	int r = ims_site_connect(&s, &o);
	if (r < 0)
		fail_msg("cannot connect to site %s: %s", name, ims_error_last());
	return s;
}

const char *itest_site_addr(char letter)
{
	static char addr[64];
	char path[1024];
	const char *dir = getenv("IMGSTORE_SANDBOX");
	snprintf(addr, sizeof(addr), "127.0.0.1");
	if (!dir)
		return addr;
	snprintf(path, sizeof(path), "%s/site-%c/addr", dir, (char)(letter | 0x20));
	FILE *f = fopen(path, "r");
	if (f) {
		if (fscanf(f, "%63s", addr) != 1)
			snprintf(addr, sizeof(addr), "127.0.0.1");
		fclose(f);
	}
	return addr;
}

const char *itest_name(const char *prefix)
{
	static char bufs[8][128];
	static unsigned n;
	char *b = bufs[n % 8];
	snprintf(b, sizeof(bufs[0]), "%s-%d-%u", prefix, (int)getpid(), n);
	n++;
	return b;
}

static char dir[256];

const char *itest_dir(void)
{
	if (!dir[0]) {
		snprintf(dir, sizeof(dir), "/tmp/imgstore-itest-XXXXXX");
		if (!mkdtemp(dir))
			fail_msg("mkdtemp: %s", strerror(errno));
	}
	return dir;
}

void itest_cleanup(void)
{
	if (dir[0]) {
		itest_sh("rm -rf '%s'", dir);
		dir[0] = '\0';
	}
}

int itest_sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	int st = system(cmd);
	if (st == -1 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

int itest_rbd_info(const char *name)
{
	return itest_sh("rbd -c '%s' info rbd/%s >/dev/null 2>&1", getenv("CEPH_CONF_A"), name);
}

int itest_tmp_images_for(const char *name)
{
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "bash -c 'set -o pipefail; . \"$IMS_SOURCE_DIR/tests/lib/sandbox.sh\" && "
		 "tmp_images_for a \"$1\" | wc -l' _ '%s'",
		 name);
	FILE *f = popen(cmd, "r");
	int n = -1;
	if (!f)
		return -1;
	if (fscanf(f, "%d", &n) != 1)
		n = -1;
	if (pclose(f) != 0)
		return -1;
	return n;
}

void itest_image_open(itest_image *out, ims_site *site, const char *pool, const char *name,
		      const char *snap, bool read_only)
{
	assert_int_equal(ims_site_ioctx(&out->io, site, pool), 0);
	if (read_only)
		assert_int_equal(rbd_open_read_only(out->io, name, &out->img, snap), 0);
	else
		assert_int_equal(rbd_open(out->io, name, &out->img, snap), 0);
}

void itest_image_close(itest_image *im)
{
	rbd_close(im->img);
	ims_site_ioctx_close(im->io);
}

uint64_t itest_image_first_difference(rbd_image_t x, rbd_image_t y)
{
	uint64_t sx, sy, at = UINT64_MAX;
	assert_int_equal(rbd_get_size(x, &sx), 0);
	assert_int_equal(rbd_get_size(y, &sy), 0);
	assert_int_equal(sx, sy);
	const size_t chunk = 4u << 20;
	char *a = malloc(chunk), *b = malloc(chunk);
	assert_non_null(a);
	assert_non_null(b);
	for (uint64_t off = 0; off < sx && at == UINT64_MAX; off += chunk) {
		size_t n = sx - off < chunk ? (size_t)(sx - off) : chunk;
		assert_int_equal(rbd_read(x, off, n, a), (ssize_t)n);
		assert_int_equal(rbd_read(y, off, n, b), (ssize_t)n);
		if (memcmp(a, b, n) != 0) {
			size_t i = 0;
			while (a[i] == b[i])
				i++;
			at = off + i;
		}
	}
	free(a);
	free(b);
	return at;
}

void itest_image_write(ims_site *site, const char *pool, const char *name, uint64_t off,
		       const void *buf, size_t len)
{
	itest_image im;
	itest_image_open(&im, site, pool, name, NULL, false);
	assert_int_equal(rbd_write(im.img, off, len, buf), (ssize_t)len);
	itest_image_close(&im);
}

void itest_assert_image_equals_file(ims_site *site, const char *pool, const char *image,
				    const char *snap, const char *path)
{
	itest_image im;
	uint64_t size;
	struct stat st;
	itest_image_open(&im, site, pool, image, snap, true);
	assert_int_equal(rbd_get_size(im.img, &size), 0);
	int fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	assert_int_equal(fstat(fd, &st), 0);
	assert_int_equal(size, (uint64_t)st.st_size);
	const size_t chunk = 4u << 20;
	char *a = malloc(chunk), *b = malloc(chunk);
	assert_non_null(a);
	assert_non_null(b);
	for (uint64_t off = 0; off < size; off += chunk) {
		size_t n = size - off < chunk ? (size_t)(size - off) : chunk;
		assert_int_equal(rbd_read(im.img, off, n, a), (ssize_t)n);
		assert_int_equal(pread(fd, b, n, (off_t)off), (ssize_t)n);
		if (memcmp(a, b, n) != 0) {
			size_t i = 0;
			while (a[i] == b[i])
				i++;
			fail_msg("%s/%s%s%s differs from %s at byte %llu", pool, image,
				 snap ? "@" : "", snap ? snap : "", path,
				 (unsigned long long)(off + i));
		}
	}
	free(a);
	free(b);
	close(fd);
	itest_image_close(&im);
}

void itest_fill_pattern(const char *path, uint64_t size, unsigned seed)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	const size_t mb = 1u << 20;
	char *buf = malloc(mb);
	assert_non_null(buf);
	uint64_t x = seed * 2654435761u + 1;
	/* every third MiB full of data, every third zeros (a hole), every third sparse writes */
	for (uint64_t off = 0; off + mb <= size; off += mb) {
		unsigned kind = (unsigned)((off / mb + seed) % 3);
		if (kind == 1 ||
		    (off >= 8 * mb && off < 16 * mb)) /* and two whole 4 MiB objects empty */
			continue;
		if (kind == 0) {
			for (size_t i = 0; i < mb; i++) {
				x = x * 6364136223846793005ull + 1442695040888963407ull;
				buf[i] = (char)(x >> 56);
			}
			assert_int_equal(pwrite(fd, buf, mb, (off_t)off), (ssize_t)mb);
		} else {
			for (int k = 0; k < 5; k++) {
				x = x * 6364136223846793005ull + 1442695040888963407ull;
				uint64_t at = off + (x >> 20) % (mb - 700);
				snprintf(buf, 700, "record %llu of seed %u at %llu",
					 (unsigned long long)k, seed, (unsigned long long)at);
				assert_int_equal(pwrite(fd, buf, 613, (off_t)at), 613);
			}
		}
	}
	/* the last bytes are data, so a tail shorter than a block is exercised */
	assert_int_equal(pwrite(fd, "tail", 4, (off_t)(size - 4)), 4);
	free(buf);
	close(fd);
}

/* ---- the fixture ---- */

typedef struct {
	char letter;
	bool group;
	char name[128];
} later;

static later *laters;
static size_t nlaters, caplaters;

void itest_remove_later(char letter, bool group, const char *name)
{
	if (nlaters == caplaters) {
		size_t cap = caplaters ? 2 * caplaters : 32;
		later *n = realloc(laters, cap * sizeof(*n));
		assert_non_null(n);
		laters = n;
		caplaters = cap;
	}
	later *l = &laters[nlaters++];
	l->letter = letter;
	l->group = group;
	snprintf(l->name, sizeof(l->name), "%s", name);
}

void itest_create(const char *name, uint64_t size)
{
	ims_image_create_opts o = IMS_IMAGE_CREATE_OPTS_INIT;
	o.size = size;
	if (ims_image_create(itest.a, "rbd", name, &o) < 0)
		fail_msg("create %s: %s", name, ims_error_last());
	itest_remove_later('A', false, name);
}

void itest_pool_a(const char *pool)
{
	if (itest_sh("ceph -c \"$CEPH_CONF_A\" osd pool create '%s' 8 >/dev/null 2>&1 && "
		     "ceph -c \"$CEPH_CONF_A\" osd pool application enable '%s' rbd >/dev/null "
		     "2>&1",
		     pool, pool) != 0)
		fail_msg("cannot create pool %s on site a", pool);
}

int itest_setup_a(void **state)
{
	(void)state;
	itest.a = itest_site('A');
	return 0;
}

int itest_setup_ab(void **state)
{
	itest_setup_a(state);
	itest.b = itest_site('B');
	return 0;
}

int itest_setup_abc(void **state)
{
	itest_setup_ab(state);
	itest.c = itest_site('C');
	return 0;
}

static ims_site *open_site(char letter)
{
	return letter == 'A' ? itest.a : letter == 'B' ? itest.b : letter == 'C' ? itest.c : NULL;
}

static bool later_known(char letter, bool group, const char *name)
{
	for (size_t i = 0; i < nlaters; i++)
		if (laters[i].letter == letter && laters[i].group == group &&
		    strcmp(laters[i].name, name) == 0)
			return true;
	return false;
}

/* Every image and group of pool rbd on the sandbox's sites whose name carries this process's mark
 * (itest_name's "-PID-": clones, copies and restores named after them too) joins the removals,
 * whether or not the test said so: a test that fails half-way, or forgets, leaves nothing in
 * the shared sandbox (whose memstore OSDs keep every byte in memory). Those of sites this
 * process did not open are removed by the rbd command, after. */
/* The sites whose marked names are swept: site a (every test makes its images there, some
 * through the daemon alone) and those this process opened; set by sweep_own(). A site
 * frozen by another test meanwhile bounds each call to 60 s. */
static char swept[4];

static void sweep_own(void)
{
	char mark[32];
	size_t n = 0;
	snprintf(mark, sizeof(mark), "-%d-", (int)getpid());
	for (const char *c = "ABC"; *c; c++) {
		char var[] = "CEPH_CONF_X";
		var[sizeof(var) - 2] = *c;
		if (!getenv(var) || (*c != 'A' && !open_site(*c)))
			continue;
		swept[n++] = *c;
		for (int group = 0; group < 2; group++) {
			char cmd[256], line[256];
			snprintf(cmd, sizeof(cmd),
				 "timeout 60 rbd -c \"$CEPH_CONF_%c\" %sls rbd 2>/dev/null", *c,
				 group ? "group " : "");
			FILE *f = popen(cmd, "r");
			if (!f)
				continue;
			while (fgets(line, sizeof(line), f)) {
				line[strcspn(line, "\n")] = '\0';
				if (strstr(line, mark) && !later_known(*c, group, line))
					itest_remove_later(*c, group, line);
			}
			pclose(f);
		}
	}
	swept[n] = '\0';
}

/* Remove the groups, then the images, the tests left to the teardown: through the open sites
 * first (images in up to three rounds: a clone goes before its parent); what that leaves (a
 * secondary's image under this process's guard, one with group snapshots), once the sites
 * are closed, quietly through the rbd command. */
static void remove_laters_open(void)
{
	ims_image_remove_opts ro = IMS_IMAGE_REMOVE_OPTS_INIT;
	ro.purge = true;
	sweep_own();
	for (int pass = 0; pass < 4; pass++)
		for (size_t i = 0; i < nlaters; i++) {
			later *l = &laters[i];
			ims_site *site = open_site(l->letter);
			if (l->group != (pass == 0) || !site)
				continue;
			int r = l->group ? ims_group_remove(site, "rbd", l->name, true)
					 : ims_image_remove(site, "rbd", l->name, &ro);
			if (r == 0 || r == -ENOENT)
				l->letter = '\0';
		}
}

/* This process's images in the trash (an image rm without --purge moves them there), on every
 * site, removed for good. */
static void sweep_own_trash(void)
{
	for (const char *c = swept; *c; c++)
		itest_sh("timeout 60 rbd -c \"$CEPH_CONF_%c\" trash ls rbd 2>/dev/null | "
			 "awk '$2 ~ /-%d-/ {print $1}' | while read -r id; do "
			 "timeout 60 rbd -c \"$CEPH_CONF_%c\" trash rm --force --no-progress "
			 "rbd/$id "
			 ">/dev/null 2>&1; done",
			 *c, (int)getpid(), *c);
}

static void remove_laters_closed(void)
{
	/* groups, then images in up to three rounds (a clone before its parent), then the trash */
	for (int pass = 0; pass < 4; pass++)
		for (size_t i = 0; i < nlaters; i++) {
			later *l = &laters[i];
			if (l->group != (pass == 0) || !l->letter)
				continue;
			int r = l->group
					? itest_sh("timeout 60 rbd -c \"$CEPH_CONF_%c\" group rm "
						   "'rbd/%s' >/dev/null 2>&1",
						   l->letter, l->name)
					: itest_sh("timeout 60 rbd -c \"$CEPH_CONF_%c\" snap purge "
						   "'rbd/%s' >/dev/null 2>&1; "
						   "timeout 60 rbd -c \"$CEPH_CONF_%c\" rm "
						   "--no-progress 'rbd/%s' >/dev/null 2>&1",
						   l->letter, l->name, l->letter, l->name);
			if (r == 0)
				l->letter = '\0';
		}
	sweep_own_trash();
	free(laters);
	laters = NULL;
	nlaters = caplaters = 0;
}

int itest_teardown(void **state)
{
	(void)state;
	remove_laters_open();
	ims_site_close(itest.a);
	ims_site_close(itest.b);
	ims_site_close(itest.c);
	itest.a = itest.b = itest.c = NULL;
	remove_laters_closed();
	itest_cleanup();
	return 0;
}
