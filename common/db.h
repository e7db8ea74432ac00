/* db: PostgreSQL connections through libpq, and server errors as exit codes. */
#ifndef CQRS_DB_H
#define CQRS_DB_H

#include <libpq-fe.h>

PGconn	*db_connect(const char *, int, int *);
int	 db_is_bare_name(const char *);
const char *db_redact_quoted(const char *);
int	 db_exit_code(const PGresult *, const PGconn *);
const char *db_message(const PGresult *, const PGconn *);

#endif
