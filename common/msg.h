/* msg: the messages a queue carries (our event line, the SNS envelope, the sample's pipe message, Debezium's row, a Kafka record), unwrapped. */
#ifndef CQRS_MSG_H
#define CQRS_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "ack.h"
#include "ndj.h"

#define MSG_EVENT	1
#define MSG_SKIP	0	/* a delete or a tombstone: nothing to do */
#define MSG_BAD		-1

/* A row found in a message, its columns as the producer wrote them. */
struct msg_event {
	struct sbuf	 cols;		/* "k":v,... without the "__" members */
	char		 table[160];
	int64_t		 id;		/* the row's id, or -1 */
	char		 xid[24];	/* __xid and __ts_ms as written, or "" */
	char		 ts_ms[24];
	char		 origin_src[ACK_SRC_MAX];	/* our own line's __src... */
	char		 origin_lsn[24];		/* ...__lsn and __seq, or "" */
	char		 origin_seq[24];
	const char	*shape;		/* what the message was */
};

void	msg_init(struct msg_event *);
void	msg_free(struct msg_event *);
int	msg_parse(const char *, size_t, const char *, struct msg_event *,
	    char *, size_t);
int	msg_parse_kv(const char *, size_t, const char *, size_t, const char *,
	    struct msg_event *, char *, size_t);
int	msg_cols(const char *, size_t, struct sbuf *);

#endif
