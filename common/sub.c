/* sub: where event-consume reads messages, the transport that SRC names (an SQS queue, a Kafka topic). */
#include <err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "aws.h"
#include "ndj.h"
#include "sqs.h"
#include "sub.h"
#include "util.h"
#include "web.h"

#define MAX_FAILS	10	/* failed requests in a row before giving up */
#define BACKOFF_MS	100
#define BACKOFF_CAP_MS	10000
#define LONG_POLL_S	20
#define ONCE_POLL_S	1
#define REQ_MS		30000

/*
 * Open the transport that src names: an SQS queue URL or ARN, or a Kafka
 * topic.  0, or an exit code (reported).
 */
int
sub_open(struct sub *s, const char *src, const struct sub_opts *o)
{
	memset(s, 0, sizeof(*s));
	if (strncmp(src, "https://", 8) == 0 || strncmp(src, "http://", 7) == 0
	    || (strncmp(src, "arn:", 4) == 0 && strstr(src, ":sqs:") != NULL))
		return sub_sqs_open(s, src, o);
	if (strncmp(src, "kafka://", 8) == 0)
		return sub_kfk_open(s, src, o);
	warnx("%s: not an SQS queue URL (https://sqs.REGION.amazonaws.com/"
	    "ACCOUNT/NAME), an ARN or kafka://HOST:PORT/TOPIC", src);
	return EX_USAGE;
}

/* SQS: long polls, batched deletes, visibility kept while a message is out. */

enum { M_OUT, M_DONE, M_BUSY, M_LEFT };
enum { R_RECEIVE, R_DELETE, R_VISIBILITY };

struct smsg {
	struct sub_msg	 m;
	char		*handle;
	int64_t		 seen;		/* received or last extended, mono ms */
	int		 state;
	struct smsg	*prev, *next;
};

struct slot {
	struct web_req	*r;
	int		 kind;
	struct smsg	*m[SQS_MAX_ENTRIES];
	size_t		 n;
};

struct asub {
	struct aws	 aws;
	struct web	 web;
	char		*url;
	struct sub_opts	 o;
	struct slot	*slot;
	size_t		 nslot;
	struct smsg	*head;		/* every message held */
	size_t		 nout;		/* held and not yet deleted */
	int		 receiving;
	int		 drained;
	int		 stopping;
	int64_t		 hold_until;	/* backoff after failures */
	unsigned	 fails;
	struct sub_msg	**ret;		/* what poll hands out */
	size_t		 nret, capret;
	unsigned long	 nreceived, ndeleted, nextended;
};

static void
unlink_msg(struct asub *a, struct smsg *m)
{
	if (m->prev != NULL)
		m->prev->next = m->next;
	else
		a->head = m->next;
	if (m->next != NULL)
		m->next->prev = m->prev;
	free(m->m.id);
	free(m->m.body);
	free(m->m.table);
	free(m->handle);
	free(m);
	a->nout--;
}

static struct slot *
free_slot(struct asub *a)
{
	size_t i;

	for (i = 0; i < a->nslot; i++)
		if (!a->slot[i].r->busy)
			return &a->slot[i];
	a->slot = xrealloc(a->slot, (a->nslot + 1) * sizeof(*a->slot));
	memset(&a->slot[a->nslot], 0, sizeof(*a->slot));
	a->slot[a->nslot].r = web_req_new();
	return &a->slot[a->nslot++];
}

static int
start(struct asub *a, struct slot *s, const char *action)
{
	char target[64];
	int rc;

	if ((rc = aws_fresh(&a->aws)) != 0)
		return rc;
	web_req_post(s->r, a->aws.endpoint, s->kind == R_RECEIVE ?
	    (LONG_POLL_S + 10) * 1000L : REQ_MS);
	snprintf(target, sizeof(target), SQS_TARGET "%s", action);
	aws_prepare(&a->aws, s->r, SQS_CTYPE, target);
	return web_start(&a->web, s->r) < 0 ? EX_SOFTWARE : 0;
}

static int
start_receive(struct asub *a)
{
	struct slot *s = free_slot(a);
	struct sbuf *b = &s->r->body;
	char num[64];

	s->kind = R_RECEIVE;
	s->n = 0;
	b->len = 0;
	sb_puts(b, "{\"QueueUrl\":");
	sb_json_str(b, a->url, strlen(a->url));
	snprintf(num, sizeof(num), ",\"MaxNumberOfMessages\":10,"
	    "\"WaitTimeSeconds\":%d", a->o.once ? ONCE_POLL_S : LONG_POLL_S);
	sb_puts(b, num);
	snprintf(num, sizeof(num), ",\"VisibilityTimeout\":%d",
	    a->o.visibility);
	sb_puts(b, num);
	sb_puts(b, ",\"MessageAttributeNames\":[\"All\"]}");
	a->receiving++;
	return start(a, s, "ReceiveMessage");
}

/* A DeleteMessageBatch or ChangeMessageVisibilityBatch of up to 10 messages. */
static int
start_batch(struct asub *a, int kind, struct smsg **m, size_t n)
{
	struct slot *s = free_slot(a);
	struct sbuf *b = &s->r->body;
	char num[48];
	size_t i;

	s->kind = kind;
	s->n = n;
	b->len = 0;
	sb_puts(b, "{\"QueueUrl\":");
	sb_json_str(b, a->url, strlen(a->url));
	sb_puts(b, ",\"Entries\":[");
	for (i = 0; i < n; i++) {
		s->m[i] = m[i];
		snprintf(num, sizeof(num), "%s{\"Id\":\"e%zu\",", i ? "," : "",
		    i);
		sb_puts(b, num);
		sb_puts(b, "\"ReceiptHandle\":");
		sb_json_str(b, m[i]->handle, strlen(m[i]->handle));
		if (kind == R_VISIBILITY) {
			snprintf(num, sizeof(num), ",\"VisibilityTimeout\":%d",
			    a->o.visibility);
			sb_puts(b, num);
		}
		sb_putc(b, '}');
	}
	sb_puts(b, "]}");
	return start(a, s, kind == R_DELETE ? "DeleteMessageBatch" :
	    "ChangeMessageVisibilityBatch");
}

/* Deletes of what is done, and visibility for what is still out. */
static int
start_upkeep(struct asub *a, int64_t now)
{
	struct smsg *del[SQS_MAX_ENTRIES], *vis[SQS_MAX_ENTRIES], *m;
	size_t nd = 0, nv = 0;
	int rc;

	if (now < a->hold_until)
		return 0;
	for (m = a->head; m != NULL; m = m->next) {
		if (m->state == M_DONE) {
			m->state = M_BUSY;
			del[nd++] = m;
			if (nd == SQS_MAX_ENTRIES) {
				if ((rc = start_batch(a, R_DELETE, del, nd)) != 0)
					return rc;
				nd = 0;
			}
		} else if (m->state == M_OUT && a->o.visibility > 0 &&
		    now - m->seen >= a->o.visibility * 1000L * 2 / 3) {
			m->seen = now;
			vis[nv++] = m;
			if (nv == SQS_MAX_ENTRIES) {
				if ((rc = start_batch(a, R_VISIBILITY, vis, nv))
				    != 0)
					return rc;
				nv = 0;
			}
		}
	}
	if (nd > 0 && (rc = start_batch(a, R_DELETE, del, nd)) != 0)
		return rc;
	if (nv > 0 && (rc = start_batch(a, R_VISIBILITY, vis, nv)) != 0)
		return rc;
	return 0;
}

/* A failed request: fatal codes end the run, others wait and go again. */
static int
failure(struct asub *a, struct slot *s)
{
	struct web_req *r = s->r;
	char code[300], msg[200];
	int64_t cap = BACKOFF_MS;
	unsigned i;

	if (web_failed_transport(r))
		snprintf(code, sizeof(code), "%s", r->err);
	else if (sqs_parse_error(r->resp.buf, r->resp.len, r->qerr, code,
	    sizeof(code), msg, sizeof(msg)) < 0)
		snprintf(code, sizeof(code), "HTTP %ld", r->status);
	else {
		aws_scrub(&a->aws, msg);
		if (aws_auth_error(code) || r->status == 401 ||
		    r->status == 403) {
			if ((strcmp(code, "ExpiredToken") == 0 ||
			    strcmp(code, "ExpiredTokenException") == 0) &&
			    a->aws.c.expires != 0 && a->fails == 0) {
				a->aws.c.expires = util_real_ms();
				a->aws.last_fetch = 0;
				a->fails++;
				return 0;
			}
			warnx("SQS: %s: %s%s%s (credentials from the %s)",
			    a->url, code, *msg ? ": " : "", msg,
			    aws_src_name(a->aws.src));
			return EX_NOPERM;
		}
		if (strcmp(code, "QueueDoesNotExist") == 0 ||
		    strcmp(code, "AWS.SimpleQueueService.NonExistentQueue") == 0) {
			warnx("SQS: %s: %s: %s", a->url, code, *msg ? msg :
			    "it does not exist");
			return EX_CONFIG;
		}
		if (r->status < 500 && !aws_throttled(code) &&
		    r->status != 429) {
			warnx("SQS: %s: %s%s%s", a->url, code, *msg ? ": " : "",
			    msg);
			return EX_PROTOCOL;
		}
	}
	if (++a->fails >= MAX_FAILS) {
		warnx("SQS: %s: %s, %u failures in a row", a->url, code,
		    a->fails);
		return web_failed_transport(r) || r->status >= 500 ?
		    EX_UNAVAILABLE : EX_TEMPFAIL;
	}
	if (a->o.verbose)
		warnx("SQS: %s: %s, trying again", a->url, code);
	for (i = 1; i < a->fails && cap < BACKOFF_CAP_MS; i++)
		cap *= 2;
	a->hold_until = util_mono_ms() + random() % (cap + 1);
	return 0;
}

static int
received(struct asub *a, struct slot *s)
{
	struct sqs_msg *v;
	struct smsg *m;
	size_t n, i;

	if (sqs_parse_receive(s->r->resp.buf, s->r->resp.len, &v, &n) < 0) {
		warnx("SQS: %s: an answer to ReceiveMessage that is not one",
		    a->url);
		return EX_PROTOCOL;
	}
	if (n == 0 && a->o.once)
		a->drained = 1;
	for (i = 0; i < n; i++) {
		m = xcalloc(1, sizeof(*m));
		m->m.id = v[i].id;
		m->m.body = v[i].body;
		m->m.len = v[i].len;
		m->m.table = v[i].table;
		m->m.partition = -1;
		m->handle = v[i].handle;
		m->seen = util_mono_ms();
		m->state = M_OUT;
		m->next = a->head;
		if (a->head != NULL)
			a->head->prev = m;
		a->head = m;
		a->nout++;
		a->nreceived++;
		if (a->nret == a->capret) {
			a->capret = a->capret ? a->capret * 2 : 16;
			a->ret = xrealloc(a->ret, a->capret * sizeof(*a->ret));
		}
		a->ret[a->nret++] = &m->m;
	}
	free(v);
	return 0;
}

/* The answer of a delete or visibility batch. */
static int
batched(struct asub *a, struct slot *s)
{
	struct aws_entry e[SQS_MAX_ENTRIES];
	size_t ne, k, i;

	if (sqs_parse_batch(s->r->resp.buf, s->r->resp.len, e,
	    SQS_MAX_ENTRIES, &ne) < 0) {
		warnx("SQS: %s: an answer that is not a batch result", a->url);
		return EX_PROTOCOL;
	}
	if (s->kind == R_VISIBILITY) {
		a->nextended += ne;
		return 0;
	}
	for (k = 0; k < ne; k++) {
		i = (size_t)strtoul(e[k].id + 1, NULL, 10);
		if (i >= s->n || s->m[i] == NULL)
			continue;
		if (!e[k].ok && a->o.verbose)
			warnx("SQS: message %s: not deleted: %s: %s (it will "
			    "come again)", s->m[i]->m.id, e[k].code, e[k].msg);
		a->ndeleted += e[k].ok;
		unlink_msg(a, s->m[i]);
		s->m[i] = NULL;
	}
	/* Those the answer left out are deleted again. */
	for (i = 0; i < s->n; i++)
		if (s->m[i] != NULL) {
			s->m[i]->state = M_DONE;
			s->m[i] = NULL;
		}
	return 0;
}

static int
asub_poll(void *ctx, int ms, int fd, struct sub_msg ***out, size_t *n)
{
	struct asub *a = ctx;
	struct curl_waitfd wfd;
	struct web_req *r;
	struct slot *s;
	int64_t now = util_mono_ms();
	size_t i;
	int rc;

	a->nret = 0;
	while (!a->stopping && !(a->o.once && a->drained) &&
	    a->receiving < a->o.receivers && now >= a->hold_until &&
	    a->nout + (size_t)(a->receiving + 1) * SQS_MAX_ENTRIES <=
	    a->o.max_out)
		if ((rc = start_receive(a)) != 0)
			return rc;
	if ((rc = start_upkeep(a, now)) != 0)
		return rc;
	if (a->hold_until > now && a->hold_until - now < ms)
		ms = (int)(a->hold_until - now);
	memset(&wfd, 0, sizeof(wfd));
	wfd.fd = fd;
	wfd.events = CURL_WAIT_POLLOUT;
	if (web_wait(&a->web, ms, fd >= 0 ? &wfd : NULL, fd >= 0 ? 1 : 0) < 0)
		return EX_SOFTWARE;
	while ((r = web_done(&a->web)) != NULL) {
		for (i = 0; a->slot[i].r != r; i++)
			;
		s = &a->slot[i];
		if (s->kind == R_RECEIVE)
			a->receiving--;
		if (web_failed_transport(r) || r->status < 200 ||
		    r->status >= 300) {
			if ((rc = failure(a, s)) != 0)
				return rc;
			if (s->kind == R_DELETE)
				for (i = 0; i < s->n; i++)
					s->m[i]->state = M_DONE;
			continue;
		}
		a->fails = 0;
		rc = s->kind == R_RECEIVE ? received(a, s) : batched(a, s);
		if (rc != 0)
			return rc;
	}
	*out = a->ret;
	*n = a->nret;
	return 0;
}

static void
asub_done(void *ctx, struct sub_msg *m)
{
	(void)ctx;
	((struct smsg *)m)->state = M_DONE;
}

/* Not deleted, no longer kept hidden: the queue's redrive policy decides. */
static void
asub_leave(void *ctx, struct sub_msg *m)
{
	unlink_msg(ctx, (struct smsg *)m);
}

/*
 * With --once: 0 while the queue has given messages, 1 once it came back
 * empty, 2 once it did and nothing is held or in flight any more.
 */
static int
asub_drained(void *ctx)
{
	struct asub *a = ctx;

	if (!a->drained)
		return 0;
	return a->nout == 0 && a->web.running == 0 ? 2 : 1;
}

/* Stop receiving; delete what is done, for up to ms.  0, or an exit code. */
static int
asub_finish(void *ctx, int ms)
{
	struct asub *a = ctx;
	struct sub_msg **out;
	struct smsg *m;
	int64_t end = util_mono_ms() + ms;
	size_t n;
	int rc, pending;

	a->stopping = 1;
	for (;;) {
		pending = a->web.running > 0;
		for (m = a->head; m != NULL && !pending; m = m->next)
			pending = m->state == M_DONE || m->state == M_BUSY;
		if (!pending || util_mono_ms() >= end)
			return 0;
		if ((rc = asub_poll(a, 100, -1, &out, &n)) != 0)
			return rc;
	}
}

static void
asub_stats(void *ctx, unsigned long *rcv, unsigned long *del,
    unsigned long *ext)
{
	struct asub *a = ctx;

	*rcv = a->nreceived;
	*del = a->ndeleted;
	*ext = a->nextended;
}

static void
asub_close(void *ctx)
{
	struct asub *a = ctx;
	size_t i;

	for (i = 0; i < a->nslot; i++) {
		if (a->slot[i].r->busy)
			curl_multi_remove_handle(a->web.m, a->slot[i].r->h);
		web_req_free(a->slot[i].r);
	}
	while (a->head != NULL)
		unlink_msg(a, a->head);
	free(a->slot);
	free(a->ret);
	web_free(&a->web);
	aws_free(&a->aws);
	free(a->url);
	free(a);
}

static const struct sub_ops sqs_ops = { "sqs", asub_poll, asub_done,
    asub_leave, asub_drained, asub_finish, asub_stats, asub_close };

int
sub_sqs_open(struct sub *s, const char *src, const struct sub_opts *o)
{
	struct asub *a;
	char region[64], *url;
	int rc;

	if (sqs_url_parse(src, &url, region, sizeof(region)) < 0) {
		warnx("%s: not an SQS queue URL (https://sqs.REGION."
		    "amazonaws.com/ACCOUNT/NAME) or ARN", src);
		return EX_USAGE;
	}
	a = xcalloc(1, sizeof(*a));
	a->url = url;
	a->o = *o;
	if ((rc = aws_init(&a->aws, "sqs", region)) != 0 ||
	    web_init(&a->web) < 0) {
		aws_free(&a->aws);
		free(a->url);
		free(a);
		return rc ? rc : EX_SOFTWARE;
	}
	srandom((unsigned)util_mono_ms() ^ (unsigned)getpid());
	snprintf(s->src, sizeof(s->src), "sqs:%s", url);
	s->redrive = 1;
	s->ops = &sqs_ops;
	s->ctx = a;
	return 0;
}
