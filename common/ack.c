/* ack: the ack file, one line "LSN SEQ", the position a consumer has applied. */
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

/*
 * Read the position in path.  1 when read, 0 when the file does not exist
 * (nothing acknowledged yet), -1 on an error or malformed contents
 * (reported).
 */
int
ack_read(const char *path, uint64_t *lsn, uint64_t *seq)
{
	char buf[128], *end;
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY)) < 0) {
		if (errno == ENOENT)
			return 0;
		warn("%s", path);
		return -1;
	}
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n < 0) {
		warn("%s", path);
		return -1;
	}
	buf[n] = '\0';
	errno = 0;
	*lsn = strtoull(buf, &end, 10);
	if (end == buf || *end != ' ' || errno != 0)
		goto bad;
	*seq = strtoull(end + 1, &end, 10);
	if (*end != '\n' || errno != 0)
		goto bad;
	return 1;
bad:
	warnx("%s: not an ack file (want one line \"LSN SEQ\")", path);
	return -1;
}

/*
 * Replace path atomically with "LSN SEQ\n": a temporary file in the same
 * directory, fsync, rename, fsync of the directory.  0, or -1 (reported).
 */
int
ack_write(const char *path, uint64_t lsn, uint64_t seq)
{
	char *tmp, *dcopy, line[64];
	size_t plen = strlen(path);
	int fd, dfd, len;

	tmp = xmalloc(plen + 12);
	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".tmpXXXXXX", 11);
	if ((fd = mkstemp(tmp)) < 0) {
		warn("%s", tmp);
		free(tmp);
		return -1;
	}
	len = snprintf(line, sizeof(line), "%" PRIu64 " %" PRIu64 "\n", lsn,
	    seq);
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
