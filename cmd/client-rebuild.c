/* client-rebuild: rebuild the Redis read model from the order tables, at a point consistent with the replication slot. */
#include <err.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "ack.h"
#include "db.h"
#include "rmd.h"
#include "rds.h"
#include "util.h"

#define FLAG_MS		60000	/* the rebuild's flag, renewed ... */
#define FLAG_EVERY_MS	10000	/* ... this often */
#define PIPELINE	256	/* clients written per round trip */

struct rebuild {
	redisContext	*rc;
	PGconn		*repl;
	const char	*slot;
	char		 token[96];	/* the flag's value: host:pid */
	char		 src[ACK_SRC_MAX];
	char		 pos[32];
	char		 rbx[4096];	/* the snapshot's xmin:xmax:xip */
	char		 rbc[32];	/* this rebuild: the consistent point */
	char		 low[24];
	uint64_t	 cp;
	int64_t		 flag_at;
	size_t		 pending;	/* replies to read */
	unsigned long	 clients;
	unsigned long	 removed;
	int		 verbose;
};

static const char synopsis[] =
    "usage: client-rebuild [-hvV] [-d conninfo] [-P password-file] [-r url] "
    "[-s slot]\n"
    "                      [-w seconds]\n";

static const char options[] =
    "  -d, --dbname CONNINFO     the database (default: libpq's environment)\n"
    "  -h, --help                print this help and exit\n"
    "  -P, --password-file FILE  the Redis password, from a file\n"
    "  -r, --redis URL           the Redis server (default $REDIS_URL)\n"
    "  -s, --slot NAME           the pipeline's slot (default cqrs_outbox)\n"
    "  -v, --verbose             say what was rebuilt\n"
    "  -V, --version             print the version and exit\n"
    "  -w, --wait SECONDS        wait this long for client-project to stop"
    " (15)\n";

/* Read the replies of the commands sent so far; 0 or an exit code. */
static int
drain(struct rebuild *b)
{
	redisReply *r;
	int ex = 0;

	for (; b->pending > 0; b->pending--) {
		if (redisGetReply(b->rc, (void **)&r) != REDIS_OK) {
			warnx("redis: %s", b->rc->errstr);
			return EX_UNAVAILABLE;
		}
		if (r->type == REDIS_REPLY_ERROR && ex == 0) {
			warnx("redis: %s", r->str);
			ex = rds_exit_code(b->rc, r);
		}
		freeReplyObject(r);
	}
	return ex;
}

/* Renew the flag every FLAG_EVERY_MS, so that it outlives a slow rebuild. */
static int
renew_flag(struct rebuild *b)
{
	int ex;

	if (util_mono_ms() - b->flag_at < FLAG_EVERY_MS)
		return 0;
	if ((ex = drain(b)) != 0 || (ex = rds_command(b->rc, NULL,
	    "PEXPIRE %s %d", RMD_REBUILD_KEY, FLAG_MS)) != 0)
		return ex;
	b->flag_at = util_mono_ms();
	return 0;
}

/*
 * Take the rebuild's flag, then make sure no client-project holds a lease
 * on this read model, waiting up to wait_ms for the leases of stopped
 * ones to run out.  client-project takes its lease and then looks for the
 * flag, so whichever comes second sees the other.  0 or an exit code.
 */
static int
exclude(struct rebuild *b, int64_t wait_ms)
{
	int64_t deadline = util_mono_ms() + wait_ms;
	redisReply *r;
	char cursor[32], lease[256];
	size_t i;
	int ex, held;

	if ((ex = rds_command(b->rc, &r, "SET %s %s NX PX %d", RMD_REBUILD_KEY,
	    b->token, FLAG_MS)) != 0)
		return ex;
	held = r->type == REDIS_REPLY_NIL;
	freeReplyObject(r);
	if (held) {
		warnx("another client-rebuild is running on this read model "
		    "(%s exists)", RMD_REBUILD_KEY);
		return EX_TEMPFAIL;
	}
	b->flag_at = util_mono_ms();
	for (;;) {
		lease[0] = '\0';
		snprintf(cursor, sizeof(cursor), "0");
		do {
			if ((ex = rds_command(b->rc, &r,
			    "SCAN %s MATCH %s* COUNT 1000", cursor,
			    RMD_LEASE_PREFIX)) != 0)
				return ex;
			if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
				freeReplyObject(r);
				warnx("redis: unexpected reply to SCAN");
				return EX_SOFTWARE;
			}
			snprintf(cursor, sizeof(cursor), "%s",
			    r->element[0]->str);
			for (i = 0; i < r->element[1]->elements && !lease[0];
			    i++)
				snprintf(lease, sizeof(lease), "%s",
				    r->element[1]->element[i]->str);
			freeReplyObject(r);
		} while (strcmp(cursor, "0") != 0);
		if (lease[0] == '\0')
			return 0;
		if (util_mono_ms() >= deadline || util_stop) {
			warnx("a client-project is applying to this read model "
			    "(its lease %s is held): stop it before rebuilding",
			    lease);
			return EX_TEMPFAIL;
		}
		poll(NULL, 0, 200);
	}
}

/* Give the flag back, if it is still ours. */
static void
release(struct rebuild *b)
{
	redisReply *r;

	if (b->rc == NULL || b->rc->err)
		return;
	r = redisCommand(b->rc, "EVAL %s 1 %s %s", "if redis.call('GET', "
	    "KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end "
	    "return 0", RMD_REBUILD_KEY, b->token);
	freeReplyObject(r);
}

static uint64_t
parse_lsn(const char *s, int *ok)
{
	unsigned int hi, lo;
	char tail;

	*ok = s != NULL && sscanf(s, "%X/%X%c", &hi, &lo, &tail) == 2;
	return *ok ? (uint64_t)hi << 32 | lo : 0;
}

/* A simple query (the replication connection takes no others). */
static PGresult *
simple(struct rebuild *b, const char *sql, ExecStatusType want, int *ex)
{
	PGresult *res = PQexec(b->repl, sql);

	if (PQresultStatus(res) == want)
		return res;
	warnx("database: %s", db_message(res, b->repl));
	*ex = db_exit_code(res, b->repl);
	if (*ex == EX_DATAERR)
		*ex = EX_SOFTWARE;
	PQclear(res);
	return NULL;
}

/*
 * A temporary slot, created as the first command of a REPEATABLE READ
 * transaction, exports its snapshot to it: the order tables as of the
 * slot's consistent point C.  Every transaction of the pipeline's slot
 * with a commit LSN below C is in that snapshot, and every other one
 * after it (one cluster, one WAL).  So the read model gets positions
 * (C - 1, 2^32 - 1): client-project skips the events before C as replays
 * and applies those after.  The snapshot's xids decide, for a row sent
 * again without a position (a new slot's snapshot, a queue), whether the
 * rebuild counted it.
 */
static int
open_snapshot(struct rebuild *b)
{
	PGresult *res;
	char sql[256];
	int ex = 0, ok;

	if ((res = simple(b, "IDENTIFY_SYSTEM", PGRES_TUPLES_OK, &ex)) == NULL)
		return ex;
	snprintf(b->src, sizeof(b->src), "pg:%s:%s:%s", PQgetvalue(res, 0, 0),
	    PQgetvalue(res, 0, 1), b->slot);
	PQclear(res);
	if ((res = simple(b, "BEGIN READ ONLY ISOLATION LEVEL REPEATABLE READ",
	    PGRES_COMMAND_OK, &ex)) == NULL)
		return ex;
	PQclear(res);
	snprintf(sql, sizeof(sql), "CREATE_REPLICATION_SLOT cqrs_rebuild_%ld "
	    "TEMPORARY LOGICAL pgoutput (SNAPSHOT 'use')", (long)getpid());
	if ((res = simple(b, sql, PGRES_TUPLES_OK, &ex)) == NULL)
		return ex;
	b->cp = parse_lsn(PQgetvalue(res, 0, 1), &ok);
	PQclear(res);
	if (!ok || b->cp == 0) {
		warnx("CREATE_REPLICATION_SLOT: unexpected answer");
		return 76;
	}
	snprintf(b->pos, sizeof(b->pos), "%020" PRIu64 "%010" PRIu32,
	    b->cp - 1, UINT32_MAX);
	snprintf(b->rbc, sizeof(b->rbc), "%" PRIu64, b->cp);
	if ((res = simple(b, "SELECT pg_snapshot_xmin(s) || ':' || "
	    "pg_snapshot_xmax(s) || ':' || coalesce((SELECT string_agg(x::text, "
	    "',') FROM pg_snapshot_xip(s) x), ''), greatest((SELECT max(id) "
	    "FROM order_event), (SELECT last_value FROM pg_sequences WHERE "
	    "(schemaname || '.' || sequencename)::regclass = "
	    "pg_get_serial_sequence('order_event', 'id')::regclass)), "
	    "current_setting('transaction_isolation') FROM (SELECT "
	    "pg_current_snapshot() AS s) AS c", PGRES_TUPLES_OK, &ex)) == NULL)
		return ex;
	if (PQgetlength(res, 0, 0) >= (int)sizeof(b->rbx)) {
		warnx("too many transactions in progress (%d bytes of xids); "
		    "try again", PQgetlength(res, 0, 0));
		PQclear(res);
		return EX_TEMPFAIL;
	}
	snprintf(b->rbx, sizeof(b->rbx), "%s", PQgetvalue(res, 0, 0));
	snprintf(b->low, sizeof(b->low), "%s", PQgetisnull(res, 0, 1) ? "0" :
	    PQgetvalue(res, 0, 1));
	PQclear(res);
	return 0;
}

/* Write one client's read model, replacing what was there. */
static int
put_client(struct rebuild *b, PGresult *row)
{
	char key[32];
	int ex;

	snprintf(key, sizeof(key), "client:%s", PQgetvalue(row, 0, 0));
	redisAppendCommand(b->rc, "DEL %s {%s}:ids", key, key);
	redisAppendCommand(b->rc, "HSET %s name %b email %b total %s "
	    "last_purchase %s src %s pos %s rbx %s rbc %s idn 0 low %s",
	    key, PQgetvalue(row, 0, 1), (size_t)PQgetlength(row, 0, 1),
	    PQgetvalue(row, 0, 2), (size_t)PQgetlength(row, 0, 2),
	    PQgetvalue(row, 0, 3), PQgetvalue(row, 0, 4), b->src, b->pos,
	    b->rbx, b->rbc, b->low);
	b->pending += 2;
	b->clients++;
	if (b->pending >= 2 * PIPELINE && (ex = drain(b)) != 0)
		return ex;
	return renew_flag(b);
}

/* Stream the order tables' totals per client into the read model. */
static int
write_clients(struct rebuild *b)
{
	PGresult *res;
	int ex = 0;

	if (!PQsendQuery(b->repl, rmd_truth_all_sql) ||
	    !PQsetSingleRowMode(b->repl)) {
		warnx("database: %s", db_message(NULL, b->repl));
		return EX_UNAVAILABLE;
	}
	while ((res = PQgetResult(b->repl)) != NULL) {
		if (PQresultStatus(res) == PGRES_SINGLE_TUPLE && ex == 0)
			ex = put_client(b, res);
		else if (PQresultStatus(res) != PGRES_TUPLES_OK &&
		    PQresultStatus(res) != PGRES_SINGLE_TUPLE && ex == 0) {
			warnx("database: %s", db_message(res, b->repl));
			ex = db_exit_code(res, b->repl);
			if (ex == EX_DATAERR)
				ex = EX_SOFTWARE;
		}
		PQclear(res);
	}
	if (ex == 0)
		ex = drain(b);
	return ex;
}

/* Remove the clients this rebuild did not write: they have no order. */
static int
remove_others(struct rebuild *b)
{
	redisReply *r, *v;
	char cursor[32];
	size_t i;
	int ex;

	snprintf(cursor, sizeof(cursor), "0");
	do {
		if ((ex = rds_command(b->rc, &r,
		    "SCAN %s MATCH client:* COUNT 1000", cursor)) != 0)
			return ex;
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
			freeReplyObject(r);
			warnx("redis: unexpected reply to SCAN");
			return EX_SOFTWARE;
		}
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		for (i = 0; i < r->element[1]->elements; i++)
			redisAppendCommand(b->rc, "HGET %s rbc",
			    r->element[1]->element[i]->str);
		for (i = 0; i < r->element[1]->elements; i++) {
			if (redisGetReply(b->rc, (void **)&v) != REDIS_OK) {
				freeReplyObject(r);
				warnx("redis: %s", b->rc->errstr);
				return EX_UNAVAILABLE;
			}
			/* A key of another type has no rbc either: not ours. */
			if (v->type != REDIS_REPLY_STRING ||
			    strcmp(v->str, b->rbc) != 0) {
				redisAppendCommand(b->rc, "DEL %s {%s}:ids",
				    r->element[1]->element[i]->str,
				    r->element[1]->element[i]->str);
				b->pending++;
				b->removed++;
			}
			freeReplyObject(v);
		}
		freeReplyObject(r);
		if ((ex = drain(b)) != 0 || (ex = renew_flag(b)) != 0)
			return ex;
	} while (strcmp(cursor, "0") != 0);
	return 0;
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "dbname", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ "password-file", required_argument, NULL, 'P' },
		{ "redis", required_argument, NULL, 'r' },
		{ "slot", required_argument, NULL, 's' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "wait", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 }
	};
	struct rebuild b;
	const char *conninfo = NULL, *url = NULL, *pass_file = NULL;
	char host[64];
	double wait = 15;
	int ch, ex = 0, flag = 0;

	util_signals();
	memset(&b, 0, sizeof(b));
	b.slot = "cqrs_outbox";
	while ((ch = getopt_long(argc, argv, "d:hP:r:s:vVw:", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'd':
			conninfo = optarg;
			break;
		case 'P':
			pass_file = optarg;
			break;
		case 'r':
			url = optarg;
			break;
		case 's':
			b.slot = optarg;
			break;
		case 'v':
			b.verbose = 1;
			break;
		case 'V':
			util_version();
			return 0;
		case 'w':
			wait = util_seconds("-w", optarg, 0, 3600);
			break;
		case 'h':
			util_help(synopsis, options);
		default:
			util_usage(synopsis);
		}
	}
	if (optind != argc)
		util_usage(synopsis);
	if (!util_pg_name(b.slot))
		errx(EX_USAGE, "-s %s: want 1 to 63 of a-z, 0-9 and _", b.slot);
	if (gethostname(host, sizeof(host)) < 0)
		snprintf(host, sizeof(host), "localhost");
	host[sizeof(host) - 1] = '\0';
	snprintf(b.token, sizeof(b.token), "%s:%ld", host, (long)getpid());

	if ((b.rc = rds_connect(url, pass_file, &ex)) == NULL)
		return util_exit(ex);
	if ((ex = exclude(&b, (int64_t)(wait * 1000))) != 0) {
		/* Ours only if SET took it: exclude() says so by flag_at. */
		flag = b.flag_at != 0;
		goto done;
	}
	flag = 1;
	if ((b.repl = db_connect(conninfo, 1, &ex)) == NULL ||
	    (ex = open_snapshot(&b)) != 0 || (ex = write_clients(&b)) != 0 ||
	    (ex = remove_others(&b)) != 0)
		goto done;
	if ((ex = rds_command(b.rc, NULL, "DEL %s", RMD_MODEL_KEY)) != 0 ||
	    (ex = rds_command(b.rc, NULL,
	    "HSET %s src %s created %lld rebuilt %s", RMD_MODEL_KEY, b.src,
	    (long long)(util_real_ms() / 1000), b.rbc)) != 0)
		goto done;
	if (b.verbose)
		fprintf(stderr, "client-rebuild: %lu clients from the order "
		    "tables at %X/%X (%s), %lu removed\n", b.clients,
		    (unsigned)(b.cp >> 32), (unsigned)b.cp, b.src, b.removed);
done:
	if (flag)
		release(&b);
	if (b.repl != NULL)
		PQfinish(b.repl);
	redisFree(b.rc);
	return util_exit(ex);
}
