/* fuzz/http: what cqrs-httpd parses from a request (common/req.c, ord_parse): the path, the Authorization and Content-Type headers, the Idempotency-Key, the body. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ndj.h"
#include "ord.h"
#include "req.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/*
 * The input is split at its first two NUL bytes: a header value and a
 * path (each NUL-terminated, as libmicrohttpd hands them over), then the
 * body, with its exact length.
 */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ord o;
	static int ready;
	char user[REQ_CRED_MAX + 1], pass[REQ_CRED_MAX + 1], id[12];
	char err[256], shown[160];
	unsigned char dec[64];
	const char *hdr, *path, *body;
	char *copy;
	size_t hlen, plen, blen;

	if (!ready) {
		ord_init(&o);
		ready = 1;
	}
	copy = malloc(size + 2);
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	copy[size] = copy[size + 1] = '\0';
	hdr = copy;
	hlen = strlen(hdr);
	path = hlen < size ? hdr + hlen + 1 : copy + size;
	plen = strlen(path);
	body = path + plen < copy + size ? path + plen + 1 : copy + size;
	blen = (size_t)(copy + size - body);

	req_basic(hdr, user, pass);
	req_json_type(hdr);
	req_b64decode(hdr, hlen, dec, sizeof(dec));
	ord_valid_key(hdr, hlen);
	req_route("", path, id, sizeof(id));
	req_route("/prod", path, id, sizeof(id));
	req_print_path(shown, sizeof(shown), path);
	ord_parse(body, blen, &o, err, sizeof(err));
	free(copy);
	return 0;
}
