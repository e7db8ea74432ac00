/* web: HTTP requests over libcurl's multi interface, several in flight, connections kept alive. */
#ifndef CQRS_WEB_H
#define CQRS_WEB_H

#include <stdint.h>

#include <curl/curl.h>

#include "ndj.h"

/* One request and, once done, its answer. */
struct web_req {
	CURL		*h;
	struct curl_slist *hdr;
	struct sbuf	 body;		/* what is posted; kept until done */
	struct sbuf	 resp;		/* the answer's body */
	char		 qerr[128];	/* x-amzn-query-error, the legacy code */
	char		 err[CURL_ERROR_SIZE];
	long		 status;	/* HTTP status, 0 if none came */
	int		 cc;		/* CURLcode of the transfer */
	int		 busy;
	int		 kind;		/* the owner's: what it asked for */
	size_t		 from, to;	/* the owner's: what it is about */
	int64_t		 due;		/* the owner's: when to send it again */
	unsigned	 tries;
};

struct web {
	CURLM		*m;
	int		 running;
};

int	 web_init(struct web *);
void	 web_free(struct web *);
struct web_req *web_req_new(void);
void	 web_req_free(struct web_req *);
void	 web_req_post(struct web_req *, const char *, long);
void	 web_req_header(struct web_req *, const char *);
int	 web_start(struct web *, struct web_req *);
int	 web_wait(struct web *, int, struct curl_waitfd *, unsigned);
struct web_req *web_done(struct web *);
int	 web_perform(struct web_req *);
int	 web_failed_transport(const struct web_req *);

#endif
