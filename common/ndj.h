/* ndj: newline-delimited JSON, one line reader, one buffered writer, a string builder. */
#ifndef CQRS_NDJ_H
#define CQRS_NDJ_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define NDJ_LINE_MAX	(1024 * 1024)	/* longest accepted input line, bytes */
#define NDJ_CAPTURE_MAX	(64 * 1024 * 1024) /* kept of a longer one */

/* A growable byte buffer, always NUL-terminated. */
struct sbuf {
	char	*buf;
	size_t	 len;
	size_t	 cap;
};

void	sb_init(struct sbuf *);
void	sb_free(struct sbuf *);
void	sb_grow(struct sbuf *, size_t);
void	sb_put(struct sbuf *, const char *, size_t);
void	sb_puts(struct sbuf *, const char *);
void	sb_putc(struct sbuf *, char);
void	sb_u64(struct sbuf *, uint64_t);
void	sb_i64(struct sbuf *, int64_t);
void	sb_json_str(struct sbuf *, const char *, size_t);

/* Byte offset of the first invalid UTF-8 sequence in s, or -1. */
long	ndj_utf8_check(const char *, size_t);

struct ndj_reader {
	int		 fd;
	const char	*name;		/* "stdin" in messages */
	unsigned long	 lineno;	/* number of the line last returned */
	char		*buf;
	size_t		 cap;
	size_t		 start;		/* first unread byte */
	size_t		 end;		/* one past the last byte read */
	int		 eof;
	int		 skipping;	/* inside an over-long line */
	int		 quiet;		/* keep bad-line messages in err only */
	struct sbuf	*capture;	/* if set, keeps an over-long line */
	const char	*line;		/* the line ndj_read last returned */
	size_t		 len;
	char		 err[160];	/* why the last line was bad */
};

void	ndj_reader_init(struct ndj_reader *, int, const char *);
void	ndj_reader_free(struct ndj_reader *);
int	ndj_getline(struct ndj_reader *, char **, size_t *);
int	ndj_next(struct ndj_reader *, char **, size_t *);
int	ndj_parse(struct ndj_reader *, json_t **);
int	ndj_read(struct ndj_reader *, json_t **);
int	ndj_blank(const char *, size_t);
int	ndj_more(struct ndj_reader *);

struct ndj_writer {
	int		fd;
	struct sbuf	out;
	int		err;		/* errno of the first failed write */
};

void	ndj_writer_init(struct ndj_writer *, int);
void	ndj_writer_free(struct ndj_writer *);
int	ndj_write(struct ndj_writer *, const char *, size_t);
int	ndj_flush(struct ndj_writer *);

#endif
