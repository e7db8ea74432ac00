/* scan: one JSON object line checked in one pass, its top-level fields found without building a tree. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ndj.h"
#include "scan.h"
#include "util.h"

/*
 * What it accepts is what jansson's json_loadb() accepts with
 * JSON_REJECT_DUPLICATES, for input already checked to be valid UTF-8
 * without NUL bytes: RFC 8259 JSON, a duplicate key in any object refused,
 * "\u0000" and unpaired surrogates refused, integers that do not fit in 64
 * bits and reals that overflow a double refused, at most SCAN_MAX_DEPTH
 * levels.  fuzz/scan.c holds the two to the same answers.
 */

void
scan_init(struct scan *s)
{
	memset(s, 0, sizeof(*s));
	sb_init(&s->arena);
	sb_init(&s->num);
}

void
scan_free(struct scan *s)
{
	free(s->v);
	free(s->keys);
	free(s->klens);
	sb_free(&s->arena);
	sb_free(&s->num);
	memset(s, 0, sizeof(*s));
}

static void
ws(struct scan *s)
{
	while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' ||
	    *s->p == '\n' || *s->p == '\r'))
		s->p++;
}

static int
hex4(const char *p, unsigned int *v)
{
	int i;

	*v = 0;
	for (i = 0; i < 4; i++) {
		*v <<= 4;
		if (p[i] >= '0' && p[i] <= '9')
			*v |= (unsigned int)(p[i] - '0');
		else if (p[i] >= 'a' && p[i] <= 'f')
			*v |= (unsigned int)(p[i] - 'a' + 10);
		else if (p[i] >= 'A' && p[i] <= 'F')
			*v |= (unsigned int)(p[i] - 'A' + 10);
		else
			return -1;
	}
	return 0;
}

static void
put_utf8(struct sbuf *sb, unsigned int cp)
{
	char b[4];

	if (cp < 0x80) {
		b[0] = (char)cp;
		sb_put(sb, b, 1);
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | cp >> 6);
		b[1] = (char)(0x80 | (cp & 0x3f));
		sb_put(sb, b, 2);
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | cp >> 12);
		b[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f));
		sb_put(sb, b, 3);
	} else {
		b[0] = (char)(0xf0 | cp >> 18);
		b[1] = (char)(0x80 | (cp >> 12 & 0x3f));
		b[2] = (char)(0x80 | (cp >> 6 & 0x3f));
		b[3] = (char)(0x80 | (cp & 0x3f));
		sb_put(sb, b, 4);
	}
}

/*
 * A string, the cursor on its opening quote: decoded into the arena,
 * NUL-terminated; its offset and length there.  0 or -1.
 */
static int
string(struct scan *s, size_t *off, size_t *len)
{
	const char *p = s->p + 1, *run;
	unsigned int cp, lo;

	*off = s->arena.len;
	for (;;) {
		for (run = p; p < s->end && *p != '"' && *p != '\\' &&
		    (unsigned char)*p >= 0x20; p++)
			;
		sb_put(&s->arena, run, (size_t)(p - run));
		if (p >= s->end || (unsigned char)*p < 0x20)
			return -1;
		if (*p == '"')
			break;
		if (++p >= s->end)
			return -1;
		switch (*p++) {
		case '"': sb_putc(&s->arena, '"'); break;
		case '\\': sb_putc(&s->arena, '\\'); break;
		case '/': sb_putc(&s->arena, '/'); break;
		case 'b': sb_putc(&s->arena, '\b'); break;
		case 'f': sb_putc(&s->arena, '\f'); break;
		case 'n': sb_putc(&s->arena, '\n'); break;
		case 'r': sb_putc(&s->arena, '\r'); break;
		case 't': sb_putc(&s->arena, '\t'); break;
		case 'u':
			if (s->end - p < 4 || hex4(p, &cp) < 0)
				return -1;
			p += 4;
			if (cp == 0 || (cp >= 0xdc00 && cp <= 0xdfff))
				return -1;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (s->end - p < 6 || p[0] != '\\' || p[1] != 'u' ||
				    hex4(p + 2, &lo) < 0 || lo < 0xdc00 ||
				    lo > 0xdfff)
					return -1;
				p += 6;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			}
			put_utf8(&s->arena, cp);
			break;
		default:
			return -1;
		}
	}
	*len = s->arena.len - *off;
	sb_putc(&s->arena, '\0');
	s->p = p + 1;
	return 0;
}

/* A number: JSON's grammar; an integer that fits in 64 bits, or a double. */
static int
number(struct scan *s, struct scan_val *v)
{
	const char *p = s->p, *start = s->p;
	int neg = 0, real = 0;
	uint64_t u = 0, lim;
	char *end;

	if (p < s->end && *p == '-') {
		neg = 1;
		p++;
	}
	if (p >= s->end)
		return -1;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (p < s->end && *p >= '0' && *p <= '9')
			p++;
	else
		return -1;
	if (p < s->end && *p == '.') {
		real = 1;
		if (++p >= s->end || *p < '0' || *p > '9')
			return -1;
		while (p < s->end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < s->end && (*p == 'e' || *p == 'E')) {
		real = 1;
		if (++p < s->end && (*p == '+' || *p == '-'))
			p++;
		if (p >= s->end || *p < '0' || *p > '9')
			return -1;
		while (p < s->end && *p >= '0' && *p <= '9')
			p++;
	}
	s->p = p;
	if (!real) {
		lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
		for (p = start + neg; p < s->p; p++) {
			if (u > (lim - (uint64_t)(*p - '0')) / 10)
				return -1;	/* too big for jansson too */
			u = u * 10 + (uint64_t)(*p - '0');
		}
		v->kind = SCAN_INT;
		v->i = neg ? (int64_t)(0 - u) : (int64_t)u;
		v->d = (double)v->i;
		return 0;
	}
	s->num.len = 0;
	sb_put(&s->num, start, (size_t)(s->p - start));
	errno = 0;
	v->d = strtod(s->num.buf, &end);
	if (errno == ERANGE && v->d != 0)
		return -1;			/* jansson: real number overflow */
	v->kind = SCAN_REAL;
	return 0;
}

static int
literal(struct scan *s, const char *word, int kind, struct scan_val *v)
{
	size_t n = strlen(word);

	if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
		return -1;
	s->p += n;
	v->kind = kind;
	return 0;
}

static int value(struct scan *, int, struct scan_val *);

/* Note a key of the object being read; -1 if it is there already. */
static int
key_seen(struct scan *s, size_t first, size_t off, size_t len)
{
	size_t i;

	for (i = first; i < s->nkeys; i++)
		if (s->klens[i] == len &&
		    memcmp(s->arena.buf + s->keys[i], s->arena.buf + off,
		    len) == 0)
			return -1;
	if (s->nkeys == s->capkeys) {
		s->capkeys = s->capkeys ? s->capkeys * 2 : 32;
		s->keys = xrealloc(s->keys, s->capkeys * sizeof(*s->keys));
		s->klens = xrealloc(s->klens, s->capkeys * sizeof(*s->klens));
	}
	s->keys[s->nkeys] = off;
	s->klens[s->nkeys++] = len;
	return 0;
}

/* An object; at depth 1, its fields are recorded. */
static int
object(struct scan *s, int depth)
{
	struct scan_val tmp, *v;
	size_t first = s->nkeys, koff, klen;

	s->p++;
	ws(s);
	if (s->p < s->end && *s->p == '}') {
		s->p++;
		return 0;
	}
	for (;;) {
		if (s->p >= s->end || *s->p != '"' || string(s, &koff, &klen) < 0 ||
		    key_seen(s, first, koff, klen) < 0)
			return -1;
		ws(s);
		if (s->p >= s->end || *s->p != ':')
			return -1;
		s->p++;
		ws(s);
		if (depth == 1) {
			if (s->n == s->cap) {
				s->cap = s->cap ? s->cap * 2 : 32;
				s->v = xrealloc(s->v, s->cap * sizeof(*s->v));
			}
			v = &s->v[s->n++];
		} else
			v = &tmp;
		memset(v, 0, sizeof(*v));
		v->koff = koff;
		v->klen = klen;
		v->raw = s->p;
		if (value(s, depth, v) < 0)
			return -1;
		v->rlen = (size_t)(s->p - v->raw);
		ws(s);
		if (s->p < s->end && *s->p == ',') {
			s->p++;
			ws(s);
			continue;
		}
		if (s->p < s->end && *s->p == '}') {
			s->p++;
			break;
		}
		return -1;
	}
	s->nkeys = first;
	return 0;
}

static int
array(struct scan *s, int depth)
{
	struct scan_val tmp;

	s->p++;
	ws(s);
	if (s->p < s->end && *s->p == ']') {
		s->p++;
		return 0;
	}
	for (;;) {
		memset(&tmp, 0, sizeof(tmp));
		if (value(s, depth, &tmp) < 0)
			return -1;
		ws(s);
		if (s->p < s->end && *s->p == ',') {
			s->p++;
			ws(s);
			continue;
		}
		if (s->p < s->end && *s->p == ']') {
			s->p++;
			return 0;
		}
		return -1;
	}
}

/* A value inside an object or array at depth (the top object is 1). */
static int
value(struct scan *s, int depth, struct scan_val *v)
{
	/* Every value counts a level, as in jansson, scalars too. */
	if (s->p >= s->end || depth + 1 > SCAN_MAX_DEPTH)
		return -1;
	switch (*s->p) {
	case '"':
		v->kind = SCAN_STRING;
		return string(s, &v->soff, &v->slen);
	case '{':
		v->kind = SCAN_OBJECT;
		return object(s, depth + 1);
	case '[':
		v->kind = SCAN_ARRAY;
		return array(s, depth + 1);
	case 't':
		return literal(s, "true", SCAN_TRUE, v);
	case 'f':
		return literal(s, "false", SCAN_FALSE, v);
	case 'n':
		return literal(s, "null", SCAN_NULL, v);
	default:
		return number(s, v);
	}
}

/*
 * Check that line is one JSON object and find its top-level fields.  The
 * line must be valid UTF-8 without NUL bytes (ndj's reader checks that).
 * 0, or -1 when it is not a JSON object or not valid JSON (the caller
 * asks jansson for the reason).
 */
int
scan_line(struct scan *s, const char *line, size_t len)
{
	size_t i;

	s->n = 0;
	s->nkeys = 0;
	s->arena.len = 0;
	s->p = line;
	s->end = line + len;
	ws(s);
	if (s->p >= s->end || *s->p != '{' || object(s, 1) < 0)
		return -1;
	ws(s);
	if (s->p != s->end)
		return -1;
	for (i = 0; i < s->n; i++) {
		s->v[i].key = s->arena.buf + s->v[i].koff;
		if (s->v[i].kind == SCAN_STRING)
			s->v[i].str = s->arena.buf + s->v[i].soff;
	}
	return 0;
}

/* The top-level field named key, or NULL. */
const struct scan_val *
scan_get(const struct scan *s, const char *key)
{
	size_t i, n = strlen(key);

	for (i = 0; i < s->n; i++)
		if (s->v[i].klen == n && memcmp(s->v[i].key, key, n) == 0)
			return &s->v[i];
	return NULL;
}
