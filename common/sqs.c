/* sqs: Amazon SQS's JSON protocol: queue URLs, batch requests and their answers. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ack.h"
#include "aws.h"
#include "ndj.h"
#include "sqs.h"
#include "util.h"

static int
name_ok(const char *s, size_t n)
{
	size_t i, k = n;

	if (n > 5 && memcmp(s + n - 5, ".fifo", 5) == 0)
		k = n - 5;
	if (k == 0 || k > 80)
		return 0;
	for (i = 0; i < k; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
			return 0;
	return 1;
}

/*
 * A queue named by its URL, scheme://HOST[:PORT]/ACCOUNT/NAME, or by its
 * ARN, arn:PARTITION:sqs:REGION:ACCOUNT:NAME (made into the URL).  *url
 * is the URL (the caller frees it); the region that the host names
 * (sqs.REGION.amazonaws.com, REGION.queue.amazonaws.com, or any host
 * starting "sqs.REGION.") goes into region, "" if none.  0, or -1 if it
 * is neither.
 */
int
sqs_url_parse(const char *src, char **url, char *region, size_t rlen)
{
	const char *h, *p, *acct, *name, *f[6];
	size_t hn, n, i;

	*url = NULL;
	region[0] = '\0';
	if (strncmp(src, "arn:aws", 7) == 0) {
		f[0] = src;
		for (i = 1; i < 6; i++) {
			if ((f[i] = strchr(f[i - 1], ':')) == NULL)
				return -1;
			f[i]++;
		}
		n = (size_t)(f[4] - f[3] - 1);
		if (strncmp(f[2], "sqs:", 4) != 0 || n == 0 || n >= rlen ||
		    f[5] - f[4] - 1 == 0 || f[5] - f[4] - 1 > 20 ||
		    !name_ok(f[5], strlen(f[5])))
			return -1;
		memcpy(region, f[3], n);
		region[n] = '\0';
		if (!aws_region_valid(region))
			return -1;
		*url = xmalloc(strlen(src) + 64);
		sprintf(*url, "https://sqs.%s.amazonaws.com%s/%.*s/%s", region,
		    strncmp(region, "cn-", 3) == 0 ? ".cn" : "",
		    (int)(f[5] - f[4] - 1), f[4], f[5]);
		return 0;
	}
	if (strncmp(src, "https://", 8) == 0)
		h = src + 8;
	else if (strncmp(src, "http://", 7) == 0)
		h = src + 7;
	else
		return -1;
	if (strlen(src) >= ACK_SRC_MAX - 5)
		return -1;
	for (p = src; *p != '\0'; p++)
		if (*p <= ' ' || *p > '~' || *p == '?' || *p == '#' ||
		    *p == '@' || *p == '"' || *p == '\\')
			return -1;
	hn = strcspn(h, "/");
	if (hn == 0 || h[hn] != '/')
		return -1;
	acct = h + hn + 1;
	if ((name = strchr(acct, '/')) == NULL || name == acct)
		return -1;
	name++;
	if (!name_ok(name, strlen(name)))
		return -1;
	for (p = acct; *p != '/'; p++)
		if (!isalnum((unsigned char)*p) && *p != '-' && *p != '_')
			return -1;
	if (hn > 4 && strncmp(h, "sqs.", 4) == 0) {
		n = strcspn(h + 4, ".:/");
		if (n > 0 && n < rlen && h[4 + n] == '.') {
			memcpy(region, h + 4, n);
			region[n] = '\0';
		}
	} else if ((p = strstr(h, ".queue.amazonaws.com")) != NULL &&
	    p < h + hn) {
		n = (size_t)(p - h);
		if (n < rlen) {
			memcpy(region, h, n);
			region[n] = '\0';
		}
	}
	if (region[0] != '\0' && !aws_region_valid(region))
		region[0] = '\0';
	*url = xstrdup(src);
	return 0;
}

static void
copy(char *dst, size_t len, json_t *j)
{
	snprintf(dst, len, "%s", json_is_string(j) ? json_string_value(j) : "");
}

/*
 * The answer of SendMessageBatch, DeleteMessageBatch or
 * ChangeMessageVisibilityBatch: one entry in e for each of Successful and
 * Failed, at most max.  0, or -1 if it is not such an answer.
 */
int
sqs_parse_batch(const char *buf, size_t len, struct aws_entry *e, size_t max,
    size_t *n)
{
	const char *lists[] = { "Successful", "Failed" };
	json_t *o, *l, *m;
	size_t i, k;
	int rc = -1;

	*n = 0;
	if ((o = json_loadb(buf, len, 0, NULL)) == NULL || !json_is_object(o))
		goto out;
	for (k = 0; k < 2; k++) {
		if ((l = json_object_get(o, lists[k])) == NULL)
			continue;
		if (!json_is_array(l))
			goto out;
		json_array_foreach(l, i, m) {
			if (*n == max || !json_is_object(m) ||
			    !json_is_string(json_object_get(m, "Id")))
				goto out;
			memset(&e[*n], 0, sizeof(e[*n]));
			copy(e[*n].id, sizeof(e[*n].id), json_object_get(m, "Id"));
			e[*n].ok = k == 0;
			if (k == 1) {
				copy(e[*n].code, sizeof(e[*n].code),
				    json_object_get(m, "Code"));
				copy(e[*n].msg, sizeof(e[*n].msg),
				    json_object_get(m, "Message"));
				e[*n].sender_fault = json_is_true(
				    json_object_get(m, "SenderFault"));
			}
			(*n)++;
		}
	}
	rc = 0;
out:
	json_decref(o);
	return rc;
}

/*
 * An error answer: the code (from the x-amzn-query-error header qerr if
 * given, else the part of __type after '#') and the message.  0, or -1
 * if there is neither.
 */
int
sqs_parse_error(const char *buf, size_t len, const char *qerr, char *code,
    size_t clen, char *msg, size_t mlen)
{
	json_t *o, *j;
	const char *t, *h;

	code[0] = msg[0] = '\0';
	if ((o = json_loadb(buf, len, 0, NULL)) != NULL && json_is_object(o)) {
		if ((j = json_object_get(o, "__type")) != NULL &&
		    json_is_string(j)) {
			t = json_string_value(j);
			h = strrchr(t, '#');
			snprintf(code, clen, "%s", h ? h + 1 : t);
		}
		if ((j = json_object_get(o, "message")) == NULL)
			j = json_object_get(o, "Message");
		if (json_is_string(j))
			snprintf(msg, mlen, "%s", json_string_value(j));
	}
	json_decref(o);
	if (qerr != NULL && *qerr != '\0')
		snprintf(code, clen, "%s", qerr);
	return code[0] != '\0' ? 0 : -1;
}

void
sqs_msg_free(struct sqs_msg *m)
{
	free(m->id);
	free(m->handle);
	free(m->body);
	free(m->table);
	memset(m, 0, sizeof(*m));
}

/*
 * The answer of ReceiveMessage: its messages into a new array *msgs of
 * *n (the caller frees each and the array).  0, or -1 if it is not such
 * an answer.
 */
int
sqs_parse_receive(const char *buf, size_t len, struct sqs_msg **msgs,
    size_t *n)
{
	json_t *o, *l, *m, *a;
	struct sqs_msg *v;
	size_t i;

	*msgs = NULL;
	*n = 0;
	if ((o = json_loadb(buf, len, 0, NULL)) == NULL || !json_is_object(o)) {
		json_decref(o);
		return -1;
	}
	if ((l = json_object_get(o, "Messages")) == NULL || json_is_null(l)) {
		json_decref(o);
		return 0;
	}
	if (!json_is_array(l) || json_array_size(l) > 10) {
		json_decref(o);
		return -1;
	}
	v = xcalloc(json_array_size(l) + 1, sizeof(*v));
	json_array_foreach(l, i, m) {
		json_t *id = json_object_get(m, "MessageId");
		json_t *rh = json_object_get(m, "ReceiptHandle");
		json_t *b = json_object_get(m, "Body");

		if (!json_is_string(id) || !json_is_string(rh) ||
		    !json_is_string(b) || json_string_length(rh) == 0)
			goto bad;
		v[i].id = xstrdup(json_string_value(id));
		v[i].handle = xstrdup(json_string_value(rh));
		v[i].len = json_string_length(b);
		v[i].body = xmalloc(v[i].len + 1);
		memcpy(v[i].body, json_string_value(b), v[i].len + 1);
		a = json_object_get(json_object_get(json_object_get(m,
		    "MessageAttributes"), "table"), "StringValue");
		if (json_is_string(a))
			v[i].table = xstrdup(json_string_value(a));
		(*n)++;
	}
	json_decref(o);
	*msgs = v;
	return 0;
bad:
	for (i = 0; i < *n + 1; i++)
		sqs_msg_free(&v[i]);
	free(v);
	*n = 0;
	json_decref(o);
	return -1;
}
