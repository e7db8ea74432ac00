/* prg: progress lines, a command's counts and rates so far as one timestamped JSON line on stderr, on SIGUSR1 or every few seconds. */
#include <err.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "prg.h"
#include "util.h"

/* Longest line: PRG_MAX figures of at most ~110 bytes, and the header. */
#define LINE_MAX_BYTES	4096

enum { FIG_U64, FIG_ULONG, FIG_GAUGE };

/*
 * Start counting now.  every_ms > 0 prints a line every every_ms
 * milliseconds from now on (--stats); 0 only on SIGUSR1.  Lines go to
 * standard error.
 */
void
prg_init(struct prg *p, int64_t every_ms)
{
	memset(p, 0, sizeof(*p));
	p->fd = STDERR_FILENO;
	p->start_ms = util_mono_ms();
	p->every_ms = every_ms > 0 ? every_ms : 0;
	p->next_ms = p->start_ms + p->every_ms;
}

/* A figure name: 1 to 31 of a-z, 0-9 and _, starting with a letter. */
static int
valid_name(const char *s)
{
	static const char *const reserved[] = { "time", "prog", "pid",
	    "elapsed_s" };
	size_t i, n = strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_");

	if (n == 0 || s[n] != '\0' || n >= PRG_NAME_MAX || s[0] < 'a' ||
	    s[0] > 'z' || (n > 6 && strcmp(s + n - 6, "_per_s") == 0))
		return 0;
	for (i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
		if (strcmp(s, reserved[i]) == 0)
			return 0;
	return 1;
}

/* Register a figure.  0, or -1 for a bad or repeated name or a full line. */
static int
add(struct prg *p, const char *name, int kind, const void *ptr,
    int64_t (*fn)(void *), void *arg)
{
	size_t i;

	if (p->n == PRG_MAX || !valid_name(name))
		return -1;
	for (i = 0; i < p->n; i++)
		if (strcmp(p->fig[i].name, name) == 0)
			return -1;
	memcpy(p->fig[p->n].name, name, strlen(name) + 1);
	p->fig[p->n].kind = kind;
	p->fig[p->n].ptr = ptr;
	p->fig[p->n].fn = fn;
	p->fig[p->n].arg = arg;
	p->n++;
	return 0;
}

/*
 * A counter that the command increments: printed with its count and its
 * rate since prg_init() ("NAME" and "NAME_per_s").  0 or -1 (see add).
 */
int
prg_counter(struct prg *p, const char *name, const uint64_t *v)
{
	return add(p, name, FIG_U64, v, NULL, NULL);
}

/* The same for an unsigned long counter. */
int
prg_counter_ul(struct prg *p, const char *name, const unsigned long *v)
{
	return add(p, name, FIG_ULONG, v, NULL, NULL);
}

/*
 * A gauge: fn(arg) is called each time a line is made, and its value
 * printed as it is, without a rate (a lag, a queue length).
 */
int
prg_gauge(struct prg *p, const char *name, int64_t (*fn)(void *), void *arg)
{
	return fn == NULL ? -1 : add(p, name, FIG_GAUGE, NULL, fn, arg);
}

/*
 * Parse the SECONDS of --stats: a decimal number from 0.1 to 86400.
 * 0 with *ms set, or -1.
 */
int
prg_every(const char *s, int64_t *ms)
{
	char *end;
	double d;

	if (*s == '\0' || *s == '-' || *s == '+' || *s == ' ')
		return -1;
	errno = 0;
	d = strtod(s, &end);
	if (*end != '\0' || errno != 0 || !isfinite(d) ||
	    d * 1000 < PRG_EVERY_MIN || d * 1000 > PRG_EVERY_MAX)
		return -1;
	*ms = (int64_t)llround(d * 1000);
	return 0;
}

/*
 * The --stats option: its seconds as milliseconds, or a usage error (64).
 */
int64_t
prg_option(const char *s)
{
	int64_t ms;

	if (prg_every(s, &ms) < 0)
		errx(EX_USAGE, "--stats %s: want seconds from 0.1 to 86400", s);
	return ms;
}

struct line {
	char	*buf;
	size_t	 size;
	size_t	 len;
	int	 full;
};

static void
put(struct line *l, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (l->full)
		return;
	va_start(ap, fmt);
	n = vsnprintf(l->buf + l->len, l->size - l->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= l->size - l->len)
		l->full = 1;
	else
		l->len += (size_t)n;
}

/*
 * Make the line, "\n" included, in buf:
 *   {"time":"2026-11-28T19:13:00.123Z","prog":"client-project","pid":42,
 *    "elapsed_s":12.345,"applied":1200,"applied_per_s":97.25,"lag_bytes":0}
 * Counters and gauges in the order they were registered.  Its length, or
 * 0 if it does not fit in size bytes.
 */
size_t
prg_line(const struct prg *p, char *buf, size_t size)
{
	extern char *program_invocation_short_name;
	struct line l = { buf, size, 0, 0 };
	const char *s = program_invocation_short_name;
	struct timespec ts;
	struct tm tm;
	char stamp[32], prog[64];
	double secs;
	uint64_t v;
	size_t i;

	/* The name as JSON needs no escape: anything unusual becomes '?'. */
	for (i = 0; s[i] != '\0' && i < sizeof(prog) - 1; i++)
		prog[i] = ((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' &&
		    s[i] <= 'Z') || (s[i] >= '0' && s[i] <= '9') ||
		    strchr("._-", s[i]) != NULL) ? s[i] : '?';
	prog[i] = '\0';
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	secs = (double)(util_mono_ms() - p->start_ms) / 1000;
	put(&l, "{\"time\":\"%s.%03ldZ\",\"prog\":\"%s\",\"pid\":%ld,"
	    "\"elapsed_s\":%.3f", stamp, ts.tv_nsec / 1000000,
	    prog, (long)getpid(), secs);
	for (i = 0; i < p->n; i++) {
		const struct prg_fig *f = &p->fig[i];

		if (f->kind == FIG_GAUGE) {
			put(&l, ",\"%s\":%" PRId64, f->name, f->fn(f->arg));
			continue;
		}
		v = f->kind == FIG_U64 ? *(const uint64_t *)f->ptr :
		    *(const unsigned long *)f->ptr;
		put(&l, ",\"%s\":%" PRIu64 ",\"%s_per_s\":%.2f", f->name, v,
		    f->name, secs > 0 ? (double)v / secs : 0.0);
	}
	put(&l, "}\n");
	return l.full ? 0 : l.len;
}

/*
 * Print one line now, in a single write(2) so that lines from the stages
 * of a pipeline that share standard error never interleave.  0, or -1 if
 * it could not be written (not reported: standard error is where it
 * would be).
 */
int
prg_print(struct prg *p)
{
	char buf[LINE_MAX_BYTES];
	size_t len = prg_line(p, buf, sizeof(buf)), off = 0;
	ssize_t n;

	if (len == 0)
		return -1;
	while (off < len) {
		n = write(p->fd, buf + off, len - off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		off += (size_t)n;
	}
	p->nlines++;
	return 0;
}

/*
 * Call from the command's loop: print a line if SIGUSR1 asked for one
 * (util_progress) or the next periodic one is due.  Periodic lines keep
 * to their schedule (a multiple of the interval after prg_init()): those
 * missed while the command was busy are skipped, not bunched.  1 if a
 * line was printed, else 0.
 */
int
prg_tick(struct prg *p)
{
	int64_t now;
	int due = 0;

	if (util_progress) {
		util_progress = 0;
		due = 1;
	}
	if (p->every_ms > 0 && (now = util_mono_ms()) >= p->next_ms) {
		p->next_ms = p->start_ms + ((now - p->start_ms) / p->every_ms +
		    1) * p->every_ms;
		due = 1;
	}
	if (due)
		prg_print(p);
	return due;
}

/*
 * The timeout for the command's poll(2): timeout_ms (-1: none), shortened
 * so that the next periodic line is not late.
 */
int
prg_timeout(const struct prg *p, int timeout_ms)
{
	int64_t left;

	if (p->every_ms == 0)
		return timeout_ms;
	left = p->next_ms - util_mono_ms();
	if (left < 0)
		left = 0;
	if (timeout_ms >= 0 && timeout_ms < left)
		return timeout_ms;
	return left > INT32_MAX ? INT32_MAX : (int)left;
}
