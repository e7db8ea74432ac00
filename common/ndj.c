/* ndj: newline-delimited JSON, one line reader, one buffered writer, a string builder. */
#include <err.h>
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "ndj.h"
#include "util.h"

#define READ_CHUNK	(64 * 1024)
#define WRITE_HIGH	(64 * 1024)	/* the writer flushes past this */

void
sb_init(struct sbuf *sb)
{
	sb->cap = 256;
	sb->len = 0;
	sb->buf = xmalloc(sb->cap);
	sb->buf[0] = '\0';
}

void
sb_free(struct sbuf *sb)
{
	free(sb->buf);
	sb->buf = NULL;
	sb->len = sb->cap = 0;
}

/* Make room for n more bytes and the terminating NUL. */
void
sb_grow(struct sbuf *sb, size_t n)
{
	if (sb->len + n + 1 <= sb->cap)
		return;
	while (sb->len + n + 1 > sb->cap)
		sb->cap *= 2;
	sb->buf = xrealloc(sb->buf, sb->cap);
}

void
sb_put(struct sbuf *sb, const char *s, size_t n)
{
	sb_grow(sb, n);
	memcpy(sb->buf + sb->len, s, n);
	sb->len += n;
	sb->buf[sb->len] = '\0';
}

void
sb_puts(struct sbuf *sb, const char *s)
{
	sb_put(sb, s, strlen(s));
}

void
sb_putc(struct sbuf *sb, char c)
{
	sb_grow(sb, 1);
	sb->buf[sb->len++] = c;
	sb->buf[sb->len] = '\0';
}

void
sb_u64(struct sbuf *sb, uint64_t v)
{
	char tmp[24];
	size_t i = sizeof(tmp);

	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	sb_put(sb, tmp + i, sizeof(tmp) - i);
}

void
sb_i64(struct sbuf *sb, int64_t v)
{
	if (v < 0) {
		sb_putc(sb, '-');
		sb_u64(sb, (uint64_t)0 - (uint64_t)v);
	} else
		sb_u64(sb, (uint64_t)v);
}

/* Length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t
utf8_seq(const unsigned char *s, size_t n)
{
	size_t len, i;
	unsigned int cp;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf) {
		len = 2;
		cp = s[0] & 0x1f;
	} else if (s[0] >= 0xe0 && s[0] <= 0xef) {
		len = 3;
		cp = s[0] & 0x0f;
	} else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
		len = 4;
		cp = s[0] & 0x07;
	} else
		return 0;
	if (len > n)
		return 0;
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3f);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

long
ndj_utf8_check(const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0, k;

	while (i < n) {
		if (p[i] < 0x80) {
			i++;
			continue;
		}
		if ((k = utf8_seq(p + i, n - i)) == 0)
			return (long)i;
		i += k;
	}
	return -1;
}

/*
 * Append s as a quoted JSON string.  Invalid UTF-8 becomes U+FFFD so that
 * the output line is always valid.
 */
void
sb_json_str(struct sbuf *sb, const char *s, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	size_t i, run, k;

	sb_grow(sb, n + 2);
	sb->buf[sb->len++] = '"';
	for (i = 0; i < n; ) {
		for (run = i; run < n && p[run] >= 0x20 && p[run] < 0x80 &&
		    p[run] != '"' && p[run] != '\\'; run++)
			;
		if (run > i) {
			sb_put(sb, s + i, run - i);
			i = run;
			continue;
		}
		if (p[i] >= 0x80) {
			if ((k = utf8_seq(p + i, n - i)) == 0) {
				sb_put(sb, "\xef\xbf\xbd", 3);
				i++;
			} else {
				sb_put(sb, s + i, k);
				i += k;
			}
			continue;
		}
		switch (p[i]) {
		case '"':  sb_put(sb, "\\\"", 2); break;
		case '\\': sb_put(sb, "\\\\", 2); break;
		case '\n': sb_put(sb, "\\n", 2); break;
		case '\r': sb_put(sb, "\\r", 2); break;
		case '\t': sb_put(sb, "\\t", 2); break;
		default: {
			char u[6] = { '\\', 'u', '0', '0',
			    hex[p[i] >> 4], hex[p[i] & 15] };
			sb_put(sb, u, 6);
		}
		}
		i++;
	}
	sb_putc(sb, '"');
}

void
ndj_reader_init(struct ndj_reader *r, int fd, const char *name)
{
	memset(r, 0, sizeof(*r));
	r->fd = fd;
	r->name = name;
	r->cap = NDJ_LINE_MAX + READ_CHUNK + 1;
	r->buf = xmalloc(r->cap);
}

void
ndj_reader_free(struct ndj_reader *r)
{
	free(r->buf);
	r->buf = NULL;
}

/* Read more input; 1 if bytes arrived, 0 at end of file, -1 on error. */
static int
fill(struct ndj_reader *r)
{
	ssize_t n;

	if (r->start > 0) {
		memmove(r->buf, r->buf + r->start, r->end - r->start);
		r->end -= r->start;
		r->start = 0;
	}
	for (;;) {
		n = read(r->fd, r->buf + r->end, r->cap - 1 - r->end);
		if (n > 0) {
			r->end += (size_t)n;
			return 1;
		}
		if (n == 0) {
			r->eof = 1;
			return 0;
		}
		if (errno == EINTR && !util_stop)
			continue;
		return -1;
	}
}

/* A bad line: keep the reason, and report it unless the reader is quiet. */
static void
bad_line(struct ndj_reader *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
bad_line(struct ndj_reader *r, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(r->err, sizeof(r->err), fmt, ap);
	va_end(ap);
	if (!r->quiet)
		warnx("%s:%lu: %s", r->name, r->lineno, r->err);
}

/* Keep up to NDJ_CAPTURE_MAX bytes of an over-long line, if asked to. */
static void
capture(struct ndj_reader *r, const char *s, size_t n)
{
	if (r->capture == NULL)
		return;
	if (r->capture->len + n > NDJ_CAPTURE_MAX)
		n = NDJ_CAPTURE_MAX - r->capture->len;
	sb_put(r->capture, s, n);
}

/*
 * Next line, without its newline (nor a carriage return before it) and
 * NUL-terminated in place.  A UTF-8 byte order mark at the very start of
 * input is skipped.  Returns 1 with *line and *len set, 0 at end of
 * input, -1 for a line that is too long (reported once read through; the
 * reader's capture buffer, if set, holds its first NDJ_CAPTURE_MAX bytes),
 * -2 on a read error (reported) or an interrupting signal (util_stop set,
 * nothing reported).  A last line without a newline is still a line.
 */
int
ndj_getline(struct ndj_reader *r, char **line, size_t *len)
{
	char *nl;
	int rc;

	for (;;) {
		if (r->lineno == 0 && r->start == 0 && !r->skipping &&
		    r->end >= 3 && memcmp(r->buf, "\xef\xbb\xbf", 3) == 0)
			r->start = 3;
		nl = memchr(r->buf + r->start, '\n', r->end - r->start);
		if (r->skipping) {
			if (nl != NULL || r->eof) {
				if (nl == NULL)
					nl = r->buf + r->end;
				capture(r, r->buf + r->start,
				    (size_t)(nl - (r->buf + r->start)));
				r->start = nl < r->buf + r->end ?
				    (size_t)(nl - r->buf) + 1 : r->end;
				r->skipping = 0;
				bad_line(r, "line longer than %d bytes",
				    NDJ_LINE_MAX);
				return -1;
			}
			capture(r, r->buf + r->start, r->end - r->start);
			r->start = r->end;
		} else if (nl != NULL && (size_t)(nl - (r->buf + r->start)) >
		    NDJ_LINE_MAX) {
			r->lineno++;
			if (r->capture != NULL)
				r->capture->len = 0;
			capture(r, r->buf + r->start,
			    (size_t)(nl - (r->buf + r->start)));
			r->start = (size_t)(nl - r->buf) + 1;
			bad_line(r, "line longer than %d bytes", NDJ_LINE_MAX);
			return -1;
		} else if (nl != NULL) {
			r->lineno++;
			*line = r->buf + r->start;
			*len = (size_t)(nl - *line);
			*nl = '\0';
			r->start += *len + 1;
			if (*len > 0 && (*line)[*len - 1] == '\r')
				(*line)[--*len] = '\0';
			return 1;
		} else if (r->end - r->start > NDJ_LINE_MAX) {
			/* Read it through to its end before saying so. */
			r->lineno++;
			r->skipping = 1;
			if (r->capture != NULL)
				r->capture->len = 0;
			continue;
		} else if (r->eof) {
			if (r->end == r->start)
				return 0;
			r->lineno++;
			*line = r->buf + r->start;
			*len = r->end - r->start;
			r->buf[r->end] = '\0';
			r->start = r->end;
			if (*len > 0 && (*line)[*len - 1] == '\r')
				(*line)[--*len] = '\0';
			return 1;
		}
		if (r->eof)
			return 0;
		if ((rc = fill(r)) < 0) {
			if (!util_stop)
				warn("%s", r->name);
			return -2;
		}
	}
}

/* Whether a line holds only blanks (spaces, tabs, a carriage return). */
int
ndj_blank(const char *line, size_t len)
{
	size_t i;

	for (i = 0; i < len && strchr(" \t\r", line[i]) != NULL; i++)
		;
	return i == len;
}

/*
 * Next line that is not blank (blank lines are skipped, as jq does),
 * checked for NUL bytes and invalid UTF-8: 1 with *line, *len and
 * r->line, r->len set; 0 at end of input; -1 for a bad line (reported
 * with its number unless the reader is quiet; r->err says why); -2 on a
 * read error or signal.
 */
int
ndj_next(struct ndj_reader *r, char **line, size_t *len)
{
	long bad;
	int rc;

	r->line = NULL;
	r->len = 0;
	do {
		if ((rc = ndj_getline(r, line, len)) == -1 &&
		    r->capture != NULL) {
			r->line = r->capture->buf;
			r->len = r->capture->len;
		}
		if (rc != 1)
			return rc;
	} while (ndj_blank(*line, *len));
	r->line = *line;
	r->len = *len;
	if (memchr(*line, '\0', *len) != NULL) {
		bad_line(r, "NUL byte at column %zu",
		    (size_t)((char *)memchr(*line, '\0', *len) - *line) + 1);
		return -1;
	}
	if ((bad = ndj_utf8_check(*line, *len)) >= 0) {
		bad_line(r, "invalid UTF-8 at column %ld", bad + 1);
		return -1;
	}
	return 1;
}

/*
 * Parse the line ndj_next() returned as a JSON object with jansson: 1
 * with *obj set (the caller owns it), or -1 for invalid JSON, a duplicate
 * key or a value that is not an object (reported, r->err says why).
 */
int
ndj_parse(struct ndj_reader *r, json_t **obj)
{
	json_error_t jerr;

	*obj = json_loadb(r->line, r->len, JSON_REJECT_DUPLICATES, &jerr);
	if (*obj == NULL) {
		bad_line(r, "%s (column %d)", jerr.text, jerr.column);
		return -1;
	}
	if (!json_is_object(*obj)) {
		bad_line(r, "not a JSON object");
		json_decref(*obj);
		*obj = NULL;
		return -1;
	}
	return 1;
}

/*
 * Next line as a JSON object: 1 with *obj set (the caller owns it) and
 * r->line, r->len the line as read; 0 at end of input; -1 for a bad line
 * (reported with its number: NUL byte, invalid UTF-8, not JSON, duplicate
 * keys, not an object, too long; r->err says why); -2 on a read error or
 * signal.
 */
int
ndj_read(struct ndj_reader *r, json_t **obj)
{
	char *line;
	size_t len;
	int rc;

	*obj = NULL;
	if ((rc = ndj_next(r, &line, &len)) != 1)
		return rc;
	return ndj_parse(r, obj);
}

/*
 * Whether a next line is already buffered or input is waiting.  At end
 * of input with nothing buffered it says 0: check r->eof before waiting.
 */
int
ndj_more(struct ndj_reader *r)
{
	struct pollfd pfd;

	if (memchr(r->buf + r->start, '\n', r->end - r->start) != NULL)
		return 1;
	if (r->eof)
		return r->end > r->start;
	pfd.fd = r->fd;
	pfd.events = POLLIN;
	return poll(&pfd, 1, 0) > 0;
}

void
ndj_writer_init(struct ndj_writer *w, int fd)
{
	w->fd = fd;
	w->err = 0;
	sb_init(&w->out);
	sb_grow(&w->out, WRITE_HIGH * 2);
}

void
ndj_writer_free(struct ndj_writer *w)
{
	sb_free(&w->out);
}

/*
 * Write out what is buffered.  0 on success; -1 after a failed write,
 * with w->err set to its errno (EPIPE: the reader went away).  Not
 * reported here: the caller decides whether EPIPE is an error.
 */
int
ndj_flush(struct ndj_writer *w)
{
	size_t off = 0;
	ssize_t n;

	if (w->err)
		return -1;
	while (off < w->out.len) {
		n = write(w->fd, w->out.buf + off, w->out.len - off);
		if (n < 0) {
			/* A signal may end a write that a reader holds up. */
			if (errno == EINTR && !util_stop)
				continue;
			w->err = errno;
			return -1;
		}
		off += (size_t)n;
	}
	w->out.len = 0;
	return 0;
}

/* Buffer one line (a newline is added); flushes past a high-water mark. */
int
ndj_write(struct ndj_writer *w, const char *s, size_t n)
{
	sb_put(&w->out, s, n);
	sb_putc(&w->out, '\n');
	if (w->out.len >= WRITE_HIGH)
		return ndj_flush(w);
	return w->err ? -1 : 0;
}
