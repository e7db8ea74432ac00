/* fuzz/order: the NDJSON reader and the order checks (common/ord.c) that order-place and cqrs-httpd share, on arbitrary input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>

#include <jansson.h>

#include "ndj.h"
#include "ord.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ndj_reader in;
	static struct ord o;
	static int ready;
	char err[256];
	json_t *req;
	int fd, rc;

	if (!ready) {
		ord_init(&o);
		ndj_reader_init(&in, -1, "fuzz");
		in.quiet = 1;
		ready = 1;
	}
	if ((fd = memfd_create("order", 0)) < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size || lseek(fd, 0, 0) != 0) {
		close(fd);
		return 0;
	}
	/* One reader for every input: its 1 MiB buffer is made once. */
	in.fd = fd;
	in.lineno = in.start = in.end = 0;
	in.eof = in.skipping = 0;
	while ((rc = ndj_read(&in, &req)) != 0 && rc != -2) {
		if (rc == 1) {
			o.lineno = in.lineno;
			ord_check(req, &o, err, sizeof(err));
			json_decref(req);
		}
	}
	close(fd);
	return 0;
}
