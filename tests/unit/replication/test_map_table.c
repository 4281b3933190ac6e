/* The placement table (kura_map_index): it answers what placement
 * worked out per group answers; a new map whose nodes only changed state
 * takes the last map's table; one whose nodes went out gets its own. */
#include "common/util.h"
#include "replication/map.h"
#include "tests/unit/harness.h"
#include "tests/unit/replication/maptest.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Every group of m (indexed) placed as the table says, against the
 * placement worked out per group (the same map without its table). */
static void check_table(const struct kura_map *m)
{
	struct kura_map plain = *m; /* shares the arrays; never freed */

	CHECK(m->table != NULL);
	plain.table = NULL;
	for (uint32_t pg = 0; pg < m->pgs; pg++) {
		unsigned a[KURA_MAP_MAX_REPLICAS], b[KURA_MAP_MAX_REPLICAS];
		unsigned na = kura_map_place(m, pg, a), nb = kura_map_place(&plain, pg, b);

		CHECK_EQ(na, nb);
		for (unsigned k = 0; k < na; k++)
			CHECK_EQ(a[k], b[k]);
		CHECK_EQ(kura_map_primary(m, pg), kura_map_primary(&plain, pg));
		CHECK_EQ(kura_map_sync_source(m, pg), kura_map_sync_source(&plain, pg));
	}
}

static void live_of(struct kura_live_node *live, unsigned n, unsigned racks)
{
	for (unsigned k = 0; k < n; k++)
		test_node(&live[k], k, racks);
}

TEST_T(test_map_index_shares_the_table_while_only_states_change, 120)
{
	enum { N = 1000, PGS = 65536 };
	struct kura_live_node *live = calloc(N, sizeof(*live));
	struct kura_map m, down, out;
	struct kura_map_health h;
	uint64_t t0, t1, t2, t3, t4, t5, t6, now = 1000;
	unsigned idx[KURA_MAP_MAX_REPLICAS];

	CHECK(live);
	live_of(live, N, 25);
	CHECK_EQ(kura_map_init(&m, CID, 3, PGS, OUT_AFTER), 0);
	CHECK_EQ(kura_map_update(&m, live, N, now), 1);
	t0 = kura_now_ns();
	CHECK_EQ(kura_map_index(&m, NULL), 0);
	t1 = kura_now_ns();
	check_table(&m);
	CHECK_EQ(kura_map_index(&m, NULL), 0); /* indexed already: kept */

	/* n007 and n500 down (their registrations gone): states only */
	CHECK_EQ(kura_map_copy(&down, &m), 0);
	CHECK(down.table == m.table);
	memmove(&live[500], &live[501], (N - 501) * sizeof(*live));
	memmove(&live[7], &live[8], (N - 2 - 7) * sizeof(*live));
	CHECK_EQ(kura_map_update(&down, live, N - 2, now += 1000), 1);
	CHECK(down.table == NULL); /* dropped by the update */
	CHECK_EQ(down.nodes[7].state, KURA_NODE_DOWN);
	t2 = kura_now_ns();
	CHECK_EQ(kura_map_index(&down, &m), 0);
	t3 = kura_now_ns();
	CHECK(down.table == m.table);
	check_table(&down);
	t4 = kura_now_ns();
	for (uint32_t pg = 0; pg < PGS; pg++)
		CHECK(kura_map_primary(&down, pg) >= 0);
	t5 = kura_now_ns();
	kura_map_health(&down, &h);
	t6 = kura_now_ns();
	CHECK_EQ(h.degraded + h.clean, PGS);
	fprintf(stderr, "%u groups over %u nodes: table worked out in %.1f ms; a map with two "
		"nodes down takes the last one's in %.3f ms; then every group's primary "
		"%.1f ms, kura_map_health %.1f ms\n",
		PGS, N, (double)(t1 - t0) / 1e6, (double)(t3 - t2) / 1e6, (double)(t5 - t4) / 1e6,
		(double)(t6 - t5) / 1e6);

	/* out_after later they are OUT: the sets change, a table of its own */
	CHECK_EQ(kura_map_copy(&out, &down), 0);
	CHECK_EQ(kura_map_update(&out, live, N - 2, now + OUT_AFTER + 1), 1);
	CHECK_EQ(out.nodes[7].state, KURA_NODE_OUT);
	CHECK_EQ(kura_map_index(&out, &down), 0);
	CHECK(out.table != NULL && out.table != down.table);
	check_table(&out);
	for (uint32_t pg = 0; pg < PGS; pg++) {
		unsigned n = kura_map_place(&out, pg, idx);

		for (unsigned k = 0; k < n; k++)
			CHECK(idx[k] != 7 && idx[k] != 500);
	}

	/* each map frees its reference: the shared table outlives m */
	kura_map_free(&m);
	check_table(&down);
	kura_map_free(&down);
	kura_map_free(&out);
	free(live);
}

TEST(test_map_index_small_maps_and_copies)
{
	struct kura_live_node live[5];
	struct kura_map m, c;

	live_of(live, 5, 5);
	CHECK_EQ(kura_map_init(&m, CID, 3, 64, OUT_AFTER), 0);
	CHECK_EQ(kura_map_index(&m, NULL), 0); /* no nodes: every set empty */
	for (uint32_t pg = 0; pg < 64; pg++) {
		unsigned idx[KURA_MAP_MAX_REPLICAS];

		CHECK_EQ(kura_map_place(&m, pg, idx), 0);
	}
	CHECK_EQ(kura_map_update(&m, live, 5, 1000), 1);
	CHECK(m.table == NULL);
	CHECK_EQ(kura_map_index(&m, NULL), 0);
	check_table(&m);
	/* a copy shares it and keeps it after the original is freed */
	CHECK_EQ(kura_map_copy(&c, &m), 0);
	kura_map_free(&m);
	check_table(&c);
	/* another node list in the same count (n004 replaced by n005): not
	 * the same inputs, so not taken */
	CHECK_EQ(kura_map_init(&m, CID, 3, 64, OUT_AFTER), 0);
	test_node(&live[4], 5, 5);
	CHECK_EQ(kura_map_update(&m, live, 5, 1000), 1);
	CHECK_EQ(kura_map_index(&m, &c), 0);
	CHECK(m.table != c.table);
	check_table(&m);
	kura_map_free(&m);
	kura_map_free(&c);
}
