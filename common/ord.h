/* ord: one order request: its checks (messages name the field) and its placement in PostgreSQL, for order-place and cqrs-httpd. */
#ifndef CQRS_ORD_H
#define CQRS_ORD_H

#include <stddef.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "ndj.h"

#define ORD_MAX_PRODUCTS	1000
#define ORD_MAX_QUANTITY	1000000
#define ORD_KEY_MAX		255	/* request_id, Idempotency-Key */

/* How orders reach the tables. */
enum ord_path {
	ORD_FUNCTION = 1,	/* cqrs_place_order() (scripts/schema.sql) */
	ORD_PLAIN		/* one INSERT statement: a database without it */
};

struct ord {
	unsigned long	 lineno;
	json_int_t	 id_client;
	struct sbuf	 pids;		/* "{1,2}" */
	struct sbuf	 qtys;		/* "{1,3}" */
	size_t		 nproducts;
	char		 key[ORD_KEY_MAX + 1];	/* request_id, "" if none */
};

struct ord_result {
	char	id_order[24];
	char	id_event[24];
	char	total[48];
	char	date[24];
	int	replayed;
};

void	 ord_init(struct ord *);
void	 ord_free(struct ord *);
int	 ord_check(json_t *, struct ord *, char *, size_t);
int	 ord_parse(const char *, size_t, struct ord *, char *, size_t);
int	 ord_valid_key(const char *, size_t);
int	 ord_prepare(PGconn *, enum ord_path *, char *, size_t);
int	 ord_send(PGconn *, enum ord_path, const struct ord *);
int	 ord_result(const PGresult *, struct ord_result *);
void	 ord_result_json(struct sbuf *, const struct ord *,
	    const struct ord_result *);
int	 ord_rejected(PGconn *, const struct ord *, const PGresult *, char *,
	    size_t);
int	 ord_place(PGconn *, enum ord_path, const struct ord *,
	    struct ord_result *, char *, size_t);
const char *ord_path_name(enum ord_path);

#endif
