/* sns: Amazon SNS's Query protocol: PublishBatch requests and their XML answers. */
#ifndef CQRS_SNS_H
#define CQRS_SNS_H

#include <stddef.h>

#include "aws.h"
#include "ndj.h"

#define SNS_MAX_ENTRIES	10
#define SNS_MAX_BYTES	262144		/* a message, and a whole batch */

int	sns_arn_parse(const char *, char *, size_t);
void	sns_form_put(struct sbuf *, const char *, const char *, size_t);
int	sns_parse_batch(const char *, size_t, struct aws_entry *, size_t,
	    size_t *);
int	sns_parse_error(const char *, size_t, char *, size_t, char *, size_t);

#endif
