/*
 * proto/json.h: the proto3 JSON mapping of any protobuf-c message, walked from its
 * descriptors (the Connect protocol's application/json codec). Not installed.
 *
 * Output: fields by their lowerCamelCase JSON name, in field-number order; proto3 fields at
 * their default value left out; int64/uint64 as decimal strings; bytes as standard base64;
 * enums by name (a number for a value the schema does not know); NaN and infinities as
 * "NaN", "Infinity", "-Infinity"; invalid UTF-8 in a string replaced by '?'.
 *
 * Input (untrusted bytes): a JSON object, at most IMS_RPC__JSON_DEPTH deep, valid UTF-8;
 * fields by JSON name or by proto name; unknown fields ignored (the spec allows it, and it
 * keeps older servers working with newer clients); null is the default value; integers as
 * numbers or decimal strings, range-checked; bytes in standard or URL-safe base64, padded or
 * not; enums by name or number; a field given twice (by both its names) is an error.
 */
#ifndef IMS_PROTO_JSON_H
#define IMS_PROTO_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#define IMS_RPC__JSON_DEPTH 32

/**
 * Parse @p text (@p len bytes, not NUL-terminated) as a message of type @p desc.
 *
 * @param[out] out the message; free with protobuf_c_message_free_unpacked(out, NULL).
 * @returns -EINVAL with a one-line message (ims_error_last()) naming the field for input
 *          that is no valid JSON or does not fit the message; -ENOMEM.
 */
int ims_rpc__json_decode(ProtobufCMessage **out, const ProtobufCMessageDescriptor *desc,
			 const char *text, size_t len);

/**
 * The JSON text of @p msg.
 *
 * @param[out] out NUL-terminated, malloc'ed; @p out_len its length (may be NULL).
 * @returns -ENOMEM, or -EINVAL for a message nested deeper than IMS_RPC__JSON_DEPTH.
 */
int ims_rpc__json_encode(char **out, size_t *out_len, const ProtobufCMessage *msg);

/** The lowerCamelCase JSON name of a field named @p name, into @p buf (truncated). */
void ims_rpc__json_name(char *buf, size_t cap, const char *name);

/** Copy @p s into @p out (at most @p cap bytes with the NUL) with each byte that is not part
 * of valid UTF-8 replaced by '?'. */
void ims_rpc__utf8_clean(char *out, size_t cap, const char *s);

/**
 * Base64 decoding, standard or URL-safe alphabet, with or without padding.
 *
 * @param[out] out malloc'ed (at least 1 byte), @p out_len bytes.
 * @returns -EINVAL for a character or length no base64 has; -ENOMEM.
 */
int ims_rpc__base64_decode(unsigned char **out, size_t *out_len, const char *s, size_t len);

/** Standard base64 of @p n bytes, with '=' padding if @p pad; malloc'ed, NULL on ENOMEM. */
char *ims_rpc__base64_encode(const uint8_t *p, size_t n, bool pad);

#endif
