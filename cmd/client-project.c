/* client-project: apply outbox events to the per-client read model in Redis, exactly once. */
#include <err.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>
#include <jansson.h>

#include "evt.h"
#include "ndj.h"
#include "rds.h"
#include "util.h"

#define DEFAULT_BATCH	512
#define NARGS		8	/* EVALSHA sha 1 key pos name email cents date */

/*
 * The position check and the change in one atomic step.  pos is the
 * event's position as 20 + 10 zero-padded digits, so that string order
 * is position order; a replayed event (pos not above the stored one)
 * changes nothing.  last_purchase only moves forward.
 */
static const char script[] =
    "local p = redis.call('HGET', KEYS[1], 'pos')\n"
    "if p and p >= ARGV[1] then return 0 end\n"
    "redis.call('HSET', KEYS[1], 'name', ARGV[2], 'email', ARGV[3],"
    " 'pos', ARGV[1])\n"
    "redis.call('HINCRBY', KEYS[1], 'total', ARGV[4])\n"
    "local lp = redis.call('HGET', KEYS[1], 'last_purchase')\n"
    "if not lp or tonumber(lp) < tonumber(ARGV[5]) then\n"
    "  redis.call('HSET', KEYS[1], 'last_purchase', ARGV[5])\n"
    "end\n"
    "return 1\n";

struct event {
	char	key[32];	/* client:ID */
	char	pos[32];
	char	cents[24];
	char	date[24];
	char	*name;
	char	*email;
	int64_t	 ts_ms;		/* __ts_ms, the commit time, or -1 */
};

struct projector {
	redisContext	*rc;
	struct ndj_reader *in;
	char		 sha[41];
	struct event	*ev;
	size_t		 n;
	unsigned long	 applied;
	unsigned long	 replayed;
	unsigned long	 skipped;
	FILE		*latency;	/* -L: commit-to-applied times */
};

static void
usage(void)
{
	fprintf(stderr, "usage: client-project [-hkvV] [-a ack-file] "
	    "[-b batch] [-L latency-file]\n"
	    "                      [-P password-file] [-r url]\n");
	exit(EX_USAGE);
}

static int
load_script(struct projector *p)
{
	redisReply *r;
	int ex;

	r = redisCommand(p->rc, "SCRIPT LOAD %s", script);
	if (r == NULL || r->type != REDIS_REPLY_STRING || r->len != 40) {
		warnx("redis: SCRIPT LOAD: %s", r ? (r->str ? r->str : "?") :
		    p->rc->errstr);
		ex = rds_exit_code(p->rc, r);
		freeReplyObject(r);
		return ex;
	}
	memcpy(p->sha, r->str, 41);
	freeReplyObject(r);
	return 0;
}

/* Check one event and queue it; other tables are skipped. */
static int
take(void *ctx, json_t *ev, uint64_t lsn, uint64_t seq)
{
	struct projector *p = ctx;
	struct event *e = &p->ev[p->n];
	const char *name, *email;
	uint64_t id;
	int64_t cents, date, client;

	if (!evt_table_is(ev, EVT_TABLE)) {
		p->skipped++;
		return 0;
	}
	if (json_object_get(ev, "id_client") == NULL) {
		warnx("%s:%lu: id_client: missing", p->in->name,
		    p->in->lineno);
		return EX_DATAERR;
	}
	client = json_integer_value(json_object_get(ev, "id_client"));
	if (!json_is_integer(json_object_get(ev, "id_client")) ||
	    client < 1 || client > INT32_MAX) {
		warnx("%s:%lu: id_client: must be an integer from 1 to %d",
		    p->in->name, p->in->lineno, INT32_MAX);
		return EX_DATAERR;
	}
	id = (uint64_t)client;
	if (evt_str(ev, "name", p->in, &name) < 0 ||
	    evt_str(ev, "email", p->in, &email) < 0 ||
	    evt_cents(ev, "order_total", p->in, &cents) < 0 ||
	    evt_int(ev, "event_date", p->in, &date) < 0)
		return EX_DATAERR;
	snprintf(e->key, sizeof(e->key), "client:%" PRIu64, id);
	snprintf(e->pos, sizeof(e->pos), "%020" PRIu64 "%010" PRIu64, lsn,
	    seq);
	snprintf(e->cents, sizeof(e->cents), "%" PRId64, cents);
	snprintf(e->date, sizeof(e->date), "%" PRId64, date);
	e->name = xstrdup(name);
	e->email = xstrdup(email);
	e->ts_ms = json_is_integer(json_object_get(ev, "__ts_ms")) ?
	    json_integer_value(json_object_get(ev, "__ts_ms")) : -1;
	p->n++;
	return 0;
}

static void
send_event(struct projector *p, const struct event *e)
{
	const char *argv[NARGS] = { "EVALSHA", p->sha, "1", e->key, e->pos,
	    e->name, e->email, e->cents };
	const char *argv9[NARGS + 1];
	size_t lens[NARGS + 1];
	int i;

	for (i = 0; i < NARGS; i++) {
		argv9[i] = argv[i];
		lens[i] = strlen(argv[i]);
	}
	argv9[NARGS] = e->date;
	lens[NARGS] = strlen(e->date);
	redisAppendCommandArgv(p->rc, NARGS + 1, argv9, lens);
}

/*
 * Send the queued events pipelined, one EVALSHA each, and read the
 * replies.  If Redis lost the script (SCRIPT FLUSH; a restart drops the
 * connection instead, and that ends the run with 69), load it again and
 * send the batch again: the position check makes that harmless.
 */
static int
apply(void *ctx)
{
	struct projector *p = ctx;
	redisReply *r;
	size_t i, tries;
	int ex = 0, noscript;

	for (tries = 0; tries < 2; tries++) {
		for (i = 0; i < p->n; i++)
			send_event(p, &p->ev[i]);
		noscript = 0;
		for (i = 0; i < p->n; i++) {
			if (redisGetReply(p->rc, (void **)&r) != REDIS_OK) {
				warnx("redis: %s", p->rc->errstr);
				ex = EX_UNAVAILABLE;
				goto out;
			}
			if (r->type == REDIS_REPLY_INTEGER) {
				if (r->integer == 1)
					p->applied++;
				else
					p->replayed++;
			} else if (r->type == REDIS_REPLY_ERROR &&
			    strncmp(r->str, "NOSCRIPT", 8) == 0)
				noscript = 1;
			else if (ex == 0) {
				warnx("redis: %s: %s", p->ev[i].key,
				    r->type == REDIS_REPLY_ERROR ? r->str :
				    "unexpected reply");
				ex = rds_exit_code(p->rc, r);
			}
			freeReplyObject(r);
		}
		if (ex != 0 || !noscript)
			break;
		if ((ex = load_script(p)) != 0)
			break;
	}
	if (ex == 0 && p->latency != NULL) {
		struct timespec ts;
		int64_t now;

		clock_gettime(CLOCK_REALTIME, &ts);
		now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
		for (i = 0; i < p->n; i++)
			if (p->ev[i].ts_ms >= 0)
				fprintf(p->latency, "%" PRId64 "\n",
				    now - p->ev[i].ts_ms);
		if (fflush(p->latency) != 0 || ferror(p->latency)) {
			warn("latency file");
			ex = EX_IOERR;
		}
	}
out:
	for (i = 0; i < p->n; i++) {
		free(p->ev[i].name);
		free(p->ev[i].email);
	}
	p->n = 0;
	return ex;
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "ack-file", required_argument, NULL, 'a' },
		{ "batch", required_argument, NULL, 'b' },
		{ "help", no_argument, NULL, 'h' },
		{ "keep-going", no_argument, NULL, 'k' },
		{ "latency", required_argument, NULL, 'L' },
		{ "password-file", required_argument, NULL, 'P' },
		{ "redis", required_argument, NULL, 'r' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct projector p;
	struct evt_ops ops;
	struct ndj_reader in;
	const char *url = NULL, *pass_file = NULL;
	char *end;
	long batch = DEFAULT_BATCH;
	int ch, ex, verbose = 0;

	util_signals();
	memset(&ops, 0, sizeof(ops));
	memset(&p, 0, sizeof(p));
	while ((ch = getopt_long(argc, argv, "a:b:hkL:P:r:vV", longopts, NULL)) !=
	    -1) {
		switch (ch) {
		case 'a':
			ops.ack_file = optarg;
			break;
		case 'b':
			batch = strtol(optarg, &end, 10);
			if (*end != '\0' || batch < 1 || batch > 65536)
				errx(EX_USAGE, "-b: want 1 to 65536");
			break;
		case 'k':
			ops.keep_going = 1;
			break;
		case 'L':
			if (p.latency != NULL)
				fclose(p.latency);
			if ((p.latency = fopen(optarg, "a")) == NULL)
				err(EX_CANTCREAT, "%s", optarg);
			break;
		case 'P':
			pass_file = optarg;
			break;
		case 'r':
			url = optarg;
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

	if ((p.rc = rds_connect(url, pass_file, &ex)) == NULL)
		return ex;
	if ((ex = load_script(&p)) != 0) {
		redisFree(p.rc);
		return ex;
	}
	ndj_reader_init(&in, STDIN_FILENO, "stdin");
	p.in = &in;
	p.ev = xmalloc(sizeof(*p.ev) * (size_t)batch);
	ops.take = take;
	ops.apply = apply;
	ops.ctx = &p;
	ops.batch = (size_t)batch;

	ex = evt_run(&ops, &in);

	if (verbose)
		fprintf(stderr, "client-project: %lu applied, %lu replayed, "
		    "%lu skipped\n", p.applied, p.replayed, p.skipped);
	for (size_t i = 0; i < p.n; i++) {
		free(p.ev[i].name);
		free(p.ev[i].email);
	}
	free(p.ev);
	ndj_reader_free(&in);
	redisFree(p.rc);
	if (p.latency != NULL)
		fclose(p.latency);
	return ex;
}
