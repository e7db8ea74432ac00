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
#include <jansson.h>

#include "api.h"
#include "ndj.h"
#include "rds.h"
#include "rmd.h"
#include "util.h"

#define EX_NOTFOUND	1
#define MAX_BATCH	256

static redisContext *rc;
static struct ndj_writer out;
static int status;
static int failure;		/* a server or output error: stop */

static const char synopsis[] =
    "usage: client-get [-hV] [-P password-file] [-r url] [id ...]\n"
    "       client-get [-hV] [-P password-file] [-r url] --all\n"
    "       client-get [-hV] --api url [id ...]\n";

static const char options[] =
    "      --all                 every client in the read model, by id\n"
    "      --api URL             read through an HTTP API (cqrs-httpd, the AWS\n"
    "                            sample's API Gateway) instead of Redis\n"
    "  -h, --help                print this help and exit\n"
    "  -P, --password-file FILE  the Redis password, from a file\n"
    "  -r, --redis URL           the Redis server (default $REDIS_URL)\n"
    "  -V, --version             print the version and exit\n";

static void
set_status(int st)
{
	/* Bad data (65) outranks "not found" (1); failures stop the run. */
	if (status == 0 || (status == EX_NOTFOUND && st != 0))
		status = st;
}

/* Send HMGET for each id of the batch, pipelined, then print in order. */
static void
lookup(char ids[][12], size_t n)
{
	redisReply *r;
	char err[256];
	size_t i;
	int k;

	for (i = 0; i < n; i++)
		redisAppendCommand(rc, RMD_HMGET, ids[i]);
	for (i = 0; i < n; i++) {
		r = NULL;
		if (redisGetReply(rc, (void **)&r) != REDIS_OK || r == NULL) {
			warnx("redis: %s", rc->errstr);
			status = rds_exit_code(rc, r);
			failure = 1;
			freeReplyObject(r);
			return;
		}
		k = rmd_format(&out.out, ids[i], r, err, sizeof(err));
		if (k == 0)
			ndj_write(&out, "", 0);
		else if (k == 1) {
			warnx("client %s: not found", ids[i]);
			set_status(EX_NOTFOUND);
		} else if (k == -1) {
			warnx("%s", err);
			set_status(EX_DATAERR);
		} else {
			warnx("%s", err);
			status = rds_exit_code(rc, r);
			failure = 1;
			freeReplyObject(r);
			return;
		}
		freeReplyObject(r);
	}
	if (ndj_flush(&out) < 0)
		failure = 1;
}

/* A bad id: its value, quoted, and where it came from. */
static void
bad_id(const char *where, const char *s, size_t len)
{
	struct sbuf q;

	sb_init(&q);
	rmd_quote(&q, s, len);
	if (where != NULL)
		warnx("%s: bad client id %s (want a positive integer)", where,
		    q.buf);
	else
		warnx("bad client id %s (want a positive integer)", q.buf);
	sb_free(&q);
	set_status(EX_DATAERR);
}

static int
cmp_id(const void *a, const void *b)
{
	unsigned long x = *(const unsigned long *)a;
	unsigned long y = *(const unsigned long *)b;

	return x < y ? -1 : x > y;
}

/*
 * --all: every key client:ID (ID as client-get takes it) that SCAN finds,
 * printed in increasing id order.  Keys that are not a client's read model
 * (another name under client:) are left out.
 */
static void
list_all(char ids[][12])
{
	unsigned long *all = NULL;
	size_t n = 0, cap = 0, i, k, b;
	char cursor[32] = "0";
	redisReply *r;

	do {
		r = redisCommand(rc, "SCAN %s MATCH client:* COUNT 1000",
		    cursor);
		if (r == NULL || r->type != REDIS_REPLY_ARRAY ||
		    r->elements != 2 ||
		    r->element[0]->type != REDIS_REPLY_STRING ||
		    r->element[1]->type != REDIS_REPLY_ARRAY) {
			warnx("redis: %s", r == NULL ? rc->errstr :
			    r->type == REDIS_REPLY_ERROR ? r->str :
			    "unexpected reply to SCAN");
			status = rds_exit_code(rc, r);
			failure = 1;
			freeReplyObject(r);
			free(all);
			return;
		}
		snprintf(cursor, sizeof(cursor), "%s", r->element[0]->str);
		for (i = 0; i < r->element[1]->elements; i++) {
			redisReply *key = r->element[1]->element[i];

			if (key->type != REDIS_REPLY_STRING || key->len < 8 ||
			    !rmd_valid_id(key->str + 7, key->len - 7))
				continue;
			if (n == cap) {
				cap = cap ? cap * 2 : 1024;
				all = xrealloc(all, cap * sizeof(*all));
			}
			all[n++] = strtoul(key->str + 7, NULL, 10);
		}
		freeReplyObject(r);
	} while (strcmp(cursor, "0") != 0 && !util_stop);
	if (util_stop) {
		free(all);
		return;
	}
	if (n > 0)
		qsort(all, n, sizeof(*all), cmp_id);
	for (i = 0, b = 0; i < n && !failure; i++) {
		if (i > 0 && all[i] == all[i - 1])
			continue;	/* SCAN may return a key twice */
		snprintf(ids[b++], 12, "%lu", all[i]);
		if (b == MAX_BATCH) {
			lookup(ids, b);
			b = 0;
		}
	}
	k = b;
	if (k > 0 && !failure)
		lookup(ids, k);
	free(all);
}

/* --api: GET /clients/{id}; 0 or an exit code that stops the run. */
static int
api_client(struct api *api, const char *id)
{
	struct api_reply r;
	struct sbuf path;
	json_t *j;
	char *line;
	int ex;

	sb_init(&path);
	sb_puts(&path, "/clients/");
	sb_puts(&path, id);
	api_reply_init(&r);
	ex = api_call(api, "GET", path.buf, NULL, 0, NULL, &r);
	sb_free(&path);
	if (ex != 0) {
		warnx("client %s: %s", id, r.error);
		goto done;
	}
	if (r.status == 200) {
		j = json_loadb(r.body.buf, r.body.len, JSON_REJECT_DUPLICATES,
		    NULL);
		if (!json_is_object(j)) {
			warnx("client %s: the answer is not a JSON object", id);
			json_decref(j);
			ex = EX_PROTOCOL;
			goto done;
		}
		if (json_object_get(j, "id_client") == NULL)
			json_object_set_new(j, "id_client",
			    json_integer(strtol(id, NULL, 10)));
		line = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15));
		json_decref(j);
		if (line != NULL)
			ndj_write(&out, line, strlen(line));
		free(line);
	} else if (r.status == 404) {
		warnx("client %s: not found", id);
		set_status(EX_NOTFOUND);
	} else {
		warnx("client %s: HTTP %ld: %s", id, r.status, api_message(&r));
		if (r.status == 401 || r.status == 403)
			ex = EX_NOPERM;
		else if (r.status >= 400 && r.status < 500)
			set_status(EX_DATAERR);
		else
			ex = EX_PROTOCOL;
	}
done:
	api_reply_free(&r);
	return ex;
}

/* Read ids from operands or stdin (see main); look up each batch. */
static void
run(int argc, char *argv[], struct api *api, char ids[][12])
{
	struct ndj_reader in;
	size_t n = 0, len;
	char *line, where[48];
	int i, r, ex;

	for (i = 0; i < argc || argc == 0; i++) {
		if (argc > 0) {
			line = argv[i];
			len = strlen(line);
			where[0] = '\0';
		} else {
			if (i == 0)
				ndj_reader_init(&in, STDIN_FILENO, "stdin");
			r = ndj_getline(&in, &line, &len);
			if (r == 0)
				break;
			if (r == -2) {
				if (!util_stop)
					status = EX_IOERR;
				break;
			}
			if (r < 0) {
				set_status(EX_DATAERR);
				continue;
			}
			if (ndj_blank(line, len))
				continue;	/* as jq skips them */
			snprintf(where, sizeof(where), "%s:%lu", in.name,
			    in.lineno);
		}
		if (failure || util_stop)
			break;
		if (!rmd_valid_id(line, len)) {
			bad_id(where[0] ? where : NULL, line, len);
			continue;
		}
		if (api != NULL) {
			if ((ex = api_client(api, line)) != 0) {
				status = ex;
				failure = 1;
			} else if ((argc > 0 || !ndj_more(&in)) &&
			    ndj_flush(&out) < 0)
				failure = 1;
			continue;
		}
		memcpy(ids[n++], line, len + 1);
		if (n == MAX_BATCH || (argc == 0 && !ndj_more(&in))) {
			lookup(ids, n);
			n = 0;
		}
	}
	if (n > 0 && !failure)
		lookup(ids, n);
	if (argc == 0 && i > 0)
		ndj_reader_free(&in);
}

int
main(int argc, char *argv[])
{
	static const struct option longopts[] = {
		{ "all", no_argument, NULL, 'a' },
		{ "api", required_argument, NULL, 'A' },
		{ "help", no_argument, NULL, 'h' },
		{ "password-file", required_argument, NULL, 'P' },
		{ "redis", required_argument, NULL, 'r' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	static char ids[MAX_BATCH][12];
	const char *url = NULL, *pass_file = NULL, *api_url = NULL;
	struct api *api = NULL;
	int ch, ex, all = 0;

	util_signals();
	while ((ch = getopt_long(argc, argv, "hP:r:V", longopts, NULL)) != -1) {
		switch (ch) {
		case 'a':
			all = 1;
			break;
		case 'A':
			api_url = optarg;
			break;
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
			util_help(synopsis, options);
		default:
			util_usage(synopsis);
		}
	}
	argc -= optind;
	argv += optind;
	if ((all && (argc > 0 || api_url != NULL)) ||
	    (api_url != NULL && (url != NULL || pass_file != NULL)))
		util_usage(synopsis);

	if (api_url != NULL) {
		if ((api = api_open(api_url, &ex)) == NULL)
			return ex;
	} else if ((rc = rds_connect(url, pass_file, &ex)) == NULL)
		return ex;
	ndj_writer_init(&out, STDOUT_FILENO);

	if (all)
		list_all(ids);
	else
		run(argc, argv, api, ids);

	if (ndj_flush(&out) < 0 && out.err != EPIPE) {
		errno = out.err;
		warn("stdout");
		status = EX_IOERR;
	}
	ndj_writer_free(&out);
	if (rc != NULL)
		redisFree(rc);
	api_close(api);
	return util_exit(status);
}
