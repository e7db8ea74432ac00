/* client-get: print the read model of clients from Redis, one JSON line each. */
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "ndj.h"
#include "rds.h"
#include "util.h"

#define EX_NOTFOUND	1
#define MAX_BATCH	256

static redisContext *rc;
static struct ndj_writer out;
static int status;
static int failure;		/* a server or output error: stop */

static void
usage(void)
{
	fprintf(stderr, "usage: client-get [-hV] [-P password-file] [-r url] "
	    "[id ...]\n");
	exit(EX_USAGE);
}

/* An id is decimal digits, no sign, no leading zero, at most 2^31-1. */
static int
valid_id(const char *s, size_t len)
{
	size_t i;

	if (len == 0 || len > 10 || s[0] == '0')
		return 0;
	for (i = 0; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return len < 10 || strncmp(s, "2147483647", 10) <= 0;
}

/* Whether s is a decimal integer that fits in 64 bits. */
static int
integer(const char *s)
{
	char *end;

	if (*s == '\0' || !(*s == '-' || (*s >= '0' && *s <= '9')))
		return 0;
	errno = 0;
	(void)strtoll(s, &end, 10);
	return *end == '\0' && errno == 0;
}

/* Total in cents, as a number with at most two decimals: 3000.0, 12.5. */
static void
put_total(struct sbuf *sb, const char *cents)
{
	long long c = strtoll(cents, NULL, 10);
	unsigned long long a = c < 0 ? 0ULL - (unsigned long long)c :
	    (unsigned long long)c;
	char buf[48];

	if (a % 100 == 0)
		snprintf(buf, sizeof(buf), "%s%llu.0", c < 0 ? "-" : "",
		    a / 100);
	else if (a % 10 == 0)
		snprintf(buf, sizeof(buf), "%s%llu.%llu", c < 0 ? "-" : "",
		    a / 100, a % 100 / 10);
	else
		snprintf(buf, sizeof(buf), "%s%llu.%02llu", c < 0 ? "-" : "",
		    a / 100, a % 100);
	sb_puts(sb, buf);
}

static void
print_client(redisReply *r)
{
	struct sbuf *sb = &out.out;
	redisReply **e = r->element;

	sb_puts(sb, "{\"name\":");
	sb_json_str(sb, e[0]->str, e[0]->len);
	sb_puts(sb, ",\"email\":");
	sb_json_str(sb, e[1]->str, e[1]->len);
	sb_puts(sb, ",\"total\":");
	put_total(sb, e[2]->str);
	sb_puts(sb, ",\"last_purchase\":");
	sb_put(sb, e[3]->str, e[3]->len);
	ndj_write(&out, "}", 1);
}

/* Send HMGET for each id of the batch, pipelined, then print in order. */
static void
lookup(char ids[][12], size_t n)
{
	redisReply *r;
	size_t i, k;

	for (i = 0; i < n; i++)
		redisAppendCommand(rc, "HMGET client:%s name email total "
		    "last_purchase", ids[i]);
	for (i = 0; i < n; i++) {
		r = NULL;
		if (redisGetReply(rc, (void **)&r) != REDIS_OK ||
		    r->type != REDIS_REPLY_ARRAY || r->elements != 4) {
			if (r == NULL || rc->err)
				warnx("redis: %s", rc->errstr);
			else
				warnx("redis: %s", r->type == REDIS_REPLY_ERROR ?
				    r->str : "unexpected reply to HMGET");
			status = rds_exit_code(rc, r);
			failure = 1;
			freeReplyObject(r);
			return;
		}
		for (k = 0; k < 4; k++)
			if (r->element[k]->type != REDIS_REPLY_STRING)
				break;
		if (k == 4 && (!integer(r->element[2]->str) ||
		    !integer(r->element[3]->str))) {
			warnx("client %s: malformed read model (%s is not an "
			    "integer)", ids[i], integer(r->element[2]->str) ?
			    "last_purchase" : "total");
			status = EX_DATAERR;
		} else if (k == 4)
			print_client(r);
		else if (r->element[0]->type == REDIS_REPLY_NIL &&
		    r->element[1]->type == REDIS_REPLY_NIL &&
		    r->element[2]->type == REDIS_REPLY_NIL &&
		    r->element[3]->type == REDIS_REPLY_NIL) {
			warnx("client %s: not found", ids[i]);
			if (status == 0)
				status = EX_NOTFOUND;
		} else {
			warnx("client %s: incomplete read model (field %s "
			    "missing)", ids[i], (const char *[]){ "name",
			    "email", "total", "last_purchase" }[k]);
			status = EX_DATAERR;
		}
		freeReplyObject(r);
	}
	if (ndj_flush(&out) < 0)
		failure = 1;
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "help", no_argument, NULL, 'h' },
		{ "password-file", required_argument, NULL, 'P' },
		{ "redis", required_argument, NULL, 'r' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	static char ids[MAX_BATCH][12];
	struct ndj_reader in;
	const char *url = NULL, *pass_file = NULL;
	char *line;
	size_t n = 0, len;
	int ch, ex, i, r;

	util_signals();
	while ((ch = getopt_long(argc, argv, "hP:r:V", longopts, NULL)) != -1) {
		switch (ch) {
		case 'P':
			pass_file = optarg;
			break;
		case 'r':
			url = optarg;
			break;
		case 'V':
			util_version();
			return 0;
		case 'h':
		default:
			usage();
		}
	}
	argc -= optind;
	argv += optind;

	if ((rc = rds_connect(url, pass_file, &ex)) == NULL)
		return ex;
	ndj_writer_init(&out, STDOUT_FILENO);

	if (argc > 0) {
		for (i = 0; i < argc && !failure; i++) {
			if (!valid_id(argv[i], strlen(argv[i]))) {
				warnx("%s: bad client id (want a positive "
				    "integer)", argv[i]);
				status = EX_DATAERR;
				continue;
			}
			memcpy(ids[n++], argv[i], strlen(argv[i]) + 1);
			if (n == MAX_BATCH) {
				lookup(ids, n);
				n = 0;
			}
		}
	} else {
		ndj_reader_init(&in, STDIN_FILENO, "stdin");
		while (!failure && !util_stop) {
			r = ndj_getline(&in, &line, &len);
			if (r == 0)
				break;
			if (r == -2) {
				if (!util_stop)
					status = EX_IOERR;
				break;
			}
			if (r == 1 && valid_id(line, len)) {
				memcpy(ids[n++], line, len + 1);
				if (n == MAX_BATCH || !ndj_more(&in)) {
					lookup(ids, n);
					n = 0;
				}
				continue;
			}
			if (r == 1)
				warnx("%s:%lu: bad client id (want a positive "
				    "integer)", in.name, in.lineno);
			status = EX_DATAERR;
		}
		ndj_reader_free(&in);
	}
	if (n > 0 && !failure)
		lookup(ids, n);

	if (ndj_flush(&out) < 0 && out.err != EPIPE) {
		errno = out.err;
		warn("stdout");
		status = EX_IOERR;
	}
	ndj_writer_free(&out);
	redisFree(rc);
	return status;
}
