/* sqs: Amazon SQS's JSON protocol: queue URLs, batch requests and their answers. */
#ifndef CQRS_SQS_H
#define CQRS_SQS_H

#include <stddef.h>

#include "aws.h"
#include "ndj.h"

#define SQS_MAX_ENTRIES	10
#define SQS_MAX_BYTES	1048576		/* a message, and a whole batch */
#define SQS_TARGET	"AmazonSQS."
#define SQS_CTYPE	"application/x-amz-json-1.0"

/* A message as ReceiveMessage gives it. */
struct sqs_msg {
	char		*id;		/* MessageId */
	char		*handle;	/* ReceiptHandle */
	char		*body;
	size_t		 len;
	char		*table;		/* the "table" message attribute, or NULL */
};

int	sqs_url_parse(const char *, char **, char *, size_t);
int	sqs_parse_batch(const char *, size_t, struct aws_entry *, size_t,
	    size_t *);
int	sqs_parse_error(const char *, size_t, const char *, char *, size_t,
	    char *, size_t);
int	sqs_parse_receive(const char *, size_t, struct sqs_msg **, size_t *);
void	sqs_msg_free(struct sqs_msg *);

#endif
