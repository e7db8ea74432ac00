/* api: the HTTP client (libcurl) for the AWS sample's API and cqrs-httpd: one kept-alive connection, Basic credentials, retries. */
#ifndef CQRS_API_H
#define CQRS_API_H

#include <stddef.h>

#include "ndj.h"

#define API_TRIES	4		/* attempts for 429, 5xx and timeouts */
#define API_BODY_MAX	(1024 * 1024)	/* longest answer read */

struct api;

struct api_reply {
	long		status;		/* HTTP status, or 0 if none came */
	struct sbuf	body;
	int		retried;	/* attempts after the first */
	int		replayed;	/* Idempotent-Replayed: true */
	long		retry_after;	/* seconds, -1 if not said */
	char		error[512];	/* why it failed, for a message */
};

struct api	*api_open(const char *, int *);
int		 api_call(struct api *, const char *, const char *,
		    const char *, size_t, const char *, struct api_reply *);
void		 api_close(struct api *);
void		 api_reply_init(struct api_reply *);
void		 api_reply_free(struct api_reply *);
const char	*api_message(const struct api_reply *);
void		 api_new_key(char *, size_t);

#endif
