/* fuzz/status: what outbox-status does with bytes it does not control: an ack file's contents, and paths as Prometheus label values. */
#define main outbox_status_main
#include "../cmd/outbox-status.c"
#undef main

int LLVMFuzzerTestOneInput(const uint8_t *, size_t);

/* A label value as written: no raw newline, every quote escaped, UTF-8. */
static void
check_label(const struct sbuf *o)
{
	size_t i;

	if (memchr(o->buf, '\n', o->len) != NULL ||
	    ndj_utf8_check(o->buf, o->len) >= 0)
		abort();
	for (i = 0; i < o->len; i++) {
		if (o->buf[i] == '\\') {
			if (i + 1 == o->len || strchr("\\\"n", o->buf[i + 1]) ==
			    NULL)
				abort();
			i++;
		} else if (o->buf[i] == '"')
			abort();
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ack_pos pos;
	struct sbuf o;
	int64_t bytes;
	double secs;
	char *s;

	if (ack_parse((const char *)data, size, &pos) == 0 &&
	    (pos.seq > ACK_SEQ_MAX || pos.lsn > ACK_LSN_MAX ||
	    (pos.src[0] != '\0' && !ack_src_valid(pos.src))))
		abort();
	s = xmalloc(size + 1);
	memcpy(s, data, size);
	s[size] = '\0';
	sb_init(&o);
	prom_label(&o, s);
	check_label(&o);
	o.len = 0;
	sb_json_str(&o, s, strlen(s));
	if (memchr(o.buf, '\n', o.len) != NULL)
		abort();
	if (parse_bytes(s, &bytes) == 0 && (bytes < 0 ||
	    bytes > (INT64_C(1) << 62)))
		abort();
	(void)parse_seconds(s, &secs);
	sb_free(&o);
	free(s);
	return 0;
}
