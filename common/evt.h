/* evt: reading event lines in batches, their fields, and acknowledging what was applied. */
#ifndef CQRS_EVT_H
#define CQRS_EVT_H

#include <stdint.h>

#include <jansson.h>

#include "ndj.h"

#define EVT_TABLE	"public.order_event"

/* What a consumer does with events; each returns 0 or an exit code. */
struct evt_ops {
	/* Take one event (already checked to carry a position). */
	int	(*take)(void *, json_t *, uint64_t, uint64_t);
	/* Apply what was taken, durably, before it is acknowledged. */
	int	(*apply)(void *);
	void	*ctx;
	const char *ack_file;	/* NULL: no acknowledgement */
	size_t	 batch;		/* events per apply, at most */
	int	 keep_going;	/* -k: report bad lines and go on */
};

struct ndj_reader;

int	evt_run(struct evt_ops *, struct ndj_reader *);
int	evt_table_is(json_t *, const char *);
int	evt_uint(json_t *, const char *, const struct ndj_reader *, uint64_t,
	    uint64_t *);
int	evt_int(json_t *, const char *, const struct ndj_reader *, int64_t *);
int	evt_str(json_t *, const char *, const struct ndj_reader *,
	    const char **);
int	evt_cents(json_t *, const char *, const struct ndj_reader *,
	    int64_t *);

#endif
