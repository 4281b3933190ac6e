/* Small helpers with no state: time, sizes, alignment. Any thread. */
#ifndef KURA_COMMON_UTIL_H
#define KURA_COMMON_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define KURA_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define KURA_MIN(a, b) ((a) < (b) ? (a) : (b))
#define KURA_MAX(a, b) ((a) > (b) ? (a) : (b))
#define KURA_ALIGN_UP(x, a) (((x) + (a) - 1) / (a) * (a))
#define KURA_CONTAINER_OF(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

uint64_t kura_now_ns(void);

/* Parses "4096", "512K", "10M", "8G", "1T" (binary units). 0 or -EINVAL. */
int kura_parse_size(const char *s, uint64_t *out);
/* "30s", "10m", "1h", "7d", or plain seconds, into milliseconds: at least
 * 1 s, at most 366 days; -EINVAL otherwise. */
int kura_parse_duration(const char *s, uint64_t *ms);
/* Formats bytes as "8.0 GiB" into buf. */
const char *kura_fmt_size(uint64_t bytes, char *buf, size_t len);

/* Whether name[0..n) is a valid vdisk or snapshot name: 1 to 64 characters
 * from A-Z a-z 0-9 . _ -, not starting with . or -. */
int kura_name_ok(const char *name, size_t n);

/* 4 KiB-aligned zeroed allocation for O_DIRECT buffers; NULL on ENOMEM. */
void *kura_aligned_alloc(size_t len);
/* The same, not zeroed: for buffers about to be filled whole. */
void *kura_aligned_alloc_raw(size_t len);

/* Big-endian encoders for sortable keys. */
static inline void kura_put_be64(uint8_t *p, uint64_t v)
{
	for (int i = 7; i >= 0; i--, v >>= 8)
		p[i] = (uint8_t)v;
}

static inline uint64_t kura_get_be64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = (v << 8) | p[i];
	return v;
}

/* 64-bit mixer for hash tables (splitmix64 finalizer). */
static inline uint64_t kura_hash64(uint64_t x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

#endif
