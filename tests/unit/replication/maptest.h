/* Helpers of the cluster map's unit tests (test_map.c, test_map_recovery.c). */
#ifndef KURA_TESTS_UNIT_REPLICATION_MAPTEST_H
#define KURA_TESTS_UNIT_REPLICATION_MAPTEST_H

#include "replication/map.h"

#include <stdio.h>
#include <string.h>

#define CID "2f1c0f0e-8d6a-4c39-9a57-3b1f6e2d9c41"
#define OUT_AFTER 600000u

/* ---- building maps ---- */

static inline void live_node(struct kura_live_node *l, const char *name, const char *addr,
		      const char *domain)
{
	memset(l, 0, sizeof(*l));
	snprintf(l->name, sizeof(l->name), "%s", name);
	snprintf(l->addr, sizeof(l->addr), "%s", addr);
	snprintf(l->domain, sizeof(l->domain), "%s", domain);
}

/* Node k of a test cluster: "n007" in rack k % racks. */
static inline void test_node(struct kura_live_node *l, unsigned k, unsigned racks)
{
	char name[16], addr[32], rack[16];

	snprintf(name, sizeof(name), "n%03u", k);
	snprintf(addr, sizeof(addr), "10.99.%u.%u:7400", k / 200, k % 200 + 1);
	snprintf(rack, sizeof(rack), "rack%u", k % racks);
	live_node(l, name, addr, rack);
}

/* The map's node called name (a check fails when there is none; include
 * tests/unit/harness.h first). */
static inline struct kura_map_node *node(struct kura_map *m, const char *name)
{
	int i = kura_map_find(m, name);

	CHECK(i >= 0);
	return i >= 0 ? &m->nodes[i] : &m->nodes[0];
}

#endif
