/* msg: the messages a queue carries (our event line, the SNS envelope, the sample's pipe message, Debezium's row, a Kafka record), unwrapped. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ack.h"
#include "evt.h"
#include "msg.h"
#include "ndj.h"
#include "util.h"

#define MAX_DEPTH	64

/*
 * A scanner of JSON text that jansson has already accepted: it finds
 * where members and values are, so that they can be copied as the
 * producer wrote them (3000.00 stays 3000.00, and no double is printed
 * back with 17 digits).
 */
static const char *
ws(const char *p, const char *e)
{
	while (p < e && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
		p++;
	return p;
}

static const char *
skip_str(const char *p, const char *e)
{
	if (p >= e || *p != '"')
		return NULL;
	for (p++; p < e; p++) {
		if (*p == '\\')
			p++;
		else if (*p == '"')
			return p + 1;
	}
	return NULL;
}

static const char *
skip_val(const char *p, const char *e, int depth)
{
	if (depth > MAX_DEPTH || (p = ws(p, e)) >= e)
		return NULL;
	if (*p == '"')
		return skip_str(p, e);
	if (*p == '{' || *p == '[') {
		char close = *p == '{' ? '}' : ']';

		p = ws(p + 1, e);
		if (p < e && *p == close)
			return p + 1;
		for (;;) {
			if (close == '}') {
				if ((p = skip_str(ws(p, e), e)) == NULL ||
				    (p = ws(p, e)) >= e || *p != ':')
					return NULL;
				p++;
			}
			if ((p = skip_val(p, e, depth + 1)) == NULL ||
			    (p = ws(p, e)) >= e)
				return NULL;
			if (*p == close)
				return p + 1;
			if (*p != ',')
				return NULL;
			p++;
		}
	}
	while (p < e && *p != ',' && *p != '}' && *p != ']' && *p != ' ' &&
	    *p != '\t' && *p != '\n' && *p != '\r')
		p++;
	return p;
}

/* Iterate the members of the object at [*p, e): 1 with spans, 0 at its end, -1 bad. */
struct member {
	const char	*k, *ke;	/* the key, quotes included */
	const char	*v, *ve;
};

static int
next_member(const char **p, const char *e, int *first, struct member *m)
{
	const char *q = ws(*p, e);

	if (*first) {
		if (q >= e || *q != '{')
			return -1;
		q = ws(q + 1, e);
		*first = 0;
		if (q < e && *q == '}')
			return 0;
	} else {
		if (q >= e)
			return -1;
		if (*q == '}')
			return 0;
		if (*q != ',')
			return -1;
		q = ws(q + 1, e);
	}
	m->k = q;
	if ((m->ke = skip_str(q, e)) == NULL || (q = ws(m->ke, e)) >= e ||
	    *q != ':')
		return -1;
	m->v = ws(q + 1, e);
	if ((m->ve = skip_val(m->v, e, 0)) == NULL)
		return -1;
	*p = m->ve;
	return 1;
}

static int
key_is(const struct member *m, const char *key)
{
	size_t n = strlen(key);

	return (size_t)(m->ke - m->k) == n + 2 && memcmp(m->k + 1, key, n) == 0;
}

/* The raw value of member key of the object text, or -1. */
static int
raw_member(const char *t, size_t len, const char *key, const char **v,
    size_t *vlen)
{
	const char *p = t, *e = t + len;
	struct member m;
	int first = 1, rc;

	while ((rc = next_member(&p, e, &first, &m)) == 1)
		if (key_is(&m, key)) {
			*v = m.v;
			*vlen = (size_t)(m.ve - m.v);
			return 0;
		}
	return -1;
}

/*
 * Append the members of the object text [t, t+len) whose names do not
 * start with "__", as written, separated by commas.  The number copied,
 * or -1 if the text is not an object.
 */
int
msg_cols(const char *t, size_t len, struct sbuf *out)
{
	const char *p = t, *e = t + len;
	struct member m;
	int first = 1, rc, n = 0;

	while ((rc = next_member(&p, e, &first, &m)) == 1) {
		if (m.ke - m.k >= 4 && m.k[1] == '_' && m.k[2] == '_')
			continue;
		if (n++ > 0 || out->len > 0)
			sb_putc(out, ',');
		sb_put(out, m.k, (size_t)(m.ke - m.k));
		sb_putc(out, ':');
		sb_put(out, m.v, (size_t)(m.ve - m.v));
	}
	return rc < 0 ? -1 : n;
}

void
msg_init(struct msg_event *ev)
{
	memset(ev, 0, sizeof(*ev));
	sb_init(&ev->cols);
}

void
msg_free(struct msg_event *ev)
{
	sb_free(&ev->cols);
}

static int
why(char *w, size_t wlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int
why(char *w, size_t wlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(w, wlen, fmt, ap);
	va_end(ap);
	return MSG_BAD;
}

static void
int_text(json_t *j, char *out, size_t len)
{
	out[0] = '\0';
	if (json_is_integer(j))
		snprintf(out, len, "%" JSON_INTEGER_FORMAT,
		    json_integer_value(j));
}

/* The id in a Kafka key as the JsonConverter writes it, with or without schema. */
static int64_t
key_id(json_t *k)
{
	json_t *p;

	if ((p = json_object_get(k, "payload")) != NULL &&
	    json_object_get(k, "schema") != NULL)
		k = p;
	if (json_is_integer(k))
		return json_integer_value(k);
	p = json_object_get(k, "id");
	return json_is_integer(p) ? json_integer_value(p) : -1;
}

/*
 * Unwrap a message body: the SNS envelope (raw delivery off) around any
 * of the others; the sample's pipe message {"key":K,"value":V}; a
 * JsonConverter value {"schema":..,"payload":ROW}; or a row, flat, as
 * ExtractNewRecordState or outbox-tail writes it.  attr_table, the
 * message's "table" attribute, names the table when the row does not.
 * MSG_EVENT with ev filled, MSG_SKIP for a delete or a tombstone, or
 * MSG_BAD with the reason in w.
 */
int
msg_parse(const char *body, size_t len, const char *attr_table,
    struct msg_event *ev, char *w, size_t wlen)
{
	json_error_t jerr;
	json_t *root, *o, *j, *k, *v, *inner = NULL;
	const char *t = body, *s, *tb;
	char *texts = NULL;
	size_t tlen = len, n;
	int64_t kid = -1, id = -1;
	int rc = MSG_BAD, has_key = 0;

	ev->cols.len = 0;
	ev->cols.buf[0] = '\0';
	ev->table[0] = ev->xid[0] = ev->ts_ms[0] = '\0';
	ev->origin_src[0] = ev->origin_lsn[0] = ev->origin_seq[0] = '\0';
	ev->id = -1;
	ev->shape = "row";
	if ((root = json_loadb(body, len, JSON_REJECT_DUPLICATES |
	    JSON_DECODE_ANY, &jerr)) == NULL)
		return why(w, wlen, "not JSON: %s (column %d)", jerr.text,
		    jerr.column);
	o = root;
	if (json_is_null(o)) {
		rc = MSG_SKIP;
		goto out;
	}
	if (!json_is_object(o)) {
		why(w, wlen, "not a JSON object");
		goto out;
	}
	/* The SNS envelope: the message is a string of JSON. */
	j = json_object_get(o, "Type");
	if (json_is_string(j) && strcmp(json_string_value(j), "Notification")
	    == 0 && json_is_string(json_object_get(o, "Message"))) {
		ev->shape = "SNS envelope";
		v = json_object_get(json_object_get(json_object_get(o,
		    "MessageAttributes"), "table"), "Value");
		if (attr_table == NULL && json_is_string(v))
			attr_table = json_string_value(v);
		tlen = json_string_length(json_object_get(o, "Message"));
		texts = xmalloc(tlen + 1);
		memcpy(texts, json_string_value(json_object_get(o, "Message")),
		    tlen + 1);
		t = texts;
		if ((inner = json_loadb(t, tlen, JSON_REJECT_DUPLICATES |
		    JSON_DECODE_ANY, &jerr)) == NULL) {
			why(w, wlen, "SNS envelope: Message: not JSON: %s "
			    "(column %d)", jerr.text, jerr.column);
			goto out;
		}
		o = inner;
		if (json_is_null(o)) {
			rc = MSG_SKIP;
			goto out;
		}
		if (!json_is_object(o)) {
			why(w, wlen, "SNS envelope: Message: not a JSON object");
			goto out;
		}
	}
	/* The sample's pipe message, {"key":K,"value":V}. */
	if ((v = json_object_get(o, "value")) != NULL &&
	    (k = json_object_get(o, "key")) != NULL &&
	    json_object_get(o, "id") == NULL) {
		ev->shape = ev->shape[0] == 'S' ? "SNS envelope, pipe message" :
		    "pipe message";
		has_key = 1;
		kid = key_id(k);
		if (json_is_null(v)) {
			rc = MSG_SKIP;
			goto out;
		}
		if (!json_is_object(v) || raw_member(t, tlen, "value", &s, &n)
		    < 0) {
			why(w, wlen, "value: not a JSON object");
			goto out;
		}
		o = v;
		t = s;
		tlen = n;
	}
	/* A JsonConverter value with its schema. */
	if ((v = json_object_get(o, "payload")) != NULL &&
	    json_object_get(o, "schema") != NULL) {
		if (json_is_null(v)) {
			rc = MSG_SKIP;
			goto out;
		}
		if (!json_is_object(v) || raw_member(t, tlen, "payload", &s,
		    &n) < 0) {
			why(w, wlen, "payload: not a JSON object");
			goto out;
		}
		o = v;
		t = s;
		tlen = n;
	}
	/* The row. */
	j = json_object_get(o, "__deleted");
	if (json_is_true(j) || (json_is_string(j) &&
	    strcmp(json_string_value(j), "true") == 0)) {
		rc = MSG_SKIP;
		goto out;
	}
	if ((j = json_object_get(o, "__op")) != NULL) {
		if (!json_is_string(j) || json_string_length(j) != 1) {
			why(w, wlen, "__op: not one letter");
			goto out;
		}
		s = json_string_value(j);
		if (*s == 'd') {
			rc = MSG_SKIP;
			goto out;
		}
		if (*s != 'c' && *s != 'r') {
			why(w, wlen, "__op: \"%s\" is not an insert", s);
			goto out;
		}
	}
	if ((j = json_object_get(o, "__table")) != NULL) {
		if (!json_is_string(j) || json_string_length(j) == 0 ||
		    json_string_length(j) > 120) {
			why(w, wlen, "__table: not a table name");
			goto out;
		}
		tb = json_string_value(j);
		if (strchr(tb, '.') == NULL) {
			v = json_object_get(o, "__schema");
			snprintf(ev->table, sizeof(ev->table), "%s.%s",
			    json_is_string(v) ? json_string_value(v) : "public",
			    tb);
		} else
			snprintf(ev->table, sizeof(ev->table), "%s", tb);
	} else if (attr_table != NULL && *attr_table != '\0' &&
	    strlen(attr_table) <= 120)
		snprintf(ev->table, sizeof(ev->table), "%s", attr_table);
	else
		snprintf(ev->table, sizeof(ev->table), "%s", EVT_TABLE);
	if ((j = json_object_get(o, "id")) != NULL) {
		if (!json_is_integer(j) || json_integer_value(j) < 1) {
			why(w, wlen, "id: not an integer from 1");
			goto out;
		}
		id = json_integer_value(j);
	}
	if (has_key && kid >= 1 && id >= 1 && kid != id) {
		why(w, wlen, "key: id %" PRId64 ", but the row's id is %" PRId64,
		    kid, id);
		goto out;
	}
	if (strcmp(ev->table, EVT_TABLE) == 0 && id < 1 && kid < 1) {
		why(w, wlen, "id: missing: an outbox row needs its id, which "
		    "makes it count once");
		goto out;
	}
	if (id < 1 && kid >= 1) {
		sb_puts(&ev->cols, "\"id\":");
		sb_i64(&ev->cols, kid);
		id = kid;
	}
	if (msg_cols(t, tlen, &ev->cols) < 0) {
		why(w, wlen, "not a JSON object");
		goto out;
	}
	ev->id = id;
	int_text(json_object_get(o, "__xid"), ev->xid, sizeof(ev->xid));
	int_text(json_object_get(o, "__ts_ms"), ev->ts_ms, sizeof(ev->ts_ms));
	j = json_object_get(o, "__src");
	if (json_is_string(j) && ack_src_valid(json_string_value(j)))
		snprintf(ev->origin_src, sizeof(ev->origin_src), "%s",
		    json_string_value(j));
	int_text(json_object_get(o, "__lsn"), ev->origin_lsn,
	    sizeof(ev->origin_lsn));
	int_text(json_object_get(o, "__seq"), ev->origin_seq,
	    sizeof(ev->origin_seq));
	if (json_object_get(o, "__lsn") != NULL && ev->shape[0] == 'r')
		ev->shape = "event line";
	else if (ev->shape[0] == 'r')
		ev->shape = "row";
	rc = MSG_EVENT;
out:
	json_decref(inner);
	json_decref(root);
	free(texts);
	return rc;
}

/*
 * A Kafka record: its key (NULL if none) and its value (NULL or empty: a
 * tombstone, skipped).  A key that is a JSON object, as Debezium's
 * JsonConverter writes it with or without its schema, gives the row's id
 * when the value lacks it and must agree with it; any other key, such as
 * event-publish's client id, is left aside.  Returns as msg_parse().
 */
int
msg_parse_kv(const char *key, size_t klen, const char *val, size_t vlen,
    const char *attr_table, struct msg_event *ev, char *w, size_t wlen)
{
	json_error_t jerr;
	json_t *k, *v;
	struct sbuf sb;
	size_t i;
	int rc;

	if (val == NULL || vlen == 0) {
		ev->cols.len = 0;
		ev->id = -1;
		ev->shape = "tombstone";
		return MSG_SKIP;
	}
	for (i = 0; key != NULL && i < klen && (key[i] == ' ' ||
	    key[i] == '\t' || key[i] == '\n' || key[i] == '\r'); i++)
		;
	if (key == NULL || i == klen || key[i] != '{')
		return msg_parse(val, vlen, attr_table, ev, w, wlen);
	if ((k = json_loadb(key, klen, JSON_REJECT_DUPLICATES, &jerr)) ==
	    NULL)
		return why(w, wlen, "key: not JSON: %s (column %d)", jerr.text,
		    jerr.column);
	json_decref(k);
	if ((v = json_loadb(val, vlen, JSON_REJECT_DUPLICATES |
	    JSON_DECODE_ANY, &jerr)) == NULL)
		return why(w, wlen, "not JSON: %s (column %d)", jerr.text,
		    jerr.column);
	json_decref(v);
	/* As the sample's pipe message: {"key":K,"value":V}. */
	sb_init(&sb);
	sb_puts(&sb, "{\"key\":");
	sb_put(&sb, key, klen);
	sb_puts(&sb, ",\"value\":");
	sb_put(&sb, val, vlen);
	sb_putc(&sb, '}');
	rc = msg_parse(sb.buf, sb.len, attr_table, ev, w, wlen);
	sb_free(&sb);
	if (rc != MSG_BAD)
		ev->shape = "Kafka record";
	return rc;
}
