/* fuzz/pgoutput: the replication framing and the pgoutput decoder on arbitrary messages. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "pgo.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/*
 * The input is a sequence of messages, each a 2-byte big-endian length
 * and that many bytes (cut short at the end of the input), decoded in
 * order by one decoder, so that state carries over: a Relation, then
 * Inserts into it, and so on.  A message that frames as XLogData is
 * decoded from its payload; any other is decoded as it is.
 */
int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct pgo_frame f;
	struct pgo p;
	size_t len;
	int rc;

	pgo_init(&p, "pg:1:1:fuzz");
	while (size >= 2) {
		len = (size_t)data[0] << 8 | data[1];
		data += 2;
		size -= 2;
		if (len > size)
			len = size;
		if (pgo_frame(data, len, &f) == 'w')
			rc = pgo_decode(&p, f.payload, f.len);
		else
			rc = pgo_decode(&p, data, len);
		if (rc == PGO_ROW &&
		    memchr(p.line.buf, '\n', p.line.len) != NULL)
			__builtin_trap();	/* an event line must be one line */
		data += len;
		size -= len;
	}
	pgo_free(&p);
	return 0;
}
