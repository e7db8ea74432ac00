/* cqrs-httpd: the AWS sample's HTTP API (POST /orders, GET /clients/{id}) on PostgreSQL and the Redis read model. */
#include <crypt.h>
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>

#include <hiredis/hiredis.h>
#include <libpq-fe.h>
#include <microhttpd.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "db.h"
#include "ndj.h"
#include "ord.h"
#include "rds.h"
#include "req.h"
#include "rmd.h"
#include "prg.h"
#include "util.h"

#define BODY_MAX	NDJ_LINE_MAX	/* longest request body, bytes */
#define MAX_USERS	1024
#define CACHE_SLOTS	64		/* credentials verified recently */
#define MAX_CONNS	256		/* HTTP connections at once */

/* One user of the htpasswd file. */
struct user {
	char	*name;
	char	*hash;
};

/* A pooled server connection: PostgreSQL or Redis. */
struct slot {
	PGconn		*pg;
	enum ord_path	 path;
	redisContext	*rd;
	int		 busy;
	int		 prepared;	/* pg: the order statements are */
};

struct pool {
	pthread_mutex_t	 mu;
	pthread_cond_t	 cv;
	struct slot	*slots;
	int		 n;
};

/* An HTTP connection, watched for requests that take too long to arrive. */
struct watch {
	int		 fd;
	int64_t		 since;		/* ms: start of the current request */
	int		 busy;		/* our handler is answering */
	struct watch	*next, *prev;
};

/* A request, from its first handler call to its completion. */
struct request {
	int64_t		 t0;		/* us */
	struct sbuf	 body;
	int		 status;
	int		 answered;
	char		 method[8];
	char		 path[160];
	struct watch	*w;
	char		 id[12];	/* GET: the client */
};

/* The server's state: everything main() sets up once. */
static struct {
	const char	*prefix;
	const char	*conninfo;
	const char	*redis_url;
	const char	*redis_pass;
	int		 timeout;	/* seconds */
	struct user	 users[MAX_USERS];
	int		 nusers;
	const char	*dummy_hash;	/* for unknown users: the same work */
	unsigned char	 key[32];	/* HMAC key of the credential cache */
	EVP_MAC		*hmac;
	EVP_MAC_CTX	*hmac_keyed;	/* copied for each request */
	unsigned char	 cache[CACHE_SLOTS][32];
	int		 ncache, next_cache;
	pthread_mutex_t	 cache_mu;
	struct pool	 pg, rd;
	pthread_mutex_t	 watch_mu;
	struct watch	*watching;
	int		 active;	/* requests not yet completed */
	uint64_t	 served;
	pthread_mutex_t	 active_mu;
	pthread_cond_t	 active_cv;
} S = {
	.prefix = "",
	.timeout = 10,
	.cache_mu = PTHREAD_MUTEX_INITIALIZER,
	.watch_mu = PTHREAD_MUTEX_INITIALIZER,
	.active_mu = PTHREAD_MUTEX_INITIALIZER,
	.active_cv = PTHREAD_COND_INITIALIZER,
};

static const char synopsis[] =
    "usage: cqrs-httpd [-hV] [-d conninfo] [-l addr:port] [-n conns]"
    " [-P password-file]\n"
    "                  [-r url] [-t seconds] [--prefix path]"
    " [--stats seconds]\n"
    "                  --htpasswd file\n";

static const char options[] =
    "  -d, --dbname CONNINFO     the database (default: libpq's environment)\n"
    "  -h, --help                print this help and exit\n"
    "      --htpasswd FILE       the users: user:crypt(3)-hash lines\n"
    "  -l, --listen ADDR:PORT    where to listen (default 127.0.0.1:8080)\n"
    "  -n, --connections N       PostgreSQL and Redis connections (default 4)\n"
    "  -P, --password-file FILE  the Redis password, from a file\n"
    "      --stats SECONDS       print a line of progress this often\n"
    "      --prefix PATH         serve under PATH, e.g. /prod (default none)\n"
    "  -r, --redis URL           the Redis server (default $REDIS_URL)\n"
    "  -t, --timeout SECONDS     for a request to arrive whole (default 10)\n"
    "  -V, --version             print the version and exit\n";

/* Progress lines: the counts as the main thread last copied them. */
static uint64_t seen_served;
static int64_t seen_active;

static int64_t
in_flight(void *arg)
{
	(void)arg;
	return seen_active;
}

/* Copy the counts the request threads keep, then print if due. */
static void
progress(struct prg *p)
{
	pthread_mutex_lock(&S.active_mu);
	seen_served = S.served;
	seen_active = S.active;
	pthread_mutex_unlock(&S.active_mu);
	prg_tick(p);
}

static int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Read the htpasswd file: 0, or -1 after naming the line (never its hash). */
static int
load_users(const char *file)
{
	FILE *fp;
	char *line = NULL, *colon, *nl;
	size_t cap = 0;
	unsigned long lineno = 0;
	int st;

	if ((fp = fopen(file, "r")) == NULL) {
		warn("%s", file);
		return -1;
	}
	while (getline(&line, &cap, fp) > 0) {
		lineno++;
		if ((nl = strpbrk(line, "\r\n")) != NULL)
			*nl = '\0';
		if (line[0] == '\0' || line[0] == '#')
			continue;
		if ((colon = strchr(line, ':')) == NULL || colon == line) {
			warnx("%s:%lu: want user:hash", file, lineno);
			goto fail;
		}
		*colon = '\0';
		if (colon[1] != '$') {
			warnx("%s:%lu: user %s: not a crypt(3) hash (plain-text "
			    "passwords are refused; make one with htpasswd -B or "
			    "openssl passwd -6)", file, lineno, line);
			goto fail;
		}
		if (strncmp(colon + 1, "$apr1$", 6) == 0) {
			warnx("%s:%lu: user %s: $apr1$ (htpasswd -m) is not a "
			    "crypt(3) method; use htpasswd -B or openssl passwd "
			    "-6", file, lineno, line);
			goto fail;
		}
		st = crypt_checksalt(colon + 1);
		if (st != CRYPT_SALT_OK) {
			warnx("%s:%lu: user %s: %s", file, lineno, line,
			    st == CRYPT_SALT_METHOD_LEGACY ? "a legacy hash "
			    "method, refused (use htpasswd -B or openssl passwd "
			    "-6)" : "not a hash that crypt(3) can check");
			goto fail;
		}
		if (S.nusers == MAX_USERS) {
			warnx("%s: more than %d users", file, MAX_USERS);
			goto fail;
		}
		S.users[S.nusers].name = xstrdup(line);
		S.users[S.nusers].hash = xstrdup(colon + 1);
		S.nusers++;
	}
	if (ferror(fp)) {
		warn("%s", file);
		goto fail;
	}
	if (S.nusers == 0) {
		warnx("%s: no users", file);
		goto fail;
	}
	explicit_bzero(line, cap);
	free(line);
	fclose(fp);
	S.dummy_hash = S.users[0].hash;
	return 0;
fail:
	if (line != NULL)
		explicit_bzero(line, cap);
	free(line);
	fclose(fp);
	return -1;
}

/* Equal strings, in a time that depends only on their lengths. */
static int
same(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);

	return la == lb && CRYPTO_memcmp(a, b, la) == 0;
}

/*
 * Whether user and pass are in the htpasswd file.  crypt(3) is slow on
 * purpose; a credential that passed is remembered as an HMAC under a key
 * made at start (never the password itself), so that each request does
 * not pay it again.  Every comparison is constant-time, and an unknown
 * user costs the same crypt(3) as a known one.
 */
static int
authorized(const char *user, const char *pass)
{
	unsigned char mac[32];
	size_t maclen = 0;
	EVP_MAC_CTX *mc;
	struct sbuf msg;
	struct crypt_data *cd;
	const char *hash = S.dummy_hash, *out;
	int i, hit = 0, found = 0;

	sb_init(&msg);
	sb_puts(&msg, user);
	sb_putc(&msg, '\0');
	sb_puts(&msg, pass);
	/* A copy of the keyed context: no lookup of the algorithm each time. */
	mc = EVP_MAC_CTX_dup(S.hmac_keyed);
	if (mc == NULL || EVP_MAC_update(mc, (unsigned char *)msg.buf,
	    msg.len) != 1 || EVP_MAC_final(mc, mac, &maclen, sizeof(mac)) !=
	    1 || maclen != sizeof(mac))
		memset(mac, 0, sizeof(mac));	/* never matches: crypt(3) */
	EVP_MAC_CTX_free(mc);
	explicit_bzero(msg.buf, msg.len);
	sb_free(&msg);

	pthread_mutex_lock(&S.cache_mu);
	for (i = 0; i < S.ncache && maclen == sizeof(mac); i++)
		hit |= CRYPTO_memcmp(S.cache[i], mac, sizeof(mac)) == 0;
	pthread_mutex_unlock(&S.cache_mu);
	if (hit)
		return 1;

	for (i = 0; i < S.nusers; i++)
		if (same(S.users[i].name, user)) {
			hash = S.users[i].hash;
			found = 1;
		}
	cd = xcalloc(1, sizeof(*cd));
	out = crypt_rn(pass, hash, cd, sizeof(*cd));
	hit = found && out != NULL && out[0] != '*' && same(out, hash);
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	if (hit && maclen == sizeof(mac)) {
		pthread_mutex_lock(&S.cache_mu);
		memcpy(S.cache[S.next_cache], mac, sizeof(mac));
		S.next_cache = (S.next_cache + 1) % CACHE_SLOTS;
		if (S.ncache < CACHE_SLOTS)
			S.ncache++;
		pthread_mutex_unlock(&S.cache_mu);
	}
	return hit;
}

static void
pool_init(struct pool *p, int n)
{
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	p->slots = xcalloc((size_t)n, sizeof(*p->slots));
	p->n = n;
}

static void
pool_free(struct pool *p)
{
	int i;

	for (i = 0; i < p->n; i++) {
		PQfinish(p->slots[i].pg);
		if (p->slots[i].rd != NULL)
			redisFree(p->slots[i].rd);
	}
	free(p->slots);
}

/* A free slot of the pool, waiting up to the request timeout; or NULL. */
static struct slot *
pool_get(struct pool *p)
{
	struct timespec dl;
	struct slot *s = NULL;
	int i;

	clock_gettime(CLOCK_REALTIME, &dl);
	dl.tv_sec += S.timeout;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		for (i = 0; i < p->n; i++)
			if (!p->slots[i].busy) {
				s = &p->slots[i];
				s->busy = 1;
				break;
			}
		if (s != NULL || pthread_cond_timedwait(&p->cv, &p->mu, &dl) ==
		    ETIMEDOUT)
			break;
	}
	pthread_mutex_unlock(&p->mu);
	return s;
}

static void
pool_put(struct pool *p, struct slot *s)
{
	pthread_mutex_lock(&p->mu);
	s->busy = 0;
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

/*
 * The slot's PostgreSQL connection, (re)connected and prepared if it
 * broke: 0, or -1 (the reason is logged).  A server that hung up while
 * the connection was idle has said so already: read that first.
 */
static int
pg_ready(struct slot *s)
{
	char msg[512];
	PGresult *res;
	int ex, i;

	for (i = 0; s->pg != NULL && i < 4 && PQstatus(s->pg) ==
	    CONNECTION_OK && poll(&(struct pollfd){ PQsocket(s->pg), POLLIN,
	    0 }, 1, 0) > 0; i++)
		PQconsumeInput(s->pg);
	if (s->pg != NULL && PQstatus(s->pg) == CONNECTION_OK && s->prepared)
		return 0;
	if (s->pg == NULL || PQstatus(s->pg) != CONNECTION_OK) {
		PQfinish(s->pg);
		s->prepared = 0;
		if ((s->pg = db_connect(S.conninfo, 0, &ex)) == NULL)
			return -1;
	}
	snprintf(msg, sizeof(msg), "%d", S.timeout * 1000);
	res = PQexecParams(s->pg, "SELECT set_config('statement_timeout', $1, "
	    "false)", 1, NULL, (const char *[]){ msg }, NULL, NULL, 0);
	PQclear(res);
	if ((ex = ord_prepare(s->pg, &s->path, msg, sizeof(msg))) != 0) {
		warnx("%s", msg);
		PQfinish(s->pg);
		s->pg = NULL;
		return -1;
	}
	s->prepared = 1;
	return 0;
}

/* The slot's Redis connection, (re)connected if it broke: 0 or -1. */
static int
rd_ready(struct slot *s)
{
	int ex;

	if (s->rd != NULL && s->rd->err == 0)
		return 0;
	if (s->rd != NULL)
		redisFree(s->rd);
	s->rd = rds_connect(S.redis_url, S.redis_pass, &ex);
	if (s->rd != NULL)
		redisSetTimeout(s->rd, (struct timeval){ S.timeout, 0 });
	return s->rd != NULL ? 0 : -1;
}

/* Queue an answer; the status is kept for the access log. */
static enum MHD_Result
answer(struct MHD_Connection *c, struct request *rq, int status,
    const char *type, const char *body, size_t len, const char *h1,
    const char *v1)
{
	struct MHD_Response *resp;
	enum MHD_Result ret;

	resp = MHD_create_response_from_buffer(len, (void *)body,
	    MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	if (h1 != NULL)
		MHD_add_response_header(resp, h1, v1);
	ret = MHD_queue_response(c, (unsigned int)status, resp);
	MHD_destroy_response(resp);
	rq->status = status;
	rq->answered = 1;
	return ret;
}

/* {"message":msg} with the status. */
static enum MHD_Result
message(struct MHD_Connection *c, struct request *rq, int status,
    const char *msg)
{
	struct sbuf sb;
	enum MHD_Result ret;

	sb_init(&sb);
	sb_puts(&sb, "{\"message\":");
	sb_json_str(&sb, msg, strlen(msg));
	sb_putc(&sb, '}');
	ret = answer(c, rq, status, "application/json", sb.buf, sb.len,
	    status == 401 ? MHD_HTTP_HEADER_WWW_AUTHENTICATE : NULL,
	    "Basic realm=\"cqrs-httpd\", charset=\"UTF-8\"");
	sb_free(&sb);
	return ret;
}

/* POST {prefix}/orders, with the whole body in rq->body. */
static enum MHD_Result
post_order(struct MHD_Connection *c, struct request *rq)
{
	const char *key = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	    "Idempotency-Key");
	struct ord_result r;
	struct slot *s;
	struct ord o;
	struct sbuf sb;
	char msg[512];
	enum MHD_Result ret;
	int ex, st;

	if (key != NULL && !ord_valid_key(key, strlen(key)))
		return message(c, rq, 400, "Idempotency-Key: must be 1 to 255 "
		    "printable ASCII characters");
	ord_init(&o);
	if (ord_parse(rq->body.buf, rq->body.len, &o, msg, sizeof(msg)) < 0) {
		ret = message(c, rq, 400, msg);
		goto done;
	}
	if (key != NULL && o.key[0] != '\0' && strcmp(key, o.key) != 0) {
		ret = message(c, rq, 400, "request_id: differs from the "
		    "Idempotency-Key header");
		goto done;
	}
	if (key != NULL)
		snprintf(o.key, sizeof(o.key), "%s", key);
	if ((s = pool_get(&S.pg)) == NULL) {
		ret = message(c, rq, 503, "busy: no database connection free");
		goto done;
	}
	if (pg_ready(s) < 0) {
		pool_put(&S.pg, s);
		ret = message(c, rq, 503, "database unavailable");
		goto done;
	}
	ex = ord_place(s->pg, s->path, &o, &r, msg, sizeof(msg));
	pool_put(&S.pg, s);
	switch (ex) {
	case 0:
		sb_init(&sb);
		sb_puts(&sb, "{\"statusCode\":200,\"body\":\"Order created "
		    "successfully!\",");
		st = r.replayed;
		r.replayed = 0;		/* the first answer, as it was */
		ord_result_json(&sb, &o, &r);
		sb_putc(&sb, '}');
		ret = answer(c, rq, 200, "application/json", sb.buf, sb.len,
		    st ? "Idempotent-Replayed" : NULL, "true");
		sb_free(&sb);
		break;
	case EX_DATAERR:
		st = strstr(msg, ": unknown ") != NULL ||
		    strncmp(msg, "request_id: ", 12) == 0 ||
		    strncmp(msg, "order_total: ", 13) == 0 ? 422 : 400;
		ret = message(c, rq, st, msg);
		break;
	case EX_UNAVAILABLE:
	case EX_TEMPFAIL:
		warnx("POST %s: %s", rq->path, msg);
		ret = message(c, rq, 503, ex == EX_UNAVAILABLE && strstr(msg,
		    "may or may not") ? "database unavailable: the order may or "
		    "may not exist (retry with the same Idempotency-Key)" :
		    "database unavailable");
		break;
	case EX_CONFIG:
		warnx("POST %s: %s", rq->path, msg);
		ret = message(c, rq, strncmp(msg, "request_id: ", 12) == 0 ?
		    501 : 500, strncmp(msg, "request_id: ", 12) == 0 ?
		    "Idempotency-Key: this database cannot keep keys" :
		    "An internal error occurred.");
		break;
	default:
		warnx("POST %s: %s", rq->path, msg);
		ret = message(c, rq, 500, "An internal error occurred.");
	}
done:
	ord_free(&o);
	return ret;
}

/* GET {prefix}/clients/{id}. */
static enum MHD_Result
get_client(struct MHD_Connection *c, struct request *rq, const char *id)
{
	struct slot *s;
	redisReply *r;
	struct sbuf sb;
	char err[256];
	enum MHD_Result ret;
	int k, tries;

	if ((s = pool_get(&S.rd)) == NULL)
		return message(c, rq, 503, "busy: no Redis connection free");
	/* A connection that broke while idle is made again, once. */
	for (tries = 0, r = NULL; tries < 2 && r == NULL; tries++) {
		if (rd_ready(s) < 0)
			break;
		r = redisCommand(s->rd, RMD_HMGET, id);
	}
	if (r == NULL) {
		if (s->rd != NULL && s->rd->err)
			warnx("GET %s: redis: %s", rq->path, s->rd->errstr);
		pool_put(&S.rd, s);
		return message(c, rq, 503, "read model unavailable");
	}
	pool_put(&S.rd, s);
	sb_init(&sb);
	k = rmd_format(&sb, id, r, err, sizeof(err));
	freeReplyObject(r);
	if (k == 0)
		ret = answer(c, rq, 200, "application/json", sb.buf, sb.len,
		    NULL, NULL);
	else if (k == 1)
		ret = answer(c, rq, 404, "text/plain; charset=utf-8",
		    "Client not found", 16, NULL, NULL);
	else {
		warnx("GET %s: %s", rq->path, err);
		ret = message(c, rq, 500, "An internal error occurred.");
	}
	sb_free(&sb);
	return ret;
}

/*
 * The watchdog's clock for a connection starts again now; busy: our
 * handler is answering (the work has timeouts of its own), do not cut.
 */
static void
watch_set(struct watch *w, int busy)
{
	if (w == NULL)
		return;
	pthread_mutex_lock(&S.watch_mu);
	w->since = util_mono_ms();
	w->busy = busy;
	pthread_mutex_unlock(&S.watch_mu);
}

/* Every request: authentication, the route, the limits, then the answer. */
static enum MHD_Result
handle(void *cls, struct MHD_Connection *c, const char *url,
    const char *method, const char *version, const char *upload,
    size_t *upload_size, void **ctx)
{
	struct request *rq = *ctx;
	const char *h;
	char user[REQ_CRED_MAX + 1], pass[REQ_CRED_MAX + 1], id[12];
	enum req_route route;
	int ok;

	(void)cls;
	(void)version;
	if (rq == NULL) {
		const union MHD_ConnectionInfo *ci;

		rq = xcalloc(1, sizeof(*rq));
		rq->t0 = now_us();
		sb_init(&rq->body);
		snprintf(rq->method, sizeof(rq->method), "%s", method);
		req_print_path(rq->path, sizeof(rq->path), url);
		ci = MHD_get_connection_info(c,
		    MHD_CONNECTION_INFO_SOCKET_CONTEXT);
		rq->w = ci != NULL ? ci->socket_context : NULL;
		*ctx = rq;
		pthread_mutex_lock(&S.active_mu);
		S.active++;
		pthread_mutex_unlock(&S.active_mu);
		/* The headers are in: the body has a timeout of its own. */
		watch_set(rq->w, 0);

		h = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
		    MHD_HTTP_HEADER_AUTHORIZATION);
		if (h == NULL)
			return message(c, rq, 401, "Unauthorized");
		ok = req_basic(h, user, pass) == 0 && authorized(user, pass);
		explicit_bzero(pass, sizeof(pass));
		if (!ok)
			return message(c, rq, 403, "User is not authorized to "
			    "access this resource with an explicit deny");
		route = req_route(S.prefix, url, id, sizeof(id));
		if (route == REQ_NONE)
			return message(c, rq, 404, "Not Found");
		if (route == REQ_CLIENT_BAD)
			return message(c, rq, 400, "id: must be a positive "
			    "integer");
		if (route == REQ_CLIENT) {
			if (strcmp(method, "GET") != 0)
				return answer(c, rq, 405, "application/json",
				    "{\"message\":\"Method Not Allowed\"}", 32,
				    MHD_HTTP_HEADER_ALLOW, "GET");
			memcpy(rq->id, id, sizeof(id));
			return MHD_YES;	/* answered once the request is in */
		}
		if (strcmp(method, "POST") != 0)
			return answer(c, rq, 405, "application/json",
			    "{\"message\":\"Method Not Allowed\"}", 32,
			    MHD_HTTP_HEADER_ALLOW, "POST");
		h = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
		    MHD_HTTP_HEADER_CONTENT_TYPE);
		if (!req_json_type(h))
			return message(c, rq, 415, "Content-Type: must be "
			    "application/json");
		h = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
		    MHD_HTTP_HEADER_CONTENT_LENGTH);
		if (h != NULL && strtoull(h, NULL, 10) > BODY_MAX)
			return message(c, rq, 413, "body: longer than 1048576 "
			    "bytes");
		return MHD_YES;		/* the body comes next */
	}
	if (rq->answered) {
		/* Refused already: what still comes is not read. */
		*upload_size = 0;
		return MHD_YES;
	}
	if (rq->id[0] != '\0') {
		*upload_size = 0;
		watch_set(rq->w, 1);
		return get_client(c, rq, rq->id);
	}
	if (*upload_size > 0) {
		if (rq->body.len + *upload_size > BODY_MAX) {
			rq->status = 413;	/* for the log: closed, not answered */
			return MHD_NO;	/* chunked and too long: close */
		}
		sb_put(&rq->body, upload, *upload_size);
		*upload_size = 0;
		return MHD_YES;
	}
	watch_set(rq->w, 1);
	return post_order(c, rq);
}

/* The access log line, and the connection's clock set for its next request. */
static void
completed(void *cls, struct MHD_Connection *c, void **ctx,
    enum MHD_RequestTerminationCode toe)
{
	struct request *rq = *ctx;
	char line[320], addr[INET6_ADDRSTRLEN] = "-";
	const union MHD_ConnectionInfo *ci;
	int n;

	(void)cls;
	if (rq == NULL)
		return;
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci != NULL && ci->client_addr != NULL) {
		if (ci->client_addr->sa_family == AF_INET)
			inet_ntop(AF_INET, &((struct sockaddr_in *)
			    (void *)ci->client_addr)->sin_addr, addr,
			    sizeof(addr));
		else if (ci->client_addr->sa_family == AF_INET6)
			inet_ntop(AF_INET6, &((struct sockaddr_in6 *)
			    (void *)ci->client_addr)->sin6_addr, addr,
			    sizeof(addr));
	}
	n = snprintf(line, sizeof(line), "cqrs-httpd: %s %s %s %d %" PRId64
	    "us%s\n", addr, rq->method, rq->path, rq->status, now_us() - rq->t0,
	    toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" :
	    toe == MHD_REQUEST_TERMINATED_TIMEOUT_REACHED ? " (timed out)" :
	    " (aborted)");
	if (n > 0)
		(void)!write(STDERR_FILENO, line, (size_t)n < sizeof(line) ?
		    (size_t)n : sizeof(line) - 1);
	watch_set(rq->w, 0);
	sb_free(&rq->body);
	free(rq);
	*ctx = NULL;
	pthread_mutex_lock(&S.active_mu);
	S.active--;
	S.served++;
	pthread_cond_broadcast(&S.active_cv);
	pthread_mutex_unlock(&S.active_mu);
}

/* Connections come and go: the watchdog's list. */
static void
connection(void *cls, struct MHD_Connection *c, void **sctx,
    enum MHD_ConnectionNotificationCode code)
{
	const union MHD_ConnectionInfo *ci;
	struct watch *w;

	(void)cls;
	if (code == MHD_CONNECTION_NOTIFY_STARTED) {
		ci = MHD_get_connection_info(c,
		    MHD_CONNECTION_INFO_CONNECTION_FD);
		w = xcalloc(1, sizeof(*w));
		w->fd = ci != NULL ? ci->connect_fd : -1;
		w->since = util_mono_ms();
		pthread_mutex_lock(&S.watch_mu);
		w->next = S.watching;
		if (S.watching != NULL)
			S.watching->prev = w;
		S.watching = w;
		pthread_mutex_unlock(&S.watch_mu);
		*sctx = w;
	} else if ((w = *sctx) != NULL) {
		pthread_mutex_lock(&S.watch_mu);
		if (w->prev != NULL)
			w->prev->next = w->next;
		else
			S.watching = w->next;
		if (w->next != NULL)
			w->next->prev = w->prev;
		pthread_mutex_unlock(&S.watch_mu);
		free(w);
		*sctx = NULL;
	}
}

/*
 * Once a second: a connection whose request has not arrived whole within
 * the timeout (a slowloris trickling bytes, which resets libmicrohttpd's
 * idle timer, or a body that stalls) is shut down, whatever it sends.
 */
static void *
watchdog(void *arg)
{
	struct watch *w;
	int64_t now;

	(void)arg;
	for (;;) {
		sleep(1);
		now = util_mono_ms();
		pthread_mutex_lock(&S.watch_mu);
		for (w = S.watching; w != NULL; w = w->next)
			if (!w->busy && w->fd >= 0 &&
			    now - w->since > (int64_t)S.timeout * 1000) {
				shutdown(w->fd, SHUT_RDWR);
				w->fd = -1;
			}
		pthread_mutex_unlock(&S.watch_mu);
	}
	return NULL;
}

static void
logger(void *cls, const char *fmt, va_list ap)
{
	char buf[512];
	size_t n;

	(void)cls;
	vsnprintf(buf, sizeof(buf), fmt, ap);
	n = strcspn(buf, "\n");
	buf[n] = '\0';
	warnx("libmicrohttpd: %s", buf);
}

/* Bind addr:port ([v6]:port for IPv6): the listening socket, or -1. */
static int
listen_on(const char *spec, int *v6, char *shown, size_t len)
{
	struct sockaddr_storage ss;
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t sl;
	char host[128], *end;
	const char *colon;
	long port;
	int fd, one = 1;

	memset(&ss, 0, sizeof(ss));
	if (spec[0] == '[') {
		if ((colon = strstr(spec, "]:")) == NULL ||
		    (size_t)(colon - spec - 1) >= sizeof(host))
			goto bad;
		memcpy(host, spec + 1, (size_t)(colon - spec - 1));
		host[colon - spec - 1] = '\0';
		colon++;
		*v6 = 1;
	} else {
		if ((colon = strrchr(spec, ':')) == NULL ||
		    (size_t)(colon - spec) >= sizeof(host))
			goto bad;
		memcpy(host, spec, (size_t)(colon - spec));
		host[colon - spec] = '\0';
		*v6 = 0;
	}
	port = strtol(colon + 1, &end, 10);
	if (colon[1] == '\0' || *end != '\0' || port < 0 || port > 65535)
		goto bad;
	if (*v6) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			goto bad;
		sl = sizeof(*sin6);
	} else {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host[0] ? host : "127.0.0.1",
		    &sin->sin_addr) != 1)
			goto bad;
		sl = sizeof(*sin);
	}
	if ((fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0) {
		warn("socket");
		return -1;
	}
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, sl) < 0 || listen(fd, 128) < 0) {
		warn("%s", spec);
		close(fd);
		return -1;
	}
	sl = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &sl);
	if (*v6) {
		inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
		snprintf(shown, len, "[%s]:%u", host, ntohs(sin6->sin6_port));
	} else {
		inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
		snprintf(shown, len, "%s:%u", host, ntohs(sin->sin_port));
	}
	return fd;
bad:
	warnx("-l: want ADDR:PORT or [ADDR6]:PORT, numeric");
	return -2;
}

int
main(int argc, char *argv[])
{
	enum { OPT_STATS = 256 };
	static const struct option longopts[] = {
		{ "connections", required_argument, NULL, 'n' },
		{ "dbname", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ "htpasswd", required_argument, NULL, 'H' },
		{ "listen", required_argument, NULL, 'l' },
		{ "password-file", required_argument, NULL, 'P' },
		{ "prefix", required_argument, NULL, 'p' },
		{ "redis", required_argument, NULL, 'r' },
		{ "stats", required_argument, NULL, OPT_STATS },
		{ "timeout", required_argument, NULL, 't' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	const char *listen_spec = "127.0.0.1:8080", *htpasswd = NULL;
	struct MHD_Daemon *d;
	struct slot probe = { 0 };
	struct prg prg;
	struct timespec ts;
	int64_t every = 0;
	pthread_t wd;
	sigset_t set;
	char shown[160], *end;
	long v;
	int ch, fd, v6, sig, conns = 4, i, status = 0;

	util_signals();
	sigemptyset(&set);
	while ((ch = getopt_long(argc, argv, "d:hl:n:P:r:t:V", longopts,
	    NULL)) != -1) {
		switch (ch) {
		case 'd':
			S.conninfo = optarg;
			break;
		case 'H':
			htpasswd = optarg;
			break;
		case 'l':
			listen_spec = optarg;
			break;
		case 'n':
			v = strtol(optarg, &end, 10);
			if (*end != '\0' || v < 1 || v > 64)
				util_usage(synopsis);
			conns = (int)v;
			break;
		case 'P':
			S.redis_pass = optarg;
			break;
		case 'p':
			if ((optarg[0] != '/' && optarg[0] != '\0') ||
			    strlen(optarg) > 100 || (optarg[0] != '\0' &&
			    optarg[strlen(optarg) - 1] == '/'))
				util_usage(synopsis);
			S.prefix = optarg;
			break;
		case 'r':
			S.redis_url = optarg;
			break;
		case OPT_STATS:
			every = prg_option(optarg);
			break;
		case 't':
			v = strtol(optarg, &end, 10);
			if (*end != '\0' || v < 1 || v > 3600)
				util_usage(synopsis);
			S.timeout = (int)v;
			break;
		case 'V':
			util_version();
			return 0;
		case 'h':
			util_help(synopsis, options);
		default:
			util_usage(synopsis);
		}
	}
	if (optind != argc || htpasswd == NULL)
		util_usage(synopsis);

	if (load_users(htpasswd) < 0)
		return EX_CONFIG;
	if (getrandom(S.key, sizeof(S.key), 0) != (ssize_t)sizeof(S.key))
		err(EX_OSERR, "getrandom");
	{
		OSSL_PARAM prm[] = {
			OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
			    (char *)"SHA256", 0),
			OSSL_PARAM_construct_end()
		};

		if ((S.hmac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL ||
		    (S.hmac_keyed = EVP_MAC_CTX_new(S.hmac)) == NULL ||
		    EVP_MAC_init(S.hmac_keyed, S.key, sizeof(S.key), prm) != 1)
			errx(EX_SOFTWARE, "libcrypto: HMAC-SHA-256 unavailable");
	}
	/*
	 * Both servers once at start: a configuration error is better said
	 * now than on each request.  Later failures are answered with 503,
	 * and the connections are made again when the servers come back.
	 */
	if ((probe.rd = rds_connect(S.redis_url, S.redis_pass, &i)) == NULL) {
		if (i != EX_UNAVAILABLE)
			return i;
		warnx("redis: unavailable for now; GET answers 503 until it is");
	}
	if ((probe.pg = db_connect(S.conninfo, 0, &i)) == NULL && i !=
	    EX_UNAVAILABLE) {
		if (probe.rd != NULL)
			redisFree(probe.rd);
		return i;
	}
	if (probe.pg == NULL)
		warnx("database: unavailable for now; POST answers 503 until "
		    "it is");
	pool_init(&S.pg, conns);
	pool_init(&S.rd, conns);
	S.pg.slots[0].pg = probe.pg;
	S.rd.slots[0].rd = probe.rd;
	if (probe.pg != NULL && pg_ready(&S.pg.slots[0]) < 0) {
		status = EX_CONFIG;
		goto out;
	}

	if ((fd = listen_on(listen_spec, &v6, shown, sizeof(shown))) < 0) {
		status = fd == -2 ? EX_USAGE : EX_UNAVAILABLE;
		goto out;
	}
	/* The server's threads leave the signals to main(). */
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION |
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL | MHD_USE_ITC |
	    MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0), 0, NULL, NULL,
	    handle, NULL,
	    MHD_OPTION_EXTERNAL_LOGGER, logger, NULL,
	    MHD_OPTION_LISTEN_SOCKET, fd,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned int)MAX_CONNS,
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned int)S.timeout,
	    MHD_OPTION_NOTIFY_COMPLETED, completed, NULL,
	    MHD_OPTION_NOTIFY_CONNECTION, connection, NULL,
	    MHD_OPTION_END);
	if (d == NULL) {
		warnx("libmicrohttpd: cannot start on %s", shown);
		close(fd);
		status = EX_OSERR;
		goto out;
	}
	pthread_create(&wd, NULL, watchdog, NULL);
	pthread_detach(wd);
	fprintf(stderr, "cqrs-httpd: listening on http://%s%s\n", shown,
	    S.prefix);

	prg_init(&prg, every);
	prg_counter(&prg, "requests", &seen_served);
	prg_gauge(&prg, "in_flight", in_flight, NULL);
	for (;;) {
		if ((i = prg_timeout(&prg, -1)) < 0) {
			if (sigwait(&set, &sig) != 0)
				continue;
		} else {
			ts.tv_sec = i / 1000;
			ts.tv_nsec = (long)(i % 1000) * 1000000;
			if ((sig = sigtimedwait(&set, NULL, &ts)) < 0) {
				progress(&prg);		/* --stats */
				continue;
			}
		}
		if (sig == SIGUSR1) {
			util_progress = 1;
			progress(&prg);
			continue;
		}
		util_stop = sig;
		break;
	}
	/* Stop accepting; let the requests in flight finish, for a while. */
	fd = MHD_quiesce_daemon(d);
	if (fd >= 0)
		close(fd);
	{
		struct timespec dl;

		clock_gettime(CLOCK_REALTIME, &dl);
		dl.tv_sec += 2 * S.timeout;
		pthread_mutex_lock(&S.active_mu);
		while (S.active > 0 && pthread_cond_timedwait(&S.active_cv,
		    &S.active_mu, &dl) != ETIMEDOUT)
			;
		if (S.active > 0)
			warnx("stopping with %d requests unfinished", S.active);
		pthread_mutex_unlock(&S.active_mu);
	}
	MHD_stop_daemon(d);
	fprintf(stderr, "cqrs-httpd: stopped after %" PRIu64 " requests\n",
	    S.served);
out:
	pool_free(&S.pg);
	pool_free(&S.rd);
	for (i = 0; i < S.nusers; i++) {
		free(S.users[i].name);
		explicit_bzero(S.users[i].hash, strlen(S.users[i].hash));
		free(S.users[i].hash);
	}
	explicit_bzero(S.key, sizeof(S.key));
	EVP_MAC_CTX_free(S.hmac_keyed);
	EVP_MAC_free(S.hmac);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	return util_exit(status);
}
