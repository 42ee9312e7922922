/*
 * store/format_qcow2.c: a reader of qcow2 images (versions 2 and 3), written from the qcow2
 * specification (docs/interop/qcow2.txt in QEMU).
 *
 * Only the active layer is read: no snapshots, no refcounts (a reader does not need them),
 * and no backing file, external data file or legacy AES encryption (refused at open). A
 * LUKS-encrypted image (crypt_method 2) opens with its passphrase (format_luks.c) and each
 * 512-byte sector of its data clusters is decrypted as it is read. Every offset taken
 * from the file is checked before it is used: tables lie inside the file and not in the
 * header cluster, the L1 table or the refcount table, and data clusters are not L2 tables.
 * The L1 table is loaded whole (at most 32 MiB, as QEMU caps it, and never larger than the
 * file); L2 tables go through a small cache.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>
#include <zstd.h>

#include "common/error.h"
#include "store/format_internal.h"

#define QCOW2_MAGIC	  0x514649fbu
#define V2_HEADER_BYTES	  72u
#define V3_HEADER_BYTES	  104u
#define HEADER_READ_BYTES 112u

#define INCOMPAT_DIRTY	     (UINT64_C(1) << 0)
#define INCOMPAT_CORRUPT     (UINT64_C(1) << 1)
#define INCOMPAT_DATA_FILE   (UINT64_C(1) << 2)
#define INCOMPAT_COMPRESSION (UINT64_C(1) << 3)
#define INCOMPAT_EXTENDED_L2 (UINT64_C(1) << 4)
#define INCOMPAT_KNOWN	     UINT64_C(0x1f)

#define EXT_END	      0u
#define EXT_DATA_FILE 0x44415441u
#define EXT_CRYPTO    0x0537be77u /* the offset and length of the LUKS header */

#define CRYPT_AES  1
#define CRYPT_LUKS 2

#define L1E_OFFSET_MASK UINT64_C(0x00fffffffffffe00)
#define L2E_OFFSET_MASK UINT64_C(0x00fffffffffffe00)
#define L2E_COMPRESSED	(UINT64_C(1) << 62)
#define L2E_ZERO	UINT64_C(1)

#define MAX_L1_ENTRIES ((uint64_t)IMS_FORMAT__MAX_TABLE_BYTES / 8)
#define CACHE_BYTES    (4u << 20)

#define COMPRESSION_DEFLATE 0
#define COMPRESSION_ZSTD    1

typedef struct {
	ims_format_reader base;
	unsigned cluster_bits;
	uint64_t cluster_size;
	unsigned l2_bits;     /* log2 of the entries of an L2 table */
	unsigned entry_bytes; /* 8, or 16 with extended L2 entries */
	bool extended_l2;
	unsigned compression;

	uint64_t *l1; /* host offsets of the L2 tables, 0 where none */
	uint64_t l1_entries;
	uint64_t l1_off, l1_bytes; /* the whole table in the file */
	uint64_t rt_off, rt_bytes; /* the refcount table */
	ims_format__offsets l2s;   /* the L2 tables, sorted */
	ims_format__cache cache;

	/* compressed clusters: descriptor fields, and the last one decompressed */
	unsigned csize_shift;
	uint64_t coffset_mask, csize_mask;
	uint8_t *cbuf;	 /* compressed bytes, up to 2 clusters */
	uint8_t *dbuf;	 /* the decompressed cluster */
	uint64_t dentry; /* the L2 entry dbuf holds, 0 for none */
	z_stream z;
	bool z_ready;
	ZSTD_DCtx *zstd;

	/* LUKS: the opened key, its header's area in the file, a buffer of whole sectors */
	ims_format__luks *luks;
	uint64_t luks_off, luks_len;
	uint8_t *sbuf;
} qcow2;

#define SBUF_BYTES (1u << 20)

static const char *unit_name(const qcow2 *q, uint64_t off, uint64_t len)
{
	if (ims_format__overlap(off, len, 0, q->cluster_size))
		return "the header";
	if (ims_format__overlap(off, len, q->l1_off, q->l1_bytes))
		return "the L1 table";
	if (ims_format__overlap(off, len, q->rt_off, q->rt_bytes))
		return "the refcount table";
	if (ims_format__overlap(off, len, q->luks_off, q->luks_len))
		return "the encryption header";
	return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* lookup */

static int check_data(const qcow2 *q, uint64_t guest, uint64_t host)
{
	const char *what;

	if (host & (q->cluster_size - 1))
		return ims_error_set(-EINVAL,
				     "qcow2: guest offset %" PRIu64 " maps to unaligned host "
				     "offset 0x%" PRIx64,
				     guest, host);
	if (host >= q->base.src.size)
		return ims_error_set(-EINVAL,
				     "qcow2: guest offset %" PRIu64 " maps to host offset "
				     "0x%" PRIx64 ", past the end of the file (%" PRIu64 " bytes)",
				     guest, host, q->base.src.size);
	what = unit_name(q, host, q->cluster_size);
	if (!what && ims_format__offsets_any_in(&q->l2s, host, host))
		what = "an L2 table";
	if (what)
		return ims_error_set(-EINVAL,
				     "qcow2: guest offset %" PRIu64 " maps to host offset "
				     "0x%" PRIx64 ", into %s",
				     guest, host, what);
	return 0;
}

static void compressed_range(const qcow2 *q, uint64_t entry, uint64_t *off, uint64_t *len,
			     uint64_t *sectors)
{
	uint64_t n = ((entry >> q->csize_shift) & q->csize_mask) + 1;

	*off = entry & q->coffset_mask;
	*sectors = n;
	*len = n * 512 - (*off & 511);
}

static int check_compressed(const qcow2 *q, uint64_t guest, uint64_t entry)
{
	uint64_t off, len, sectors, size = q->base.src.size;
	const char *what;

	compressed_range(q, entry, &off, &len, &sectors);
	/*
	 * The length is known to the sector: the last sector may run past the end of the file
	 * (QEMU does not pad it), but it must start inside.
	 */
	if (off >= size || (off & ~511ull) + (sectors - 1) * 512 >= size)
		return ims_error_set(-EINVAL,
				     "qcow2: compressed cluster at guest offset %" PRIu64
				     " (host offset 0x%" PRIx64 ", %" PRIu64 " bytes) passes the "
				     "end of the file (%" PRIu64 " bytes)",
				     guest, off, len, size);
	what = unit_name(q, off, len);
	if (!what &&
	    ims_format__offsets_any_in(&q->l2s, off & ~(q->cluster_size - 1), off + len - 1))
		what = "an L2 table";
	if (what)
		return ims_error_set(-EINVAL,
				     "qcow2: compressed cluster at guest offset %" PRIu64
				     " (host offset 0x%" PRIx64 ") lies in %s",
				     guest, off, what);
	return 0;
}

static int locate(ims_format_reader *base, uint64_t off, ims_format__loc *out)
{
	qcow2 *q = (qcow2 *)base;
	uint64_t cs = q->cluster_size, cidx = off >> q->cluster_bits;
	uint64_t l1i = cidx >> q->l2_bits, in_cluster = off & (cs - 1);
	size_t l2i = (size_t)(cidx & ((1ull << q->l2_bits) - 1));
	uint64_t entry, bitmap = 0, host;
	const uint8_t *t;
	int r;

	memset(out, 0, sizeof(*out));
	if (!q->l1[l1i]) {
		out->type = IMS_FORMAT__ZERO;
		out->len = ((l1i + 1) << (q->cluster_bits + q->l2_bits)) - off;
		out->no_table = true;
		return 0;
	}
	r = ims_format__cache_get(&q->cache, &q->base.src, q->l1[l1i], "qcow2: L2 table", &t);
	if (r < 0)
		return r;
	entry = ims_format__be64(t + l2i * q->entry_bytes);
	if (q->extended_l2)
		bitmap = ims_format__be64(t + l2i * q->entry_bytes + 8);
	out->len = cs - in_cluster;

	if (entry & L2E_COMPRESSED) {
		if (q->luks) /* qemu never writes them: their bytes would not be encrypted */
			return ims_error_set(-EINVAL,
					     "qcow2: compressed cluster at guest offset %" PRIu64
					     " in an encrypted image",
					     off);
		r = check_compressed(q, off, entry);
		if (r < 0)
			return r;
		out->type = IMS_FORMAT__COMPRESSED;
		out->key = entry;
		return 0;
	}
	host = entry & L2E_OFFSET_MASK;
	if (!q->extended_l2) {
		if ((entry & L2E_ZERO) || !host) {
			out->type = IMS_FORMAT__ZERO;
			return 0;
		}
	} else {
		uint32_t alloc = (uint32_t)bitmap, zero = (uint32_t)(bitmap >> 32);
		unsigned sc_bits = q->cluster_bits - 5;
		unsigned sc = (unsigned)(in_cluster >> sc_bits);

		if (alloc & zero)
			return ims_error_set(-EINVAL,
					     "qcow2: the L2 entry of guest offset %" PRIu64
					     " marks subclusters both allocated and zero (bitmap "
					     "0x%016" PRIx64 ")",
					     off, bitmap);
		if (!host && alloc)
			return ims_error_set(
				-EINVAL,
				"qcow2: the L2 entry of guest offset %" PRIu64
				" allocates subclusters of no cluster (bitmap 0x%016" PRIx64 ")",
				off, bitmap);
		out->len = (1ull << sc_bits) - (in_cluster & ((1ull << sc_bits) - 1));
		/* Neither allocated nor zero reads from the backing file: there is none. */
		if ((zero >> sc & 1) || !(alloc >> sc & 1)) {
			out->type = IMS_FORMAT__ZERO;
			return 0;
		}
	}
	r = check_data(q, off, host);
	if (r < 0)
		return r;
	out->type = IMS_FORMAT__DATA;
	out->host = host + in_cluster;
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* compressed clusters */

static int inflate_deflate(qcow2 *q, size_t in_len)
{
	int ret;

	if (!q->z_ready) {
		memset(&q->z, 0, sizeof(q->z));
		if (inflateInit2(&q->z, -15) != Z_OK)
			return ims_error_set(-ENOMEM, "qcow2: cannot set up zlib");
		q->z_ready = true;
	} else if (inflateReset(&q->z) != Z_OK) {
		return ims_error_set(-EIO, "qcow2: cannot reset zlib");
	}
	q->z.next_in = q->cbuf;
	q->z.avail_in = (uInt)in_len;
	q->z.next_out = q->dbuf;
	q->z.avail_out = (uInt)q->cluster_size;
	ret = inflate(&q->z, Z_FINISH);
	/* The input ends at a sector boundary, past the stream: a full output is what counts. */
	if ((ret == Z_STREAM_END || ret == Z_BUF_ERROR) && q->z.avail_out == 0)
		return 0;
	return -EINVAL;
}

static int inflate_zstd(qcow2 *q, size_t in_len)
{
	ZSTD_inBuffer in = {q->cbuf, in_len, 0};
	ZSTD_outBuffer out = {q->dbuf, (size_t)q->cluster_size, 0};

	if (!q->zstd) {
		q->zstd = ZSTD_createDCtx();
		if (!q->zstd)
			return ims_error_set(-ENOMEM, "qcow2: cannot set up zstd");
		/* A cluster is at most 2 MiB: refuse frames that ask for a larger window. */
		if (ZSTD_isError(ZSTD_DCtx_setParameter(q->zstd, ZSTD_d_windowLogMax, 22)))
			return ims_error_set(-EIO, "qcow2: cannot set up zstd");
	} else {
		ZSTD_DCtx_reset(q->zstd, ZSTD_reset_session_only);
	}
	while (out.pos < out.size) {
		size_t in_pos = in.pos, out_pos = out.pos;
		size_t ret = ZSTD_decompressStream(q->zstd, &out, &in);
		if (ZSTD_isError(ret))
			return -EINVAL;
		if (in.pos == in_pos && out.pos == out_pos)
			return -EINVAL; /* the input ran out */
	}
	return 0;
}

static int decompress(qcow2 *q, uint64_t guest, uint64_t entry)
{
	uint64_t off, len, sectors;
	size_t got;
	int r;

	if (q->dentry == entry)
		return 0;
	q->dentry = 0;
	if (!q->cbuf) {
		/* the largest compressed length the descriptor can say */
		q->cbuf = malloc((size_t)(q->csize_mask + 1) * 512);
		q->dbuf = malloc((size_t)q->cluster_size);
		if (!q->cbuf || !q->dbuf)
			return ims_error_set(-ENOMEM,
					     "qcow2: out of memory for a compressed cluster");
	}
	compressed_range(q, entry, &off, &len, &sectors);
	r = ims_format__pread(&q->base.src, q->cbuf, (size_t)len, off, &got);
	if (r < 0)
		return r;
	r = q->compression == COMPRESSION_ZSTD ? inflate_zstd(q, got) : inflate_deflate(q, got);
	if (r == -EINVAL)
		return ims_error_set(-EINVAL,
				     "qcow2: compressed cluster at guest offset %" PRIu64
				     " (host offset 0x%" PRIx64
				     ") does not decompress (%s) to %" PRIu64 " bytes",
				     guest, off,
				     q->compression == COMPRESSION_ZSTD ? "zstd" : "deflate",
				     q->cluster_size);
	if (r < 0)
		return r;
	q->dentry = entry;
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* ops */

static bool has_l2(const ims_format_reader *base, uint64_t i)
{
	return ((const qcow2 *)base)->l1[i] != 0;
}

static int decompressed(ims_format_reader *base, uint64_t guest, uint64_t entry,
			const uint8_t **unit, uint64_t *unit_bytes)
{
	qcow2 *q = (qcow2 *)base;
	int r = decompress(q, guest, entry);
	*unit = q->dbuf;
	*unit_bytes = q->cluster_size;
	return r;
}

static const ims_format__sparse_ops qcow2_sparse = {
	.locate = locate,
	.decompress = decompressed,
	.has_table = has_l2,
};

/*
 * ims_format__ops.read of an encrypted image: the data units in whole sectors, decrypted.
 * The IV numbers each sector by its HOST offset / 512 (QEMU sets crypt_physical_offset for
 * LUKS in qcow2; checked against qemu-img convert, which the guest offset does not match);
 * zeros as they are. Units are whole sectors (clusters and subclusters of 512 bytes or
 * more) and the virtual size is whole sectors (checked at open).
 */
static int qcow2_read_luks(qcow2 *q, uint64_t offset, uint8_t *buf, size_t len)
{
	ims_format__loc l, n;
	int r;

	while (len) {
		uint64_t take, head, span, sector0;
		size_t got;

		r = locate(&q->base, offset, &l);
		if (r < 0)
			return r;
		take = l.len < len ? l.len : len;
		if (l.type == IMS_FORMAT__ZERO) {
			memset(buf, 0, (size_t)take);
			goto next;
		}
		/* DATA (compressed ones are refused by locate): the units that follow each
		 * other in the file too, up to the buffer */
		head = offset & 511;
		while (take < len && head + take < SBUF_BYTES - 512) {
			r = locate(&q->base, offset + take, &n);
			if (r < 0)
				return r;
			if (n.type != IMS_FORMAT__DATA || n.host != l.host + take)
				break;
			take += n.len < len - take ? n.len : len - take;
		}
		if (head + take > SBUF_BYTES - 512)
			take = SBUF_BYTES - 512 - head;
		span = (head + take + 511) & ~511ull;
		sector0 = (l.host - head) / 512;
		r = ims_format__pread(&q->base.src, q->sbuf, (size_t)span, l.host - head, &got);
		if (r < 0)
			return r;
		memset(q->sbuf + got, 0, (size_t)(span - got));
		r = ims_format__luks_decrypt(q->luks, sector0, q->sbuf, (size_t)span);
		if (r < 0)
			return r;
		memcpy(buf, q->sbuf + head, (size_t)take);
	next:
		offset += take;
		buf += take;
		len -= (size_t)take;
	}
	return 0;
}

static int qcow2_read(ims_format_reader *base, uint64_t offset, uint8_t *buf, size_t len)
{
	qcow2 *q = (qcow2 *)base;

	if (q->luks)
		return qcow2_read_luks(q, offset, buf, len);
	return ims_format__sparse_read(base, offset, buf, len);
}

static void qcow2_close(ims_format_reader *base)
{
	qcow2 *q = (qcow2 *)base;

	ims_format__luks_free(q->luks);
	free(q->sbuf);

	ims_format__cache_free(&q->cache);
	free(q->l1);
	free(q->l2s.v);
	free(q->cbuf);
	free(q->dbuf);
	if (q->z_ready)
		inflateEnd(&q->z);
	ZSTD_freeDCtx(q->zstd);
	free(q);
}

static const ims_format__ops qcow2_ops = {
	.map = ims_format__sparse_map,
	.read = qcow2_read,
	.close = qcow2_close,
};

/* ---------------------------------------------------------------------------------------- */
/* open */

/* Copy at most @p len bytes of a name from the file, printable, for a message. */
static void printable(char *dst, size_t dst_len, const uint8_t *s, size_t len)
{
	size_t i, n = 0;

	for (i = 0; i < len && s[i] && n + 1 < dst_len; i++)
		dst[n++] = s[i] >= 0x20 && s[i] < 0x7f && s[i] != '\'' ? (char)s[i] : '?';
	dst[n] = '\0';
}

static void bit_list(char *buf, size_t len, uint64_t bits)
{
	size_t n = 0;

	buf[0] = '\0';
	for (unsigned i = 0; i < 64 && n < len; i++)
		if (bits >> i & 1)
			n += (size_t)snprintf(buf + n, len - n, "%s%u", n ? ", " : "", i);
}

/*
 * The header extension of @p want among those from @p ext_off to @p end: 1 with its data's
 * offset and length, 0 if there is none (or the list is cut short), or a read error.
 */
static int find_ext(const ims_source *src, uint64_t ext_off, uint64_t end, uint32_t want,
		    uint64_t *data_off, uint32_t *data_len)
{
	uint8_t h[8];
	int r;

	while (ext_off + 8 <= end) {
		uint32_t type, len;

		r = ims_format__pread_exact(src, h, 8, ext_off, "qcow2: header extension");
		if (r < 0)
			return r;
		type = ims_format__be32(h);
		len = ims_format__be32(h + 4);
		if (type == EXT_END || len > end - ext_off - 8)
			return 0;
		if (type == want) {
			*data_off = ext_off + 8;
			*data_len = len;
			return 1;
		}
		ext_off += 8 + (((uint64_t)len + 7) & ~7ull);
	}
	return 0;
}

/* The external data file's name from the header extensions, if they hold a readable one. */
static void data_file_name(const ims_source *src, uint64_t ext_off, uint64_t end, char *name,
			   size_t name_len)
{
	uint8_t s[256];
	uint64_t off;
	uint32_t len;

	name[0] = '\0';
	if (find_ext(src, ext_off, end, EXT_DATA_FILE, &off, &len) == 1) {
		size_t n = len < sizeof(s) ? len : sizeof(s);
		if (ims_format__pread_exact(src, s, n, off, "qcow2: data file name") == 0)
			printable(name, name_len, s, n);
	}
}

static int check_header(const ims_source *src, const uint8_t *h, size_t got, uint32_t version,
			const ims_format_secret *secret, uint64_t *incompat_out,
			unsigned *compression_out, uint32_t *header_len_out)
{
	uint64_t size = src->size, cs, incompat = 0, backing_off;
	uint32_t cluster_bits, header_len = V2_HEADER_BYTES, crypt, backing_len;
	unsigned compression = COMPRESSION_DEFLATE;
	char name[1024], bits[200];
	uint8_t raw[1023];

	cluster_bits = ims_format__be32(h + 20);
	if (version >= 3) {
		if (got < V3_HEADER_BYTES)
			return ims_error_set(-EINVAL,
					     "qcow2: truncated header (%zu bytes, version 3 "
					     "needs %u)",
					     got, V3_HEADER_BYTES);
		incompat = ims_format__be64(h + 72);
		header_len = ims_format__be32(h + 100);
		if (header_len < V3_HEADER_BYTES)
			return ims_error_set(-EINVAL,
					     "qcow2: header length %" PRIu32 " is below %u",
					     header_len, V3_HEADER_BYTES);
		if (header_len > size)
			return ims_error_set(-EINVAL,
					     "qcow2: truncated header (%" PRIu64 " bytes, the "
					     "header says %" PRIu32 ")",
					     size, header_len);
	}
	if (cluster_bits < 9 || cluster_bits > 21)
		return ims_error_set(-EINVAL, "qcow2: cluster_bits %" PRIu32 " is outside 9..21",
				     cluster_bits);
	cs = 1ull << cluster_bits;
	if (header_len > cs)
		return ims_error_set(-EINVAL,
				     "qcow2: header length %" PRIu32 " exceeds the cluster "
				     "size %" PRIu64,
				     header_len, cs);

	if (incompat & ~INCOMPAT_KNOWN) {
		bit_list(bits, sizeof(bits), (uint64_t)(incompat & ~INCOMPAT_KNOWN));
		return ims_error_set(-ENOTSUP,
				     "qcow2: unknown incompatible feature bits %s "
				     "(0x%" PRIx64 "); imgstore cannot read this image",
				     bits, (uint64_t)(incompat & ~INCOMPAT_KNOWN));
	}
	if (incompat & INCOMPAT_CORRUPT)
		return ims_error_set(-EINVAL, "qcow2: the image is marked corrupt; check and "
					      "repair it with 'qemu-img check -r all' first");
	if (incompat & INCOMPAT_DATA_FILE) {
		data_file_name(src, header_len, cs < size ? cs : size, name, sizeof(name));
		if (name[0])
			return ims_error_set(-ENOTSUP,
					     "qcow2: the image keeps its data in an external "
					     "file '%s', which imgstore does not support",
					     name);
		return ims_error_set(-ENOTSUP, "qcow2: the image keeps its data in an external "
					       "file, which imgstore does not support");
	}
	crypt = ims_format__be32(h + 32);
	if (crypt == CRYPT_LUKS && !(secret && secret->passphrase))
		return ims_error_set(-EINVAL,
				     "qcow2: the image is LUKS-encrypted; give --passphrase-file");
	if (crypt && crypt != CRYPT_LUKS)
		return ims_error_set(
			-ENOTSUP,
			"qcow2: encrypted images are not supported (crypt_method %" PRIu32
			", %s); LUKS-encrypted ones are",
			crypt, crypt == CRYPT_AES ? "AES" : "unknown");
	if (!crypt && secret && secret->passphrase)
		return ims_error_set(-EINVAL, "a passphrase was given but the image (qcow2) is "
					      "not encrypted");
	backing_off = ims_format__be64(h + 8);
	backing_len = ims_format__be32(h + 16);
	if (backing_off && backing_len) {
		if (backing_len <= sizeof(raw) &&
		    ims_format__in_file(backing_off, backing_len, size) &&
		    ims_format__pread_exact(src, raw, backing_len, backing_off, "qcow2: name") ==
			    0) {
			printable(name, sizeof(name), raw, backing_len);
			return ims_error_set(-ENOTSUP,
					     "qcow2: the image has a backing file '%s'; "
					     "imgstore imports standalone images only (flatten it "
					     "with qemu-img convert)",
					     name);
		}
		return ims_error_set(-ENOTSUP,
				     "qcow2: the image has a backing file (its name is "
				     "unreadable); imgstore imports standalone images only");
	}
	if (version >= 3 && ims_format__be32(h + 96) > 6)
		return ims_error_set(-EINVAL, "qcow2: refcount_order %" PRIu32 " is above 6",
				     ims_format__be32(h + 96));
	if (version >= 3 && header_len > V3_HEADER_BYTES && got > V3_HEADER_BYTES)
		compression = h[V3_HEADER_BYTES];
	if (incompat & INCOMPAT_COMPRESSION) {
		if (header_len <= V3_HEADER_BYTES)
			return ims_error_set(-EINVAL,
					     "qcow2: the compression type feature is set but "
					     "the header has no compression type field");
		if (compression == COMPRESSION_DEFLATE)
			return ims_error_set(-EINVAL, "qcow2: the compression type feature is set "
						      "with compression type 0 (deflate)");
		if (compression != COMPRESSION_ZSTD)
			return ims_error_set(-ENOTSUP, "qcow2: unknown compression type %u",
					     compression);
	} else if (compression != COMPRESSION_DEFLATE) {
		return ims_error_set(-EINVAL,
				     "qcow2: compression type %u without the compression "
				     "type feature bit",
				     compression);
	}
	*incompat_out = incompat;
	*compression_out = compression;
	*header_len_out = header_len;
	return 0;
}

static int load_l1(qcow2 *q)
{
	uint64_t i, cs = q->cluster_size, size = q->base.src.size;
	const char *what;
	uint8_t *raw;
	int r;

	/* Validated against the file and capped at 32 MiB before this allocation. */
	q->l1 = malloc(q->l1_entries ? (size_t)q->l1_entries * 8 : 1);
	q->l2s.v = malloc(q->l1_entries ? (size_t)q->l1_entries * 8 : 1);
	if (!q->l1 || !q->l2s.v)
		return ims_error_set(-ENOMEM,
				     "qcow2: out of memory for an L1 table of %" PRIu64 " entries",
				     q->l1_entries);
	raw = (uint8_t *)q->l1;
	r = ims_format__pread_exact(&q->base.src, raw, (size_t)q->l1_entries * 8, q->l1_off,
				    "qcow2: L1 table");
	if (r < 0)
		return r;
	for (i = 0; i < q->l1_entries; i++) {
		uint64_t off = ims_format__be64(raw + i * 8) & L1E_OFFSET_MASK;

		q->l1[i] = off;
		if (!off)
			continue;
		if (off & (cs - 1))
			return ims_error_set(-EINVAL,
					     "qcow2: L1 entry %" PRIu64 " has an unaligned "
					     "L2 table offset 0x%" PRIx64,
					     i, off);
		if (!ims_format__in_file(off, cs, size))
			return ims_error_set(-EINVAL,
					     "qcow2: L1 entry %" PRIu64 " puts an L2 table "
					     "at 0x%" PRIx64 ", past the end of the file (%" PRIu64
					     " bytes)",
					     i, off, size);
		what = unit_name(q, off, cs);
		if (what)
			return ims_error_set(-EINVAL,
					     "qcow2: L1 entry %" PRIu64 " puts an L2 table "
					     "at 0x%" PRIx64 ", into %s",
					     i, off, what);
		q->l2s.v[q->l2s.n++] = off;
	}
	ims_format__offsets_sort(&q->l2s);
	return 0;
}

/* The header's first bytes: long enough, the magic, a version this reader knows. */
static int read_header(const ims_source *src, uint8_t h[HEADER_READ_BYTES], size_t *got,
		       uint32_t *version)
{
	int r;

	memset(h, 0, HEADER_READ_BYTES);
	r = ims_format__pread(src, h, HEADER_READ_BYTES, 0, got);
	if (r < 0)
		return r;
	if (*got < V2_HEADER_BYTES)
		return ims_error_set(-EINVAL, "qcow2: truncated header (%zu bytes, need %u)", *got,
				     V2_HEADER_BYTES);
	if (ims_format__be32(h) != QCOW2_MAGIC)
		return ims_error_set(-EINVAL, "qcow2: bad magic");
	*version = ims_format__be32(h + 4);
	if (*version != 2 && *version != 3)
		return ims_error_set(-ENOTSUP,
				     "qcow2: version %" PRIu32 " is not supported (2 and 3 "
				     "are)",
				     *version);
	return 0;
}

/* Sizes: the L1 table must cover the virtual size and stay within 32 MiB. */
static int check_sizes(qcow2 *q, const uint8_t *h)
{
	uint64_t vsize = ims_format__be64(h + 24), cs = q->cluster_size, l1_size;
	unsigned shift = q->cluster_bits + q->l2_bits;
	uint64_t range = 1ull << shift;

	if (vsize > (MAX_L1_ENTRIES << shift))
		return ims_error_set(-EINVAL,
				     "qcow2: virtual size %" PRIu64 " is too large for %" PRIu64
				     "-byte clusters (the L1 table would pass 32 MiB)",
				     vsize, cs);
	q->base.virtual_size = vsize;
	q->l1_entries = vsize / range + (vsize % range != 0);
	l1_size = ims_format__be32(h + 36);
	if (l1_size > MAX_L1_ENTRIES)
		return ims_error_set(-EINVAL,
				     "qcow2: L1 table of %" PRIu64 " entries is larger than "
				     "32 MiB",
				     l1_size);
	if (l1_size < q->l1_entries)
		return ims_error_set(-EINVAL,
				     "qcow2: L1 table of %" PRIu64 " entries is too small for "
				     "the virtual size %" PRIu64 " (needs %" PRIu64 ")",
				     l1_size, vsize, q->l1_entries);
	q->l1_off = ims_format__be64(h + 40);
	q->l1_bytes = l1_size * 8;
	q->rt_off = ims_format__be64(h + 48);
	q->rt_bytes = (uint64_t)ims_format__be32(h + 56) * cs;
	return 0;
}

/* The L1 and refcount tables lie in the file, aligned, and not in the header or each other. */
static int check_tables(const qcow2 *q)
{
	uint64_t cs = q->cluster_size, size = q->base.src.size;
	const char *what;

	if (q->l1_bytes) {
		if ((q->l1_off & (cs - 1)) || !ims_format__in_file(q->l1_off, q->l1_bytes, size))
			return ims_error_set(
				-EINVAL,
				"qcow2: L1 table (offset 0x%" PRIx64 ", %" PRIu64
				" entries) is unaligned or passes the end of the file (%" PRIu64
				" bytes)",
				q->l1_off, q->l1_bytes / 8, size);
		if (q->l1_off < cs)
			return ims_error_set(-EINVAL,
					     "qcow2: L1 table at offset 0x%" PRIx64 " lies in "
					     "the header",
					     q->l1_off);
	}
	if (!q->rt_bytes)
		return 0;
	if ((q->rt_off & (cs - 1)) || !ims_format__in_file(q->rt_off, q->rt_bytes, size))
		return ims_error_set(-EINVAL,
				     "qcow2: refcount table (offset 0x%" PRIx64 ", %" PRIu64
				     " clusters) is unaligned or passes the end of the "
				     "file (%" PRIu64 " bytes)",
				     q->rt_off, q->rt_bytes / cs, size);
	what = q->rt_off < cs ? "the header"
	       : ims_format__overlap(q->rt_off, q->rt_bytes, q->l1_off, q->l1_bytes)
		       ? "the L1 table"
		       : NULL;
	if (what)
		return ims_error_set(-EINVAL,
				     "qcow2: refcount table at offset 0x%" PRIx64 " lies in %s",
				     q->rt_off, what);
	return 0;
}

/* The LUKS header that the crypto header extension points to, opened with the passphrase. */
static int open_luks(qcow2 *q, uint32_t header_len, const ims_format_secret *secret)
{
	const ims_source *src = &q->base.src;
	uint64_t cs = q->cluster_size, size = src->size, ext_off;
	uint32_t ext_len;
	uint8_t e[16];
	int r;

	if (q->base.virtual_size % 512)
		return ims_error_set(-EINVAL,
				     "qcow2: encrypted image with a virtual size of %" PRIu64
				     " bytes, not whole 512-byte sectors",
				     q->base.virtual_size);
	if (q->cluster_bits < 9 + (q->extended_l2 ? 5u : 0u))
		return ims_error_set(-EINVAL, "qcow2: encrypted image with subclusters smaller "
					      "than a sector");
	r = find_ext(src, header_len, cs < size ? cs : size, EXT_CRYPTO, &ext_off, &ext_len);
	if (r < 0)
		return r;
	if (r == 0 || ext_len != 16)
		return ims_error_set(-EINVAL, "qcow2: the image is LUKS-encrypted but has no valid "
					      "encryption header extension");
	if ((r = ims_format__pread_exact(src, e, 16, ext_off, "qcow2: encryption extension")) < 0)
		return r;
	q->luks_off = ims_format__be64(e);
	q->luks_len = ims_format__be64(e + 8);
	if ((q->luks_off & (cs - 1)) || q->luks_off < cs ||
	    !ims_format__in_file(q->luks_off, q->luks_len, size))
		return ims_error_set(-EINVAL,
				     "qcow2: the encryption header (offset 0x%" PRIx64 ", %" PRIu64
				     " bytes) is unaligned, in the header or past "
				     "the end of the file (%" PRIu64 " bytes)",
				     q->luks_off, q->luks_len, size);
	if (ims_format__overlap(q->luks_off, q->luks_len, q->l1_off, q->l1_bytes) ||
	    ims_format__overlap(q->luks_off, q->luks_len, q->rt_off, q->rt_bytes))
		return ims_error_set(-EINVAL, "qcow2: the encryption header overlaps the L1 or "
					      "refcount table");
	q->sbuf = malloc(SBUF_BYTES);
	if (!q->sbuf)
		return ims_error_set(-ENOMEM, "qcow2: out of memory for decryption");
	return ims_format__luks_open(
		&q->luks, src, q->luks_off, q->luks_len, secret->passphrase, secret->passphrase_len,
		secret->max_iterations ? secret->max_iterations : IMS_FORMAT_LUKS_MAX_ITERATIONS);
}

int ims_format__qcow2_open(ims_format_reader **out, const ims_source *src,
			   const ims_format_secret *secret)
{
	uint32_t header_len = V2_HEADER_BYTES;
	uint8_t h[HEADER_READ_BYTES];
	uint64_t cs, incompat = 0;
	uint32_t version = 0;
	unsigned compression = COMPRESSION_DEFLATE;
	size_t got, nslots;
	qcow2 *q = NULL;
	int r;

	r = read_header(src, h, &got, &version);
	if (r < 0)
		goto out;
	r = check_header(src, h, got, version, secret, &incompat, &compression, &header_len);
	if (r < 0)
		goto out;

	q = calloc(1, sizeof(*q));
	if (!q) {
		r = ims_error_set(-ENOMEM, "qcow2: out of memory for a reader");
		goto out;
	}
	ims_format__reader_init(&q->base, &qcow2_ops, IMS_FORMAT_QCOW2, src);
	q->cluster_bits = ims_format__be32(h + 20);
	q->cluster_size = cs = 1ull << q->cluster_bits;
	q->extended_l2 = incompat & INCOMPAT_EXTENDED_L2;
	q->entry_bytes = q->extended_l2 ? 16 : 8;
	q->l2_bits = q->cluster_bits - (q->extended_l2 ? 4 : 3);
	q->base.sparse = &qcow2_sparse;
	q->base.table_range = 1ull << (q->cluster_bits + q->l2_bits);
	q->compression = compression;
	q->csize_shift = 62 - (q->cluster_bits - 8);
	q->csize_mask = (1ull << (q->cluster_bits - 8)) - 1;
	q->coffset_mask = (1ull << q->csize_shift) - 1;
	if ((r = check_sizes(q, h)) < 0 || (r = check_tables(q)) < 0)
		goto out;
	/* before the L2 tables are checked against it */
	if (ims_format__be32(h + 32) == CRYPT_LUKS && (r = open_luks(q, header_len, secret)) < 0)
		goto out;
	if ((r = load_l1(q)) < 0)
		goto out;

	nslots = (size_t)(CACHE_BYTES / cs);
	nslots = nslots < 2 ? 2 : nslots > 16 ? 16 : nslots;
	r = ims_format__cache_init(&q->cache, nslots, (size_t)cs);
	if (r < 0)
		goto out;
	*out = &q->base;
	q = NULL;
out:
	if (q)
		qcow2_close(&q->base);
	return r;
}
