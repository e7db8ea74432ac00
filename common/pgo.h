/* pgo: the replication stream's framing, and pgoutput (logical replication protocol 1) messages decoded into event lines. */
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
	int64_t		 ts_us;		/* commit time, Unix microseconds */
	uint64_t	 end;		/* at Commit, the end LSN */
	struct sbuf	 line;		/* at PGO_ROW, the event line */
	char		*src_field;	/* "\"__src\":...," or "" */
	char		 err[160];	/* why a message was rejected */
};

/* A CopyData message of the replication stream, split. */
struct pgo_frame {
	uint64_t		 wal_end;
	const unsigned char	*payload;	/* 'w': the pgoutput message */
	size_t			 len;
	int			 reply;		/* 'k': a reply is wanted now */
};

#define PGO_STATUS_LEN	34

void	pgo_init(struct pgo *, const char *);
void	pgo_free(struct pgo *);
int	pgo_decode(struct pgo *, const unsigned char *, size_t);
void	pgo_value(struct sbuf *, uint32_t, const char *, uint32_t);
int	pgo_frame(const unsigned char *, size_t, struct pgo_frame *);
void	pgo_status(unsigned char *, uint64_t, int64_t, int);

#endif
