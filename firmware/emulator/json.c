#include "json.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *skip_ws(const char *p)
{
	while (*p && isspace((unsigned char)*p))
		p++;
	return p;
}

/* Reads a JSON string at p (which points at the opening quote) into dst. */
static const char *parse_string(const char *p, char *dst, size_t cap)
{
	size_t n = 0;
	if (*p != '"')
		return NULL;
	p++;
	while (*p && *p != '"') {
		char c = *p++;
		if (c == '\\') {
			char e = *p++;
			switch (e) {
			case '"': c = '"'; break;
			case '\\': c = '\\'; break;
			case '/': c = '/'; break;
			case 'n': c = '\n'; break;
			case 't': c = '\t'; break;
			case 'r': c = '\r'; break;
			default: return NULL; /* \uXXXX and friends: not needed here */
			}
		}
		if (n + 1 >= cap)
			return NULL;
		dst[n++] = c;
	}
	if (*p != '"')
		return NULL;
	dst[n] = '\0';
	return p + 1;
}

int json_parse_flat(const char *text, json_object *out, char *err, size_t err_len)
{
	const char *p = skip_ws(text);
	out->count = 0;
	if (*p != '{') {
		snprintf(err, err_len, "expected a JSON object");
		return -1;
	}
	p = skip_ws(p + 1);
	if (*p == '}')
		return *skip_ws(p + 1) ? (snprintf(err, err_len, "text after the object"), -1) : 0;
	for (;;) {
		if (out->count >= (int)(sizeof(out->fields) / sizeof(out->fields[0]))) {
			snprintf(err, err_len, "too many fields");
			return -1;
		}
		json_field *f = &out->fields[out->count];
		memset(f, 0, sizeof(*f));
		p = parse_string(p, f->key, sizeof(f->key));
		if (!p) {
			snprintf(err, err_len, "bad or too long key");
			return -1;
		}
		p = skip_ws(p);
		if (*p != ':') {
			snprintf(err, err_len, "expected ':' after \"%s\"", f->key);
			return -1;
		}
		p = skip_ws(p + 1);
		if (*p == '"') {
			f->type = JSON_STRING;
			p = parse_string(p, f->str, sizeof(f->str));
			if (!p) {
				snprintf(err, err_len, "bad string for \"%s\"", f->key);
				return -1;
			}
		} else if (strncmp(p, "true", 4) == 0) {
			f->type = JSON_BOOL;
			f->boolean = true;
			p += 4;
		} else if (strncmp(p, "false", 5) == 0) {
			f->type = JSON_BOOL;
			p += 5;
		} else if (strncmp(p, "null", 4) == 0) {
			f->type = JSON_NULL;
			p += 4;
		} else {
			char *end = NULL;
			f->type = JSON_NUMBER;
			f->num = strtod(p, &end);
			if (end == p || !isfinite(f->num)) {
				snprintf(err, err_len, "bad value for \"%s\"", f->key);
				return -1;
			}
			p = end;
		}
		out->count++;
		p = skip_ws(p);
		if (*p == ',') {
			p = skip_ws(p + 1);
			continue;
		}
		if (*p == '}') {
			if (*skip_ws(p + 1)) {
				snprintf(err, err_len, "text after the object");
				return -1;
			}
			return 0;
		}
		snprintf(err, err_len, "expected ',' or '}'");
		return -1;
	}
}

const json_field *json_get(const json_object *obj, const char *key)
{
	for (int i = 0; i < obj->count; i++)
		if (strcmp(obj->fields[i].key, key) == 0)
			return &obj->fields[i];
	return NULL;
}

static void append(json_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void append(json_out *o, const char *fmt, ...)
{
	if (o->overflow)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(o->buf + o->len, sizeof(o->buf) - o->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(o->buf) - o->len) {
		o->overflow = true;
		return;
	}
	o->len += (size_t)n;
}

void json_out_init(json_out *o)
{
	o->len = 0;
	o->buf[0] = '\0';
	o->first = true;
	o->overflow = false;
}

void json_out_begin(json_out *o)
{
	append(o, "{");
	o->first = true;
}

void json_out_key(json_out *o, const char *key)
{
	append(o, "%s\"%s\":", o->first ? "" : ",", key);
	o->first = true; /* a nested object follows */
}

static void put_key(json_out *o, const char *key)
{
	append(o, "%s\"%s\":", o->first ? "" : ",", key);
	o->first = false;
}

void json_out_str(json_out *o, const char *key, const char *value)
{
	put_key(o, key);
	append(o, "\"");
	for (const char *p = value; *p; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '"' || c == '\\')
			append(o, "\\%c", c);
		else if (c < 0x20)
			append(o, "\\u%04x", c);
		else
			append(o, "%c", c);
	}
	append(o, "\"");
}

void json_out_num(json_out *o, const char *key, double value, int decimals)
{
	put_key(o, key);
	if (isfinite(value))
		append(o, "%.*f", decimals, value);
	else
		append(o, "null");
}

void json_out_int(json_out *o, const char *key, int64_t value)
{
	put_key(o, key);
	append(o, "%lld", (long long)value);
}

void json_out_bool(json_out *o, const char *key, bool value)
{
	put_key(o, key);
	append(o, "%s", value ? "true" : "false");
}

void json_out_raw(json_out *o, const char *key, const char *json)
{
	put_key(o, key);
	append(o, "%s", json);
}

void json_out_end(json_out *o)
{
	append(o, "}");
	o->first = false;
}

bool json_out_ok(const json_out *o)
{
	return !o->overflow;
}
