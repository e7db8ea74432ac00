/* fuzz/pgoutput: the pgoutput decoder on arbitrary XLogData payloads. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pgo.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/*
 * The input is a sequence of messages, each a 2-byte big-endian length
 * and that many bytes (cut short at the end of the input), decoded in
 * order by one decoder, so that state carries over: a Relation, then
 * Inserts into it, and so on.
 */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pgo p;
	size_t len;

	pgo_init(&p);
	while (size >= 2) {
		len = (size_t)data[0] << 8 | data[1];
		data += 2;
		size -= 2;
		if (len > size)
			len = size;
		if (pgo_decode(&p, data, len) == PGO_ROW &&
		    memchr(p.line.buf, '\n', p.line.len) != NULL)
			__builtin_trap();	/* an event line must be one line */
		data += len;
		size -= len;
	}
	pgo_free(&p);
	return 0;
}
