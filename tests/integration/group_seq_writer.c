/*
 * group_seq_writer CEPH_CONF POOL DISK1 [DISK2]: writes like a VM with two disks (or one), for
 * the consistency group and failover tests. It keeps both images open and, for N = 1, 2, ...:
 * writes N (8 bytes, little endian, at the start of a 4 KiB block) at offset 0 of DISK1, waits for
 * the write to complete, then the same at offset 0 of DISK2; every 8th N it also writes 64 KiB of
 * noise at a pseudo-random offset of each disk, so the cuts carry more than the counters.
 * At any instant DISK1 holds N or N+1 when DISK2 holds N: a crash-consistent cut of both must
 * show seq1 - seq2 in {0, 1}.
 *
 * Runs until SIGTERM or SIGINT, then prints the last N on stdout; exits 1 if a write failed
 * (writes must block while a group snapshot is taken, never fail), printing the N that failed:
 * every N before it was acknowledged (a fenced writer's last acknowledged write is N - 1).
 */
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <rados/librados.h>
#include <rbd/librbd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static int write_seq(rbd_image_t img, uint64_t n, char *block)
{
	for (int i = 0; i < 8; i++)
		block[i] = (char)(n >> (8 * i));
	ssize_t w = rbd_write(img, 0, 4096, block);
	return w == 4096 ? 0 : (int)(w < 0 ? w : -EIO);
}

int main(int argc, char **argv)
{
	rados_t cluster;
	rados_ioctx_t io;
	rbd_image_t d1, d2 = NULL;
	static char block[4096], noise[65536];
	uint64_t n = 0, size = 0, x = 88172645463325252ull;
	int r;

	if (argc != 4 && argc != 5) {
		fprintf(stderr, "usage: %s CEPH_CONF POOL DISK1 [DISK2]\n", argv[0]);
		return 2;
	}
	bool two = argc == 5;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	if ((r = rados_create(&cluster, NULL)) < 0 ||
	    (r = rados_conf_read_file(cluster, argv[1])) < 0 || (r = rados_connect(cluster)) < 0 ||
	    (r = rados_ioctx_create(cluster, argv[2], &io)) < 0) {
		fprintf(stderr, "group_seq_writer: cannot connect: %s\n", strerror(-r));
		return 1;
	}
	if ((r = rbd_open(io, argv[3], &d1, NULL)) < 0 ||
	    (two && (r = rbd_open(io, argv[4], &d2, NULL)) < 0)) {
		fprintf(stderr, "group_seq_writer: cannot open the disks: %s\n", strerror(-r));
		return 1;
	}
	rbd_get_size(d1, &size);
	while (!stop) {
		n++;
		if ((r = write_seq(d1, n, block)) < 0 ||
		    (two && (r = write_seq(d2, n, block)) < 0)) {
			fprintf(stderr, "group_seq_writer: write %llu failed: %s\n",
				(unsigned long long)n, strerror(-r));
			printf("%llu\n", (unsigned long long)n);
			return 1;
		}
		if (n % 8 == 0 && size > (1u << 20)) {
			for (size_t i = 0; i < sizeof(noise); i += 8) {
				x ^= x << 13;
				x ^= x >> 7;
				x ^= x << 17;
				memcpy(noise + i, &x, 8);
			}
			uint64_t off = (1u << 20) +
				       (x % ((size - (1u << 20)) / sizeof(noise))) * sizeof(noise);
			if (rbd_write(d1, off, sizeof(noise), noise) != (ssize_t)sizeof(noise) ||
			    (two &&
			     rbd_write(d2, off, sizeof(noise), noise) != (ssize_t)sizeof(noise))) {
				fprintf(stderr, "group_seq_writer: a noise write failed\n");
				return 1;
			}
		}
		if (n % 64 == 0) {
			struct timespec ts = {0, 2000000}; /* a VM's pace, not a benchmark's */
			nanosleep(&ts, NULL);
		}
	}
	printf("%llu\n", (unsigned long long)n);
	rbd_close(d1);
	if (two)
		rbd_close(d2);
	rados_ioctx_destroy(io);
	rados_shutdown(cluster);
	return 0;
}
