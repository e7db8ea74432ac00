/* pub: where event-publish sends events, the transport that DEST names (SNS topic, SQS queue, Kafka topic). */
#ifndef CQRS_PUB_H
#define CQRS_PUB_H

#include <stddef.h>
#include <stdint.h>

#include "kfk.h"

/* One event to publish, and whether the service has accepted it. */
struct pub_msg {
	const char	*body;
	size_t		 len;
	const char	*group;		/* ordering key: the client id */
	const char	*dedup;		/* deduplication id: position and source */
	const char	*table;		/* attribute "table" */
	const char	*op;		/* attribute "op" */
	uint64_t	 lsn, seq;	/* the position (Kafka headers)... */
	const char	*src;		/* ...and its source */
	unsigned long	 lineno;	/* where it was read, for messages */
	int		 sent;		/* started by pub_start(), not yet done */
	int		 done;
};

struct pub_opts {
	int		 inflight;	/* requests in flight at most */
	int		 tries;		/* attempts of one request at most */
	int		 verbose;
	const struct kfk_prop *props;	/* Kafka: -F and -X, in order */
	size_t		 nprops;
};

/* What a transport does: see pub_send() for the contract of send. */
struct pub_ops {
	const char	*kind;		/* "sns", "sqs", "kafka" */
	int		(*send)(void *, struct pub_msg *, size_t, size_t *,
			    char *, size_t);
	void		(*stats)(void *, unsigned long *, unsigned long *);
	void		(*close)(void *);
	/* Optional: start sending one message before the batch's send. */
	void		(*start)(void *, struct pub_msg *);
};

struct pub {
	const struct pub_ops *ops;
	void		*ctx;
	size_t		 max_len;	/* the longest message it takes */
	int		 ordered;	/* FIFO: order kept per group */
};

int	pub_open(struct pub *, const char *, const struct pub_opts *);
int	pub_send(struct pub *, struct pub_msg *, size_t, size_t *, char *,
	    size_t);
void	pub_start(struct pub *, struct pub_msg *);
void	pub_close(struct pub *);

/* The transports. */
int	pub_sns_open(struct pub *, const char *, const struct pub_opts *);
int	pub_sqs_open(struct pub *, const char *, const struct pub_opts *);
int	pub_kfk_open(struct pub *, const char *, const struct pub_opts *);

#endif
