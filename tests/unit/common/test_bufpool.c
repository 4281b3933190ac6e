#include "common/bufpool.h"
#include "tests/unit/harness.h"

#include <stdint.h>

/* A buffer given back is handed out again for any length of its class,
 * aligned, and the pool holds no more than its per-class limit. */
TEST(test_bufpool_reuses_buffers_by_class)
{
	struct kura_bufpool p;
	void *a, *b, *c;

	kura_bufpool_init(&p, 8192);
	a = kura_bufpool_get(&p, 4096);
	CHECK(a && (uintptr_t)a % 4096 == 0);
	memset(a, 0xab, 4096);
	kura_bufpool_put(&p, a, 4096);
	b = kura_bufpool_get(&p, 100); /* rounds to 4 KiB: the same buffer */
	CHECK(b == a);
	CHECK_EQ(p.hits, 1);
	c = kura_bufpool_get(&p, 4097); /* 8 KiB class: a new one */
	CHECK(c && c != a && (uintptr_t)c % 4096 == 0);
	memset(c, 1, 8192);
	kura_bufpool_put(&p, c, 8192);
	CHECK(kura_bufpool_get(&p, 5000) == c);
	kura_bufpool_put(&p, c, 5000);
	kura_bufpool_put(&p, b, 4096);

	/* three 4 KiB buffers back against an 8 KiB limit: two are kept */
	a = kura_bufpool_get(&p, 4096);
	b = kura_bufpool_get(&p, 4096);
	c = kura_bufpool_get(&p, 4096);
	kura_bufpool_put(&p, a, 4096);
	kura_bufpool_put(&p, b, 4096);
	kura_bufpool_put(&p, c, 4096);
	CHECK_EQ(p.bytes[0], 8192);
	/* a class that is empty takes one buffer beyond its limit */
	a = kura_bufpool_get(&p, 1 << 20);
	kura_bufpool_put(&p, a, 1 << 20);
	CHECK_EQ(p.bytes[8], 1u << 20);
	CHECK(kura_bufpool_get(&p, 600000) == a);
	kura_bufpool_put(&p, a, 600000);
	kura_bufpool_put(&p, NULL, 4096);
	kura_bufpool_drain(&p);
	CHECK_EQ(p.bytes[0], 0);
	CHECK_EQ(p.bytes[8], 0);
}

/* Past the largest class: plain allocations, freed when given back; getz
 * zeroes what was asked for even in a reused buffer. */
TEST(test_bufpool_large_and_zeroed)
{
	struct kura_bufpool p;
	uint8_t *a, *z;
	size_t big = (2u << 20) + 4096;

	kura_bufpool_init(&p, 1 << 20);
	a = kura_bufpool_get(&p, big);
	CHECK(a && (uintptr_t)a % 4096 == 0);
	memset(a, 0x5a, big);
	kura_bufpool_put(&p, a, big);
	for (int i = 0; i < KURA_BUFPOOL_CLASSES; i++)
		CHECK_EQ(p.bytes[i], 0);
	a = kura_bufpool_get(&p, 4096);
	memset(a, 0xff, 4096);
	kura_bufpool_put(&p, a, 4096);
	z = kura_bufpool_getz(&p, 3000);
	CHECK(z == a);
	for (int i = 0; i < 3000; i++)
		if (z[i]) {
			CHECK(!"getz left a byte set");
			break;
		}
	kura_bufpool_put(&p, z, 3000);
	kura_bufpool_drain(&p);
}
