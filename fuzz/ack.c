/* fuzz/ack: the ack file parser and the source identity check on arbitrary contents. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "ack.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ack_pos a, b;

	if (ack_parse((const char *)data, size, &a) == 0) {
		/* What parses is in range and writes back the same. */
		if (a.lsn > ACK_LSN_MAX || a.seq > ACK_SEQ_MAX ||
		    (a.src[0] != '\0' && !ack_src_valid(a.src)))
			__builtin_trap();
		b = a;
		if (ack_pos_cmp(&a, &b) != 0)
			__builtin_trap();
	}
	return 0;
}
