/* fuzz/event: the NDJSON reader, the scanner, the event checks and client-project's take() on arbitrary input. */
#define main client_project_main
#include "../cmd/client-project.c"
#undef main

#include <sys/mman.h>

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct event ev[1];
	static char *keys[1], *ikeys[1];
	static int64_t key_client[1];
	static size_t slots[3];
	static struct ndj_reader in;
	static struct sbuf overlong;
	static struct scan sc;
	static int ready;
	struct projector p;
	struct evt_meta m;
	char why[256], *line;
	size_t len;
	int fd, rc;

	if ((fd = memfd_create("event", 0)) < 0)
		return 0;
	if (write(fd, data, size) != (ssize_t)size || lseek(fd, 0, 0) != 0) {
		close(fd);
		return 0;
	}
	memset(&p, 0, sizeof(p));
	p.ev = ev;
	p.keys = keys;
	p.ikeys = ikeys;
	p.key_client = key_client;
	p.slots = slots;
	p.nslots = 3;
	/* One reader for every input: its 1 MiB buffer is made once. */
	if (!ready) {
		ndj_reader_init(&in, -1, "fuzz");
		sb_init(&overlong);
		scan_init(&sc);
		ready = 1;
	}
	in.fd = fd;
	in.lineno = in.start = in.end = 0;
	in.eof = in.skipping = 0;
	in.quiet = 1;
	in.capture = &overlong;
	while ((rc = ndj_next(&in, &line, &len)) != 0 && rc != -2) {
		if (rc != 1 || scan_line(&sc, line, len) < 0)
			continue;
		memset(&m, 0, sizeof(m));
		m.line = in.line;
		m.len = in.len;
		if (evt_meta(&sc, &m, why, sizeof(why)) == 0 &&
		    take(&p, &sc, &m, why, sizeof(why)) == 0 && p.n == 1)
			clear_batch(&p);
	}
	close(fd);
	return 0;
}
