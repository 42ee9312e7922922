/*
 * proto/json.c: the proto3 JSON mapping, generic over protobuf-c descriptors. json-c parses
 * and prints; this file maps its values onto the fields and back. Messages are built with
 * malloc() the way protobuf_c_message_unpack() builds them, so that
 * protobuf_c_message_free_unpacked(msg, NULL) frees a whole or a half-built one.
 */
#include "proto/json.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "common/error.h"

#define NAME_MAX_LEN 128

/* ---- helpers ------------------------------------------------------------------------------ */

void ims_rpc__json_name(char *buf, size_t cap, const char *name)
{
	size_t o = 0;
	bool up = false;

	if (!cap)
		return;
	for (const char *p = name; *p && o + 1 < cap; p++) {
		if (*p == '_') {
			up = true;
			continue;
		}
		buf[o++] = (up && *p >= 'a' && *p <= 'z') ? (char)(*p - 'a' + 'A') : *p;
		up = false;
	}
	buf[o] = '\0';
}

void ims_rpc__utf8_clean(char *out, size_t cap, const char *s)
{
	size_t o = 0;
	const unsigned char *p = (const unsigned char *)s;

	if (!cap)
		return;
	while (*p && o + 5 < cap) {
		size_t n = 0;
		if (p[0] < 0x80)
			n = 1;
		else if (p[0] >= 0xc2 && p[0] <= 0xdf)
			n = 2;
		else if (p[0] >= 0xe0 && p[0] <= 0xef)
			n = 3;
		else if (p[0] >= 0xf0 && p[0] <= 0xf4)
			n = 4;
		bool ok = n > 0;
		for (size_t i = 1; ok && i < n; i++)
			ok = (p[i] & 0xc0) == 0x80;
		/* overlong 3- and 4-byte forms, surrogates, beyond U+10FFFF */
		if (ok && n == 3)
			ok = !(p[0] == 0xe0 && p[1] < 0xa0) && !(p[0] == 0xed && p[1] >= 0xa0);
		if (ok && n == 4)
			ok = !(p[0] == 0xf0 && p[1] < 0x90) && !(p[0] == 0xf4 && p[1] >= 0x90);
		if (!ok) {
			out[o++] = '?';
			p++;
			continue;
		}
		memcpy(out + o, p, n);
		o += n;
		p += n;
	}
	out[o] = '\0';
}

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static int b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

int ims_rpc__base64_decode(unsigned char **out, size_t *out_len, const char *s, size_t len)
{
	unsigned char *buf;
	size_t o = 0;
	uint32_t acc = 0;
	unsigned bits = 0;

	/* padding only at the end, and at most two '=' */
	for (int pad = 0; pad < 2 && len && s[len - 1] == '='; pad++)
		len--;
	if (len % 4 == 1)
		return ims_error_set(-EINVAL, "%zu characters are no base64", len);
	buf = malloc(len / 4 * 3 + 3);
	if (!buf)
		return ims_error_set(-ENOMEM, "out of memory decoding base64");
	for (size_t i = 0; i < len; i++) {
		int v = b64_value((unsigned char)s[i]);
		if (v < 0) {
			free(buf);
			return ims_error_set(-EINVAL, "character %zu is no base64", i + 1);
		}
		acc = (acc << 6) | (uint32_t)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			buf[o++] = (unsigned char)(acc >> bits);
			acc &= (1u << bits) - 1;
		}
	}
	*out = buf;
	*out_len = o;
	return 0;
}

char *ims_rpc__base64_encode(const uint8_t *p, size_t n, bool pad)
{
	char *s = malloc((n + 2) / 3 * 4 + 1);
	size_t o = 0;

	if (!s)
		return NULL;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)p[i + 1] << 8;
		if (i + 2 < n)
			v |= p[i + 2];
		s[o++] = b64_std[(v >> 18) & 63];
		s[o++] = b64_std[(v >> 12) & 63];
		if (i + 1 < n || pad)
			s[o++] = i + 1 < n ? b64_std[(v >> 6) & 63] : '=';
		if (i + 2 < n || pad)
			s[o++] = i + 2 < n ? b64_std[v & 63] : '=';
	}
	s[o] = '\0';
	return s;
}

/* ---- decoding ----------------------------------------------------------------------------- */

static size_t scalar_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_ENUM: return 4;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE: return 8;
	case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
	}
	return 0;
}

/* A decimal integer string: optional '-', digits, nothing else. */
static bool parse_int_string(const char *s, bool is_signed, int64_t *i, uint64_t *u)
{
	char *end;

	if (!*s || (s[0] == '-' && !is_signed) || (s[0] != '-' && (s[0] < '0' || s[0] > '9')))
		return false;
	errno = 0;
	if (is_signed)
		*i = strtoll(s, &end, 10);
	else
		*u = strtoull(s, &end, 10);
	return errno == 0 && end != s && !*end;
}

/* An integer from a JSON number or string, within [min, max] (signed) or [0, umax]. */
static int get_integer(json_object *v, bool is_signed, int64_t min, int64_t max, uint64_t umax,
		       int64_t *i, uint64_t *u, const char *field)
{
	*i = 0;
	*u = 0;
	switch (json_object_get_type(v)) {
	case json_type_int:
		/* json-c clamps a number past the 64-bit range to the limit: the limits
		 * themselves are taken as strings only (as proto3 JSON writes them) */
		if (is_signed) {
			*i = json_object_get_int64(v);
			if (*i == INT64_MAX && json_object_get_uint64(v) > (uint64_t)INT64_MAX)
				goto range;
			if (*i == INT64_MIN)
				goto limit;
		} else {
			if (json_object_get_int64(v) < 0)
				goto range;
			*u = json_object_get_uint64(v);
			if (*u == UINT64_MAX)
				goto limit;
		}
		break;
	case json_type_double: {
		double d = json_object_get_double(v);
		if (!isfinite(d) || d != floor(d))
			return ims_error_set(-EINVAL, "field '%s': %g is no integer", field, d);
		if (is_signed) {
			if (d < -9223372036854775808.0 || d >= 9223372036854775808.0)
				goto range;
			*i = (int64_t)d;
		} else {
			if (d < 0 || d >= 18446744073709551616.0)
				goto range;
			*u = (uint64_t)d;
		}
		break;
	}
	case json_type_string:
		if (!parse_int_string(json_object_get_string(v), is_signed, i, u))
			return ims_error_set(-EINVAL, "field '%s': \"%.40s\" is no integer", field,
					     json_object_get_string(v));
		break;
	default: return ims_error_set(-EINVAL, "field '%s' takes an integer", field);
	}
	if (is_signed ? (*i < min || *i > max) : *u > umax)
		goto range;
	return 0;
range:
	return ims_error_set(-EINVAL, "field '%s': the number is out of range", field);
limit:
	return ims_error_set(-EINVAL,
			     "field '%s': the number is out of range (give a 64-bit limit as a "
			     "string)",
			     field);
}

static int get_floating(json_object *v, double *d, const char *field)
{
	switch (json_object_get_type(v)) {
	case json_type_int:
	case json_type_double: *d = json_object_get_double(v); return 0;
	case json_type_string: {
		const char *s = json_object_get_string(v);
		char *end;
		if (strcmp(s, "NaN") == 0) {
			*d = NAN;
			return 0;
		}
		if (strcmp(s, "Infinity") == 0) {
			*d = INFINITY;
			return 0;
		}
		if (strcmp(s, "-Infinity") == 0) {
			*d = -INFINITY;
			return 0;
		}
		errno = 0;
		*d = strtod(s, &end);
		/* strtod would take "inf", "nan" and hex: JSON has none of them */
		if (!*s || *end || errno || !isfinite(*d) || strpbrk(s, "xXnN"))
			return ims_error_set(-EINVAL, "field '%s': \"%.40s\" is no number", field,
					     s);
		return 0;
	}
	default: return ims_error_set(-EINVAL, "field '%s' takes a number", field);
	}
}

static int decode_message(ProtobufCMessage **out, const ProtobufCMessageDescriptor *desc,
			  json_object *obj, int depth);

/* One value (a singular field, or an element of a repeated one) into @p dst. */
static int decode_value(void *dst, const ProtobufCFieldDescriptor *f, json_object *v, int depth)
{
	int64_t i;
	uint64_t u;
	double d;
	int r = 0;

	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		r = get_integer(v, true, INT32_MIN, INT32_MAX, 0, &i, &u, f->name);
		if (r == 0)
			*(int32_t *)dst = (int32_t)i;
		break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		r = get_integer(v, false, 0, 0, UINT32_MAX, &i, &u, f->name);
		if (r == 0)
			*(uint32_t *)dst = (uint32_t)u;
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		r = get_integer(v, true, INT64_MIN, INT64_MAX, 0, &i, &u, f->name);
		if (r == 0)
			*(int64_t *)dst = i;
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		r = get_integer(v, false, 0, 0, UINT64_MAX, &i, &u, f->name);
		if (r == 0)
			*(uint64_t *)dst = u;
		break;
	case PROTOBUF_C_TYPE_FLOAT:
		r = get_floating(v, &d, f->name);
		if (r == 0 && isfinite(d) &&
		    (d > 3.4028234663852886e38 || d < -3.4028234663852886e38))
			r = ims_error_set(-EINVAL, "field '%s': the number is out of range",
					  f->name);
		if (r == 0)
			*(float *)dst = (float)d;
		break;
	case PROTOBUF_C_TYPE_DOUBLE:
		r = get_floating(v, &d, f->name);
		if (r == 0)
			*(double *)dst = d;
		break;
	case PROTOBUF_C_TYPE_BOOL:
		if (!json_object_is_type(v, json_type_boolean))
			return ims_error_set(-EINVAL, "field '%s' takes true or false", f->name);
		*(protobuf_c_boolean *)dst = json_object_get_boolean(v) ? 1 : 0;
		break;
	case PROTOBUF_C_TYPE_ENUM: {
		const ProtobufCEnumDescriptor *ed = f->descriptor;
		if (json_object_is_type(v, json_type_string)) {
			const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value_by_name(
				ed, json_object_get_string(v));
			if (!ev)
				return ims_error_set(-EINVAL, "field '%s': \"%.40s\" is no %s",
						     f->name, json_object_get_string(v), ed->name);
			*(int *)dst = ev->value;
			break;
		}
		r = get_integer(v, true, INT32_MIN, INT32_MAX, 0, &i, &u, f->name);
		if (r == 0)
			*(int *)dst = (int)i;
		break;
	}
	case PROTOBUF_C_TYPE_STRING: {
		if (!json_object_is_type(v, json_type_string))
			return ims_error_set(-EINVAL, "field '%s' takes a string", f->name);
		size_t n = (size_t)json_object_get_string_len(v);
		const char *s = json_object_get_string(v);
		if (memchr(s, '\0', n))
			return ims_error_set(-EINVAL, "field '%s': a string may not hold \\u0000",
					     f->name);
		char *c = malloc(n + 1);
		if (!c)
			return ims_error_set(-ENOMEM, "out of memory decoding JSON");
		memcpy(c, s, n + 1);
		*(char **)dst = c;
		break;
	}
	case PROTOBUF_C_TYPE_BYTES: {
		ProtobufCBinaryData *b = dst;
		unsigned char *data;
		size_t n;
		if (!json_object_is_type(v, json_type_string))
			return ims_error_set(-EINVAL, "field '%s' takes a base64 string", f->name);
		r = ims_rpc__base64_decode(&data, &n, json_object_get_string(v),
					   (size_t)json_object_get_string_len(v));
		if (r < 0)
			return ims_error_set(r, "field '%s': %s", f->name, ims_error_last());
		b->data = data;
		b->len = n;
		break;
	}
	case PROTOBUF_C_TYPE_MESSAGE:
		if (!json_object_is_type(v, json_type_object))
			return ims_error_set(-EINVAL, "field '%s' takes an object", f->name);
		r = decode_message((ProtobufCMessage **)dst, f->descriptor, v, depth + 1);
		break;
	}
	return r;
}

static int decode_field(ProtobufCMessage *m, const ProtobufCFieldDescriptor *f, json_object *v,
			int depth)
{
	char *base = (char *)m;

	if (json_object_is_type(v, json_type_null))
		return 0; /* the default value */
	if (f->label == PROTOBUF_C_LABEL_REPEATED) {
		size_t sz = scalar_size(f->type);
		size_t *np = (size_t *)(base + f->quantifier_offset);
		void **arrp = (void **)(base + f->offset);
		if (!json_object_is_type(v, json_type_array))
			return ims_error_set(-EINVAL, "field '%s' takes an array", f->name);
		size_t n = json_object_array_length(v);
		if (n == 0)
			return 0;
		char *arr = calloc(n, sz);
		if (!arr)
			return ims_error_set(-ENOMEM, "out of memory decoding JSON");
		*arrp = arr;
		for (size_t k = 0; k < n; k++) {
			json_object *e = json_object_array_get_idx(v, k);
			if (!e || json_object_is_type(e, json_type_null))
				return ims_error_set(-EINVAL, "field '%s': null in an array",
						     f->name);
			/* counted first: free_unpacked frees a half-built element too (its
			 * slot is zeroed until then) */
			*np = k + 1;
			int r = decode_value(arr + k * sz, f, e, depth);
			if (r < 0)
				return r;
		}
		return 0;
	}
	int r = decode_value(base + f->offset, f, v, depth);
	if (r < 0)
		return r;
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
		*(uint32_t *)(base + f->quantifier_offset) = f->id;
	else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_STRING &&
		 f->type != PROTOBUF_C_TYPE_MESSAGE)
		*(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
	return 0;
}

static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *desc,
						  const char *key, size_t *index)
{
	char jn[NAME_MAX_LEN];

	for (unsigned k = 0; k < desc->n_fields; k++) {
		const ProtobufCFieldDescriptor *f = &desc->fields[k];
		ims_rpc__json_name(jn, sizeof(jn), f->name);
		if (strcmp(jn, key) == 0 || strcmp(f->name, key) == 0) {
			*index = k;
			return f;
		}
	}
	return NULL;
}

static int decode_message(ProtobufCMessage **out, const ProtobufCMessageDescriptor *desc,
			  json_object *obj, int depth)
{
	ProtobufCMessage *m;
	bool seen[256] = {false};
	int r = 0;

	if (depth > IMS_RPC__JSON_DEPTH)
		return ims_error_set(-EINVAL, "the JSON nests deeper than %d", IMS_RPC__JSON_DEPTH);
	m = malloc(desc->sizeof_message);
	if (!m)
		return ims_error_set(-ENOMEM, "out of memory decoding JSON");
	protobuf_c_message_init(desc, m);
	*out = m; /* from here on the caller frees it, whole or half-built */
	json_object_object_foreach(obj, key, v)
	{
		size_t index;
		const ProtobufCFieldDescriptor *f = find_field(desc, key, &index);
		if (!f)
			continue; /* unknown fields are ignored */
		if (index < sizeof(seen)) {
			if (seen[index])
				return ims_error_set(-EINVAL, "field '%s' is given twice", f->name);
			seen[index] = true;
		}
		r = decode_field(m, f, v, depth);
		if (r < 0)
			return r;
	}
	return 0;
}

int ims_rpc__json_decode(ProtobufCMessage **out, const ProtobufCMessageDescriptor *desc,
			 const char *text, size_t len)
{
	json_tokener *tok;
	json_object *obj = NULL;
	ProtobufCMessage *m = NULL;
	int r;

	if (!out || !desc || (!text && len))
		return -EINVAL;
	if (len == 0)
		return ims_error_set(-EINVAL, "an empty body is no JSON object (send {})");
	if (len > INT_MAX)
		return ims_error_set(-EINVAL, "a JSON body of %zu bytes is too large", len);
	/* one level per object or array; +1 for the top-level object */
	tok = json_tokener_new_ex(IMS_RPC__JSON_DEPTH + 1);
	if (!tok)
		return ims_error_set(-ENOMEM, "out of memory decoding JSON");
	json_tokener_set_flags(tok, JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8);
	obj = json_tokener_parse_ex(tok, text, (int)len);
	enum json_tokener_error je = json_tokener_get_error(tok);
	size_t end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	if (!obj || je != json_tokener_success) {
		r = ims_error_set(-EINVAL, "malformed JSON: %s",
				  je == json_tokener_continue ? "unexpected end of input"
							      : json_tokener_error_desc(je));
		goto out;
	}
	for (; end < len; end++)
		if (!strchr(" \t\r\n", text[end])) {
			r = ims_error_set(-EINVAL, "malformed JSON: text after the object");
			goto out;
		}
	if (!json_object_is_type(obj, json_type_object)) {
		r = ims_error_set(-EINVAL, "the JSON body must be an object, a %s", desc->name);
		goto out;
	}
	r = decode_message(&m, desc, obj, 1);
	if (r < 0) {
		protobuf_c_message_free_unpacked(m, NULL);
		goto out;
	}
	*out = m;
out:
	json_object_put(obj);
	return r;
}

/* ---- encoding ----------------------------------------------------------------------------- */

static json_object *new_string_clean(const char *s)
{
	size_t n = strlen(s);
	char stack[256];
	char *buf = n + 6 <= sizeof(stack) ? stack : malloc(n + 6);
	json_object *o;

	if (!buf)
		return NULL;
	ims_rpc__utf8_clean(buf, n + 6, s);
	o = json_object_new_string(buf);
	if (buf != stack)
		free(buf);
	return o;
}

/* The shortest text that reads back as the same double (or float). */
static json_object *new_floating(double d, bool is_float)
{
	char buf[40];

	if (isnan(d))
		return json_object_new_string("NaN");
	if (isinf(d))
		return json_object_new_string(d > 0 ? "Infinity" : "-Infinity");
	if (d == 0 && signbit(d)) /* "-0" would read back as the integer 0, and so as +0.0 */
		return json_object_new_double_s(d, "-0.0");
	for (int prec = is_float ? 6 : 15; prec <= 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*g", prec, d);
		if (is_float ? (float)strtod(buf, NULL) == (float)d : strtod(buf, NULL) == d)
			break;
	}
	return json_object_new_double_s(d, buf);
}

static int encode_message(json_object **out, const ProtobufCMessage *m, int depth);

static json_object *encode_value(const ProtobufCFieldDescriptor *f, const void *src, int depth,
				 int *r)
{
	char num[32];

	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32: return json_object_new_int(*(const int32_t *)src);
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32: return json_object_new_int64(*(const uint32_t *)src);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		snprintf(num, sizeof(num), "%" PRId64, *(const int64_t *)src);
		return json_object_new_string(num);
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		snprintf(num, sizeof(num), "%" PRIu64, *(const uint64_t *)src);
		return json_object_new_string(num);
	case PROTOBUF_C_TYPE_FLOAT: return new_floating(*(const float *)src, true);
	case PROTOBUF_C_TYPE_DOUBLE: return new_floating(*(const double *)src, false);
	case PROTOBUF_C_TYPE_BOOL: return json_object_new_boolean(*(const protobuf_c_boolean *)src);
	case PROTOBUF_C_TYPE_ENUM: {
		int v = *(const int *)src;
		const ProtobufCEnumValue *ev =
			protobuf_c_enum_descriptor_get_value(f->descriptor, v);
		return ev ? json_object_new_string(ev->name) : json_object_new_int(v);
	}
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)src;
		return new_string_clean(s ? s : "");
	}
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *b = src;
		char *s = ims_rpc__base64_encode(b->data, b->len, true);
		json_object *o = s ? json_object_new_string(s) : NULL;
		free(s);
		return o;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		json_object *o = NULL;
		const ProtobufCMessage *sub = *(ProtobufCMessage *const *)src;
		if (!sub)
			return json_object_new_object();
		*r = encode_message(&o, sub, depth + 1);
		return o;
	}
	}
	return NULL;
}

/* Whether a proto3 field without presence holds its default value (and is left out). */
static bool is_default(const ProtobufCFieldDescriptor *f, const void *src)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32: return *(const uint32_t *)src == 0;
	case PROTOBUF_C_TYPE_ENUM: return *(const int *)src == 0;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64: return *(const uint64_t *)src == 0;
	case PROTOBUF_C_TYPE_FLOAT:
		return *(const float *)src == 0 && !signbit(*(const float *)src);
	case PROTOBUF_C_TYPE_DOUBLE:
		return *(const double *)src == 0 && !signbit(*(const double *)src);
	case PROTOBUF_C_TYPE_BOOL: return !*(const protobuf_c_boolean *)src;
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)src;
		return !s || !*s;
	}
	case PROTOBUF_C_TYPE_BYTES: return ((const ProtobufCBinaryData *)src)->len == 0;
	case PROTOBUF_C_TYPE_MESSAGE: return *(ProtobufCMessage *const *)src == NULL;
	}
	return true;
}

static int encode_message(json_object **out, const ProtobufCMessage *m, int depth)
{
	const ProtobufCMessageDescriptor *desc = m->descriptor;
	const char *base = (const char *)m;
	char jn[NAME_MAX_LEN];
	json_object *obj;
	int r = 0;

	if (depth > IMS_RPC__JSON_DEPTH)
		return ims_error_set(-EINVAL, "a %s nests deeper than %d", desc->name,
				     IMS_RPC__JSON_DEPTH);
	obj = json_object_new_object();
	if (!obj)
		return ims_error_set(-ENOMEM, "out of memory encoding JSON");
	for (unsigned k = 0; k < desc->n_fields && r == 0; k++) {
		const ProtobufCFieldDescriptor *f = &desc->fields[k];
		const void *src = base + f->offset;
		json_object *v = NULL;

		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)(base + f->quantifier_offset);
			const char *arr = *(char *const *)src;
			size_t sz = scalar_size(f->type);
			if (n == 0)
				continue;
			v = json_object_new_array_ext((int)(n < INT_MAX ? n : INT_MAX));
			for (size_t i = 0; v && i < n && r == 0; i++) {
				json_object *e = encode_value(f, arr + i * sz, depth, &r);
				if (!e || json_object_array_add(v, e) < 0) {
					json_object_put(e);
					if (r == 0)
						r = ims_error_set(-ENOMEM,
								  "out of memory encoding JSON");
				}
			}
		} else {
			if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
				if (*(const uint32_t *)(base + f->quantifier_offset) != f->id)
					continue;
			} else if (f->label == PROTOBUF_C_LABEL_OPTIONAL &&
				   f->type != PROTOBUF_C_TYPE_STRING &&
				   f->type != PROTOBUF_C_TYPE_MESSAGE) {
				if (!*(const protobuf_c_boolean *)(base + f->quantifier_offset))
					continue;
			} else if (f->label == PROTOBUF_C_LABEL_OPTIONAL) {
				if (!*(void *const *)src)
					continue;
			} else if (f->label == PROTOBUF_C_LABEL_NONE && is_default(f, src)) {
				continue;
			}
			v = encode_value(f, src, depth, &r);
		}
		if (!v) {
			if (r == 0)
				r = ims_error_set(-ENOMEM, "out of memory encoding JSON");
			break;
		}
		if (r < 0) {
			json_object_put(v);
			break;
		}
		ims_rpc__json_name(jn, sizeof(jn), f->name);
		if (json_object_object_add(obj, jn, v) < 0) {
			json_object_put(v);
			r = ims_error_set(-ENOMEM, "out of memory encoding JSON");
		}
	}
	if (r < 0) {
		json_object_put(obj);
		return r;
	}
	*out = obj;
	return 0;
}

int ims_rpc__json_encode(char **out, size_t *out_len, const ProtobufCMessage *msg)
{
	json_object *obj = NULL;
	size_t n;
	int r;

	if (!out || !msg)
		return -EINVAL;
	r = encode_message(&obj, msg, 1);
	if (r < 0)
		return r;
	const char *text = json_object_to_json_string_length(
		obj, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE, &n);
	char *c = text ? malloc(n + 1) : NULL;
	if (!c) {
		json_object_put(obj);
		return ims_error_set(-ENOMEM, "out of memory encoding JSON");
	}
	memcpy(c, text, n + 1);
	json_object_put(obj);
	*out = c;
	if (out_len)
		*out_len = n;
	return 0;
}
