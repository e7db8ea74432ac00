/* pgo: decoding pgoutput (logical replication protocol 1) messages into event lines. */
#ifndef CQRS_PGO_H
#define CQRS_PGO_H

#include <stddef.h>
#include <stdint.h>

#include "ndj.h"

#define PGO_EPOCH_MS	946684800000LL	/* 2000-01-01 in Unix milliseconds */

enum {
	PGO_NONE,		/* nothing to do: Begin, Relation, ignored */
	PGO_ROW,		/* an Insert: the event line is in line */
	PGO_COMMIT		/* a Commit: rows and end are set */
};

struct pgo_rel;

struct pgo {
	struct pgo_rel	*rels;
	size_t		 nrels;
	int		 open;		/* inside Begin ... Commit */
	uint64_t	 lsn;		/* commit LSN from Begin: __lsn */
	uint64_t	 seq;		/* next __seq; at Commit, the row count */
	uint32_t	 xid;
	int64_t		 ts_ms;
	uint64_t	 end;		/* at Commit, the end LSN */
	struct sbuf	 line;		/* at PGO_ROW, the event line */
	char		 err[160];	/* why a message was rejected */
};

void	pgo_init(struct pgo *);
void	pgo_free(struct pgo *);
int	pgo_decode(struct pgo *, const unsigned char *, size_t);

#endif
