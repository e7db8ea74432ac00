/* event-consume: read an SQS queue or a Kafka topic and write its events as event lines, deleting each message (committing its offset) once its consumers have acknowledged it. */
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "ack.h"
#include "msg.h"
#include "prg.h"
#include "ndj.h"
#include "sub.h"
#include "util.h"

#define MAX_ACK_FILES	16
#define ACK_POLL_MS	100
#define MAX_OUT		1000	/* messages written and not yet acknowledged */
#define MAX_WARNED	4096	/* messages left in the queue, remembered */
#define MAX_PROPS	64

/* A line written or to be written, and the message it came from. */
struct line {
	uint64_t	 lsn;
	uint64_t	 start;		/* offset in the output of its first byte */
	uint64_t	 end;		/* offset in the output just past it */
	struct sub_msg	*m;
};

struct consumer {
	struct sub	 sub;
	const char	*ack[MAX_ACK_FILES];
	size_t		 nack;
	const char	*reject_file;
	int		 rejfd;
	uint64_t	 lsn;		/* the last one given */
	struct line	*q;		/* ring of lines not yet acknowledged */
	size_t		 qhead, qlen, qcap;
	struct sbuf	 out;		/* output not yet written */
	size_t		 outoff;	/* written part of out */
	uint64_t	 written;	/* bytes written in all */
	uint64_t	 queued;	/* bytes queued in all */
	struct msg_event ev;
	char		*warned[MAX_WARNED];
	size_t		 nwarned;
	unsigned long	 nlines, nskipped, nrejected, nleft;
	unsigned long	 revokes;	/* of the source, seen so far */
	int64_t		 last_poll;	/* of the ack files */
	int		 verbose;
	struct prg	 prg;		/* --stats and SIGUSR1 */
	uint64_t	 rcv, del, ext;	/* the source's counts, copied for prg */
};

static const char synopsis[] =
    "usage: event-consume [-hvV] [--once] [-a ack-file] [-c receivers] "
    "[-F file] [-g group]\n"
    "                     [--lag-file file] [-t seconds] [-w seconds]\n"
    "                     [--reject-file file] [--stats seconds] [-X key=value]"
    " src\n";

static const char options[] =
    "  -a, --ack-file FILE       a consumer's ack file (repeatable, up to 16)\n"
    "  -c, --receivers N         receive requests in flight (1-16, 4)\n"
    "  -F FILE                   Kafka: librdkafka properties, key=value lines\n"
    "  -g, --group GROUP         Kafka: the consumer group (event-consume)\n"
    "  -h, --help                print this help and exit\n"
    "      --lag-file FILE       Kafka: keep the lag of each partition in FILE\n"
    "      --once                drain the queue, then exit\n"
    "      --reject-file FILE    keep messages that cannot be read in FILE\n"
    "      --stats SECONDS       print a line of progress this often\n"
    "  -t, --visibility SECONDS  keep received messages hidden this long (30)\n"
    "  -v, --verbose             print counts at exit\n"
    "  -V, --version             print the version and exit\n"
    "  -w, --wait SECONDS        with --once, wait this long for acks (60)\n"
    "  -X KEY=VALUE              Kafka: a librdkafka property (repeatable)\n"
    "  src: an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)\n"
    "       or kafka://HOST:PORT[,HOST:PORT...]/TOPIC\n";

/*
 * Where the counter starts: above the highest position of our source in
 * the ack files, and above the clock in microseconds, so that it rises
 * across runs even without ack files.  0, or an exit code.
 */
static int
start_lsn(struct consumer *c)
{
	struct ack_pos p;
	uint64_t hi = (uint64_t)util_real_ms() * 1000;
	size_t i;
	int rc;

	for (i = 0; i < c->nack; i++) {
		if ((rc = ack_read(c->ack[i], &p)) < 0)
			return EX_DATAERR;
		if (rc == 0)
			continue;
		if (strcmp(p.src, c->sub.src) != 0) {
			warnx("%s: positions of \"%s\", not of %s: this ack "
			    "file belongs to another stream", c->ack[i],
			    p.src[0] ? p.src : "(no source)", c->sub.src);
			return EX_CONFIG;
		}
		if (p.lsn > hi)
			hi = p.lsn;
	}
	if (hi >= ACK_LSN_MAX - UINT32_MAX) {
		warnx("the position counter is exhausted");
		return EX_SOFTWARE;
	}
	c->lsn = hi;
	return 0;
}

/* The lowest position that every ack file covers, or 0 if one has none. */
static int
acked(struct consumer *c, uint64_t *lsn)
{
	struct ack_pos p;
	uint64_t lo = UINT64_MAX;
	size_t i;
	int rc;

	for (i = 0; i < c->nack; i++) {
		if ((rc = ack_read(c->ack[i], &p)) < 0)
			return EX_DATAERR;
		if (rc == 0 || strcmp(p.src, c->sub.src) != 0) {
			lo = 0;
			continue;
		}
		if (p.lsn < lo)
			lo = p.lsn;
	}
	*lsn = lo;
	return 0;
}

static void
push(struct consumer *c, const struct line *l)
{
	if (c->qlen == c->qcap) {
		size_t ncap = c->qcap ? c->qcap * 2 : 64, i;
		struct line *nq = xmalloc(ncap * sizeof(*nq));

		for (i = 0; i < c->qlen; i++)
			nq[i] = c->q[(c->qhead + i) % c->qcap];
		free(c->q);
		c->q = nq;
		c->qhead = 0;
		c->qcap = ncap;
	}
	c->q[(c->qhead + c->qlen++) % c->qcap] = *l;
}

/* Append a message that cannot be read to the reject file.  0, or an exit code. */
static int
reject(struct consumer *c, const struct sub_msg *m, const char *reason)
{
	struct sbuf sb;
	char at[40], in[128];
	time_t t = time(NULL);
	ssize_t n;
	size_t off;

	if (c->rejfd < 0 && (c->rejfd = open(c->reject_file, O_WRONLY |
	    O_APPEND | O_CREAT | O_CLOEXEC, 0666)) < 0) {
		warn("%s", c->reject_file);
		return EX_CANTCREAT;
	}
	strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
	snprintf(in, sizeof(in), "message %s", m->id);
	sb_init(&sb);
	sb_puts(&sb, "{\"time\":\"");
	sb_puts(&sb, at);
	sb_puts(&sb, "\",\"by\":\"event-consume\",\"input\":");
	sb_json_str(&sb, in, strlen(in));
	sb_puts(&sb, ",\"source\":");
	sb_json_str(&sb, c->sub.src, strlen(c->sub.src));
	sb_puts(&sb, ",\"reason\":");
	sb_json_str(&sb, reason, strlen(reason));
	sb_puts(&sb, ",\"message\":");
	sb_json_str(&sb, m->body, m->len);
	sb_puts(&sb, "}\n");
	for (off = 0; off < sb.len; off += (size_t)n)
		if ((n = write(c->rejfd, sb.buf + off, sb.len - off)) < 0) {
			if (errno == EINTR)
				continue;
			warn("%s", c->reject_file);
			sb_free(&sb);
			return EX_IOERR;
		}
	sb_free(&sb);
	if (fsync(c->rejfd) < 0) {
		warn("%s", c->reject_file);
		return EX_IOERR;
	}
	return 0;
}

/* A message that cannot be read: rejected and deleted, or left in the queue. */
static int
bad(struct consumer *c, struct sub_msg *m, const char *reason)
{
	size_t i;
	int rc;

	if (c->reject_file != NULL) {
		warnx("message %s: %s (rejected)", m->id, reason);
		if ((rc = reject(c, m, reason)) != 0)
			return rc;
		c->nrejected++;
		c->sub.ops->done(c->sub.ctx, m);
		return 0;
	}
	if (!c->sub.redrive) {
		/* Nothing keeps it aside: its offset stays uncommitted. */
		warnx("message %s: %s (not committed: it comes again; "
		    "--reject-file keeps such messages aside)", m->id, reason);
		c->sub.ops->leave(c->sub.ctx, m);
		return EX_DATAERR;
	}
	for (i = 0; i < c->nwarned; i++)
		if (strcmp(c->warned[i], m->id) == 0)
			break;
	if (i == c->nwarned) {
		warnx("message %s: %s (left in the queue for its redrive "
		    "policy)", m->id, reason);
		if (c->nwarned < MAX_WARNED)
			c->warned[c->nwarned++] = xstrdup(m->id);
		c->nleft++;
	}
	c->sub.ops->leave(c->sub.ctx, m);
	return 0;
}

/* Turn a message into an event line, queued for output.  0, or an exit code. */
static int
handle(struct consumer *c, struct sub_msg *m)
{
	struct msg_event *ev = &c->ev;
	struct line l;
	char reason[256];
	size_t start = c->out.len;
	int rc;

	rc = m->partition >= 0 ? msg_parse_kv(m->key, m->klen, m->body, m->len,
	    m->table, ev, reason, sizeof(reason)) : msg_parse(m->body, m->len,
	    m->table, ev, reason, sizeof(reason));
	if (rc == MSG_SKIP) {
		c->nskipped++;
		c->sub.ops->done(c->sub.ctx, m);
		return 0;
	}
	if (rc == MSG_BAD)
		return bad(c, m, reason);
	sb_putc(&c->out, '{');
	sb_put(&c->out, ev->cols.buf, ev->cols.len);
	sb_puts(&c->out, ev->cols.len ? ",\"__table\":" : "\"__table\":");
	sb_json_str(&c->out, ev->table, strlen(ev->table));
	sb_puts(&c->out, ",\"__op\":\"c\",\"__src\":");
	sb_json_str(&c->out, c->sub.src, strlen(c->sub.src));
	sb_puts(&c->out, ",\"__lsn\":");
	sb_u64(&c->out, c->lsn + 1);
	sb_puts(&c->out, ",\"__seq\":0");
	if (ev->xid[0]) {
		sb_puts(&c->out, ",\"__xid\":");
		sb_puts(&c->out, ev->xid);
	}
	if (ev->ts_ms[0]) {
		sb_puts(&c->out, ",\"__ts_ms\":");
		sb_puts(&c->out, ev->ts_ms);
	}
	if (ev->origin_src[0]) {
		sb_puts(&c->out, ",\"__origin_src\":");
		sb_json_str(&c->out, ev->origin_src, strlen(ev->origin_src));
	}
	if (ev->origin_lsn[0]) {
		sb_puts(&c->out, ",\"__origin_lsn\":");
		sb_puts(&c->out, ev->origin_lsn);
	}
	if (ev->origin_seq[0]) {
		sb_puts(&c->out, ",\"__origin_seq\":");
		sb_puts(&c->out, ev->origin_seq);
	}
	if (m->partition >= 0) {
		sb_puts(&c->out, ",\"__origin_partition\":");
		sb_i64(&c->out, m->partition);
		sb_puts(&c->out, ",\"__origin_offset\":");
		sb_i64(&c->out, m->offset);
	}
	sb_puts(&c->out, "}\n");
	if (c->out.len - start > NDJ_LINE_MAX) {
		c->out.len = start;
		return bad(c, m, "the event line would be longer than 1 MiB");
	}
	l.start = c->queued;
	c->queued += c->out.len - start;
	l.lsn = ++c->lsn;
	l.end = c->queued;
	l.m = m;
	push(c, &l);
	c->nlines++;
	return 0;
}

/*
 * Write what stdout takes without blocking: a pipe that poll(2) calls
 * writable takes PIPE_BUF bytes at once.  0, 1 when the reader went away,
 * or an exit code.
 */
static int
write_some(struct consumer *c)
{
	struct pollfd pfd = { STDOUT_FILENO, POLLOUT, 0 };
	size_t n;
	ssize_t w;

	while (c->outoff < c->out.len && poll(&pfd, 1, 0) > 0) {
		if (pfd.revents & (POLLERR | POLLHUP)) {
			c->out.len = c->outoff = 0;
			return 1;
		}
		n = c->out.len - c->outoff;
		if (n > PIPE_BUF)
			n = PIPE_BUF;
		if ((w = write(STDOUT_FILENO, c->out.buf + c->outoff, n)) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			if (errno == EPIPE) {
				c->out.len = c->outoff = 0;
				return 1;
			}
			warn("stdout");
			return EX_IOERR;
		}
		c->outoff += (size_t)w;
		c->written += (uint64_t)w;
	}
	if (c->outoff == c->out.len)
		c->out.len = c->outoff = 0;
	return 0;
}

/* Delete the messages whose lines every consumer has acknowledged. */
static int
release_at(struct consumer *c, int64_t *last_poll, int now)
{
	uint64_t lo = UINT64_MAX;
	struct line *l;
	int rc;

	if (c->qlen == 0)
		return 0;
	if (c->nack > 0) {
		if (!now && util_mono_ms() - *last_poll < ACK_POLL_MS)
			return 0;
		*last_poll = util_mono_ms();
		if ((rc = acked(c, &lo)) != 0)
			return rc;
	}
	while (c->qlen > 0) {
		l = &c->q[c->qhead];
		if (l->end > c->written || l->lsn > lo)
			break;
		c->sub.ops->done(c->sub.ctx, l->m);
		c->qhead = (c->qhead + 1) % c->qcap;
		c->qlen--;
	}
	return 0;
}

static int
release(struct consumer *c, int64_t *last_poll)
{
	return release_at(c, last_poll, 0);
}

/* A progress line when one is due: the source's counts copied first. */
static void
tick(struct consumer *c)
{
	unsigned long rcv, del, ext;

	c->sub.ops->stats(c->sub.ctx, &rcv, &del, &ext);
	c->rcv = rcv;
	c->del = del;
	c->ext = ext;
	prg_tick(&c->prg);
}

/* -v: the counts at the end. */
static void
progress(struct consumer *c)
{
	unsigned long rcv, del, ext;

	c->sub.ops->stats(c->sub.ctx, &rcv, &del, &ext);
	if (!c->sub.redrive) {
		fprintf(stderr, "event-consume: %lu received, %lu lines, %lu "
		    "skipped, %lu rejected; %lu committed\n", rcv, c->nlines,
		    c->nskipped, c->nrejected, del);
		return;
	}
	fprintf(stderr, "event-consume: %lu received, %lu lines, %lu skipped, "
	    "%lu rejected, %lu left; %lu deleted, %lu extended\n", rcv,
	    c->nlines, c->nskipped, c->nrejected, c->nleft, del, ext);
}

/*
 * Kafka took partitions away: the lines of their messages not yet
 * written are dropped (the partitions' new owner writes them); those
 * written stay, and their acknowledgement commits nothing.
 */
static void
drop_gone(struct consumer *c)
{
	struct line *l;
	uint64_t base = c->written - c->outoff, cut = 0, len;
	size_t i, keep = 0, to;

	if (c->sub.revokes == c->revokes)
		return;
	c->revokes = c->sub.revokes;
	to = c->outoff;
	for (i = 0; i < c->qlen; i++) {
		l = &c->q[(c->qhead + i) % c->qcap];
		if (l->start < c->written || !l->m->gone) {
			if (l->start < c->written && l->end - base > to)
				to = (size_t)(l->end - base);
			else if (l->start >= c->written) {
				/* Moved down over the lines dropped. */
				len = l->end - l->start;
				memmove(c->out.buf + to, c->out.buf +
				    (l->start - base), len);
				to += len;
				l->start -= cut;
				l->end -= cut;
			}
			c->q[(c->qhead + keep++) % c->qcap] = *l;
			continue;
		}
		cut += l->end - l->start;
		c->nlines--;
		c->sub.ops->done(c->sub.ctx, l->m);
	}
	if (cut == 0)
		return;
	c->qlen = keep;
	c->queued -= cut;
	c->out.len = to;
}

/* Before a revoked partition's offset is committed: read the ack files now. */
static void
settle(void *arg)
{
	struct consumer *c = arg;

	(void)release_at(c, &c->last_poll, 1);
}

static int
run(struct consumer *c, int once, int wait_s)
{
	struct sub_msg **msgs;
	int64_t drained_at = 0;
	size_t n, i;
	int rc, gone = 0;

	for (;;) {
		if (util_stop)
			break;
		tick(c);
		if ((rc = c->sub.ops->poll(c->sub.ctx, prg_timeout(&c->prg,
		    c->qlen > 0 && c->nack > 0 ? ACK_POLL_MS : 1000),
		    c->out.len > c->outoff ? STDOUT_FILENO : -1, &msgs,
		    &n)) != 0)
			return rc;
		for (i = 0; i < n; i++)
			if ((rc = handle(c, msgs[i])) != 0)
				return rc;
		drop_gone(c);
		if ((rc = write_some(c)) != 0) {
			gone = rc == 1;
			if (!gone)
				return rc;
			break;
		}
		/* Stalled on acknowledgements: the ack files read each time. */
		if ((rc = release_at(c, &c->last_poll, c->qlen >= MAX_OUT)) != 0)
			return rc;
		if (!once)
			continue;
		if (c->qlen == 0 && c->out.len == 0 &&
		    c->sub.ops->drained(c->sub.ctx) == 2)
			break;
		if (c->sub.ops->drained(c->sub.ctx) > 0) {
			if (drained_at == 0)
				drained_at = util_mono_ms();
			if (c->qlen > 0 && util_mono_ms() - drained_at >
			    wait_s * 1000L) {
				warnx("%zu lines written but not acknowledged "
				    "within %d s: their messages stay in the "
				    "queue", c->qlen, wait_s);
				return EX_TEMPFAIL;
			}
		}
	}
	(void)gone;
	return 0;
}

int
main(int argc, char *argv[])
{
	enum { OPT_ONCE = 256, OPT_REJECT, OPT_LAG, OPT_STATS };
	static const struct option longopts[] = {
		{ "ack-file", required_argument, NULL, 'a' },
		{ "receivers", required_argument, NULL, 'c' },
		{ "group", required_argument, NULL, 'g' },
		{ "help", no_argument, NULL, 'h' },
		{ "lag-file", required_argument, NULL, OPT_LAG },
		{ "once", no_argument, NULL, OPT_ONCE },
		{ "reject-file", required_argument, NULL, OPT_REJECT },
		{ "stats", required_argument, NULL, OPT_STATS },
		{ "visibility", required_argument, NULL, 't' },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ "wait", required_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 }
	};
	struct kfk_prop props[MAX_PROPS];
	struct consumer c;
	struct sub_opts so;
	char *end;
	int64_t every = 0;
	long v;
	int ch, ex, rc, once = 0, wait_s = 60;
	size_t i, nprops = 0;

	util_signals();
	memset(&c, 0, sizeof(c));
	memset(&so, 0, sizeof(so));
	c.rejfd = -1;
	so.receivers = 4;
	so.visibility = 30;
	so.max_out = MAX_OUT;
	while ((ch = getopt_long(argc, argv, "a:c:F:g:ht:vVw:X:", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'a':
			if (c.nack == MAX_ACK_FILES)
				errx(EX_USAGE, "-a: at most %d ack files",
				    MAX_ACK_FILES);
			c.ack[c.nack++] = optarg;
			break;
		case 'c':
			v = strtol(optarg, &end, 10);
			if (*end != '\0' || v < 1 || v > 16)
				errx(EX_USAGE, "-c: want 1 to 16");
			so.receivers = (int)v;
			break;
		case 'F':
		case 'X':
			if (nprops == MAX_PROPS)
				errx(EX_USAGE, "-%c: at most %d of -F and -X",
				    ch, MAX_PROPS);
			props[nprops].file = ch == 'F';
			props[nprops++].arg = optarg;
			break;
		case 'g':
			if (*optarg == '\0' || strlen(optarg) > 200)
				errx(EX_USAGE, "-g: want a name of 1 to 200 "
				    "bytes");
			so.group = optarg;
			break;
		case 't':
			v = strtol(optarg, &end, 10);
			if (*end != '\0' || v < 0 || v > 43200)
				errx(EX_USAGE, "-t: want 0 to 43200");
			so.visibility = (int)v;
			break;
		case 'v':
			c.verbose = so.verbose = 1;
			break;
		case 'V':
			util_version();
			return 0;
		case 'w':
			v = strtol(optarg, &end, 10);
			if (*end != '\0' || v < 0 || v > 86400)
				errx(EX_USAGE, "-w: want 0 to 86400");
			wait_s = (int)v;
			break;
		case OPT_ONCE:
			once = so.once = 1;
			break;
		case OPT_REJECT:
			c.reject_file = optarg;
			break;
		case OPT_LAG:
			so.lag_file = optarg;
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
	if ((nprops > 0 || so.group != NULL || so.lag_file != NULL) &&
	    strncmp(argv[optind], "kafka://", 8) != 0)
		errx(EX_USAGE, "-F, -g, -X and --lag-file: for a kafka:// "
		    "source only");
	so.props = props;
	so.nprops = nprops;
	so.settle = settle;
	so.settle_arg = &c;

	if ((ex = sub_open(&c.sub, argv[optind], &so)) != 0)
		return ex;
	prg_init(&c.prg, every);
	prg_counter(&c.prg, "received", &c.rcv);
	prg_counter_ul(&c.prg, "lines", &c.nlines);
	prg_counter_ul(&c.prg, "skipped", &c.nskipped);
	prg_counter_ul(&c.prg, "rejected", &c.nrejected);
	if (c.sub.redrive) {
		prg_counter_ul(&c.prg, "left", &c.nleft);
		prg_counter(&c.prg, "deleted", &c.del);
		prg_counter(&c.prg, "extended", &c.ext);
	} else
		prg_counter(&c.prg, "committed", &c.del);
	msg_init(&c.ev);
	sb_init(&c.out);
	if ((ex = start_lsn(&c)) == 0)
		ex = run(&c, once, wait_s);
	/* Delete what was acknowledged before stopping; the rest comes again. */
	if ((rc = write_some(&c)) > 1 && ex == 0)
		ex = rc;
	if (ex == 0 || ex == EX_TEMPFAIL || (ex == EX_DATAERR &&
	    !c.sub.redrive)) {
		int64_t lp = 0;

		if ((rc = release(&c, &lp)) != 0 && ex == 0)
			ex = rc;
		if ((rc = c.sub.ops->finish(c.sub.ctx, 5000)) != 0 && ex == 0)
			ex = rc;
	}
	if (c.verbose)
		progress(&c);
	if (ex == 0 && c.nleft > 0)
		ex = EX_DATAERR;
	if (c.rejfd >= 0 && close(c.rejfd) < 0 && ex == 0) {
		warn("%s", c.reject_file);
		ex = EX_IOERR;
	}
	c.sub.ops->close(c.sub.ctx);
	for (i = 0; i < c.nwarned; i++)
		free(c.warned[i]);
	free(c.q);
	sb_free(&c.out);
	msg_free(&c.ev);
	return util_exit(ex);
}
