/* A receive buffer for a stream of framed messages (the store protocol's
 * server and node links): a receive fills it past `len`, the parser takes
 * whole headers and the start of payloads from `pos`, and what is left
 * (less than a header) moves to the start before the next receive. */
#ifndef KURA_COMMON_RXBUF_H
#define KURA_COMMON_RXBUF_H

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct kura_rxbuf {
	uint8_t *buf; /* cap bytes once a receive was armed, else NULL */
	size_t pos, len, cap;
};

static inline size_t kura_rxbuf_avail(const struct kura_rxbuf *b)
{
	return b->len - b->pos;
}

/* Copies up to n bytes out to dst; returns how many. */
static inline size_t kura_rxbuf_take(struct kura_rxbuf *b, void *dst, size_t n)
{
	if (n > b->len - b->pos)
		n = b->len - b->pos;
	if (n)
		memcpy(dst, b->buf + b->pos, n);
	b->pos += n;
	return n;
}

/* Room to receive into, at buf + len for cap - len bytes: allocates the
 * buffer the first time and moves what is left to its start. 0, or
 * -ENOMEM. */
static inline int kura_rxbuf_ready(struct kura_rxbuf *b, size_t cap)
{
	if (!b->buf) {
		if (!(b->buf = malloc(cap)))
			return -ENOMEM;
		b->cap = cap;
	}
	if (b->pos) {
		memmove(b->buf, b->buf + b->pos, b->len - b->pos);
		b->len -= b->pos;
		b->pos = 0;
	}
	return 0;
}

static inline void kura_rxbuf_reset(struct kura_rxbuf *b)
{
	b->pos = b->len = 0;
}

static inline void kura_rxbuf_free(struct kura_rxbuf *b)
{
	free(b->buf);
	b->buf = NULL;
	b->pos = b->len = b->cap = 0;
}

#endif
