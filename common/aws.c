/* aws: AWS configuration as the SDKs read it (environment, shared files, container, IMDSv2), endpoints, SigV4 through libcurl. */
#include <ctype.h>
#include <err.h>
#include <errno.h>
#include <fcntl.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <jansson.h>

#include "aws.h"
#include "ndj.h"
#include "util.h"
#include "web.h"

#define FILE_MAX	(1024 * 1024)	/* longest config or token file */
#define CONT_HOST	"http://169.254.170.2"
#define IMDS_HOST	"http://169.254.169.254"
#define IMDS_TTL	"21600"
#define FETCH_MS	5000		/* container endpoint timeout */
#define IMDS_MS		2000		/* instance metadata timeout */

const char *
aws_src_name(int src)
{
	switch (src) {
	case AWS_SRC_ENV:	return "environment";
	case AWS_SRC_PROFILE:	return "shared files";
	case AWS_SRC_CONTAINER:	return "container credentials";
	case AWS_SRC_IMDS:	return "instance metadata";
	}
	return "none";
}

/* An environment variable, or NULL when unset or empty. */
static const char *
env(const char *name)
{
	const char *v = getenv(name);

	return v != NULL && *v != '\0' ? v : NULL;
}

static int
env_true(const char *name)
{
	const char *v = env(name);

	return v != NULL && strcasecmp(v, "true") == 0;
}

/* Printable ASCII without spaces: a key, secret or token that fits a header. */
static int
token_ok(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (*s <= ' ' || *s > '~')
			return 0;
	return 1;
}

/*
 * Read a whole file of at most FILE_MAX bytes.  1 with *buf (NUL-
 * terminated, the caller frees it), 0 when it does not exist, -1 on an
 * error (reported).
 */
static int
slurp(const char *path, char **buf, size_t *len)
{
	struct sbuf sb;
	char chunk[8192];
	ssize_t n;
	int fd;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		if (errno == ENOENT)
			return 0;
		warn("%s", path);
		return -1;
	}
	sb_init(&sb);
	while ((n = read(fd, chunk, sizeof(chunk))) != 0) {
		if (n < 0) {
			if (errno == EINTR)
				continue;
			warn("%s", path);
			goto fail;
		}
		sb_put(&sb, chunk, (size_t)n);
		if (sb.len > FILE_MAX) {
			warnx("%s: longer than %d bytes", path, FILE_MAX);
			goto fail;
		}
	}
	close(fd);
	explicit_bzero(chunk, sizeof(chunk));
	*buf = sb.buf;
	*len = sb.len;
	return 1;
fail:
	close(fd);
	explicit_bzero(sb.buf, sb.cap);
	sb_free(&sb);
	return -1;
}

static char *
trimmed(const char *s, size_t n)
{
	char *r;

	while (n > 0 && isspace((unsigned char)*s)) {
		s++;
		n--;
	}
	while (n > 0 && isspace((unsigned char)s[n - 1]))
		n--;
	r = xmalloc(n + 1);
	memcpy(r, s, n);
	r[n] = '\0';
	return r;
}

void
aws_ini_free(struct aws_ini *ini)
{
	size_t i;

	for (i = 0; i < ini->n; i++) {
		free(ini->e[i].section);
		free(ini->e[i].key);
		free(ini->e[i].sub);
		if (ini->e[i].value != NULL) {
			explicit_bzero(ini->e[i].value, strlen(ini->e[i].value));
			free(ini->e[i].value);
		}
	}
	free(ini->e);
	ini->e = NULL;
	ini->n = 0;
}

/* A section name with its inner blanks collapsed: "profile   x" -> "profile x". */
static char *
section_name(const char *s, size_t n)
{
	char *t = trimmed(s, n), *p, *q;
	int blank = 0;

	for (p = q = t; *p != '\0'; p++) {
		if (*p == ' ' || *p == '\t') {
			blank = 1;
			continue;
		}
		if (blank && q != t)
			*q++ = ' ';
		blank = 0;
		*q++ = *p;
	}
	*q = '\0';
	return t;
}

/*
 * Parse a shared config or credentials file: "[section]" lines,
 * "key = value" properties, and indented "sub = value" lines under a
 * property with an empty value (as in "sqs =" of a services section).
 * Whole-line comments start with '#' or ';'.  0, or -1 with *badline
 * set to the number of a line that is none of these.
 */
int
aws_ini_parse(const char *text, size_t len, struct aws_ini *ini,
    unsigned *badline)
{
	const char *p = text, *end = text + len, *nl, *eq, *rb;
	char *section = NULL, *parent = NULL;
	struct aws_ini_ent *e;
	unsigned line = 0;
	size_t cap = 0, n;
	int indented;

	memset(ini, 0, sizeof(*ini));
	*badline = 0;
	for (; p < end; p = nl + 1) {
		line++;
		if ((nl = memchr(p, '\n', (size_t)(end - p))) == NULL)
			nl = end;
		n = (size_t)(nl - p);
		if (memchr(p, '\0', n) != NULL)
			goto bad;
		indented = n > 0 && (*p == ' ' || *p == '\t');
		while (n > 0 && isspace((unsigned char)*p)) {
			p++;
			n--;
		}
		while (n > 0 && isspace((unsigned char)p[n - 1]))
			n--;
		if (n == 0 || *p == '#' || *p == ';')
			continue;
		if (*p == '[') {
			if ((rb = memchr(p, ']', n)) == NULL)
				goto bad;
			if (rb + 1 < p + n && rb[1] != '#' && rb[1] != ';' &&
			    !isspace((unsigned char)rb[1]))
				goto bad;
			free(section);
			section = section_name(p + 1, (size_t)(rb - p - 1));
			free(parent);
			parent = NULL;
			if (*section == '\0')
				goto bad;
			continue;
		}
		if ((eq = memchr(p, '=', n)) == NULL || eq == p)
			goto bad;
		if (section == NULL)
			continue;	/* before any section: ignored, as the SDKs do */
		if (ini->n == cap) {
			cap = cap ? cap * 2 : 16;
			ini->e = xrealloc(ini->e, cap * sizeof(*ini->e));
		}
		e = &ini->e[ini->n];
		e->section = xstrdup(section);
		e->value = trimmed(eq + 1, (size_t)(p + n - eq - 1));
		if (indented && parent != NULL) {
			e->key = xstrdup(parent);
			e->sub = trimmed(p, (size_t)(eq - p));
		} else {
			e->key = trimmed(p, (size_t)(eq - p));
			e->sub = NULL;
			free(parent);
			parent = *e->value == '\0' ? xstrdup(e->key) : NULL;
		}
		for (char *k = e->sub ? e->sub : e->key; *k; k++)
			*k = (char)tolower((unsigned char)*k);
		ini->n++;
		if (nl == end)
			break;
	}
	free(section);
	free(parent);
	return 0;
bad:
	free(section);
	free(parent);
	aws_ini_free(ini);
	*badline = line;
	return -1;
}

/* The last value of key (sub: a sub-property of it) in section, or NULL. */
const char *
aws_ini_get(const struct aws_ini *ini, const char *section, const char *key,
    const char *sub)
{
	const char *v = NULL;
	size_t i;

	for (i = 0; i < ini->n; i++) {
		const struct aws_ini_ent *e = &ini->e[i];

		if (strcmp(e->section, section) != 0 ||
		    strcasecmp(e->key, key) != 0)
			continue;
		if ((sub == NULL) != (e->sub == NULL))
			continue;
		if (sub != NULL && strcmp(e->sub, sub) != 0)
			continue;
		v = e->value;
	}
	return v;
}

static int
digits_at(const char *s, int n, int *v)
{
	int i;

	*v = 0;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		*v = *v * 10 + (s[i] - '0');
	}
	return 0;
}

/*
 * An ISO 8601 time as the credential endpoints write it,
 * "2024-01-31T12:00:00Z" (fractions of a second and a "+HH:MM" offset
 * accepted), in ms since the epoch.  0, or -1 if malformed.
 */
int
aws_parse_time(const char *s, int64_t *ms)
{
	struct tm tm;
	int y, mo, d, h, mi, se, oh, om, sign;
	const char *p;
	time_t t;

	if (strlen(s) < 19 || digits_at(s, 4, &y) < 0 || s[4] != '-' ||
	    digits_at(s + 5, 2, &mo) < 0 || s[7] != '-' ||
	    digits_at(s + 8, 2, &d) < 0 || (s[10] != 'T' && s[10] != 't' &&
	    s[10] != ' ') || digits_at(s + 11, 2, &h) < 0 || s[13] != ':' ||
	    digits_at(s + 14, 2, &mi) < 0 || s[16] != ':' ||
	    digits_at(s + 17, 2, &se) < 0)
		return -1;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
	    se > 60 || y < 1970)
		return -1;
	p = s + 19;
	if (*p == '.')
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	oh = om = 0;
	sign = 1;
	if (*p == 'Z' || *p == 'z')
		p++;
	else if (*p == '+' || *p == '-') {
		sign = *p == '-' ? -1 : 1;
		if (digits_at(p + 1, 2, &oh) < 0 || p[3] != ':' ||
		    digits_at(p + 4, 2, &om) < 0 || oh > 23 || om > 59)
			return -1;
		p += 6;
	} else
		return -1;
	if (*p != '\0')
		return -1;
	memset(&tm, 0, sizeof(tm));
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = se;
	if ((t = timegm(&tm)) == (time_t)-1)
		return -1;
	*ms = ((int64_t)t - sign * (oh * 3600 + om * 60)) * 1000;
	return 0;
}

void
aws_creds_free(struct aws_creds *c)
{
	char **s[] = { &c->key, &c->secret, &c->token };
	size_t i;

	for (i = 0; i < sizeof(s) / sizeof(s[0]); i++) {
		if (*s[i] != NULL) {
			explicit_bzero(*s[i], strlen(*s[i]));
			free(*s[i]);
			*s[i] = NULL;
		}
	}
	c->expires = 0;
}

static char *
json_str(json_t *o, const char *key)
{
	json_t *j = json_object_get(o, key);

	return json_is_string(j) ? xstrdup(json_string_value(j)) : NULL;
}

/*
 * The JSON answer of a container or instance credential endpoint:
 * AccessKeyId, SecretAccessKey, Token and Expiration (and Code, which
 * must be "Success" if present).  0, or -1 with the reason in why
 * (never a secret).
 */
int
aws_parse_creds(const char *buf, size_t len, struct aws_creds *c, char *why,
    size_t wlen)
{
	json_error_t jerr;
	json_t *o, *j;
	char *exp = NULL;
	int rc = -1;

	memset(c, 0, sizeof(*c));
	if ((o = json_loadb(buf, len, 0, &jerr)) == NULL ||
	    !json_is_object(o)) {
		snprintf(why, wlen, "not a JSON object");
		json_decref(o);
		return -1;
	}
	if ((j = json_object_get(o, "Code")) != NULL && (!json_is_string(j) ||
	    strcmp(json_string_value(j), "Success") != 0)) {
		snprintf(why, wlen, "Code is not \"Success\"");
		goto out;
	}
	c->key = json_str(o, "AccessKeyId");
	c->secret = json_str(o, "SecretAccessKey");
	c->token = json_str(o, "Token");
	exp = json_str(o, "Expiration");
	if (c->key == NULL || c->secret == NULL || !token_ok(c->key) ||
	    !token_ok(c->secret)) {
		snprintf(why, wlen, "no AccessKeyId and SecretAccessKey");
		goto out;
	}
	if (c->token != NULL && !token_ok(c->token)) {
		snprintf(why, wlen, "Token is not printable text");
		goto out;
	}
	if (exp != NULL && aws_parse_time(exp, &c->expires) < 0) {
		snprintf(why, wlen, "Expiration is not an ISO 8601 time");
		goto out;
	}
	rc = 0;
out:
	free(exp);
	if (rc < 0)
		aws_creds_free(c);
	json_decref(o);
	return rc;
}

/* A region name: letters, digits and dashes, as "eu-west-1". */
int
aws_region_valid(const char *r)
{
	size_t n;

	for (n = 0; r[n] != '\0'; n++)
		if (!isalnum((unsigned char)r[n]) && r[n] != '-')
			return 0;
	return n > 0 && n < 40;
}

/* The shared files and the profile chosen in them. */
struct conf {
	struct aws_ini	 cfg, cred;
	char		*cfg_path, *cred_path;
	const char	*profile;
	int		 explicit;	/* named by AWS_PROFILE */
	char		 cfg_sec[300];
	int		 have_cfg, have_cred;
};

static char *
home_file(const char *rel)
{
	const char *home = env("HOME");
	struct passwd *pw;
	char *p;

	if (home == NULL && (pw = getpwuid(getuid())) != NULL)
		home = pw->pw_dir;
	if (home == NULL)
		home = "/";
	p = xmalloc(strlen(home) + strlen(rel) + 2);
	sprintf(p, "%s/%s", home, rel);
	return p;
}

static int
has_section(const struct aws_ini *ini, const char *s)
{
	size_t i;

	for (i = 0; i < ini->n; i++)
		if (strcmp(ini->e[i].section, s) == 0)
			return 1;
	return 0;
}

/* Load one shared file; 0, or 78 for a malformed one (reported). */
static int
load_ini(const char *path, struct aws_ini *ini)
{
	unsigned bad;
	char *buf;
	size_t len;
	int rc;

	memset(ini, 0, sizeof(*ini));
	if ((rc = slurp(path, &buf, &len)) <= 0)
		return rc == 0 ? 0 : EX_CONFIG;
	rc = aws_ini_parse(buf, len, ini, &bad);
	explicit_bzero(buf, len);
	free(buf);
	if (rc < 0) {
		warnx("%s:%u: neither a [section] nor a key = value line",
		    path, bad);
		return EX_CONFIG;
	}
	return 0;
}

static int
conf_load(struct conf *cf)
{
	const char *p;
	int rc;

	memset(cf, 0, sizeof(*cf));
	cf->cfg_path = (p = env("AWS_CONFIG_FILE")) ? xstrdup(p) :
	    home_file(".aws/config");
	cf->cred_path = (p = env("AWS_SHARED_CREDENTIALS_FILE")) ?
	    xstrdup(p) : home_file(".aws/credentials");
	if ((rc = load_ini(cf->cfg_path, &cf->cfg)) != 0 ||
	    (rc = load_ini(cf->cred_path, &cf->cred)) != 0)
		return rc;
	cf->profile = env("AWS_PROFILE");
	cf->explicit = cf->profile != NULL;
	if (cf->profile == NULL)
		cf->profile = "default";
	if (strlen(cf->profile) > 200 || strchr(cf->profile, ']') != NULL) {
		warnx("AWS_PROFILE: not a profile name");
		return EX_CONFIG;
	}
	snprintf(cf->cfg_sec, sizeof(cf->cfg_sec), "profile %s", cf->profile);
	cf->have_cfg = has_section(&cf->cfg, cf->cfg_sec);
	if (!cf->have_cfg && strcmp(cf->profile, "default") == 0 &&
	    has_section(&cf->cfg, "default")) {
		strcpy(cf->cfg_sec, "default");
		cf->have_cfg = 1;
	}
	cf->have_cred = has_section(&cf->cred, cf->profile);
	if (cf->explicit && !cf->have_cfg && !cf->have_cred) {
		warnx("AWS_PROFILE: profile \"%s\" is in neither %s nor %s",
		    cf->profile, cf->cfg_path, cf->cred_path);
		return EX_CONFIG;
	}
	return 0;
}

static void
conf_free(struct conf *cf)
{
	aws_ini_free(&cf->cfg);
	aws_ini_free(&cf->cred);
	free(cf->cfg_path);
	free(cf->cred_path);
}

/* A property of the profile: credentials file first for keys, config first otherwise. */
static const char *
conf_get(const struct conf *cf, const char *key, int cred_first)
{
	const char *a = NULL, *b = NULL;

	if (cf->have_cred)
		a = aws_ini_get(&cf->cred, cf->profile, key, NULL);
	if (cf->have_cfg)
		b = aws_ini_get(&cf->cfg, cf->cfg_sec, key, NULL);
	if (a != NULL && *a == '\0')
		a = NULL;
	if (b != NULL && *b == '\0')
		b = NULL;
	return cred_first ? (a ? a : b) : (b ? b : a);
}

/*
 * An endpoint URL: http or https, a host, an optional port, and no path
 * but "/" (libcurl 7.88 signs only a POST to "/").  Stored with its "/".
 */
static int
set_endpoint(struct aws *a, const char *url, const char *from)
{
	const char *h;
	size_t n;

	if (strncmp(url, "https://", 8) == 0)
		h = url + 8;
	else if (strncmp(url, "http://", 7) == 0)
		h = url + 7;
	else {
		warnx("%s: the endpoint must be an http:// or https:// URL",
		    from);
		return EX_CONFIG;
	}
	n = strcspn(h, "/?#");
	if (n == 0 || strchr(h, '@') != NULL || (h[n] != '\0' &&
	    strcmp(h + n, "/") != 0)) {
		warnx("%s: the endpoint must be scheme://host[:port] with no "
		    "user, path or query", from);
		return EX_CONFIG;
	}
	a->endpoint = xmalloc((size_t)(h - url) + n + 2);
	memcpy(a->endpoint, url, (size_t)(h - url) + n);
	strcpy(a->endpoint + (h - url) + n, "/");
	return 0;
}

static int
resolve_endpoint(struct aws *a, const struct conf *cf)
{
	char name[64], upper[8];
	const char *v, *svc;
	size_t i;

	for (i = 0; a->service[i] != '\0' && i < sizeof(upper) - 1; i++)
		upper[i] = (char)toupper((unsigned char)a->service[i]);
	upper[i] = '\0';
	if (!env_true("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS") &&
	    !(cf->have_cfg && (v = aws_ini_get(&cf->cfg, cf->cfg_sec,
	    "ignore_configured_endpoint_urls", NULL)) != NULL &&
	    strcasecmp(v, "true") == 0)) {
		snprintf(name, sizeof(name), "AWS_ENDPOINT_URL_%s", upper);
		if ((v = env(name)) != NULL)
			return set_endpoint(a, v, name);
		if ((v = env("AWS_ENDPOINT_URL")) != NULL)
			return set_endpoint(a, v, "AWS_ENDPOINT_URL");
		if ((svc = conf_get(cf, "services", 0)) != NULL) {
			snprintf(name, sizeof(name), "services %s", svc);
			if ((v = aws_ini_get(&cf->cfg, name, a->service,
			    "endpoint_url")) != NULL && *v != '\0')
				return set_endpoint(a, v, cf->cfg_path);
		}
		if ((v = conf_get(cf, "endpoint_url", 0)) != NULL)
			return set_endpoint(a, v, cf->cfg_path);
	}
	a->endpoint = xmalloc(strlen(a->service) + strlen(a->region) + 32);
	sprintf(a->endpoint, "https://%s.%s.amazonaws.com%s/", a->service,
	    a->region, strncmp(a->region, "cn-", 3) == 0 ? ".cn" : "");
	return 0;
}

/* Keep fresh credentials in a->c.  0, or the exit code (reported). */
static int
creds_env(struct aws *a, int *found)
{
	const char *k = env("AWS_ACCESS_KEY_ID"), *s = env("AWS_SECRET_ACCESS_KEY");
	const char *t = env("AWS_SESSION_TOKEN");

	*found = 0;
	if (k == NULL && s == NULL)
		return 0;
	if (k == NULL || s == NULL) {
		warnx("%s is set but %s is not", k ? "AWS_ACCESS_KEY_ID" :
		    "AWS_SECRET_ACCESS_KEY", k ? "AWS_SECRET_ACCESS_KEY" :
		    "AWS_ACCESS_KEY_ID");
		return EX_CONFIG;
	}
	if (!token_ok(k) || !token_ok(s) || (t != NULL && !token_ok(t))) {
		warnx("AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY or "
		    "AWS_SESSION_TOKEN: not printable text without spaces");
		return EX_CONFIG;
	}
	a->c.key = xstrdup(k);
	a->c.secret = xstrdup(s);
	a->c.token = t ? xstrdup(t) : NULL;
	*found = 1;
	a->src = AWS_SRC_ENV;
	return 0;
}

static int
creds_profile(struct aws *a, const struct conf *cf, int *found)
{
	static const char *unsupported[] = { "role_arn", "source_profile",
	    "credential_process", "sso_session", "sso_start_url",
	    "web_identity_token_file", "credential_source", "login_session" };
	const char *k, *s, *t;
	size_t i;

	*found = 0;
	if (!cf->have_cfg && !cf->have_cred)
		return 0;
	k = conf_get(cf, "aws_access_key_id", 1);
	s = conf_get(cf, "aws_secret_access_key", 1);
	t = conf_get(cf, "aws_session_token", 1);
	if (k == NULL && s == NULL) {
		for (i = 0; i < sizeof(unsupported) / sizeof(*unsupported);
		    i++)
			if (conf_get(cf, unsupported[i], 0) != NULL) {
				warnx("profile %s: %s is not supported: give "
				    "static keys, or use container or instance "
				    "credentials", cf->profile, unsupported[i]);
				return EX_CONFIG;
			}
		return 0;
	}
	if (k == NULL || s == NULL) {
		warnx("profile %s: aws_access_key_id and "
		    "aws_secret_access_key go together", cf->profile);
		return EX_CONFIG;
	}
	if (!token_ok(k) || !token_ok(s) || (t != NULL && !token_ok(t))) {
		warnx("profile %s: a key, secret or token is not printable "
		    "text without spaces", cf->profile);
		return EX_CONFIG;
	}
	a->c.key = xstrdup(k);
	a->c.secret = xstrdup(s);
	a->c.token = t ? xstrdup(t) : NULL;
	a->profile = xstrdup(cf->profile);
	*found = 1;
	a->src = AWS_SRC_PROFILE;
	return 0;
}

/* Whether a container endpoint may be trusted over plain http. */
static int
cont_host_ok(const char *url)
{
	static const char *allowed[] = { "127.", "localhost", "[::1]",
	    "169.254.170.2", "169.254.170.23", "[fd00:ec2::23]" };
	const char *h;
	size_t i, n;

	if (strncmp(url, "https://", 8) == 0)
		return 1;
	if (strncmp(url, "http://", 7) != 0)
		return 0;
	h = url + 7;
	n = strcspn(h, ":/");
	if (h[0] == '[')
		n = strcspn(h, "]") + 1;
	for (i = 0; i < sizeof(allowed) / sizeof(*allowed); i++) {
		size_t an = strlen(allowed[i]);

		if (allowed[i][an - 1] == '.' ? strncmp(h, allowed[i], an) == 0
		    && n > an : (n == an && strncmp(h, allowed[i], an) == 0))
			return 1;
	}
	return 0;
}

static int
answer_code(const struct web_req *r)
{
	if (web_failed_transport(r))
		return EX_UNAVAILABLE;
	if (r->status == 401 || r->status == 403)
		return EX_NOPERM;
	return EX_UNAVAILABLE;
}

static int
take_creds(struct aws *a, const struct web_req *r, const char *what)
{
	struct aws_creds c;
	char why[128];

	if (aws_parse_creds(r->resp.buf, r->resp.len, &c, why,
	    sizeof(why)) < 0) {
		warnx("%s: %s", what, why);
		return EX_PROTOCOL;
	}
	aws_creds_free(&a->c);
	a->c = c;
	return 0;
}

static int
fetch_container(struct aws *a)
{
	const char *tok = env("AWS_CONTAINER_AUTHORIZATION_TOKEN");
	const char *tfile = env("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE");
	struct web_req *r = web_req_new();
	char *hdr = NULL, *buf = NULL;
	size_t len;
	int rc;

	r->body.len = 0;
	web_req_post(r, a->cont_url, FETCH_MS);
	curl_easy_setopt(r->h, CURLOPT_HTTPGET, 1L);
	if (tfile != NULL) {
		if ((rc = slurp(tfile, &buf, &len)) <= 0) {
			if (rc == 0)
				warnx("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: "
				    "%s: no such file", tfile);
			web_req_free(r);
			return EX_CONFIG;
		}
		while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
			buf[--len] = '\0';
		tok = buf;
	}
	if (tok != NULL) {
		if (strpbrk(tok, "\r\n") != NULL) {
			warnx("container credentials: the authorization token "
			    "holds a line break");
			rc = EX_CONFIG;
			goto out;
		}
		hdr = xmalloc(strlen(tok) + 32);
		sprintf(hdr, "Authorization: %s", tok);
		web_req_header(r, hdr);
	}
	if (web_perform(r) < 0 || r->status != 200) {
		if (web_failed_transport(r))
			warnx("container credentials: %s: %s", a->cont_url,
			    r->err);
		else
			warnx("container credentials: %s: HTTP %ld",
			    a->cont_url, r->status);
		rc = answer_code(r);
		goto out;
	}
	rc = take_creds(a, r, "container credentials");
out:
	if (hdr != NULL) {
		explicit_bzero(hdr, strlen(hdr));
		free(hdr);
	}
	if (buf != NULL) {
		explicit_bzero(buf, strlen(buf));
		free(buf);
	}
	web_req_free(r);
	return rc;
}

/*
 * IMDSv2: a session token by PUT /latest/api/token, then the role name
 * and its credentials, each GET carrying the token.  quiet: a failure to
 * connect is not reported (no instance here).
 */
static int
fetch_imds(struct aws *a, int quiet)
{
	struct web_req *r = web_req_new();
	char url[512], *hdr = NULL, role[256];
	size_t n;
	int rc;

	snprintf(url, sizeof(url), "%s/latest/api/token", a->imds);
	web_req_post(r, url, IMDS_MS);
	curl_easy_setopt(r->h, CURLOPT_CUSTOMREQUEST, "PUT");
	web_req_header(r, "X-aws-ec2-metadata-token-ttl-seconds: " IMDS_TTL);
	if (web_perform(r) < 0 || r->status != 200 || r->resp.len == 0 ||
	    r->resp.len > 4096 || !token_ok(r->resp.buf)) {
		if (!(quiet && web_failed_transport(r)))
			warnx("instance metadata: %s: %s", url,
			    web_failed_transport(r) ? r->err : "no token");
		rc = quiet && web_failed_transport(r) ? -1 : answer_code(r);
		goto out;
	}
	hdr = xmalloc(r->resp.len + 40);
	sprintf(hdr, "X-aws-ec2-metadata-token: %s", r->resp.buf);

	snprintf(url, sizeof(url), "%s/latest/meta-data/iam/"
	    "security-credentials/", a->imds);
	web_req_post(r, url, IMDS_MS);
	curl_easy_setopt(r->h, CURLOPT_HTTPGET, 1L);
	web_req_header(r, hdr);
	if (web_perform(r) < 0 || r->status != 200) {
		warnx("instance metadata: %s: %s%ld", url,
		    web_failed_transport(r) ? r->err : "HTTP ",
		    web_failed_transport(r) ? 0L : r->status);
		rc = answer_code(r);
		goto out;
	}
	n = strcspn(r->resp.buf, "\r\n");
	if (n == 0 || n >= sizeof(role)) {
		warnx("instance metadata: no IAM role attached to this "
		    "instance");
		rc = EX_CONFIG;
		goto out;
	}
	memcpy(role, r->resp.buf, n);
	role[n] = '\0';
	if (strpbrk(role, "/?#% ") != NULL) {
		warnx("instance metadata: a role name that is not a name");
		rc = EX_PROTOCOL;
		goto out;
	}
	snprintf(url, sizeof(url), "%s/latest/meta-data/iam/"
	    "security-credentials/%s", a->imds, role);
	web_req_post(r, url, IMDS_MS);
	curl_easy_setopt(r->h, CURLOPT_HTTPGET, 1L);
	web_req_header(r, hdr);
	if (web_perform(r) < 0 || r->status != 200) {
		warnx("instance metadata: %s: %s%ld", url,
		    web_failed_transport(r) ? r->err : "HTTP ",
		    web_failed_transport(r) ? 0L : r->status);
		rc = answer_code(r);
		goto out;
	}
	rc = take_creds(a, r, "instance metadata");
out:
	if (hdr != NULL) {
		explicit_bzero(hdr, strlen(hdr));
		free(hdr);
	}
	web_req_free(r);
	return rc;
}

static int
fetch(struct aws *a, int quiet)
{
	a->last_fetch = util_mono_ms();
	return a->src == AWS_SRC_CONTAINER ? fetch_container(a) :
	    fetch_imds(a, quiet);
}

/* The credential chain of the SDKs, in their order. */
static int
resolve_creds(struct aws *a, const struct conf *cf)
{
	const char *full = env("AWS_CONTAINER_CREDENTIALS_FULL_URI");
	const char *rel = env("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI");
	const char *ep;
	int rc, found;

	if ((rc = creds_env(a, &found)) != 0 || found)
		return rc;
	if ((rc = creds_profile(a, cf, &found)) != 0 || found)
		return rc;
	if (rel != NULL || full != NULL) {
		a->src = AWS_SRC_CONTAINER;
		if (rel != NULL) {
			a->cont_url = xmalloc(strlen(CONT_HOST) + strlen(rel) + 2);
			sprintf(a->cont_url, "%s%s%s", CONT_HOST,
			    rel[0] == '/' ? "" : "/", rel);
		} else {
			if (!cont_host_ok(full)) {
				warnx("AWS_CONTAINER_CREDENTIALS_FULL_URI: "
				    "plain http only to a loopback or the "
				    "container agent's address");
				return EX_CONFIG;
			}
			a->cont_url = xstrdup(full);
		}
		return fetch(a, 0);
	}
	if (!env_true("AWS_EC2_METADATA_DISABLED")) {
		a->src = AWS_SRC_IMDS;
		ep = env("AWS_EC2_METADATA_SERVICE_ENDPOINT");
		if (ep != NULL && strncmp(ep, "http://", 7) != 0 &&
		    strncmp(ep, "https://", 8) != 0) {
			warnx("AWS_EC2_METADATA_SERVICE_ENDPOINT: not an "
			    "http:// or https:// URL");
			return EX_CONFIG;
		}
		a->imds = xstrdup(ep ? ep : IMDS_HOST);
		if (a->imds[strlen(a->imds) - 1] == '/')
			a->imds[strlen(a->imds) - 1] = '\0';
		rc = fetch(a, ep == NULL);
		if (rc >= 0)
			return rc;
	}
	a->src = AWS_SRC_NONE;
	warnx("no AWS credentials: none in the environment "
	    "(AWS_ACCESS_KEY_ID), in profile %s of %s or %s, and no container "
	    "or instance credentials", cf->profile, cf->cfg_path, cf->cred_path);
	return EX_CONFIG;
}

/*
 * Configure a for service ("sns" or "sqs"): region (the resource's own,
 * res_region, when it names one, otherwise AWS_REGION, AWS_DEFAULT_REGION
 * or the profile's), endpoint and credentials.  0, or an exit code
 * (reported).
 */
int
aws_init(struct aws *a, const char *service, const char *res_region)
{
	struct conf cf;
	const char *r;
	int rc;

	memset(a, 0, sizeof(*a));
	snprintf(a->service, sizeof(a->service), "%s", service);
	if ((rc = conf_load(&cf)) != 0)
		goto out;
	if (res_region != NULL && *res_region != '\0')
		r = res_region;
	else if ((r = env("AWS_REGION")) == NULL &&
	    (r = env("AWS_DEFAULT_REGION")) == NULL)
		r = conf_get(&cf, "region", 0);
	if (r == NULL) {
		warnx("no AWS region: set AWS_REGION, or region in profile %s "
		    "of %s", cf.profile, cf.cfg_path);
		rc = EX_CONFIG;
		goto out;
	}
	if (!aws_region_valid(r)) {
		warnx("region \"%.40s\": not a region name", r);
		rc = EX_CONFIG;
		goto out;
	}
	a->region = xstrdup(r);
	snprintf(a->sigv4, sizeof(a->sigv4), "aws:amz:%s:%s", a->region,
	    a->service);
	if ((rc = resolve_endpoint(a, &cf)) != 0)
		goto out;
	rc = resolve_creds(a, &cf);
out:
	conf_free(&cf);
	return rc;
}

/*
 * Renew credentials that expire within AWS_REFRESH_MS (at most once a
 * second).  If renewing fails while the current ones still hold, they are
 * kept and the failure reported.  0, or an exit code.
 */
int
aws_fresh(struct aws *a)
{
	int64_t now = util_real_ms();
	int rc;

	if (a->c.expires == 0 || now < a->c.expires - AWS_REFRESH_MS)
		return 0;
	if (util_mono_ms() - a->last_fetch < 1000 && now < a->c.expires)
		return 0;
	if ((rc = fetch(a, 0)) == 0)
		return 0;
	if (now < a->c.expires - 1000) {
		warnx("%s: could not renew credentials; the current ones "
		    "expire in %jd s", aws_src_name(a->src),
		    (intmax_t)((a->c.expires - now) / 1000));
		return 0;
	}
	return rc < 0 ? EX_UNAVAILABLE : rc;
}

/*
 * Make r, already set up with web_req_post(), a signed request: the
 * content type, the X-Amz-Target (or NULL), the session token, and
 * libcurl's SigV4 with all four parts given.
 */
void
aws_prepare(struct aws *a, struct web_req *r, const char *ctype,
    const char *target)
{
	char line[160];

	snprintf(line, sizeof(line), "Content-Type: %s", ctype);
	web_req_header(r, line);
	if (target != NULL) {
		snprintf(line, sizeof(line), "X-Amz-Target: %s", target);
		web_req_header(r, line);
	}
	if (a->c.token != NULL) {
		char *t = xmalloc(strlen(a->c.token) + 32);

		sprintf(t, "X-Amz-Security-Token: %s", a->c.token);
		web_req_header(r, t);
		explicit_bzero(t, strlen(t));
		free(t);
	}
	curl_easy_setopt(r->h, CURLOPT_USERAGENT, "cqrs-pipes/" CQRS_VERSION);
	curl_easy_setopt(r->h, CURLOPT_AWS_SIGV4, a->sigv4);
	curl_easy_setopt(r->h, CURLOPT_USERNAME, a->c.key);
	curl_easy_setopt(r->h, CURLOPT_PASSWORD, a->c.secret);
}

void
aws_free(struct aws *a)
{
	aws_creds_free(&a->c);
	free(a->region);
	free(a->endpoint);
	free(a->profile);
	free(a->cont_url);
	free(a->imds);
	memset(a, 0, sizeof(*a));
}

/* Whether AWS's error code says the credentials or their rights are wrong. */
int
aws_auth_error(const char *code)
{
	static const char *codes[] = { "SignatureDoesNotMatch",
	    "InvalidSignatureException", "InvalidClientTokenId",
	    "UnrecognizedClientException", "AccessDenied",
	    "AccessDeniedException", "AuthorizationError",
	    "IncompleteSignature", "MissingAuthenticationToken",
	    "MissingAuthenticationTokenException", "ExpiredToken",
	    "ExpiredTokenException", "InvalidAccessKeyId",
	    "InvalidSecurity", "KMS.AccessDeniedException",
	    "KMSAccessDenied", "OptInRequired" };
	size_t i;

	for (i = 0; i < sizeof(codes) / sizeof(*codes); i++)
		if (strcmp(code, codes[i]) == 0)
			return 1;
	return 0;
}

/* Whether AWS's error code asks to slow down or try again later. */
int
aws_throttled(const char *code)
{
	static const char *codes[] = { "Throttling", "ThrottlingException",
	    "Throttled", "ThrottledException", "RequestThrottled",
	    "RequestThrottledException", "TooManyRequestsException",
	    "RequestLimitExceeded", "KMSThrottlingException",
	    "KMS.ThrottlingException", "ServiceUnavailable",
	    "InternalError", "InternalFailure", "RequestTimeout",
	    "RequestTimeoutException", "ServiceUnavailableException",
	    "KMSOptInRequired", "EC2ThrottledException" };
	size_t i;

	for (i = 0; i < sizeof(codes) / sizeof(*codes); i++)
		if (strcmp(code, codes[i]) == 0)
			return 1;
	return 0;
}

/* Blank out any credential that a message from a server might echo. */
void
aws_scrub(const struct aws *a, char *msg)
{
	const char *s[] = { a->c.secret, a->c.token };
	char *p;
	size_t i, n;

	for (i = 0; i < sizeof(s) / sizeof(*s); i++) {
		if (s[i] == NULL || (n = strlen(s[i])) < 4)
			continue;
		while ((p = strstr(msg, s[i])) != NULL)
			memset(p, '*', n);
	}
}
