/* outbox-clean: delete the outbox rows that the event lines on stdin name, in batches. */
#include <err.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "db.h"
#include "evt.h"
#include "ndj.h"
#include "util.h"

#define DEFAULT_BATCH	1000
#define VISIBLE_WAIT_MS	30000

/*
 * Logical decoding can hand out a transaction a moment before it becomes
 * visible to other sessions, so a DELETE might not yet see the rows it is
 * meant to remove.  The statement therefore also says whether every
 * writing transaction is visible in its own snapshot: if so, any row it
 * did not delete was already gone; if not, it is run again.  A 32-bit
 * xid becomes an xid8 in the epoch of the snapshot's xmax.
 */
static const char clean_tail[] =
    " WHERE id = ANY($1::bigint[]) RETURNING 1)"
    " SELECT (SELECT count(*) FROM d),"
    " (SELECT coalesce(bool_and(pg_visible_in_snapshot(("
    "  CASE WHEN (m / 4294967296) * 4294967296 + x > m"
    "  THEN (m / 4294967296) * 4294967296 + x - 4294967296"
    "  ELSE (m / 4294967296) * 4294967296 + x END)::text::xid8, s)), true)"
    "  FROM (SELECT pg_current_snapshot() AS s,"
    "  pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS m) AS c,"
    "  unnest($2::bigint[]) AS x)";

struct cleaner {
	PGconn		*conn;
	struct ndj_reader *in;
	const char	*table;
	struct sbuf	 ids;		/* "{1,2,3}" without the closing brace */
	struct sbuf	 xids;		/* the transactions that wrote them */
	size_t		 n;
	uint64_t	 last_xid;
	unsigned long	 deleted;
	unsigned long	 gone;
	unsigned long	 skipped;
};

static void
usage(void)
{
	fprintf(stderr, "usage: outbox-clean [-hkvV] [-a ack-file] "
	    "[-b batch] [-d conninfo] [-t table]\n");
	exit(EX_USAGE);
}

static int
take(void *ctx, json_t *ev, uint64_t lsn, uint64_t seq)
{
	struct cleaner *c = ctx;
	uint64_t id, xid;

	(void)lsn;
	(void)seq;
	if (!evt_table_is(ev, c->table)) {
		c->skipped++;
		return 0;
	}
	if (evt_uint(ev, "id", c->in, INT64_MAX, &id) < 0 ||
	    evt_uint(ev, "__xid", c->in, UINT32_MAX, &xid) < 0)
		return EX_DATAERR;
	sb_putc(&c->ids, c->n == 0 ? '{' : ',');
	sb_u64(&c->ids, id);
	if (c->n == 0 || xid != c->last_xid) {
		sb_putc(&c->xids, c->n == 0 ? '{' : ',');
		sb_u64(&c->xids, xid);
		c->last_xid = xid;
	}
	c->n++;
	return 0;
}

/*
 * One DELETE for the batch, again until the writing transactions are
 * visible to it; rows already gone are not an error.
 */
static int
apply(void *ctx)
{
	struct cleaner *c = ctx;
	const char *params[2];
	PGresult *res;
	unsigned long k = 0;
	int ex = 0, visible = 0;
	struct timespec t0, t;
	long waited = 0;

	if (c->n == 0)
		return 0;
	sb_putc(&c->ids, '}');
	sb_putc(&c->xids, '}');
	params[0] = c->ids.buf;
	params[1] = c->xids.buf;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (!visible) {
		res = PQexecPrepared(c->conn, "clean", 2, params, NULL, NULL,
		    0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK ||
		    PQntuples(res) != 1) {
			warnx("database: %s", db_message(res, c->conn));
			ex = db_exit_code(res, c->conn);
			if (ex == EX_DATAERR)
				ex = EX_SOFTWARE;
			PQclear(res);
			break;
		}
		k += strtoul(PQgetvalue(res, 0, 0), NULL, 10);
		visible = strcmp(PQgetvalue(res, 0, 1), "t") == 0;
		PQclear(res);
		if (!visible) {
			clock_gettime(CLOCK_MONOTONIC, &t);
			waited = (t.tv_sec - t0.tv_sec) * 1000 +
			    (t.tv_nsec - t0.tv_nsec) / 1000000;
			if (waited >= VISIBLE_WAIT_MS || util_stop) {
				warnx("transactions %s: not visible after "
				    "%ld ms", c->xids.buf, waited);
				ex = EX_TEMPFAIL;
				break;
			}
			poll(NULL, 0, 2);
		}
	}
	if (ex == 0) {
		c->deleted += k;
		c->gone += c->n - k;
	}
	c->ids.len = 0;
	c->xids.len = 0;
	c->n = 0;
	return ex;
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "ack-file", required_argument, NULL, 'a' },
		{ "batch", required_argument, NULL, 'b' },
		{ "dbname", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ "keep-going", no_argument, NULL, 'k' },
		{ "table", required_argument, NULL, 't' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct cleaner c;
	struct evt_ops ops;
	struct ndj_reader in;
	const char *conninfo = NULL, *dot;
	char *end, *schema, *rel;
	struct sbuf sql;
	PGresult *res;
	long batch = DEFAULT_BATCH;
	int ch, ex, verbose = 0;

	util_signals();
	memset(&ops, 0, sizeof(ops));
	memset(&c, 0, sizeof(c));
	c.table = EVT_TABLE;
	while ((ch = getopt_long(argc, argv, "a:b:d:hkt:vV", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'a':
			ops.ack_file = optarg;
			break;
		case 'b':
			batch = strtol(optarg, &end, 10);
			if (*end != '\0' || batch < 1 || batch > 65536)
				errx(EX_USAGE, "-b: want 1 to 65536");
			break;
		case 'd':
			conninfo = optarg;
			break;
		case 'k':
			ops.keep_going = 1;
			break;
		case 't':
			c.table = optarg;
			break;
		case 'v':
			verbose = 1;
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
	if ((dot = strchr(c.table, '.')) == NULL || dot == c.table ||
	    dot[1] == '\0')
		errx(EX_USAGE, "-t %s: want schema.table, as in __table",
		    c.table);

	if ((c.conn = db_connect(conninfo, 0, &ex)) == NULL)
		return ex;
	schema = PQescapeIdentifier(c.conn, c.table, (size_t)(dot - c.table));
	rel = PQescapeIdentifier(c.conn, dot + 1, strlen(dot + 1));
	sb_init(&sql);
	sb_puts(&sql, "WITH d AS (DELETE FROM ");
	sb_puts(&sql, schema ? schema : "");
	sb_putc(&sql, '.');
	sb_puts(&sql, rel ? rel : "");
	sb_puts(&sql, clean_tail);
	PQfreemem(schema);
	PQfreemem(rel);
	res = PQprepare(c.conn, "clean", sql.buf, 2, NULL);
	sb_free(&sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		warnx("database: %s", db_message(res, c.conn));
		ex = db_exit_code(res, c.conn);
		PQclear(res);
		PQfinish(c.conn);
		return ex == EX_DATAERR ? EX_SOFTWARE : ex;
	}
	PQclear(res);

	ndj_reader_init(&in, STDIN_FILENO, "stdin");
	c.in = &in;
	sb_init(&c.ids);
	sb_init(&c.xids);
	ops.take = take;
	ops.apply = apply;
	ops.ctx = &c;
	ops.batch = (size_t)batch;

	ex = evt_run(&ops, &in);

	if (verbose)
		fprintf(stderr, "outbox-clean: %lu deleted, %lu already gone, "
		    "%lu skipped\n", c.deleted, c.gone, c.skipped);
	sb_free(&c.ids);
	sb_free(&c.xids);
	ndj_reader_free(&in);
	PQfinish(c.conn);
	return ex;
}
