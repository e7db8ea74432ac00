/* kfk: Kafka through librdkafka: kafka:// names and properties; the producer behind pub_kfk_open() and the consumer group behind sub_kfk_open(). */
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sysexits.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "ack.h"
#include "evt.h"
#include "kfk.h"
#include "ndj.h"
#include "pub.h"
#include "sub.h"
#include "util.h"

#define MAX_SECRETS	16
#define STOP_WAIT_MS	10000	/* after a signal, deliveries waited for */
#define COMMIT_EVERY_MS	1000
#define LAG_EVERY_MS	1000
#define POLL_BATCH	1000	/* messages handed out by one poll, at most */
#define ONCE_DOWN_MS	30000	/* --once: brokers unreachable this long */

/* What every handle keeps for its messages: secrets to hide, and state. */
struct klog {
	char		*secret[MAX_SECRETS];
	size_t		 nsecret;
	const char	*name;		/* the kafka:// operand */
	int		 verbose;
	int		 down;		/* all brokers down was reported */
	int64_t		 down_since;	/* monotonic ms, or 0 */
	int		 fatal;		/* an exit code once fatal */
};

/* Replace every secret in s by "***". */
static void
scrub(const struct klog *l, char *s)
{
	size_t i, n;
	char *p;

	for (i = 0; i < l->nsecret; i++) {
		n = strlen(l->secret[i]);
		if (n == 0)
			continue;
		while ((p = strstr(s, l->secret[i])) != NULL) {
			memmove(p + 3, p + n, strlen(p + n) + 1);
			memcpy(p, "***", 3);
		}
	}
}

static void
klog_free(struct klog *l)
{
	size_t i;

	for (i = 0; i < l->nsecret; i++) {
		explicit_bzero(l->secret[i], strlen(l->secret[i]));
		free(l->secret[i]);
	}
	l->nsecret = 0;
}

/*
 * Split kafka://HOST:PORT[,HOST:PORT...]/TOPIC into its brokers and topic
 * (allocated).  0, or -1 when it is not such a name.
 */
int
kfk_url_parse(const char *url, char **brokers, char **topic)
{
	const char *b, *t, *p, *h;
	size_t n;

	if (strncmp(url, "kafka://", 8) != 0)
		return -1;
	b = url + 8;
	if ((t = strchr(b, '/')) == NULL || t == b)
		return -1;
	/* Each broker: a host (or [v6]) and a port. */
	for (h = b; h < t; h = p + 1) {
		for (p = h; p < t && *p != ','; p++)
			;
		const char *c = p;

		while (c > h && c[-1] >= '0' && c[-1] <= '9')
			c--;
		if (c == p || c - h < 2 || c[-1] != ':' || p - c > 5 ||
		    atoi(c) < 1 || atoi(c) > 65535)
			return -1;
		for (c = h; c < p; c++)
			if (*c <= ' ' || *c > '~' || *c == '@' || *c == '?' ||
			    *c == '#')
				return -1;
	}
	t++;
	n = strlen(t);
	if (n == 0 || n > 249)
		return -1;
	for (p = t; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' ||
		    *p == '-'))
			return -1;
	if (strcmp(t, ".") == 0 || strcmp(t, "..") == 0)
		return -1;
	*brokers = xmalloc((size_t)(t - 1 - b) + 1);
	memcpy(*brokers, b, (size_t)(t - 1 - b));
	(*brokers)[t - 1 - b] = '\0';
	*topic = xstrdup(t);
	return 0;
}

/* A property whose value must not be shown. */
static int
is_secret(const char *key)
{
	return strstr(key, "password") != NULL ||
	    strstr(key, "secret") != NULL || strcmp(key, "ssl.key.pem") == 0 ||
	    strcmp(key, "sasl.oauthbearer.config") == 0;
}

/* Properties that the commands set themselves, and the values they need. */
struct fixed {
	const char	*key;
	const char	*want;		/* NULL: never from -X or -F */
	const char	*alt;		/* another value that means the same */
	const char	*use;		/* what to use instead */
};

/* Defaults that -X and -F may change. */
static const char *const pub_defaults[] = {
	"partitioner", "murmur2_random",	/* where Java clients put a key */
	NULL
};

static const char *const sub_defaults[] = {
	"auto.offset.reset", "earliest",	/* a new group reads it all */
	"partition.assignment.strategy", "cooperative-sticky",
	NULL
};

static const struct fixed pub_fixed[] = {
	{ "bootstrap.servers", NULL, NULL, "kafka://HOST:PORT/TOPIC" },
	{ "metadata.broker.list", NULL, NULL, "kafka://HOST:PORT/TOPIC" },
	{ "enable.idempotence", "true", NULL, NULL },
	{ "acks", "all", "-1", NULL },
	{ "request.required.acks", "all", "-1", NULL },
	{ "transactional.id", NULL, NULL, NULL },
	{ NULL, NULL, NULL, NULL }
};

static const struct fixed sub_fixed[] = {
	{ "bootstrap.servers", NULL, NULL, "kafka://HOST:PORT/TOPIC" },
	{ "metadata.broker.list", NULL, NULL, "kafka://HOST:PORT/TOPIC" },
	{ "group.id", NULL, NULL, "-g GROUP" },
	{ "enable.auto.commit", "false", NULL, NULL },
	{ "enable.auto.offset.store", "false", NULL, NULL },
	{ "enable.partition.eof", "true", NULL, NULL },
	{ NULL, NULL, NULL, NULL }
};

/*
 * Set one property given at where (-X, or FILE:LINE).  0, or an exit
 * code (reported, the value never shown).
 */
static int
set_prop(rd_kafka_conf_t *conf, struct klog *l, const struct fixed *fx,
    const char *where, char *key, char *val)
{
	char errstr[512];
	const struct fixed *f;

	for (f = fx; f->key != NULL; f++) {
		if (strcmp(f->key, key) != 0)
			continue;
		if (f->want == NULL) {
			warnx("%s: %s: set by %s%s%s", where, key, program_invocation_short_name,
			    f->use ? ": use " : "", f->use ? f->use : "");
			return EX_USAGE;
		}
		if (strcmp(val, f->want) != 0 && (f->alt == NULL ||
		    strcmp(val, f->alt) != 0)) {
			warnx("%s: %s: %s needs %s", where, key, program_invocation_short_name,
			    f->want);
			return EX_USAGE;
		}
	}
	if (is_secret(key) && l->nsecret < MAX_SECRETS && *val != '\0')
		l->secret[l->nsecret++] = xstrdup(val);
	if (rd_kafka_conf_set(conf, key, val, errstr, sizeof(errstr)) !=
	    RD_KAFKA_CONF_OK) {
		scrub(l, errstr);
		warnx("%s: %s", where, errstr);
		return EX_CONFIG;
	}
	return 0;
}

/* Split "key=value" in place, trimming blanks around the key.  -1 if no '='. */
static int
split_prop(char *s, char **key, char **val)
{
	char *eq = strchr(s, '='), *e;

	if (eq == NULL)
		return -1;
	*eq = '\0';
	while (*s == ' ' || *s == '\t')
		s++;
	for (e = eq; e > s && (e[-1] == ' ' || e[-1] == '\t'); e--)
		e[-1] = '\0';
	if (*s == '\0')
		return -1;
	*key = s;
	*val = eq + 1;
	return 0;
}

/* A file of key=value lines (# comments, blank lines).  0, or an exit code. */
static int
read_props(rd_kafka_conf_t *conf, struct klog *l, const struct fixed *fx,
    const char *path)
{
	char where[PATH_MAX + 32], *line = NULL, *key, *val;
	size_t cap = 0, n, lineno = 0;
	struct stat st;
	ssize_t len;
	FILE *fp;
	int rc = 0, secret = 0;

	if ((fp = fopen(path, "re")) == NULL) {
		warn("-F %s", path);
		return errno == ENOENT ? EX_NOINPUT : EX_NOPERM;
	}
	while ((len = getline(&line, &cap, fp)) >= 0) {
		lineno++;
		n = (size_t)len;
		while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r'))
			line[--n] = '\0';
		for (key = line; *key == ' ' || *key == '\t'; key++)
			;
		if (*key == '\0' || *key == '#')
			continue;
		snprintf(where, sizeof(where), "%s:%zu", path, lineno);
		if (split_prop(key, &key, &val) < 0) {
			warnx("%s: not key=value", where);
			rc = EX_CONFIG;
			break;
		}
		secret |= is_secret(key);
		if ((rc = set_prop(conf, l, fx, where, key, val)) != 0) {
			if (rc == EX_USAGE)
				rc = EX_CONFIG;
			break;
		}
	}
	if (line != NULL)
		explicit_bzero(line, cap);
	free(line);
	if (rc == 0 && ferror(fp)) {
		warn("-F %s", path);
		rc = EX_IOERR;
	}
	if (rc == 0 && secret && fstat(fileno(fp), &st) == 0 &&
	    (st.st_mode & 077) != 0)
		warnx("%s: holds a secret and other users may read it: "
		    "chmod 600 it", path);
	fclose(fp);
	return rc;
}

/* -F files and -X properties, in the order given.  0, or an exit code. */
static int
apply_props(rd_kafka_conf_t *conf, struct klog *l, const struct fixed *fx,
    const struct kfk_prop *p, size_t n)
{
	char *s, *key, *val, where[300];
	size_t i;
	int rc;

	for (i = 0; i < n; i++) {
		if (p[i].file) {
			if ((rc = read_props(conf, l, fx, p[i].arg)) != 0)
				return rc;
			continue;
		}
		s = xstrdup(p[i].arg);
		if (split_prop(s, &key, &val) < 0) {
			warnx("-X: want key=value");
			free(s);
			return EX_USAGE;
		}
		snprintf(where, sizeof(where), "-X %s", key);
		if (is_secret(key))
			warnx("%s: a secret on the command line is visible to "
			    "other users (ps): give it with -F FILE, mode 0600",
			    where);
		rc = set_prop(conf, l, fx, where, key, val);
		explicit_bzero(s, strlen(p[i].arg));
		free(s);
		if (rc != 0)
			return rc;
	}
	return 0;
}

static int
set_or_die(rd_kafka_conf_t *conf, const char *key, const char *val)
{
	char errstr[512];

	if (rd_kafka_conf_set(conf, key, val, errstr, sizeof(errstr)) ==
	    RD_KAFKA_CONF_OK)
		return 0;
	warnx("%s: %s", key, errstr);
	return EX_SOFTWARE;
}

/* The exit code for an error about the cluster, not about one message. */
static int
err_code(rd_kafka_resp_err_t e)
{
	switch (e) {
	case RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_GROUP_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_CLUSTER_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_TRANSACTIONAL_ID_AUTHORIZATION_FAILED:
	case RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED:
	case RD_KAFKA_RESP_ERR__AUTHENTICATION:
	case RD_KAFKA_RESP_ERR__SSL:
		return EX_NOPERM;
	case RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART:
	case RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC:
	case RD_KAFKA_RESP_ERR__UNKNOWN_PARTITION:
	case RD_KAFKA_RESP_ERR_TOPIC_EXCEPTION:
	case RD_KAFKA_RESP_ERR__INVALID_ARG:
		return EX_CONFIG;
	case RD_KAFKA_RESP_ERR__MSG_TIMED_OUT:
	case RD_KAFKA_RESP_ERR__TIMED_OUT:
	case RD_KAFKA_RESP_ERR__TRANSPORT:
	case RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN:
	case RD_KAFKA_RESP_ERR__RESOLVE:
	case RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT:
	case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS:
	case RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND:
	case RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE:
	case RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION:
	case RD_KAFKA_RESP_ERR_BROKER_NOT_AVAILABLE:
		return EX_UNAVAILABLE;
	default:
		return EX_PROTOCOL;
	}
}

/* Errors that are about one message: the sender's fault. */
static int
msg_fault(rd_kafka_resp_err_t e)
{
	switch (e) {
	case RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE:
	case RD_KAFKA_RESP_ERR_INVALID_MSG_SIZE:
	case RD_KAFKA_RESP_ERR_INVALID_MSG:
	case RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE:
	case RD_KAFKA_RESP_ERR_INVALID_RECORD:
	case RD_KAFKA_RESP_ERR_POLICY_VIOLATION:
		return 1;
	default:
		return 0;
	}
}

/* Logs come through the handle's queue, so in the thread that polls. */
static void
log_cb(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	struct klog *l = rd_kafka_opaque(rk);
	char msg[1024];

	if (l == NULL || !l->verbose)
		return;
	snprintf(msg, sizeof(msg), "%s", buf);
	scrub(l, msg);
	warnx("%s: librdkafka: %d %s: %s", l->name, level, fac, msg);
}

/*
 * Errors of the client as a whole.  Most are transient and librdkafka
 * retries them: reported when they begin (all brokers down) or with -v;
 * authentication and fatal errors end the run.
 */
static void
error_cb(rd_kafka_t *rk, int e, const char *reason, void *opaque)
{
	struct klog *l = opaque;
	char msg[1024], fmsg[512];
	rd_kafka_resp_err_t fe;

	snprintf(msg, sizeof(msg), "%s", reason);
	scrub(l, msg);
	if (e == RD_KAFKA_RESP_ERR__FATAL) {
		fe = rd_kafka_fatal_error(rk, fmsg, sizeof(fmsg));
		scrub(l, fmsg);
		warnx("%s: fatal: %s: %s", l->name, rd_kafka_err2name(fe), fmsg);
		if (l->fatal == 0)
			l->fatal = err_code(fe) == EX_NOPERM ? EX_NOPERM :
			    EX_PROTOCOL;
		return;
	}
	if (e == RD_KAFKA_RESP_ERR__AUTHENTICATION ||
	    e == RD_KAFKA_RESP_ERR_SASL_AUTHENTICATION_FAILED) {
		warnx("%s: %s", l->name, msg);
		if (l->fatal == 0)
			l->fatal = EX_NOPERM;
		return;
	}
	if (e == RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
		if (!l->down)
			warnx("%s: all brokers are down (%s): trying again",
			    l->name, msg);
		l->down = 1;
		if (l->down_since == 0)
			l->down_since = util_mono_ms();
		return;
	}
	if (l->verbose)
		warnx("%s: %s", l->name, msg);
}

/*
 * A configuration with our defaults, the user's properties and the ones
 * we need.  NULL after reporting why (*rc the exit code).
 */
static rd_kafka_conf_t *
make_conf(struct klog *l, const char *const *defaults, const struct fixed *fx,
    const struct kfk_prop *p, size_t n, int *rc)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();

	*rc = 0;
	for (; *defaults != NULL && *rc == 0; defaults += 2)
		*rc = set_or_die(conf, defaults[0], defaults[1]);
	if (*rc != 0 || (*rc = set_or_die(conf, "client.id", program_invocation_short_name)) ||
	    (*rc = set_or_die(conf, "log.queue", "true")) != 0 ||
	    (*rc = apply_props(conf, l, fx, p, n)) != 0) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_conf_set_log_cb(conf, log_cb);
	rd_kafka_conf_set_error_cb(conf, error_cb);
	return conf;
}

/* Create the handle (conf is taken).  NULL after reporting why. */
static rd_kafka_t *
make_handle(struct klog *l, rd_kafka_type_t type, rd_kafka_conf_t *conf)
{
	char errstr[512];
	rd_kafka_t *rk;

	if ((rk = rd_kafka_new(type, conf, errstr, sizeof(errstr))) == NULL) {
		scrub(l, errstr);
		warnx("%s: %s", l->name, errstr);
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_set_log_queue(rk, NULL);
	return rk;
}

/*
 * The producer.  Each send produces the messages not yet done, keyed by
 * client, with the idempotent producer's ordering, and returns only when
 * every delivery report is back.
 */

struct kpub {
	struct klog	 log;
	rd_kafka_t	*rk;
	rd_kafka_topic_t *rkt;
	char		*brokers, *topic;
	size_t		 outstanding;
	int		 closing;
	struct pub_msg	*bad;		/* the lowest failed message, or NULL */
	int		 badrc;		/* EVT_BAD or an exit code */
	char		 badwhy[300];
	unsigned long	 nproduced, ndelivered;
};

/*
 * The message m failed: the lowest failure of a batch is the one
 * reported (messages are elements of one array, in order).
 */
static void
pub_failed(struct kpub *k, struct pub_msg *m, rd_kafka_resp_err_t e,
    const char *what)
{
	if (k->bad != NULL && m >= k->bad)
		return;
	k->bad = m;
	k->badrc = msg_fault(e) ? EVT_BAD : err_code(e);
	snprintf(k->badwhy, sizeof(k->badwhy), "Kafka %s it: %s (%s)", what,
	    rd_kafka_err2str(e), rd_kafka_err2name(e));
	scrub(&k->log, k->badwhy);
}

static void
dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *rm, void *opaque)
{
	struct kpub *k = opaque;
	struct pub_msg *m = rm->_private;

	(void)rk;
	if (k->outstanding > 0)
		k->outstanding--;
	if (k->closing || m == NULL)
		return;
	m->sent = 0;
	if (rm->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		m->done = 1;
		k->ndelivered++;
		k->log.down = 0;
		k->log.down_since = 0;
		return;
	}
	if (rm->err == RD_KAFKA_RESP_ERR__PURGE_QUEUE ||
	    rm->err == RD_KAFKA_RESP_ERR__PURGE_INFLIGHT)
		return;		/* stopping: not delivered, not a failure */
	pub_failed(k, m, rm->err, "did not take");
}

/* Produce m; copied when its body may move before the report.  0 or the error. */
static rd_kafka_resp_err_t
produce(struct kpub *k, struct pub_msg *m, int copy)
{
	rd_kafka_headers_t *h = rd_kafka_headers_new(5);
	rd_kafka_resp_err_t e;
	char num[24];
	int keyed = m->group != NULL && strcmp(m->group, "-") != 0;

	if (m->table != NULL && *m->table != '\0')
		rd_kafka_header_add(h, "table", -1, m->table, -1);
	if (m->op != NULL && *m->op != '\0')
		rd_kafka_header_add(h, "op", -1, m->op, -1);
	if (m->src != NULL && *m->src != '\0') {
		snprintf(num, sizeof(num), "%" PRIu64, m->lsn);
		rd_kafka_header_add(h, "lsn", -1, num, -1);
		snprintf(num, sizeof(num), "%" PRIu64, m->seq);
		rd_kafka_header_add(h, "seq", -1, num, -1);
		rd_kafka_header_add(h, "src", -1, m->src, -1);
	}
	e = rd_kafka_producev(k->rk, RD_KAFKA_V_RKT(k->rkt),
	    RD_KAFKA_V_PARTITION(RD_KAFKA_PARTITION_UA),
	    RD_KAFKA_V_MSGFLAGS(copy ? RD_KAFKA_MSG_F_COPY : 0),
	    RD_KAFKA_V_VALUE((void *)(uintptr_t)m->body, m->len),
	    RD_KAFKA_V_KEY(keyed ? m->group : NULL, keyed ? strlen(m->group) :
	    0), RD_KAFKA_V_HEADERS(h),
	    RD_KAFKA_V_OPAQUE(m), RD_KAFKA_V_END);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
		rd_kafka_headers_destroy(h);
	else {
		m->sent = 1;
		k->outstanding++;
		k->nproduced++;
	}
	return e;
}

/*
 * While the batch is read: produce m now, a copy, if librdkafka takes it
 * at once; anything else is left to the send.
 */
static void
kpub_start(void *ctx, struct pub_msg *m)
{
	struct kpub *k = ctx;

	if (k->log.fatal || util_stop)
		return;
	(void)produce(k, m, 1);
	if ((k->nproduced & 255) == 0)
		rd_kafka_poll(k->rk, 0);
}

static int
kpub_send(void *ctx, struct pub_msg *m, size_t n, size_t *failed,
    char *why, size_t wlen)
{
	struct kpub *k = ctx;
	rd_kafka_resp_err_t e;
	int64_t stop_at = 0;
	size_t i, cut = n, bad;
	int purged = 0, rc;

	for (i = 0; i < n && !util_stop && !k->log.fatal; i++) {
		if (m[i].done || m[i].sent)
			continue;
		while ((e = produce(k, &m[i], 0)) ==
		    RD_KAFKA_RESP_ERR__QUEUE_FULL && !util_stop &&
		    !k->log.fatal)
			rd_kafka_poll(k->rk, 100);
		if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL)
			break;
		if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
			pub_failed(k, &m[i], e, "refused");
			break;
		}
		if ((i & 255) == 255)
			rd_kafka_poll(k->rk, 0);
	}
	cut = i;
	/* Every delivery report back: what is done is then known. */
	while (k->outstanding > 0) {
		rd_kafka_poll(k->rk, 100);
		if ((util_stop || k->log.fatal) && stop_at == 0)
			stop_at = util_mono_ms() + (k->log.fatal ? 0 :
			    STOP_WAIT_MS);
		if (stop_at != 0 && !purged && util_mono_ms() >= stop_at) {
			rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE |
			    RD_KAFKA_PURGE_F_INFLIGHT);
			purged = 1;
		}
	}
	bad = k->bad != NULL && k->bad >= m && k->bad < m + n ?
	    (size_t)(k->bad - m) : n;
	rc = k->badrc;
	k->bad = NULL;
	k->badrc = 0;
	if (bad < n && (rc == EVT_BAD || !k->log.fatal)) {
		if (rc == EVT_BAD) {
			*failed = bad;
			snprintf(why, wlen, "%s", k->badwhy);
			return EVT_BAD;
		}
		warnx("stdin:%lu: %s: not published: %s", m[bad].lineno,
		    k->log.name, k->badwhy);
		return rc;
	}
	for (i = 0; i < n && m[i].done; i++)
		;
	if (k->log.fatal) {
		if (i < n)
			warnx("stdin:%lu: %s: not published", m[i].lineno,
			    k->log.name);
		return k->log.fatal;
	}
	if (i < n) {
		if (util_stop || cut < n) {
			*failed = i;
			return EVT_STOPPED;
		}
		warnx("stdin:%lu: %s: no delivery report", m[i].lineno,
		    k->log.name);
		return EX_SOFTWARE;
	}
	return 0;
}

static void
kpub_stats(void *ctx, unsigned long *nreq, unsigned long *nretry)
{
	struct kpub *k = ctx;

	*nreq = k->nproduced;
	*nretry = k->nproduced - k->ndelivered;
}

static void
kpub_close(void *ctx)
{
	struct kpub *k = ctx;

	k->closing = 1;
	if (k->rk != NULL) {
		rd_kafka_purge(k->rk, RD_KAFKA_PURGE_F_QUEUE |
		    RD_KAFKA_PURGE_F_INFLIGHT);
		rd_kafka_poll(k->rk, 0);
		if (k->rkt != NULL)
			rd_kafka_topic_destroy(k->rkt);
		rd_kafka_destroy(k->rk);
	}
	klog_free(&k->log);
	free(k->brokers);
	free(k->topic);
	free(k);
}

static const struct pub_ops kfk_pub_ops = { "kafka", kpub_send, kpub_stats,
    kpub_close, kpub_start };

int
pub_kfk_open(struct pub *p, const char *dest, const struct pub_opts *o)
{
	struct kpub *k = xcalloc(1, sizeof(*k));
	rd_kafka_conf_t *conf;
	int rc;

	k->log.name = dest;
	k->log.verbose = o->verbose;
	if (kfk_url_parse(dest, &k->brokers, &k->topic) < 0) {
		warnx("%s: not kafka://HOST:PORT[,HOST:PORT...]/TOPIC", dest);
		free(k);
		return EX_USAGE;
	}
	if ((conf = make_conf(&k->log, pub_defaults, pub_fixed, o->props,
	    o->nprops, &rc)) == NULL)
		goto fail;
	if ((rc = set_or_die(conf, "bootstrap.servers", k->brokers)) != 0 ||
	    (rc = set_or_die(conf, "enable.idempotence", "true")) != 0 ||
	    (rc = set_or_die(conf, "acks", "all")) != 0) {
		rd_kafka_conf_destroy(conf);
		goto fail;
	}
	rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
	rd_kafka_conf_set_opaque(conf, k);
	/* The callbacks take k as a klog: it is the first member. */
	if ((k->rk = make_handle(&k->log, RD_KAFKA_PRODUCER, conf)) == NULL) {
		rc = EX_CONFIG;
		goto fail;
	}
	if ((k->rkt = rd_kafka_topic_new(k->rk, k->topic, NULL)) == NULL) {
		warnx("%s: %s", dest, rd_kafka_err2str(rd_kafka_last_error()));
		rc = EX_CONFIG;
		goto fail;
	}
	p->ops = &kfk_pub_ops;
	p->ctx = k;
	p->max_len = 1000000;
	p->ordered = 1;
	return 0;
fail:
	kpub_close(k);
	return rc;
}

/*
 * The consumer group.  Messages are handed out in each partition's order;
 * a partition's offset is committed up to the first message not done.
 * A revoked partition's messages are marked gone: the command drops the
 * lines it has not written, and their done() commits nothing.
 */

struct kmsg {
	struct sub_msg	 m;		/* first: a sub_msg is a kmsg */
	int		 done;
	struct kpart	*p;		/* NULL once gone */
	struct kmsg	*pnext;		/* in the partition, in offset order */
	struct kmsg	*prev, *next;	/* every message held */
};

struct kpart {
	int		 assigned;
	int		 eof;
	int64_t		 pos;		/* next offset to hand out, or -1 */
	int64_t		 commit;	/* offset to commit, or -1 */
	int64_t		 committed;	/* offset committed, or -1 */
	struct kmsg	*head, *tail;
};

struct ksub {
	struct klog	 log;		/* first: the callbacks' opaque */
	struct sub	*s;
	rd_kafka_t	*rk;
	rd_kafka_queue_t *q;
	char		*brokers, *topic, *group;
	struct sub_opts	 o;
	struct kpart	*part;
	size_t		 npart;
	struct kmsg	*all;
	size_t		 nout;		/* handed out, not yet done */
	int		 joined;	/* an assignment came */
	int		 more;		/* the queue may hold more */
	int		 stopping;
	int64_t		 last_commit, last_lag;
	struct sub_msg	**ret;
	size_t		 nret, capret;
	unsigned long	 nreceived, ncommitted;
};

static struct kpart *
part_get(struct ksub *k, int32_t id)
{
	size_t i;

	if (id < 0 || id > 100000)
		return NULL;
	if ((size_t)id >= k->npart) {
		k->part = xrealloc(k->part, ((size_t)id + 1) * sizeof(*k->part));
		for (i = k->npart; i <= (size_t)id; i++) {
			memset(&k->part[i], 0, sizeof(*k->part));
			k->part[i].pos = k->part[i].commit = -1;
			k->part[i].committed = -1;
		}
		k->npart = (size_t)id + 1;
	}
	return &k->part[id];
}

static void
kmsg_free(struct ksub *k, struct kmsg *x)
{
	if (x->prev != NULL)
		x->prev->next = x->next;
	else
		k->all = x->next;
	if (x->next != NULL)
		x->next->prev = x->prev;
	if (!x->done)
		k->nout--;
	free(x->m.id);
	free(x->m.body);
	free(x->m.key);
	free(x->m.table);
	free(x);
}

/* Commit the partitions of list (all assigned when NULL) up to what is done. */
static void
commit(struct ksub *k, const rd_kafka_topic_partition_list_t *only, int sync)
{
	rd_kafka_topic_partition_list_t *l;
	rd_kafka_resp_err_t e;
	struct kpart *p;
	size_t i;
	int j;

	l = rd_kafka_topic_partition_list_new(4);
	for (i = 0; i < k->npart; i++) {
		p = &k->part[i];
		if (!p->assigned || p->commit < 0 || p->commit <= p->committed)
			continue;
		if (only != NULL) {
			for (j = 0; j < only->cnt; j++)
				if (only->elems[j].partition == (int32_t)i)
					break;
			if (j == only->cnt)
				continue;
		}
		rd_kafka_topic_partition_list_add(l, k->topic, (int32_t)i)->
		    offset = p->commit;
	}
	if (l->cnt > 0) {
		e = rd_kafka_commit(k->rk, l, !sync);
		if (e != RD_KAFKA_RESP_ERR_NO_ERROR &&
		    e != RD_KAFKA_RESP_ERR__NO_OFFSET)
			warnx("%s: commit: %s (the messages will come again)",
			    k->log.name, rd_kafka_err2str(e));
		else if (sync)
			for (j = 0; j < l->cnt; j++)
				if (l->elems[j].err == 0)
					k->part[l->elems[j].partition].committed =
					    l->elems[j].offset;
	}
	rd_kafka_topic_partition_list_destroy(l);
	k->last_commit = util_mono_ms();
}

static void
commit_cb(rd_kafka_t *rk, rd_kafka_resp_err_t e,
    rd_kafka_topic_partition_list_t *l, void *opaque)
{
	struct ksub *k = opaque;
	struct kpart *p;
	int j;

	(void)rk;
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
		if (e != RD_KAFKA_RESP_ERR__NO_OFFSET && k->log.verbose)
			warnx("%s: commit: %s", k->log.name, rd_kafka_err2str(e));
		return;
	}
	for (j = 0; j < l->cnt; j++)
		if (l->elems[j].err == 0 && strcmp(l->elems[j].topic,
		    k->topic) == 0 && (p = part_get(k, l->elems[j].partition))
		    != NULL && l->elems[j].offset > p->committed)
			p->committed = l->elems[j].offset;
}

static void
list_parts(struct klog *l, const char *what,
    const rd_kafka_topic_partition_list_t *parts)
{
	char buf[512];
	size_t off = 0;
	int j;

	if (!l->verbose)
		return;
	buf[0] = '\0';
	for (j = 0; j < parts->cnt && off < sizeof(buf) - 16; j++)
		off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%s%d",
		    j ? "," : "", (int)parts->elems[j].partition);
	warnx("%s: %s partitions %s", l->name, what, buf);
}

static void
rebalance_cb(rd_kafka_t *rk, rd_kafka_resp_err_t e,
    rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	struct ksub *k = opaque;
	rd_kafka_error_t *err = NULL;
	struct kmsg *x, *nx;
	struct kpart *p;
	int coop = strcmp(rd_kafka_rebalance_protocol(rk), "COOPERATIVE") == 0;
	int j, lost;

	if (e == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		list_parts(&k->log, "assigned", parts);
		for (j = 0; j < parts->cnt; j++)
			if ((p = part_get(k, parts->elems[j].partition)) !=
			    NULL) {
				p->assigned = 1;
				p->eof = 0;
				p->pos = p->commit = p->committed = -1;
			}
		k->joined = 1;
		if (coop)
			err = rd_kafka_incremental_assign(rk, parts);
		else
			rd_kafka_assign(rk, parts);
	} else if (e == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
		list_parts(&k->log, "revoked", parts);
		lost = rd_kafka_assignment_lost(rk);
		/* What every consumer has acknowledged is committed... */
		if (!lost) {
			if (k->o.settle != NULL)
				k->o.settle(k->o.settle_arg);
			commit(k, parts, 1);
		}
		/* ...and the rest comes again to the partition's new owner. */
		for (j = 0; j < parts->cnt; j++) {
			if ((p = part_get(k, parts->elems[j].partition)) == NULL)
				continue;
			for (x = p->head; x != NULL; x = nx) {
				nx = x->pnext;
				x->p = NULL;
				x->pnext = NULL;
				x->m.gone = 1;
			}
			p->head = p->tail = NULL;
			p->assigned = p->eof = 0;
			p->pos = p->commit = p->committed = -1;
		}
		k->s->revokes++;
		if (coop)
			err = rd_kafka_incremental_unassign(rk, parts);
		else
			rd_kafka_assign(rk, NULL);
	} else {
		warnx("%s: rebalance: %s", k->log.name, rd_kafka_err2str(e));
		rd_kafka_assign(rk, NULL);
	}
	if (err != NULL) {
		warnx("%s: rebalance: %s", k->log.name,
		    rd_kafka_error_string(err));
		rd_kafka_error_destroy(err);
	}
}

/* One message or event from the queue.  0, or an exit code. */
static int
take_msg(struct ksub *k, rd_kafka_message_t *rm)
{
	const void *v;
	size_t vlen, tl = strlen(k->topic) + 48;
	rd_kafka_headers_t *h;
	struct kmsg *x;
	struct kpart *p;

	k->log.down = 0;
	k->log.down_since = 0;
	if (rm->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
		if ((p = part_get(k, rm->partition)) != NULL && p->assigned) {
			p->eof = 1;
			if (p->pos < rm->offset)
				p->pos = rm->offset;
			if (p->head == NULL && p->pos > p->commit)
				p->commit = p->pos;
		}
		return 0;
	}
	if (rm->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
		char msg[512];
		int rc = err_code(rm->err);

		snprintf(msg, sizeof(msg), "%s", rd_kafka_message_errstr(rm));
		scrub(&k->log, msg);
		if (rc == EX_UNAVAILABLE || rm->err == RD_KAFKA_RESP_ERR__FATAL) {
			if (k->log.verbose)
				warnx("%s: %s", k->log.name, msg);
			return 0;
		}
		warnx("%s: %s", k->log.name, msg);
		return rc;
	}
	if ((p = part_get(k, rm->partition)) == NULL || !p->assigned)
		return 0;	/* revoked meanwhile: it comes again elsewhere */
	x = xcalloc(1, sizeof(*x));
	x->m.id = xmalloc(tl);
	snprintf(x->m.id, tl, "%s/%d@%" PRId64, k->topic, (int)rm->partition,
	    rm->offset);
	if (rm->payload != NULL && rm->len > 0) {
		x->m.body = xmalloc(rm->len + 1);
		memcpy(x->m.body, rm->payload, rm->len);
		x->m.body[rm->len] = '\0';
		x->m.len = rm->len;
	}
	if (rm->key != NULL) {
		x->m.key = xmalloc(rm->key_len + 1);
		memcpy(x->m.key, rm->key, rm->key_len);
		x->m.key[rm->key_len] = '\0';
		x->m.klen = rm->key_len;
	}
	if (rd_kafka_message_headers(rm, &h) == RD_KAFKA_RESP_ERR_NO_ERROR &&
	    rd_kafka_header_get_last(h, "table", &v, &vlen) ==
	    RD_KAFKA_RESP_ERR_NO_ERROR && v != NULL && vlen > 0 && vlen < 160 &&
	    memchr(v, '\0', vlen) == NULL) {
		x->m.table = xmalloc(vlen + 1);
		memcpy(x->m.table, v, vlen);
		x->m.table[vlen] = '\0';
	}
	x->m.partition = rm->partition;
	x->m.offset = rm->offset;
	x->p = p;
	if (p->tail != NULL)
		p->tail->pnext = x;
	else
		p->head = x;
	p->tail = x;
	p->eof = 0;
	p->pos = rm->offset + 1;
	x->next = k->all;
	if (k->all != NULL)
		k->all->prev = x;
	k->all = x;
	k->nout++;
	k->nreceived++;
	k->log.down = 0;
	if (k->nret == k->capret) {
		k->capret = k->capret ? k->capret * 2 : 64;
		k->ret = xrealloc(k->ret, k->capret * sizeof(*k->ret));
	}
	k->ret[k->nret++] = &x->m;
	return 0;
}

/* The lag of each assigned partition, to a file that outbox-status can read. */
static void
write_lag(struct ksub *k)
{
	struct sbuf sb;
	char tmp[PATH_MAX];
	int64_t lo, hi, at, total = 0;
	struct kpart *p;
	size_t i;
	int fd, first = 1, known = 1;

	k->last_lag = util_mono_ms();
	if (k->o.lag_file == NULL)
		return;
	sb_init(&sb);
	sb_puts(&sb, "{\"source\":");
	sb_json_str(&sb, k->s->src, strlen(k->s->src));
	sb_puts(&sb, ",\"group\":");
	sb_json_str(&sb, k->group, strlen(k->group));
	sb_puts(&sb, ",\"topic\":");
	sb_json_str(&sb, k->topic, strlen(k->topic));
	sb_puts(&sb, ",\"time\":");
	sb_i64(&sb, util_real_ms() / 1000);
	sb_puts(&sb, ",\"partitions\":[");
	for (i = 0; i < k->npart; i++) {
		p = &k->part[i];
		if (!p->assigned)
			continue;
		at = p->committed >= 0 ? p->committed : -1;
		hi = -1;
		if (rd_kafka_get_watermark_offsets(k->rk, k->topic, (int32_t)i,
		    &lo, &hi) != RD_KAFKA_RESP_ERR_NO_ERROR)
			hi = -1;
		sb_puts(&sb, first ? "{\"partition\":" : ",{\"partition\":");
		first = 0;
		sb_i64(&sb, (int64_t)i);
		sb_puts(&sb, ",\"committed\":");
		if (at >= 0)
			sb_i64(&sb, at);
		else
			sb_puts(&sb, "null");
		sb_puts(&sb, ",\"high\":");
		if (hi >= 0)
			sb_i64(&sb, hi);
		else
			sb_puts(&sb, "null");
		sb_puts(&sb, ",\"lag\":");
		if (hi >= 0 && at >= 0) {
			sb_i64(&sb, hi > at ? hi - at : 0);
			total += hi > at ? hi - at : 0;
		} else {
			sb_puts(&sb, "null");
			known = 0;
		}
		sb_putc(&sb, '}');
	}
	sb_puts(&sb, "],\"lag\":");
	if (known && !first)
		sb_i64(&sb, total);
	else
		sb_puts(&sb, "null");
	sb_puts(&sb, "}\n");
	snprintf(tmp, sizeof(tmp), "%s.tmp%ld", k->o.lag_file, (long)getpid());
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644))
	    < 0 || write(fd, sb.buf, sb.len) != (ssize_t)sb.len ||
	    close(fd) < 0 || rename(tmp, k->o.lag_file) < 0) {
		if (k->log.verbose)
			warn("%s", k->o.lag_file);
		unlink(tmp);
	}
	sb_free(&sb);
}

static int
ksub_poll(void *ctx, int ms, int fd, struct sub_msg ***out, size_t *n)
{
	struct ksub *k = ctx;
	struct pollfd pfd;
	rd_kafka_message_t *rm;
	int64_t end = util_mono_ms() + ms, now;
	int rc, wait;

	k->nret = 0;
	*out = k->ret;
	*n = 0;
	for (;;) {
		/*
		 * librdkafka's own wait for the first message, unless output
		 * is pending: then stdout is watched, and the queue polled.
		 */
		now = util_mono_ms();
		wait = fd < 0 && !k->more && end > now ? (int)(end - now) : 0;
		k->more = 0;
		/*
		 * Too many out: librdkafka keeps fetching into its own bounded
		 * queue meanwhile (queued.max.messages.kbytes).
		 */
		if (k->nout >= k->o.max_out) {
			if (fd < 0 && wait > 0)
				poll(NULL, 0, wait < 10 ? wait : 10);
			wait = -2;
		}
		while (wait != -2 && k->nret < POLL_BATCH &&
		    k->nout < k->o.max_out && !k->log.fatal) {
			if ((rm = rd_kafka_consumer_poll(k->rk, wait)) == NULL)
				break;
			wait = 0;
			rc = take_msg(k, rm);
			rd_kafka_message_destroy(rm);
			if (rc != 0)
				return rc;
		}
		if (k->nret == POLL_BATCH)
			k->more = 1;
		if (k->log.fatal)
			return k->log.fatal;
		now = util_mono_ms();
		if (k->o.once && k->log.down_since != 0 &&
		    now - k->log.down_since > ONCE_DOWN_MS) {
			warnx("%s: no broker reachable for %d s", k->log.name,
			    ONCE_DOWN_MS / 1000);
			return EX_UNAVAILABLE;
		}
		if (k->nret > 0 || now >= end || util_stop || util_progress ||
		    fd < 0)
			break;
		pfd.fd = fd;
		pfd.events = POLLOUT;
		if (poll(&pfd, 1, end - now < 10 ? (int)(end - now) : 10) < 0 &&
		    errno != EINTR) {
			warn("poll");
			return EX_OSERR;
		}
		if (pfd.revents != 0)
			break;
	}
	now = util_mono_ms();
	if (!k->stopping && now - k->last_commit >= COMMIT_EVERY_MS)
		commit(k, NULL, 0);
	if (now - k->last_lag >= LAG_EVERY_MS)
		write_lag(k);
	*out = k->ret;
	*n = k->nret;
	return 0;
}

static void
ksub_done(void *ctx, struct sub_msg *m)
{
	struct ksub *k = ctx;
	struct kmsg *x = (struct kmsg *)m, *h;
	struct kpart *p = x->p;

	if (p == NULL) {		/* gone: the new owner has it */
		kmsg_free(k, x);
		return;
	}
	x->done = 1;
	k->nout--;
	while ((h = p->head) != NULL && h->done) {
		p->head = h->pnext;
		if (p->head == NULL)
			p->tail = NULL;
		p->commit = h->m.offset + 1;
		k->ncommitted++;
		kmsg_free(k, h);
	}
	if (p->head == NULL && p->pos > p->commit)
		p->commit = p->pos;
}

/* Kafka keeps no message aside: one left blocks its partition's commits. */
static void
ksub_leave(void *ctx, struct sub_msg *m)
{
	(void)ctx;
	(void)m;
}

/*
 * With --once: 0 until every assigned partition is at its end, then 1,
 * or 2 once nothing handed out is waiting any more.
 */
static int
ksub_drained(void *ctx)
{
	struct ksub *k = ctx;
	size_t i;

	if (!k->joined || k->more)
		return 0;
	for (i = 0; i < k->npart; i++)
		if (k->part[i].assigned && !k->part[i].eof)
			return 0;
	return k->nout == 0 ? 2 : 1;
}

static int
ksub_finish(void *ctx, int ms)
{
	struct ksub *k = ctx;

	(void)ms;
	k->stopping = 1;
	commit(k, NULL, 1);
	write_lag(k);
	return k->log.fatal;
}

static void
ksub_stats(void *ctx, unsigned long *rcv, unsigned long *del,
    unsigned long *ext)
{
	struct ksub *k = ctx;

	*rcv = k->nreceived;
	*del = k->ncommitted;
	*ext = 0;
}

static void
ksub_close(void *ctx)
{
	struct ksub *k = ctx;

	if (k->rk != NULL) {
		/* Leave the group (its revoke commits what is covered). */
		if (!k->log.fatal && !k->log.down)
			rd_kafka_consumer_close(k->rk);
		if (k->q != NULL)
			rd_kafka_queue_destroy(k->q);
		rd_kafka_destroy_flags(k->rk,
		    RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
	}
	while (k->all != NULL)
		kmsg_free(k, k->all);
	klog_free(&k->log);
	free(k->part);
	free(k->ret);
	free(k->brokers);
	free(k->topic);
	free(k->group);
	free(k);
}

static const struct sub_ops kfk_sub_ops = { "kafka", ksub_poll, ksub_done,
    ksub_leave, ksub_drained, ksub_finish, ksub_stats, ksub_close };

int
sub_kfk_open(struct sub *s, const char *src, const struct sub_opts *o)
{
	struct ksub *k = xcalloc(1, sizeof(*k));
	rd_kafka_topic_partition_list_t *l;
	rd_kafka_conf_t *conf;
	rd_kafka_resp_err_t e;
	int rc;

	k->s = s;
	k->o = *o;
	k->log.name = src;
	k->log.verbose = o->verbose;
	if (kfk_url_parse(src, &k->brokers, &k->topic) < 0) {
		warnx("%s: not kafka://HOST:PORT[,HOST:PORT...]/TOPIC", src);
		free(k);
		return EX_USAGE;
	}
	k->group = xstrdup(o->group != NULL ? o->group : KFK_DEFAULT_GROUP);
	if (snprintf(s->src, sizeof(s->src), "kafka:%s/%s", k->brokers,
	    k->topic) >= (int)sizeof(s->src)) {
		warnx("%s: longer than %d bytes", src, ACK_SRC_MAX - 7);
		rc = EX_USAGE;
		goto fail;
	}
	if ((conf = make_conf(&k->log, sub_defaults, sub_fixed, o->props,
	    o->nprops, &rc)) == NULL)
		goto fail;
	if ((rc = set_or_die(conf, "bootstrap.servers", k->brokers)) != 0 ||
	    (rc = set_or_die(conf, "group.id", k->group)) != 0 ||
	    (rc = set_or_die(conf, "enable.auto.commit", "false")) != 0 ||
	    (rc = set_or_die(conf, "enable.auto.offset.store", "false")) != 0 ||
	    (rc = set_or_die(conf, "enable.partition.eof", "true")) != 0) {
		rd_kafka_conf_destroy(conf);
		goto fail;
	}
	rd_kafka_conf_set_rebalance_cb(conf, rebalance_cb);
	rd_kafka_conf_set_offset_commit_cb(conf, commit_cb);
	rd_kafka_conf_set_opaque(conf, k);
	if ((k->rk = make_handle(&k->log, RD_KAFKA_CONSUMER, conf)) == NULL) {
		rc = EX_CONFIG;
		goto fail;
	}
	rd_kafka_poll_set_consumer(k->rk);
	k->q = rd_kafka_queue_get_consumer(k->rk);
	l = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(l, k->topic, RD_KAFKA_PARTITION_UA);
	e = rd_kafka_subscribe(k->rk, l);
	rd_kafka_topic_partition_list_destroy(l);
	if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
		warnx("%s: %s", src, rd_kafka_err2str(e));
		rc = EX_CONFIG;
		goto fail;
	}
	k->last_commit = k->last_lag = util_mono_ms();
	s->ops = &kfk_sub_ops;
	s->ctx = k;
	s->redrive = 0;
	return 0;
fail:
	ksub_close(k);
	return rc;
}
