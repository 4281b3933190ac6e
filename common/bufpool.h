/* A cache of 4 KiB-aligned I/O buffers for one thread.
 *
 * glibc serves a 4 KiB-aligned allocation by carving an aligned chunk out of
 * a larger one and coalescing the pieces again on free: on the write path
 * (a buffer for the command's data, another for the store's copy of it)
 * that was about a tenth of blockd's CPU. A pool keeps freed buffers in
 * power-of-two size classes (4 KiB to 1 MiB) and hands them out again.
 *
 * Contract:
 * - one owner thread: get and put only from it (no locks);
 * - a buffer goes back with the length it was got with (any length that
 *   rounds to the same class); it may instead be freed with free(), and a
 *   buffer from kura_aligned_alloc* must never be put;
 * - buffers come back with old contents (never zeroed): fill them whole,
 *   or use kura_bufpool_getz;
 * - each class keeps at most class_bytes (at least one buffer), so a burst
 *   of large buffers does not crowd out the small ones; more are freed at
 *   once; longer than 1 MiB: plain allocations, freed on put;
 * - under AddressSanitizer a pooled buffer is poisoned until got again. */
#ifndef KURA_COMMON_BUFPOOL_H
#define KURA_COMMON_BUFPOOL_H

#include <stddef.h>
#include <stdint.h>

#define KURA_BUFPOOL_CLASSES 9 /* 4 KiB << 0..8 */

struct kura_bufpool {
	void *head[KURA_BUFPOOL_CLASSES];
	size_t bytes[KURA_BUFPOOL_CLASSES], class_bytes;
	uint64_t hits, misses;
};

void kura_bufpool_init(struct kura_bufpool *p, size_t class_bytes);
/* Frees every buffer the pool holds (those handed out stay valid). */
void kura_bufpool_drain(struct kura_bufpool *p);
/* A buffer of at least len bytes (len 0: 4 KiB); NULL on ENOMEM. */
void *kura_bufpool_get(struct kura_bufpool *p, size_t len);
/* The same, its first len bytes zeroed. */
void *kura_bufpool_getz(struct kura_bufpool *p, size_t len);
/* Gives buf (NULL: nothing) back. */
void kura_bufpool_put(struct kura_bufpool *p, void *buf, size_t len);

#endif
