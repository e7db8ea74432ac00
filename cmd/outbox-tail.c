/* outbox-tail: stream rows inserted into the outbox through logical replication (pgoutput) as JSON lines. */
#include <sys/stat.h>

#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "ack.h"
#include "db.h"
#include "ndj.h"
#include "pgo.h"
#include "prg.h"
#include "util.h"

#define MAX_PENDING	(1 << 16)	/* unacknowledged transactions */
#define MAX_ACK		16
#define ACK_POLL_MS	100
#define MAX_NAME	63
#define OUT_CHUNK	(64 * 1024)	/* write out past this much */
#define OUT_HIGH	(4 * 1024 * 1024) /* stop reading the stream past this */
#define LINGER_MS	4		/* busy: gather this long per write */
#define BUSY_RATE	1500		/* busy: commits a second, at least */
#define RATE_MS		50		/* the commit rate is counted over this */
#define SNAP_END	UINT32_MAX	/* __seq of a snapshot's last row */
#define MARKER_SUFFIX	"_snapshot"
#define MAX_SLOT	(MAX_NAME - (int)sizeof(MARKER_SUFFIX) + 1)

/*
 * A transaction written out but not yet confirmed: its rows are at
 * (lsn, 0..last); a snapshot is one such entry at (consistent point - 1),
 * its last row at SNAP_END.
 */
struct pending {
	uint64_t	lsn;
	uint64_t	last;
	int		rows;		/* has rows to be acknowledged */
	int		snapshot;	/* the snapshot's rows */
	uint64_t	end;		/* what is confirmed once they are */
};

struct tail {
	/* options */
	const char	*conninfo;
	const char	*slot;
	const char	*pub;
	const char	*ack_files[MAX_ACK];
	size_t		 nack;
	const char	**tables;
	size_t		 ntables;
	int		 once;
	int		 peek;		/* confirm nothing */
	int		 recreate;
	int		 snapshot;	/* take one when the slot is created */
	int		 drop;
	int64_t		 interval_ms;
	int64_t		 wait_ms;

	/* the server and the stream's identity */
	PGconn		*db;		/* an ordinary connection */
	PGconn		*repl;		/* the replication connection */
	char		 src[ACK_SRC_MAX];
	uint64_t	 flush_at_start;	/* where --once stops */
	int		 slot_exists;
	uint64_t	 slot_confirmed;
	char		 marker[MAX_NAME + 1];	/* slot "_snapshot": pending */
	int		 marker_exists;

	/* the stream */
	struct pgo	 pgo;
	struct pending	*queue;		/* a ring */
	size_t		 qhead;
	size_t		 qlen;
	uint64_t	 confirmed;	/* to report to the server */
	uint64_t	 sent_confirmed;
	uint64_t	 server_end;	/* WAL end of the last keepalive */
	int64_t		 last_status;
	int64_t		 last_ack_poll;
	int		 caught_up;
	int		 streaming;	/* START_REPLICATION done */

	/* progress */
	struct prg	 prg;
	uint64_t	 nevents;
	uint64_t	 ntxns;
	int64_t		 stats_ms;

	/* standard output, non-blocking when it is a pipe */
	int64_t		 first_out;	/* when the oldest unwritten byte came */
	int64_t		 rate_start;	/* the commit rate's period began */
	uint64_t	 rate_txns;	/* commits in it so far */
	int		 linger;	/* busy: write and read once per LINGER_MS */
	struct sbuf	 out;
	size_t		 out_off;
	int		 out_flags;	/* to restore; -1: left blocking */
	int		 out_err;	/* errno of a failed write */
};

static const char synopsis[] =
    "usage: outbox-tail [-hV] [--drop] [--once] [--peek] [--recreate] "
    "[-a ack-file]\n"
    "                   [-d conninfo] [-i seconds] [-p publication] "
    "[-s slot]\n"
    "                   [--snapshot when] [--stats seconds] [-t table] "
    "[-w seconds]\n";

static const char options[] =
    "  -a, --ack-file FILE       a consumer's ack file (repeatable, up to 16)\n"
    "  -d, --dbname CONNINFO     the database (default: libpq's environment)\n"
    "      --drop                drop the slot and the publication, then exit\n"
    "  -h, --help                print this help and exit\n"
    "  -i, --interval SECONDS    status updates at least this often (10)\n"
    "      --once                stop once caught up with the server\n"
    "  -p, --publication NAME    the publication (default cqrs_outbox)\n"
    "      --peek                confirm nothing: the slot keeps every event\n"
    "      --recreate            re-create a lost slot and send the outbox again\n"
    "  -s, --slot NAME           the replication slot (default cqrs_outbox)\n"
    "      --snapshot WHEN       initial (default): send the outbox when the\n"
    "                            slot is created; never: do not\n"
    "      --stats SECONDS       print a line of progress this often\n"
    "  -t, --table TABLE         a table to publish (default public.order_event)\n"
    "  -V, --version             print the version and exit\n"
    "  -w, --wait SECONDS        with --once, wait this long for acks (60)\n";

static uint64_t
parse_lsn(const char *s, int *ok)
{
	unsigned int hi, lo;
	char tail;

	*ok = s != NULL && sscanf(s, "%X/%X%c", &hi, &lo, &tail) == 2;
	return *ok ? (uint64_t)hi << 32 | lo : 0;
}

/* The exit code for a failed result; bad data from the server is ours. */
static int
failed(PGresult *res, PGconn *conn, const char *what)
{
	int rc;

	warnx("%s: %s", what, db_message(res, conn));
	rc = db_exit_code(res, conn);
	PQclear(res);
	return rc == EX_DATAERR ? EX_SOFTWARE : rc;
}

/* A query with at most one parameter; the exit code on failure. */
static int
query(PGconn *db, const char *sql, const char *param, PGresult **resp)
{
	PGresult *res;

	res = PQexecParams(db, sql, param ? 1 : 0, NULL, &param, NULL, NULL,
	    0);
	if (PQresultStatus(res) == PGRES_COMMAND_OK ||
	    PQresultStatus(res) == PGRES_TUPLES_OK) {
		if (resp != NULL)
			*resp = res;
		else
			PQclear(res);
		return 0;
	}
	/* Another outbox-tail made it first. */
	if (PQresultErrorField(res, PG_DIAG_SQLSTATE) != NULL &&
	    strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE), "42710") == 0) {
		PQclear(res);
		if (resp != NULL)
			*resp = NULL;
		return 0;
	}
	return failed(res, db, "database");
}

/* "schema.table" or "table" (public), each part quoted. */
static char *
quote_table(PGconn *db, const char *t)
{
	const char *dot = strchr(t, '.');
	char *a, *b, *q;
	struct sbuf sb;

	sb_init(&sb);
	if (dot != NULL)
		sb_put(&sb, t, (size_t)(dot - t));
	else
		sb_puts(&sb, "public");
	a = PQescapeIdentifier(db, sb.buf, sb.len);
	b = PQescapeIdentifier(db, dot ? dot + 1 : t, strlen(dot ? dot + 1 :
	    t));
	sb.len = 0;
	sb_puts(&sb, a ? a : "");
	sb_putc(&sb, '.');
	sb_puts(&sb, b ? b : "");
	PQfreemem(a);
	PQfreemem(b);
	q = xstrdup(sb.buf);
	sb_free(&sb);
	return q;
}

static int	marker_drop(struct tail *);

/* --drop: the slot, then the publication, each if it exists. */
static int
drop_all(struct tail *t)
{
	PGresult *res;
	struct sbuf sql;
	char *q;
	int rc;

	if (t->slot_exists) {
		if ((rc = query(t->db, "SELECT pg_drop_replication_slot($1)",
		    t->slot, NULL)) != 0)
			return rc;
		warnx("dropped slot %s", t->slot);
	}
	if ((rc = marker_drop(t)) != 0)
		return rc;
	if ((rc = query(t->db, "SELECT 1 FROM pg_publication WHERE pubname = "
	    "$1", t->pub, &res)) != 0)
		return rc;
	if (res != NULL && PQntuples(res) > 0) {
		sb_init(&sql);
		q = PQescapeIdentifier(t->db, t->pub, strlen(t->pub));
		sb_puts(&sql, "DROP PUBLICATION IF EXISTS ");
		sb_puts(&sql, q ? q : t->pub);
		PQfreemem(q);
		if ((rc = query(t->db, sql.buf, NULL, NULL)) == 0)
			warnx("dropped publication %s", t->pub);
		sb_free(&sql);
	}
	PQclear(res);
	return rc;
}

/*
 * On the ordinary connection: the publication (inserts only, so that
 * outbox-clean's deletes never travel), created when missing; whether
 * the slot exists, is a pgoutput slot of this database, and where it is
 * confirmed; and whether -i fits the server's wal_sender_timeout.
 */
static int
prepare(struct tail *t)
{
	PGresult *res;
	struct sbuf sql;
	size_t i;
	char *q;
	int rc, ok;
	long timeout;

	if ((t->db = db_connect(t->conninfo, 0, &rc)) == NULL)
		return rc;
	if ((rc = query(t->db, "SELECT slot_type, plugin, database = "
	    "current_database(), confirmed_flush_lsn FROM pg_replication_slots "
	    "WHERE slot_name = $1", t->slot, &res)) != 0)
		return rc;
	t->slot_exists = res != NULL && PQntuples(res) == 1;
	if (t->slot_exists && (strcmp(PQgetvalue(res, 0, 0), "logical") != 0 ||
	    strcmp(PQgetvalue(res, 0, 1), "pgoutput") != 0 ||
	    strcmp(PQgetvalue(res, 0, 2), "t") != 0)) {
		warnx("slot %s: not a pgoutput slot of this database", t->slot);
		PQclear(res);
		return EX_CONFIG;
	}
	if (t->slot_exists)
		t->slot_confirmed = parse_lsn(PQgetvalue(res, 0, 3), &ok);
	PQclear(res);
	if ((rc = query(t->db, "SELECT 1 FROM pg_replication_slots WHERE "
	    "slot_name = $1", t->marker, &res)) != 0)
		return rc;
	t->marker_exists = res != NULL && PQntuples(res) == 1;
	PQclear(res);
	if (t->drop)
		return drop_all(t);

	if ((rc = query(t->db, "SELECT setting::bigint FROM pg_settings "
	    "WHERE name = 'wal_sender_timeout'", NULL, &res)) != 0)
		return rc;
	timeout = res && PQntuples(res) == 1 ?
	    atol(PQgetvalue(res, 0, 0)) : 0;
	PQclear(res);
	if (timeout > 0 && t->interval_ms * 2 > timeout) {
		warnx("-i %.1f: must be at most half the server's "
		    "wal_sender_timeout (%ld ms), or the server drops the "
		    "stream", t->interval_ms / 1000.0, timeout);
		return EX_USAGE;
	}

	if ((rc = query(t->db, "SELECT 1 FROM pg_publication WHERE pubname = "
	    "$1", t->pub, &res)) != 0)
		return rc;
	ok = res != NULL && PQntuples(res) > 0;
	PQclear(res);
	if (ok)
		return 0;
	sb_init(&sql);
	q = PQescapeIdentifier(t->db, t->pub, strlen(t->pub));
	sb_puts(&sql, "CREATE PUBLICATION ");
	sb_puts(&sql, q ? q : t->pub);
	PQfreemem(q);
	sb_puts(&sql, " FOR TABLE ");
	for (i = 0; i < t->ntables; i++) {
		q = quote_table(t->db, t->tables[i]);
		if (i > 0)
			sb_puts(&sql, ", ");
		sb_puts(&sql, q);
		free(q);
	}
	sb_puts(&sql, " WITH (publish = 'insert')");
	if ((rc = query(t->db, sql.buf, NULL, NULL)) == 0)
		warnx("created publication %s", t->pub);
	sb_free(&sql);
	return rc;
}

/*
 * IDENTIFY_SYSTEM: the stream's identity, "pg:SYSID:TIMELINE:SLOT", and
 * the server's WAL flush position, where --once stops.
 */
static int
identify(struct tail *t)
{
	PGresult *res = PQexec(t->repl, "IDENTIFY_SYSTEM");
	int ok;

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
	    PQnfields(res) < 3)
		return failed(res, t->repl, "IDENTIFY_SYSTEM");
	t->flush_at_start = parse_lsn(PQgetvalue(res, 0, 2), &ok);
	if (!ok || strspn(PQgetvalue(res, 0, 0), "0123456789") !=
	    strlen(PQgetvalue(res, 0, 0))) {
		warnx("IDENTIFY_SYSTEM: unexpected answer");
		PQclear(res);
		return 76;
	}
	snprintf(t->src, sizeof(t->src), "pg:%s:%s:%s", PQgetvalue(res, 0, 0),
	    PQgetvalue(res, 0, 1), t->slot);
	PQclear(res);
	return 0;
}

/*
 * Read every ack file and check it against the server: of this stream
 * (or of no recorded stream, as version 0.1 wrote them), and not beyond
 * the server's WAL.  have[i] says whether file i exists.
 */
static int
check_acks(struct tail *t, struct ack_pos *a, int *have)
{
	size_t i;
	int r;

	for (i = 0; i < t->nack; i++) {
		if ((r = ack_read(t->ack_files[i], &a[i])) < 0)
			return EX_IOERR;
		have[i] = r;
		if (!r)
			continue;
		if (a[i].src[0] != '\0' && strcmp(a[i].src, t->src) != 0) {
			warnx("%s: holds a position of \"%s\", but this stream "
			    "is \"%s\": positions of two streams cannot be "
			    "compared (a rebuilt or restored database, a new "
			    "timeline, or another slot); run client-rebuild for "
			    "the read model, then remove the ack file",
			    t->ack_files[i], a[i].src, t->src);
			return EX_CONFIG;
		}
		if (a[i].lsn > t->flush_at_start) {
			warnx("%s: position %" PRIu64 " is beyond the server's "
			    "WAL (%" PRIu64 "): a restored or rebuilt database? "
			    "run client-rebuild for the read model, then remove "
			    "the ack file", t->ack_files[i], a[i].lsn,
			    t->flush_at_start);
			return EX_CONFIG;
		}
	}
	return 0;
}

/* Buffer out; write it when a chunk has piled up.  -1 on a write error. */
static int out_flush(struct tail *, int);

static int
out_line(struct tail *t, const char *s, size_t n)
{
	t->nevents++;		/* snapshot rows too */
	if (t->out.len == t->out_off)
		t->first_out = util_mono_ms();
	sb_put(&t->out, s, n);
	sb_putc(&t->out, '\n');
	if (t->out.len - t->out_off >= OUT_CHUNK)
		return out_flush(t, 0);
	return 0;
}

/*
 * Write what is buffered: all of it when wait is set (polling while the
 * reader is slow, until a signal), else what the pipe takes now.  0, or
 * -1 with out_err set (EPIPE: the reader went away).
 */
static int
out_flush(struct tail *t, int wait)
{
	struct pollfd pfd = { STDOUT_FILENO, POLLOUT, 0 };
	ssize_t n;

	if (t->out_err)
		return -1;
	while (t->out_off < t->out.len) {
		n = write(STDOUT_FILENO, t->out.buf + t->out_off,
		    t->out.len - t->out_off);
		if (n > 0) {
			t->out_off += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR && !util_stop)
			continue;
		if (n < 0 && errno == EAGAIN) {
			if (!wait || util_stop)
				return 0;
			poll(&pfd, 1, 1000);
			continue;
		}
		if (n < 0 && errno == EINTR)
			return 0;
		t->out_err = n < 0 ? errno : EIO;
		return -1;
	}
	t->out.len = t->out_off = 0;
	return 0;
}

/* Queue a transaction (or the snapshot) for confirmation. */
static void
push(struct tail *t, uint64_t lsn, uint64_t nrows, uint64_t last,
    uint64_t end)
{
	struct pending *e;

	/* Nothing will ever be confirmed: keep only the last, never wait. */
	if (t->peek || t->nack == 0)
		t->qhead = t->qlen = 0;
	e = &t->queue[(t->qhead + t->qlen) % MAX_PENDING];
	e->snapshot = last == SNAP_END;
	e->lsn = lsn;
	e->rows = nrows > 0;
	e->last = last;
	e->end = end;
	t->qlen++;
}

/*
 * Take a snapshot of the published tables in the transaction whose
 * snapshot the new slot exported: every row becomes an event line with
 * "__op":"r", at positions (consistent point - 1, 0, 1, ...), the last
 * one at SNAP_END, so that they come before everything the slot streams
 * and an ack file tells whether the whole snapshot was applied.  Rows are
 * read one at a time (single-row mode).  Returns 0 or an exit code.
 */
static int
take_snapshot(struct tail *t, uint64_t cp)
{
	PGresult *tabs, *res;
	struct sbuf sql, line, held, tail;
	uint64_t seq = 0;
	int64_t now = util_real_ms();
	int rc = 0, i, nf, have = 0;
	char *q;

	/* A replication connection takes only simple queries. */
	sb_init(&sql);
	q = PQescapeLiteral(t->repl, t->pub, strlen(t->pub));
	sb_puts(&sql, "SELECT quote_ident(schemaname) || '.' || "
	    "quote_ident(tablename), schemaname || '.' || tablename, "
	    "EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = "
	    "format('%I.%I', schemaname, tablename)::regclass AND "
	    "a.attname = 'id' AND a.attnum > 0) FROM pg_publication_tables "
	    "WHERE pubname = ");
	sb_puts(&sql, q ? q : "''");
	sb_puts(&sql, " ORDER BY 2");
	PQfreemem(q);
	tabs = PQexec(t->repl, sql.buf);
	sb_free(&sql);
	if (PQresultStatus(tabs) != PGRES_TUPLES_OK)
		return failed(tabs, t->repl, "snapshot");
	sb_init(&sql);
	sb_init(&line);
	sb_init(&held);
	sb_init(&tail);
	for (i = 0; tabs != NULL && i < PQntuples(tabs) && rc == 0; i++) {
		sql.len = 0;
		sb_puts(&sql, "SELECT t.*, t.xmin FROM ");
		sb_puts(&sql, PQgetvalue(tabs, i, 0));
		sb_puts(&sql, " t");
		if (strcmp(PQgetvalue(tabs, i, 2), "t") == 0)
			sb_puts(&sql, " ORDER BY t.id");
		if (!PQsendQuery(t->repl, sql.buf) ||
		    !PQsetSingleRowMode(t->repl)) {
			warnx("snapshot: %s", db_message(NULL, t->repl));
			rc = EX_UNAVAILABLE;
			break;
		}
		while ((res = PQgetResult(t->repl)) != NULL) {
			if (PQresultStatus(res) == PGRES_TUPLES_OK) {
				PQclear(res);
				continue;
			}
			if (PQresultStatus(res) != PGRES_SINGLE_TUPLE) {
				if (rc == 0)
					rc = failed(res, t->repl, "snapshot");
				else
					PQclear(res);
				continue;
			}
			if (rc != 0 || util_stop) {
				PQclear(res);
				continue;
			}
			/* The row before this one was not the last. */
			if (have) {
				sb_u64(&held, seq++);
				sb_put(&held, tail.buf, tail.len);
				if (out_line(t, held.buf, held.len) < 0 ||
				    out_flush(t, 1) < 0)
					rc = EX_IOERR;
			}
			nf = PQnfields(res) - 1;	/* without xmin */
			line.len = 0;
			sb_putc(&line, '{');
			for (int f = 0; f < nf; f++) {
				q = PQfname(res, f);
				sb_json_str(&line, q, strlen(q));
				sb_putc(&line, ':');
				if (PQgetisnull(res, 0, f))
					sb_puts(&line, "null");
				else
					pgo_value(&line, PQftype(res, f),
					    PQgetvalue(res, 0, f),
					    (uint32_t)PQgetlength(res, 0, f));
				sb_putc(&line, ',');
			}
			sb_puts(&line, "\"__table\":");
			q = PQgetvalue(tabs, i, 1);
			sb_json_str(&line, q, strlen(q));
			sb_puts(&line, ",\"__op\":\"r\",");
			sb_puts(&line, t->pgo.src_field);
			sb_puts(&line, "\"__lsn\":");
			sb_u64(&line, cp - 1);
			sb_puts(&line, ",\"__seq\":");
			held.len = 0;
			sb_put(&held, line.buf, line.len);
			tail.len = 0;
			sb_puts(&tail, ",\"__xid\":");
			sb_puts(&tail, PQgetvalue(res, 0, nf));
			sb_puts(&tail, ",\"__ts_ms\":");
			sb_i64(&tail, now);
			sb_puts(&tail, ",\"__ts_us\":");
			sb_i64(&tail, now * 1000);
			sb_putc(&tail, '}');
			have = 1;
			PQclear(res);
		}
	}
	if (rc == 0 && util_stop)
		rc = -1;
	if (rc == 0 && have) {
		sb_u64(&held, SNAP_END);
		sb_put(&held, tail.buf, tail.len);
		if (out_line(t, held.buf, held.len) < 0)
			rc = EX_IOERR;
		push(t, cp - 1, seq + 1, SNAP_END, cp);
	}
	if (rc == 0 || rc == -1)
		warnx("snapshot of slot %s: %" PRIu64 " rows%s", t->slot,
		    have ? seq + 1 : 0, rc == -1 ? " (interrupted)" : "");
	PQclear(tabs);
	sb_free(&sql);
	sb_free(&line);
	sb_free(&held);
	sb_free(&tail);
	return rc;
}

/*
 * Create the slot on the replication connection, and with a snapshot,
 * read the outbox in the very snapshot the slot exports (a REPEATABLE
 * READ transaction whose first command creates the slot): nothing is
 * missed or sent twice between the rows read and the slot's stream.
 */
static int
create_slot(struct tail *t)
{
	PGresult *res;
	char cmd[256];
	uint64_t cp;
	int rc, ok;

	if (t->snapshot) {
		res = PQexec(t->repl, "BEGIN READ ONLY ISOLATION LEVEL "
		    "REPEATABLE READ");
		if (PQresultStatus(res) != PGRES_COMMAND_OK)
			return failed(res, t->repl, "BEGIN");
		PQclear(res);
	}
	snprintf(cmd, sizeof(cmd), "CREATE_REPLICATION_SLOT %s LOGICAL pgoutput "
	    "(SNAPSHOT '%s')", t->slot, t->snapshot ? "use" : "nothing");
	res = PQexec(t->repl, cmd);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1)
		return failed(res, t->repl, "CREATE_REPLICATION_SLOT");
	cp = parse_lsn(PQgetvalue(res, 0, 1), &ok);
	PQclear(res);
	if (!ok || cp == 0) {
		warnx("CREATE_REPLICATION_SLOT: unexpected answer");
		return 76;
	}
	warnx("created slot %s at %X/%X", t->slot, (unsigned)(cp >> 32),
	    (unsigned)cp);
	t->slot_confirmed = cp;
	t->confirmed = t->sent_confirmed = cp;
	if (!t->snapshot)
		return 0;
	if ((rc = take_snapshot(t, cp)) != 0)
		return rc == -1 ? 0 : rc;
	res = PQexec(t->repl, "COMMIT");
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		return failed(res, t->repl, "COMMIT");
	PQclear(res);
	return 0;
}

/*
 * The marker: a physical slot "<slot>_snapshot", without WAL reserved,
 * that exists from before a slot is (re)created with a snapshot until
 * every consumer has acknowledged the snapshot's last row.  A run that
 * finds it knows that a snapshot may not have reached everyone.
 */
static int
marker_create(struct tail *t)
{
	int rc;

	if (t->marker_exists)
		return 0;
	if ((rc = query(t->db, "SELECT pg_create_physical_replication_slot($1)",
	    t->marker, NULL)) == 0)
		t->marker_exists = 1;
	return rc;
}

static int
marker_drop(struct tail *t)
{
	int rc;

	if (!t->marker_exists)
		return 0;
	if ((rc = query(t->db, "SELECT pg_drop_replication_slot($1)",
	    t->marker, NULL)) == 0)
		t->marker_exists = 0;
	return rc;
}

/*
 * What to do with the slot, from the slot, its marker and the ack files:
 * create it on the first run; refuse when it is gone while the ack files
 * show it was consumed (events may be missing) unless --recreate;
 * re-create it, and so take the snapshot again, when the marker says that
 * a snapshot may not have reached every consumer.  0 to stream, or an
 * exit code.
 */
static int
settle_slot(struct tail *t)
{
	struct ack_pos a[MAX_ACK];
	int have[MAX_ACK], rc, consumed = 0, snap;
	size_t i;

	if ((rc = check_acks(t, a, have)) != 0)
		return rc;
	for (i = 0; i < t->nack; i++)
		if (have[i])
			consumed = 1;
	if (!t->slot_exists && consumed && !t->recreate && !t->marker_exists) {
		for (i = 0; !have[i]; i++)
			;
		warnx("slot %s is gone, but %s shows that it was consumed up "
		    "to LSN %" PRIu64 ": the events after that may never be "
		    "streamed (a dropped slot, or a failover: slots are not "
		    "copied to standbys).  Their rows are still in the outbox "
		    "if the cleaner ran with --after; outbox-tail --recreate "
		    "re-creates the slot and sends them again as a snapshot",
		    t->slot, t->ack_files[i], a[i].lsn);
		return EX_CONFIG;
	}
	snap = t->snapshot && !t->peek && t->nack > 0;
	if (t->slot_exists && t->marker_exists && t->snapshot)
		warnx("the snapshot of slot %s did not reach every consumer "
		    "(%s exists): re-creating the slot to send the outbox "
		    "again", t->slot, t->marker);
	if (t->slot_exists && (t->recreate || (t->marker_exists &&
	    t->snapshot))) {
		/* The marker first: from here, a crash means "again". */
		if (snap && (rc = marker_create(t)) != 0)
			return rc;
		if ((rc = query(t->db, "SELECT pg_drop_replication_slot($1)",
		    t->slot, NULL)) != 0)
			return rc;
		warnx("dropped slot %s", t->slot);
		t->slot_exists = 0;
	}
	if (t->slot_exists) {
		t->confirmed = t->sent_confirmed = t->slot_confirmed;
		return 0;
	}
	if (snap && (rc = marker_create(t)) != 0)
		return rc;
	if ((rc = create_slot(t)) != 0)
		return rc;
	/* Without consumers to wait for, the snapshot is done once written. */
	if (!snap || t->qlen == 0)
		return marker_drop(t);
	return 0;
}

/* Whether every ack file covers the rows of e. */
static int
covered(const struct tail *t, const struct pending *e,
    const struct ack_pos *a, const int *have)
{
	size_t i;

	if (!e->rows)
		return 1;
	for (i = 0; i < t->nack; i++)
		if (!have[i] || a[i].lsn < e->lsn || (a[i].lsn == e->lsn &&
		    a[i].seq < e->last))
			return 0;
	return 1;
}

/*
 * Move the confirmed position past the transactions every consumer has
 * acknowledged.  With nothing in flight, the last keepalive position is
 * confirmed too, so that an idle outbox never holds WAL back.  Without
 * ack files, or with --peek, nothing is confirmed.  0, or an exit code
 * for a bad ack file.
 */
static int
advance(struct tail *t)
{
	struct ack_pos a[MAX_ACK];
	int have[MAX_ACK], r;
	size_t i;

	if (t->peek || t->nack == 0)
		return 0;
	if (t->qlen > 0) {
		for (i = 0; i < t->nack; i++) {
			if ((r = ack_read(t->ack_files[i], &a[i])) < 0)
				return EX_IOERR;
			have[i] = r;
		}
		t->last_ack_poll = util_mono_ms();
		while (t->qlen > 0 && covered(t, &t->queue[t->qhead], a,
		    have)) {
			if (t->queue[t->qhead].snapshot && (r = marker_drop(t)))
				return r;
			if (t->queue[t->qhead].end > t->confirmed)
				t->confirmed = t->queue[t->qhead].end;
			t->qhead = (t->qhead + 1) % MAX_PENDING;
			t->qlen--;
		}
	}
	if (t->qlen == 0 && !t->pgo.open && t->server_end > t->confirmed)
		t->confirmed = t->server_end;
	return 0;
}

/* A standby status update; 0, or 69 when the connection is gone. */
static int
send_status(struct tail *t, int reply)
{
	unsigned char b[PGO_STATUS_LEN];

	pgo_status(b, t->peek || t->nack == 0 ? 0 : t->confirmed,
	    util_real_ms(), reply);
	if (PQputCopyData(t->repl, (const char *)b, sizeof(b)) != 1 ||
	    PQflush(t->repl) < 0) {
		warnx("database: %s", db_message(NULL, t->repl));
		return EX_UNAVAILABLE;
	}
	t->sent_confirmed = t->confirmed;
	t->last_status = util_mono_ms();
	return 0;
}

/* One message from the server; 0, or an exit code. */
static int
on_message(struct tail *t, const unsigned char *m, size_t n)
{
	struct pgo_frame f;
	struct pending *last;
	int rc;

	switch (pgo_frame(m, n, &f)) {
	case 'w':
		switch (pgo_decode(&t->pgo, f.payload, f.len)) {
		case PGO_ROW:
			if (out_line(t, t->pgo.line.buf, t->pgo.line.len) < 0)
				return -1;
			break;
		case PGO_COMMIT:
			t->ntxns++;
			t->rate_txns++;
			push(t, t->pgo.lsn, t->pgo.seq, t->pgo.seq ?
			    t->pgo.seq - 1 : 0, t->pgo.end);
			last = &t->queue[(t->qhead + t->qlen - 1) % MAX_PENDING];
			if (t->once && last->end >= t->flush_at_start)
				t->caught_up = 1;
			break;
		case PGO_NONE:
			break;
		default:
			warnx("pgoutput: %s", t->pgo.err);
			return 76;
		}
		return 0;
	case 'k':
		t->server_end = f.wal_end;
		if (t->once && f.wal_end >= t->flush_at_start && !t->pgo.open)
			t->caught_up = 1;
		if (!f.reply)
			return 0;
		if ((rc = advance(t)) != 0)
			return rc;
		return send_status(t, 0);
	default:
		warnx("replication: unknown message '%c' (%zu bytes)",
		    n ? m[0] : '?', n);
		return 76;
	}
}

/*
 * The stream: read what the server sends while standard output keeps up
 * (at most OUT_HIGH bytes wait for it), write out, confirm what is
 * acknowledged, and send status updates on time even while standard
 * output is blocked, so that the server never drops a slow consumer.
 * Returns 0 or an exit code; -1 when standard output failed.
 */
static int
stream(struct tail *t)
{
	struct pollfd pfd[2];
	char cmd[384], *buf;
	PGresult *res;
	int64_t now, deadline;
	int n, rc, full, hold;

	snprintf(cmd, sizeof(cmd), "START_REPLICATION SLOT %s LOGICAL 0/0 "
	    "(proto_version '1', publication_names '%s')", t->slot, t->pub);
	res = PQexec(t->repl, cmd);
	if (PQresultStatus(res) != PGRES_COPY_BOTH)
		return failed(res, t->repl, "START_REPLICATION");
	PQclear(res);
	t->streaming = 1;
	t->last_status = util_mono_ms();

	while (!util_stop && !t->caught_up) {
		prg_tick(&t->prg);
		full = t->qlen == MAX_PENDING ||
		    t->out.len - t->out_off >= OUT_HIGH;
		n = full ? 0 : PQgetCopyData(t->repl, &buf, 1);
		if (n > 0) {
			rc = on_message(t, (unsigned char *)buf, (size_t)n);
			PQfreemem(buf);
			if (rc != 0)
				return rc;
			continue;
		}
		if (n == -1) {		/* the server ended the stream */
			res = PQgetResult(t->repl);
			warnx("replication ended: %s", db_message(res,
			    t->repl));
			rc = db_exit_code(res, t->repl);
			PQclear(res);
			return rc == EX_SOFTWARE || rc == EX_DATAERR ?
			    EX_UNAVAILABLE : rc;
		}
		if (n == -2) {
			warnx("database: %s", db_message(NULL, t->repl));
			return EX_UNAVAILABLE;
		}

		/*
		 * Nothing more from the server now: write out, confirm.  While
		 * transactions come fast (BUSY_RATE a second over the last
		 * RATE_MS), gather them for LINGER_MS, so that each stage
		 * wakes once for many; slower, each one goes at once.
		 */
		now = util_mono_ms();
		if (now - t->rate_start >= RATE_MS) {
			t->linger = t->rate_txns * 1000 >=
			    (uint64_t)(now - t->rate_start) * BUSY_RATE;
			t->rate_start = now;
			t->rate_txns = 0;
		}
		if (t->out.len > t->out_off && (!t->linger ||
		    now - t->first_out >= LINGER_MS ||
		    t->out.len - t->out_off >= OUT_CHUNK) && out_flush(t, 0) < 0)
			return -1;
		if ((t->qlen > 0 && now - t->last_ack_poll >= ACK_POLL_MS) ||
		    (t->qlen == 0 && t->server_end > t->confirmed))
			if ((rc = advance(t)) != 0)
				return rc;
		if ((t->confirmed != t->sent_confirmed &&
		    now - t->last_status >= ACK_POLL_MS) ||
		    now - t->last_status >= t->interval_ms)
			if ((rc = send_status(t, 0)) != 0)
				return rc;
		deadline = t->last_status + t->interval_ms;
		if (t->qlen > 0 || t->confirmed != t->sent_confirmed)
			deadline = now + ACK_POLL_MS;
		if ((rc = prg_timeout(&t->prg, -1)) >= 0 && now + rc < deadline)
			deadline = now + rc;
		/*
		 * Lingering, neither read nor ask to write (a pipe with room
		 * is always writable): let the server's messages gather.
		 */
		hold = t->linger && t->out.len > t->out_off &&
		    now < t->first_out + LINGER_MS;
		if (hold && t->first_out + LINGER_MS < deadline)
			deadline = t->first_out + LINGER_MS;
		pfd[0].fd = PQsocket(t->repl);
		pfd[0].events = full || hold ? 0 : POLLIN;
		pfd[1].fd = STDOUT_FILENO;
		/* POLLOUT when waiting to write; else only hang-ups. */
		pfd[1].events = t->out.len > t->out_off && !hold ? POLLOUT : 0;
		pfd[0].revents = pfd[1].revents = 0;
		rc = poll(pfd, 2, deadline > now ? (int)(deadline - now) : 0);
		if (rc < 0 && errno != EINTR)
			err(EX_OSERR, "poll");
		if (pfd[1].revents & (POLLERR | POLLHUP)) {
			t->out_err = EPIPE;
			return -1;
		}
		/* What gathered while lingering is read once it is over. */
		if ((rc > 0 && (pfd[0].revents & (POLLIN | POLLERR | POLLHUP))) ||
		    (!full && pfd[0].events == 0 &&
		    util_mono_ms() >= t->first_out + LINGER_MS)) {
			if (PQconsumeInput(t->repl) == 0) {
				warnx("database: %s", db_message(NULL,
				    t->repl));
				return EX_UNAVAILABLE;
			}
		}
	}
	return 0;
}

/*
 * --once, caught up: close standard output so that the consumers see the
 * end, wait for the ack files to cover everything written (keeping the
 * connection alive), and say which ack file is behind if they do not.
 */
static int
drain(struct tail *t)
{
	struct ack_pos a[MAX_ACK];
	int have[MAX_ACK], rc;
	int64_t deadline, now;
	const struct pending *e;
	size_t i;

	close(STDOUT_FILENO);
	deadline = util_mono_ms() + t->wait_ms;
	while ((rc = advance(t)) == 0 && t->qlen > 0 && !t->peek &&
	    t->nack > 0 && (now = util_mono_ms()) < deadline && !util_stop) {
		if (now - t->last_status >= t->interval_ms &&
		    (rc = send_status(t, 0)) != 0)
			return rc;
		prg_tick(&t->prg);
		poll(NULL, 0, 20);
	}
	if (rc != 0 || t->qlen == 0 || t->peek || t->nack == 0)
		return rc;
	e = &t->queue[t->qhead];
	for (i = 0; i < t->nack; i++) {
		if ((rc = ack_read(t->ack_files[i], &a[i])) < 0)
			return EX_IOERR;
		have[i] = rc;
		if (!have[i])
			warnx("--once: %s: missing after %.1f s", t->ack_files[i],
			    t->wait_ms / 1000.0);
		else if (a[i].lsn < e->lsn || (a[i].lsn == e->lsn &&
		    a[i].seq < e->last))
			warnx("--once: %s: at %" PRIu64 "/%" PRIu64 ", behind "
			    "%" PRIu64 "/%" PRIu64 " after %.1f s",
			    t->ack_files[i], a[i].lsn, a[i].seq, e->lsn, e->last,
			    t->wait_ms / 1000.0);
	}
	warnx("--once: %zu transactions not acknowledged; they will be sent "
	    "again", t->qlen);
	return EX_TEMPFAIL;
}


static void
parse_options(struct tail *t, int argc, char *argv[])
{
	enum { OPT_DROP = 256, OPT_ONCE, OPT_PEEK, OPT_RECREATE, OPT_SNAP,
	    OPT_STATS };
	static const struct option longopts[] = {
		{ "ack-file", required_argument, NULL, 'a' },
		{ "dbname", required_argument, NULL, 'd' },
		{ "drop", no_argument, NULL, OPT_DROP },
		{ "help", no_argument, NULL, 'h' },
		{ "interval", required_argument, NULL, 'i' },
		{ "once", no_argument, NULL, OPT_ONCE },
		{ "peek", no_argument, NULL, OPT_PEEK },
		{ "publication", required_argument, NULL, 'p' },
		{ "recreate", no_argument, NULL, OPT_RECREATE },
		{ "slot", required_argument, NULL, 's' },
		{ "snapshot", required_argument, NULL, OPT_SNAP },
		{ "stats", required_argument, NULL, OPT_STATS },
		{ "table", required_argument, NULL, 't' },
		{ "version", no_argument, NULL, 'V' },
		{ "wait", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 }
	};
	int ch;

	while ((ch = getopt_long(argc, argv, "a:d:hi:p:s:t:Vw:", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'a':
			if (t->nack == MAX_ACK)
				errx(EX_USAGE, "-a: at most %d ack files", MAX_ACK);
			t->ack_files[t->nack++] = optarg;
			break;
		case 'd':
			t->conninfo = optarg;
			break;
		case 'i':
			t->interval_ms = (int64_t)(util_seconds("-i", optarg, 0.1, 3600) * 1000);
			break;
		case 'p':
			t->pub = optarg;
			break;
		case 's':
			t->slot = optarg;
			break;
		case 't':
			t->tables[t->ntables++] = optarg;
			break;
		case 'V':
			util_version();
			exit(0);
		case 'w':
			t->wait_ms = (int64_t)(util_seconds("-w", optarg, 0, 86400) * 1000);
			break;
		case OPT_DROP:
			t->drop = 1;
			break;
		case OPT_ONCE:
			t->once = 1;
			break;
		case OPT_PEEK:
			t->peek = 1;
			break;
		case OPT_RECREATE:
			t->recreate = 1;
			break;
		case OPT_SNAP:
			if (strcmp(optarg, "initial") == 0)
				t->snapshot = 1;
			else if (strcmp(optarg, "never") == 0)
				t->snapshot = 0;
			else
				errx(EX_USAGE, "--snapshot %s: want initial or "
				    "never", optarg);
			break;
		case OPT_STATS:
			t->stats_ms = prg_option(optarg);
			break;
		case 'h':
			util_help(synopsis, options);
		default:
			util_usage(synopsis);
		}
	}
	if (optind != argc)
		util_usage(synopsis);
	if (!util_pg_name(t->slot) || strlen(t->slot) > MAX_SLOT)
		errx(EX_USAGE, "-s %s: want 1 to %d of a-z, 0-9 and _", t->slot,
		    MAX_SLOT);
	snprintf(t->marker, sizeof(t->marker), "%s%s", t->slot, MARKER_SUFFIX);
	if (!util_pg_name(t->pub))
		errx(EX_USAGE, "-p %s: want 1 to 63 of a-z, 0-9 and _", t->pub);
	if (t->ntables == 0)
		t->tables[t->ntables++] = "public.order_event";
}

/* The server's WAL, as its keepalives say, not yet confirmed. */
static int64_t
lag_bytes(void *arg)
{
	struct tail *t = arg;

	return t->server_end > t->confirmed ?
	    (int64_t)(t->server_end - t->confirmed) : 0;
}

static int64_t
unacknowledged(void *arg)
{
	const struct tail *t = arg;

	return t->peek || t->nack == 0 ? 0 : (int64_t)t->qlen;
}

/* Standard output non-blocking when it is a pipe or socket of ours. */
static void
out_init(struct tail *t)
{
	struct stat st;

	sb_init(&t->out);
	t->out_flags = -1;
	if (fstat(STDOUT_FILENO, &st) == 0 && (S_ISFIFO(st.st_mode) ||
	    S_ISSOCK(st.st_mode)) &&
	    (t->out_flags = fcntl(STDOUT_FILENO, F_GETFL)) >= 0 &&
	    fcntl(STDOUT_FILENO, F_SETFL, t->out_flags | O_NONBLOCK) < 0)
		t->out_flags = -1;
}

int
main(int argc, char *argv[])
{
	struct tail t;
	int rc, status = 0;

	util_signals();
	memset(&t, 0, sizeof(t));
	t.slot = "cqrs_outbox";
	t.pub = "cqrs_outbox";
	t.interval_ms = 10000;
	t.wait_ms = 60000;
	t.snapshot = 1;
	t.tables = xmalloc(sizeof(*t.tables) * (size_t)argc);
	parse_options(&t, argc, argv);
	prg_init(&t.prg, t.stats_ms);
	prg_counter(&t.prg, "events", &t.nevents);
	prg_counter(&t.prg, "transactions", &t.ntxns);
	prg_gauge(&t.prg, "lag_bytes", lag_bytes, &t);
	prg_gauge(&t.prg, "unacknowledged", unacknowledged, &t);

	if ((status = prepare(&t)) != 0 || t.drop)
		goto done;
	if ((t.repl = db_connect(t.conninfo, 1, &status)) == NULL)
		goto done;
	if ((status = identify(&t)) != 0)
		goto done;
	t.queue = xmalloc(sizeof(*t.queue) * MAX_PENDING);
	pgo_init(&t.pgo, t.src);
	out_init(&t);
	if ((status = settle_slot(&t)) == 0 && !util_stop)
		status = stream(&t);

	/* Write out what is held; what a reader did not take is not confirmed. */
	if (status == 0 || status == -1)
		out_flush(&t, !util_stop);
	if (t.out_err != 0 && t.out_err != EPIPE) {
		errno = t.out_err;
		warn("stdout");
		status = EX_IOERR;
	} else if (status == -1)
		status = 0;	/* the reader went away */
	if (status == 0 && t.once && t.caught_up)
		status = drain(&t);
	if (t.streaming && PQstatus(t.repl) == CONNECTION_OK &&
	    status != EX_UNAVAILABLE) {
		if (status != EX_IOERR && advance(&t) == 0)
			send_status(&t, 0);
	}
	if (t.out_flags >= 0)
		fcntl(STDOUT_FILENO, F_SETFL, t.out_flags);
	if (t.queue != NULL) {
		pgo_free(&t.pgo);
		sb_free(&t.out);
	}
done:
	if (t.repl != NULL)
		PQfinish(t.repl);
	if (t.db != NULL)
		PQfinish(t.db);
	free(t.queue);
	free(t.tables);
	rc = status < 0 ? EX_SOFTWARE : status;
	return util_exit(rc);
}
