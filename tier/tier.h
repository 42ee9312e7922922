/*
 * tier/tier.h: cold tiering of RBD images to an S3-compatible target.
 *
 * Push reads only the allocated extents of an image (or snapshot), cuts them into chunks on a
 * fixed grid (4 MiB by default, aligned to the RBD objects), names each chunk by the SHA-256 of
 * its bytes so identical chunks of all images are stored once, seals them (zstd, AES-256-GCM,
 * tier/manifest.h) and uploads them in parallel with bounded memory; all-zero chunks are not
 * stored. The sealed manifest is written last: without it nothing was pushed. It is read back
 * and parsed as restore will, and only then is the image marked cold in its pool's catalog and, as
 * asked, moved to the trash or purged.
 *
 * Restore fetches the manifest, downloads and checks every chunk (authentication, then the
 * SHA-256 of the decompressed bytes) in parallel ahead of the writer, and writes through the
 * store's import (store/transfer.h): a temporary image renamed into place when complete, zero
 * runs never written. A bad chunk fails the restore with its name and leaves nothing under the
 * requested name.
 *
 * A push of an image head reads a snapshot taken for the push ("imgstore-tier-..."), removed
 * when the push ends. When the image is then to be removed, the push first holds the image's
 * exclusive lock (other clients' writes fail) and refuses an image leased by a host; before
 * removing it, it checks with a diff against that snapshot that nothing was written since.
 *
 * Pushes and garbage collection exclude each other through lock objects in the bucket: a
 * push holds "locks/push/<random>", garbage collection "locks/gc/<random>"; each writes its
 * own, then looks for the other's. A lock not renewed for IMS_TIER_LOCK_STALE seconds is
 * ignored (its holder died).
 *
 * Bucket layout: "chunks/<sha256 hex>", "manifests/<POOL>/<IMAGE>[@SNAP]", "locks/...".
 */
#ifndef IMS_TIER_TIER_H
#define IMS_TIER_TIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/config.h"
#include "store/crypt.h"
#include "store/image.h"
#include "store/site.h"
#include "tier/manifest.h"
#include "tier/s3.h"

/** A target: an S3 bucket and the key its objects are sealed with. */
typedef struct ims_tier_target ims_tier_target;

/**
 * Open the target of an [s3 NAME] section: its credentials and key files.
 *
 * @param[out] out free with ims_tier_target_free().
 * @returns -ENOENT, -EPERM or -EINVAL for a bad credentials or key file (see ims_s3_from_config()
 *          and ims_seal_key_load()).
 */
int ims_tier_target_open(ims_tier_target **out, const ims_config_s3 *cfg);

/** A target on an S3 client (taken over, freed with the target) and a key. */
int ims_tier_target_new(ims_tier_target **out, ims_s3 *s3, const ims_seal_key *key);

void ims_tier_target_free(ims_tier_target *t);

/** The S3 client of a target. Borrowed. */
ims_s3 *ims_tier_target_s3(ims_tier_target *t);

typedef enum {
	IMS_TIER_KEEP = 0,  /* leave the image where it is (always so for a snapshot) */
	IMS_TIER_TRASH = 1, /* move it to the RBD trash */
	IMS_TIER_PURGE = 2, /* delete it, snapshots included */
} ims_tier_after;

/** "keep", "trash", "purge". @returns -EINVAL for another word. */
int ims_tier_after_parse(ims_tier_after *out, const char *s);

/**
 * The S3 target that holds image @p pool/@p image cold, as its pool's catalog records it.
 *
 * @param[out] target its name, @p len bytes.
 * @returns 1 and its name in @p target; 0 if the catalog names none; < 0 on error.
 */
int ims_tier_cold_target(char *target, size_t len, ims_site *site, const char *pool,
			 const char *image);

#define IMS_TIER_OPTS_VERSION 1
typedef struct {
	unsigned version;
	uint64_t chunk_size;	  /* push: bytes, a power of two in [64 KiB, 64 MiB]; 0: 4 MiB */
	unsigned concurrency;	  /* parallel requests; 0: 8 */
	int zstd_level;		  /* 0: 3 */
	ims_tier_after after;	  /* push of an image head: what happens to the image */
	uint64_t grace;		  /* seconds; GC keeps younger chunks, push refreshes chunks older
				     than half of it; 0: 86400 */
	ims_progress_fn progress; /* may be NULL; non-zero return cancels */
	void *progress_ctx;
	/* push of an image head to be removed: whether a host holds a lease on the image (1, with
	 * who in @p why; 0: no; < 0: error). Asked before the push and again before the removal.
	 * NULL: no host leases to honour. */
	int (*leased)(void *ctx, const char *pool, const char *image, char *why, size_t len);
	void *leased_ctx;
} ims_tier_opts;
#define IMS_TIER_OPTS_INIT                                                                         \
	{                                                                                          \
		.version = IMS_TIER_OPTS_VERSION, .after = IMS_TIER_TRASH                          \
	}

/* Seconds after which a push's or garbage collection's lock object that was not renewed is
 * ignored; the holders renew theirs every IMS_TIER_LOCK_RENEW seconds. */
#define IMS_TIER_LOCK_STALE 900
#define IMS_TIER_LOCK_RENEW 60

typedef struct {
	char name[3 * 256 + 4]; /* the cold image's name */
	uint64_t size;
	uint64_t chunks;       /* chunks in the manifest */
	uint64_t chunks_new;   /* push: uploaded; the others were stored already */
	uint64_t bytes_data;   /* bytes of data in chunks */
	uint64_t bytes_sealed; /* push: sealed bytes uploaded */
	uint64_t bytes_zero;   /* bytes of zeros, never stored */
	uint64_t bytes_read;   /* restore: bytes the import read; zero runs outside the chunks
				  are not read (only where a block holds data too) */
} ims_tier_result;

/**
 * Push @p pool/@p image (at @p snap, or its head when NULL) to @p t as cold image
 * "POOL/IMAGE[@SNAP]", replacing a manifest of that name.
 *
 * @returns -ENOENT for an unknown image or snapshot, -EBUSY if the head is to be removed but a
 *          client has the image open, holds its lock or a host leases it, or if it was written
 *          to during the push (then the manifest holds the image as it was when the push
 *          started, and the image is kept), -EMSGSIZE if the manifest would be larger than restore
 *          accepts or hold more than IMS_MANIFEST_TAGS_MAX tags (nothing is uploaded), -EIO if
 *          the stored manifest does not read back (it is deleted, the image kept), -ECANCELED,
 *          -EACCES/-EIO/-ETIMEDOUT from the target.
 *          On any error before the manifest is stored, no manifest was written and the image
 *          was not changed; on any error the image is not removed.
 */
int ims_tier_push(ims_tier_result *out, ims_tier_target *t, ims_site *site, const char *pool,
		  const char *image, const char *snap, const ims_tier_opts *opts);

/**
 * Restore cold image @p name from @p t into @p pool/@p image (NULL: where it was pushed from).
 *
 * @returns -ENOENT if there is no such cold image, -EEXIST if the image exists, -EBADMSG if
 *          the manifest or a chunk is bad (named in the message), -ECANCELED; on any error no
 *          image carries the requested name.
 */
int ims_tier_restore(ims_tier_result *out, ims_tier_target *t, ims_site *site, const char *name,
		     const char *pool, const char *image, const ims_tier_opts *opts);

/**
 * Fetch and check the manifest of cold image @p name.
 *
 * @returns -ENOENT, -EBADMSG (bad or under another key), an error of the target.
 */
int ims_tier_manifest_get(ims_manifest **out, ims_tier_target *t, const char *name);

/** Delete the manifest of @p name (its chunks go at the next garbage collection). */
int ims_tier_forget(ims_tier_target *t, const char *name);

/**
 * Crypto-shred the cold copies of the encrypted image @p pool/@p image on @p t: the wrapped data
 * key in each of its manifests ("POOL/IMAGE" and every "POOL/IMAGE@SNAP") becomes
 * IMS_CRYPT_SHREDDED (store/crypt.h), so their chunks, its ciphertext, can no longer be read by
 * anyone and a restore says why. Manifests of a plain image are left as they are.
 *
 * @param[out] out the manifests shredded now (may be NULL).
 * @returns 0, an error of the target (the manifests shredded until then stay so).
 */
int ims_tier_shred(size_t *out, ims_tier_target *t, const char *pool, const char *image);

/**
 * List the manifests of @p pool/@p image on @p t, changing nothing: whether a shred
 * (ims_tier_shred()) could reach them now. A shred asks it of every target before it destroys
 * any key, so that a target that does not answer refuses the shred with nothing changed.
 * @returns 0, or the target's error.
 */
int ims_tier_shred_check(ims_tier_target *t, const char *pool, const char *image);

/**
 * Drop the catalog entry of the cold image @p pool/@p image (its manifests stay on their
 * target): what removing a cold image leaves of it here.
 *
 * @returns 0, -ENOENT if the catalog holds no cold image of that name.
 */
int ims_tier_cold_drop(ims_site *site, const char *pool, const char *image);

/**
 * Rewrap the data key of every encrypted cold image on @p t with @p kek's current key (a KEK
 * rotation, store/crypt.h). Idempotent: a manifest whose key is current is not rewritten, so a
 * run cut short is finished by the next.
 *
 * @returns 0 (failures counted and named in @p out), an error of the target.
 */
int ims_tier_rewrap(ims_crypt_rewrap_result *out, ims_tier_target *t, const ims_crypt_kek *kek);

typedef struct {
	char *name;
	uint64_t size;
	int64_t pushed;
	uint64_t chunks;
	bool bad; /* the manifest could not be read */
} ims_tier_cold;

/** The cold images of @p t, sorted by name. Free with ims_tier_cold_list_free(). */
int ims_tier_list(ims_tier_cold **out, size_t *count, ims_tier_target *t);
void ims_tier_cold_list_free(ims_tier_cold *list, size_t count);

typedef struct {
	uint64_t manifests;
	uint64_t manifests_bad;
	uint64_t chunks;     /* distinct chunks referenced */
	uint64_t chunks_bad; /* missing, or (deep) failing their checks */
	char report[2048];   /* the first problems, one "KEY (in NAME): why" each, "; " between */
	/* garbage collection */
	uint64_t garbage;	/* unreferenced chunks found */
	uint64_t garbage_young; /* of which kept for the grace period */
	uint64_t deleted;
} ims_tier_scrub_result;

/**
 * Check every chunk that a manifest references: that it exists (HEAD), or with @p deep that it
 * reads back, authenticates and hashes to its name. With @p gc, then delete the chunks no
 * manifest references that are older than the grace period (none if a manifest is unreadable).
 * Garbage collection then takes the target's GC lock and reads the manifests again, so a push
 * that stored its manifest after the first read is seen.
 *
 * @returns 0 (problems are counted in @p out), -EBUSY with @p gc while a push is running on
 *          the target (nothing deleted), -ECANCELED, an error of the target.
 */
int ims_tier_scrub(ims_tier_scrub_result *out, ims_tier_target *t, bool deep, bool gc,
		   const ims_tier_opts *opts);

#endif
