/* req: the parts of an HTTP request that cqrs-httpd reads: route, Basic credentials, Content-Type. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "req.h"
#include "rmd.h"

/*
 * Which resource path names under prefix ("" or "/prod"): REQ_ORDERS,
 * REQ_CLIENT with the id copied to id (idlen bytes at least 12),
 * REQ_CLIENT_BAD for a malformed id, REQ_NONE for anything else.
 */
enum req_route
req_route(const char *prefix, const char *path, char *id, size_t idlen)
{
	size_t n = strlen(prefix), len;

	if (strncmp(path, prefix, n) != 0)
		return REQ_NONE;
	path += n;
	if (strcmp(path, "/orders") == 0)
		return REQ_ORDERS;
	if (strncmp(path, "/clients/", 9) != 0)
		return REQ_NONE;
	path += 9;
	len = strlen(path);
	if (len == 0 || strchr(path, '/') != NULL)
		return REQ_NONE;
	if (!rmd_valid_id(path, len) || len + 1 > idlen)
		return REQ_CLIENT_BAD;
	memcpy(id, path, len + 1);
	return REQ_CLIENT;
}

static int
b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/*
 * Standard base64 (RFC 4648, padding required) of in into out: the
 * decoded length, or -1 if malformed or longer than cap.
 */
long
req_b64decode(const char *in, size_t len, unsigned char *out, size_t cap)
{
	const unsigned char *p = (const unsigned char *)in;
	size_t i, o = 0;
	int v[4], k, pad;

	if (len % 4 != 0)
		return -1;
	for (i = 0; i < len; i += 4) {
		pad = 0;
		for (k = 0; k < 4; k++) {
			if (p[i + k] == '=' && i + 4 == len && k >= 2) {
				v[k] = 0;
				pad++;
			} else if (pad > 0 || (v[k] = b64val(p[i + k])) < 0)
				return -1;
		}
		if (o + 3 - (size_t)pad > cap)
			return -1;
		out[o++] = (unsigned char)(v[0] << 2 | v[1] >> 4);
		if (pad < 2)
			out[o++] = (unsigned char)((v[1] & 15) << 4 | v[2] >> 2);
		if (pad < 1)
			out[o++] = (unsigned char)((v[2] & 3) << 6 | v[3]);
	}
	return (long)o;
}

/*
 * The credentials of an "Authorization: Basic base64(user:password)"
 * header into user and pass (REQ_CRED_MAX + 1 bytes each, NUL-terminated).
 * 0, or -1 if it is not Basic, not base64, has no colon, holds a NUL or a
 * control character, or is too long.
 */
int
req_basic(const char *hdr, char *user, char *pass)
{
	unsigned char buf[2 * REQ_CRED_MAX + 2];
	const char *t;
	size_t len, i, colon;
	long n;

	if (strncasecmp(hdr, "Basic", 5) != 0 || (hdr[5] != ' ' &&
	    hdr[5] != '\t'))
		return -1;
	for (t = hdr + 5; *t == ' ' || *t == '\t'; t++)
		;
	len = strcspn(t, " \t");
	if (t[len + strspn(t + len, " \t")] != '\0')
		return -1;
	if ((n = req_b64decode(t, len, buf, sizeof(buf))) < 0)
		return -1;
	for (i = 0, colon = (size_t)n; i < (size_t)n; i++) {
		if (buf[i] < 0x20 || buf[i] == 0x7f)
			goto bad;
		if (buf[i] == ':' && colon == (size_t)n)
			colon = i;
	}
	if (colon == (size_t)n || colon == 0 || colon > REQ_CRED_MAX ||
	    (size_t)n - colon - 1 > REQ_CRED_MAX)
		goto bad;
	memcpy(user, buf, colon);
	user[colon] = '\0';
	memcpy(pass, buf + colon + 1, (size_t)n - colon - 1);
	pass[(size_t)n - colon - 1] = '\0';
	memset(buf, 0, sizeof(buf));
	return 0;
bad:
	memset(buf, 0, sizeof(buf));
	return -1;
}

/* Whether a Content-Type is JSON: application/json, parameters allowed. */
int
req_json_type(const char *ct)
{
	size_t n;

	if (ct == NULL)
		return 0;
	while (*ct == ' ' || *ct == '\t')
		ct++;
	if (strncasecmp(ct, "application/json", 16) != 0)
		return 0;
	ct += 16;
	n = strspn(ct, " \t");
	return ct[n] == '\0' || ct[n] == ';';
}

/*
 * The path as the access log shows it: printable ASCII as is, any other
 * byte as %XX, cut at size with "...".
 */
void
req_print_path(char *buf, size_t size, const char *path)
{
	static const char hex[] = "0123456789ABCDEF";
	const unsigned char *p = (const unsigned char *)path;
	size_t o = 0;

	for (; *p != '\0'; p++) {
		if (o + 8 >= size) {
			memcpy(buf + o, "...", 3);
			o += 3;
			break;
		}
		if (*p > 0x20 && *p < 0x7f && *p != '%')
			buf[o++] = (char)*p;
		else {
			buf[o++] = '%';
			buf[o++] = hex[*p >> 4];
			buf[o++] = hex[*p & 15];
		}
	}
	buf[o] = '\0';
}
