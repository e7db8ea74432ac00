/* evt: the event line, its checks, and the consumer loop that applies events and acknowledges them. */
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <float.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "ack.h"
#include "evt.h"
#include "ndj.h"
#include "prg.h"
#include "scan.h"
#include "util.h"

#define ACK_EVERY_MS	100	/* at most one ack file write per period */

static int
why(char *buf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Put a reason in buf; returns -1 for the caller's convenience. */
static int
why(char *buf, size_t len, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, len, fmt, ap);
	va_end(ap);
	return -1;
}

/* Whether the event's __table is table. */
int
evt_table_is(const struct scan *ev, const char *table)
{
	const struct scan_val *t = scan_get(ev, "__table");

	return t != NULL && t->kind == SCAN_STRING &&
	    strcmp(t->str, table) == 0;
}

/*
 * Whether positions of this source follow commit order and come back
 * only as replays of a prefix (a PostgreSQL slot, or lines without a
 * source), so that a position at or below the last applied one is a
 * replay.  Sources that reorder and redeliver (queues) are not.
 */
int
evt_src_ordered(const char *src)
{
	return src[0] == '\0' || strncmp(src, "pg:", 3) == 0;
}

/* An integer field from 0 to max: 0, or -1 with the reason. */
static int
get_uint(const struct scan *ev, const char *key, uint64_t max, uint64_t *v,
    char *w, size_t wlen)
{
	const struct scan_val *j = scan_get(ev, key);

	if (j == NULL)
		return why(w, wlen, "%s: missing", key);
	if (j->kind != SCAN_INT || j->i < 0 || (uint64_t)j->i > max)
		return why(w, wlen, "%s: must be an integer from 0 to %ju",
		    key, (uintmax_t)max);
	*v = (uint64_t)j->i;
	return 0;
}

/*
 * The position and source of an event line: __lsn (0 to 2^60), __seq
 * (0 to 2^32-1), __src (optional, a source identity) and __op (optional,
 * one letter, 'c' when absent).  0, or -1 with the reason in w.
 */
int
evt_meta(const struct scan *ev, struct evt_meta *m, char *w, size_t wlen)
{
	const struct scan_val *j;

	memset(&m->pos, 0, sizeof(m->pos));
	m->op = 'c';
	if (get_uint(ev, "__lsn", ACK_LSN_MAX, &m->pos.lsn, w, wlen) < 0 ||
	    get_uint(ev, "__seq", ACK_SEQ_MAX, &m->pos.seq, w, wlen) < 0)
		return -1;
	if ((j = scan_get(ev, "__src")) != NULL) {
		if (j->kind != SCAN_STRING || strlen(j->str) != j->slen ||
		    !ack_src_valid(j->str))
			return why(w, wlen, "__src: must be a source identity "
			    "(1 to %d printable characters, no space)",
			    ACK_SRC_MAX - 1);
		memcpy(m->pos.src, j->str, j->slen + 1);
	}
	if ((j = scan_get(ev, "__op")) != NULL) {
		if (j->kind != SCAN_STRING || j->slen != 1)
			return why(w, wlen, "__op: must be one letter");
		m->op = j->str[0];
	}
	return 0;
}

/*
 * A money field as exact integer cents.  The JSON number must have at
 * most two decimals and a magnitude below 10^13 (numeric(14,2) and more),
 * where a double still tells every cent apart.  0, or -1 (1 when the
 * number is out of range, 2 for more than two decimals).
 */
int
evt_cents(const struct scan_val *j, int64_t *cents)
{
	double x, c;

	if (j->kind == SCAN_INT) {
		if (j->i >= 10000000000000LL || j->i <= -10000000000000LL)
			return 1;
		*cents = j->i * 100;
		return 0;
	}
	x = j->d;
	if (!(fabs(x) < 1e13))
		return 1;
	/*
	 * x * 100 is a whole number of cents give or take the rounding of
	 * the decimal to binary conversion: a few ulps, never a thousandth.
	 */
	c = round(x * 100.0);
	if (fabs(x * 100.0 - c) > fmax(1e-7, 8 * DBL_EPSILON * fabs(c)))
		return 2;
	*cents = (int64_t)c;
	return 0;
}

/* An id: an integer from 1 to max.  0, or -1 with the reason. */
static int
get_id(const struct scan *ev, const char *key, uint64_t max, uint64_t *v,
    char *w, size_t wlen)
{
	const struct scan_val *j = scan_get(ev, key);

	if (j == NULL)
		return why(w, wlen, "%s: missing", key);
	if (j->kind != SCAN_INT || j->i < 1 || (uint64_t)j->i > max)
		return why(w, wlen, "%s: must be an integer from 1 to %ju", key,
		    (uintmax_t)max);
	*v = (uint64_t)j->i;
	return 0;
}

static int
get_str(const struct scan *ev, const char *key, const char **s, size_t *len,
    char *w, size_t wlen)
{
	const struct scan_val *j = scan_get(ev, key);

	if (j == NULL || j->kind != SCAN_STRING)
		return why(w, wlen, "%s: %s", key, j ? "must be a string" :
		    "missing");
	*s = j->str;
	*len = j->slen;
	return 0;
}

/*
 * Check a row of public.order_event as client-project and outbox-clean
 * both need it, so that the cleaner never deletes a row the projector
 * refuses: __op 'c' or 'r'; id from 1 to 2^53-1 (exact in a Lua number
 * of the read model's script); id_client from 1 to 2^31-1; name
 * and email strings; order_total from 0 to 999999999999.99 with at most
 * two decimals; event_date from 2000-01-01 to a day from now; __xid, if
 * present, from 0 to 2^32-1.  0, or -1 with the reason in w.
 */
int
evt_order(const struct scan *ev, const struct evt_meta *m,
    struct evt_order *o, char *w, size_t wlen)
{
	const struct scan_val *j;
	uint64_t v;
	int rc;

	memset(o, 0, sizeof(*o));
	if (m->op != 'c' && m->op != 'r')
		return why(w, wlen, "__op: \"%c\" is not an insert (want "
		    "\"c\" or \"r\")", m->op);
	if (get_id(ev, "id", EVT_ID_MAX, &v, w, wlen) < 0)
		return -1;
	o->id = (int64_t)v;
	if (get_id(ev, "id_client", INT32_MAX, &v, w, wlen) < 0)
		return -1;
	o->id_client = (int64_t)v;
	if (get_str(ev, "name", &o->name, &o->name_len, w, wlen) < 0 ||
	    get_str(ev, "email", &o->email, &o->email_len, w, wlen) < 0)
		return -1;
	if (strlen(o->name) != o->name_len || strlen(o->email) != o->email_len)
		return why(w, wlen, "%s: holds a NUL character",
		    strlen(o->name) != o->name_len ? "name" : "email");
	j = scan_get(ev, "order_total");
	if (j == NULL || (j->kind != SCAN_INT && j->kind != SCAN_REAL))
		return why(w, wlen, "order_total: %s", j ? "must be a number" :
		    "missing");
	if ((rc = evt_cents(j, &o->cents)) == 2)
		return why(w, wlen, "order_total: more than two decimals");
	if (rc != 0 || o->cents < 0 || o->cents > EVT_CENTS_MAX)
		return why(w, wlen, "order_total: must be from 0 to "
		    "999999999999.99");
	j = scan_get(ev, "event_date");
	if (j == NULL || j->kind != SCAN_INT)
		return why(w, wlen, "event_date: %s", j ? "must be an integer" :
		    "missing");
	o->event_date = j->i;
	if (o->event_date < EVT_DATE_MIN ||
	    o->event_date > (int64_t)time(NULL) + EVT_DATE_AHEAD)
		return why(w, wlen, "event_date: %" PRId64 " is not from "
		    "2000-01-01 to a day from now", j->i);
	o->xid = -1;
	if (scan_get(ev, "__xid") != NULL) {
		if (get_uint(ev, "__xid", UINT32_MAX, &v, w, wlen) < 0)
			return -1;
		o->xid = (int64_t)v;
	}
	j = scan_get(ev, "__ts_ms");
	o->ts_us = j != NULL && j->kind == SCAN_INT ? j->i * 1000 : -1;
	j = scan_get(ev, "__ts_us");
	if (j != NULL && j->kind == SCAN_INT)
		o->ts_us = j->i;
	return 0;
}

/* One line of the batch: where it stands and what became of it. */
struct entry {
	struct ack_pos	 pos;
	int		 has_pos;
	unsigned long	 lineno;
	int		 state;		/* E_TAKEN, E_DONE, E_HELD */
	size_t		 off;		/* the line in the batch's copy */
	size_t		 len;
};

enum { E_TAKEN, E_DONE, E_HELD };

struct loop {
	struct evt_ops	*ops;
	struct ndj_reader *in;
	struct entry	*e;		/* the batch */
	size_t		 ne;
	size_t		*taken;		/* entry index of each taken event */
	size_t		 nt;
	struct sbuf	 lines;		/* copies, for the reject file */
	struct sbuf	 overlong;	/* a line too long to take */
	struct scan	 scan;		/* the line being read */
	struct ack_pos	 acked;		/* in the ack file */
	int		 have_acked;
	struct ack_pos	 next;		/* to write to it */
	int		 dirty;
	int		 held;		/* -k: the ack file stops before a bad event */
	int		 bad;
	int		 rejfd;
	int		 rej_unsynced;
	char		 src[ACK_SRC_MAX];
	int		 src_known;
	int64_t		 last_ack;
	int		 stopped;	/* apply() stopped on a signal */
};

/* Append the rejected line with its reason to the reject file. */
static int
reject(struct loop *l, unsigned long lineno, const char *line, size_t len,
    const char *reason)
{
	extern char *program_invocation_short_name;
	struct sbuf sb;
	char at[64];
	ssize_t n;
	size_t off;
	time_t t = time(NULL);

	if (l->rejfd < 0) {
		l->rejfd = open(l->ops->reject_file, O_WRONLY | O_APPEND |
		    O_CREAT | O_CLOEXEC, 0666);
		if (l->rejfd < 0) {
			warn("%s", l->ops->reject_file);
			return EX_CANTCREAT;
		}
	}
	strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", gmtime(&t));
	sb_init(&sb);
	sb_puts(&sb, "{\"time\":\"");
	sb_puts(&sb, at);
	sb_puts(&sb, "\",\"by\":");
	sb_json_str(&sb, program_invocation_short_name,
	    strlen(program_invocation_short_name));
	sb_puts(&sb, ",\"input\":");
	snprintf(at, sizeof(at), "%s:%lu", l->in->name, lineno);
	sb_json_str(&sb, at, strlen(at));
	sb_puts(&sb, ",\"reason\":");
	sb_json_str(&sb, reason, strlen(reason));
	sb_puts(&sb, ",\"line\":");
	sb_json_str(&sb, line, len);
	sb_puts(&sb, "}\n");
	for (off = 0; off < sb.len; off += (size_t)n)
		if ((n = write(l->rejfd, sb.buf + off, sb.len - off)) < 0) {
			warn("%s", l->ops->reject_file);
			sb_free(&sb);
			return EX_IOERR;
		}
	sb_free(&sb);
	l->rej_unsynced = 1;
	l->ops->nrejected++;
	return 0;
}

/*
 * An event that cannot be applied: reported; then kept in the reject file
 * and done with, or, with -k, held back (the ack file stops before it),
 * or else the end of the run.  0 to go on, or an exit code.
 */
static int
bad_event(struct loop *l, struct entry *e, const char *line, size_t len,
    const char *reason)
{
	int rc;

	warnx("%s:%lu: %s%s", l->in->name, e->lineno, reason,
	    l->ops->reject_file ? " (rejected)" : "");
	if (l->ops->reject_file != NULL) {
		if ((rc = reject(l, e->lineno, line, len, reason)) != 0)
			return rc;
		e->state = E_DONE;
		return 0;
	}
	l->bad = 1;
	e->state = E_HELD;
	return l->ops->keep_going ? 0 : EX_DATAERR;
}

/* Move the position to acknowledge over the batch's finished lines. */
static void
advance(struct loop *l)
{
	size_t i;

	for (i = 0; i < l->ne && !l->held; i++) {
		if (l->e[i].state == E_HELD) {
			l->held = 1;
			break;
		}
		if (l->e[i].state != E_DONE)
			break;		/* not applied: neither is what follows */
		if (!l->e[i].has_pos)
			continue;
		if (!l->dirty && !l->have_acked) {
			l->next = l->e[i].pos;
			l->dirty = 1;
		} else if (ack_pos_cmp(&l->e[i].pos, l->dirty ? &l->next :
		    &l->acked) > 0) {
			l->next = l->e[i].pos;
			l->dirty = 1;
		}
	}
	l->ne = 0;
	l->nt = 0;
	l->lines.len = 0;
}

/* Write the ack file, after making the reject file durable. */
static int
write_ack(struct loop *l)
{
	int rc;

	if (!l->dirty || l->ops->ack_file == NULL) {
		l->dirty = 0;
		return 0;
	}
	if (l->ops->before_ack != NULL && (rc = l->ops->before_ack(l->ops->ctx)))
		return rc;
	if (l->rej_unsynced) {
		if (fsync(l->rejfd) < 0) {
			warn("%s", l->ops->reject_file);
			return EX_IOERR;
		}
		l->rej_unsynced = 0;
	}
	memcpy(l->next.src, l->src, sizeof(l->src));
	if (ack_write(l->ops->ack_file, &l->next) < 0)
		return EX_IOERR;
	l->acked = l->next;
	l->have_acked = 1;
	l->dirty = 0;
	l->last_ack = util_mono_ms();
	return 0;
}

/*
 * Apply the batch: again after each rejected event (also when that was
 * the last one, so that the consumer may finish the batch).  0 or an exit
 * code.
 */
static int
apply_batch(struct loop *l)
{
	char reason[256];
	size_t from = 0, failed, k;
	struct entry *e;
	int rc;

	if (l->nt == 0) {
		advance(l);
		return 0;
	}
	for (;;) {
		failed = l->nt;
		reason[0] = '\0';
		rc = l->ops->apply(l->ops->ctx, from, &failed, reason,
		    sizeof(reason));
		if (rc != 0 && rc != EVT_BAD && rc != EVT_STOPPED)
			return rc;
		for (k = from; k < (rc == 0 ? l->nt : failed); k++)
			l->e[l->taken[k]].state = E_DONE;
		if (rc == 0)
			break;
		if (rc == EVT_STOPPED) {
			/* What was not applied is not acknowledged. */
			l->stopped = 1;
			advance(l);
			return 0;
		}
		if (failed < from || failed >= l->nt)
			return EX_SOFTWARE;
		e = &l->e[l->taken[failed]];
		if ((rc = bad_event(l, e, l->lines.buf + e->off, e->len,
		    reason)) != 0)
			return rc;
		from = failed + 1;
	}
	advance(l);
	return 0;
}

/* Wait up to ms for input; 1 if some is waiting. */
static int
wait_input(struct ndj_reader *r, int ms)
{
	struct pollfd pfd = { r->fd, POLLIN, 0 };

	if (ndj_more(r))
		return 1;
	return poll(&pfd, 1, ms) > 0;
}

/*
 * Read one line into the batch.  Returns 0 to go on, 1 at end of input,
 * or an exit code.
 */
static int
read_one(struct loop *l)
{
	struct evt_ops *ops = l->ops;
	struct ndj_reader *in = l->in;
	struct evt_meta m;
	char reason[256], *line;
	struct entry *e;
	json_t *obj;
	size_t len;
	int rc;

	rc = ndj_next(in, &line, &len);
	if (rc == 0)
		return 1;
	if (rc == -2)
		return util_stop ? 1 : EX_IOERR;
	e = &l->e[l->ne++];
	memset(e, 0, sizeof(*e));
	e->lineno = in->lineno;
	e->state = E_DONE;
	if (rc == 1 && scan_line(&l->scan, line, len) < 0) {
		/* jansson words the reason (and agrees: fuzz/scan.c). */
		rc = ndj_parse(in, &obj);
		json_decref(obj);
		if (rc == 1) {
			snprintf(in->err, sizeof(in->err), "not read as JSON");
			rc = -1;
		}
	}
	if (rc == -1)
		return bad_event(l, e, in->line ? in->line : "",
		    in->line ? in->len : 0, in->err);
	memset(&m, 0, sizeof(m));
	m.lineno = in->lineno;
	m.line = in->line;
	m.len = in->len;
	if (evt_meta(&l->scan, &m, reason, sizeof(reason)) < 0)
		return bad_event(l, e, in->line, in->len, reason);
	e->pos = m.pos;
	e->has_pos = 1;
	if (!l->src_known) {
		memcpy(l->src, m.pos.src, sizeof(l->src));
		l->src_known = 1;
	} else if (strcmp(l->src, m.pos.src) != 0) {
		warnx("%s:%lu: position from source \"%s\", but %s \"%s\": "
		    "positions of two streams cannot be compared (a rebuilt or "
		    "restored database, or another slot: see client-rebuild(1))",
		    in->name, in->lineno, m.pos.src, l->have_acked ?
		    ops->ack_file : "the lines before are from", l->src);
		e->state = E_HELD;
		return EX_CONFIG;
	}
	/* Applied and acknowledged before: a replay. */
	if (l->have_acked && evt_src_ordered(l->src) &&
	    ack_pos_cmp(&m.pos, &l->acked) <= 0) {
		ops->nreplayed++;
		return 0;
	}
	rc = ops->take(ops->ctx, &l->scan, &m, reason, sizeof(reason));
	if (rc == 0) {
		e->state = E_TAKEN;
		l->taken[l->nt++] = l->ne - 1;
		if (ops->reject_file != NULL) {
			e->off = l->lines.len;
			e->len = in->len;
			sb_put(&l->lines, in->line, in->len);
		}
		return 0;
	}
	if (rc == EVT_SKIP) {
		ops->nskipped++;
		return 0;
	}
	if (rc == EVT_BAD)
		return bad_event(l, e, in->line, in->len, reason);
	e->state = E_HELD;
	return rc;
}

/*
 * The consumer loop: lock and read the ack file, read event lines, hand
 * each with its position to take(), call apply() when the batch is full
 * or no more input is waiting, and then write the ack file (at most every
 * 100 ms, and at the end).  A line at or below the ack file's position,
 * from an ordered source, was applied before: it is skipped.  Returns 0,
 * 65 when an event was bad (and not rejected into the reject file), or
 * the first exit code of take(), apply() or the ack file.
 */
int
evt_run(struct evt_ops *ops, struct ndj_reader *in)
{
	struct loop l;
	int64_t t;
	int rc, ms, status = 0, eof = 0, lockfd = -1;

	memset(&l, 0, sizeof(l));
	l.ops = ops;
	l.in = in;
	l.rejfd = -1;
	in->quiet = 1;
	if (ops->ack_file != NULL) {
		if ((lockfd = ack_lock(ops->ack_file)) < 0)
			return lockfd == -2 ? EX_TEMPFAIL : EX_IOERR;
		if ((rc = ack_read(ops->ack_file, &l.acked)) < 0) {
			close(lockfd);
			return EX_IOERR;
		}
		l.have_acked = rc;
		if (rc == 1 && l.acked.src[0] != '\0') {
			memcpy(l.src, l.acked.src, sizeof(l.src));
			l.src_known = 1;
		}
	}
	if (ops->start != NULL &&
	    (status = ops->start(ops->ctx, l.have_acked ? &l.acked : NULL)) != 0) {
		if (lockfd >= 0)
			close(lockfd);
		return status;
	}
	l.e = xmalloc(sizeof(*l.e) * ops->batch);
	l.taken = xmalloc(sizeof(*l.taken) * ops->batch);
	sb_init(&l.lines);
	scan_init(&l.scan);
	if (ops->reject_file != NULL) {
		sb_init(&l.overlong);
		in->capture = &l.overlong;
	}

	while (!eof && status == 0) {
		if (ops->prg != NULL)
			prg_tick(ops->prg);
		/*
		 * Idle: wait for input, write a pending acknowledgement when
		 * it falls due, and print progress lines meanwhile.
		 */
		if (!ndj_more(in)) {
			ms = -1;
			if (l.dirty) {
				t = util_mono_ms() - l.last_ack;
				ms = t >= ACK_EVERY_MS ? 0 : (int)(ACK_EVERY_MS - t);
			}
			if (ops->prg != NULL)
				ms = prg_timeout(ops->prg, ms);
			if (ms != 0 && !util_stop && !util_progress &&
			    wait_input(in, ms) == 0)
				continue;
			if (l.dirty && !ndj_more(in) &&
			    util_mono_ms() - l.last_ack >= ACK_EVERY_MS) {
				if ((status = write_ack(&l)) != 0)
					break;
				continue;
			}
			if (util_progress)
				continue;
		}
		if (util_stop)
			break;
		if ((rc = read_one(&l)) == 1)
			eof = 1;
		else if (rc != 0) {
			/* Apply what came before the line that ends the run. */
			status = rc;
			eof = 1;
		}
		if (l.ne < ops->batch && !eof && !util_stop && ndj_more(in))
			continue;
		if ((rc = apply_batch(&l)) != 0 && status == 0)
			status = rc;
		if (status != 0 || l.stopped)
			break;
		if (l.dirty && util_mono_ms() - l.last_ack >= ACK_EVERY_MS &&
		    (status = write_ack(&l)) != 0)
			break;
	}
	/* What was applied before a failure is still acknowledged. */
	advance(&l);
	if ((rc = write_ack(&l)) != 0 && status == 0)
		status = rc;
	if (status == 0 && l.bad)
		status = EX_DATAERR;
	if (l.rejfd >= 0 && (fsync(l.rejfd) < 0 || close(l.rejfd) < 0)) {
		warn("%s", ops->reject_file);
		if (status == 0)
			status = EX_IOERR;
	}
	if (lockfd >= 0)
		close(lockfd);
	sb_free(&l.lines);
	scan_free(&l.scan);
	if (ops->reject_file != NULL) {
		in->capture = NULL;
		sb_free(&l.overlong);
	}
	free(l.e);
	free(l.taken);
	return status;
}
