/* outbox-status: the pipeline's state (slot lag, pending outbox rows, ack files, read model) as one JSON object or Prometheus text. */
#include <sys/stat.h>

#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "ack.h"
#include "db.h"
#include "ndj.h"
#include "rds.h"
#include "util.h"

#define EX_ALERT	1	/* a threshold was passed, or a check failed */
#define MAX_NAME	63
#define SCAN_COUNT	"1000"

/* Where an ack file's source stands against the slot's. */
enum { SRC_NONE, SRC_SAME, SRC_OTHER };

struct ack_info {
	const char	*path;
	int		 exists;
	int		 regular;	/* a regular file */
	int		 valid;		/* holds a well-formed position */
	struct ack_pos	 pos;
	double		 mtime;		/* Unix seconds */
	int		 held;		/* a consumer holds its lock: 1, 0, -1 */
	int		 src;		/* SRC_* */
	int		 ahead;		/* beyond the server's WAL */
	int		 behind;	/* newer outbox rows wait */
	int		 have_lag;
	uint64_t	 lag;
};

struct status {
	/* What to look at. */
	const char	*conninfo;
	const char	*slot;
	const char	*table;
	const char	*redis_url;	/* -r, or NULL: $REDIS_URL */
	const char	*pass_file;
	int		 redis;		/* look at the read model */
	int		 prometheus;
	int64_t		 max_lag;	/* -1: no threshold */
	double		 max_age;	/* < 0: no threshold */
	const char	*max_lag_arg;
	const char	*max_age_arg;
	/* The server. */
	double		 now;		/* this host's clock, Unix seconds */
	char		 sysid[24];
	long		 tli;
	int		 recovery;
	uint64_t	 wal;		/* flush (or replay) position */
	double		 server_time;
	long		 version;
	char		 dbname[128];
	char		 source[ACK_SRC_MAX];
	/* The slot. */
	int		 slot_exists;
	int		 slot_active;
	int		 snapshot_pending;	/* outbox-tail's marker slot */
	long		 active_pid;	/* 0: none */
	char		 plugin[128];
	char		 slot_db[128];
	char		 wal_status[32];
	int		 have_confirmed, have_restart, have_safe, have_reply;
	uint64_t	 confirmed;
	uint64_t	 restart;
	int64_t		 safe_wal;
	double		 reply_age;
	uint64_t	 slot_lag;
	uint64_t	 retained;
	/* The outbox. */
	int64_t		 pending;
	int		 have_dates;
	int64_t		 oldest;
	int64_t		 newest;
	/* Ack files and the read model. */
	struct ack_info	*acks;
	size_t		 nacks;
	uint64_t	 clients;
	/* What needs attention. */
	char		**alerts;
	size_t		 nalerts;
};

static const char synopsis[] =
    "usage: outbox-status [-hV] [--prometheus] [--max-age seconds] "
    "[--max-lag bytes]\n"
    "                     [-a ack-file] [-d conninfo] [-P password-file] "
    "[-r url]\n"
    "                     [-s slot] [-t table]\n";

static const char options[] =
    "  -a, --ack-file FILE       report on a consumer's ack file (repeatable)\n"
    "  -d, --dbname CONNINFO     the database (default: libpq's environment)\n"
    "  -h, --help                print this help and exit\n"
    "      --max-age SECONDS     exit 1 if the oldest pending row, or an ack file\n"
    "                            that newer rows wait for, is older\n"
    "      --max-lag BYTES       exit 1 if the slot or an ack file lags more\n"
    "                            (suffix k, M or G: powers of 1024)\n"
    "  -P, --password-file FILE  the Redis password, from a file\n"
    "      --prometheus          Prometheus text format instead of JSON\n"
    "  -r, --redis URL           count the read model's clients (default\n"
    "                            $REDIS_URL; neither: no read model)\n"
    "  -s, --slot NAME           the replication slot (default cqrs_outbox)\n"
    "  -t, --table TABLE         the outbox table (default public.order_event)\n"
    "  -V, --version             print the version and exit\n";

/* Record a problem: reported on stderr now, listed in the output. */
static void
alert(struct status *st, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		err(EX_OSERR, "vasprintf");
	va_end(ap);
	warnx("%s", s);
	st->alerts = xrealloc(st->alerts, sizeof(*st->alerts) *
	    (st->nalerts + 1));
	st->alerts[st->nalerts++] = s;
}

/* --max-lag: digits, then optionally k, M or G (powers of 1024). */
static int
parse_bytes(const char *s, int64_t *v)
{
	uint64_t x = 0, mult = 1;
	const char *p = s;

	if (*p < '0' || *p > '9')
		return -1;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (x > (UINT64_C(1) << 62) / 10)
			return -1;
		x = x * 10 + (uint64_t)(*p - '0');
	}
	if (*p == 'k' || *p == 'K')
		mult = 1024;
	else if (*p == 'M')
		mult = 1024 * 1024;
	else if (*p == 'G')
		mult = 1024 * 1024 * 1024;
	if (mult > 1)
		p++;
	if (*p != '\0' || x > (UINT64_C(1) << 62) / mult)
		return -1;
	*v = (int64_t)(x * mult);
	return 0;
}

/* --max-age: a non-negative decimal number of seconds. */
static int
parse_seconds(const char *s, double *v)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	*v = strtod(s, &end);
	return *end == '\0' && errno == 0 && isfinite(*v) ? 0 : -1;
}

/* A numeric column (an LSN difference, a count) as an unsigned integer. */
static uint64_t
col_u64(const PGresult *res, int col)
{
	return strtoull(PQgetvalue(res, 0, col), NULL, 10);
}

static int64_t
col_i64(const PGresult *res, int col)
{
	return strtoll(PQgetvalue(res, 0, col), NULL, 10);
}

static void
col_str(const PGresult *res, int col, char *buf, size_t size)
{
	snprintf(buf, size, "%s", PQgetvalue(res, 0, col));
}

/*
 * Run one query that returns one row; 0, or the exit code after
 * reporting the server's message.
 */
static int
query(PGconn *db, const char *sql, const char *param, int ncols,
    PGresult **resp)
{
	PGresult *res;
	int rc;

	res = PQexecParams(db, sql, param ? 1 : 0, NULL, &param, NULL, NULL,
	    0);
	if (PQresultStatus(res) == PGRES_COMMAND_OK && ncols == 0) {
		PQclear(res);
		return 0;
	}
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQnfields(res) ==
	    ncols && PQntuples(res) <= 1) {
		*resp = res;
		return 0;
	}
	warnx("database: %s", db_message(res, db));
	rc = db_exit_code(res, db);
	PQclear(res);
	return rc == EX_DATAERR ? EX_SOFTWARE : rc;
}

/*
 * The slot.  Read before the server's WAL position, so that no position
 * read here is past it.
 */
static int
look_slot(struct status *st, PGconn *db)
{
	static const char sql[] =
	    "SELECT r.active, coalesce(r.active_pid, 0),"
	    " (r.confirmed_flush_lsn - '0/0'::pg_lsn)::text,"
	    " (r.restart_lsn - '0/0'::pg_lsn)::text,"
	    " coalesce(r.wal_status, ''), r.safe_wal_size,"
	    " coalesce(r.plugin, ''), coalesce(r.database, ''),"
	    " extract(epoch FROM clock_timestamp() - w.reply_time)::text"
	    " FROM pg_replication_slots r"
	    " LEFT JOIN pg_stat_replication w ON w.pid = r.active_pid"
	    " WHERE r.slot_name = $1";
	PGresult *res;
	char marker[MAX_NAME + 16];
	int rc;

	/*
	 * outbox-tail keeps a slot "SLOT_snapshot" from the creation of its
	 * slot with a snapshot until every consumer has acknowledged the
	 * snapshot's last row.
	 */
	snprintf(marker, sizeof(marker), "%s_snapshot", st->slot);
	if ((rc = query(db, "SELECT 1 FROM pg_replication_slots WHERE "
	    "slot_name = $1", marker, 1, &res)) != 0)
		return rc;
	st->snapshot_pending = PQntuples(res) == 1;
	PQclear(res);
	if ((rc = query(db, sql, st->slot, 9, &res)) != 0)
		return rc;
	if ((st->slot_exists = PQntuples(res) == 1)) {
		st->slot_active = strcmp(PQgetvalue(res, 0, 0), "t") == 0;
		st->active_pid = strtol(PQgetvalue(res, 0, 1), NULL, 10);
		if ((st->have_confirmed = !PQgetisnull(res, 0, 2)))
			st->confirmed = col_u64(res, 2);
		if ((st->have_restart = !PQgetisnull(res, 0, 3)))
			st->restart = col_u64(res, 3);
		col_str(res, 4, st->wal_status, sizeof(st->wal_status));
		if ((st->have_safe = !PQgetisnull(res, 0, 5)))
			st->safe_wal = col_i64(res, 5);
		col_str(res, 6, st->plugin, sizeof(st->plugin));
		col_str(res, 7, st->slot_db, sizeof(st->slot_db));
		if ((st->have_reply = !PQgetisnull(res, 0, 8)))
			st->reply_age = strtod(PQgetvalue(res, 0, 8), NULL);
	}
	PQclear(res);
	return 0;
}

/*
 * The cluster's identity and WAL position.  The timeline is the one WAL
 * is written on now, as IDENTIFY_SYSTEM reports it: the first 8 hex
 * digits of the current WAL file's name (pg_control_checkpoint() would
 * lag behind a promotion until the next checkpoint).  A standby has no
 * current WAL file: there, its last checkpoint's timeline and its replay
 * position.  Every function here is open to PUBLIC on PostgreSQL 15.
 */
static int
look_server(struct status *st, PGconn *db)
{
	static const char sql[] =
	    "SELECT s.system_identifier::text,"
	    " CASE WHEN pg_is_in_recovery() THEN c.timeline_id::int8"
	    "  ELSE ('x' || substr(pg_walfile_name(pg_current_wal_flush_lsn()),"
	    "  1, 8))::bit(32)::int8 END,"
	    " pg_is_in_recovery(),"
	    " (CASE WHEN pg_is_in_recovery()"
	    "  THEN coalesce(pg_last_wal_replay_lsn(), '0/0')"
	    "  ELSE pg_current_wal_flush_lsn() END - '0/0'::pg_lsn)::text,"
	    " extract(epoch FROM clock_timestamp())::text,"
	    " current_setting('server_version_num'), current_database()"
	    " FROM pg_control_system() s, pg_control_checkpoint() c";
	PGresult *res;
	int rc;

	if ((rc = query(db, sql, NULL, 7, &res)) != 0)
		return rc;
	if (PQntuples(res) != 1) {
		PQclear(res);
		warnx("database: no row from pg_control_system()");
		return EX_SOFTWARE;
	}
	col_str(res, 0, st->sysid, sizeof(st->sysid));
	st->tli = strtol(PQgetvalue(res, 0, 1), NULL, 10);
	st->recovery = strcmp(PQgetvalue(res, 0, 2), "t") == 0;
	st->wal = col_u64(res, 3);
	st->server_time = strtod(PQgetvalue(res, 0, 4), NULL);
	st->version = strtol(PQgetvalue(res, 0, 5), NULL, 10);
	col_str(res, 6, st->dbname, sizeof(st->dbname));
	PQclear(res);
	snprintf(st->source, sizeof(st->source), "pg:%s:%ld:%s", st->sysid,
	    st->tli, st->slot);
	return 0;
}

/* "schema.table" or "table" (public), each part quoted; NULL if bad. */
static char *
quote_table(PGconn *db, const char *t)
{
	const char *dot = strchr(t, '.');
	char *a, *b, *q = NULL;

	if (dot == NULL)
		a = PQescapeIdentifier(db, "public", 6);
	else
		a = PQescapeIdentifier(db, t, (size_t)(dot - t));
	b = PQescapeIdentifier(db, dot ? dot + 1 : t, strlen(dot ? dot + 1 :
	    t));
	if (a != NULL && b != NULL && asprintf(&q, "%s.%s", a, b) < 0)
		q = NULL;
	PQfreemem(a);
	PQfreemem(b);
	return q;
}

/* The rows waiting in the outbox, and the dates of the oldest and newest. */
static int
look_outbox(struct status *st, PGconn *db)
{
	PGresult *res;
	struct sbuf sql;
	char *q;
	int rc;

	if ((q = quote_table(db, st->table)) == NULL) {
		warnx("-t %s: %s", st->table, PQerrorMessage(db));
		return EX_USAGE;
	}
	/* The only SQL assembled at run time: an escaped identifier. */
	sb_init(&sql);
	sb_puts(&sql, "SELECT count(*), min(event_date)::text, "
	    "max(event_date)::text FROM ");
	sb_puts(&sql, q);
	free(q);
	rc = query(db, sql.buf, NULL, 3, &res);
	sb_free(&sql);
	if (rc != 0)
		return rc;
	st->pending = col_i64(res, 0);
	if ((st->have_dates = !PQgetisnull(res, 0, 1))) {
		st->oldest = col_i64(res, 1);
		st->newest = col_i64(res, 2);
	}
	PQclear(res);
	return 0;
}

/* Everything from PostgreSQL, in one read-only transaction. */
static int
look_db(struct status *st)
{
	PGconn *db;
	int rc;
	size_t i;

	if ((db = db_connect(st->conninfo, 0, &rc)) == NULL)
		return rc;
	/* A monitor must not hang: on a lock, or on a stuck server. */
	rc = query(db, "BEGIN READ ONLY", NULL, 0, NULL);
	if (rc == 0)
		rc = query(db, "SET LOCAL statement_timeout = '30s'", NULL, 0,
		    NULL);
	if (rc == 0)
		rc = query(db, "SET LOCAL lock_timeout = '10s'", NULL, 0, NULL);
	if (rc == 0)
		rc = look_slot(st, db);
	if (rc == 0)
		rc = look_server(st, db);
	if (rc == 0)
		rc = look_outbox(st, db);
	if (rc == 0)
		rc = query(db, "COMMIT", NULL, 0, NULL);
	PQfinish(db);
	if (rc != 0)
		return rc;
	for (i = 0; i < st->nacks; i++)
		if (st->acks[i].valid && st->acks[i].pos.src[0] != '\0')
			st->acks[i].src = strcmp(st->acks[i].pos.src,
			    st->source) == 0 ? SRC_SAME : SRC_OTHER;
	return 0;
}

/*
 * Read an ack file as a consumer left it, without its lock.  0 (a
 * missing or malformed file is a finding, not a failure), or 77 or 74
 * when it cannot be read (reported).
 */
static int
look_ack(struct ack_info *a)
{
	char buf[ACK_SRC_MAX + 64];
	struct stat sb;
	ssize_t n;
	int fd;

	/* O_NONBLOCK: a fifo in its place must not hang the monitor. */
	if ((fd = open(a->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)) < 0) {
		if (errno == ENOENT)
			return 0;
		warn("%s", a->path);
		return errno == EACCES ? EX_NOPERM : EX_IOERR;
	}
	if (fstat(fd, &sb) < 0) {
		warn("%s", a->path);
		close(fd);
		return EX_IOERR;
	}
	a->exists = 1;
	a->mtime = (double)sb.st_mtim.tv_sec + sb.st_mtim.tv_nsec / 1e9;
	if ((a->regular = S_ISREG(sb.st_mode))) {
		if ((n = read(fd, buf, sizeof(buf))) < 0) {
			warn("%s", a->path);
			close(fd);
			return EX_IOERR;
		}
		a->valid = (size_t)n < sizeof(buf) &&
		    ack_parse(buf, (size_t)n, &a->pos) == 0;
	}
	close(fd);
	a->held = ack_held(a->path);
	return 0;
}

/* The number of clients in the read model: keys client:ID, ID in digits. */
static int
look_redis(struct status *st)
{
	redisContext *c;
	redisReply *r, *keys;
	char cursor[32] = "0";
	const char *k;
	size_t i;
	int ex;

	if ((c = rds_connect(st->redis_url, st->pass_file, &ex)) == NULL)
		return ex;
	do {
		r = redisCommand(c, "SCAN %s MATCH client:[1-9]* COUNT "
		    SCAN_COUNT, cursor);
		if (r == NULL || r->type != REDIS_REPLY_ARRAY ||
		    r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING ||
		    r->element[0]->len >= sizeof(cursor) ||
		    r->element[1]->type != REDIS_REPLY_ARRAY) {
			warnx("redis: SCAN: %s", r == NULL ? c->errstr :
			    r->type == REDIS_REPLY_ERROR ? r->str :
			    "unexpected reply");
			ex = rds_exit_code(c, r);
			freeReplyObject(r);
			redisFree(c);
			return ex;
		}
		memcpy(cursor, r->element[0]->str, r->element[0]->len + 1);
		keys = r->element[1];
		for (i = 0; i < keys->elements; i++) {
			if (keys->element[i]->type != REDIS_REPLY_STRING)
				continue;
			k = keys->element[i]->str + 7;
			if (strspn(k, "0123456789") == strlen(k))
				st->clients++;
		}
		freeReplyObject(r);
	} while (strcmp(cursor, "0") != 0);
	redisFree(c);
	return 0;
}

/* Lags, ages and the checks that make the exit status. */
static void
judge(struct status *st)
{
	struct ack_info *a;
	uint64_t eff;
	double age;
	size_t i;
	int credit;

	if (!st->slot_exists)
		alert(st, "slot %s: does not exist (outbox-tail creates it "
		    "on its first run; a slot that disappeared means events "
		    "may be missing)", st->slot);
	else {
		if (st->have_confirmed && st->wal > st->confirmed)
			st->slot_lag = st->wal - st->confirmed;
		if (st->have_restart && st->wal > st->restart)
			st->retained = st->wal - st->restart;
		if (strcmp(st->plugin, "pgoutput") != 0)
			alert(st, "slot %s: not a pgoutput slot (plugin \"%s\")",
			    st->slot, st->plugin);
		else if (strcmp(st->slot_db, st->dbname) != 0)
			alert(st, "slot %s: belongs to database \"%s\", not "
			    "\"%s\"", st->slot, st->slot_db, st->dbname);
		if (strcmp(st->wal_status, "lost") == 0)
			alert(st, "slot %s: wal_status lost: WAL it needs was "
			    "removed, events may be missing", st->slot);
		else if (strcmp(st->wal_status, "unreserved") == 0)
			alert(st, "slot %s: wal_status unreserved: it is past "
			    "max_slot_wal_keep_size, its WAL may be removed at "
			    "the next checkpoint", st->slot);
		if (st->max_lag >= 0 && st->slot_lag > (uint64_t)st->max_lag)
			alert(st, "slot %s: lag %" PRIu64 " bytes, over "
			    "--max-lag %s", st->slot, st->slot_lag,
			    st->max_lag_arg);
	}
	if (st->have_dates && st->max_age >= 0 &&
	    st->server_time - (double)st->oldest > st->max_age)
		alert(st, "outbox %s: oldest pending row %.1f s old, over "
		    "--max-age %s", st->table, st->server_time -
		    (double)st->oldest, st->max_age_arg);

	/*
	 * outbox-tail confirms only what every ack file covers: the slot's
	 * position counts as a consumer's when it is further on.  Not while
	 * the initial snapshot is pending: a new slot starts confirmed at
	 * its creation, before anyone has applied the snapshot.
	 */
	credit = st->slot_exists && st->have_confirmed &&
	    !st->snapshot_pending;
	for (i = 0; i < st->nacks; i++) {
		a = &st->acks[i];
		if (!a->exists) {
			/* Nothing acknowledged: as far as the slot, at most. */
			if (credit) {
				a->have_lag = 1;
				a->lag = st->slot_lag;
			}
			a->behind = st->snapshot_pending;
		} else if (!a->regular)
			alert(st, "ack file %s: not a regular file", a->path);
		else if (!a->valid)
			alert(st, "ack file %s: not an ack file (want one line "
			    "\"LSN SEQ SOURCE\")", a->path);
		else if (a->src == SRC_OTHER)
			alert(st, "ack file %s: from %s, not this slot's %s",
			    a->path, a->pos.src, st->source);
		else if (a->pos.lsn > st->wal) {
			a->ahead = 1;
			alert(st, "ack file %s: position %" PRIu64 " is beyond "
			    "the server's WAL (%" PRIu64 "): from another "
			    "server?", a->path, a->pos.lsn, st->wal);
		} else {
			eff = a->pos.lsn;
			if (credit && st->confirmed > eff)
				eff = st->confirmed;
			a->have_lag = 1;
			a->lag = st->wal > eff ? st->wal - eff : 0;
			/* Rows placed after its last write still wait. */
			a->behind = st->have_dates &&
			    st->newest > (int64_t)floor(a->mtime);
		}
		if (a->have_lag && st->max_lag >= 0 &&
		    a->lag > (uint64_t)st->max_lag)
			alert(st, "ack file %s: lag %" PRIu64 " bytes, over "
			    "--max-lag %s", a->path, a->lag, st->max_lag_arg);
		age = st->now - a->mtime;
		if (a->behind && st->max_age >= 0 && age > st->max_age)
			alert(st, "ack file %s: not written for %.1f s while "
			    "newer rows wait, over --max-age %s", a->path,
			    age, st->max_age_arg);
	}
}

static void
put_f(struct sbuf *o, double v)
{
	char b[64];

	snprintf(b, sizeof(b), "%.3f", v < 0 ? 0.0 : v);
	sb_puts(o, b);
}

static void
put_key(struct sbuf *o, const char *k)
{
	sb_putc(o, ',');
	sb_json_str(o, k, strlen(k));
	sb_putc(o, ':');
}

static void
put_bool(struct sbuf *o, const char *k, int v)
{
	put_key(o, k);
	sb_puts(o, v ? "true" : "false");
}

static void
put_str(struct sbuf *o, const char *k, const char *v)
{
	put_key(o, k);
	sb_json_str(o, v, strlen(v));
}

static void
put_u64(struct sbuf *o, const char *k, int have, uint64_t v)
{
	put_key(o, k);
	if (have)
		sb_u64(o, v);
	else
		sb_puts(o, "null");
}

static void
put_i64(struct sbuf *o, const char *k, int have, int64_t v)
{
	put_key(o, k);
	if (have)
		sb_i64(o, v);
	else
		sb_puts(o, "null");
}

static void
put_secs(struct sbuf *o, const char *k, int have, double v)
{
	put_key(o, k);
	if (have)
		put_f(o, v);
	else
		sb_puts(o, "null");
}

/* The JSON object, on one line; see outbox-status(1). */
static void
json(const struct status *st, struct sbuf *o)
{
	const struct ack_info *a;
	size_t i;

	sb_puts(o, "{\"time\":");
	put_f(o, st->now);
	sb_puts(o, ",\"server\":{\"system_identifier\":");
	sb_json_str(o, st->sysid, strlen(st->sysid));
	put_i64(o, "timeline", 1, st->tli);
	put_bool(o, "in_recovery", st->recovery);
	put_u64(o, "wal_lsn", 1, st->wal);
	put_secs(o, "time", 1, st->server_time);
	put_i64(o, "version", 1, st->version);
	put_str(o, "database", st->dbname);
	sb_putc(o, '}');
	put_str(o, "source", st->source);

	sb_puts(o, ",\"slot\":{\"name\":");
	sb_json_str(o, st->slot, strlen(st->slot));
	put_bool(o, "exists", st->slot_exists);
	put_bool(o, "snapshot_pending", st->snapshot_pending);
	if (st->slot_exists) {
		put_bool(o, "active", st->slot_active);
		put_i64(o, "active_pid", st->active_pid != 0, st->active_pid);
		put_str(o, "plugin", st->plugin);
		put_str(o, "database", st->slot_db);
		put_u64(o, "confirmed_flush_lsn", st->have_confirmed,
		    st->confirmed);
		put_u64(o, "restart_lsn", st->have_restart, st->restart);
		put_u64(o, "lag_bytes", st->have_confirmed, st->slot_lag);
		put_u64(o, "retained_bytes", st->have_restart, st->retained);
		put_key(o, "wal_status");
		if (st->wal_status[0] != '\0')
			sb_json_str(o, st->wal_status, strlen(st->wal_status));
		else
			sb_puts(o, "null");
		put_bool(o, "wal_at_risk", strcmp(st->wal_status, "lost") ==
		    0 || strcmp(st->wal_status, "unreserved") == 0);
		put_i64(o, "safe_wal_size", st->have_safe, st->safe_wal);
		put_secs(o, "reply_age_seconds", st->have_reply,
		    st->reply_age);
	}
	sb_putc(o, '}');

	sb_puts(o, ",\"outbox\":{\"table\":");
	sb_json_str(o, st->table, strlen(st->table));
	put_i64(o, "pending", 1, st->pending);
	put_i64(o, "oldest_event_date", st->have_dates, st->oldest);
	put_i64(o, "newest_event_date", st->have_dates, st->newest);
	put_secs(o, "oldest_age_seconds", 1, st->have_dates ?
	    st->server_time - (double)st->oldest : 0);
	sb_puts(o, "},\"ack\":[");
	for (i = 0; i < st->nacks; i++) {
		a = &st->acks[i];
		sb_puts(o, i ? ",{\"path\":" : "{\"path\":");
		sb_json_str(o, a->path, strlen(a->path));
		put_bool(o, "exists", a->exists);
		put_bool(o, "valid", a->valid);
		put_u64(o, "lsn", a->valid, a->pos.lsn);
		put_u64(o, "seq", a->valid, a->pos.seq);
		put_key(o, "source");
		if (a->valid && a->pos.src[0] != '\0')
			sb_json_str(o, a->pos.src, strlen(a->pos.src));
		else
			sb_puts(o, "null");
		put_key(o, "source_ok");
		sb_puts(o, a->src == SRC_NONE ? "null" : a->src == SRC_SAME ?
		    "true" : "false");
		put_bool(o, "ahead", a->ahead);
		put_u64(o, "lag_bytes", a->have_lag, a->lag);
		put_secs(o, "age_seconds", a->exists, st->now - a->mtime);
		put_bool(o, "behind", a->behind);
		put_key(o, "held");
		sb_puts(o, a->held < 0 ? "null" : a->held ? "true" : "false");
		sb_putc(o, '}');
	}
	sb_putc(o, ']');
	if (st->redis) {
		sb_puts(o, ",\"read_model\":{\"clients\":");
		sb_u64(o, st->clients);
		sb_putc(o, '}');
	}
	sb_puts(o, ",\"alerts\":[");
	for (i = 0; i < st->nalerts; i++) {
		if (i > 0)
			sb_putc(o, ',');
		sb_json_str(o, st->alerts[i], strlen(st->alerts[i]));
	}
	sb_puts(o, "]}\n");
}

/*
 * A label value in the exposition format: \\, \" and \n escaped, bytes
 * that are not UTF-8 replaced by U+FFFD (the format is UTF-8).
 */
static void
prom_label(struct sbuf *o, const char *s)
{
	size_t n = strlen(s), i;
	long bad;

	while (n > 0) {
		bad = ndj_utf8_check(s, n);
		for (i = 0; i < (bad < 0 ? n : (size_t)bad); i++) {
			if (s[i] == '\\' || s[i] == '"')
				sb_putc(o, '\\');
			if (s[i] == '\n')
				sb_puts(o, "\\n");
			else
				sb_putc(o, s[i]);
		}
		if (bad < 0)
			break;
		sb_puts(o, "\xef\xbf\xbd");
		s += bad + 1;
		n -= (size_t)bad + 1;
	}
}

static void
prom_family(struct sbuf *o, const char *name, const char *help)
{
	sb_puts(o, "# HELP ");
	sb_puts(o, name);
	sb_putc(o, ' ');
	sb_puts(o, help);
	sb_puts(o, "\n# TYPE ");
	sb_puts(o, name);
	sb_puts(o, " gauge\n");
}

/* One sample: name{label="value"} number; label NULL for none. */
static void
prom_sample(struct sbuf *o, const char *name, const char *label,
    const char *value, double v)
{
	char b[64];

	sb_puts(o, name);
	if (label != NULL) {
		sb_putc(o, '{');
		sb_puts(o, label);
		sb_puts(o, "=\"");
		prom_label(o, value);
		sb_puts(o, "\"}");
	}
	if (v == floor(v) && fabs(v) < 9007199254740992.0)
		snprintf(b, sizeof(b), " %.0f\n", v);
	else
		snprintf(b, sizeof(b), " %.3f\n", v);
	sb_puts(o, b);
}

/* Per ack file: which of them has the figure, and its value. */
enum { A_EXISTS, A_VALID, A_POS, A_LAG, A_AGE, A_BEHIND, A_HELD, A_SRC };

static int
ack_figure(const struct status *st, const struct ack_info *a, int which,
    double *v)
{
	switch (which) {
	case A_EXISTS:
		*v = a->exists;
		return 1;
	case A_VALID:
		*v = a->valid;
		return a->exists;
	case A_POS:
		*v = (double)a->pos.lsn;
		return a->valid;
	case A_LAG:
		*v = (double)a->lag;
		return a->have_lag;
	case A_AGE:
		*v = st->now - a->mtime < 0 ? 0 : st->now - a->mtime;
		return a->exists;
	case A_BEHIND:
		*v = a->behind;
		return 1;
	case A_HELD:
		*v = a->held;
		return a->held >= 0;
	default:
		*v = a->src == SRC_SAME;
		return a->src != SRC_NONE;
	}
}

/* The same figures as Prometheus gauges; see outbox-status(1). */
static void
prometheus(const struct status *st, struct sbuf *o)
{
	static const struct {
		const char *name, *help;
	} af[] = {
		{ "cqrs_ack_exists", "1 if the ack file exists (0: the "
		    "consumer has acknowledged nothing yet)." },
		{ "cqrs_ack_valid", "1 if the ack file holds a well-formed "
		    "position." },
		{ "cqrs_ack_position_bytes", "The LSN of the last event the "
		    "consumer applied, as a byte position." },
		{ "cqrs_ack_lag_bytes", "WAL bytes between the server's "
		    "position and what the consumer is known to have "
		    "applied." },
		{ "cqrs_ack_age_seconds", "Seconds since the consumer last "
		    "wrote the ack file (its mtime)." },
		{ "cqrs_ack_behind", "1 if outbox rows newer than the ack file "
		    "are pending: the consumer has not applied them yet." },
		{ "cqrs_ack_held", "1 if a running consumer holds the ack "
		    "file's lock." },
		{ "cqrs_ack_source_ok", "1 if the ack file's source is this "
		    "slot's, 0 if it is another's." },
	};
	const struct ack_info *a;
	size_t i, k, n;
	double v;
	char tli[24];

	prom_family(o, "cqrs_server_info", "The database cluster: its "
	    "system identifier, timeline, and the source identity of its "
	    "events (always 1).");
	snprintf(tli, sizeof(tli), "%ld", st->tli);
	sb_puts(o, "cqrs_server_info{system_identifier=\"");
	prom_label(o, st->sysid);
	sb_puts(o, "\",timeline=\"");
	sb_puts(o, tli);
	sb_puts(o, "\",source=\"");
	prom_label(o, st->source);
	sb_puts(o, "\"} 1\n");
	prom_family(o, "cqrs_server_in_recovery", "1 if the server is a "
	    "standby in recovery.");
	prom_sample(o, "cqrs_server_in_recovery", NULL, NULL, st->recovery);
	prom_family(o, "cqrs_server_time_seconds", "The database server's "
	    "clock, in Unix seconds.");
	prom_sample(o, "cqrs_server_time_seconds", NULL, NULL,
	    st->server_time);
	prom_family(o, "cqrs_wal_position_bytes", "The server's WAL flush "
	    "position (its LSN as a byte position).");
	prom_sample(o, "cqrs_wal_position_bytes", NULL, NULL,
	    (double)st->wal);

	prom_family(o, "cqrs_slot_exists", "1 if the replication slot "
	    "exists.");
	prom_sample(o, "cqrs_slot_exists", "slot", st->slot, st->slot_exists);
	prom_family(o, "cqrs_slot_snapshot_pending", "1 while outbox-tail's "
	    "initial snapshot is not acknowledged by every consumer.");
	prom_sample(o, "cqrs_slot_snapshot_pending", "slot", st->slot,
	    st->snapshot_pending);
	if (st->slot_exists) {
		prom_family(o, "cqrs_slot_active", "1 if a process "
		    "(outbox-tail) streams from the slot.");
		prom_sample(o, "cqrs_slot_active", "slot", st->slot,
		    st->slot_active);
		prom_family(o, "cqrs_slot_wal_at_risk", "1 if the slot's "
		    "wal_status is unreserved or lost.");
		prom_sample(o, "cqrs_slot_wal_at_risk", "slot", st->slot,
		    strcmp(st->wal_status, "lost") == 0 ||
		    strcmp(st->wal_status, "unreserved") == 0);
	}
	if (st->slot_exists && st->have_confirmed) {
		prom_family(o, "cqrs_slot_confirmed_position_bytes", "The "
		    "slot's confirmed_flush_lsn: what every consumer has "
		    "acknowledged.");
		prom_sample(o, "cqrs_slot_confirmed_position_bytes", "slot",
		    st->slot, (double)st->confirmed);
		prom_family(o, "cqrs_slot_lag_bytes", "WAL bytes between the "
		    "server's position and the slot's confirmed position.");
		prom_sample(o, "cqrs_slot_lag_bytes", "slot", st->slot,
		    (double)st->slot_lag);
	}
	if (st->slot_exists && st->have_restart) {
		prom_family(o, "cqrs_slot_retained_bytes", "WAL bytes the "
		    "server keeps for the slot: its position minus the "
		    "slot's restart_lsn.");
		prom_sample(o, "cqrs_slot_retained_bytes", "slot", st->slot,
		    (double)st->retained);
	}
	if (st->slot_exists && st->have_safe) {
		prom_family(o, "cqrs_slot_safe_wal_size_bytes", "WAL bytes "
		    "that can still be written before the slot is lost "
		    "(max_slot_wal_keep_size).");
		prom_sample(o, "cqrs_slot_safe_wal_size_bytes", "slot",
		    st->slot, (double)st->safe_wal);
	}
	if (st->slot_exists && st->have_reply) {
		prom_family(o, "cqrs_slot_reply_age_seconds", "Seconds since "
		    "the streaming process last reported its position.");
		prom_sample(o, "cqrs_slot_reply_age_seconds", "slot",
		    st->slot, st->reply_age < 0 ? 0 : st->reply_age);
	}

	prom_family(o, "cqrs_outbox_pending_rows", "Rows in the outbox "
	    "table: events not yet cleaned.");
	prom_sample(o, "cqrs_outbox_pending_rows", "table", st->table,
	    (double)st->pending);
	prom_family(o, "cqrs_outbox_oldest_age_seconds", "Age of the oldest "
	    "pending row by its event_date, on the server's clock (0 when "
	    "none).");
	v = st->have_dates ? st->server_time - (double)st->oldest : 0;
	prom_sample(o, "cqrs_outbox_oldest_age_seconds", "table", st->table,
	    v < 0 ? 0 : v);

	for (k = 0; k < sizeof(af) / sizeof(af[0]); k++) {
		for (i = n = 0; i < st->nacks; i++)
			n += ack_figure(st, &st->acks[i], (int)k, &v);
		if (n == 0)
			continue;
		prom_family(o, af[k].name, af[k].help);
		for (i = 0; i < st->nacks; i++) {
			a = &st->acks[i];
			if (ack_figure(st, a, (int)k, &v))
				prom_sample(o, af[k].name, "ack_file",
				    a->path, v);
		}
	}
	if (st->redis) {
		prom_family(o, "cqrs_read_model_clients", "Clients in the "
		    "Redis read model.");
		prom_sample(o, "cqrs_read_model_clients", NULL, NULL,
		    (double)st->clients);
	}
	prom_family(o, "cqrs_status_alerts", "Problems outbox-status found, "
	    "thresholds included (each is a line on its standard error).");
	prom_sample(o, "cqrs_status_alerts", NULL, NULL, (double)st->nalerts);
}

static int
look(struct status *st)
{
	size_t i;
	int rc;

	/*
	 * Ack files first, then the slot, then the server's position: each
	 * figure read is then at or before the ones read after it, and no
	 * lag comes out negative.
	 */
	for (i = 0; i < st->nacks; i++)
		if ((rc = look_ack(&st->acks[i])) != 0)
			return rc;
	st->now = (double)util_real_ms() / 1000;
	if ((rc = look_db(st)) != 0)
		return rc;
	if (st->redis && (rc = look_redis(st)) != 0)
		return rc;
	judge(st);
	return 0;
}

int
main(int argc, char *argv[])
{
	enum { OPT_MAX_AGE = 256, OPT_MAX_LAG, OPT_PROMETHEUS };
	static const struct option longopts[] = {
		{ "ack-file", required_argument, NULL, 'a' },
		{ "dbname", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ "max-age", required_argument, NULL, OPT_MAX_AGE },
		{ "max-lag", required_argument, NULL, OPT_MAX_LAG },
		{ "password-file", required_argument, NULL, 'P' },
		{ "prometheus", no_argument, NULL, OPT_PROMETHEUS },
		{ "redis", required_argument, NULL, 'r' },
		{ "slot", required_argument, NULL, 's' },
		{ "table", required_argument, NULL, 't' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct status st;
	struct ndj_writer out;
	const char *env, *dot;
	size_t i, k;
	int ch, rc;

	util_signals();
	memset(&st, 0, sizeof(st));
	st.slot = "cqrs_outbox";
	st.table = "public.order_event";
	st.max_lag = -1;
	st.max_age = -1;
	st.acks = xcalloc((size_t)argc, sizeof(*st.acks));
	while ((ch = getopt_long(argc, argv, "a:d:hP:r:s:t:V", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'a':
			for (k = 0; k < st.nacks; k++)
				if (strcmp(st.acks[k].path, optarg) == 0)
					errx(EX_USAGE, "-a %s: given twice",
					    optarg);
			st.acks[st.nacks].held = -1;
			st.acks[st.nacks++].path = optarg;
			break;
		case 'd':
			st.conninfo = optarg;
			break;
		case 'P':
			st.pass_file = optarg;
			break;
		case 'r':
			st.redis_url = optarg;
			break;
		case 's':
			st.slot = optarg;
			break;
		case 't':
			st.table = optarg;
			break;
		case 'V':
			util_version();
			free(st.acks);
			return 0;
		case OPT_MAX_AGE:
			if (parse_seconds(optarg, &st.max_age) < 0)
				errx(EX_USAGE, "--max-age %s: want seconds, a "
				    "number of at least 0", optarg);
			st.max_age_arg = optarg;
			break;
		case OPT_MAX_LAG:
			if (parse_bytes(optarg, &st.max_lag) < 0)
				errx(EX_USAGE, "--max-lag %s: want bytes, digits "
				    "with an optional k, M or G", optarg);
			st.max_lag_arg = optarg;
			break;
		case OPT_PROMETHEUS:
			st.prometheus = 1;
			break;
		case 'h':
			util_help(synopsis, options);
		default:
			util_usage(synopsis);
		}
	}
	if (optind != argc)
		util_usage(synopsis);
	if (!util_pg_name(st.slot))
		errx(EX_USAGE, "-s %s: want 1 to 63 of a-z, 0-9 and _",
		    st.slot);
	/* As outbox-tail -t takes it: table alone is public.table. */
	dot = strchr(st.table, '.');
	if (*st.table == '\0' || dot == st.table || (dot && dot[1] == '\0'))
		errx(EX_USAGE, "-t %s: want table or schema.table", st.table);
	env = getenv("REDIS_URL");
	st.redis = st.redis_url != NULL || (env != NULL && *env != '\0');
	if (st.pass_file != NULL && !st.redis)
		errx(EX_USAGE, "-P: the password of which Redis? (give -r or "
		    "set REDIS_URL)");

	if ((rc = look(&st)) == 0) {
		ndj_writer_init(&out, STDOUT_FILENO);
		if (st.prometheus)
			prometheus(&st, &out.out);
		else
			json(&st, &out.out);
		if (ndj_flush(&out) < 0 && out.err != EPIPE) {
			errno = out.err;
			warn("stdout");
			rc = EX_IOERR;
		} else
			rc = st.nalerts > 0 ? EX_ALERT : 0;
		ndj_writer_free(&out);
	}
	for (i = 0; i < st.nalerts; i++)
		free(st.alerts[i]);
	free(st.alerts);
	free(st.acks);
	return util_exit(rc);
}
