/* The placement table (kura_map_index): it answers what placement
 * worked out per group answers; a new map whose nodes only changed state
 * takes the last map's table; one whose nodes went out, came back or
 * joined gets its own, worked out from the last one's, and it equals a
 * placement of every group over every node. */
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
	struct kura_map m, down, out, join;
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
	t4 = kura_now_ns();
	CHECK_EQ(kura_map_update(&out, live, N - 2, now + OUT_AFTER + 1), 1);
	t5 = kura_now_ns();
	CHECK(out.nfills > 0);
	CHECK_EQ(out.nodes[7].state, KURA_NODE_OUT);
	t0 = kura_now_ns();
	CHECK_EQ(kura_map_index(&out, &down), 0);
	t1 = kura_now_ns();
	CHECK(out.table != NULL && out.table != down.table);
	check_table(&out);
	/* and a new node joins: one weight per group */
	CHECK_EQ(kura_map_copy(&join, &out), 0);
	test_node(&live[N - 2], N, 25);
	CHECK_EQ(kura_map_update(&join, live, N - 1, now + OUT_AFTER + 2000), 1);
	CHECK(kura_map_find(&join, "n1000") >= 0);
	t2 = kura_now_ns();
	CHECK_EQ(kura_map_index(&join, &out), 0);
	t3 = kura_now_ns();
	check_table(&join);
	fprintf(stderr, "two of %u nodes out: the map with their fills made in %.1f ms, its table "
		"worked out from the last one's in %.1f ms; a node joining: %.1f ms\n", N,
		(double)(t5 - t4) / 1e6, (double)(t1 - t0) / 1e6, (double)(t3 - t2) / 1e6);
	kura_map_free(&join);
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

/* Map m of r replicas and pgs groups over the model's nodes: name k is
 * "n%03u", in domain dom[k], OUT when out[k], absent when gone[k]. */
static void model_map(struct kura_map *m, unsigned r, unsigned pgs, unsigned n,
		      const unsigned *dom, const uint8_t *out, const uint8_t *gone)
{
	unsigned c = 0;

	CHECK_EQ(kura_map_init(m, CID, r, pgs, OUT_AFTER), 0);
	m->nodes = calloc(n ? n : 1, sizeof(*m->nodes));
	CHECK(m->nodes != NULL);
	for (unsigned k = 0; k < n; k++) {
		struct kura_map_node *nd = &m->nodes[c];

		if (gone[k])
			continue;
		snprintf(nd->name, sizeof(nd->name), "n%03u", k);
		snprintf(nd->addr, sizeof(nd->addr), "10.0.%u.%u:7400", k / 200, k % 200 + 1);
		snprintf(nd->domain, sizeof(nd->domain), "rack%u", dom[k]);
		nd->state = out[k] ? KURA_NODE_OUT : KURA_NODE_UP;
		c++;
	}
	m->nnodes = c;
}

/* Random walks of nodes going out, coming back, joining, leaving the map
 * and (rarely) moving to another domain, on clusters of several sizes:
 * after every step the table worked out from the last map's equals the
 * placement of every group over every node. */
TEST_T(test_map_index_from_the_last_table_equals_a_full_placement, 120)
{
	enum { MAXN = 80 };
	static const unsigned sizes[][4] = { /* first nodes, domains, replicas, pgs */
		{ 3, 3, 2, 64 }, { 5, 5, 3, 256 }, { 12, 4, 3, 256 }, { 30, 30, 3, 512 },
		{ 40, 6, 2, 1024 }, { 60, 10, 3, 256 },
	};
	uint64_t seed = 0x6b757261;
	unsigned long carried = 0, groups = 0;

	for (unsigned z = 0; z < sizeof(sizes) / sizeof(sizes[0]); z++) {
		unsigned dom[MAXN], n = sizes[z][0], ndom = sizes[z][1];
		uint8_t out[MAXN] = { 0 }, gone[MAXN] = { 0 };
		struct kura_map prev;

		for (unsigned k = 0; k < MAXN; k++)
			dom[k] = k % ndom;
		model_map(&prev, sizes[z][2], sizes[z][3], n, dom, out, gone);
		CHECK_EQ(kura_map_index(&prev, NULL), 0);
		for (unsigned step = 0; step < 120; step++) {
			struct kura_map next;
			unsigned k, changes = 1 + (unsigned)(kura_hash64(seed++) % 3);

			for (unsigned c = 0; c < changes; c++) {
				uint64_t h = kura_hash64(seed++);

				k = (unsigned)((h >> 8) % n);
				switch (h % 16) {
				case 0: case 1: case 2: case 3: case 4: /* out, or back */
					if (!gone[k])
						out[k] = !out[k];
					break;
				case 5: case 6: case 7: case 8: /* a node joins */
					if (n < MAXN) {
						dom[n] = (unsigned)((h >> 20) % ndom);
						out[n] = gone[n] = 0;
						n++;
					}
					break;
				case 9: case 10: /* an out node leaves the map, or returns */
					if (out[k])
						gone[k] = !gone[k];
					break;
				case 11: /* a node moves to another domain */
					if (h & 0x100000)
						dom[k] = (dom[k] + 1) % ndom;
					break;
				default: /* a node that was gone joins again, UP */
					if (gone[k])
						gone[k] = out[k] = 0;
					break;
				}
			}
			model_map(&next, sizes[z][2], sizes[z][3], n, dom, out, gone);
			CHECK_EQ(kura_map_index(&next, &prev), 0);
			if (next.table != prev.table) {
				carried += kura_map_table_carried(&next);
				groups += next.pgs;
			}
			check_table(&next);
			kura_map_free(&prev);
			prev = next;
		}
		kura_map_free(&prev);
	}
	/* most groups of most new tables came from the last one */
	CHECK(carried > groups / 2);
}
