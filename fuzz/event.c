/* fuzz/event: the NDJSON reader and client-project's event parser, on arbitrary input. */
#define main client_project_main
#include "../cmd/client-project.c"
#undef main

#include <sys/mman.h>

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct event ev[1];
	static struct ndj_reader in;
	static int ready;
	struct projector p;
	uint64_t lsn, seq;
	json_t *line;
	int fd, rc;

	if ((fd = memfd_create("event", 0)) < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size || lseek(fd, 0, 0) != 0) {
		close(fd);
		return 0;
	}
	memset(&p, 0, sizeof(p));
	p.ev = ev;
	p.in = &in;
	/* One reader for every input: its 1 MiB buffer is made once. */
	if (!ready) {
		ndj_reader_init(&in, -1, "fuzz");
		ready = 1;
	}
	in.fd = fd;
	in.lineno = in.start = in.end = 0;
	in.eof = in.skipping = 0;
	while ((rc = ndj_read(&in, &line)) != 0 && rc != -2) {
		if (rc != 1)
			continue;
		if (evt_uint(line, "__lsn", &in, UINT64_MAX >> 1, &lsn) == 0 &&
		    evt_uint(line, "__seq", &in, UINT32_MAX, &seq) == 0 &&
		    take(&p, line, lsn, seq) == 0 && p.n == 1) {
			free(ev[0].name);
			free(ev[0].email);
			p.n = 0;
		}
		json_decref(line);
	}
	close(fd);
	return 0;
}
