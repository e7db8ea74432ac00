/* sub: where event-consume reads messages, the transport that SRC names (an SQS queue, a Kafka topic). */
#ifndef CQRS_SUB_H
#define CQRS_SUB_H

#include <stddef.h>
#include <stdint.h>

#include "ack.h"
#include "kfk.h"

/* A message received, lent to the command until sub_done() or sub_leave(). */
struct sub_msg {
	char		*id;		/* the service's id, for messages */
	char		*body;
	size_t		 len;
	char		*table;		/* a "table" attribute, or NULL */
	char		*key;		/* Kafka: the record's key, or NULL */
	size_t		 klen;
	int32_t		 partition;	/* Kafka: where it was, or -1 */
	int64_t		 offset;
	int		 gone;		/* its partition went to another consumer */
};

struct sub_opts {
	int		 receivers;	/* receive requests in flight */
	int		 visibility;	/* seconds a received message stays hidden */
	int		 once;		/* stop receiving once the source is empty */
	size_t		 max_out;	/* messages received and not yet done, at most */
	int		 verbose;
	const struct kfk_prop *props;	/* Kafka: -F and -X, in order */
	size_t		 nprops;
	const char	*group;		/* Kafka: the consumer group */
	const char	*lag_file;	/* Kafka: where lag per partition goes */
	/* Called before a revoked partition's offset is committed. */
	void		(*settle)(void *);
	void		*settle_arg;
};

struct sub_ops {
	const char	*kind;
	int		(*poll)(void *, int, int, struct sub_msg ***, size_t *);
	void		(*done)(void *, struct sub_msg *);
	void		(*leave)(void *, struct sub_msg *);
	int		(*drained)(void *);
	int		(*finish)(void *, int);
	void		(*stats)(void *, unsigned long *, unsigned long *,
			    unsigned long *);
	void		(*close)(void *);
};

struct sub {
	const struct sub_ops *ops;
	void		*ctx;
	char		 src[ACK_SRC_MAX];	/* the identity of the stream */
	int		 redrive;	/* a message left goes to a redrive policy */
	unsigned long	 revokes;	/* partitions taken away so far */
};

int	sub_open(struct sub *, const char *, const struct sub_opts *);
int	sub_sqs_open(struct sub *, const char *, const struct sub_opts *);
int	sub_kfk_open(struct sub *, const char *, const struct sub_opts *);

#endif
