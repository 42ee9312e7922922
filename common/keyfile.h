/*
 * common/keyfile.h: reading a 256-bit key from a file only its owner may read (the KEK of
 * encrypted images, store/crypt.h, and the sealing key of an S3 target, tier/manifest.h).
 */
#ifndef IMS_COMMON_KEYFILE_H
#define IMS_COMMON_KEYFILE_H

#include <stddef.h>
#include <stdint.h>

#define IMS_KEYFILE_LEN 32 /* bytes of the key; the file holds twice as many hex digits */

/**
 * Read a key file: 64 hex digits, surrounding white space allowed. The file must be a regular
 * file that neither group nor others may read.
 *
 * @param[out] out the key; written only on success (the caller wipes it when done).
 * @param what names the file in messages ("kek_file", "key file").
 * @returns -ENOENT (or another error of open()), -EINVAL if it is no regular file or holds no
 *          64-digit hex key, -EPERM if group or others may read it.
 */
int ims_keyfile_read(uint8_t out[IMS_KEYFILE_LEN], const char *path, const char *what);

/**
 * Decode the first 2 * @p n characters of @p hex (digits in either case) into @p n bytes.
 *
 * @returns 0, -EINVAL if one of them is no hex digit (the string ending early included).
 */
int ims_keyfile_unhex(uint8_t *out, const char *hex, size_t n);

#endif
