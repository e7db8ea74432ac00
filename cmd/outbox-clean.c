/* outbox-clean: delete the outbox rows that the event lines on stdin name, in batches. */
#include <err.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "ack.h"
#include "db.h"
#include "evt.h"
#include "ndj.h"
#include "prg.h"
#include "util.h"

#define DEFAULT_BATCH	1000
#define VISIBLE_WAIT_MS	30000
#define STOP_GRACE_MS	5000	/* --after: for the consumers' last acks */

/*
 * Logical decoding can hand out a transaction a moment before it becomes
 * visible to other sessions, so a DELETE might not yet see the rows it is
 * meant to remove.  The statement therefore also says whether every
 * writing transaction is visible in its own snapshot: if so, any row it
 * did not delete was already gone; if not, it is run again.  A 32-bit
 * xid becomes an xid8 in the epoch of the snapshot's xmax, or in the
 * epoch next to it when that puts it nearer (within 2^31) to xmax: a
 * writer's xid is never that far from a current snapshot.
 */
static const char clean_tail[] =
    " WHERE id = ANY($1::bigint[]) RETURNING 1)"
    " SELECT (SELECT count(*) FROM d),"
    " (SELECT coalesce(bool_and(pg_visible_in_snapshot(greatest(2, CASE"
    "  WHEN c > m + 2147483648 THEN c - 4294967296"
    "  WHEN c + 2147483648 < m THEN c + 4294967296"
    "  ELSE c END)::text::xid8, s)), true)"
    "  FROM (SELECT s, m, (m / 4294967296) * 4294967296 + x AS c"
    "  FROM (SELECT pg_current_snapshot() AS s,"
    "  pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS m) AS n,"
    "  unnest($2::bigint[]) AS x) AS cx)";

struct cleaner {
	PGconn		*conn;
	struct ndj_reader *in;
	const char	*table;
	struct sbuf	 ids;		/* "{1,2,3}" without the closing brace */
	struct sbuf	 xids;		/* the transactions that wrote them */
	size_t		 n;
	uint64_t	 last_xid;
	struct ack_pos	 top;		/* the batch's highest position */
	const char	*after[16];	/* --after: ack files to wait for */
	struct prg	*prg;
	size_t		 nafter;
	unsigned long	 deleted;
	unsigned long	 gone;
};

static const char synopsis[] =
    "usage: outbox-clean [-hkvV] [-a ack-file] [-A ack-file] [-b batch] "
    "[-d conninfo]\n"
    "                    [-t table] [--reject-file file] "
    "[--stats seconds]\n";

static const char options[] =
    "  -a, --ack-file FILE     record the position cleaned so far in FILE\n"
    "  -A, --after FILE        delete only rows FILE acknowledges (repeatable)\n"
    "  -b, --batch N           rows per DELETE (1-65536, 1000)\n"
    "  -d, --dbname CONNINFO   the database (default: libpq's environment)\n"
    "  -h, --help              print this help and exit\n"
    "  -k, --keep-going        report a bad event, skip it, go on (exit 65)\n"
    "      --reject-file FILE  keep events whose rows are not deleted in FILE\n"
    "      --stats SECONDS     print a line of progress this often\n"
    "  -t, --table TABLE       the outbox table (default public.order_event)\n"
    "  -v, --verbose           print counts at exit\n"
    "  -V, --version           print the version and exit\n";

/*
 * Queue a row for deletion.  A row of public.order_event must pass the
 * checks that client-project makes, so that a row it refuses stays.
 */
static int
take(void *ctx, const struct scan *ev, const struct evt_meta *m,
    char *why, size_t wlen)
{
	struct cleaner *c = ctx;
	const struct scan_val *j;
	struct evt_order o;
	uint64_t id, xid;

	if (scan_get(ev, "__table") == NULL) {
		snprintf(why, wlen, "__table: missing");
		return EVT_BAD;
	}
	if (!evt_table_is(ev, c->table))
		return EVT_SKIP;
	if (strcmp(c->table, EVT_TABLE) == 0) {
		if (evt_order(ev, m, &o, why, wlen) < 0)
			return EVT_BAD;
		if (o.xid < 0) {
			snprintf(why, wlen, "__xid: missing");
			return EVT_BAD;
		}
		id = (uint64_t)o.id;
		xid = (uint64_t)o.xid;
	} else {
		j = scan_get(ev, "id");
		if (j == NULL || j->kind != SCAN_INT || j->i < 1) {
			snprintf(why, wlen, "id: %s", j ? "must be an integer "
			    "from 1" : "missing");
			return EVT_BAD;
		}
		id = (uint64_t)j->i;
		j = scan_get(ev, "__xid");
		if (j == NULL || j->kind != SCAN_INT || j->i < 0 ||
		    j->i > UINT32_MAX) {
			snprintf(why, wlen, "__xid: %s", j ? "must be an integer "
			    "from 0 to 4294967295" : "missing");
			return EVT_BAD;
		}
		xid = (uint64_t)j->i;
	}
	if (c->n == 0 || ack_pos_cmp(&m->pos, &c->top) > 0)
		c->top = m->pos;
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
 * Wait until every --after ack file covers the batch: the rows are then
 * applied by those consumers.  After a stop signal, wait STOP_GRACE_MS
 * more: the consumers, stopped too, acknowledge what they applied as
 * they end, and what is deleted now need not come back.  0, EVT_STOPPED
 * on a signal, or an exit code for an ack file that is unreadable or of
 * another stream.
 */
static int
wait_after(struct cleaner *c)
{
	struct ack_pos a;
	size_t i;
	int rc, ms = 1;
	int64_t give_up = 0;

	for (i = 0; i < c->nafter; ) {
		if ((rc = ack_read(c->after[i], &a)) < 0)
			return EX_IOERR;
		if (rc == 1 && a.src[0] != '\0' &&
		    strcmp(a.src, c->top.src) != 0) {
			warnx("%s: positions of \"%s\", but the events are from "
			    "\"%s\": not the same stream", c->after[i], a.src,
			    c->top.src);
			return EX_CONFIG;
		}
		if (rc == 1 && ack_pos_cmp(&a, &c->top) >= 0) {
			i++;
			continue;
		}
		if (util_stop && give_up == 0)
			give_up = util_mono_ms() + STOP_GRACE_MS;
		if (util_stop && util_mono_ms() >= give_up)
			return EVT_STOPPED;
		prg_tick(c->prg);
		poll(NULL, 0, ms);
		if (ms < 50)
			ms *= 2;
	}
	return 0;
}

/*
 * Once the --after consumers have the batch, one DELETE for it, again
 * until the writing transactions are visible to it; rows already gone
 * are not an error.  A signal while waiting ends the run cleanly, with
 * the batch not acknowledged.
 */
static int
apply(void *ctx, size_t from, size_t *failed, char *why, size_t wlen)
{
	struct cleaner *c = ctx;
	const char *params[2];
	PGresult *res;
	unsigned long k = 0;
	int ex = 0, visible = 0;
	int64_t t0, waited;

	(void)why;
	(void)wlen;
	*failed = from;
	if (c->n == 0)
		return 0;
	if ((ex = wait_after(c)) != 0)
		goto out;
	sb_putc(&c->ids, '}');
	sb_putc(&c->xids, '}');
	params[0] = c->ids.buf;
	params[1] = c->xids.buf;
	t0 = util_mono_ms();
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
		if (visible)
			break;
		if (util_stop) {
			ex = EVT_STOPPED;
			break;
		}
		if ((waited = util_mono_ms() - t0) >= VISIBLE_WAIT_MS) {
			warnx("transactions %s: not visible after %" PRId64
			    " ms", c->xids.buf, waited);
			ex = EX_TEMPFAIL;
			break;
		}
		poll(NULL, 0, 2);
	}
	if (ex == 0) {
		c->deleted += k;
		c->gone += c->n - k;
	}
out:
	c->ids.len = 0;
	c->xids.len = 0;
	c->n = 0;
	return ex;
}

int
main(int argc, char *argv[])
{
	enum { OPT_REJECT = 256, OPT_STATS };
	static const struct option longopts[] = {
		{ "ack-file", required_argument, NULL, 'a' },
		{ "after", required_argument, NULL, 'A' },
		{ "batch", required_argument, NULL, 'b' },
		{ "dbname", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ "keep-going", no_argument, NULL, 'k' },
		{ "reject-file", required_argument, NULL, OPT_REJECT },
		{ "stats", required_argument, NULL, OPT_STATS },
		{ "table", required_argument, NULL, 't' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct cleaner c;
	struct evt_ops ops;
	struct ndj_reader in;
	const char *conninfo = NULL, *dot;
	char *end, *schema, *rel, *table_buf = NULL;
	struct sbuf sql;
	PGresult *res;
	long batch = DEFAULT_BATCH;
	int64_t every = 0;
	struct prg prg;
	int ch, ex, verbose = 0;

	util_signals();
	memset(&ops, 0, sizeof(ops));
	memset(&c, 0, sizeof(c));
	c.table = EVT_TABLE;
	while ((ch = getopt_long(argc, argv, "A:a:b:d:hkt:vV", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'A':
			if (c.nafter == 16)
				errx(EX_USAGE, "-A: at most 16 ack files");
			c.after[c.nafter++] = optarg;
			break;
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
		case OPT_REJECT:
			ops.reject_file = optarg;
			break;
		case OPT_STATS:
			every = prg_option(optarg);
			break;
		case 'h':
			util_help(synopsis, options);
		default:
			util_usage(synopsis);
		}
	}
	if (optind != argc)
		util_usage(synopsis);
	/* As outbox-tail -t takes it: table alone is public.table. */
	if (strchr(c.table, '.') == NULL && *c.table != '\0') {
		table_buf = xmalloc(strlen(c.table) + 8);
		snprintf(table_buf, strlen(c.table) + 8, "public.%s", c.table);
		c.table = table_buf;
	}
	if ((dot = strchr(c.table, '.')) == NULL || dot == c.table ||
	    dot[1] == '\0' || *c.table == '\0')
		errx(EX_USAGE, "-t %s: want table or schema.table, as in "
		    "__table", c.table);

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
	prg_init(&prg, every);
	prg_counter_ul(&prg, "deleted", &c.deleted);
	prg_counter_ul(&prg, "gone", &c.gone);
	prg_counter_ul(&prg, "replayed", &ops.nreplayed);
	prg_counter_ul(&prg, "skipped", &ops.nskipped);
	prg_counter_ul(&prg, "rejected", &ops.nrejected);
	ops.prg = c.prg = &prg;
	ops.take = take;
	ops.apply = apply;
	ops.ctx = &c;
	ops.batch = (size_t)batch;

	ex = evt_run(&ops, &in);

	if (verbose)
		fprintf(stderr, "outbox-clean: %lu deleted, %lu already gone, "
		    "%lu skipped\n", c.deleted, c.gone, ops.nskipped);
	sb_free(&c.ids);
	sb_free(&c.xids);
	ndj_reader_free(&in);
	PQfinish(c.conn);
	free(table_buf);
	return util_exit(ex);
}
