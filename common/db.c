/* db: PostgreSQL connections through libpq, and server errors as exit codes. */
#include <err.h>
#include <stdio.h>
#include <string.h>
#include <sysexits.h>

#include <libpq-fe.h>

#include "db.h"

/* libpq messages end with a newline; diagnostics want one line. */
static const char *
one_line(const char *msg)
{
	static _Thread_local char buf[1024];	/* cqrs-httpd's threads */
	char *p;

	snprintf(buf, sizeof(buf), "%s", msg ? msg : "unknown error");
	for (p = buf; *p != '\0'; p++)
		if (*p == '\n')
			*p = (p[1] == '\0') ? '\0' : ' ';
	return buf;
}

/*
 * Whether s is a plain database name rather than a connection string: no
 * "=" and not a postgres:// or postgresql:// URI.
 */
int
db_is_bare_name(const char *s)
{
	return strchr(s, '=') == NULL && strncmp(s, "postgres://", 11) != 0 &&
	    strncmp(s, "postgresql://", 13) != 0;
}

/*
 * libpq's message on one line, with every quoted word replaced by "...":
 * the words of a connection string can be secrets.
 */
const char *
db_redact_quoted(const char *msg)
{
	static _Thread_local char buf[512];
	size_t i = 0;
	int in = 0;

	for (; *msg != '\0' && i + 6 < sizeof(buf); msg++) {
		if (*msg == '"') {
			if (!in) {
				memcpy(buf + i, "\"...\"", 5);
				i += 5;
			}
			in = !in;
		} else if (!in)
			buf[i++] = *msg == '\n' ? ' ' : *msg;
	}
	while (i > 0 && buf[i - 1] == ' ')
		i--;
	buf[i] = '\0';
	return buf;
}

/*
 * Connect with conninfo (a key=value string, a URI or a bare database
 * name; NULL or "" means libpq's environment: PGHOST, PGDATABASE, PGSERVICE, .pgpass and so on).
 * With replication set, a logical replication connection.  Returns the
 * connection, or NULL after reporting libpq's reason with *ex set: 78 for
 * a malformed conninfo or a database that does not exist, 77 for refused
 * authentication, 69 for a server that cannot be reached.
 */
PGconn *
db_connect(const char *conninfo, int replication, int *ex)
{
	extern char *program_invocation_short_name;
	const char *keys[5], *vals[5];
	PQconninfoOption *opts = NULL;
	PGconn *conn;
	char *perr = NULL;
	const char *msg;
	int n = 0;

	if (conninfo != NULL && *conninfo != '\0') {
		/*
		 * A bare name is a database name, as psql takes it; anything
		 * else must parse.  libpq quotes the words of a malformed
		 * string in its message, and a word may be a password: only
		 * the message's shape is kept.
		 */
		if (!db_is_bare_name(conninfo) &&
		    (opts = PQconninfoParse(conninfo, &perr)) == NULL) {
			warnx("connection string: malformed: %s (see "
			    "\"Connection Strings\" in libpq's manual)",
			    db_redact_quoted(perr ? perr : "out of memory"));
			PQfreemem(perr);
			*ex = EX_CONFIG;
			return NULL;
		}
		if (!db_is_bare_name(conninfo))
			PQconninfoFree(opts);
		keys[n] = "dbname";
		vals[n++] = conninfo;
	}
	if (replication) {
		keys[n] = "replication";
		vals[n++] = "database";
	}
	keys[n] = "fallback_application_name";
	vals[n++] = program_invocation_short_name;
	keys[n] = "client_encoding";
	vals[n++] = "UTF8";
	keys[n] = NULL;
	vals[n] = NULL;

	conn = PQconnectdbParams(keys, vals, 1);
	if (conn == NULL) {
		warnx("database: out of memory");
		*ex = EX_OSERR;
		return NULL;
	}
	if (PQstatus(conn) == CONNECTION_OK)
		return conn;
	msg = PQerrorMessage(conn);
	warnx("database: %s", one_line(msg));
	if (PQconnectionNeedsPassword(conn) ||
	    strstr(msg, "authentication failed") != NULL ||
	    strstr(msg, "no pg_hba.conf entry") != NULL ||
	    strstr(msg, "permission denied") != NULL ||
	    strstr(msg, "must be superuser or replication") != NULL ||
	    strstr(msg, "must have the REPLICATION") != NULL)
		*ex = EX_NOPERM;
	else if (strstr(msg, "does not exist") != NULL ||
	    strncmp(msg, "invalid ", 8) == 0)
		*ex = EX_CONFIG;		/* e.g. invalid port number */
	else
		*ex = EX_UNAVAILABLE;
	PQfinish(conn);
	return NULL;
}

/* The server's or libpq's message for a failed result, on one line. */
const char *
db_message(const PGresult *res, const PGconn *conn)
{
	const char *m = NULL;

	if (res != NULL)
		m = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	if (m == NULL && res != NULL)
		m = PQresultErrorMessage(res);
	if ((m == NULL || *m == '\0') && conn != NULL)
		m = PQerrorMessage(conn);
	return one_line(m);
}

/*
 * The exit code for a failed result, from its SQLSTATE: 69 when the
 * server went away, 75 for what a retry may cure (serialization, deadlock,
 * lack of resources, an object in use), 77 for missing privileges, 78 for
 * a server or schema that is not set up as required, 65 for data the
 * server rejected, 70 otherwise.
 */
int
db_exit_code(const PGresult *res, const PGconn *conn)
{
	const char *st = NULL;

	if (res != NULL)
		st = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (st == NULL || strlen(st) != 5)
		return (conn == NULL || PQstatus(conn) != CONNECTION_OK) ?
		    EX_UNAVAILABLE : EX_SOFTWARE;
	if (strncmp(st, "08", 2) == 0 || strncmp(st, "57P", 3) == 0)
		return EX_UNAVAILABLE;
	if (strncmp(st, "40", 2) == 0 || strncmp(st, "53", 2) == 0 ||
	    strcmp(st, "55006") == 0 || strcmp(st, "55P03") == 0)
		return EX_TEMPFAIL;
	if (strcmp(st, "42501") == 0 || strncmp(st, "28", 2) == 0)
		return EX_NOPERM;
	if (strcmp(st, "55000") == 0 || strcmp(st, "42P01") == 0 ||
	    strcmp(st, "42703") == 0 || strcmp(st, "42704") == 0 ||
	    strcmp(st, "3D000") == 0)
		return EX_CONFIG;
	if (strncmp(st, "22", 2) == 0 || strncmp(st, "23", 2) == 0)
		return EX_DATAERR;
	return EX_SOFTWARE;
}
