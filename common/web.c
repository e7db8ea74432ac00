/* web: HTTP requests over libcurl's multi interface, several in flight, connections kept alive. */
#include <err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "ndj.h"
#include "util.h"
#include "web.h"

#define CONNECT_MS	5000

int
web_init(struct web *w)
{
	static int global;

	if (!global) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			warnx("libcurl: cannot initialise");
			return -1;
		}
		global = 1;
	}
	memset(w, 0, sizeof(*w));
	if ((w->m = curl_multi_init()) == NULL) {
		warnx("libcurl: cannot make a multi handle");
		return -1;
	}
	return 0;
}

void
web_free(struct web *w)
{
	if (w->m != NULL)
		curl_multi_cleanup(w->m);
	w->m = NULL;
}

static size_t
on_body(char *p, size_t size, size_t n, void *arg)
{
	struct web_req *r = arg;

	sb_put(&r->resp, p, size * n);
	return size * n;
}

/* Keep the x-amzn-query-error header: "Code;Sender". */
static size_t
on_header(char *p, size_t size, size_t n, void *arg)
{
	static const char name[] = "x-amzn-query-error:";
	struct web_req *r = arg;
	size_t len = size * n, i, k;

	if (len > sizeof(name) - 1 && strncasecmp(p, name, sizeof(name) - 1)
	    == 0) {
		for (i = sizeof(name) - 1; i < len && p[i] == ' '; i++)
			;
		for (k = 0; i < len && p[i] != ';' && p[i] != '\r' &&
		    p[i] != '\n' && k < sizeof(r->qerr) - 1; i++)
			r->qerr[k++] = p[i];
		r->qerr[k] = '\0';
	}
	return len;
}

struct web_req *
web_req_new(void)
{
	struct web_req *r = xcalloc(1, sizeof(*r));

	if ((r->h = curl_easy_init()) == NULL)
		errx(EX_OSERR, "libcurl: cannot make a handle");
	sb_init(&r->body);
	sb_init(&r->resp);
	return r;
}

void
web_req_free(struct web_req *r)
{
	if (r == NULL)
		return;
	curl_easy_cleanup(r->h);
	curl_slist_free_all(r->hdr);
	/* A body may hold credentials of a kind: never leave it in freed memory. */
	explicit_bzero(r->body.buf, r->body.cap);
	sb_free(&r->body);
	sb_free(&r->resp);
	free(r);
}

/*
 * Make r a POST of its body to url, with a timeout of timeout_ms.  The
 * handle keeps its connection between uses (keep-alive); headers added
 * before are dropped.
 */
void
web_req_post(struct web_req *r, const char *url, long timeout_ms)
{
	CURL *h = r->h;

	curl_easy_reset(h);
	curl_slist_free_all(r->hdr);
	r->hdr = NULL;
	r->resp.len = 0;
	r->resp.buf[0] = '\0';
	r->qerr[0] = '\0';
	r->err[0] = '\0';
	r->status = 0;
	r->cc = 0;
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_POST, 1L);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, r->body.buf);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
	    (curl_off_t)r->body.len);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, r);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, r->err);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)CONNECT_MS);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	/* The body goes at once: no "Expect: 100-continue" wait. */
	curl_easy_setopt(h, CURLOPT_EXPECT_100_TIMEOUT_MS, 0L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(h, CURLOPT_PRIVATE, r);
}

void
web_req_header(struct web_req *r, const char *line)
{
	struct curl_slist *l;

	if ((l = curl_slist_append(r->hdr, line)) == NULL)
		errx(EX_OSERR, "libcurl: out of memory");
	r->hdr = l;
}

int
web_start(struct web *w, struct web_req *r)
{
	curl_easy_setopt(r->h, CURLOPT_HTTPHEADER, r->hdr);
	if (curl_multi_add_handle(w->m, r->h) != CURLM_OK) {
		warnx("libcurl: cannot start a request");
		return -1;
	}
	r->busy = 1;
	w->running++;
	return 0;
}

/*
 * Move the transfers on, waiting up to ms for something to happen on
 * them or on the extra descriptors.  0, or -1 (reported).
 */
int
web_wait(struct web *w, int ms, struct curl_waitfd *extra, unsigned nextra)
{
	int still;

	if (curl_multi_perform(w->m, &still) != CURLM_OK ||
	    curl_multi_poll(w->m, extra, nextra, ms, NULL) != CURLM_OK ||
	    curl_multi_perform(w->m, &still) != CURLM_OK) {
		warnx("libcurl: the transfer loop failed");
		return -1;
	}
	return 0;
}

/* A finished request, taken out of the multi handle, or NULL. */
struct web_req *
web_done(struct web *w)
{
	struct web_req *r;
	CURLMsg *msg;
	int left;

	while ((msg = curl_multi_info_read(w->m, &left)) != NULL) {
		if (msg->msg != CURLMSG_DONE)
			continue;
		curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
		    (char **)&r);
		r->cc = msg->data.result;
		curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &r->status);
		curl_multi_remove_handle(w->m, r->h);
		r->busy = 0;
		w->running--;
		if (r->cc != CURLE_OK && r->err[0] == '\0')
			snprintf(r->err, sizeof(r->err), "%s",
			    curl_easy_strerror((CURLcode)r->cc));
		return r;
	}
	return NULL;
}

/* Run one request to its end, blocking.  0, or -1 if no answer came. */
int
web_perform(struct web_req *r)
{
	curl_easy_setopt(r->h, CURLOPT_HTTPHEADER, r->hdr);
	r->cc = curl_easy_perform(r->h);
	curl_easy_getinfo(r->h, CURLINFO_RESPONSE_CODE, &r->status);
	if (r->cc != CURLE_OK && r->err[0] == '\0')
		snprintf(r->err, sizeof(r->err), "%s",
		    curl_easy_strerror((CURLcode)r->cc));
	return r->cc == CURLE_OK ? 0 : -1;
}

/* Whether the request got no HTTP answer (refused, reset, timed out). */
int
web_failed_transport(const struct web_req *r)
{
	return r->cc != CURLE_OK;
}
