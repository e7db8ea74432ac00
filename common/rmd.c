/* rmd: the Redis read model: its keys, what the order tables say it should be, and a client as the JSON line client-get prints. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "ndj.h"
#include "rmd.h"

/* An id is decimal digits, no sign, no leading zero, at most 2^31-1. */
int
rmd_valid_id(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > 10 || s[0] == '0')
		return 0;
	for (i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return len < 10 || strncmp(s, "2147483647", 10) <= 0;
}

/* A rejected value for a message: JSON-quoted, cut after 64 bytes. */
void
rmd_quote(struct sbuf *sb, const char *s, size_t len)
{
	sb_json_str(sb, s, len > 64 ? 64 : len);
	if (len > 64)
		sb_puts(sb, "...");
}

/*
 * The order tables' truth: an order's total is the sum of its items at
 * the prices they were ordered at; the read model adds the totals of a
 * client's orders, in exact cents, and keeps the latest placement date.
 * One client ($1), or every client with an order, ordered by id.
 */
const char rmd_truth_one_sql[] =
    "SELECT c.id, c.name, c.email, t.cents, t.last FROM client c"
    " JOIN (SELECT o.id_client,"
    " (sum(i.price_when_item_was_ordered * i.quantity) * 100)::bigint"
    " AS cents, max(o.placement_date) AS last"
    " FROM \"order\" o JOIN order_item i ON i.id_order = o.id"
    " WHERE o.id_client = $1"
    " GROUP BY o.id_client) t ON t.id_client = c.id";

const char rmd_truth_all_sql[] =
    "SELECT c.id, c.name, c.email, t.cents, t.last FROM client c"
    " JOIN (SELECT o.id_client,"
    " (sum(i.price_when_item_was_ordered * i.quantity) * 100)::bigint"
    " AS cents, max(o.placement_date) AS last"
    " FROM \"order\" o JOIN order_item i ON i.id_order = o.id"
    " GROUP BY o.id_client) t ON t.id_client = c.id"
    " ORDER BY c.id";

/* A decimal integer that fits in 64 bits: 0 with *v set, or -1. */
int
rmd_integer(const char *s, int64_t *v)
{
	char *end;
	long long x;

	if (s == NULL || *s == '\0' || !(*s == '-' || (*s >= '0' && *s <= '9')))
		return -1;
	errno = 0;
	x = strtoll(s, &end, 10);
	if (*end != '\0' || errno != 0)
		return -1;
	*v = x;
	return 0;
}

static int
integer(const char *s)
{
	int64_t v;

	return rmd_integer(s, &v) == 0;
}

/* A total in cents as a number with at most two decimals: 3000.0, 12.5. */
void
rmd_put_total(struct sbuf *sb, int64_t c)
{
	uint64_t a = c < 0 ? (uint64_t)0 - (uint64_t)c : (uint64_t)c;
	char buf[48];

	if (a % 100 == 0)
		snprintf(buf, sizeof(buf), "%s%" PRIu64 ".0", c < 0 ? "-" : "",
		    a / 100);
	else if (a % 10 == 0)
		snprintf(buf, sizeof(buf), "%s%" PRIu64 ".%" PRIu64,
		    c < 0 ? "-" : "", a / 100, a % 100 / 10);
	else
		snprintf(buf, sizeof(buf), "%s%" PRIu64 ".%02" PRIu64,
		    c < 0 ? "-" : "", a / 100, a % 100);
	sb_puts(sb, buf);
}

static void
put_total(struct sbuf *sb, const char *cents)
{
	int64_t c = 0;

	rmd_integer(cents, &c);
	rmd_put_total(sb, c);
}

/*
 * Append the line of client id from the reply to RMD_HMGET:
 * {"name","email","total","last_purchase"} as the AWS sample has them,
 * then "id_client".  0 when appended; 1 if the client has no read model;
 * -1 with err set when the hash is incomplete or malformed (bad data), or
 * the reply is not HMGET's (err says what Redis said).
 */
int
rmd_format(struct sbuf *sb, const char *id, const redisReply *r, char *err,
    size_t errlen)
{
	static const char *const names[] = { "name", "email", "total",
	    "last_purchase" };
	redisReply **e;
	size_t k;

	if (r->type == REDIS_REPLY_ERROR) {
		snprintf(err, errlen, "redis: %s", r->str);
		return -2;
	}
	if (r->type != REDIS_REPLY_ARRAY || r->elements != 4) {
		snprintf(err, errlen, "redis: unexpected reply to HMGET");
		return -2;
	}
	e = r->element;
	for (k = 0; k < 4; k++)
		if (e[k]->type != REDIS_REPLY_STRING)
			break;
	if (k < 4) {
		for (k = 0; k < 4 && e[k]->type == REDIS_REPLY_NIL; k++)
			;
		if (k == 4)
			return 1;
		for (k = 0; k < 4 && e[k]->type == REDIS_REPLY_STRING; k++)
			;
		snprintf(err, errlen, "client %s: incomplete read model "
		    "(field %s missing)", id, names[k]);
		return -1;
	}
	if (!integer(e[2]->str) || !integer(e[3]->str)) {
		snprintf(err, errlen, "client %s: malformed read model (%s is "
		    "not an integer)", id, integer(e[2]->str) ?
		    "last_purchase" : "total");
		return -1;
	}
	sb_puts(sb, "{\"name\":");
	sb_json_str(sb, e[0]->str, e[0]->len);
	sb_puts(sb, ",\"email\":");
	sb_json_str(sb, e[1]->str, e[1]->len);
	sb_puts(sb, ",\"total\":");
	put_total(sb, e[2]->str);
	sb_puts(sb, ",\"last_purchase\":");
	sb_put(sb, e[3]->str, e[3]->len);
	sb_puts(sb, ",\"id_client\":");
	sb_puts(sb, id);
	sb_putc(sb, '}');
	return 0;
}
