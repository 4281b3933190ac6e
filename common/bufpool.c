/* Aligned buffer cache (bufpool.h). Owner thread only. */
#include "common/bufpool.h"

#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define MIN_SHIFT 12

/* The class of len, or -1 past the largest. */
static int class_of(size_t len)
{
	int c = 0;

	while (((size_t)1 << (MIN_SHIFT + c)) < len)
		if (++c == KURA_BUFPOOL_CLASSES)
			return -1;
	return c;
}

void kura_bufpool_init(struct kura_bufpool *p, size_t class_bytes)
{
	memset(p, 0, sizeof(*p));
	p->class_bytes = class_bytes;
}

void kura_bufpool_drain(struct kura_bufpool *p)
{
	for (int c = 0; c < KURA_BUFPOOL_CLASSES; c++) {
		while (p->head[c]) {
			void *b = p->head[c];

			UNPOISON(b, (size_t)1 << (MIN_SHIFT + c));
			p->head[c] = *(void **)b;
			free(b);
		}
		p->bytes[c] = 0;
	}
}

void *kura_bufpool_get(struct kura_bufpool *p, size_t len)
{
	int c = class_of(len);
	void *b = NULL;

	if (c >= 0 && p->head[c]) {
		b = p->head[c];
		UNPOISON(b, (size_t)1 << (MIN_SHIFT + c));
		p->head[c] = *(void **)b;
		p->bytes[c] -= (size_t)1 << (MIN_SHIFT + c);
		p->hits++;
		return b;
	}
	p->misses++;
	if (posix_memalign(&b, 4096, c >= 0 ? (size_t)1 << (MIN_SHIFT + c) : (len + 4095) & ~(size_t)4095))
		return NULL;
	return b;
}

void *kura_bufpool_getz(struct kura_bufpool *p, size_t len)
{
	void *b = kura_bufpool_get(p, len);

	if (b)
		memset(b, 0, len);
	return b;
}

void kura_bufpool_put(struct kura_bufpool *p, void *buf, size_t len)
{
	int c = class_of(len);
	size_t n = c >= 0 ? (size_t)1 << (MIN_SHIFT + c) : 0;

	if (!buf)
		return;
	/* (an empty class takes one buffer whatever its size) */
	if (c < 0 || (p->bytes[c] && p->bytes[c] + n > p->class_bytes)) {
		free(buf);
		return;
	}
	*(void **)buf = p->head[c];
	p->head[c] = buf;
	p->bytes[c] += n;
	POISON(buf, n);
}
