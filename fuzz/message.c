/* fuzz/message: event-consume's unwrapping of queue messages (SNS envelope, pipe message, Debezium row) and of Kafka records (key NUL value), on arbitrary input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"
#include "ndj.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct msg_event ev;
	static int ready;
	struct sbuf sb;
	char why[256], *buf, *nul;

	if (!ready) {
		msg_init(&ev);
		ready = 1;
	}
	buf = malloc(size + 1);
	memcpy(buf, data, size);
	buf[size] = '\0';
	msg_parse(buf, size, size % 2 ? "public.other" : NULL, &ev, why,
	    sizeof(why));
	/* A Kafka record: the key before the first NUL, the value after it. */
	if ((nul = memchr(buf, '\0', size)) != NULL)
		msg_parse_kv(buf, (size_t)(nul - buf), nul + 1,
		    size - (size_t)(nul - buf) - 1, NULL, &ev, why, sizeof(why));
	else
		msg_parse_kv(NULL, 0, buf, size, NULL, &ev, why, sizeof(why));
	sb_init(&sb);
	msg_cols(buf, size, &sb);
	sb_free(&sb);
	free(buf);
	return 0;
}
