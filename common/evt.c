/* evt: reading event lines in batches, their fields, and acknowledging what was applied. */
#include <err.h>
#include <float.h>
#include <math.h>
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>

#include <jansson.h>

#include "ack.h"
#include "evt.h"
#include "ndj.h"
#include "util.h"

#define ACK_EVERY_MS	100	/* at most one ack file write per period */

static int64_t
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Whether the event's __table is table. */
int
evt_table_is(json_t *ev, const char *table)
{
	json_t *t = json_object_get(ev, "__table");

	return json_is_string(t) && strcmp(json_string_value(t), table) == 0;
}

/* An integer field from 0 to max.  0, or -1 (reported with the line). */
int
evt_uint(json_t *ev, const char *key, const struct ndj_reader *r,
    uint64_t max, uint64_t *v)
{
	json_t *j = json_object_get(ev, key);

	if (j == NULL) {
		warnx("%s:%lu: %s: missing", r->name, r->lineno, key);
		return -1;
	}
	if (!json_is_integer(j) || json_integer_value(j) < 0 ||
	    (uint64_t)json_integer_value(j) > max) {
		warnx("%s:%lu: %s: must be an integer from 0 to %ju", r->name,
		    r->lineno, key, (uintmax_t)max);
		return -1;
	}
	*v = (uint64_t)json_integer_value(j);
	return 0;
}

/* Any integer field.  0, or -1 (reported). */
int
evt_int(json_t *ev, const char *key, const struct ndj_reader *r, int64_t *v)
{
	json_t *j = json_object_get(ev, key);

	if (!json_is_integer(j)) {
		warnx("%s:%lu: %s: %s", r->name, r->lineno, key,
		    j ? "must be an integer" : "missing");
		return -1;
	}
	*v = json_integer_value(j);
	return 0;
}

/* A string field.  0, or -1 (reported). */
int
evt_str(json_t *ev, const char *key, const struct ndj_reader *r,
    const char **v)
{
	json_t *j = json_object_get(ev, key);

	if (!json_is_string(j)) {
		warnx("%s:%lu: %s: %s", r->name, r->lineno, key,
		    j ? "must be a string" : "missing");
		return -1;
	}
	*v = json_string_value(j);
	return 0;
}

/*
 * A money field as exact integer cents.  The JSON number must have at
 * most two decimals and a magnitude below 10^13 (numeric(14,2) and more),
 * where a double still tells every cent apart.  0, or -1 (reported).
 */
int
evt_cents(json_t *ev, const char *key, const struct ndj_reader *r,
    int64_t *cents)
{
	json_t *j = json_object_get(ev, key);
	double x, c;

	if (!json_is_number(j)) {
		warnx("%s:%lu: %s: %s", r->name, r->lineno, key,
		    j ? "must be a number" : "missing");
		return -1;
	}
	if (json_is_integer(j)) {
		if (json_integer_value(j) >= 10000000000000LL ||
		    json_integer_value(j) <= -10000000000000LL)
			goto range;
		*cents = json_integer_value(j) * 100;
		return 0;
	}
	x = json_real_value(j);
	if (!(fabs(x) < 1e13))
		goto range;
	/*
	 * x * 100 is a whole number of cents give or take the rounding of
	 * the decimal to binary conversion: a few ulps, never a thousandth.
	 */
	c = round(x * 100.0);
	if (fabs(x * 100.0 - c) > fmax(1e-7, 8 * DBL_EPSILON * fabs(c))) {
		warnx("%s:%lu: %s: more than two decimals", r->name,
		    r->lineno, key);
		return -1;
	}
	*cents = (int64_t)c;
	return 0;
range:
	warnx("%s:%lu: %s: out of range", r->name, r->lineno, key);
	return -1;
}

/*
 * Wait up to ms for input; 1 if some is waiting, 0 on time-out (or a
 * signal).
 */
static int
wait_input(struct ndj_reader *r, int ms)
{
	struct pollfd pfd = { r->fd, POLLIN, 0 };

	if (ndj_more(r))
		return 1;
	return poll(&pfd, 1, ms) > 0;
}

/*
 * The consumer loop: read event lines, hand each with its position to
 * take(), call apply() when the batch is full or no more input is
 * waiting, and then write the ack file (at most every 100 ms, and at the
 * end).  An event without a position is a bad line.  Returns 0, 65 when
 * a line was bad, or the first exit code that take() or apply() returned.
 */
int
evt_run(struct evt_ops *ops, struct ndj_reader *in)
{
	uint64_t lsn, seq, ack_lsn = 0, ack_seq = 0;
	uint64_t top_lsn = 0, top_seq = 0;
	int64_t last_ack = 0, t;
	size_t n = 0;
	int rc, status = 0, bad = 0, dirty = 0, eof = 0;
	json_t *ev;

	while (!eof && status == 0) {
		/* Idle: write a pending acknowledgement when it falls due. */
		if (dirty && !ndj_more(in)) {
			t = mono_ms();
			if (t - last_ack < ACK_EVERY_MS &&
			    wait_input(in, (int)(ACK_EVERY_MS - (t - last_ack))))
				goto read;
			if (ack_write(ops->ack_file, ack_lsn, ack_seq) < 0) {
				status = EX_IOERR;
				break;
			}
			last_ack = mono_ms();
			dirty = 0;
		}
read:
		if (util_stop)
			break;
		rc = ndj_read(in, &ev);
		if (rc == 0 || rc == -2) {
			eof = 1;
			if (rc == -2 && !util_stop)
				status = EX_IOERR;
		} else if (rc == -1) {
			bad = 1;
		} else if (evt_uint(ev, "__lsn", in, UINT64_MAX >> 1,
		    &lsn) < 0 || evt_uint(ev, "__seq", in, UINT32_MAX,
		    &seq) < 0) {
			bad = 1;
			json_decref(ev);
		} else {
			rc = ops->take(ops->ctx, ev, lsn, seq);
			json_decref(ev);
			if (rc == EX_DATAERR)
				bad = 1;
			else if (rc != 0)
				status = rc;
			else {
				n++;
				if (lsn > top_lsn || (lsn == top_lsn &&
				    seq > top_seq)) {
					top_lsn = lsn;
					top_seq = seq;
				}
			}
		}
		if (bad && !ops->keep_going)
			eof = 1;
		if (status != 0 || (n < ops->batch && !eof && !util_stop &&
		    ndj_more(in)))
			continue;
		/* Apply the batch; only then acknowledge it. */
		if (n > 0 && (status = ops->apply(ops->ctx)) != 0)
			break;
		if (n > 0 && ops->ack_file != NULL) {
			ack_lsn = top_lsn;
			ack_seq = top_seq;
			dirty = 1;
		}
		n = 0;
		if (dirty && mono_ms() - last_ack >= ACK_EVERY_MS) {
			if (ack_write(ops->ack_file, ack_lsn, ack_seq) < 0) {
				status = EX_IOERR;
				break;
			}
			last_ack = mono_ms();
			dirty = 0;
		}
	}
	if (status == 0 && n > 0 && (status = ops->apply(ops->ctx)) == 0 &&
	    ops->ack_file != NULL) {
		ack_lsn = top_lsn;
		ack_seq = top_seq;
		dirty = 1;
	}
	if (dirty && ack_write(ops->ack_file, ack_lsn, ack_seq) < 0 &&
	    status == 0)
		status = EX_IOERR;
	if (status == 0 && bad)
		status = EX_DATAERR;
	return status;
}
