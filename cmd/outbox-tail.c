/* outbox-tail: stream rows inserted into the outbox through logical replication (pgoutput) as JSON lines. */
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "ack.h"
#include "db.h"
#include "ndj.h"
#include "pgo.h"
#include "util.h"

#define MAX_PENDING		(1 << 16)	/* unacknowledged transactions */
#define ACK_POLL_MS		100
#define MAX_NAME		63

/* A transaction that was written out but not yet acknowledged. */
struct pending {
	uint64_t	lsn;		/* commit LSN, the rows' __lsn */
	uint64_t	nrows;
	uint64_t	end;		/* end LSN, what is confirmed */
};

static PGconn *conn;
static struct ndj_writer out;
static struct pgo pgo;

static struct pending *queue;	/* ring buffer */
static size_t qhead, qlen;

static const char **ack_files;
static size_t nack_files;
static const char **tables;	/* -t, for the publication */
static size_t ntables;
static uint64_t confirmed;	/* flush position reported to the server */
static uint64_t sent_confirmed;
static uint64_t server_end;	/* walEnd of the last keepalive */
static int64_t last_status_ms;
static int64_t last_ack_poll_ms;

static void
usage(void)
{
	fprintf(stderr, "usage: outbox-tail [-hV] [--drop] [--once] "
	    "[-a ack-file] [-d conninfo] [-i seconds]\n"
	    "                   [-p publication] [-s slot] [-t table] "
	    "[-w seconds]\n");
	exit(EX_USAGE);
}

static int64_t
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
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

/* Decode one message; stream rows out, queue commits for acknowledgement. */
static int
decode(const unsigned char *msg, size_t len)
{
	struct pending *e;

	switch (pgo_decode(&pgo, msg, len)) {
	case PGO_ROW:
		if (ndj_write(&out, pgo.line.buf, pgo.line.len) < 0)
			return -2;
		break;
	case PGO_COMMIT:
		e = &queue[(qhead + qlen) % MAX_PENDING];
		e->lsn = pgo.lsn;
		e->nrows = pgo.seq;
		e->end = pgo.end;
		qlen++;
		break;
	case PGO_NONE:
		break;
	default:
		warnx("pgoutput: %s", pgo.err);
		return -1;
	}
	return 0;
}

/* Whether every ack file is at or past the last row of e. */
static int
acked(const struct pending *e, const uint64_t *al, const uint64_t *as,
    const int *have)
{
	size_t i;

	if (e->nrows == 0)
		return 1;
	for (i = 0; i < nack_files; i++) {
		if (!have[i])
			return 0;
		if (al[i] < e->lsn || (al[i] == e->lsn && as[i] < e->nrows - 1))
			return 0;
	}
	return 1;
}

/*
 * Advance the confirmed position past the transactions every consumer
 * has acknowledged (or, without ack files, that stdout took).  With
 * nothing in flight, the last keepalive position is confirmed too, so that
 * an idle outbox never holds WAL back.  0, or -1 for a bad ack file.
 */
static int
advance(void)
{
	uint64_t al[16], as[16];
	int have[16];
	size_t i;
	int r;

	if (nack_files == 0) {
		if (out.out.len > 0 && ndj_flush(&out) < 0)
			return 0;
		for (; qlen > 0; qlen--, qhead = (qhead + 1) % MAX_PENDING)
			if (queue[qhead].end > confirmed)
				confirmed = queue[qhead].end;
	} else if (qlen > 0) {
		for (i = 0; i < nack_files; i++) {
			if ((r = ack_read(ack_files[i], &al[i], &as[i])) < 0)
				return -1;
			have[i] = r;
		}
		last_ack_poll_ms = now_ms();
		while (qlen > 0 && acked(&queue[qhead], al, as, have)) {
			if (queue[qhead].end > confirmed)
				confirmed = queue[qhead].end;
			qhead = (qhead + 1) % MAX_PENDING;
			qlen--;
		}
	}
	if (qlen == 0 && !pgo.open && server_end > confirmed)
		confirmed = server_end;
	return 0;
}

/* Standby status update: written, flushed and applied all = confirmed. */
static int
send_status(int reply)
{
	unsigned char b[34];
	int64_t t = now_ms();

	b[0] = 'r';
	put_be64(b + 1, confirmed);
	put_be64(b + 9, confirmed);
	put_be64(b + 17, confirmed);
	put_be64(b + 25, (uint64_t)((t - PGO_EPOCH_MS) * 1000));
	b[33] = (unsigned char)reply;
	if (PQputCopyData(conn, (const char *)b, sizeof(b)) != 1 ||
	    PQflush(conn) != 0) {
		warnx("database: %s", db_message(NULL, conn));
		return -1;
	}
	sent_confirmed = confirmed;
	last_status_ms = t;
	return 0;
}

static int
valid_name(const char *s)
{
	size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_");

	return n > 0 && n <= MAX_NAME && s[n] == '\0';
}

/* Run a query on the plain connection; the exit code on failure. */
static int
run(PGconn *db, const char *sql, const char *param, PGresult **resp)
{
	PGresult *res;
	int rc;

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
	/* Another outbox-tail created it first. */
	if (PQresultErrorField(res, PG_DIAG_SQLSTATE) != NULL &&
	    strcmp(PQresultErrorField(res, PG_DIAG_SQLSTATE), "42710") == 0) {
		PQclear(res);
		if (resp != NULL)
			*resp = NULL;
		return 0;
	}
	warnx("database: %s", db_message(res, db));
	rc = db_exit_code(res, db);
	if (rc == EX_DATAERR)
		rc = EX_SOFTWARE;
	PQclear(res);
	return rc;
}

static int
count_rows(PGconn *db, const char *sql, const char *param, int *rows)
{
	PGresult *res;
	int rc;

	if ((rc = run(db, sql, param, &res)) != 0)
		return rc;
	*rows = res ? PQntuples(res) : 0;
	PQclear(res);
	return 0;
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

/*
 * Create the publication (inserts only, so that outbox-clean's deletes
 * never travel) and then the slot, when missing; or, with drop, drop
 * both.  Returns 0 or an exit code.
 */
static int
setup(const char *conninfo, const char *slot, const char *pub, int drop)
{
	PGconn *db;
	struct sbuf sql;
	char *q;
	size_t i;
	int rc, rows;

	if ((db = db_connect(conninfo, 0, &rc)) == NULL)
		return rc;
	sb_init(&sql);
	if (drop) {
		rc = count_rows(db, "SELECT 1 FROM pg_replication_slots "
		    "WHERE slot_name = $1", slot, &rows);
		if (rc == 0 && rows > 0) {
			rc = run(db, "SELECT pg_drop_replication_slot($1)",
			    slot, NULL);
			if (rc == 0)
				warnx("dropped slot %s", slot);
		}
		if (rc == 0) {
			rc = count_rows(db, "SELECT 1 FROM pg_publication "
			    "WHERE pubname = $1", pub, &rows);
			if (rc == 0 && rows > 0) {
				sb_puts(&sql, "DROP PUBLICATION IF EXISTS ");
				sb_puts(&sql, pub);
				if ((rc = run(db, sql.buf, NULL, NULL)) == 0)
					warnx("dropped publication %s", pub);
			}
		}
		goto done;
	}
	rc = count_rows(db, "SELECT 1 FROM pg_publication WHERE pubname = $1",
	    pub, &rows);
	if (rc == 0 && rows == 0) {
		sb_puts(&sql, "CREATE PUBLICATION ");
		sb_puts(&sql, pub);
		sb_puts(&sql, " FOR TABLE ");
		for (i = 0; i < ntables; i++) {
			q = quote_table(db, tables[i]);
			if (i > 0)
				sb_puts(&sql, ", ");
			sb_puts(&sql, q);
			free(q);
		}
		sb_puts(&sql, " WITH (publish = 'insert')");
		if ((rc = run(db, sql.buf, NULL, NULL)) == 0)
			warnx("created publication %s", pub);
	}
	if (rc == 0)
		rc = count_rows(db, "SELECT 1 FROM pg_replication_slots WHERE "
		    "slot_name = $1", slot, &rows);
	if (rc == 0 && rows == 0) {
		rc = run(db, "SELECT pg_create_logical_replication_slot($1, "
		    "'pgoutput')", slot, NULL);
		if (rc == 0)
			warnx("created slot %s", slot);
	}
	if (rc == 0) {
		rc = count_rows(db, "SELECT 1 FROM pg_replication_slots WHERE "
		    "slot_name = $1 AND plugin = 'pgoutput' AND database = "
		    "current_database()", slot, &rows);
		if (rc == 0 && rows == 0) {
			warnx("slot %s: not a pgoutput slot of this database",
			    slot);
			rc = EX_CONFIG;
		}
	}
done:
	sb_free(&sql);
	PQfinish(db);
	return rc;
}

/* The server's WAL flush position, where --once stops. */
static int
identify(uint64_t *pos)
{
	PGresult *res = PQexec(conn, "IDENTIFY_SYSTEM");
	unsigned int hi, lo;
	int rc;

	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1 ||
	    PQnfields(res) < 3 ||
	    sscanf(PQgetvalue(res, 0, 2), "%X/%X", &hi, &lo) != 2) {
		warnx("IDENTIFY_SYSTEM: %s", db_message(res, conn));
		rc = db_exit_code(res, conn);
		PQclear(res);
		return rc;
	}
	*pos = (uint64_t)hi << 32 | lo;
	PQclear(res);
	return 0;
}

int
main(int argc, char *argv[])
{
	enum { OPT_DROP = 256, OPT_ONCE };
	static const struct option longopts[] = {
		{ "ack-file", required_argument, NULL, 'a' },
		{ "dbname", required_argument, NULL, 'd' },
		{ "drop", no_argument, NULL, OPT_DROP },
		{ "help", no_argument, NULL, 'h' },
		{ "interval", required_argument, NULL, 'i' },
		{ "once", no_argument, NULL, OPT_ONCE },
		{ "publication", required_argument, NULL, 'p' },
		{ "slot", required_argument, NULL, 's' },
		{ "table", required_argument, NULL, 't' },
		{ "version", no_argument, NULL, 'V' },
		{ "wait", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 }
	};
	static const char *default_table = "public.order_event";
	const char *conninfo = NULL, *slot = "cqrs_outbox";
	const char *pub = "cqrs_outbox";
	long interval_ms = 10000, wait_ms = 60000;
	int ch, rc, once = 0, drop = 0, status = 0, caught_up = 0;
	uint64_t stop_at = 0;
	char *end, *buf, cmd[256];
	struct pollfd pfd[2];
	int64_t t, deadline;
	int n;

	util_signals();
	tables = xmalloc(sizeof(*tables) * (size_t)argc);
	ack_files = xmalloc(sizeof(*ack_files) * (size_t)argc);
	while ((ch = getopt_long(argc, argv, "a:d:hi:p:s:t:Vw:", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'a':
			if (nack_files == 16)
				errx(EX_USAGE, "at most 16 ack files");
			ack_files[nack_files++] = optarg;
			break;
		case 'd':
			conninfo = optarg;
			break;
		case 'i':
			interval_ms = (long)(strtod(optarg, &end) * 1000);
			if (*end != '\0' || interval_ms < 100 ||
			    interval_ms > 3600000)
				errx(EX_USAGE, "-i: want seconds from 0.1 "
				    "to 3600");
			break;
		case 'p':
			pub = optarg;
			break;
		case 's':
			slot = optarg;
			break;
		case 't':
			tables[ntables++] = optarg;
			break;
		case 'V':
			util_version();
			return 0;
		case 'w':
			wait_ms = (long)(strtod(optarg, &end) * 1000);
			if (*end != '\0' || wait_ms < 0)
				errx(EX_USAGE, "-w: want seconds");
			break;
		case OPT_DROP:
			drop = 1;
			break;
		case OPT_ONCE:
			once = 1;
			break;
		case 'h':
		default:
			usage();
		}
	}
	if (optind != argc)
		usage();
	if (!valid_name(slot))
		errx(EX_USAGE, "-s %s: want 1 to 63 of a-z, 0-9 and _", slot);
	if (!valid_name(pub))
		errx(EX_USAGE, "-p %s: want 1 to 63 of a-z, 0-9 and _", pub);
	if (ntables == 0)
		tables[ntables++] = default_table;

	if ((rc = setup(conninfo, slot, pub, drop)) != 0 ||
	    drop)
		return rc;

	if ((conn = db_connect(conninfo, 1, &rc)) == NULL)
		return rc;
	if (once && (rc = identify(&stop_at)) != 0) {
		PQfinish(conn);
		return rc;
	}
	snprintf(cmd, sizeof(cmd), "START_REPLICATION SLOT %s LOGICAL 0/0 "
	    "(proto_version '1', publication_names '%s')", slot, pub);
	{
		PGresult *res = PQexec(conn, cmd);

		if (PQresultStatus(res) != PGRES_COPY_BOTH) {
			warnx("START_REPLICATION: %s", db_message(res, conn));
			rc = db_exit_code(res, conn);
			PQclear(res);
			PQfinish(conn);
			return rc == EX_DATAERR ? EX_SOFTWARE : rc;
		}
		PQclear(res);
	}

	queue = xmalloc(sizeof(*queue) * MAX_PENDING);
	ndj_writer_init(&out, STDOUT_FILENO);
	pgo_init(&pgo);
	last_status_ms = now_ms();

	while (!util_stop && !caught_up) {
		/* A full queue: let consumers catch up before reading on. */
		if (qlen == MAX_PENDING)
			n = 0;
		else
			n = PQgetCopyData(conn, &buf, 1);
		if (n > 0) {
			const unsigned char *m = (const unsigned char *)buf;

			if (m[0] == 'w' && n >= 25) {
				rc = decode(m + 25, (size_t)n - 25);
				if (rc == -1)
					status = 76;
				else if (rc == -2 && out.err != EPIPE)
					status = EX_IOERR;
				else if (rc == -2) {
					PQfreemem(buf);
					break;	/* the reader went away */
				}
				if (once && !pgo.open && qlen > 0 &&
				    queue[(qhead + qlen - 1) % MAX_PENDING].end
				    >= stop_at)
					caught_up = 1;
			} else if (m[0] == 'k' && n >= 18) {
				server_end = be64(m + 1);
				if (once && server_end >= stop_at &&
				    !pgo.open)
					caught_up = 1;
				if (m[17] && advance() < 0)
					status = EX_IOERR;
				else if (m[17] && send_status(0) < 0)
					status = EX_UNAVAILABLE;
			} else {
				warnx("replication: unknown message '%c'",
				    m[0]);
				status = 76;
			}
			PQfreemem(buf);
			if (status != 0)
				break;
			continue;
		}
		if (n == -1) {		/* the server ended the stream */
			PGresult *res = PQgetResult(conn);

			warnx("replication ended: %s", db_message(res, conn));
			status = db_exit_code(res, conn);
			if (status == EX_SOFTWARE || status == EX_DATAERR)
				status = EX_UNAVAILABLE;
			PQclear(res);
			break;
		}
		if (n == -2) {
			warnx("database: %s", db_message(NULL, conn));
			status = EX_UNAVAILABLE;
			break;
		}

		/* Nothing more pending from the server: write out. */
		if (out.out.len > 0 && ndj_flush(&out) < 0)
			break;
		t = now_ms();
		if (qlen > 0 || (qlen == 0 && server_end > confirmed)) {
			if ((nack_files == 0 || t - last_ack_poll_ms >=
			    ACK_POLL_MS || qlen == 0) && advance() < 0) {
				status = EX_IOERR;
				break;
			}
		}
		if ((confirmed != sent_confirmed &&
		    t - last_status_ms >= ACK_POLL_MS) ||
		    t - last_status_ms >= interval_ms) {
			if (send_status(0) < 0) {
				status = EX_UNAVAILABLE;
				break;
			}
		}
		deadline = last_status_ms + interval_ms;
		if (qlen > 0 || confirmed != sent_confirmed)
			deadline = t + ACK_POLL_MS;
		/* stdout too: a reader that went away ends the run at once. */
		pfd[0].fd = PQsocket(conn);
		pfd[0].events = qlen == MAX_PENDING ? 0 : POLLIN;
		pfd[1].fd = STDOUT_FILENO;
		pfd[1].events = 0;
		pfd[0].revents = pfd[1].revents = 0;
		rc = poll(pfd, 2, deadline > t ? (int)(deadline - t) : 0);
		if (rc < 0 && errno != EINTR)
			err(EX_OSERR, "poll");
		if (pfd[1].revents & (POLLERR | POLLHUP))
			break;
		if (rc > 0 && (pfd[0].revents & (POLLIN | POLLERR | POLLHUP)) &&
		    PQconsumeInput(conn) == 0) {
			warnx("database: %s", db_message(NULL, conn));
			status = EX_UNAVAILABLE;
			break;
		}
	}

	if (out.out.len > 0)
		ndj_flush(&out);
	if (out.err != 0 && out.err != EPIPE) {
		errno = out.err;
		warn("stdout");
		status = EX_IOERR;
	}
	if (once && caught_up && status == 0) {
		/* Let the consumers finish, then confirm what they took. */
		close(STDOUT_FILENO);
		deadline = now_ms() + wait_ms;
		while ((rc = advance()) == 0 && qlen > 0 &&
		    now_ms() < deadline && !util_stop)
			poll(NULL, 0, 20);
		if (rc < 0)
			status = EX_IOERR;
		else if (qlen > 0) {
			warnx("--once: %zu transactions not acknowledged "
			    "after %.1f s; they will be sent again", qlen,
			    wait_ms / 1000.0);
			status = EX_TEMPFAIL;
		}
	}
	if (PQstatus(conn) == CONNECTION_OK && status != EX_UNAVAILABLE) {
		if (status != EX_IOERR && (out.err == 0 || out.err == EPIPE))
			advance();
		send_status(0);
	}
	PQfinish(conn);
	pgo_free(&pgo);
	ndj_writer_free(&out);
	free(queue);
	free(tables);
	free(ack_files);
	return status;
}
