/* sns: Amazon SNS's Query protocol: PublishBatch requests and their XML answers. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "aws.h"
#include "ndj.h"
#include "sns.h"

/*
 * A topic ARN, arn:PARTITION:sns:REGION:ACCOUNT:NAME: its region into
 * region.  0, or -1 if it is not one.
 */
int
sns_arn_parse(const char *arn, char *region, size_t rlen)
{
	const char *p[6];
	size_t i, n;

	p[0] = arn;
	for (i = 1; i < 6; i++) {
		if ((p[i] = strchr(p[i - 1], ':')) == NULL)
			return -1;
		p[i]++;
	}
	if (strncmp(arn, "arn:", 4) != 0 || strncmp(p[2], "sns:", 4) != 0 ||
	    strncmp(p[1], "aws", 3) != 0)
		return -1;
	n = (size_t)(p[4] - p[3] - 1);
	if (n == 0 || n >= rlen || p[5] - p[4] - 1 == 0 || *p[5] == '\0' ||
	    strlen(p[5]) > 256 || strchr(p[5], ':') != NULL)
		return -1;
	for (i = 0; p[5][i] != '\0'; i++)
		if (!isalnum((unsigned char)p[5][i]) && p[5][i] != '-' &&
		    p[5][i] != '_' && p[5][i] != '.')
			return -1;
	memcpy(region, p[3], n);
	region[n] = '\0';
	return aws_region_valid(region) ? 0 : -1;
}

/* Append "&name=value" to a form body, the value percent-encoded (RFC 3986). */
void
sns_form_put(struct sbuf *sb, const char *name, const char *v, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)v;
	size_t i;

	if (sb->len > 0)
		sb_putc(sb, '&');
	sb_puts(sb, name);
	sb_putc(sb, '=');
	sb_grow(sb, n * 3);
	for (i = 0; i < n; i++) {
		if (isalnum(p[i]) || p[i] == '-' || p[i] == '_' ||
		    p[i] == '.' || p[i] == '~')
			sb->buf[sb->len++] = (char)p[i];
		else {
			sb->buf[sb->len++] = '%';
			sb->buf[sb->len++] = hex[p[i] >> 4];
			sb->buf[sb->len++] = hex[p[i] & 15];
		}
	}
	sb->buf[sb->len] = '\0';
}

/*
 * The first element called name in [p, end): its content in [*in, *out)
 * and the position after it in *next.  1 found, 0 not.  Enough XML for
 * AWS's answers: no CDATA, attributes skipped, <name/> empty.
 */
static int
elem(const char *p, const char *end, const char *name, const char **in,
    const char **out, const char **next)
{
	size_t n = strlen(name);
	const char *q, *gt;
	int depth;

	for (; p < end && (p = memchr(p, '<', (size_t)(end - p))) != NULL;
	    p++) {
		if ((size_t)(end - p) < n + 2 || memcmp(p + 1, name, n) != 0 ||
		    (p[n + 1] != '>' && p[n + 1] != '/' && p[n + 1] != ' '))
			continue;
		if ((gt = memchr(p, '>', (size_t)(end - p))) == NULL)
			return 0;
		if (gt[-1] == '/') {
			*in = *out = gt;
			*next = gt + 1;
			return 1;
		}
		/* Find the matching close tag, counting nested ones of the name. */
		depth = 1;
		for (q = gt + 1; q < end &&
		    (q = memchr(q, '<', (size_t)(end - q))) != NULL; q++) {
			if ((size_t)(end - q) >= n + 3 && q[1] == '/' &&
			    memcmp(q + 2, name, n) == 0 && q[n + 2] == '>') {
				if (--depth == 0) {
					*in = gt + 1;
					*out = q;
					*next = q + n + 3;
					return 1;
				}
			} else if ((size_t)(end - q) >= n + 2 &&
			    memcmp(q + 1, name, n) == 0 && (q[n + 1] == '>' ||
			    q[n + 1] == ' '))
				depth++;
		}
		return 0;
	}
	return 0;
}

/* The text of [p, end) with XML's entities decoded, at most len-1 bytes. */
static void
text(const char *p, const char *end, char *out, size_t len)
{
	static const struct { const char *e; char c; } ent[] = {
	    { "&amp;", '&' }, { "&lt;", '<' }, { "&gt;", '>' },
	    { "&quot;", '"' }, { "&apos;", '\'' } };
	size_t o = 0, i, k;
	unsigned long cp;
	char *e;

	while (p < end && isspace((unsigned char)*p))
		p++;
	while (end > p && isspace((unsigned char)end[-1]))
		end--;
	while (p < end && o + 1 < len) {
		if (*p != '&') {
			out[o++] = *p++;
			continue;
		}
		for (i = 0; i < sizeof(ent) / sizeof(*ent); i++) {
			k = strlen(ent[i].e);
			if ((size_t)(end - p) >= k && memcmp(p, ent[i].e, k) == 0)
				break;
		}
		if (i < sizeof(ent) / sizeof(*ent)) {
			out[o++] = ent[i].c;
			p += k;
			continue;
		}
		if (end - p > 3 && p[1] == '#') {
			char num[12];

			k = 0;
			for (i = 2; p + i < end && p[i] != ';' && k < 11; i++)
				num[k++] = p[i];
			num[k] = '\0';
			if (p + i < end && p[i] == ';') {
				cp = num[0] == 'x' ? strtoul(num + 1, &e, 16) :
				    strtoul(num, &e, 10);
				if (*e == '\0' && cp > 0 && cp < 0x80) {
					out[o++] = (char)cp;
					p += i + 1;
					continue;
				}
			}
		}
		out[o++] = *p++;
	}
	out[o] = '\0';
}

static void
child_text(const char *p, const char *end, const char *name, char *out,
    size_t len)
{
	const char *in, *o, *next;

	out[0] = '\0';
	if (elem(p, end, name, &in, &o, &next))
		text(in, o, out, len);
}

/* Collect the members of one list (Successful or Failed) into e. */
static int
members(const char *p, const char *end, int ok, struct aws_entry *e,
    size_t max, size_t *n)
{
	const char *in, *out, *next;
	char fault[8];

	while (elem(p, end, "member", &in, &out, &next)) {
		if (*n == max)
			return -1;
		memset(&e[*n], 0, sizeof(e[*n]));
		child_text(in, out, "Id", e[*n].id, sizeof(e[*n].id));
		if (e[*n].id[0] == '\0')
			return -1;
		e[*n].ok = ok;
		if (!ok) {
			child_text(in, out, "Code", e[*n].code,
			    sizeof(e[*n].code));
			child_text(in, out, "Message", e[*n].msg,
			    sizeof(e[*n].msg));
			child_text(in, out, "SenderFault", fault, sizeof(fault));
			e[*n].sender_fault = strcmp(fault, "true") == 0;
		}
		(*n)++;
		p = next;
	}
	return 0;
}

/*
 * A PublishBatchResponse: one entry in e for each member of Successful
 * and Failed, at most max.  0, or -1 if it is not such an answer.
 */
int
sns_parse_batch(const char *buf, size_t len, struct aws_entry *e, size_t max,
    size_t *n)
{
	const char *end = buf + len, *in, *out, *next, *rin, *rout;

	*n = 0;
	if (!elem(buf, end, "PublishBatchResult", &rin, &rout, &next))
		return -1;
	if (elem(rin, rout, "Successful", &in, &out, &next) &&
	    members(in, out, 1, e, max, n) < 0)
		return -1;
	if (elem(rin, rout, "Failed", &in, &out, &next) &&
	    members(in, out, 0, e, max, n) < 0)
		return -1;
	return 0;
}

/* An ErrorResponse: its Code and Message.  0, or -1 if it is not one. */
int
sns_parse_error(const char *buf, size_t len, char *code, size_t clen,
    char *msg, size_t mlen)
{
	const char *in, *out, *next;

	code[0] = msg[0] = '\0';
	if (!elem(buf, buf + len, "Error", &in, &out, &next))
		return -1;
	child_text(in, out, "Code", code, clen);
	child_text(in, out, "Message", msg, mlen);
	return code[0] != '\0' ? 0 : -1;
}
