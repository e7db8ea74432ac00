/* aws: AWS configuration as the SDKs read it (environment, shared files, container, IMDSv2), endpoints, SigV4 through libcurl. */
#ifndef CQRS_AWS_H
#define CQRS_AWS_H

#include <stddef.h>
#include <stdint.h>

#include "web.h"

#define AWS_REFRESH_MS	(5 * 60 * 1000)	/* renew credentials this long before they expire */

/* Where the credentials came from. */
enum { AWS_SRC_NONE, AWS_SRC_ENV, AWS_SRC_PROFILE, AWS_SRC_CONTAINER,
    AWS_SRC_IMDS };

struct aws_creds {
	char	*key;		/* access key id */
	char	*secret;
	char	*token;		/* session token, or NULL */
	int64_t	 expires;	/* real time in ms, or 0: never */
};

struct aws {
	char		 service[8];	/* "sns", "sqs" */
	char		*region;
	char		*endpoint;	/* scheme://host[:port]/ */
	char		 sigv4[96];	/* "aws:amz:REGION:SERVICE" */
	char		*profile;	/* the profile read, for messages */
	int		 src;
	struct aws_creds c;
	char		*cont_url;	/* container credentials */
	char		*imds;		/* instance metadata, scheme://host[:port] */
	int64_t		 last_fetch;	/* monotonic ms of the last fetch */
};

/* A shared config or credentials file: its properties, by section. */
struct aws_ini_ent {
	char		*section;	/* "default", "profile x", "services y" */
	char		*key;
	char		*sub;		/* a sub-property's name, or NULL */
	char		*value;
};

struct aws_ini {
	struct aws_ini_ent *e;
	size_t		 n;
};

/* The fate of one entry of a batch request, as the service answered. */
struct aws_entry {
	char		 id[24];
	int		 ok;
	int		 sender_fault;
	char		 code[64];
	char		 msg[200];
};

int	 aws_init(struct aws *, const char *, const char *);
int	 aws_fresh(struct aws *);
void	 aws_prepare(struct aws *, struct web_req *, const char *,
	    const char *);
void	 aws_free(struct aws *);
int	 aws_auth_error(const char *);
int	 aws_throttled(const char *);
void	 aws_scrub(const struct aws *, char *);
const char *aws_src_name(int);

int	 aws_ini_parse(const char *, size_t, struct aws_ini *, unsigned *);
const char *aws_ini_get(const struct aws_ini *, const char *, const char *,
	    const char *);
void	 aws_ini_free(struct aws_ini *);
int	 aws_parse_time(const char *, int64_t *);
int	 aws_parse_creds(const char *, size_t, struct aws_creds *, char *,
	    size_t);
void	 aws_creds_free(struct aws_creds *);
int	 aws_region_valid(const char *);

#endif
