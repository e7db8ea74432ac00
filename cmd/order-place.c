/* order-place: place orders read as JSON lines, each with its outbox row in one transaction. */
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "db.h"
#include "ndj.h"
#include "util.h"

#define MAX_PRODUCTS	1000
#define MAX_QUANTITY	1000000
#define MAX_BATCH	64		/* orders in flight in one pipeline */

/*
 * One statement writes the order, its items at the current prices and the
 * outbox row.  A missing product leaves a NULL price (rejected by NOT
 * NULL) and a missing client fails the foreign key: either way the
 * statement, and so the order, writes nothing.
 */
static const char place_sql[] =
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

/* Which part of a rejected order the database did not know. */
static const char diag_sql[] =
    "SELECT NOT EXISTS (SELECT 1 FROM client WHERE id = $1),"
    " (SELECT n FROM unnest($2::int[]) WITH ORDINALITY AS a(pid, n)"
    " WHERE NOT EXISTS (SELECT 1 FROM product p WHERE p.id = a.pid)"
    " ORDER BY n LIMIT 1)";

struct order {
	unsigned long	 lineno;
	json_int_t	 id_client;
	struct sbuf	 pids;		/* "{1,2}" */
	struct sbuf	 qtys;		/* "{1,3}" */
	size_t		 nproducts;
};

static struct ndj_reader in;
static struct ndj_writer out;
static PGconn *conn;
static int keep_going;

static void
usage(void)
{
	fprintf(stderr, "usage: order-place [-hkV] [-d conninfo]\n");
	exit(EX_USAGE);
}

static int
want_id(json_t *v)
{
	return json_is_integer(v) && json_integer_value(v) > 0;
}

/*
 * Check one request and fill o.  0 if valid, -1 after reporting the line
 * and the field.  Unknown keys are rejected: a misspelt key must not
 * pass as a smaller order.
 */
static int
validate(json_t *req, struct order *o)
{
	json_t *v, *products, *item;
	const char *key;
	size_t i;

	json_object_foreach(req, key, v) {
		if (strcmp(key, "id_client") != 0 &&
		    strcmp(key, "products") != 0) {
			warnx("%s:%lu: %s: unknown key", in.name, in.lineno,
			    key);
			return -1;
		}
	}
	v = json_object_get(req, "id_client");
	if (v == NULL) {
		warnx("%s:%lu: id_client: missing", in.name, in.lineno);
		return -1;
	}
	if (!want_id(v)) {
		warnx("%s:%lu: id_client: must be a positive integer",
		    in.name, in.lineno);
		return -1;
	}
	o->id_client = json_integer_value(v);
	if (o->id_client > INT32_MAX) {
		warnx("%s:%lu: id_client: unknown client %" JSON_INTEGER_FORMAT,
		    in.name, in.lineno, o->id_client);
		return -1;
	}
	products = json_object_get(req, "products");
	if (products == NULL) {
		warnx("%s:%lu: products: missing", in.name, in.lineno);
		return -1;
	}
	if (!json_is_array(products) || json_array_size(products) == 0) {
		warnx("%s:%lu: products: must be a non-empty array", in.name,
		    in.lineno);
		return -1;
	}
	if (json_array_size(products) > MAX_PRODUCTS) {
		warnx("%s:%lu: products: more than %d entries", in.name,
		    in.lineno, MAX_PRODUCTS);
		return -1;
	}
	o->pids.len = o->qtys.len = 0;
	sb_putc(&o->pids, '{');
	sb_putc(&o->qtys, '{');
	json_array_foreach(products, i, item) {
		if (!json_is_object(item)) {
			warnx("%s:%lu: products[%zu]: must be an object",
			    in.name, in.lineno, i);
			return -1;
		}
		json_object_foreach(item, key, v) {
			if (strcmp(key, "id_product") != 0 &&
			    strcmp(key, "quantity") != 0) {
				warnx("%s:%lu: products[%zu].%s: unknown key",
				    in.name, in.lineno, i, key);
				return -1;
			}
		}
		v = json_object_get(item, "id_product");
		if (!want_id(v)) {
			warnx("%s:%lu: products[%zu].id_product: %s", in.name,
			    in.lineno, i, v ? "must be a positive integer" :
			    "missing");
			return -1;
		}
		if (json_integer_value(v) > INT32_MAX) {
			warnx("%s:%lu: products[%zu].id_product: unknown "
			    "product %" JSON_INTEGER_FORMAT, in.name, in.lineno,
			    i, json_integer_value(v));
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
		    json_integer_value(v) > MAX_QUANTITY) {
			warnx("%s:%lu: products[%zu].quantity: %s", in.name,
			    in.lineno, i, v ? "must be an integer from 1 to "
			    "1000000" : "missing");
			return -1;
		}
		sb_i64(&o->qtys, json_integer_value(v));
	}
	sb_putc(&o->pids, '}');
	sb_putc(&o->qtys, '}');
	o->nproducts = json_array_size(products);
	return 0;
}

static int
send_order(struct order *o)
{
	char idbuf[24];
	const char *params[3];

	snprintf(idbuf, sizeof(idbuf), "%" JSON_INTEGER_FORMAT, o->id_client);
	params[0] = idbuf;
	params[1] = o->pids.buf;
	params[2] = o->qtys.buf;
	if (!PQsendQueryPrepared(conn, "begin", 0, NULL, NULL, NULL, 0) ||
	    !PQsendQueryPrepared(conn, "place", 3, params, NULL, NULL, 0) ||
	    !PQsendQueryPrepared(conn, "commit", 0, NULL, NULL, NULL, 0))
		return -1;
	return 0;
}

/* Name what the database did not know about a rejected order. */
static void
report_rejected(struct order *o, PGresult *res)
{
	const char *st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *params[2];
	char idbuf[24];
	PGresult *d;

	if (st != NULL && (strcmp(st, "23503") == 0 ||
	    strcmp(st, "23502") == 0)) {
		snprintf(idbuf, sizeof(idbuf), "%" JSON_INTEGER_FORMAT,
		    o->id_client);
		params[0] = idbuf;
		params[1] = o->pids.buf;
		d = PQexecParams(conn, diag_sql, 2, NULL, params, NULL, NULL,
		    0);
		if (PQresultStatus(d) == PGRES_TUPLES_OK && PQntuples(d) == 1) {
			if (strcmp(PQgetvalue(d, 0, 0), "t") == 0) {
				warnx("%s:%lu: id_client: unknown client %s",
				    in.name, o->lineno, idbuf);
				PQclear(d);
				return;
			}
			if (!PQgetisnull(d, 0, 1)) {
				long n = atol(PQgetvalue(d, 0, 1)) - 1;
				char *s = o->pids.buf + 1;

				for (long k = 0; k < n; k++)
					s = strchr(s, ',') + 1;
				warnx("%s:%lu: products[%ld].id_product: "
				    "unknown product %.*s", in.name,
				    o->lineno, n, (int)strcspn(s, ",}"), s);
				PQclear(d);
				return;
			}
		}
		PQclear(d);
	}
	if (st != NULL && strcmp(st, "22003") == 0) {
		warnx("%s:%lu: order_total: out of range", in.name,
		    o->lineno);
		return;
	}
	warnx("%s:%lu: %s", in.name, o->lineno, db_message(res, conn));
}

/* Print the result line of a committed order. */
static void
print_committed(const struct order *o, const PGresult *place)
{
	struct sbuf *sb = &out.out;

	sb_puts(sb, "{\"id_order\":");
	sb_puts(sb, PQgetvalue(place, 0, 0));
	sb_puts(sb, ",\"id_client\":");
	sb_i64(sb, o->id_client);
	sb_puts(sb, ",\"order_total\":");
	sb_puts(sb, PQgetvalue(place, 0, 2));
	sb_puts(sb, ",\"placement_date\":");
	sb_puts(sb, PQgetvalue(place, 0, 3));
	sb_puts(sb, ",\"id_event\":");
	sb_puts(sb, PQgetvalue(place, 0, 1));
	ndj_write(&out, "}", 1);
}

/*
 * Send the batch in one pipeline (BEGIN, the order, COMMIT for each, one
 * sync), then read the results in order.  An order counts as placed only
 * once its COMMIT has succeeded.  A failed order aborts the rest of the
 * pipeline, so the orders after it are not executed: they are moved to
 * the front of the batch and *n says how many are left to send again.
 * Returns 0, the exit code for a rejected order (65 for bad data), or 69
 * when the connection was lost (every order not known to have committed
 * is reported as not committed).
 */
static int
run_batch(struct order *batch, size_t *n)
{
	PGresult *r[3], *err = NULL, *res;
	size_t i, done = 0, failed = *n;
	int step, rc = 0, sent = 0;

	/* A server that hung up while we were idle has said so already. */
	for (i = 0; i < 4 && PQstatus(conn) == CONNECTION_OK &&
	    poll(&(struct pollfd){ PQsocket(conn), POLLIN, 0 }, 1, 0) > 0; i++)
		PQconsumeInput(conn);
	if (PQstatus(conn) != CONNECTION_OK ||
	    PQenterPipelineMode(conn) != 1)
		goto lost;
	sent = 1;
	for (i = 0; i < *n; i++)
		if (send_order(&batch[i]) < 0)
			goto lost;
	if (PQpipelineSync(conn) != 1)
		goto lost;

	for (i = 0; i < *n; i++) {
		for (step = 0; step < 3; step++) {
			r[step] = PQgetResult(conn);
			if (r[step] == NULL || PQgetResult(conn) != NULL) {
				while (step >= 0)
					PQclear(r[step--]);
				goto lost;
			}
		}
		if (PQresultStatus(r[0]) == PGRES_COMMAND_OK &&
		    PQresultStatus(r[1]) == PGRES_TUPLES_OK &&
		    PQntuples(r[1]) == 1 &&
		    PQresultStatus(r[2]) == PGRES_COMMAND_OK) {
			print_committed(&batch[i], r[1]);
			done = i + 1;
		} else if (failed == *n) {
			failed = i;
			for (step = 0; step < 3; step++)
				if (PQresultStatus(r[step]) ==
				    PGRES_FATAL_ERROR && err == NULL) {
					err = r[step];
					r[step] = NULL;
				}
		}
		for (step = 0; step < 3; step++)
			PQclear(r[step]);
	}
	res = PQgetResult(conn);
	if (res == NULL || PQresultStatus(res) != PGRES_PIPELINE_SYNC) {
		PQclear(res);
		goto lost;
	}
	PQclear(res);
	if (PQexitPipelineMode(conn) != 1)
		goto lost;
	if (failed == *n) {
		*n = 0;
		return 0;
	}

	rc = err ? db_exit_code(err, conn) : EX_SOFTWARE;
	if (rc == EX_UNAVAILABLE)
		goto lost;
	/* The sync does not end the failed order's BEGIN block. */
	res = PQexec(conn, "ROLLBACK");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		PQclear(res);
		goto lost;
	}
	PQclear(res);
	if (err != NULL)
		report_rejected(&batch[failed], err);
	else
		warnx("%s:%lu: not committed", in.name, batch[failed].lineno);
	PQclear(err);
	/* Keep the orders the abort skipped, to send them again. */
	for (i = failed + 1; i < *n; i++) {
		struct order tmp = batch[i - failed - 1];

		batch[i - failed - 1] = batch[i];
		batch[i] = tmp;
	}
	*n -= failed + 1;
	return rc;

lost:
	/*
	 * An order sent without its COMMIT's reply may or may not have
	 * committed; no success line is printed for it either way.
	 */
	PQclear(err);
	warnx("database: %s", db_message(NULL, conn));
	for (i = done; i < *n; i++)
		warnx("%s:%lu: %s", in.name, batch[i].lineno, sent ?
		    "connection lost before the commit was confirmed: the "
		    "order may or may not exist" :
		    "not committed: connection lost");
	*n = 0;
	return EX_UNAVAILABLE;
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "dbname", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ "keep-going", no_argument, NULL, 'k' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct order batch[MAX_BATCH];
	const char *conninfo = NULL;
	PGresult *res;
	json_t *req;
	size_t n = 0, i;
	int ch, rc, status = 0, bad = 0, eof = 0;

	util_signals();
	while ((ch = getopt_long(argc, argv, "d:hkV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'd':
			conninfo = optarg;
			break;
		case 'k':
			keep_going = 1;
			break;
		case 'V':
			util_version();
			return 0;
		case 'h':
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();

	if ((conn = db_connect(conninfo, 0, &rc)) == NULL)
		return rc;
	/* Prepared once, the three statements of an order parse no more. */
	for (i = 0; i < 3; i++) {
		static const char *const names[] = { "begin", "place",
		    "commit" };
		static const char *const sqls[] = { "BEGIN", place_sql,
		    "COMMIT" };

		res = PQprepare(conn, names[i], sqls[i], i == 1 ? 3 : 0, NULL);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			warnx("database: %s", db_message(res, conn));
			rc = db_exit_code(res, conn);
			PQclear(res);
			PQfinish(conn);
			return rc == EX_DATAERR ? EX_SOFTWARE : rc;
		}
		PQclear(res);
	}

	ndj_reader_init(&in, STDIN_FILENO, "stdin");
	ndj_writer_init(&out, STDOUT_FILENO);
	for (i = 0; i < MAX_BATCH; i++) {
		sb_init(&batch[i].pids);
		sb_init(&batch[i].qtys);
	}

	while (!eof && status == 0 && !util_stop) {
		/* Fill the batch with what is already waiting on stdin. */
		while (n < MAX_BATCH && !util_stop) {
			if (n > 0 && !ndj_more(&in))
				break;
			rc = ndj_read(&in, &req);
			if (rc == 0 || rc == -2) {
				eof = 1;
				if (rc == -2 && !util_stop)
					status = EX_IOERR;
				break;
			}
			if (rc == 1) {
				batch[n].lineno = in.lineno;
				rc = validate(req, &batch[n]) == 0 ? 1 : -1;
				json_decref(req);
			}
			if (rc == 1) {
				n++;
				continue;
			}
			bad = 1;
			if (!keep_going)
				eof = 1;
			break;
		}
		/* Rejected orders leave the rest of the batch to resend. */
		while (n > 0) {
			rc = run_batch(batch, &n);
			if (rc == EX_DATAERR) {
				bad = 1;
				if (!keep_going) {
					n = 0;
					eof = 1;
				}
			} else if (rc != 0) {
				/* The rest of the batch never ran: say so. */
				for (i = 0; i < n; i++)
					warnx("%s:%lu: not committed", in.name,
					    batch[i].lineno);
				status = rc;
				n = 0;
			}
		}
		if (ndj_flush(&out) < 0)
			break;
	}

	if (ndj_flush(&out) < 0 && out.err != EPIPE) {
		errno = out.err;
		warn("stdout");
		status = EX_IOERR;
	}
	for (i = 0; i < MAX_BATCH; i++) {
		sb_free(&batch[i].pids);
		sb_free(&batch[i].qtys);
	}
	ndj_writer_free(&out);
	ndj_reader_free(&in);
	PQfinish(conn);
	if (status == 0 && bad)
		status = EX_DATAERR;
	return status;
}
