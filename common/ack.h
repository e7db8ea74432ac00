/* ack: the ack file, one line "LSN SEQ SOURCE", the position a consumer has applied, and its lock. */
#ifndef CQRS_ACK_H
#define CQRS_ACK_H

#include <stdint.h>

#define ACK_SRC_MAX	256	/* longest source identity, with its NUL */
#define ACK_LSN_MAX	(UINT64_C(1) << 60)	/* more WAL than any cluster writes */
#define ACK_SEQ_MAX	UINT32_MAX

/* A position and the identity of the stream it belongs to. */
struct ack_pos {
	uint64_t	lsn;
	uint64_t	seq;
	char		src[ACK_SRC_MAX];	/* "" in a file of version 0.1 */
};

int	ack_pos_cmp(const struct ack_pos *, const struct ack_pos *);
int	ack_src_valid(const char *);
int	ack_read(const char *, struct ack_pos *);
int	ack_write(const char *, const struct ack_pos *);
int	ack_lock(const char *);
int	ack_held(const char *);
int	ack_parse(const char *, size_t, struct ack_pos *);

#endif
