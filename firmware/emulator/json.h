/* Just enough JSON for the emulator's line protocol: parse one flat object of strings,
 * numbers, booleans and null (commands arrive that way), and build flat or one-level
 * nested objects for output. No allocation. */
#ifndef ZIMA_EMU_JSON_H
#define ZIMA_EMU_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum json_type { JSON_STRING, JSON_NUMBER, JSON_BOOL, JSON_NULL };

typedef struct json_field {
	char key[32];
	enum json_type type;
	char str[128];
	double num;
	bool boolean;
} json_field;

typedef struct json_object {
	json_field fields[16];
	int count;
} json_object;

/* 0 on success; -1 with a message in err otherwise. */
int json_parse_flat(const char *text, json_object *out, char *err, size_t err_len);
const json_field *json_get(const json_object *obj, const char *key);

/* Output builder: a fixed buffer; overflow truncates and is reported by json_out_ok. */
typedef struct json_out {
	char buf[4096];
	size_t len;
	bool first;
	bool overflow;
} json_out;

void json_out_init(json_out *o);   /* empties the buffer */
void json_out_begin(json_out *o);  /* '{' */
void json_out_key(json_out *o, const char *key); /* for nested values: then begin/end */
void json_out_str(json_out *o, const char *key, const char *value);
void json_out_num(json_out *o, const char *key, double value, int decimals);
void json_out_int(json_out *o, const char *key, int64_t value);
void json_out_bool(json_out *o, const char *key, bool value);
void json_out_raw(json_out *o, const char *key, const char *json);
void json_out_end(json_out *o);
bool json_out_ok(const json_out *o);

#endif
