/* pgo: the replication stream's framing, and pgoutput (logical replication protocol 1) messages decoded into event lines. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ndj.h"
#include "pgo.h"
#include "util.h"

#define OID_BOOL	16
#define OID_INT8	20
#define OID_INT2	21
#define OID_INT4	23
#define OID_OID		26
#define OID_JSON	114
#define OID_FLOAT4	700
#define OID_FLOAT8	701
#define OID_NUMERIC	1700
#define OID_JSONB	3802

struct pgo_col {
	char		*key;		/* "name": ready to copy */
	uint32_t	 type;
};

struct pgo_rel {
	uint32_t	 id;
	char		*meta;		/* "__table":"ns.name","__op":"c","__lsn": */
	struct pgo_col	*cols;
	uint16_t	 ncols;
};

/* A bounds-checked cursor over one message; bad once it overran. */
struct cursor {
	const unsigned char	*p;
	const unsigned char	*end;
	int			 bad;
};

static uint64_t
get_n(struct cursor *c, int n)
{
	uint64_t v = 0;

	if (c->end - c->p < n) {
		c->bad = 1;
		c->p = c->end;
		return 0;
	}
	while (n-- > 0)
		v = (v << 8) | *c->p++;
	return v;
}

static uint64_t
get64(struct cursor *c)
{
	return get_n(c, 8);
}

static uint32_t
get32(struct cursor *c)
{
	return (uint32_t)get_n(c, 4);
}

static uint16_t
get16(struct cursor *c)
{
	return (uint16_t)get_n(c, 2);
}

static int
get8(struct cursor *c)
{
	return (int)get_n(c, 1);
}

/* A NUL-terminated string inside the message; NULL when unterminated. */
static const char *
getstr(struct cursor *c)
{
	const unsigned char *s = c->p, *nul;

	if (c->bad || (nul = memchr(s, '\0', (size_t)(c->end - s))) == NULL) {
		c->bad = 1;
		c->p = c->end;
		return NULL;
	}
	c->p = nul + 1;
	return (const char *)s;
}

/*
 * src: the stream's identity, written in every event line as __src (NULL
 * or "": none).
 */
void
pgo_init(struct pgo *p, const char *src)
{
	struct sbuf sb;

	memset(p, 0, sizeof(*p));
	sb_init(&p->line);
	sb_init(&sb);
	if (src != NULL && *src != '\0') {
		sb_puts(&sb, "\"__src\":");
		sb_json_str(&sb, src, strlen(src));
		sb_putc(&sb, ',');
	}
	p->src_field = xstrdup(sb.buf);
	sb_free(&sb);
}

static void
free_rel(struct pgo_rel *r)
{
	uint16_t i;

	for (i = 0; i < r->ncols; i++)
		free(r->cols[i].key);
	free(r->cols);
	free(r->meta);
}

void
pgo_free(struct pgo *p)
{
	size_t i;

	for (i = 0; i < p->nrels; i++)
		free_rel(&p->rels[i]);
	free(p->rels);
	sb_free(&p->line);
	free(p->src_field);
	p->src_field = NULL;
	p->rels = NULL;
	p->nrels = 0;
}

static struct pgo_rel *
find_rel(struct pgo *p, uint32_t id)
{
	size_t i;

	for (i = 0; i < p->nrels; i++)
		if (p->rels[i].id == id)
			return &p->rels[i];
	return NULL;
}

/* Relation: remember (or replace) the table's name, columns and types. */
static int
on_relation(struct pgo *p, struct cursor *c)
{
	struct pgo_rel r, *old;
	const char *ns, *name, *col;
	struct sbuf sb, full;
	uint16_t i;

	memset(&r, 0, sizeof(r));
	r.id = get32(c);
	ns = getstr(c);
	name = getstr(c);
	get8(c);			/* replica identity */
	r.ncols = get16(c);
	if (c->bad)
		return -1;
	sb_init(&sb);
	sb_init(&full);
	sb_puts(&full, *ns ? ns : "pg_catalog");
	sb_putc(&full, '.');
	sb_puts(&full, name);
	sb_puts(&sb, "\"__table\":");
	sb_json_str(&sb, full.buf, full.len);
	sb_puts(&sb, ",\"__op\":\"c\",");
	sb_puts(&sb, p->src_field);
	sb_puts(&sb, "\"__lsn\":");
	sb_free(&full);
	r.meta = xstrdup(sb.buf);
	r.cols = xmalloc(sizeof(*r.cols) * (r.ncols ? r.ncols : 1));
	for (i = 0; i < r.ncols; i++) {
		get8(c);		/* flags */
		col = getstr(c);
		r.cols[i].type = get32(c);
		get32(c);		/* typmod */
		if (c->bad) {
			r.ncols = i;
			sb_free(&sb);
			free_rel(&r);
			return -1;
		}
		sb.len = 0;
		sb_json_str(&sb, col, strlen(col));
		sb_putc(&sb, ':');
		r.cols[i].key = xstrdup(sb.buf);
	}
	sb_free(&sb);
	if ((old = find_rel(p, r.id)) != NULL) {
		free_rel(old);
		*old = r;
	} else {
		p->rels = xrealloc(p->rels, sizeof(*p->rels) * (p->nrels + 1));
		p->rels[p->nrels++] = r;
	}
	return 0;
}

/* Whether the text form of a number is also a JSON number. */
static int
json_number(const char *s, uint32_t len)
{
	uint32_t i = 0;

	if (i < len && s[i] == '-')
		i++;
	if (i == len || s[i] < '0' || s[i] > '9')
		return 0;
	/* No leading zeros in JSON: 007 is not a number there. */
	if (s[i] == '0' && i + 1 < len && s[i + 1] >= '0' && s[i + 1] <= '9')
		return 0;
	for (; i < len; i++)
		if (strchr("0123456789.eE+-", s[i]) == NULL)
			return 0;
	return s[len - 1] >= '0' && s[len - 1] <= '9';
}

/*
 * Append a column's value, in the text form PostgreSQL sends it, typed by
 * the column's type: numbers as JSON numbers, booleans, json and jsonb
 * embedded, anything else a string.
 */
void
pgo_value(struct sbuf *sb, uint32_t type, const char *v, uint32_t len)
{
	switch (type) {
	case OID_BOOL:
		sb_puts(sb, (len == 1 && *v == 't') ? "true" : "false");
		return;
	case OID_INT2:
	case OID_INT4:
	case OID_INT8:
	case OID_OID:
	case OID_FLOAT4:
	case OID_FLOAT8:
	case OID_NUMERIC:
		/* The server's exact text: no precision lost in a double. */
		if (json_number(v, len)) {
			sb_put(sb, v, len);
			return;
		}
		break;			/* NaN, Infinity: a string */
	case OID_JSON:
	case OID_JSONB:
		/*
		 * Valid JSON from the server, but json keeps the input's
		 * layout and jsonb prints spaces: drop the whitespace
		 * outside strings, so the event is one compact line.
		 */
		{
			int in_str = 0, esc = 0;
			uint32_t i;

			sb_grow(sb, 2 * (size_t)len);	/* \n may become \\n */
			for (i = 0; i < len; i++) {
				char ch = v[i];

				if (in_str && (ch == '\n' || ch == '\r')) {
					/* Not valid JSON; still one line. */
					sb->buf[sb->len++] = '\\';
					sb->buf[sb->len++] = ch == '\n' ? 'n' : 'r';
					continue;
				}
				if (in_str) {
					if (esc)
						esc = 0;
					else if (ch == '\\')
						esc = 1;
					else if (ch == '"')
						in_str = 0;
				} else if (ch == '"')
					in_str = 1;
				else if (ch == ' ' || ch == '\t' || ch == '\n' ||
				    ch == '\r')
					continue;
				sb->buf[sb->len++] = ch;
			}
			sb->buf[sb->len] = '\0';
		}
		return;
	}
	sb_json_str(sb, v, len);
}

/* Insert: the event line. */
static int
on_insert(struct pgo *p, struct cursor *c)
{
	struct sbuf *line = &p->line;
	struct pgo_rel *r;
	uint32_t relid, len;
	uint16_t ncols, i;
	int kind;

	relid = get32(c);
	kind = get8(c);
	ncols = get16(c);
	if (c->bad || kind != 'N')
		return -1;
	if ((r = find_rel(p, relid)) == NULL) {
		snprintf(p->err, sizeof(p->err), "Insert for relation %" PRIu32
		    " before its Relation message", relid);
		return -1;
	}
	if (ncols != r->ncols) {
		snprintf(p->err, sizeof(p->err), "Insert with %u columns, "
		    "Relation has %u", ncols, r->ncols);
		return -1;
	}
	line->len = 0;
	sb_putc(line, '{');
	for (i = 0; i < ncols; i++) {
		sb_puts(line, r->cols[i].key);
		kind = get8(c);
		if (kind == 't') {
			len = get32(c);
			if (c->bad || (uint32_t)(c->end - c->p) < len)
				return -1;
			pgo_value(line, r->cols[i].type, (const char *)c->p,
			    len);
			c->p += len;
		} else if (kind == 'n' || kind == 'u')
			sb_puts(line, "null");
		else
			return -1;
		sb_putc(line, ',');
	}
	if (c->p != c->end)
		return -1;
	sb_puts(line, r->meta);
	sb_u64(line, p->lsn);
	sb_puts(line, ",\"__seq\":");
	sb_u64(line, p->seq++);
	sb_puts(line, ",\"__xid\":");
	sb_u64(line, p->xid);
	sb_puts(line, ",\"__ts_ms\":");
	sb_i64(line, p->ts_us / 1000);
	sb_puts(line, ",\"__ts_us\":");
	sb_i64(line, p->ts_us);
	sb_putc(line, '}');
	return PGO_ROW;
}

/*
 * Decode one pgoutput message (the payload of an XLogData message).
 * Returns PGO_NONE, PGO_ROW or PGO_COMMIT, or -1 for a malformed or
 * unexpected message, with p->err saying why.  Type, Origin, Update,
 * Delete, Truncate and logical decoding messages are ignored.
 */
int
pgo_decode(struct pgo *p, const unsigned char *msg, size_t len)
{
	struct cursor c = { msg + 1, msg + len, 0 };
	int rc = PGO_NONE;

	p->err[0] = '\0';
	if (len < 1) {
		snprintf(p->err, sizeof(p->err), "empty message");
		return -1;
	}
	switch (msg[0]) {
	case 'B':
		if (p->open) {
			snprintf(p->err, sizeof(p->err), "Begin inside a "
			    "transaction");
			return -1;
		}
		p->lsn = get64(&c);
		p->ts_us = (int64_t)get64(&c) + PGO_EPOCH_MS * 1000;
		p->xid = get32(&c);
		p->seq = 0;
		p->open = !c.bad;
		break;
	case 'C':
		get8(&c);		/* flags */
		get64(&c);		/* commit LSN, as in Begin */
		p->end = get64(&c);
		get64(&c);		/* commit time, as in Begin */
		if (!p->open) {
			snprintf(p->err, sizeof(p->err), "Commit outside a "
			    "transaction");
			return -1;
		}
		p->open = 0;
		rc = PGO_COMMIT;
		break;
	case 'R':
		rc = on_relation(p, &c);
		break;
	case 'I':
		if (!p->open) {
			snprintf(p->err, sizeof(p->err), "Insert outside a "
			    "transaction");
			return -1;
		}
		rc = on_insert(p, &c);
		break;
	case 'Y':		/* Type */
	case 'O':		/* Origin */
	case 'U':		/* Update */
	case 'D':		/* Delete: outbox-clean's, ignored */
	case 'T':		/* Truncate */
	case 'M':		/* logical decoding message */
		return PGO_NONE;
	default:
		snprintf(p->err, sizeof(p->err), "unknown message type 0x%02x",
		    msg[0]);
		return -1;
	}
	if (c.bad || rc < 0) {
		if (p->err[0] == '\0')
			snprintf(p->err, sizeof(p->err), "malformed '%c' "
			    "message (%zu bytes)", msg[0], len);
		return -1;
	}
	return rc;
}

static uint64_t
be64(const unsigned char *b)
{
	uint64_t v = 0;
	int i;

	for (i = 0; i < 8; i++)
		v = (v << 8) | b[i];
	return v;
}

static void
put_be64(unsigned char *b, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--) {
		b[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
}

/*
 * Split one CopyData message of the streaming replication protocol: 'w'
 * XLogData (its WAL end, and the pgoutput message as payload) or 'k' a
 * primary keepalive (its WAL end, and whether a reply is wanted).
 * Returns the type, or -1 for a message too short or of another type.
 */
int
pgo_frame(const unsigned char *m, size_t n, struct pgo_frame *f)
{
	memset(f, 0, sizeof(*f));
	if (n >= 25 && m[0] == 'w') {
		f->wal_end = be64(m + 9);
		f->payload = m + 25;
		f->len = n - 25;
		return 'w';
	}
	if (n >= 18 && m[0] == 'k') {
		f->wal_end = be64(m + 1);
		f->reply = m[17] != 0;
		return 'k';
	}
	return -1;
}

/*
 * A standby status update, 34 bytes: written, flushed and applied all at
 * pos (0 confirms nothing), the time now_ms (Unix milliseconds), and
 * whether the server should answer at once.
 */
void
pgo_status(unsigned char *b, uint64_t pos, int64_t now_ms, int reply)
{
	b[0] = 'r';
	put_be64(b + 1, pos);
	put_be64(b + 9, pos);
	put_be64(b + 17, pos);
	put_be64(b + 25, (uint64_t)((now_ms - PGO_EPOCH_MS) * 1000));
	b[33] = (unsigned char)reply;
}
