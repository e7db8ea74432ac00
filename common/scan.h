/* scan: one JSON object line checked in one pass, its top-level fields found without building a tree. */
#ifndef CQRS_SCAN_H
#define CQRS_SCAN_H

#include <stddef.h>
#include <stdint.h>

#include "ndj.h"

#define SCAN_MAX_DEPTH	2048	/* as jansson's parser */

enum {
	SCAN_STRING,
	SCAN_INT,		/* a number without fraction or exponent */
	SCAN_REAL,
	SCAN_TRUE,
	SCAN_FALSE,
	SCAN_NULL,
	SCAN_OBJECT,
	SCAN_ARRAY
};

/* A top-level field: its key, and its value as the line writes it. */
struct scan_val {
	const char	*key;		/* decoded, NUL-terminated */
	size_t		 klen;
	int		 kind;
	const char	*raw;		/* the value's text in the line */
	size_t		 rlen;
	int64_t		 i;		/* SCAN_INT */
	double		 d;		/* SCAN_INT and SCAN_REAL */
	const char	*str;		/* SCAN_STRING: decoded, NUL-terminated */
	size_t		 slen;
	size_t		 koff;		/* offsets into the arena, while scanning */
	size_t		 soff;
};

struct scan {
	struct scan_val	*v;		/* the top-level fields, in order */
	size_t		 n;
	size_t		 cap;
	struct sbuf	 arena;		/* decoded keys and strings */
	size_t		*keys;		/* arena offsets of the keys of the */
	size_t		*klens;		/* objects open, for duplicates */
	size_t		 nkeys;
	size_t		 capkeys;
	struct sbuf	 num;		/* a real number's text, for strtod */
	const char	*p;		/* the cursor, while scanning */
	const char	*end;
};

void	scan_init(struct scan *);
void	scan_free(struct scan *);
int	scan_line(struct scan *, const char *, size_t);
const struct scan_val *scan_get(const struct scan *, const char *);

#endif
