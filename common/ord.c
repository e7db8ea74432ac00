/* ord: one order request: its checks (messages name the field) and its placement in PostgreSQL, for order-place and cqrs-httpd. */
#include <err.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "db.h"
#include "ndj.h"
#include "ord.h"

/*
 * Through the function (scripts/schema.sql): it checks the arguments
 * again, writes the order, its items, the outbox row and the request's
 * key, and names what it refuses as ord_check() does.
 */
static const char func_sql[] =
    "SELECT id_order, id_event, order_total, placement_date, replayed"
    " FROM cqrs_place_order($1::int, $2::int[], $3::int[], $4::text)";

/*
 * A database without the function (the AWS sample's): one statement
 * writes the order, its items at the current prices and the outbox row.
 * A missing product leaves a NULL price (rejected by NOT NULL, or by the
 * product foreign key) and a missing client fails the foreign key: either
 * way the statement, and so the order, writes nothing.
 */
static const char plain_sql[] =
    "WITH t AS (SELECT floor(extract(epoch FROM statement_timestamp()))"
    "::bigint AS ts),"
    " c AS (SELECT id, name, email FROM client WHERE id = $1),"
    " x AS (SELECT a.pid, a.q, a.n, p.price"
    " FROM unnest($2::int[], $3::int[]) WITH ORDINALITY AS a(pid, q, n)"
    " LEFT JOIN product p ON p.id = a.pid),"
    " o AS (INSERT INTO \"order\" (id_client, placement_date)"
    " SELECT $1, ts FROM t RETURNING id),"
    " i AS (INSERT INTO order_item (id_order, id_product,"
    " price_when_item_was_ordered, quantity)"
    " SELECT o.id, x.pid, x.price, x.q FROM o, x ORDER BY x.n),"
    " e AS (INSERT INTO order_event (id_client, name, email, order_total,"
    " event_date) SELECT c.id, c.name, c.email,"
    " (SELECT sum(x.price * x.q) FROM x), t.ts FROM c, t"
    " RETURNING id, order_total)"
    " SELECT o.id, e.id, e.order_total, t.ts FROM o, e, t";

/* Which part of an order the plain statement refused it for. */
static const char diag_sql[] =
    "SELECT NOT EXISTS (SELECT 1 FROM client WHERE id = $1),"
    " (SELECT n FROM unnest($2::int[]) WITH ORDINALITY AS a(pid, n)"
    " WHERE NOT EXISTS (SELECT 1 FROM product p WHERE p.id = a.pid)"
    " ORDER BY n LIMIT 1)";

static const char detect_sql[] =
    "SELECT to_regprocedure('cqrs_place_order(integer,integer[],integer[],"
    "text)') IS NOT NULL";

void
ord_init(struct ord *o)
{
	memset(o, 0, sizeof(*o));
	sb_init(&o->pids);
	sb_init(&o->qtys);
}

void
ord_free(struct ord *o)
{
	sb_free(&o->pids);
	sb_free(&o->qtys);
}

static int
want_id(json_t *v)
{
	return json_is_integer(v) && json_integer_value(v) > 0;
}

/* Whether s (len bytes) is 1 to 255 printable ASCII characters, no space. */
int
ord_valid_key(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > ORD_KEY_MAX)
		return 0;
	for (i = 0; i < len; i++)
		if (s[i] < 0x21 || s[i] > 0x7e)
			return 0;
	return 1;
}

/*
 * Check one request and fill o.  0 if valid; -1 with err set to the field
 * and the reason ("products[1].quantity: must be ...").  Unknown keys are
 * refused: a misspelt key must not pass as a smaller order.
 */
int
ord_check(json_t *req, struct ord *o, char *err, size_t errlen)
{
	json_t *v, *products, *item;
	const char *key;
	size_t i;

	o->key[0] = '\0';
	json_object_foreach(req, key, v) {
		if (strcmp(key, "id_client") != 0 &&
		    strcmp(key, "products") != 0 &&
		    strcmp(key, "request_id") != 0) {
			snprintf(err, errlen, "%s: unknown key", key);
			return -1;
		}
	}
	if ((v = json_object_get(req, "request_id")) != NULL) {
		if (!json_is_string(v) || !ord_valid_key(json_string_value(v),
		    json_string_length(v))) {
			snprintf(err, errlen, "request_id: must be a string of 1 "
			    "to %d printable ASCII characters", ORD_KEY_MAX);
			return -1;
		}
		memcpy(o->key, json_string_value(v), json_string_length(v) + 1);
	}
	v = json_object_get(req, "id_client");
	if (v == NULL) {
		snprintf(err, errlen, "id_client: missing");
		return -1;
	}
	if (!want_id(v)) {
		snprintf(err, errlen, "id_client: must be a positive integer");
		return -1;
	}
	o->id_client = json_integer_value(v);
	if (o->id_client > INT32_MAX) {
		snprintf(err, errlen, "id_client: unknown client %"
		    JSON_INTEGER_FORMAT, o->id_client);
		return -1;
	}
	products = json_object_get(req, "products");
	if (products == NULL) {
		snprintf(err, errlen, "products: missing");
		return -1;
	}
	if (!json_is_array(products) || json_array_size(products) == 0) {
		snprintf(err, errlen, "products: must be a non-empty array");
		return -1;
	}
	if (json_array_size(products) > ORD_MAX_PRODUCTS) {
		snprintf(err, errlen, "products: more than %d entries",
		    ORD_MAX_PRODUCTS);
		return -1;
	}
	o->pids.len = o->qtys.len = 0;
	sb_putc(&o->pids, '{');
	sb_putc(&o->qtys, '{');
	json_array_foreach(products, i, item) {
		if (!json_is_object(item)) {
			snprintf(err, errlen, "products[%zu]: must be an object",
			    i);
			return -1;
		}
		json_object_foreach(item, key, v) {
			if (strcmp(key, "id_product") != 0 &&
			    strcmp(key, "quantity") != 0) {
				snprintf(err, errlen, "products[%zu].%s: unknown "
				    "key", i, key);
				return -1;
			}
		}
		v = json_object_get(item, "id_product");
		if (!want_id(v)) {
			snprintf(err, errlen, "products[%zu].id_product: %s", i,
			    v ? "must be a positive integer" : "missing");
			return -1;
		}
		if (json_integer_value(v) > INT32_MAX) {
			snprintf(err, errlen, "products[%zu].id_product: unknown "
			    "product %" JSON_INTEGER_FORMAT, i,
			    json_integer_value(v));
			return -1;
		}
		if (i > 0) {
			sb_putc(&o->pids, ',');
			sb_putc(&o->qtys, ',');
		}
		sb_i64(&o->pids, json_integer_value(v));
		v = json_object_get(item, "quantity");
		if (v == NULL || !json_is_integer(v) ||
		    json_integer_value(v) < 1 ||
		    json_integer_value(v) > ORD_MAX_QUANTITY) {
			snprintf(err, errlen, "products[%zu].quantity: %s", i,
			    v ? "must be an integer from 1 to 1000000" :
			    "missing");
			return -1;
		}
		sb_i64(&o->qtys, json_integer_value(v));
	}
	sb_putc(&o->pids, '}');
	sb_putc(&o->qtys, '}');
	o->nproducts = json_array_size(products);
	return 0;
}

/*
 * A request body (one JSON object, as an order line holds it) into o, with
 * the NDJSON reader's rules: no NUL byte, valid UTF-8, no duplicate keys.
 * 0, or -1 with err set.
 */
int
ord_parse(const char *buf, size_t len, struct ord *o, char *err,
    size_t errlen)
{
	json_error_t jerr;
	json_t *req;
	const char *nul;
	long bad;
	int rc;

	if ((nul = memchr(buf, '\0', len)) != NULL) {
		snprintf(err, errlen, "NUL byte at column %zu",
		    (size_t)(nul - buf) + 1);
		return -1;
	}
	if ((bad = ndj_utf8_check(buf, len)) >= 0) {
		snprintf(err, errlen, "invalid UTF-8 at column %ld", bad + 1);
		return -1;
	}
	req = json_loadb(buf, len, JSON_REJECT_DUPLICATES, &jerr);
	if (req == NULL) {
		snprintf(err, errlen, "%s (column %d)", jerr.text, jerr.column);
		return -1;
	}
	if (!json_is_object(req)) {
		snprintf(err, errlen, "not a JSON object");
		json_decref(req);
		return -1;
	}
	rc = ord_check(req, o, err, errlen);
	json_decref(req);
	return rc;
}

const char *
ord_path_name(enum ord_path path)
{
	return path == ORD_FUNCTION ? "the function cqrs_place_order()" :
	    "plain SQL (the database has no cqrs_place_order())";
}

/*
 * Find how this database takes orders and prepare the statements:
 * "ord_begin", "ord_place" (parameters: client, products, quantities and,
 * through the function, the request's key) and "ord_commit".  0, or an
 * exit code with msg set (69, 77, 78...).
 */
int
ord_prepare(PGconn *conn, enum ord_path *path, char *msg, size_t msglen)
{
	static const char *const names[] = { "ord_begin", "ord_place",
	    "ord_commit" };
	const char *sqls[3] = { "BEGIN", NULL, "COMMIT" };
	PGresult *res;
	int i, rc;

	res = PQexec(conn, detect_sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		snprintf(msg, msglen, "database: %s", db_message(res, conn));
		rc = db_exit_code(res, conn);
		PQclear(res);
		return rc == EX_DATAERR ? EX_SOFTWARE : rc;
	}
	*path = strcmp(PQgetvalue(res, 0, 0), "t") == 0 ? ORD_FUNCTION :
	    ORD_PLAIN;
	PQclear(res);
	sqls[1] = *path == ORD_FUNCTION ? func_sql : plain_sql;
	for (i = 0; i < 3; i++) {
		res = PQprepare(conn, names[i], sqls[i], 0, NULL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			snprintf(msg, msglen, "database: %s",
			    db_message(res, conn));
			rc = db_exit_code(res, conn);
			PQclear(res);
			return rc == EX_DATAERR ? EX_SOFTWARE : rc;
		}
		PQclear(res);
	}
	return 0;
}

/* The parameters of "ord_place" for o; idbuf holds the client id. */
static void
params(const struct ord *o, char idbuf[24], const char *p[4])
{
	snprintf(idbuf, 24, "%" JSON_INTEGER_FORMAT, o->id_client);
	p[0] = idbuf;
	p[1] = o->pids.buf;
	p[2] = o->qtys.buf;
	p[3] = o->key[0] != '\0' ? o->key : NULL;
}

/*
 * Queue one order in a pipeline: BEGIN, the order, COMMIT.  0, or -1 when
 * libpq could not queue it (the connection is gone).
 */
int
ord_send(PGconn *conn, enum ord_path path, const struct ord *o)
{
	const char *p[4];
	char idbuf[24];

	params(o, idbuf, p);
	/* The plain statement takes three parameters, the function four. */
	if (PQsendQueryPrepared(conn, "ord_begin", 0, NULL, NULL, NULL, 0) != 1 ||
	    PQsendQueryPrepared(conn, "ord_place", path == ORD_FUNCTION ? 4 : 3,
	    p, NULL, NULL, 0) != 1 ||
	    PQsendQueryPrepared(conn, "ord_commit", 0, NULL, NULL, NULL, 0) != 1)
		return -1;
	return 0;
}

/* The result of "ord_place" into r: 0, or -1 if it is not one row. */
int
ord_result(const PGresult *res, struct ord_result *r)
{
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
	    PQnfields(res) < 4)
		return -1;
	snprintf(r->id_order, sizeof(r->id_order), "%s", PQgetvalue(res, 0, 0));
	snprintf(r->id_event, sizeof(r->id_event), "%s", PQgetvalue(res, 0, 1));
	snprintf(r->total, sizeof(r->total), "%s", PQgetvalue(res, 0, 2));
	snprintf(r->date, sizeof(r->date), "%s", PQgetvalue(res, 0, 3));
	r->replayed = PQnfields(res) > 4 &&
	    strcmp(PQgetvalue(res, 0, 4), "t") == 0;
	return 0;
}

/*
 * The fields of a placed order, without braces: "id_order":..,"id_client":
 * ..,"order_total":..,"placement_date":..,"id_event":.., then the
 * request_id and "replayed":true when they apply.
 */
void
ord_result_json(struct sbuf *sb, const struct ord *o,
    const struct ord_result *r)
{
	sb_puts(sb, "\"id_order\":");
	sb_puts(sb, r->id_order);
	sb_puts(sb, ",\"id_client\":");
	sb_i64(sb, o->id_client);
	sb_puts(sb, ",\"order_total\":");
	sb_puts(sb, r->total);
	sb_puts(sb, ",\"placement_date\":");
	sb_puts(sb, r->date);
	sb_puts(sb, ",\"id_event\":");
	sb_puts(sb, r->id_event);
	if (o->key[0] != '\0') {
		sb_puts(sb, ",\"request_id\":");
		sb_json_str(sb, o->key, strlen(o->key));
	}
	if (r->replayed)
		sb_puts(sb, ",\"replayed\":true");
}

/*
 * Why the database refused o (res is the failed result), as ord_check
 * would say it: the function names the field itself; for the plain
 * statement, ask which client or product was unknown.  Returns the exit
 * code (65 for the order's data) with msg set.  Only on a connection that
 * is not in a failed transaction or a pipeline.
 */
int
ord_rejected(PGconn *conn, const struct ord *o, const PGresult *res,
    char *msg, size_t msglen)
{
	const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	const char *p[2];
	char idbuf[24];
	PGresult *d;
	int rc = db_exit_code(res, conn);

	if (rc == EX_DATAERR && m != NULL && (strncmp(m, "id_client: ", 11) ==
	    0 || strncmp(m, "products", 8) == 0 || strncmp(m, "order_total: ",
	    13) == 0 || strncmp(m, "request_id: ", 12) == 0)) {
		snprintf(msg, msglen, "%s", db_message(res, conn));
		return rc;
	}
	if (st != NULL && (strcmp(st, "23503") == 0 ||
	    strcmp(st, "23502") == 0) && conn != NULL &&
	    PQstatus(conn) == CONNECTION_OK) {
		snprintf(idbuf, sizeof(idbuf), "%" JSON_INTEGER_FORMAT,
		    o->id_client);
		p[0] = idbuf;
		p[1] = o->pids.buf;
		d = PQexecParams(conn, diag_sql, 2, NULL, p, NULL, NULL, 0);
		if (PQresultStatus(d) == PGRES_TUPLES_OK && PQntuples(d) == 1) {
			if (strcmp(PQgetvalue(d, 0, 0), "t") == 0) {
				snprintf(msg, msglen, "id_client: unknown client "
				    "%s", idbuf);
				PQclear(d);
				return EX_DATAERR;
			}
			if (!PQgetisnull(d, 0, 1)) {
				long n = atol(PQgetvalue(d, 0, 1)) - 1;
				const char *s = o->pids.buf + 1;

				for (long k = 0; k < n && strchr(s, ',');
				    k++)
					s = strchr(s, ',') + 1;
				snprintf(msg, msglen, "products[%ld].id_product: "
				    "unknown product %.*s", n,
				    (int)strcspn(s, ",}"), s);
				PQclear(d);
				return EX_DATAERR;
			}
		}
		PQclear(d);
	}
	if (st != NULL && strcmp(st, "22003") == 0) {
		snprintf(msg, msglen, "order_total: out of range");
		return EX_DATAERR;
	}
	snprintf(msg, msglen, "%s", db_message(res, conn));
	return rc;
}

/*
 * Place one order in its own transaction, in one round trip (the function
 * or the plain statement, each an implicit transaction).  0 with r set;
 * otherwise the exit code with msg set: 65 refused (msg names the field),
 * 69 the connection failed (if it failed after sending, the order may or
 * may not exist: msg says so), 75 worth retrying, 77, 78.
 */
int
ord_place(PGconn *conn, enum ord_path path, const struct ord *o,
    struct ord_result *r, char *msg, size_t msglen)
{
	const char *p[4];
	char idbuf[24];
	PGresult *res;
	int rc;

	if (path == ORD_PLAIN && o->key[0] != '\0') {
		snprintf(msg, msglen, "request_id: this database has no "
		    "cqrs_place_order() to keep it (install scripts/schema.sql)");
		return EX_CONFIG;
	}
	params(o, idbuf, p);
	res = PQexecPrepared(conn, "ord_place", path == ORD_FUNCTION ? 4 : 3,
	    p, NULL, NULL, 0);
	if (ord_result(res, r) == 0) {
		PQclear(res);
		return 0;
	}
	if (PQresultStatus(res) == PGRES_FATAL_ERROR &&
	    PQstatus(conn) == CONNECTION_OK) {
		rc = ord_rejected(conn, o, res, msg, msglen);
		PQclear(res);
		return rc;
	}
	snprintf(msg, msglen, "database: %s: the order may or may not exist",
	    db_message(res, conn));
	PQclear(res);
	return EX_UNAVAILABLE;
}
