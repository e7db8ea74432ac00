/* req: the parts of an HTTP request that cqrs-httpd reads: route, Basic credentials, Content-Type. */
#ifndef CQRS_REQ_H
#define CQRS_REQ_H

#include <stddef.h>

enum req_route {
	REQ_NONE,		/* no such resource: 404 */
	REQ_ORDERS,		/* {prefix}/orders */
	REQ_CLIENT,		/* {prefix}/clients/{id}, id valid */
	REQ_CLIENT_BAD		/* {prefix}/clients/{something else}: 400 */
};

#define REQ_CRED_MAX	256	/* longest user name, longest password */

enum req_route	 req_route(const char *, const char *, char *, size_t);
int		 req_basic(const char *, char *, char *);
int		 req_json_type(const char *);
long		 req_b64decode(const char *, size_t, unsigned char *, size_t);
void		 req_print_path(char *, size_t, const char *);

#endif
