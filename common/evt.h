/* evt: the event line, its checks, and the consumer loop that applies events and acknowledges them. */
#ifndef CQRS_EVT_H
#define CQRS_EVT_H

#include <stddef.h>
#include <stdint.h>

#include "ack.h"
#include "ndj.h"
#include "scan.h"

struct prg;

#define EVT_TABLE	"public.order_event"
#define EVT_ID_MAX	INT64_C(9007199254740991)	/* 2^53-1 */
#define EVT_CENTS_MAX	INT64_C(99999999999999)	/* numeric(14,2) */
#define EVT_DATE_MIN	INT64_C(946684800)	/* 2000-01-01 */
#define EVT_DATE_AHEAD	86400		/* at most a day after now */

/* Returns of take() and apply() besides 0 and an exit code. */
#define EVT_SKIP	-1	/* not for this consumer: acknowledged as is */
#define EVT_BAD		-2	/* cannot be applied: rejected, or the run stops */
#define EVT_STOPPED	-3	/* a signal stopped apply(): end the run cleanly */

/* Where an event line stands in its stream. */
struct evt_meta {
	struct ack_pos	 pos;		/* __lsn, __seq and __src */
	char		 op;		/* __op: 'c', 'r' (snapshot), ... */
	unsigned long	 lineno;
	const char	*line;		/* the line as read, during take() */
	size_t		 len;
};

/* An outbox row of public.order_event, checked by evt_order(). */
struct evt_order {
	int64_t		 id;		/* the outbox row's id */
	int64_t		 id_client;
	const char	*name;		/* owned by the scanned line */
	size_t		 name_len;
	const char	*email;
	size_t		 email_len;
	int64_t		 cents;		/* order_total in cents */
	int64_t		 event_date;
	int64_t		 xid;		/* __xid, or -1 */
	int64_t		 ts_us;		/* __ts_us, or __ts_ms in us, or -1 */
};

/* What a consumer does with events. */
struct evt_ops {
	/*
	 * Check one event and queue it: 0 (taken), EVT_SKIP (another table:
	 * acknowledged without effect), EVT_BAD (why says why) or an exit
	 * code that ends the run.
	 */
	int	(*take)(void *, const struct scan *, const struct evt_meta *,
		    char *, size_t);
	/*
	 * Apply the taken events from index from on, durably, in order.
	 * 0 when all are applied; EVT_BAD when event *failed cannot be
	 * (why says why): those before it are applied, those after it are
	 * not; EVT_STOPPED when a signal stopped it before event *failed;
	 * or an exit code.  After a rejected event it is called again with
	 * from just past it, also when that is the end of the batch.
	 */
	int	(*apply)(void *, size_t, size_t *, char *, size_t);
	/*
	 * Optional, called once the ack file is read and before the first
	 * line: its position (NULL when nothing is acknowledged yet).  0 or
	 * an exit code.
	 */
	int	(*start)(void *, const struct ack_pos *);
	/* Optional, called before each write of the ack file: 0 or a code. */
	int	(*before_ack)(void *);
	void	*ctx;
	struct prg *prg;		/* progress lines, or NULL */
	const char *ack_file;		/* NULL: no acknowledgement */
	const char *reject_file;	/* NULL: a bad event stops the run */
	size_t	 batch;			/* events per apply, at most */
	int	 keep_going;		/* -k: report bad events and go on */
	unsigned long nreplayed;	/* at or below the ack file: skipped */
	unsigned long nrejected;
	unsigned long nskipped;
};

int	evt_run(struct evt_ops *, struct ndj_reader *);
int	evt_meta(const struct scan *, struct evt_meta *, char *, size_t);
int	evt_order(const struct scan *, const struct evt_meta *,
	    struct evt_order *, char *, size_t);
int	evt_table_is(const struct scan *, const char *);
int	evt_src_ordered(const char *);
int	evt_cents(const struct scan_val *, int64_t *);

#endif
