/* rds: Redis connections through hiredis, from REDIS_URL or a flag. */
#include <err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <sys/time.h>

#include <hiredis/hiredis.h>

#include "rds.h"
#include "util.h"

struct rds_url {
	const char *host;	/* NULL for a unix socket */
	char	*path;
	int	 port;
	char	*user;
	char	*pass;
	long	 db;
};

/* Undo %XX escapes in place (passwords may hold any byte). */
static void
unescape(char *s)
{
	char *w = s, hex[3] = { 0 };

	for (; *s != '\0'; s++) {
		if (*s == '%' && s[1] != '\0' && s[2] != '\0') {
			hex[0] = s[1];
			hex[1] = s[2];
			*w++ = (char)strtol(hex, NULL, 16);
			s += 2;
		} else
			*w++ = *s;
	}
	*w = '\0';
}

/*
 * redis://[[user]:password@]host[:port][/db] or
 * unix://[[user]:password@]PATH[?db=N].
 * The password is kept out of every message.  0 or -1 (reported).
 */
static int
parse_url(char *url, struct rds_url *u, const char *from)
{
	char *p, *at, *slash, *colon, *end;

	memset(u, 0, sizeof(*u));
	u->port = 6379;
	if (strncmp(url, "unix://", 7) == 0) {
		u->path = url + 7;
		/* unix://[[user]:password@]/path */
		/* The password may hold '@': the path starts after the last "@/". */
		for (at = NULL, p = u->path; (p = strstr(p, "@/")) != NULL; p++)
			at = p;
		if (*u->path != '/' && at != NULL) {
			*at = '\0';
			if ((colon = strchr(u->path, ':')) != NULL) {
				*colon = '\0';
				u->pass = colon + 1;
				unescape(u->pass);
			}
			if (*u->path != '\0') {
				u->user = u->path;
				unescape(u->user);
			}
			u->path = at + 1;
		}
		if ((p = strchr(u->path, '?')) != NULL) {
			*p++ = '\0';
			if (strncmp(p, "db=", 3) != 0) {
				warnx("%s: unix:// takes only ?db=N", from);
				return -1;
			}
			u->db = strtol(p + 3, &end, 10);
			if (*end != '\0' || u->db < 0) {
				warnx("%s: bad database number", from);
				return -1;
			}
		}
		/*
		 * Not quoted: without "@/" a password would be taken for
		 * the path.
		 */
		if (*u->path != '/') {
			warnx("%s: unix:// needs an absolute socket path, as in "
			    "unix:///run/redis.sock or unix://:password@/run/"
			    "redis.sock", from);
			return -1;
		}
		return 0;
	}
	if (strncmp(url, "redis://", 8) != 0) {
		warnx("%s: want redis://[:password@]host[:port][/db]"
		    " or unix:///path (rediss:// is not supported)", from);
		return -1;
	}
	p = url + 8;
	if ((at = strrchr(p, '@')) != NULL) {
		*at = '\0';
		if ((colon = strchr(p, ':')) != NULL) {
			*colon = '\0';
			u->pass = colon + 1;
			unescape(u->pass);
		}
		if (*p != '\0') {
			u->user = p;
			unescape(u->user);
		}
		p = at + 1;
	}
	if ((slash = strchr(p, '/')) != NULL) {
		*slash = '\0';
		if (slash[1] != '\0') {
			u->db = strtol(slash + 1, &end, 10);
			if (*end != '\0' || u->db < 0) {
				warnx("%s: bad database number", from);
				return -1;
			}
		}
	}
	if (*p == '[') {		/* [::1]:6379 */
		u->host = p + 1;
		if ((end = strchr(p, ']')) == NULL) {
			warnx("%s: unclosed [", from);
			return -1;
		}
		*end = '\0';
		colon = (end[1] == ':') ? end + 1 : NULL;
	} else {
		u->host = p;
		colon = strrchr(p, ':');
	}
	if (colon != NULL) {
		*colon = '\0';
		u->port = (int)strtol(colon + 1, &end, 10);
		if (*end != '\0' || u->port <= 0 || u->port > 65535) {
			warnx("%s: bad port", from);
			return -1;
		}
	}
	if (*u->host == '\0')
		u->host = "127.0.0.1";
	return 0;
}

/*
 * The first line of path, without its newline: a password kept out of
 * argv and the environment.  0, or -1 (reported).
 */
static int
read_secret(const char *path, char *buf, size_t size)
{
	FILE *fp;
	size_t n;

	if ((fp = fopen(path, "r")) == NULL) {
		warn("%s", path);
		return -1;
	}
	if (fgets(buf, (int)size, fp) == NULL) {
		warnx("%s: empty", path);
		fclose(fp);
		return -1;
	}
	fclose(fp);
	n = strcspn(buf, "\r\n");
	if (buf[n] == '\0' && n == size - 1) {
		warnx("%s: longer than %zu bytes", path, size - 2);
		return -1;
	}
	buf[n] = '\0';
	return 0;
}

/*
 * Connect to the Redis named by url (NULL: $REDIS_URL, else the default),
 * authenticate (with the password in pass_file, if not NULL, else the
 * URL's) and select the database.  Returns the context, or NULL
 * after reporting with *ex set: 78 for a malformed URL, 69 for a server
 * that cannot be reached, 77 for a refused password.
 */
redisContext *
rds_connect(const char *url, const char *pass_file, int *ex)
{
	struct timeval tv = { 5, 0 };
	struct rds_url u;
	redisContext *c;
	redisReply *r;
	char *copy, pass[512];

	const char *from = "-r";

	if (url == NULL || *url == '\0') {
		url = getenv("REDIS_URL");
		from = "REDIS_URL";
	}
	if (url == NULL || *url == '\0') {
		url = RDS_DEFAULT_URL;
		from = "the default Redis URL";
	}
	copy = xstrdup(url);
	if (parse_url(copy, &u, from) < 0) {
		free(copy);
		*ex = EX_CONFIG;
		return NULL;
	}
	if (pass_file != NULL) {
		if (read_secret(pass_file, pass, sizeof(pass)) < 0) {
			free(copy);
			*ex = EX_CONFIG;
			return NULL;
		}
		u.pass = pass;
	}
	if (u.path != NULL)
		c = redisConnectUnixWithTimeout(u.path, tv);
	else
		c = redisConnectWithTimeout(u.host, u.port, tv);
	if (c == NULL || c->err) {
		if (u.path != NULL)
			warnx("redis: %s: %s", u.path, c ? c->errstr : "oom");
		else
			warnx("redis: %s:%d: %s", u.host, u.port,
			    c ? c->errstr : "oom");
		redisFree(c);
		free(copy);
		*ex = EX_UNAVAILABLE;
		return NULL;
	}
	redisSetTimeout(c, (struct timeval){ 0, 0 });
	if (u.pass != NULL && *u.pass != '\0') {
		if (u.user != NULL)
			r = redisCommand(c, "AUTH %s %s", u.user, u.pass);
		else
			r = redisCommand(c, "AUTH %s", u.pass);
		if (r == NULL || r->type == REDIS_REPLY_ERROR) {
			warnx("redis: AUTH: %s", r ? r->str : c->errstr);
			*ex = r ? EX_NOPERM : EX_UNAVAILABLE;
			goto fail;
		}
		freeReplyObject(r);
	}
	if (u.db != 0) {
		r = redisCommand(c, "SELECT %ld", u.db);
		if (r == NULL || r->type == REDIS_REPLY_ERROR) {
			warnx("redis: SELECT %ld: %s", u.db,
			    r ? r->str : c->errstr);
			*ex = r ? rds_exit_code(c, r) : EX_UNAVAILABLE;
			if (*ex == EX_SOFTWARE)
				*ex = EX_CONFIG;
			goto fail;
		}
		freeReplyObject(r);
	}
	free(copy);
	return c;
fail:
	freeReplyObject(r);
	redisFree(c);
	free(copy);
	return NULL;
}

/*
 * The exit code for a failed command: 69 when the connection broke, 77
 * for NOAUTH, NOPERM or WRONGPASS, 75 for LOADING, BUSY or OOM, 70
 * otherwise.
 */
int
rds_exit_code(const redisContext *c, const redisReply *r)
{
	if (r == NULL || (c != NULL && c->err))
		return EX_UNAVAILABLE;
	if (r->type == REDIS_REPLY_ERROR && r->str != NULL) {
		if (strncmp(r->str, "NOAUTH", 6) == 0 ||
		    strncmp(r->str, "NOPERM", 6) == 0 ||
		    strncmp(r->str, "WRONGPASS", 9) == 0)
			return EX_NOPERM;
		if (strncmp(r->str, "LOADING", 7) == 0 ||
		    strncmp(r->str, "BUSY", 4) == 0 ||
		    strncmp(r->str, "OOM", 3) == 0 ||
		    strncmp(r->str, "MISCONF", 7) == 0)
			return EX_TEMPFAIL;
	}
	return EX_SOFTWARE;
}

/*
 * One command, formatted as for redisCommand(); the reply in *rp (when
 * rp is not NULL), or 0.  An error reply or a lost connection is reported
 * and its exit code returned.
 */
int
rds_command(redisContext *c, redisReply **rp, const char *fmt, ...)
{
	redisReply *r;
	va_list ap;
	int ex;

	va_start(ap, fmt);
	r = redisvCommand(c, fmt, ap);
	va_end(ap);
	if (r == NULL || r->type == REDIS_REPLY_ERROR) {
		warnx("redis: %s", r ? r->str : c->errstr);
		ex = rds_exit_code(c, r);
		freeReplyObject(r);
		return ex;
	}
	if (rp != NULL)
		*rp = r;
	else
		freeReplyObject(r);
	return 0;
}
