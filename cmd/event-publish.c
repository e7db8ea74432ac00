/* event-publish: publish event lines to an SNS topic, an SQS queue or a Kafka topic, acknowledging what the service accepted. */
#include <err.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "evt.h"
#include "msg.h"
#include "ndj.h"
#include "prg.h"
#include "pub.h"
#include "util.h"

#define DEFAULT_BATCH	500
#define KAFKA_BATCH	10000	/* Kafka: one wait for delivery reports per batch */
#define MAX_PROPS	64
#define DEFAULT_INFLIGHT 8
#define TRIES		10

enum { FMT_LINE, FMT_SAMPLE };

/* An event taken from the input, waiting to be published. */
struct event {
	size_t		 body, blen;	/* in the arena */
	char		 group[24];
	char		 dedup[72];
	size_t		 table;		/* in the arena, or SIZE_MAX */
	char		 op[2];
	uint64_t	 lsn, seq;
	size_t		 src;		/* in the arena */
	unsigned long	 lineno;
};

struct publisher {
	struct pub	 pub;
	int		 format;
	struct event	*ev;
	struct pub_msg	*msg;
	size_t		 n;
	struct sbuf	 arena;		/* bodies and table names */
	unsigned long	 published;
};

static const char synopsis[] =
    "usage: event-publish [-hkvV] [-a ack-file] [-b batch] [-F file] "
    "[-f format]\n"
    "                     [-j requests] [--reject-file file] "
    "[--stats seconds]\n"
    "                     [-X key=value] dest\n";

static const char options[] =
    "  -a, --ack-file FILE       record the position published so far in FILE\n"
    "  -b, --batch N             events read before publishing (1-65536, 500;\n"
    "                            Kafka: 10000)\n"
    "  -F FILE                   Kafka: librdkafka properties, key=value lines\n"
    "  -f, --format FORMAT       line (the event line, default) or sample\n"
    "  -h, --help                print this help and exit\n"
    "  -j, --requests N          batch requests in flight (1-64, 8)\n"
    "  -k, --keep-going          report a bad event, skip it, go on (exit 65)\n"
    "      --reject-file FILE    keep events that cannot be published in FILE\n"
    "      --stats SECONDS       print a line of progress this often\n"
    "  -v, --verbose             print counts at exit\n"
    "  -V, --version             print the version and exit\n"
    "  -X KEY=VALUE              Kafka: a librdkafka property (repeatable)\n"
    "  dest: arn:aws:sns:REGION:ACCOUNT:TOPIC, an SQS queue URL, or\n"
    "        kafka://HOST:PORT[,HOST:PORT...]/TOPIC\n";

/* FNV-1a: a short, stable digest of the source identity. */
static uint64_t
fnv1a(const char *s)
{
	uint64_t h = UINT64_C(14695981039346656037);

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= UINT64_C(1099511628211);
	}
	return h;
}

/* Point message i at its event in the arena, which may have moved. */
static void
fill(struct publisher *p, size_t i)
{
	struct event *e = &p->ev[i];

	p->msg[i].body = p->arena.buf + e->body;
	p->msg[i].len = e->blen;
	p->msg[i].group = e->group;
	p->msg[i].dedup = e->dedup;
	p->msg[i].table = e->table == SIZE_MAX ? NULL : p->arena.buf + e->table;
	p->msg[i].op = e->op;
	p->msg[i].lsn = e->lsn;
	p->msg[i].seq = e->seq;
	p->msg[i].src = p->arena.buf + e->src;
	p->msg[i].lineno = e->lineno;
}

/* Keep the event: its line (or the sample's shape of it) and its keys. */
static int
take(void *ctx, const struct scan *ev, const struct evt_meta *m,
    char *why, size_t wlen)
{
	struct publisher *p = ctx;
	struct event *e = &p->ev[p->n];
	const struct scan_val *j;
	size_t start;

	j = scan_get(ev, "id_client");
	if (j != NULL && j->kind == SCAN_INT)
		snprintf(e->group, sizeof(e->group), "%" PRId64, j->i);
	else
		snprintf(e->group, sizeof(e->group), "-");
	snprintf(e->dedup, sizeof(e->dedup), "%" PRIu64 ".%" PRIu64 ".%016"
	    PRIx64, m->pos.lsn, m->pos.seq, fnv1a(m->pos.src));
	e->op[0] = m->op;
	e->op[1] = '\0';
	e->lsn = m->pos.lsn;
	e->seq = m->pos.seq;
	e->lineno = m->lineno;
	e->src = p->arena.len;
	sb_puts(&p->arena, m->pos.src);
	sb_putc(&p->arena, '\0');
	e->table = SIZE_MAX;
	j = scan_get(ev, "__table");
	if (j != NULL && j->kind == SCAN_STRING) {
		e->table = p->arena.len;
		sb_put(&p->arena, j->str, j->slen);
		sb_putc(&p->arena, '\0');
	}
	start = p->arena.len;
	if (p->format == FMT_LINE)
		sb_put(&p->arena, m->line, m->len);
	else {
		j = scan_get(ev, "id");
		sb_puts(&p->arena, "{\"key\":");
		if (j != NULL && j->kind == SCAN_INT) {
			sb_puts(&p->arena, "{\"id\":");
			sb_i64(&p->arena, j->i);
			sb_putc(&p->arena, '}');
		} else
			sb_puts(&p->arena, "null");
		sb_puts(&p->arena, ",\"value\":{");
		{
			struct sbuf cols;

			sb_init(&cols);
			if (msg_cols(m->line, m->len, &cols) < 0) {
				sb_free(&cols);
				p->arena.len = start;
				snprintf(why, wlen, "not a JSON object");
				return EVT_BAD;
			}
			sb_put(&p->arena, cols.buf, cols.len);
			sb_free(&cols);
		}
		sb_puts(&p->arena, "}}");
	}
	e->body = start;
	e->blen = p->arena.len - start;
	sb_putc(&p->arena, '\0');
	/* Kafka takes it now, while the rest of the batch is read. */
	fill(p, p->n);
	p->msg[p->n].sent = p->msg[p->n].done = 0;
	pub_start(&p->pub, &p->msg[p->n]);
	p->n++;
	return 0;
}

static void
reset(struct publisher *p)
{
	p->n = 0;
	p->arena.len = 0;
}

/*
 * Publish the events from index from on; return only when the service
 * has accepted each, or has refused one for itself (EVT_BAD, the events
 * before it accepted).
 */
static int
apply(void *ctx, size_t from, size_t *failed, char *why, size_t wlen)
{
	struct publisher *p = ctx;
	size_t i, f = 0, done = 0;
	int rc;

	if (from >= p->n && p->n > 0) {	/* the last one was rejected */
		reset(p);
		return 0;
	}
	if (from == 0)
		for (i = 0; i < p->n; i++)
			fill(p, i);
	/* (A message started in take() counts as published here.) */
	for (i = from; i < p->n && from > 0; i++)
		done -= (size_t)p->msg[i].done;
	rc = pub_send(&p->pub, p->msg + from, p->n - from, &f, why, wlen);
	for (i = from; i < p->n; i++)
		done += (size_t)p->msg[i].done;
	p->published += done;
	if (rc == EVT_BAD) {
		*failed = from + f;
		/* Published already: not again when apply resumes after it. */
		return EVT_BAD;
	}
	reset(p);
	return rc;
}

/* Progress lines: the requests made so far, and those sent again. */
static int64_t
requests(void *arg)
{
	struct publisher *p = arg;
	unsigned long nreq, nretry;

	p->pub.ops->stats(p->pub.ctx, &nreq, &nretry);
	return (int64_t)nreq;
}

static int64_t
sent_again(void *arg)
{
	struct publisher *p = arg;
	unsigned long nreq, nretry;

	p->pub.ops->stats(p->pub.ctx, &nreq, &nretry);
	return (int64_t)nretry;
}

int
main(int argc, char *argv[])
{
	enum { OPT_REJECT = 256, OPT_STATS };
	static const struct option longopts[] = {
		{ "ack-file", required_argument, NULL, 'a' },
		{ "batch", required_argument, NULL, 'b' },
		{ "format", required_argument, NULL, 'f' },
		{ "help", no_argument, NULL, 'h' },
		{ "requests", required_argument, NULL, 'j' },
		{ "keep-going", no_argument, NULL, 'k' },
		{ "reject-file", required_argument, NULL, OPT_REJECT },
		{ "stats", required_argument, NULL, OPT_STATS },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct kfk_prop props[MAX_PROPS];
	struct publisher p;
	struct pub_opts po;
	struct evt_ops ops;
	struct ndj_reader in;
	struct prg prg;
	int64_t every = 0;
	unsigned long nreq, nretry;
	char *end;
	long batch = 0, inflight = DEFAULT_INFLIGHT;
	size_t nprops = 0;
	int ch, ex, verbose = 0;

	util_signals();
	memset(&ops, 0, sizeof(ops));
	memset(&p, 0, sizeof(p));
	while ((ch = getopt_long(argc, argv, "a:b:F:f:hj:kvVX:", longopts,
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
		case 'F':
		case 'X':
			if (nprops == MAX_PROPS)
				errx(EX_USAGE, "-%c: at most %d of -F and -X",
				    ch, MAX_PROPS);
			props[nprops].file = ch == 'F';
			props[nprops++].arg = optarg;
			break;
		case 'f':
			if (strcmp(optarg, "line") == 0)
				p.format = FMT_LINE;
			else if (strcmp(optarg, "sample") == 0)
				p.format = FMT_SAMPLE;
			else
				errx(EX_USAGE, "-f: want line or sample");
			break;
		case 'j':
			inflight = strtol(optarg, &end, 10);
			if (*end != '\0' || inflight < 1 || inflight > 64)
				errx(EX_USAGE, "-j: want 1 to 64");
			break;
		case 'k':
			ops.keep_going = 1;
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
	if (optind != argc - 1)
		util_usage(synopsis);
	if (nprops > 0 && strncmp(argv[optind], "kafka://", 8) != 0)
		errx(EX_USAGE, "-F and -X: for a kafka:// destination only");
	if (batch == 0)
		batch = strncmp(argv[optind], "kafka://", 8) == 0 ?
		    KAFKA_BATCH : DEFAULT_BATCH;

	memset(&po, 0, sizeof(po));
	po.inflight = (int)inflight;
	po.tries = TRIES;
	po.verbose = verbose;
	po.props = props;
	po.nprops = nprops;
	if ((ex = pub_open(&p.pub, argv[optind], &po)) != 0)
		return ex == EX_USAGE ? EX_USAGE : ex;
	ndj_reader_init(&in, STDIN_FILENO, "stdin");
	p.ev = xcalloc((size_t)batch, sizeof(*p.ev));
	p.msg = xcalloc((size_t)batch, sizeof(*p.msg));
	sb_init(&p.arena);
	ops.take = take;
	ops.apply = apply;
	ops.ctx = &p;
	ops.batch = (size_t)batch;
	prg_init(&prg, every);
	prg_counter_ul(&prg, "published", &p.published);
	prg_counter_ul(&prg, "replayed", &ops.nreplayed);
	prg_counter_ul(&prg, "rejected", &ops.nrejected);
	prg_gauge(&prg, "requests", requests, &p);
	prg_gauge(&prg, "sent_again", sent_again, &p);
	ops.prg = &prg;

	ex = evt_run(&ops, &in);

	if (verbose) {
		p.pub.ops->stats(p.pub.ctx, &nreq, &nretry);
		fprintf(stderr, "event-publish: %lu published, %lu replayed, "
		    "%lu rejected; %lu requests, %lu sent again\n",
		    p.published, ops.nreplayed, ops.nrejected, nreq, nretry);
	}
	pub_close(&p.pub);
	sb_free(&p.arena);
	free(p.ev);
	free(p.msg);
	ndj_reader_free(&in);
	return util_exit(ex);
}
