/* fuzz/scan: the one-pass scanner against jansson, on arbitrary lines: the same answer, the same values. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ndj.h"
#include "scan.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

static int
kind_of(json_t *j)
{
	switch (json_typeof(j)) {
	case JSON_STRING: return SCAN_STRING;
	case JSON_INTEGER: return SCAN_INT;
	case JSON_REAL: return SCAN_REAL;
	case JSON_TRUE: return SCAN_TRUE;
	case JSON_FALSE: return SCAN_FALSE;
	case JSON_NULL: return SCAN_NULL;
	case JSON_OBJECT: return SCAN_OBJECT;
	default: return SCAN_ARRAY;
	}
}

/*
 * For a line that is valid UTF-8 without NUL bytes (what the reader lets
 * through), the scanner accepts exactly what json_loadb() with
 * JSON_REJECT_DUPLICATES accepts as an object, and finds the same fields
 * with the same values.
 */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct scan s;
	static int ready;
	const char *line = (const char *)data;
	const struct scan_val *v;
	json_error_t jerr;
	json_t *j, *f;
	int ok;
	size_t i;

	if (!ready) {
		scan_init(&s);
		ready = 1;
	}
	if (memchr(line, '\0', size) != NULL || ndj_utf8_check(line, size) >= 0)
		return 0;
	ok = scan_line(&s, line, size) == 0;
	j = json_loadb(line, size, JSON_REJECT_DUPLICATES, &jerr);
	if (ok != (j != NULL && json_is_object(j)))
		__builtin_trap();
	if (ok) {
		if (json_object_size(j) != s.n)
			__builtin_trap();
		for (i = 0; i < s.n; i++) {
			v = &s.v[i];
			f = json_object_getn(j, v->key, v->klen);
			if (f == NULL || kind_of(f) != v->kind ||
			    scan_get(&s, v->key) == NULL)
				__builtin_trap();
			if (v->kind == SCAN_STRING &&
			    (json_string_length(f) != v->slen ||
			    memcmp(json_string_value(f), v->str, v->slen) != 0 ||
			    v->str[v->slen] != '\0'))
				__builtin_trap();
			if (v->kind == SCAN_INT && json_integer_value(f) != v->i)
				__builtin_trap();
			if (v->kind == SCAN_REAL && json_real_value(f) != v->d)
				__builtin_trap();
		}
	}
	json_decref(j);
	return 0;
}
