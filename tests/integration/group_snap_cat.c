/*
 * group_snap_cat CEPH_CONF POOL IMAGE GROUP SNAP: writes the bytes of IMAGE at its snapshot of
 * the group snapshot GROUP@SNAP (librbd's group namespace, which `rbd export` cannot name) to
 * stdout, for the tests that compare a group snapshot's members across sites (| sha256sum).
 * Exits 1 if the image holds no snapshot of that group snapshot.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

/* The id of @p img's snapshot of group snapshot @p group@@p snap; 0 if none. */
static uint64_t member_snap(rbd_image_t img, const char *group, const char *snap)
{
	rbd_snap_info_t v[256];
	int max = 256, n = rbd_snap_list(img, v, &max);
	uint64_t id = 0;
	for (int i = 0; i < n && !id; i++) {
		rbd_snap_namespace_type_t t;
		rbd_snap_group_namespace_t g;
		if (rbd_snap_get_namespace_type(img, v[i].id, &t) < 0 ||
		    t != RBD_SNAP_NAMESPACE_TYPE_GROUP)
			continue;
		memset(&g, 0, sizeof(g));
		if (rbd_snap_get_group_namespace(img, v[i].id, &g, sizeof(g)) < 0)
			continue;
		if (g.group_name && g.group_snap_name && strcmp(g.group_name, group) == 0 &&
		    strcmp(g.group_snap_name, snap) == 0)
			id = v[i].id;
		rbd_snap_group_namespace_cleanup(&g, sizeof(g));
	}
	if (n > 0)
		rbd_snap_list_end(v);
	return id;
}

int main(int argc, char **argv)
{
	rados_t cluster;
	rados_ioctx_t io;
	rbd_image_t img;
	static char buf[1 << 20];
	uint64_t size = 0, id;
	int r;

	if (argc != 6) {
		fprintf(stderr, "usage: %s CEPH_CONF POOL IMAGE GROUP SNAP\n", argv[0]);
		return 2;
	}
	if ((r = rados_create(&cluster, NULL)) < 0 ||
	    (r = rados_conf_read_file(cluster, argv[1])) < 0 || (r = rados_connect(cluster)) < 0 ||
	    (r = rados_ioctx_create(cluster, argv[2], &io)) < 0) {
		fprintf(stderr, "group_snap_cat: cannot connect: %s\n", strerror(-r));
		return 1;
	}
	if ((r = rbd_open_read_only(io, argv[3], &img, NULL)) < 0) {
		fprintf(stderr, "group_snap_cat: cannot open %s: %s\n", argv[3], strerror(-r));
		return 1;
	}
	if (!(id = member_snap(img, argv[4], argv[5]))) {
		fprintf(stderr, "group_snap_cat: %s has no snapshot of %s@%s\n", argv[3], argv[4],
			argv[5]);
		return 1;
	}
	if ((r = rbd_snap_set_by_id(img, id)) < 0 || (r = rbd_get_size(img, &size)) < 0) {
		fprintf(stderr, "group_snap_cat: cannot read %s at %s@%s: %s\n", argv[3], argv[4],
			argv[5], strerror(-r));
		return 1;
	}
	for (uint64_t off = 0; off < size;) {
		size_t len = size - off < sizeof(buf) ? (size_t)(size - off) : sizeof(buf);
		ssize_t got = rbd_read(img, off, len, buf);
		if (got < 0 || fwrite(buf, 1, (size_t)got, stdout) != (size_t)got) {
			fprintf(stderr, "group_snap_cat: read at %llu failed\n",
				(unsigned long long)off);
			return 1;
		}
		if (got == 0)
			break;
		off += (uint64_t)got;
	}
	rbd_close(img);
	rados_ioctx_destroy(io);
	rados_shutdown(cluster);
	return fflush(stdout) == 0 ? 0 : 1;
}
