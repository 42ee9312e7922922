/*
 * cli/output.c: what the CLI prints: JSON documents made from messages by their descriptors
 * (so field names are the proto names, always), `key: value` lines, aligned tables, and the
 * escaping of server strings before they reach a terminal.
 */
#include "cli/cli.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <json-c/json.h>

#include "common/units.h"

#include "imgstore/v1/image.pb-c.h"

/* ---- strings ---- */

/*
 * Length of the valid UTF-8 sequence at @p s (1 to 4) and its code point, or 0 when the
 * bytes are not UTF-8 (overlong forms, surrogates and values above U+10FFFF included).
 */
static size_t utf8_seq(const unsigned char *s, uint32_t *cp)
{
	size_t n;
	uint32_t c;

	if (s[0] < 0x80) {
		*cp = s[0];
		return 1;
	}
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		n = 2;
		c = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		n = 3;
		c = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		n = 4;
		c = s[0] & 0x07;
	} else {
		return 0;
	}
	for (size_t i = 1; i < n; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		c = (c << 6) | (s[i] & 0x3f);
	}
	if ((n == 3 && c < 0x800) || (n == 4 && (c < 0x10000 || c > 0x10ffff)) ||
	    (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return n;
}

char *ims_cli_escape(char *buf, size_t len, const char *s, bool keep_newlines)
{
	const unsigned char *p = (const unsigned char *)(s ? s : "");
	size_t o = 0;

	if (len == 0)
		return buf;
	while (*p) {
		char tmp[8];
		const char *piece;
		size_t plen;
		uint32_t cp;
		size_t n = utf8_seq(p, &cp);

		if (n == 0) {
			snprintf(tmp, sizeof(tmp), "\\x%02x", *p);
			piece = tmp;
			n = 1;
		} else if (cp == '\n' || cp == '\t') {
			piece = keep_newlines ? (cp == '\n' ? "\n" : "\t")
					      : (cp == '\n' ? "\\n" : "\\t");
		} else if (cp == '\r') {
			piece = "\\r";
		} else if (cp < 0x20 || cp == 0x7f) {
			snprintf(tmp, sizeof(tmp), "\\x%02x", (unsigned)cp);
			piece = tmp;
		} else if (cp >= 0x80 && cp <= 0x9f) {
			snprintf(tmp, sizeof(tmp), "\\u%04x", (unsigned)cp);
			piece = tmp;
		} else {
			piece = (const char *)p;
		}
		plen = piece == (const char *)p ? n : strlen(piece);
		if (o + plen >= len)
			break; /* never cut an escape or a character in two */
		memcpy(buf + o, piece, plen);
		o += plen;
		p += n;
	}
	buf[o] = '\0';
	return buf;
}

/* For JSON: bytes that are not UTF-8 become U+FFFD; on a terminal, C1 controls too (json-c
 * escapes C0 controls itself). @returns a malloc'ed string, or NULL. */
static char *json_clean(const char *s, bool tty)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t cap = strlen(s) * 3 + 1, o = 0;
	char *out = malloc(cap);

	if (!out)
		return NULL;
	while (*p) {
		uint32_t cp;
		size_t n = utf8_seq(p, &cp);
		if (n == 0 || (tty && ((cp >= 0x80 && cp <= 0x9f) || cp == 0x7f))) {
			memcpy(out + o, "\xef\xbf\xbd", 3);
			o += 3;
			p += n ? n : 1;
			continue;
		}
		memcpy(out + o, p, n);
		o += n;
		p += n;
	}
	out[o] = '\0';
	return out;
}

char *ims_cli_format_time(char *buf, size_t len, int64_t t)
{
	return ims_format_utc(buf, len, t);
}

const char *ims_cli_op_state_name(int state)
{
	switch (state) {
	case IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_QUEUED: return "queued";
	case IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_RUNNING: return "running";
	case IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_SUCCEEDED: return "succeeded";
	case IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_FAILED: return "failed";
	case IMGSTORE__V1__OPERATION_STATE__OPERATION_STATE_CANCELLED: return "cancelled";
	default: return "unspecified";
	}
}

/* "OperationState" + "OPERATION_STATE_SUCCEEDED" -> "succeeded" */
static void enum_short_name(char *buf, size_t len, const ProtobufCEnumDescriptor *ed, int value)
{
	const ProtobufCEnumValue *ev = protobuf_c_enum_descriptor_get_value(ed, value);
	char prefix[128];
	size_t o = 0;
	const char *name;

	if (!ev) {
		snprintf(buf, len, "%d", value);
		return;
	}
	for (const char *p = ed->short_name; *p && o + 3 < sizeof(prefix); p++) {
		if (isupper((unsigned char)*p) && p != ed->short_name)
			prefix[o++] = '_';
		prefix[o++] = (char)toupper((unsigned char)*p);
	}
	prefix[o++] = '_';
	prefix[o] = '\0';
	name = ev->name;
	if (!strncmp(name, prefix, o) && name[o])
		name += o;
	for (o = 0; name[o] && o + 1 < len; o++)
		buf[o] = (char)tolower((unsigned char)name[o]);
	buf[o] = '\0';
}

/* ---- JSON ---- */

static struct json_object *json_bytes(const ProtobufCBinaryData *b)
{
	static const char tbl[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t n = (b->len + 2) / 3 * 4, o = 0;
	char *s = malloc(n + 1);
	struct json_object *j;

	if (!s)
		return NULL;
	for (size_t i = 0; i < b->len; i += 3) {
		uint32_t v = (uint32_t)b->data[i] << 16;
		if (i + 1 < b->len)
			v |= (uint32_t)b->data[i + 1] << 8;
		if (i + 2 < b->len)
			v |= b->data[i + 2];
		s[o++] = tbl[(v >> 18) & 63];
		s[o++] = tbl[(v >> 12) & 63];
		s[o++] = i + 1 < b->len ? tbl[(v >> 6) & 63] : '=';
		s[o++] = i + 2 < b->len ? tbl[v & 63] : '=';
	}
	s[o] = '\0';
	j = json_object_new_string(s);
	free(s);
	return j;
}

static struct json_object *json_message(const ProtobufCMessage *msg, bool tty);

static struct json_object *json_value(const ProtobufCFieldDescriptor *f, const void *p, bool tty)
{
	char buf[128];
	char *clean;
	struct json_object *j;

	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32: return json_object_new_int64(*(const int32_t *)p);
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32: return json_object_new_int64(*(const uint32_t *)p);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64: return json_object_new_int64(*(const int64_t *)p);
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64: return json_object_new_uint64(*(const uint64_t *)p);
	case PROTOBUF_C_TYPE_FLOAT: return json_object_new_double(*(const float *)p);
	case PROTOBUF_C_TYPE_DOUBLE: return json_object_new_double(*(const double *)p);
	case PROTOBUF_C_TYPE_BOOL: return json_object_new_boolean(*(const protobuf_c_boolean *)p);
	case PROTOBUF_C_TYPE_ENUM:
		enum_short_name(buf, sizeof(buf), f->descriptor, *(const int *)p);
		return json_object_new_string(buf);
	case PROTOBUF_C_TYPE_STRING:
		clean = json_clean(*(char *const *)p ? *(char *const *)p : "", tty);
		if (!clean)
			return NULL;
		j = json_object_new_string(clean);
		free(clean);
		return j;
	case PROTOBUF_C_TYPE_BYTES: return json_bytes(p);
	case PROTOBUF_C_TYPE_MESSAGE:
		if (!*(ProtobufCMessage *const *)p)
			return json_object_new_object();
		return json_message(*(ProtobufCMessage *const *)p, tty);
	}
	return NULL;
}

static size_t type_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32: return 4;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64: return 8;
	case PROTOBUF_C_TYPE_FLOAT: return sizeof(float);
	case PROTOBUF_C_TYPE_DOUBLE: return sizeof(double);
	case PROTOBUF_C_TYPE_BOOL: return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_ENUM: return sizeof(int);
	case PROTOBUF_C_TYPE_STRING: return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES: return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE: return sizeof(ProtobufCMessage *);
	}
	return 0;
}

static struct json_object *json_message(const ProtobufCMessage *msg, bool tty)
{
	const ProtobufCMessageDescriptor *d = msg->descriptor;
	struct json_object *obj = json_object_new_object();

	if (!obj)
		return NULL;
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const char *base = (const char *)msg + f->offset;
		struct json_object *v;

		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			size_t n = *(const size_t *)((const char *)msg + f->quantifier_offset);
			const char *arr = *(const char *const *)base;
			size_t sz = type_size(f->type);
			if (f->type == PROTOBUF_C_TYPE_MESSAGE &&
			    f->descriptor == &imgstore__v1__tag__descriptor) {
				/* tags are a map to their users: {"key": "value"} */
				v = json_object_new_object();
				for (size_t k = 0; v && k < n; k++) {
					const Imgstore__V1__Tag *t =
						((Imgstore__V1__Tag *const *)arr)[k];
					char *key = json_clean(t->key ? t->key : "", tty);
					char *val = json_clean(t->value ? t->value : "", tty);
					if (key && val)
						json_object_object_add(v, key,
								       json_object_new_string(val));
					free(key);
					free(val);
				}
			} else {
				v = json_object_new_array();
				for (size_t k = 0; v && k < n; k++)
					json_object_array_add(v, json_value(f, arr + k * sz, tty));
			}
		} else {
			v = json_value(f, base, tty);
		}
		json_object_object_add(obj, f->name, v);
	}
	return obj;
}

struct json_object *ims_cli_json_message(const ProtobufCMessage *msg)
{
	return json_message(msg, false);
}

void ims_cli_print_json(ims_cli *cli, struct json_object *doc)
{
	fprintf(cli->out, "%s\n",
		json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY |
							    JSON_C_TO_STRING_SPACED |
							    JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(doc);
}

void ims_cli_print_line(ims_cli *cli, const char *s)
{
	size_t n = strlen(s) * 6 + 1; /* the longest escape, \u00NN, of a 2-byte character */
	char *esc = malloc(n);

	if (!esc)
		return;
	fprintf(cli->out, "%s\n", ims_cli_escape(esc, n, s, false));
	free(esc);
}

/* ---- fields for humans ---- */

static bool is_size_field(const char *name)
{
	static const char *const names[] = {"size",
					    "used_bytes",
					    "object_size",
					    "bytes_done",
					    "bytes_total",
					    "last_sync_bytes",
					    "max_chunk_bytes",
					    "received_bytes",
					    "total_bytes",
					    NULL};
	for (size_t i = 0; names[i]; i++)
		if (!strcmp(name, names[i]))
			return true;
	return false;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && !strcmp(s + n - m, suffix);
}

/* Append @p s to @p buf (escaped) at *o. */
static void append(char *buf, size_t len, size_t *o, const char *s)
{
	if (*o + 1 >= len)
		return;
	ims_cli_escape(buf + *o, len - *o, s, false);
	*o += strlen(buf + *o);
}

static const char *format_scalar(char *buf, size_t len, const ProtobufCFieldDescriptor *f,
				 const void *p)
{
	char tmp[64];

	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32: snprintf(buf, len, "%" PRId32, *(const int32_t *)p); break;
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		if (ends_with(f->name, "_seconds")) {
			if (*(const uint32_t *)p == 0)
				snprintf(buf, len, "-");
			else
				ims_format_duration(buf, len, *(const uint32_t *)p);
		} else {
			snprintf(buf, len, "%" PRIu32, *(const uint32_t *)p);
		}
		break;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		if (ends_with(f->name, "_unix"))
			ims_cli_format_time(buf, len, *(const int64_t *)p);
		else
			snprintf(buf, len, "%" PRId64, *(const int64_t *)p);
		break;
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		if (is_size_field(f->name))
			ims_format_size(buf, len, *(const uint64_t *)p);
		else if (ends_with(f->name, "_seconds") && *(const uint64_t *)p)
			ims_format_duration(buf, len, *(const uint64_t *)p);
		else
			snprintf(buf, len, "%" PRIu64, *(const uint64_t *)p);
		break;
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_DOUBLE: {
		double d =
			f->type == PROTOBUF_C_TYPE_FLOAT ? *(const float *)p : *(const double *)p;
		snprintf(buf, len, ends_with(f->name, "_seconds") ? "%.1fs" : "%g", d);
		break;
	}
	case PROTOBUF_C_TYPE_BOOL:
		snprintf(buf, len, "%s", *(const protobuf_c_boolean *)p ? "yes" : "no");
		break;
	case PROTOBUF_C_TYPE_ENUM:
		enum_short_name(tmp, sizeof(tmp), f->descriptor, *(const int *)p);
		snprintf(buf, len, "%s", tmp);
		break;
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)p;
		if (!s || !*s)
			snprintf(buf, len, "-");
		else
			ims_cli_escape(buf, len, s, false);
		break;
	}
	case PROTOBUF_C_TYPE_BYTES:
		snprintf(buf, len, "(%zu bytes)", ((const ProtobufCBinaryData *)p)->len);
		break;
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *m = *(ProtobufCMessage *const *)p;
		if (m && m->descriptor == &imgstore__v1__image_spec__descriptor) {
			const Imgstore__V1__ImageSpec *s = (const Imgstore__V1__ImageSpec *)m;
			size_t o = 0;
			buf[0] = '\0';
			if (!s->pool[0] && !s->image[0]) {
				snprintf(buf, len, "-");
				break;
			}
			append(buf, len, &o, s->pool);
			if (s->image[0]) {
				append(buf, len, &o, "/");
				append(buf, len, &o, s->image);
			}
			if (s->snapshot[0]) {
				append(buf, len, &o, "@");
				append(buf, len, &o, s->snapshot);
			}
		} else if (m) {
			/* a nested message is shown by its name when it has one */
			const ProtobufCFieldDescriptor *nf =
				protobuf_c_message_descriptor_get_field_by_name(m->descriptor,
										"name");
			if (nf && nf->type == PROTOBUF_C_TYPE_STRING &&
			    nf->label != PROTOBUF_C_LABEL_REPEATED)
				format_scalar(buf, len, nf, (const char *)m + nf->offset);
			else
				snprintf(buf, len, "-");
		} else {
			snprintf(buf, len, "-");
		}
		break;
	}
	}
	return buf;
}

const char *ims_cli_format_field(char *buf, size_t len, const ProtobufCMessage *msg,
				 const ProtobufCFieldDescriptor *f)
{
	const char *base = (const char *)msg + f->offset;
	size_t n, o = 0, sz;
	const char *arr;
	char item[1024];

	if (f->label != PROTOBUF_C_LABEL_REPEATED)
		return format_scalar(buf, len, f, base);
	n = *(const size_t *)((const char *)msg + f->quantifier_offset);
	arr = *(const char *const *)base;
	sz = type_size(f->type);
	buf[0] = '\0';
	if (n == 0) {
		snprintf(buf, len, "-");
		return buf;
	}
	for (size_t k = 0; k < n; k++) {
		if (k)
			append(buf, len, &o, ",");
		if (f->type == PROTOBUF_C_TYPE_MESSAGE &&
		    f->descriptor == &imgstore__v1__tag__descriptor) {
			const Imgstore__V1__Tag *t = ((Imgstore__V1__Tag *const *)arr)[k];
			append(buf, len, &o, t->key);
			append(buf, len, &o, "=");
			append(buf, len, &o, t->value);
		} else {
			/* already escaped: copy as is */
			format_scalar(item, sizeof(item), f, arr + k * sz);
			if (o + strlen(item) < len) {
				memcpy(buf + o, item, strlen(item) + 1);
				o += strlen(item);
			}
		}
	}
	return buf;
}

/* ---- key: value and tables ---- */

/* Display width: code points, not bytes (wide characters are rare in names). */
static size_t width(const char *s)
{
	size_t w = 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if ((*p & 0xc0) != 0x80)
			w++;
	return w;
}

void ims_cli_print_message(ims_cli *cli, const ProtobufCMessage *msg)
{
	const ProtobufCMessageDescriptor *d = msg->descriptor;
	size_t keyw = 0;
	char val[4096];

	if (cli->format == IMS_CLI_FORMAT_JSON) {
		ims_cli_print_json(cli, json_message(msg, cli->out_tty));
		return;
	}
	for (unsigned i = 0; i < d->n_fields; i++)
		if (strlen(d->fields[i].name) > keyw)
			keyw = strlen(d->fields[i].name);
	for (unsigned i = 0; i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		/* Operation.streamed is ExportImage's answer only, decided a site failover's: "no"
		 * elsewhere would mislead */
		if (d == &imgstore__v1__operation__descriptor &&
		    ((!strcmp(f->name, "streamed") &&
		      !((const Imgstore__V1__Operation *)msg)->streamed) ||
		     (!strcmp(f->name, "decided") &&
		      !((const Imgstore__V1__Operation *)msg)->decided)))
			continue;
		ims_cli_format_field(val, sizeof(val), msg, f);
		fprintf(cli->out, "%s:%*s %s", f->name, (int)(keyw - strlen(f->name)), "", val);
		/* a rounded size also shows its exact bytes */
		if (f->label != PROTOBUF_C_LABEL_REPEATED && f->type == PROTOBUF_C_TYPE_UINT64 &&
		    is_size_field(f->name) && strchr(val, '.'))
			fprintf(cli->out, " (%" PRIu64 " bytes)",
				*(const uint64_t *)((const char *)msg + f->offset));
		fputc('\n', cli->out);
	}
}

void ims_cli_print_list(ims_cli *cli, ProtobufCMessage *const *rows, size_t n,
			const ims_cli_column *cols)
{
	size_t ncols = 0, *w = NULL;
	char **cells = NULL;

	if (cli->format == IMS_CLI_FORMAT_JSON) {
		struct json_object *arr = json_object_new_array();
		for (size_t i = 0; arr && i < n; i++)
			json_object_array_add(arr, json_message(rows[i], cli->out_tty));
		ims_cli_print_json(cli, arr);
		return;
	}
	while (cols[ncols].header)
		ncols++;
	w = calloc(ncols, sizeof(*w));
	cells = calloc((n ? n : 1) * ncols, sizeof(*cells));
	if (!w || !cells) {
		ims_cli_fail(cli, "out of memory");
		goto out;
	}
	for (size_t c = 0; c < ncols; c++)
		w[c] = width(cols[c].header);
	for (size_t r = 0; r < n; r++) {
		for (size_t c = 0; c < ncols; c++) {
			char buf[4096];
			const char *s = "-";
			if (cols[c].fn) {
				s = cols[c].fn(buf, sizeof(buf), rows[r]);
			} else {
				const ProtobufCFieldDescriptor *f =
					protobuf_c_message_descriptor_get_field_by_name(
						rows[r]->descriptor, cols[c].field);
				if (f)
					s = ims_cli_format_field(buf, sizeof(buf), rows[r], f);
			}
			cells[r * ncols + c] = strdup(s);
			if (!cells[r * ncols + c]) {
				ims_cli_fail(cli, "out of memory");
				goto out;
			}
			if (width(s) > w[c])
				w[c] = width(s);
		}
	}
	for (size_t c = 0; c < ncols; c++) {
		if (c + 1 < ncols)
			fprintf(cli->out, "%s%*s  ", cols[c].header,
				(int)(w[c] - width(cols[c].header)), "");
		else
			fprintf(cli->out, "%s\n", cols[c].header);
	}
	for (size_t r = 0; r < n; r++) {
		for (size_t c = 0; c < ncols; c++) {
			const char *s = cells[r * ncols + c];
			if (c + 1 < ncols)
				fprintf(cli->out, "%s%*s  ", s, (int)(w[c] - width(s)), "");
			else
				fprintf(cli->out, "%s\n", s);
		}
	}
out:
	if (cells)
		for (size_t i = 0; i < n * ncols; i++)
			free(cells[i]);
	free(cells);
	free(w);
}

void ims_cli_print_mismatches(ims_cli *cli, const char *indent,
			      const Imgstore__V1__VerifyImageResponse *v)
{
	for (size_t i = 0; i < v->n_mismatches; i++)
		fprintf(cli->out, "%sdiffers at offset %" PRIu64 ", %" PRIu64 " bytes\n", indent,
			v->mismatches[i]->offset, v->mismatches[i]->length);
}
