/* api: the HTTP client (libcurl) for the AWS sample's API and cqrs-httpd: one kept-alive connection, Basic credentials, retries. */
#include <err.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sysexits.h>
#include <time.h>
#include <sys/random.h>

#include <curl/curl.h>
#include <jansson.h>

#include "api.h"
#include "ndj.h"
#include "util.h"

struct api {
	CURL		*curl;
	char		*base;		/* the URL, without a final "/" */
	char		*user;
	char		*pass;
	long		 timeout;	/* seconds for one attempt */
	char		 errbuf[CURL_ERROR_SIZE];
};

static size_t
on_body(char *data, size_t size, size_t n, void *arg)
{
	struct api_reply *r = arg;

	if (r->body.len + size * n > API_BODY_MAX)
		return 0;	/* libcurl fails with CURLE_WRITE_ERROR */
	sb_put(&r->body, data, size * n);
	return size * n;
}

static size_t
on_header(char *data, size_t size, size_t n, void *arg)
{
	struct api_reply *r = arg;
	size_t len = size * n;

	if (len > 12 && strncasecmp(data, "Retry-After:", 12) == 0)
		r->retry_after = strtol(data + 12, NULL, 10);
	if (len >= 25 && strncasecmp(data, "Idempotent-Replayed: true",
	    25) == 0)
		r->replayed = 1;
	return len;
}

/* Zero a secret before freeing it. */
static void
free_secret(char *s)
{
	if (s != NULL) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/*
 * An API client for url (http:// or https://, no credentials in it).
 * Credentials come from CQRS_API_AUTH (user:password) or, without it,
 * from ~/.netrc.  NULL after reporting with *ex set: 78 for a URL or
 * CQRS_API_AUTH that cannot be used (neither is quoted: either may hold a
 * secret), 70 if libcurl cannot start.
 */
struct api *
api_open(const char *url, int *ex)
{
	const char *auth = getenv("CQRS_API_AUTH"), *t, *colon, *at, *slash;
	struct api *a;
	size_t len;

	if (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) !=
	    0) {
		warnx("--api: want an http:// or https:// URL");
		*ex = EX_CONFIG;
		return NULL;
	}
	t = strstr(url, "://") + 3;
	slash = t + strcspn(t, "/?#");
	at = memchr(t, '@', (size_t)(slash - t));
	if (at != NULL) {
		warnx("--api: credentials in the URL are refused (they would "
		    "show in ps): use CQRS_API_AUTH or ~/.netrc");
		*ex = EX_CONFIG;
		return NULL;
	}
	if (slash == t || strpbrk(url, "?# \t\r\n") != NULL) {
		warnx("--api: want http[s]://HOST[:PORT][/PATH], with no "
		    "query or fragment");
		*ex = EX_CONFIG;
		return NULL;
	}
	if (auth != NULL && *auth != '\0' && ((colon = strchr(auth, ':')) ==
	    NULL || colon == auth)) {
		warnx("CQRS_API_AUTH: want user:password");
		*ex = EX_CONFIG;
		return NULL;
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		warnx("libcurl: cannot initialise");
		*ex = EX_SOFTWARE;
		return NULL;
	}
	a = xcalloc(1, sizeof(*a));
	if ((a->curl = curl_easy_init()) == NULL) {
		warnx("libcurl: cannot initialise");
		free(a);
		curl_global_cleanup();
		*ex = EX_SOFTWARE;
		return NULL;
	}
	a->base = xstrdup(url);
	len = strlen(a->base);
	while (len > 0 && a->base[len - 1] == '/')
		a->base[--len] = '\0';
	if (auth != NULL && *auth != '\0') {
		colon = strchr(auth, ':');
		a->user = xmalloc((size_t)(colon - auth) + 1);
		memcpy(a->user, auth, (size_t)(colon - auth));
		a->user[colon - auth] = '\0';
		a->pass = xstrdup(colon + 1);
	}
	a->timeout = 30;
	if ((t = getenv("CQRS_API_TIMEOUT")) != NULL && *t != '\0') {
		char *end;

		a->timeout = strtol(t, &end, 10);
		if (*end != '\0' || a->timeout < 1 || a->timeout > 3600) {
			warnx("CQRS_API_TIMEOUT: want seconds from 1 to 3600");
			api_close(a);
			*ex = EX_CONFIG;
			return NULL;
		}
	}
	return a;
}

void
api_close(struct api *a)
{
	if (a == NULL)
		return;
	curl_easy_cleanup(a->curl);
	free(a->base);
	free_secret(a->user);
	free_secret(a->pass);
	free(a);
	curl_global_cleanup();
}

void
api_reply_init(struct api_reply *r)
{
	memset(r, 0, sizeof(*r));
	sb_init(&r->body);
}

void
api_reply_free(struct api_reply *r)
{
	sb_free(&r->body);
}

/* A random key for the retries of one request: 32 hex digits. */
void
api_new_key(char *buf, size_t size)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char rnd[16];
	size_t i;

	if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd)) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		srandom((unsigned)(ts.tv_nsec ^ ts.tv_sec ^ getpid()));
		for (i = 0; i < sizeof(rnd); i++)
			rnd[i] = (unsigned char)random();
	}
	for (i = 0; i < sizeof(rnd) && 2 * i + 2 < size; i++) {
		buf[2 * i] = hex[rnd[i] >> 4];
		buf[2 * i + 1] = hex[rnd[i] & 15];
	}
	buf[2 * i] = '\0';
}

/*
 * The "statusCode" that the AWS sample puts in a 200's body: its Lambda
 * answers 200 with {"statusCode":500,...} when it failed.  0 if none.
 */
static long
body_status(const struct api_reply *r)
{
	json_t *j, *v;
	long st = 0;

	if ((j = json_loadb(r->body.buf, r->body.len, 0, NULL)) == NULL)
		return 0;
	v = json_object_get(j, "statusCode");
	if (json_is_integer(v))
		st = (long)json_integer_value(v);
	json_decref(j);
	return st;
}

/* Sleep ms milliseconds, or less if a signal asks the command to stop. */
static void
pause_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (!util_stop && nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/*
 * One request: method to the API's URL followed by path, with body (for
 * POST, as application/json) and an Idempotency-Key (if key is not NULL).
 * 429, 5xx, a 200 whose body says "statusCode" 5xx, and timeouts are
 * tried again, API_TRIES times in all, with growing pauses (or the
 * answer's Retry-After, up to 10 s).  Returns 0 with r->status set to the
 * final answer's status (a 200 with a statusCode in its body takes that
 * code); otherwise an exit code with r->error set: 69 the server cannot be
 * reached, 75 still 429, 5xx or no answer after the last attempt (r->status
 * is the last status, 0 for a timeout), 76 an answer that is not HTTP or
 * too long, 70 libcurl failed.
 */
int
api_call(struct api *a, const char *method, const char *path,
    const char *body, size_t len, const char *key, struct api_reply *r)
{
	struct curl_slist *hdr = NULL;
	struct sbuf url, line;
	CURLcode cc;
	long st, ms = 200;
	int attempt, rc = 0;

	sb_init(&url);
	sb_puts(&url, a->base);
	sb_puts(&url, path);
	sb_init(&line);
	hdr = curl_slist_append(hdr, "Accept: application/json");
	if (body != NULL)
		hdr = curl_slist_append(hdr, "Content-Type: application/json");
	if (key != NULL) {
		sb_puts(&line, "Idempotency-Key: ");
		sb_puts(&line, key);
		hdr = curl_slist_append(hdr, line.buf);
	}
	/* No "Expect: 100-continue": one round trip per order. */
	hdr = curl_slist_append(hdr, "Expect:");

	curl_easy_reset(a->curl);
	curl_easy_setopt(a->curl, CURLOPT_URL, url.buf);
	curl_easy_setopt(a->curl, CURLOPT_HTTPHEADER, hdr);
	curl_easy_setopt(a->curl, CURLOPT_USERAGENT, "cqrs-pipes/"
	    CQRS_VERSION);
	curl_easy_setopt(a->curl, CURLOPT_ERRORBUFFER, a->errbuf);
	curl_easy_setopt(a->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(a->curl, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(a->curl, CURLOPT_TIMEOUT, a->timeout);
	curl_easy_setopt(a->curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(a->curl, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(a->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(a->curl, CURLOPT_WRITEDATA, r);
	curl_easy_setopt(a->curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(a->curl, CURLOPT_HEADERDATA, r);
	if (a->user != NULL) {
		curl_easy_setopt(a->curl, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
		curl_easy_setopt(a->curl, CURLOPT_USERNAME, a->user);
		curl_easy_setopt(a->curl, CURLOPT_PASSWORD, a->pass);
	} else {
		curl_easy_setopt(a->curl, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
		curl_easy_setopt(a->curl, CURLOPT_NETRC, (long)CURL_NETRC_OPTIONAL);
	}
	if (body != NULL) {
		curl_easy_setopt(a->curl, CURLOPT_POST, 1L);
		curl_easy_setopt(a->curl, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(a->curl, CURLOPT_POSTFIELDSIZE, (long)len);
	} else if (strcmp(method, "GET") != 0)
		curl_easy_setopt(a->curl, CURLOPT_CUSTOMREQUEST, method);

	r->retried = 0;
	for (attempt = 1; ; attempt++) {
		r->status = 0;
		r->body.len = 0;
		r->body.buf[0] = '\0';
		r->error[0] = '\0';
		a->errbuf[0] = '\0';
		r->retry_after = -1;
		r->replayed = 0;
		cc = curl_easy_perform(a->curl);
		if (cc == CURLE_OK) {
			curl_easy_getinfo(a->curl, CURLINFO_RESPONSE_CODE, &st);
			r->status = st;
			if (st == 200 && (st = body_status(r)) >= 400)
				r->status = st;
			if (r->status != 429 && r->status < 500) {
				rc = 0;
				break;
			}
			snprintf(r->error, sizeof(r->error), "HTTP %ld: %s",
			    r->status, api_message(r));
			rc = EX_TEMPFAIL;
		} else if (cc == CURLE_COULDNT_CONNECT ||
		    cc == CURLE_COULDNT_RESOLVE_HOST ||
		    cc == CURLE_COULDNT_RESOLVE_PROXY ||
		    cc == CURLE_SSL_CONNECT_ERROR ||
		    cc == CURLE_PEER_FAILED_VERIFICATION) {
			snprintf(r->error, sizeof(r->error), "%s", *a->errbuf ?
			    a->errbuf : curl_easy_strerror(cc));
			rc = EX_UNAVAILABLE;
			break;
		} else if (cc == CURLE_OPERATION_TIMEDOUT ||
		    cc == CURLE_GOT_NOTHING || cc == CURLE_RECV_ERROR ||
		    cc == CURLE_SEND_ERROR || cc == CURLE_PARTIAL_FILE) {
			snprintf(r->error, sizeof(r->error), "no answer: %.255s",
			    *a->errbuf ? a->errbuf : curl_easy_strerror(cc));
			rc = EX_TEMPFAIL;
		} else if (cc == CURLE_WRITE_ERROR) {
			snprintf(r->error, sizeof(r->error), "the answer is "
			    "longer than %d bytes", API_BODY_MAX);
			rc = EX_PROTOCOL;
			break;
		} else if (cc == CURLE_WEIRD_SERVER_REPLY ||
		    cc == CURLE_UNSUPPORTED_PROTOCOL) {
			snprintf(r->error, sizeof(r->error), "%s", *a->errbuf ?
			    a->errbuf : curl_easy_strerror(cc));
			rc = EX_PROTOCOL;
			break;
		} else {
			snprintf(r->error, sizeof(r->error), "%s", *a->errbuf ?
			    a->errbuf : curl_easy_strerror(cc));
			rc = EX_SOFTWARE;
			break;
		}
		if (attempt >= API_TRIES || util_stop)
			break;
		r->retried++;
		if (r->retry_after >= 0)
			pause_ms(r->retry_after > 10 ? 10000 :
			    r->retry_after * 1000);
		else {
			unsigned int j;

			if (getrandom(&j, sizeof(j), 0) != sizeof(j))
				j = 0;
			pause_ms(ms + (long)(j % (unsigned)(ms / 2 + 1)));
			ms = ms * 2 > 5000 ? 5000 : ms * 2;
		}
	}
	curl_slist_free_all(hdr);
	sb_free(&url);
	sb_free(&line);
	return rc;
}

/*
 * What an answer says, for a message: its "message" field (API Gateway,
 * cqrs-httpd), or "body" when that is a string (the sample's Lambda), or
 * the body itself, on one line, cut at 200 bytes.
 */
const char *
api_message(const struct api_reply *r)
{
	static char buf[208];
	json_t *j, *v;
	size_t i;

	buf[0] = '\0';
	if ((j = json_loadb(r->body.buf, r->body.len, 0, NULL)) != NULL) {
		v = json_object_get(j, "message");
		if (!json_is_string(v))
			v = json_object_get(j, "body");
		if (json_is_string(v))
			snprintf(buf, sizeof(buf), "%s", json_string_value(v));
		json_decref(j);
	}
	if (buf[0] == '\0')
		snprintf(buf, sizeof(buf), "%.200s", r->body.len ? r->body.buf :
		    "(no body)");
	for (i = 0; buf[i] != '\0'; i++)
		if ((unsigned char)buf[i] < 0x20)
			buf[i] = ' ';
	return buf;
}
