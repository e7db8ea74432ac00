/* order-place: place orders read as JSON lines, each with its outbox row in one transaction. */
#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <libpq-fe.h>

#include "api.h"
#include "db.h"
#include "ndj.h"
#include "ord.h"
#include "prg.h"
#include "util.h"

#define MAX_BATCH	64		/* orders in flight in one pipeline */

static struct ndj_reader in;
static struct ndj_writer out;
static PGconn *conn;
static enum ord_path path;
static int keep_going;
static int verbose;
static unsigned long unwritten;		/* committed, result line not yet written */
static unsigned long unwritten_first, unwritten_last;
static struct prg prg;			/* --stats and SIGUSR1 */
static uint64_t placed, rejected;	/* orders committed, orders refused */

static const char synopsis[] =
    "usage: order-place [-hkvV] [--api url] [-d conninfo] [--stats seconds]\n";

static const char options[] =
    "      --api URL          place orders through an HTTP API (cqrs-httpd, the\n"
    "                         AWS sample's API Gateway) instead of PostgreSQL\n"
    "  -d, --dbname CONNINFO  the database (default: libpq's environment)\n"
    "  -h, --help             print this help and exit\n"
    "  -k, --keep-going       report a rejected order, go on (exit 65)\n"
    "      --stats SECONDS    print a line of progress this often\n"
    "  -v, --verbose          say how orders are placed (function or plain SQL)\n"
    "  -V, --version          print the version and exit\n";

/* A result line was buffered for the order of input line lineno. */
static void
note_unwritten(unsigned long lineno)
{
	placed++;
	if (unwritten++ == 0)
		unwritten_first = lineno;
	unwritten_last = lineno;
}

/*
 * Write out the buffered result lines.  0, or -1 when stdout failed: the
 * orders whose lines were lost are named (they are committed all the
 * same), and the caller stops reading.
 */
static int
flush_results(void)
{
	if (ndj_flush(&out) == 0) {
		unwritten = 0;
		return 0;
	}
	errno = out.err;
	if (unwritten > 0)
		warnx("stdout: %s: %lu committed order%s (input lines %lu to "
		    "%lu) without a result line", strerror(out.err), unwritten,
		    unwritten == 1 ? "" : "s", unwritten_first, unwritten_last);
	else
		warn("stdout");
	unwritten = 0;
	return -1;
}

/* Check one request: 0 if valid, -1 after reporting the line and the field. */
static int
validate(json_t *req, struct ord *o)
{
	char err[256];

	if (ord_check(req, o, err, sizeof(err)) == 0)
		return 0;
	warnx("%s:%lu: %s", in.name, in.lineno, err);
	return -1;
}

/* Name what the database did not know about a rejected order. */
static void
report_rejected(struct ord *o, PGresult *res)
{
	char msg[512];

	ord_rejected(conn, o, res, msg, sizeof(msg));
	warnx("%s:%lu: %s", in.name, o->lineno, msg);
}

/* Buffer the result line of a committed order: its fields and its line. */
static void
print_committed(const struct ord *o, const PGresult *place)
{
	struct ord_result r;
	struct sbuf *sb = &out.out;

	ord_result(place, &r);
	sb_putc(sb, '{');
	ord_result_json(sb, o, &r);
	sb_puts(sb, ",\"line\":");
	sb_u64(sb, o->lineno);
	note_unwritten(o->lineno);
	ndj_write(&out, "}", 1);
}

/*
 * Send the batch in one pipeline (BEGIN, the order, COMMIT for each, one
 * sync), then read the results in order.  An order counts as placed only
 * once its COMMIT has succeeded.  A failed order aborts the rest of the
 * pipeline, so the orders after it are not executed: they are moved to
 * the front of the batch and *n says how many are left to send again.
 * Returns 0, the exit code for a rejected order (65 for bad data), or 69
 * when the connection was lost (every order not known to have committed
 * is reported as not committed).
 */
static int
run_batch(struct ord *batch, size_t *n)
{
	PGresult *r[3], *err = NULL, *res;
	size_t i, done = 0, failed = *n;
	int step, rc = 0, sent = 0;

	/* A server that hung up while we were idle has said so already. */
	for (i = 0; i < 4 && PQstatus(conn) == CONNECTION_OK &&
	    poll(&(struct pollfd){ PQsocket(conn), POLLIN, 0 }, 1, 0) > 0; i++)
		PQconsumeInput(conn);
	if (PQstatus(conn) != CONNECTION_OK ||
	    PQenterPipelineMode(conn) != 1)
		goto lost;
	sent = 1;
	for (i = 0; i < *n; i++)
		if (ord_send(conn, path, &batch[i]) < 0)
			goto lost;
	if (PQpipelineSync(conn) != 1)
		goto lost;

	for (i = 0; i < *n; i++) {
		for (step = 0; step < 3; step++) {
			r[step] = PQgetResult(conn);
			if (r[step] == NULL || PQgetResult(conn) != NULL) {
				while (step >= 0)
					PQclear(r[step--]);
				goto lost;
			}
		}
		if (PQresultStatus(r[0]) == PGRES_COMMAND_OK &&
		    PQresultStatus(r[1]) == PGRES_TUPLES_OK &&
		    PQntuples(r[1]) == 1 &&
		    PQresultStatus(r[2]) == PGRES_COMMAND_OK) {
			print_committed(&batch[i], r[1]);
			done = i + 1;
		} else if (failed == *n) {
			failed = i;
			for (step = 0; step < 3; step++)
				if (PQresultStatus(r[step]) ==
				    PGRES_FATAL_ERROR && err == NULL) {
					err = r[step];
					r[step] = NULL;
				}
		}
		for (step = 0; step < 3; step++)
			PQclear(r[step]);
	}
	res = PQgetResult(conn);
	if (res == NULL || PQresultStatus(res) != PGRES_PIPELINE_SYNC) {
		PQclear(res);
		goto lost;
	}
	PQclear(res);
	if (PQexitPipelineMode(conn) != 1)
		goto lost;
	if (failed == *n) {
		*n = 0;
		return 0;
	}

	rc = err ? db_exit_code(err, conn) : EX_SOFTWARE;
	if (rc == EX_UNAVAILABLE)
		goto lost;
	/* The sync does not end the failed order's BEGIN block. */
	res = PQexec(conn, "ROLLBACK");
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		PQclear(res);
		goto lost;
	}
	PQclear(res);
	if (err != NULL)
		report_rejected(&batch[failed], err);
	else
		warnx("%s:%lu: not committed", in.name, batch[failed].lineno);
	PQclear(err);
	/* Keep the orders the abort skipped, to send them again. */
	for (i = failed + 1; i < *n; i++) {
		struct ord tmp = batch[i - failed - 1];

		batch[i - failed - 1] = batch[i];
		batch[i] = tmp;
	}
	*n -= failed + 1;
	return rc;

lost:
	/*
	 * An order sent without its COMMIT's reply may or may not have
	 * committed; no success line is printed for it either way.
	 */
	PQclear(err);
	warnx("database: %s", db_message(NULL, conn));
	for (i = done; i < *n; i++)
		warnx("%s:%lu: %s", in.name, batch[i].lineno, sent ?
		    "connection lost before the commit was confirmed: the "
		    "order may or may not exist" :
		    "not committed: connection lost");
	*n = 0;
	return EX_UNAVAILABLE;
}

/*
 * Wait for input, printing progress lines meanwhile (a read would sleep
 * through SIGUSR1).  An order is read at once when one is waiting.
 * Returns nonzero when a stop signal came.
 */
static int
await_input(void)
{
	struct pollfd pfd = { STDIN_FILENO, POLLIN, 0 };
	int rc;

	while (!ndj_more(&in) && !util_stop) {
		prg_tick(&prg);
		rc = poll(&pfd, 1, prg_timeout(&prg, -1));
		if (rc > 0 || (rc < 0 && errno != EINTR))
			break;
	}
	prg_tick(&prg);
	return util_stop != 0;
}

/* One order line through the API: 0, or the exit code after reporting. */
static int
api_order(struct api *api, struct ord *o)
{
	struct api_reply r;
	struct sbuf body;
	json_t *j = NULL;
	const char *p, *q;
	char key[40], *line;
	int rc;

	/* The sample's body, rebuilt from the checked order. */
	sb_init(&body);
	sb_puts(&body, "{\"id_client\":");
	sb_i64(&body, o->id_client);
	sb_puts(&body, ",\"products\":[");
	for (p = o->pids.buf + 1, q = o->qtys.buf + 1; *p != '}';) {
		sb_puts(&body, p == o->pids.buf + 1 ? "{\"id_product\":" :
		    ",{\"id_product\":");
		sb_put(&body, p, strcspn(p, ",}"));
		sb_puts(&body, ",\"quantity\":");
		sb_put(&body, q, strcspn(q, ",}"));
		sb_putc(&body, '}');
		p += strcspn(p, ",}");
		q += strcspn(q, ",}");
		p += *p == ',';
		q += *q == ',';
	}
	sb_puts(&body, "]}");
	/* Retries of this order carry one key, its request_id if it has one. */
	if (o->key[0] == '\0')
		api_new_key(key, sizeof(key));
	api_reply_init(&r);
	rc = api_call(api, "POST", "/orders", body.buf, body.len,
	    o->key[0] != '\0' ? o->key : key, &r);
	sb_free(&body);
	if (rc != 0) {
		warnx("%s:%lu: %s%s", in.name, o->lineno, r.error,
		    rc == EX_TEMPFAIL ? ": the order may or may not exist "
		    "(retry it with a request_id)" : "");
		goto done;
	}
	if (r.status >= 200 && r.status < 300) {
		j = json_loadb(r.body.buf, r.body.len, 0, NULL);
		if (!json_is_object(j)) {
			json_decref(j);
			j = json_object();
		}
		json_object_del(j, "statusCode");
		json_object_del(j, "body");
		if (json_object_get(j, "id_client") == NULL)
			json_object_set_new(j, "id_client",
			    json_integer(o->id_client));
		/* As order-place prints it: the key only if the line had one. */
		if (o->key[0] == '\0')
			json_object_del(j, "request_id");
		else if (json_object_get(j, "request_id") == NULL)
			json_object_set_new(j, "request_id", json_string(o->key));
		if (r.replayed)
			json_object_set_new(j, "replayed", json_true());
		json_object_set_new(j, "line", json_integer((json_int_t)o->lineno));
		line = json_dumps(j, JSON_COMPACT | JSON_REAL_PRECISION(15));
		json_decref(j);
		if (line == NULL) {
			warnx("%s:%lu: out of memory", in.name, o->lineno);
			rc = EX_OSERR;
			goto done;
		}
		note_unwritten(o->lineno);
		ndj_write(&out, line, strlen(line));
		free(line);
		goto done;
	}
	warnx("%s:%lu: HTTP %ld: %s", in.name, o->lineno, r.status,
	    api_message(&r));
	if (r.status == 401 || r.status == 403)
		rc = EX_NOPERM;
	else if (r.status >= 400 && r.status < 500)
		rc = EX_DATAERR;
	else
		rc = EX_PROTOCOL;
done:
	api_reply_free(&r);
	return rc;
}

/* order-place --api: one order at a time, on one kept-alive connection. */
static int
run_api(const char *url)
{
	struct api *api;
	struct ord o;
	json_t *req;
	int rc, status = 0, bad = 0;

	if ((api = api_open(url, &rc)) == NULL)
		return rc;
	if (verbose)
		warnx("placing orders through the HTTP API");
	ord_init(&o);
	while (status == 0 && !util_stop) {
		if (await_input() != 0)
			break;
		rc = ndj_read(&in, &req);
		if (rc == 0)
			break;
		if (rc == -2) {
			if (!util_stop)
				status = EX_IOERR;
			break;
		}
		if (rc == 1) {
			o.lineno = in.lineno;
			rc = validate(req, &o) == 0 ? 1 : -1;
			json_decref(req);
		}
		if (rc == 1)
			rc = api_order(api, &o);
		else
			rc = EX_DATAERR;
		if (rc == EX_DATAERR) {
			bad = 1;
			rejected++;
			if (!keep_going)
				break;
		} else if (rc != 0)
			status = rc;
		/* A result line per order, as soon as it is known. */
		if ((!ndj_more(&in) || rc != 0) && flush_results() < 0) {
			status = EX_IOERR;
			break;
		}
	}
	if (status != EX_IOERR && flush_results() < 0)
		status = EX_IOERR;
	ord_free(&o);
	api_close(api);
	return status == 0 && bad ? EX_DATAERR : status;
}

int
main(int argc, char *argv[])
{
	enum { OPT_STATS = 256 };
	static const struct option longopts[] = {
		{ "api", required_argument, NULL, 'A' },
		{ "dbname", required_argument, NULL, 'd' },
		{ "help", no_argument, NULL, 'h' },
		{ "keep-going", no_argument, NULL, 'k' },
		{ "stats", required_argument, NULL, OPT_STATS },
		{ "verbose", no_argument, NULL, 'v' },
		{ "version", no_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 }
	};
	struct ord batch[MAX_BATCH];
	const char *conninfo = NULL, *url = NULL;
	char msg[512];
	json_t *req;
	size_t n = 0, i;
	int64_t every = 0;
	int ch, rc, status = 0, bad = 0, eof = 0;

	util_signals();
	while ((ch = getopt_long(argc, argv, "d:hkvV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'A':
			url = optarg;
			break;
		case 'd':
			conninfo = optarg;
			break;
		case 'k':
			keep_going = 1;
			break;
		case OPT_STATS:
			every = prg_option(optarg);
			break;
		case 'v':
			verbose = 1;
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
	if (optind != argc || (url != NULL && conninfo != NULL))
		util_usage(synopsis);

	prg_init(&prg, every);
	prg_counter(&prg, "placed", &placed);
	prg_counter(&prg, "rejected", &rejected);
	ndj_reader_init(&in, STDIN_FILENO, "stdin");
	ndj_writer_init(&out, STDOUT_FILENO);
	if (url != NULL) {
		status = run_api(url);
		goto end;
	}
	if ((conn = db_connect(conninfo, 0, &rc)) == NULL) {
		status = rc;
		goto end;
	}
	if ((rc = ord_prepare(conn, &path, msg, sizeof(msg))) != 0) {
		warnx("%s", msg);
		status = rc;
		goto end;
	}
	if (verbose)
		warnx("placing orders through %s", ord_path_name(path));

	for (i = 0; i < MAX_BATCH; i++)
		ord_init(&batch[i]);

	while (!eof && status == 0 && !util_stop) {
		/* Fill the batch with what is already waiting on stdin. */
		while (n < MAX_BATCH && !util_stop) {
			if (n > 0 && !ndj_more(&in))
				break;
			if (n == 0 && await_input() != 0)
				break;
			rc = ndj_read(&in, &req);
			if (rc == 0 || rc == -2) {
				eof = 1;
				if (rc == -2 && !util_stop)
					status = EX_IOERR;
				break;
			}
			if (rc == 1) {
				batch[n].lineno = in.lineno;
				rc = validate(req, &batch[n]) == 0 ? 1 : -1;
				json_decref(req);
			}
			if (rc == 1 && path == ORD_PLAIN &&
			    batch[n].key[0] != '\0') {
				warnx("%s:%lu: request_id: this database has no "
				    "cqrs_place_order() to keep it (install "
				    "scripts/schema.sql)", in.name, in.lineno);
				status = EX_CONFIG;
				eof = 1;
				break;
			}
			if (rc == 1) {
				n++;
				continue;
			}
			bad = 1;
			rejected++;
			if (!keep_going)
				eof = 1;
			break;
		}
		/* Rejected orders leave the rest of the batch to resend. */
		while (n > 0) {
			rc = run_batch(batch, &n);
			if (rc == EX_DATAERR) {
				bad = 1;
				rejected++;
				if (!keep_going) {
					n = 0;
					eof = 1;
				}
			} else if (rc != 0) {
				/* The rest of the batch never ran: say so. */
				for (i = 0; i < n; i++)
					warnx("%s:%lu: not committed", in.name,
					    batch[i].lineno);
				status = rc;
				n = 0;
			}
		}
		if (flush_results() < 0) {
			status = EX_IOERR;
			break;
		}
	}
	for (i = 0; i < MAX_BATCH; i++)
		ord_free(&batch[i]);

end:
	if (status != EX_IOERR && flush_results() < 0)
		status = EX_IOERR;
	ndj_writer_free(&out);
	ndj_reader_free(&in);
	PQfinish(conn);
	if (status == 0 && bad)
		status = EX_DATAERR;
	return util_exit(status);
}
