/* fuzz/response: the parsers of SNS's XML and SQS's JSON answers, on arbitrary input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aws.h"
#include "sns.h"
#include "sqs.h"

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct aws_entry e[10];
	struct sqs_msg *m;
	char code[64], msg[200], *buf;
	size_t n, i;

	/* Answers are NUL-terminated by the HTTP layer; so are these. */
	buf = malloc(size + 1);
	memcpy(buf, data, size);
	buf[size] = '\0';
	sns_parse_batch(buf, size, e, 10, &n);
	sns_parse_error(buf, size, code, sizeof(code), msg, sizeof(msg));
	sqs_parse_batch(buf, size, e, 10, &n);
	sqs_parse_error(buf, size, "", code, sizeof(code), msg, sizeof(msg));
	if (sqs_parse_receive(buf, size, &m, &n) == 0) {
		for (i = 0; i < n; i++)
			sqs_msg_free(&m[i]);
		free(m);
	}
	free(buf);
	return 0;
}
