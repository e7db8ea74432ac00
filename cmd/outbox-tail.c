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
#include "util.h"

#define PG_EPOCH_OFFSET_S	946684800LL	/* 2000-01-01 in Unix time */
#define MAX_PENDING		(1 << 16)	/* unacknowledged transactions */
#define ACK_POLL_MS		100
#define MAX_NAME		63

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

struct column {
	char		*key;		/* "name": ready to copy */
	uint32_t	 type;
};

struct relation {
	uint32_t	 id;
	char		*meta;		/* ,"__table":"ns.name","__op":"c","__lsn": */
	struct column	*cols;
	uint16_t	 ncols;
};

/* A transaction that was written out but not yet acknowledged. */
struct pending {
	uint64_t	lsn;		/* commit LSN, the rows' __lsn */
	uint64_t	nrows;
	uint64_t	end;		/* end LSN, what is confirmed */
};

/* A bounds-checked cursor over one message. */
struct cursor {
	const unsigned char	*p;
	const unsigned char	*end;
	int			 bad;
};

static PGconn *conn;
static struct ndj_writer out;
static struct sbuf line;

static struct relation *rels;
static size_t nrels;

static struct pending *queue;	/* ring buffer */
static size_t qhead, qlen;

static struct {
	int		 open;
	uint64_t	 lsn;
	uint64_t	 seq;
	uint32_t	 xid;
	int64_t		 ts_ms;
} txn;

static const char **ack_files;
static size_t nack_files;
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
get64(struct cursor *c)
{
	uint64_t v = 0;
	int i;

	if (c->end - c->p < 8) {
		c->bad = 1;
		c->p = c->end;
		return 0;
	}
	for (i = 0; i < 8; i++)
		v = (v << 8) | *c->p++;
	return v;
}

static uint32_t
get32(struct cursor *c)
{
	uint32_t v;

	if (c->end - c->p < 4) {
		c->bad = 1;
		c->p = c->end;
		return 0;
	}
	v = (uint32_t)c->p[0] << 24 | (uint32_t)c->p[1] << 16 |
	    (uint32_t)c->p[2] << 8 | c->p[3];
	c->p += 4;
	return v;
}

static uint16_t
get16(struct cursor *c)
{
	uint16_t v;

	if (c->end - c->p < 2) {
		c->bad = 1;
		c->p = c->end;
		return 0;
	}
	v = (uint16_t)(c->p[0] << 8 | c->p[1]);
	c->p += 2;
	return v;
}

static int
get8(struct cursor *c)
{
	if (c->p >= c->end) {
		c->bad = 1;
		return 0;
	}
	return *c->p++;
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

static void
put_be64(unsigned char *b, uint64_t v)
{
	int i;

	for (i = 7; i >= 0; i--) {
		b[i] = (unsigned char)(v & 0xff);
		v >>= 8;
	}
}

static struct relation *
find_rel(uint32_t id)
{
	size_t i;

	for (i = 0; i < nrels; i++)
		if (rels[i].id == id)
			return &rels[i];
	return NULL;
}

static void
free_rel(struct relation *r)
{
	uint16_t i;

	for (i = 0; i < r->ncols; i++)
		free(r->cols[i].key);
	free(r->cols);
	free(r->meta);
}

/* Relation: remember (or replace) the table's name, columns and types. */
static int
on_relation(struct cursor *c)
{
	struct relation r, *old;
	const char *ns, *name, *col;
	struct sbuf sb;
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
	sb_puts(&sb, "\"__table\":");
	{
		struct sbuf full;

		sb_init(&full);
		sb_puts(&full, *ns ? ns : "pg_catalog");
		sb_putc(&full, '.');
		sb_puts(&full, name);
		sb_json_str(&sb, full.buf, full.len);
		sb_free(&full);
	}
	sb_puts(&sb, ",\"__op\":\"c\",\"__lsn\":");
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
	if ((old = find_rel(r.id)) != NULL) {
		free_rel(old);
		*old = r;
	} else {
		rels = xrealloc(rels, sizeof(*rels) * (nrels + 1));
		rels[nrels++] = r;
	}
	return 0;
}

/* Whether the text form of a number is also a JSON number. */
static int
json_number(const char *s, uint32_t len)
{
	if (len == 0)
		return 0;
	if (*s == '-') {
		s++;
		len--;
	}
	return len > 0 && *s >= '0' && *s <= '9';
}

static void
put_value(struct sbuf *sb, uint32_t type, const char *v, uint32_t len)
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
		sb_put(sb, v, len);
		return;
	}
	sb_json_str(sb, v, len);
}

/* Insert: one event line. */
static int
on_insert(struct cursor *c)
{
	struct relation *r;
	uint32_t relid, len;
	uint16_t ncols, i;
	int kind;

	relid = get32(c);
	if (get8(c) != 'N' || c->bad)
		return -1;
	ncols = get16(c);
	if (c->bad)
		return -1;
	if ((r = find_rel(relid)) == NULL) {
		warnx("pgoutput: Insert for relation %" PRIu32 " before its "
		    "Relation message", relid);
		return -1;
	}
	if (ncols != r->ncols) {
		warnx("pgoutput: Insert with %u columns, Relation has %u",
		    ncols, r->ncols);
		return -1;
	}
	line.len = 0;
	sb_putc(&line, '{');
	for (i = 0; i < ncols; i++) {
		sb_puts(&line, r->cols[i].key);
		kind = get8(c);
		if (kind == 't') {
			len = get32(c);
			if (c->bad || (uint32_t)(c->end - c->p) < len)
				return -1;
			put_value(&line, r->cols[i].type, (const char *)c->p,
			    len);
			c->p += len;
		} else if (kind == 'n' || kind == 'u')
			sb_puts(&line, "null");
		else
			return -1;
		sb_putc(&line, ',');
	}
	sb_puts(&line, r->meta);
	sb_u64(&line, txn.lsn);
	sb_puts(&line, ",\"__seq\":");
	sb_u64(&line, txn.seq++);
	sb_puts(&line, ",\"__xid\":");
	sb_u64(&line, txn.xid);
	sb_puts(&line, ",\"__ts_ms\":");
	sb_i64(&line, txn.ts_ms);
	sb_putc(&line, '}');
	return ndj_write(&out, line.buf, line.len) < 0 ? -2 : 0;
}

/*
 * One pgoutput message.  0 when handled, -1 for a malformed one
 * (protocol error), -2 when stdout failed.
 */
static int
decode(const unsigned char *msg, size_t len)
{
	struct cursor c = { msg + 1, msg + len, 0 };
	int rc;

	if (len < 1)
		return -1;
	switch (msg[0]) {
	case 'B':
		txn.lsn = get64(&c);
		txn.ts_ms = (int64_t)get64(&c) / 1000 +
		    PG_EPOCH_OFFSET_S * 1000;
		txn.xid = get32(&c);
		txn.seq = 0;
		txn.open = 1;
		return c.bad ? -1 : 0;
	case 'C': {
		struct pending *e;
		uint64_t end;

		get8(&c);		/* flags */
		get64(&c);		/* commit LSN, as in Begin */
		end = get64(&c);
		get64(&c);		/* commit time, as in Begin */
		if (c.bad || !txn.open)
			return -1;
		txn.open = 0;
		e = &queue[(qhead + qlen) % MAX_PENDING];
		e->lsn = txn.lsn;
		e->nrows = txn.seq;
		e->end = end;
		qlen++;
		return 0;
	}
	case 'R':
		return on_relation(&c);
	case 'I':
		if (!txn.open)
			return -1;
		rc = on_insert(&c);
		return rc == 0 && c.bad ? -1 : rc;
	case 'Y':		/* Type */
	case 'O':		/* Origin */
	case 'U':		/* Update */
	case 'D':		/* Delete: outbox-clean's, ignored */
	case 'T':		/* Truncate */
	case 'M':		/* logical decoding message */
		return 0;
	default:
		warnx("pgoutput: unknown message type '%c'", msg[0]);
		return -1;
	}
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
	if (qlen == 0 && !txn.open && server_end > confirmed)
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
	put_be64(b + 25, (uint64_t)((t - PG_EPOCH_OFFSET_S * 1000) * 1000));
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
setup(const char *conninfo, const char *slot, const char *pub,
    const char **tables, size_t ntables, int drop)
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
	const char *pub = "cqrs_outbox", **tables = NULL;
	size_t ntables = 0;
	long interval_ms = 10000, wait_ms = 60000;
	int ch, rc, once = 0, drop = 0, status = 0, caught_up = 0;
	uint64_t stop_at = 0;
	char *end, *buf, cmd[256];
	struct pollfd pfd;
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

	if ((rc = setup(conninfo, slot, pub, tables, ntables, drop)) != 0 ||
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
	sb_init(&line);
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
				if (rc == -1) {
					warnx("pgoutput: malformed '%c' "
					    "message (%d bytes)", n > 25 ?
					    m[25] : '?', n - 25);
					status = 76;
				} else if (rc == -2)
					status = EX_IOERR;
				if (once && !txn.open && qlen > 0 &&
				    queue[(qhead + qlen - 1) % MAX_PENDING].end
				    >= stop_at)
					caught_up = 1;
			} else if (m[0] == 'k' && n >= 18) {
				struct cursor c = { m + 1, m + n, 0 };

				server_end = get64(&c);
				get64(&c);
				if (once && server_end >= stop_at &&
				    !txn.open)
					caught_up = 1;
				if (get8(&c) && (advance() < 0 ||
				    send_status(0) < 0))
					status = advance() < 0 ? EX_IOERR :
					    EX_UNAVAILABLE;
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
		pfd.fd = PQsocket(conn);
		pfd.events = POLLIN;
		if (qlen == MAX_PENDING) {
			poll(NULL, 0, ACK_POLL_MS);
			continue;
		}
		rc = poll(&pfd, 1, deadline > t ? (int)(deadline - t) : 0);
		if (rc < 0 && errno != EINTR)
			err(EX_OSERR, "poll");
		if (rc > 0 && PQconsumeInput(conn) == 0) {
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
		while (advance() == 0 && qlen > 0 && now_ms() < deadline &&
		    !util_stop)
			poll(NULL, 0, 20);
		if (qlen > 0) {
			warnx("--once: %zu transactions not acknowledged "
			    "after %ld s; they will be sent again", qlen,
			    wait_ms / 1000);
			status = EX_TEMPFAIL;
		}
	}
	if (PQstatus(conn) == CONNECTION_OK && status != EX_UNAVAILABLE) {
		if (out.err == 0 || out.err == EPIPE)
			advance();
		send_status(0);
	}
	PQfinish(conn);
	sb_free(&line);
	ndj_writer_free(&out);
	for (size_t i = 0; i < nrels; i++)
		free_rel(&rels[i]);
	free(rels);
	free(queue);
	free(tables);
	free(ack_files);
	return status;
}
