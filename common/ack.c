/* ack: the ack file, one line "LSN SEQ SOURCE", the position a consumer has applied, and its lock. */
#include <sys/file.h>

#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ack.h"
#include "util.h"

/* Order of two positions (the sources are not compared): <0, 0, >0. */
int
ack_pos_cmp(const struct ack_pos *a, const struct ack_pos *b)
{
	if (a->lsn != b->lsn)
		return a->lsn < b->lsn ? -1 : 1;
	if (a->seq != b->seq)
		return a->seq < b->seq ? -1 : 1;
	return 0;
}

/*
 * A source identity: 1 to 255 printable ASCII bytes, no space, such as
 * "pg:7301234567890123456:1:cqrs_outbox" or "sqs:https://...".
 */
int
ack_src_valid(const char *s)
{
	size_t n;

	for (n = 0; s[n] != '\0'; n++)
		if (s[n] <= ' ' || s[n] > '~' || n >= ACK_SRC_MAX - 1)
			return 0;
	return n > 0;
}

/* Decimal digits only, no sign, no leading zero but "0", at most max. */
static int
digits(const char **p, const char *end, uint64_t max, uint64_t *v)
{
	const char *s = *p;
	uint64_t x = 0;

	if (s == end || *s < '0' || *s > '9' || (*s == '0' && s + 1 < end &&
	    s[1] >= '0' && s[1] <= '9'))
		return -1;
	for (; s < end && *s >= '0' && *s <= '9'; s++) {
		if (x > (max - (uint64_t)(*s - '0')) / 10)
			return -1;
		x = x * 10 + (uint64_t)(*s - '0');
	}
	*p = s;
	*v = x;
	return 0;
}

/*
 * Parse the contents of an ack file: "LSN SEQ SOURCE\n", or "LSN SEQ\n"
 * as version 0.1 wrote it.  0, or -1 if malformed.
 */
int
ack_parse(const char *buf, size_t len, struct ack_pos *pos)
{
	const char *p = buf, *end = buf + len, *s;
	size_t n;

	memset(pos, 0, sizeof(*pos));
	if (len == 0 || buf[len - 1] != '\n' || memchr(buf, '\n', len) !=
	    end - 1)
		return -1;
	end--;
	if (digits(&p, end, ACK_LSN_MAX, &pos->lsn) < 0 || p == end ||
	    *p++ != ' ' || digits(&p, end, ACK_SEQ_MAX, &pos->seq) < 0)
		return -1;
	if (p == end)
		return 0;
	if (*p++ != ' ')
		return -1;
	s = p;
	n = (size_t)(end - s);
	if (n == 0 || n >= ACK_SRC_MAX)
		return -1;
	memcpy(pos->src, s, n);
	pos->src[n] = '\0';
	return ack_src_valid(pos->src) ? 0 : -1;
}

/*
 * Read the position in path.  1 when read, 0 when the file does not exist
 * (nothing acknowledged yet), -1 on an error or malformed contents
 * (reported).
 */
int
ack_read(const char *path, struct ack_pos *pos)
{
	char buf[ACK_SRC_MAX + 64];
	ssize_t n;
	int fd;

	memset(pos, 0, sizeof(*pos));
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		if (errno == ENOENT)
			return 0;
		warn("%s", path);
		return -1;
	}
	n = read(fd, buf, sizeof(buf));
	close(fd);
	if (n < 0) {
		warn("%s", path);
		return -1;
	}
	if ((size_t)n == sizeof(buf) || ack_parse(buf, (size_t)n, pos) < 0) {
		warnx("%s: not an ack file (want one line \"LSN SEQ SOURCE\" "
		    "of plain digits, LSN at most 2^60, SEQ at most 2^32-1)",
		    path);
		return -1;
	}
	return 1;
}

/*
 * Replace path atomically with "LSN SEQ SOURCE\n": a temporary file in the
 * same directory, fsync, rename, fsync of the directory.  0, or -1
 * (reported).
 */
int
ack_write(const char *path, const struct ack_pos *pos)
{
	char *tmp, *dcopy, line[ACK_SRC_MAX + 64];
	size_t plen = strlen(path);
	int fd, dfd, len;

	tmp = xmalloc(plen + 12);
	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".tmpXXXXXX", 11);
	if ((fd = mkostemp(tmp, O_CLOEXEC)) < 0) {
		warn("%s", tmp);
		free(tmp);
		return -1;
	}
	len = snprintf(line, sizeof(line), "%" PRIu64 " %" PRIu64 "%s%s\n",
	    pos->lsn, pos->seq, pos->src[0] ? " " : "", pos->src);
	if (write(fd, line, (size_t)len) != len || fsync(fd) < 0) {
		warn("%s", tmp);
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		warn("%s", tmp);
		goto fail;
	}
	fd = -1;
	if (rename(tmp, path) < 0) {
		warn("rename %s", path);
		goto fail;
	}
	dcopy = xstrdup(path);
	if ((dfd = open(dirname(dcopy), O_RDONLY | O_DIRECTORY)) >= 0) {
		fsync(dfd);
		close(dfd);
	}
	free(dcopy);
	free(tmp);
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlink(tmp);
	free(tmp);
	return -1;
}

static char *
lock_path(const char *path)
{
	size_t n = strlen(path);
	char *l = xmalloc(n + 6);

	memcpy(l, path, n);
	memcpy(l + n, ".lock", 6);
	return l;
}

/*
 * Take the consumer's lock on path: an exclusive flock(2) on "path.lock",
 * held until the process exits (the ack file itself is replaced by rename,
 * so it cannot carry the lock).  The descriptor, -1 when the lock file
 * cannot be made, or -2 when another process holds it (reported).
 */
int
ack_lock(const char *path)
{
	char *l = lock_path(path);
	int fd, rc;

	if ((fd = open(l, O_RDWR | O_CREAT | O_CLOEXEC, 0666)) < 0) {
		warn("%s", l);
		free(l);
		return -1;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		rc = errno == EWOULDBLOCK ? -2 : -1;
		if (rc == -2)
			warnx("%s: in use by another consumer (%s is locked)",
			    path, l);
		else
			warn("%s", l);
		close(fd);
		free(l);
		return rc;
	}
	free(l);
	return fd;
}

/* Whether a consumer holds path's lock: 1 yes, 0 no, -1 error (reported). */
int
ack_held(const char *path)
{
	char *l = lock_path(path);
	int fd, rc;

	if ((fd = open(l, O_RDONLY | O_CLOEXEC)) < 0) {
		rc = errno == ENOENT ? 0 : -1;
		if (rc < 0)
			warn("%s", l);
		free(l);
		return rc;
	}
	free(l);
	if (flock(fd, LOCK_SH | LOCK_NB) == 0)
		rc = 0;
	else
		rc = errno == EWOULDBLOCK ? 1 : -1;
	close(fd);
	return rc;
}
