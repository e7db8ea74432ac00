/* rmd: the Redis read model: its keys, what the order tables say it should be, and a client as the JSON line client-get prints. */
#ifndef CQRS_RMD_H
#define CQRS_RMD_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "ndj.h"

#define RMD_MODEL_KEY	"cqrs:model"	/* the mark of a read model */
#define RMD_REBUILD_KEY	"cqrs:rebuild"	/* while client-rebuild runs */
#define RMD_LEASE_PREFIX "cqrs:projector:"	/* each client-project's lease */

/*
 * Per client with at least one order: id, name, email (the client's, now),
 * the total of its orders in cents, and the latest placement date; of the
 * client $1, or of all, ordered by id (a simple query).
 */
extern const char rmd_truth_one_sql[];
extern const char rmd_truth_all_sql[];

/* The command for one client; its reply goes to rmd_format(). */
#define RMD_HMGET	"HMGET client:%s name email total last_purchase"

int	rmd_valid_id(const char *, size_t);
int	rmd_format(struct sbuf *, const char *, const redisReply *, char *,
	    size_t);
void	rmd_quote(struct sbuf *, const char *, size_t);
void	rmd_put_total(struct sbuf *, int64_t);
int	rmd_integer(const char *, int64_t *);

#endif
