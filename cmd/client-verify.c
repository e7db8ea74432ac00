/* client-verify: compare the Redis read model with the order tables and name every client that differs. */
#include <err.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>

#include "db.h"
#include "rmd.h"
#include "ndj.h"
#include "rds.h"
#include "util.h"

#define EX_DIFFER	1
#define PIPELINE	256

/* A client's read model, as the order tables want it or as Redis has it. */
struct model {
	int		 have;
	char		*name;
	char		*email;
	int64_t		 cents;
	int64_t		 last;
	int		 bad;		/* Redis holds something malformed */
};

struct client {
	int64_t		 id;
	struct model	 want;
	struct model	 got;
};

struct verify {
	PGconn		*db;
	redisContext	*rc;
	struct client	*batch;		/* truth rows waiting for Redis */
	size_t		 nbatch;
	struct client	*diff;		/* clients that differ */
	size_t		 ndiff;
	size_t		 capdiff;
	int64_t		*ids;		/* every client with an order, sorted */
	size_t		 nids;
	size_t		 capids;
	unsigned long	 checked;
	int		 verbose;
};

static const char synopsis[] =
    "usage: client-verify [-hvV] [-d conninfo] [-P password-file] [-r url] "
    "[-w seconds]\n";

static const char options[] =
    "  -d, --dbname CONNINFO     the database (default: libpq's environment)\n"
    "  -h, --help                print this help and exit\n"
    "  -P, --password-file FILE  the Redis password, from a file\n"
    "  -r, --redis URL           the Redis server (default $REDIS_URL)\n"
    "  -v, --verbose             say how many clients were compared\n"
    "  -V, --version             print the version and exit\n"
    "  -w, --wait SECONDS        wait this long for a client to converge"
    " (10)\n";

static void
model_free(struct model *m)
{
	free(m->name);
	free(m->email);
	memset(m, 0, sizeof(*m));
}

static int
model_equal(const struct model *a, const struct model *b)
{
	if (a->have != b->have || a->bad || b->bad)
		return 0;
	return !a->have || (strcmp(a->name, b->name) == 0 &&
	    strcmp(a->email, b->email) == 0 && a->cents == b->cents &&
	    a->last == b->last);
}

/* The truth from one row of mdl_truth_*_sql. */
static void
want_from(struct client *c, const PGresult *res, int row)
{
	rmd_integer(PQgetvalue(res, row, 0), &c->id);
	c->want.have = 1;
	c->want.name = xstrdup(PQgetvalue(res, row, 1));
	c->want.email = xstrdup(PQgetvalue(res, row, 2));
	rmd_integer(PQgetvalue(res, row, 3), &c->want.cents);
	rmd_integer(PQgetvalue(res, row, 4), &c->want.last);
}

/* What Redis has from an HMGET name email total last_purchase reply. */
static void
got_from(struct model *m, const redisReply *r)
{
	size_t i;

	memset(m, 0, sizeof(*m));
	for (i = 0; i < 4; i++)
		if (r->element[i]->type != REDIS_REPLY_NIL)
			m->have = 1;
	if (!m->have)
		return;
	for (i = 0; i < 4; i++)
		if (r->element[i]->type != REDIS_REPLY_STRING)
			m->bad = 1;
	if (m->bad)
		return;
	m->name = xstrdup(r->element[0]->str);
	m->email = xstrdup(r->element[1]->str);
	if (rmd_integer(r->element[2]->str, &m->cents) < 0 ||
	    rmd_integer(r->element[3]->str, &m->last) < 0)
		m->bad = 1;
}

/* HMGET each client of the batch, pipelined; keep those that differ. */
static int
compare_batch(struct verify *v)
{
	struct client *c;
	redisReply *r;
	size_t i;
	int ex = 0;

	for (i = 0; i < v->nbatch; i++)
		redisAppendCommand(v->rc, "HMGET client:%" PRId64 " name email "
		    "total last_purchase", v->batch[i].id);
	for (i = 0; i < v->nbatch; i++) {
		c = &v->batch[i];
		if (redisGetReply(v->rc, (void **)&r) != REDIS_OK) {
			warnx("redis: %s", v->rc->errstr);
			return EX_UNAVAILABLE;
		}
		if (r->type != REDIS_REPLY_ARRAY || r->elements != 4) {
			if (ex == 0) {
				warnx("redis: %s", r->type == REDIS_REPLY_ERROR ?
				    r->str : "unexpected reply to HMGET");
				ex = rds_exit_code(v->rc, r);
			}
			freeReplyObject(r);
			continue;
		}
		got_from(&c->got, r);
		freeReplyObject(r);
		v->checked++;
		if (model_equal(&c->want, &c->got)) {
			model_free(&c->want);
			model_free(&c->got);
			continue;
		}
		if (v->ndiff == v->capdiff) {
			v->capdiff = v->capdiff ? v->capdiff * 2 : 64;
			v->diff = xrealloc(v->diff, v->capdiff *
			    sizeof(*v->diff));
		}
		v->diff[v->ndiff++] = *c;
	}
	v->nbatch = 0;
	return ex;
}

/*
 * Every client with an order, from one consistent snapshot of the order
 * tables, streamed, compared with Redis PIPELINE clients at a time.
 */
static int
compare_all(struct verify *v)
{
	PGresult *res;
	int ex = 0;

	res = PQexec(v->db, "BEGIN READ ONLY ISOLATION LEVEL REPEATABLE READ");
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		goto fail;
	PQclear(res);
	if (!PQsendQuery(v->db, rmd_truth_all_sql) ||
	    !PQsetSingleRowMode(v->db)) {
		warnx("database: %s", db_message(NULL, v->db));
		return EX_UNAVAILABLE;
	}
	while ((res = PQgetResult(v->db)) != NULL) {
		if (PQresultStatus(res) == PGRES_SINGLE_TUPLE && ex == 0) {
			memset(&v->batch[v->nbatch], 0, sizeof(*v->batch));
			want_from(&v->batch[v->nbatch], res, 0);
			if (v->nids == v->capids) {
				v->capids = v->capids ? v->capids * 2 : 1024;
				v->ids = xrealloc(v->ids, v->capids *
				    sizeof(*v->ids));
			}
			v->ids[v->nids++] = v->batch[v->nbatch].id;
			if (++v->nbatch == PIPELINE)
				ex = compare_batch(v);
		} else if (PQresultStatus(res) != PGRES_SINGLE_TUPLE &&
		    PQresultStatus(res) != PGRES_TUPLES_OK && ex == 0) {
			warnx("database: %s", db_message(res, v->db));
			ex = db_exit_code(res, v->db);
			if (ex == EX_DATAERR)
				ex = EX_SOFTWARE;
		}
		PQclear(res);
	}
	if (ex == 0 && v->nbatch > 0)
		ex = compare_batch(v);
	res = PQexec(v->db, "COMMIT");
	if (PQresultStatus(res) != PGRES_COMMAND_OK && ex == 0)
		goto fail;
	PQclear(res);
	return ex;
fail:
	warnx("database: %s", db_message(res, v->db));
	ex = db_exit_code(res, v->db);
	PQclear(res);
	return ex == EX_DATAERR ? EX_SOFTWARE : ex;
}

static int
has_orders(const struct verify *v, int64_t id)
{
	size_t lo = 0, hi = v->nids, mid;

	while (lo < hi) {
		mid = (lo + hi) / 2;
		if (v->ids[mid] == id)
			return 1;
		if (v->ids[mid] < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return 0;
}

/* Clients in Redis without any order: they differ (want null). */
static int
compare_extra(struct verify *v)
{
	redisReply *r, *g;
	struct client c;
	char cursor[32];
	const char *k;
	int64_t id;
	size_t i;
	int ex;

	snprintf(cursor, sizeof(cursor), "0");
	do {
		r = redisCommand(v->rc, "SCAN %s MATCH client:* COUNT 1000",
		    cursor);
		if (r == NULL || r->type != REDIS_REPLY_ARRAY ||
		    r->elements != 2) {
			warnx("redis: %s", r == NULL ? v->rc->errstr :
			    r->type == REDIS_REPLY_ERROR ? r->str :
			    "unexpected reply to SCAN");
			ex = rds_exit_code(v->rc, r);
			freeReplyObject(r);
			return ex;
		}
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		for (i = 0; i < r->element[1]->elements; i++) {
			k = r->element[1]->element[i]->str;
			if (rmd_integer(k + 7, &id) < 0 || id < 1 ||
			    has_orders(v, id))
				continue;
			g = redisCommand(v->rc, "HMGET %s name email total "
			    "last_purchase", k);
			memset(&c, 0, sizeof(c));
			c.id = id;
			if (g != NULL && g->type == REDIS_REPLY_ARRAY &&
			    g->elements == 4)
				got_from(&c.got, g);
			else
				c.got.have = c.got.bad = 1;
			freeReplyObject(g);
			if (v->ndiff == v->capdiff) {
				v->capdiff = v->capdiff ? v->capdiff * 2 : 64;
				v->diff = xrealloc(v->diff, v->capdiff *
				    sizeof(*v->diff));
			}
			v->diff[v->ndiff++] = c;
		}
		freeReplyObject(r);
	} while (strcmp(cursor, "0") != 0);
	return 0;
}

/*
 * Look at a differing client again, fresh on both sides: 1 if it now
 * matches, 0 if not, or -1 with *ex set.
 */
static int
recheck(struct verify *v, struct client *c, int *ex)
{
	char idbuf[24];
	const char *param = idbuf;
	PGresult *res;
	redisReply *r;

	snprintf(idbuf, sizeof(idbuf), "%" PRId64, c->id);
	res = PQexecParams(v->db, rmd_truth_one_sql, 1, NULL, &param, NULL,
	    NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		warnx("database: %s", db_message(res, v->db));
		*ex = db_exit_code(res, v->db);
		PQclear(res);
		return -1;
	}
	model_free(&c->want);
	if (PQntuples(res) == 1)
		want_from(c, res, 0);
	PQclear(res);
	r = redisCommand(v->rc, "HMGET client:%" PRId64 " name email total "
	    "last_purchase", c->id);
	if (r == NULL || r->type != REDIS_REPLY_ARRAY || r->elements != 4) {
		warnx("redis: %s", r == NULL ? v->rc->errstr : "unexpected "
		    "reply to HMGET");
		*ex = rds_exit_code(v->rc, r);
		freeReplyObject(r);
		return -1;
	}
	model_free(&c->got);
	got_from(&c->got, r);
	freeReplyObject(r);
	return model_equal(&c->want, &c->got);
}

static int
by_id(const void *a, const void *b)
{
	const struct client *x = a, *y = b;

	return (x->id > y->id) - (x->id < y->id);
}

static void
put_model(struct sbuf *sb, const struct model *m)
{
	if (!m->have) {
		sb_puts(sb, "null");
		return;
	}
	if (m->bad) {
		sb_puts(sb, "\"malformed\"");
		return;
	}
	sb_puts(sb, "{\"name\":");
	sb_json_str(sb, m->name, strlen(m->name));
	sb_puts(sb, ",\"email\":");
	sb_json_str(sb, m->email, strlen(m->email));
	sb_puts(sb, ",\"total\":");
	rmd_put_total(sb, m->cents);
	sb_puts(sb, ",\"last_purchase\":");
	sb_i64(sb, m->last);
	sb_putc(sb, '}');
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "dbname", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ "password-file", required_argument, NULL, 'P' },
		{ "redis", required_argument, NULL, 'r' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "wait", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 }
	};
	struct verify v;
	struct ndj_writer out;
	const char *conninfo = NULL, *url = NULL, *pass_file = NULL;
	double wait = 10;
	int64_t deadline;
	size_t i, k;
	int ch, ex = 0, rc;

	util_signals();
	memset(&v, 0, sizeof(v));
	while ((ch = getopt_long(argc, argv, "d:hP:r:vVw:", longopts,
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
		case 'v':
			v.verbose = 1;
			break;
		case 'V':
			util_version();
			return 0;
		case 'w':
			wait = util_seconds("-w", optarg, 0, 86400);
			break;
		case 'h':
			util_help(synopsis, options);
		default:
			util_usage(synopsis);
		}
	}
	if (optind != argc)
		util_usage(synopsis);

	if ((v.rc = rds_connect(url, pass_file, &ex)) == NULL)
		return util_exit(ex);
	if ((v.db = db_connect(conninfo, 0, &ex)) == NULL)
		goto done;
	v.batch = xmalloc(sizeof(*v.batch) * PIPELINE);
	if ((ex = compare_all(&v)) != 0 || (ex = compare_extra(&v)) != 0)
		goto done;

	/* While the pipeline catches up, give each a chance to converge. */
	deadline = util_mono_ms() + (int64_t)(wait * 1000);
	while (v.ndiff > 0 && util_mono_ms() < deadline && !util_stop) {
		poll(NULL, 0, 100);
		for (i = k = 0; i < v.ndiff; i++) {
			if ((rc = recheck(&v, &v.diff[i], &ex)) < 0)
				goto done;
			if (rc == 1) {
				model_free(&v.diff[i].want);
				model_free(&v.diff[i].got);
			} else
				v.diff[k++] = v.diff[i];
		}
		v.ndiff = k;
	}

	if (v.ndiff > 0)	/* qsort(NULL, 0, ...) is undefined (UBSan) */
		qsort(v.diff, v.ndiff, sizeof(*v.diff), by_id);
	ndj_writer_init(&out, STDOUT_FILENO);
	for (i = 0; i < v.ndiff; i++) {
		sb_puts(&out.out, "{\"id\":");
		sb_i64(&out.out, v.diff[i].id);
		sb_puts(&out.out, ",\"want\":");
		put_model(&out.out, &v.diff[i].want);
		sb_puts(&out.out, ",\"got\":");
		put_model(&out.out, &v.diff[i].got);
		ndj_write(&out, "}", 1);
	}
	if (ndj_flush(&out) < 0 && out.err != EPIPE) {
		errno = out.err;
		warn("stdout");
		ex = EX_IOERR;
	}
	ndj_writer_free(&out);
	if (v.verbose)
		fprintf(stderr, "client-verify: %lu clients with orders "
		    "compared, %zu differ\n", v.checked, v.ndiff);
	if (ex == 0 && v.ndiff > 0)
		ex = EX_DIFFER;
done:
	for (i = 0; i < v.ndiff; i++) {
		model_free(&v.diff[i].want);
		model_free(&v.diff[i].got);
	}
	for (i = 0; i < v.nbatch; i++)
		model_free(&v.batch[i].want);
	free(v.diff);
	free(v.batch);
	free(v.ids);
	if (v.db != NULL)
		PQfinish(v.db);
	redisFree(v.rc);
	return util_exit(ex);
}
