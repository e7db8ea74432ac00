/* fuzz/order: the NDJSON reader and order-place's validation, on arbitrary input. */
#define main order_place_main
#include "../cmd/order-place.c"
#undef main

#include <sys/mman.h>

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct order o;
	static int ready;
	json_t *req;
	int fd, rc;

	if (!ready) {
		sb_init(&o.pids);
		sb_init(&o.qtys);
		ndj_reader_init(&in, -1, "fuzz");
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
			validate(req, &o);
			json_decref(req);
		}
	}
	close(fd);
	return 0;
}
