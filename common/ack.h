/* ack: the ack file, one line "LSN SEQ", the position a consumer has applied. */
#ifndef CQRS_ACK_H
#define CQRS_ACK_H

#include <stdint.h>

int	ack_read(const char *, uint64_t *, uint64_t *);
int	ack_write(const char *, uint64_t, uint64_t);

#endif
