/* pub: where event-publish sends events, the transport that DEST names (SNS topic, SQS queue, Kafka topic). */
#include <err.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <unistd.h>

#include "aws.h"
#include "evt.h"
#include "ndj.h"
#include "pub.h"
#include "sns.h"
#include "sqs.h"
#include "util.h"
#include "web.h"

#define REQ_MS		30000	/* one batch request, at most */
#define BACKOFF_MS	50	/* first retry after up to this long */
#define BACKOFF_CAP_MS	5000	/* no retry waits longer */
#define MAX_ENTRIES	10

/*
 * Open the transport that dest names: an SNS topic ARN, an SQS queue URL
 * or ARN, a Kafka topic.  0, or an exit code (reported).
 */
int
pub_open(struct pub *p, const char *dest, const struct pub_opts *o)
{
	memset(p, 0, sizeof(*p));
	if (strncmp(dest, "arn:", 4) == 0 && strstr(dest, ":sns:") != NULL)
		return pub_sns_open(p, dest, o);
	if (strncmp(dest, "https://", 8) == 0 ||
	    strncmp(dest, "http://", 7) == 0 ||
	    (strncmp(dest, "arn:", 4) == 0 && strstr(dest, ":sqs:") != NULL))
		return pub_sqs_open(p, dest, o);
	if (strncmp(dest, "kafka://", 8) == 0)
		return pub_kfk_open(p, dest, o);
	warnx("%s: not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME), an "
	    "SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME) or "
	    "kafka://HOST:PORT/TOPIC", dest);
	return EX_USAGE;
}

/*
 * Publish the messages of m[0..n) not yet done, in order as far as the
 * destination keeps order.  0 when every one is accepted; EVT_BAD when
 * the service refused m[*failed] for itself (the sender's fault; why says
 * AWS's code and message): every message before it is then accepted,
 * some after it may be too (they are marked done); or an exit code.
 */
int
pub_send(struct pub *p, struct pub_msg *m, size_t n, size_t *failed,
    char *why, size_t wlen)
{
	return p->ops->send(p->ctx, m, n, failed, why, wlen);
}

/*
 * Start sending m at once, where the transport can (Kafka), while the
 * rest of the batch is read; pub_send() then waits for it as for the
 * others.  m must stay where it is until then; its body may move.
 */
void
pub_start(struct pub *p, struct pub_msg *m)
{
	if (p->ops->start != NULL)
		p->ops->start(p->ctx, m);
}

void
pub_close(struct pub *p)
{
	if (p->ops != NULL)
		p->ops->close(p->ctx);
	p->ops = NULL;
}

/* SNS and SQS: batch requests, several in flight, retried with backoff. */

enum { P_SNS, P_SQS };

struct batch {
	size_t		 idx[MAX_ENTRIES];
	size_t		 n;
	int64_t		 due;		/* monotonic ms */
	unsigned	 tries;
	int		 throttled;	/* the last failure was throttling */
};

struct apub {
	int		 proto;
	const char	*what;		/* "SNS", "SQS" */
	struct aws	 aws;
	struct web	 web;
	char		*target;	/* topic ARN or queue URL */
	int		 fifo;
	size_t		 max_bytes;
	struct pub_opts	 o;
	struct web_req	**req;		/* o.inflight of them */
	struct batch	*bat;		/* one per request */
	struct batch	*wait;		/* batches to send, in order */
	size_t		 nwait, capwait;
	unsigned long	 nreq, nretry;
	struct pub_msg	*m;		/* of the current send */
	size_t		 n;
	size_t		 bad;		/* lowest refused index, or n */
	char		 badwhy[300];
};

static size_t
msg_size(const struct pub_msg *m)
{
	size_t s = m->len;

	if (m->table != NULL && *m->table != '\0')
		s += 5 + 6 + strlen(m->table);
	if (m->op != NULL && *m->op != '\0')
		s += 2 + 6 + strlen(m->op);
	return s;
}

static void
push_wait(struct apub *a, const struct batch *b, int front)
{
	if (a->nwait == a->capwait) {
		a->capwait = a->capwait ? a->capwait * 2 : 16;
		a->wait = xrealloc(a->wait, a->capwait * sizeof(*a->wait));
	}
	if (front) {
		memmove(a->wait + 1, a->wait, a->nwait * sizeof(*a->wait));
		a->wait[0] = *b;
	} else
		a->wait[a->nwait] = *b;
	a->nwait++;
}

static void
refuse(struct apub *a, size_t i, const char *code, const char *msg)
{
	if (i >= a->bad)
		return;
	a->bad = i;
	snprintf(a->badwhy, sizeof(a->badwhy), "%s refused it: %s%s%s",
	    a->what, code, *msg ? ": " : "", msg);
	aws_scrub(&a->aws, a->badwhy);
}

/* Cut the messages not done into batches within the service's limits. */
static void
plan(struct apub *a)
{
	struct batch b;
	size_t i, bytes = 0, s;

	memset(&b, 0, sizeof(b));
	a->nwait = 0;
	for (i = 0; i < a->n; i++) {
		if (a->m[i].done)
			continue;
		s = msg_size(&a->m[i]);
		if (s > a->max_bytes) {
			char len[96];

			snprintf(len, sizeof(len), "%zu bytes with its "
			    "attributes, more than %zu", s, a->max_bytes);
			refuse(a, i, "too long", len);
			continue;
		}
		if (b.n == MAX_ENTRIES || bytes + s > a->max_bytes) {
			push_wait(a, &b, 0);
			memset(&b, 0, sizeof(b));
			bytes = 0;
		}
		b.idx[b.n++] = i;
		bytes += s;
	}
	if (b.n > 0)
		push_wait(a, &b, 0);
}

static void
put_attr(struct sbuf *sb, int k, int *na, const char *name, const char *v)
{
	char key[96];

	if (v == NULL || *v == '\0')
		return;
	(*na)++;
	snprintf(key, sizeof(key), "PublishBatchRequestEntries.member.%d."
	    "MessageAttributes.entry.%d.Name", k, *na);
	sns_form_put(sb, key, name, strlen(name));
	snprintf(key, sizeof(key), "PublishBatchRequestEntries.member.%d."
	    "MessageAttributes.entry.%d.Value.DataType", k, *na);
	sns_form_put(sb, key, "String", 6);
	snprintf(key, sizeof(key), "PublishBatchRequestEntries.member.%d."
	    "MessageAttributes.entry.%d.Value.StringValue", k, *na);
	sns_form_put(sb, key, v, strlen(v));
}

static void
build_sns(struct apub *a, struct sbuf *sb, const struct batch *b)
{
	char key[96], id[24];
	size_t j;
	int k, na;

	sb->len = 0;
	sns_form_put(sb, "Action", "PublishBatch", 12);
	sns_form_put(sb, "Version", "2010-03-31", 10);
	sns_form_put(sb, "TopicArn", a->target, strlen(a->target));
	for (j = 0; j < b->n; j++) {
		const struct pub_msg *m = &a->m[b->idx[j]];

		k = (int)j + 1;
		na = 0;
		snprintf(id, sizeof(id), "m%zu", b->idx[j]);
		snprintf(key, sizeof(key), "PublishBatchRequestEntries.member."
		    "%d.Id", k);
		sns_form_put(sb, key, id, strlen(id));
		snprintf(key, sizeof(key), "PublishBatchRequestEntries.member."
		    "%d.Message", k);
		sns_form_put(sb, key, m->body, m->len);
		put_attr(sb, k, &na, "table", m->table);
		put_attr(sb, k, &na, "op", m->op);
		if (a->fifo) {
			snprintf(key, sizeof(key), "PublishBatchRequestEntries."
			    "member.%d.MessageGroupId", k);
			sns_form_put(sb, key, m->group, strlen(m->group));
			snprintf(key, sizeof(key), "PublishBatchRequestEntries."
			    "member.%d.MessageDeduplicationId", k);
			sns_form_put(sb, key, m->dedup, strlen(m->dedup));
		}
	}
}

static void
json_attr(struct sbuf *sb, int *first, const char *name, const char *v)
{
	if (v == NULL || *v == '\0')
		return;
	sb_puts(sb, *first ? "" : ",");
	*first = 0;
	sb_json_str(sb, name, strlen(name));
	sb_puts(sb, ":{\"DataType\":\"String\",\"StringValue\":");
	sb_json_str(sb, v, strlen(v));
	sb_putc(sb, '}');
}

static void
build_sqs(struct apub *a, struct sbuf *sb, const struct batch *b)
{
	char id[24];
	size_t j;
	int first;

	sb->len = 0;
	sb_puts(sb, "{\"QueueUrl\":");
	sb_json_str(sb, a->target, strlen(a->target));
	sb_puts(sb, ",\"Entries\":[");
	for (j = 0; j < b->n; j++) {
		const struct pub_msg *m = &a->m[b->idx[j]];

		snprintf(id, sizeof(id), "m%zu", b->idx[j]);
		sb_puts(sb, j ? ",{\"Id\":" : "{\"Id\":");
		sb_json_str(sb, id, strlen(id));
		sb_puts(sb, ",\"MessageBody\":");
		sb_json_str(sb, m->body, m->len);
		sb_puts(sb, ",\"MessageAttributes\":{");
		first = 1;
		json_attr(sb, &first, "table", m->table);
		json_attr(sb, &first, "op", m->op);
		sb_putc(sb, '}');
		if (a->fifo) {
			sb_puts(sb, ",\"MessageGroupId\":");
			sb_json_str(sb, m->group, strlen(m->group));
			sb_puts(sb, ",\"MessageDeduplicationId\":");
			sb_json_str(sb, m->dedup, strlen(m->dedup));
		}
		sb_putc(sb, '}');
	}
	sb_puts(sb, "]}");
}

/* Start the batch b on the free request r.  0, or an exit code. */
static int
start(struct apub *a, size_t slot, const struct batch *b)
{
	struct web_req *r = a->req[slot];
	int rc;

	if ((rc = aws_fresh(&a->aws)) != 0)
		return rc;
	a->bat[slot] = *b;
	if (a->proto == P_SNS) {
		build_sns(a, &r->body, b);
		web_req_post(r, a->aws.endpoint, REQ_MS);
		aws_prepare(&a->aws, r, "application/x-www-form-urlencoded; "
		    "charset=utf-8", NULL);
	} else {
		build_sqs(a, &r->body, b);
		web_req_post(r, a->aws.endpoint, REQ_MS);
		aws_prepare(&a->aws, r, SQS_CTYPE,
		    SQS_TARGET "SendMessageBatch");
	}
	a->nreq++;
	return web_start(&a->web, r) < 0 ? EX_SOFTWARE : 0;
}

/* Full jitter: a random wait up to the capped exponential. */
static int64_t
backoff(unsigned tries)
{
	int64_t cap = BACKOFF_MS;

	while (tries-- > 1 && cap < BACKOFF_CAP_MS)
		cap *= 2;
	if (cap > BACKOFF_CAP_MS)
		cap = BACKOFF_CAP_MS;
	return random() % (cap + 1);
}

/* Send b again later; an exit code once it has been tried too often. */
static int
again(struct apub *a, struct batch *b, int throttled, const char *what)
{
	b->tries++;
	b->throttled = throttled;
	if (b->tries >= (unsigned)a->o.tries) {
		warnx("%s: %s: %s, %u tries", a->what, a->target, what,
		    b->tries);
		return throttled ? EX_TEMPFAIL : EX_UNAVAILABLE;
	}
	if (a->o.verbose)
		warnx("%s: %s, sending %zu events again", a->what, what, b->n);
	a->nretry++;
	b->due = util_mono_ms() + backoff(b->tries);
	push_wait(a, b, 1);
	return 0;
}

static int
entry_index(const struct apub *a, const struct batch *b, const char *id,
    size_t *i)
{
	char *end;
	size_t j;

	if (id[0] != 'm')
		return -1;
	*i = (size_t)strtoull(id + 1, &end, 10);
	if (*end != '\0' || end == id + 1)
		return -1;
	for (j = 0; j < b->n; j++)
		if (b->idx[j] == *i)
			return *i < a->n ? 0 : -1;
	return -1;
}

/* The answer to the request of slot.  0, or an exit code. */
static int
finish(struct apub *a, size_t slot)
{
	struct web_req *r = a->req[slot];
	struct batch b = a->bat[slot], retry;
	struct aws_entry e[MAX_ENTRIES];
	char code[64], msg[200], what[300], refused[MAX_ENTRIES];
	size_t ne, k, i, j;
	int rc;

	if (web_failed_transport(r)) {
		snprintf(what, sizeof(what), "%s", r->err);
		return again(a, &b, 0, what);
	}
	if (r->status >= 200 && r->status < 300) {
		rc = a->proto == P_SNS ? sns_parse_batch(r->resp.buf,
		    r->resp.len, e, MAX_ENTRIES, &ne) : sqs_parse_batch(
		    r->resp.buf, r->resp.len, e, MAX_ENTRIES, &ne);
		if (rc < 0) {
			warnx("%s: %s: an answer that is not a batch result "
			    "(HTTP %ld)", a->what, a->target, r->status);
			return EX_PROTOCOL;
		}
		memset(refused, 0, sizeof(refused));
		for (k = 0; k < ne; k++) {
			if (entry_index(a, &b, e[k].id, &i) < 0) {
				warnx("%s: %s: an answer about entry \"%s\", "
				    "which was not sent", a->what, a->target,
				    e[k].id);
				return EX_PROTOCOL;
			}
			if (e[k].ok)
				a->m[i].done = 1;
			else if (e[k].sender_fault && !aws_throttled(e[k].code)) {
				refuse(a, i, e[k].code, e[k].msg);
				for (j = 0; j < b.n; j++)
					refused[j] |= b.idx[j] == i;
			}
		}
		/* What was neither accepted nor refused goes again. */
		memset(&retry, 0, sizeof(retry));
		retry.tries = b.tries;
		for (j = 0; j < b.n; j++)
			if (!a->m[b.idx[j]].done && !refused[j])
				retry.idx[retry.n++] = b.idx[j];
		if (retry.n == 0)
			return 0;
		return again(a, &retry, 1, "entries failed, not by the sender's "
		    "fault");
	}
	rc = a->proto == P_SNS ? sns_parse_error(r->resp.buf, r->resp.len,
	    code, sizeof(code), msg, sizeof(msg)) : sqs_parse_error(
	    r->resp.buf, r->resp.len, r->qerr, code, sizeof(code), msg,
	    sizeof(msg));
	if (rc < 0)
		snprintf(code, sizeof(code), "HTTP %ld", r->status);
	aws_scrub(&a->aws, msg);
	if (r->status >= 500 || aws_throttled(code) || r->status == 429) {
		snprintf(what, sizeof(what), "%s", code);
		return again(a, &b, r->status < 500, what);
	}
	if (aws_auth_error(code) || r->status == 401 || r->status == 403) {
		if ((strcmp(code, "ExpiredToken") == 0 ||
		    strcmp(code, "ExpiredTokenException") == 0) &&
		    a->aws.c.expires != 0 && b.tries == 0) {
			/* Fetch new credentials and try once more. */
			a->aws.c.expires = util_real_ms();
			a->aws.last_fetch = 0;
			return again(a, &b, 0, code);
		}
		warnx("%s: %s: %s%s%s (credentials from the %s)", a->what,
		    a->target, code, *msg ? ": " : "", msg,
		    aws_src_name(a->aws.src));
		return EX_NOPERM;
	}
	if (strcmp(code, "NotFound") == 0 ||
	    strcmp(code, "QueueDoesNotExist") == 0 ||
	    strcmp(code, "AWS.SimpleQueueService.NonExistentQueue") == 0) {
		warnx("%s: %s: %s: %s", a->what, a->target, code,
		    *msg ? msg : "it does not exist");
		return EX_CONFIG;
	}
	if (r->status >= 400 && r->status < 500) {
		if (b.n == 1) {
			refuse(a, b.idx[0], code, msg);
			return 0;
		}
		/* Which event is it?  Each goes alone, in order. */
		for (j = b.n; j-- > 0; ) {
			memset(&retry, 0, sizeof(retry));
			retry.idx[0] = b.idx[j];
			retry.n = 1;
			push_wait(a, &retry, 1);
		}
		return 0;
	}
	warnx("%s: %s: unexpected HTTP %ld", a->what, a->target, r->status);
	return EX_PROTOCOL;
}

/* Drop the requests still in flight after a fatal error. */
static void
abandon(struct apub *a)
{
	int i;

	for (i = 0; i < a->o.inflight; i++)
		if (a->req[i]->busy) {
			curl_multi_remove_handle(a->web.m, a->req[i]->h);
			a->req[i]->busy = 0;
			a->web.running--;
		}
	a->nwait = 0;
}

static int
apub_send(void *ctx, struct pub_msg *m, size_t n, size_t *failed, char *why,
    size_t wlen)
{
	struct apub *a = ctx;
	struct web_req *r;
	int64_t now, next;
	size_t w, s;
	int rc, busy, i;

	a->m = m;
	a->n = n;
	a->bad = n;
	a->badwhy[0] = '\0';
	plan(a);
	for (;;) {
		now = util_mono_ms();
		next = now + 1000;
		busy = 0;
		for (i = 0; i < a->o.inflight; i++)
			busy += a->req[i]->busy;
		/* Start what is due, in order; a FIFO destination, one at a time. */
		for (w = 0; w < a->nwait && busy < a->o.inflight; ) {
			if (a->wait[w].idx[0] > a->bad) {
				memmove(a->wait + w, a->wait + w + 1,
				    (a->nwait - w - 1) * sizeof(*a->wait));
				a->nwait--;
				continue;
			}
			if (a->wait[w].due > now) {
				if (a->wait[w].due < next)
					next = a->wait[w].due;
				if (a->fifo)
					break;
				w++;
				continue;
			}
			for (s = 0; a->req[s]->busy; s++)
				;
			struct batch b = a->wait[w];

			memmove(a->wait + w, a->wait + w + 1,
			    (a->nwait - w - 1) * sizeof(*a->wait));
			a->nwait--;
			if ((rc = start(a, s, &b)) != 0) {
				abandon(a);
				return rc;
			}
			busy++;
		}
		if (busy == 0 && a->nwait == 0)
			break;
		if (web_wait(&a->web, (int)(next > now ? next - now : 0), NULL,
		    0) < 0) {
			abandon(a);
			return EX_SOFTWARE;
		}
		while ((r = web_done(&a->web)) != NULL) {
			for (s = 0; a->req[s] != r; s++)
				;
			if ((rc = finish(a, s)) != 0) {
				abandon(a);
				return rc;
			}
		}
	}
	if (a->bad < n) {
		*failed = a->bad;
		snprintf(why, wlen, "%s", a->badwhy);
		return EVT_BAD;
	}
	return 0;
}

static void
apub_stats(void *ctx, unsigned long *nreq, unsigned long *nretry)
{
	struct apub *a = ctx;

	*nreq = a->nreq;
	*nretry = a->nretry;
}

static void
apub_close(void *ctx)
{
	struct apub *a = ctx;
	int i;

	abandon(a);
	for (i = 0; i < a->o.inflight; i++)
		web_req_free(a->req[i]);
	free(a->req);
	free(a->bat);
	free(a->wait);
	web_free(&a->web);
	aws_free(&a->aws);
	free(a->target);
	free(a);
}

static const struct pub_ops sns_ops = { "sns", apub_send, apub_stats,
    apub_close, NULL };
static const struct pub_ops sqs_ops = { "sqs", apub_send, apub_stats,
    apub_close, NULL };

static int
apub_open(struct pub *p, int proto, char *target, const char *region,
    const struct pub_opts *o)
{
	struct apub *a = xcalloc(1, sizeof(*a));
	size_t tl = strlen(target);
	int rc, i;

	a->proto = proto;
	a->what = proto == P_SNS ? "SNS" : "SQS";
	a->target = target;
	a->o = *o;
	a->fifo = tl > 5 && strcmp(target + tl - 5, ".fifo") == 0;
	if (a->fifo)
		a->o.inflight = 1;
	a->max_bytes = proto == P_SNS ? SNS_MAX_BYTES : SQS_MAX_BYTES;
	if ((rc = aws_init(&a->aws, proto == P_SNS ? "sns" : "sqs",
	    region)) != 0 || web_init(&a->web) < 0) {
		aws_free(&a->aws);
		free(a->target);
		free(a);
		return rc ? rc : EX_SOFTWARE;
	}
	a->req = xcalloc((size_t)a->o.inflight, sizeof(*a->req));
	a->bat = xcalloc((size_t)a->o.inflight, sizeof(*a->bat));
	for (i = 0; i < a->o.inflight; i++)
		a->req[i] = web_req_new();
	srandom((unsigned)util_mono_ms() ^ (unsigned)getpid());
	p->ops = proto == P_SNS ? &sns_ops : &sqs_ops;
	p->ctx = a;
	p->max_len = a->max_bytes;
	p->ordered = a->fifo;
	return 0;
}

int
pub_sns_open(struct pub *p, const char *dest, const struct pub_opts *o)
{
	char region[64];

	if (sns_arn_parse(dest, region, sizeof(region)) < 0) {
		warnx("%s: not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:"
		    "NAME)", dest);
		return EX_USAGE;
	}
	return apub_open(p, P_SNS, xstrdup(dest), region, o);
}

int
pub_sqs_open(struct pub *p, const char *dest, const struct pub_opts *o)
{
	char region[64], *url;

	if (sqs_url_parse(dest, &url, region, sizeof(region)) < 0) {
		warnx("%s: not an SQS queue URL (https://sqs.REGION."
		    "amazonaws.com/ACCOUNT/NAME) or ARN", dest);
		return EX_USAGE;
	}
	return apub_open(p, P_SQS, url, region, o);
}
