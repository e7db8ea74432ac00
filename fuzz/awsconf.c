/* fuzz/awsconf: the shared config file parser, credential answers, times, topic ARNs and queue URLs, on arbitrary input. */
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
	struct aws_ini ini;
	struct aws_creds c;
	char why[128], region[64], *buf, *url;
	unsigned bad;
	int64_t ms;

	buf = malloc(size + 1);
	memcpy(buf, data, size);
	buf[size] = '\0';
	if (aws_ini_parse(buf, size, &ini, &bad) == 0) {
		aws_ini_get(&ini, "default", "region", NULL);
		aws_ini_get(&ini, "services x", "sqs", "endpoint_url");
		aws_ini_free(&ini);
	}
	if (aws_parse_creds(buf, size, &c, why, sizeof(why)) == 0)
		aws_creds_free(&c);
	aws_parse_time(buf, &ms);
	sns_arn_parse(buf, region, sizeof(region));
	if (sqs_url_parse(buf, &url, region, sizeof(region)) == 0)
		free(url);
	free(buf);
	return 0;
}
