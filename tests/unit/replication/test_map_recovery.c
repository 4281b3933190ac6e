/* The cluster map's recovery rules: resync reports, sync sources,
 * fills after a node goes out, and nodes reported unreachable. */
#include "replication/map.h"
#include "tests/unit/harness.h"
#include "tests/unit/replication/maptest.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Whether node index x is among set[0..n) (a group's set by index; node
 * indexes stay put as long as no node joins). */
static int in_set(const unsigned *set, unsigned n, unsigned x)
{
	for (unsigned j = 0; j < n; j++)
		if (set[j] == x)
			return 1;
	return 0;
}

TEST(test_map_update_synced_recovering_node_becomes_up)
{
	struct kura_map m;
	struct kura_live_node l[2];
	uint64_t since;

	CHECK_EQ(kura_map_init(&m, CID, 2, 64, OUT_AFTER), 0);
	live_node(&l[0], "n1", "10.99.0.1:7400", "rack1");
	live_node(&l[1], "n2", "10.99.0.2:7400", "rack2");
	CHECK_EQ(kura_map_update(&m, l, 2, 1000), 1);
	CHECK_EQ(m.nodes[1].state, KURA_NODE_UP);
	CHECK_EQ(m.nodes[1].last_up_epoch, 0);
	/* n2 leaves: DOWN, and it was UP last in epoch 2 (init made 1) */
	CHECK_EQ(kura_map_update(&m, l, 1, 2000), 1);
	CHECK_EQ(m.nodes[1].state, KURA_NODE_DOWN);
	CHECK_EQ(m.nodes[1].last_up_epoch, 2);
	CHECK_EQ(kura_map_update(&m, l, 2, 3000), 1);
	CHECK_EQ(m.nodes[1].state, KURA_NODE_RECOVERING);
	since = m.nodes[1].since_ms;
	/* a token from an earlier recovery does not count */
	l[1].synced_ms = since - 1;
	CHECK_EQ(kura_map_update(&m, l, 2, 4000), 0);
	CHECK_EQ(m.nodes[1].state, KURA_NODE_RECOVERING);
	l[1].synced_ms = since;
	l[1].synced_epoch = m.epoch - 1; /* made under an older map: the sources may have moved */
	CHECK_EQ(kura_map_update(&m, l, 2, 4500), 0);
	CHECK_EQ(m.nodes[1].state, KURA_NODE_RECOVERING);
	l[1].synced_epoch = m.epoch;
	CHECK_EQ(kura_map_update(&m, l, 2, 5000), 1);
	CHECK_EQ(m.nodes[1].state, KURA_NODE_UP);
	CHECK_EQ(m.nodes[1].since_ms, 5000);
	CHECK_EQ(m.nodes[1].last_up_epoch, 2);
	kura_map_free(&m);
}

TEST(test_map_sync_source_without_an_up_member_is_the_last_one_up)
{
	struct kura_map m;
	struct kura_live_node l[3];
	unsigned idx[KURA_MAP_MAX_REPLICAS];

	CHECK_EQ(kura_map_init(&m, CID, 3, 16, OUT_AFTER), 0);
	live_node(&l[0], "n1", "10.99.0.1:7400", "rack1");
	live_node(&l[1], "n2", "10.99.0.2:7400", "rack2");
	live_node(&l[2], "n3", "10.99.0.3:7400", "rack3");
	CHECK_EQ(kura_map_update(&m, l, 3, 1000), 1);
	for (uint32_t pg = 0; pg < m.pgs; pg++)
		CHECK_EQ(kura_map_sync_source(&m, pg), kura_map_primary(&m, pg));
	/* n3 leaves first (up last in epoch 2), then n1 and n2 together (3) */
	CHECK_EQ(kura_map_update(&m, l, 2, 2000), 1);
	CHECK_EQ(kura_map_update(&m, l, 0, 3000), 1);
	CHECK_EQ(m.nodes[2].last_up_epoch, 2);
	CHECK_EQ(m.nodes[0].last_up_epoch, 3);
	for (uint32_t pg = 0; pg < m.pgs; pg++)
		CHECK_EQ(kura_map_sync_source(&m, pg), -1);
	/* only n3 is back: it missed writes, so no group may copy from it */
	CHECK_EQ(kura_map_update(&m, &l[2], 1, 4000), 1);
	CHECK_EQ(m.nodes[2].state, KURA_NODE_RECOVERING);
	for (uint32_t pg = 0; pg < m.pgs; pg++)
		CHECK_EQ(kura_map_sync_source(&m, pg), -1);
	/* n2 back too: it was up as late as anyone, it is the source */
	CHECK_EQ(kura_map_update(&m, &l[1], 2, 5000), 1);
	for (uint32_t pg = 0; pg < m.pgs; pg++) {
		int s = kura_map_sync_source(&m, pg);
		CHECK_EQ(kura_map_place(&m, pg, idx), 3);
		CHECK_EQ(s, 1); /* n1 is as recent, but DOWN */
	}
	/* n1 back: the first of n1, n2 in each set's order */
	CHECK_EQ(kura_map_update(&m, l, 3, 6000), 1);
	for (uint32_t pg = 0; pg < m.pgs; pg++) {
		int s = kura_map_sync_source(&m, pg);
		kura_map_place(&m, pg, idx);
		for (unsigned i = 0; i < 3; i++)
			if (idx[i] != 2) {
				CHECK_EQ(s, (int)idx[i]);
				break;
			}
	}
	kura_map_free(&m);
}

TEST(test_map_update_out_makes_the_nodes_that_take_its_place_fill)
{
	struct kura_map m, before, back;
	struct kura_live_node l[4];
	unsigned a[KURA_MAP_MAX_REPLICAS], b[KURA_MAP_MAX_REPLICAS];
	unsigned gained = 0;
	char *text;

	CHECK_EQ(kura_map_init(&m, CID, 2, 64, 1000), 0);
	for (unsigned k = 0; k < 4; k++)
		test_node(&l[k], k, 4);
	CHECK_EQ(kura_map_update(&m, l, 4, 1000), 1);
	CHECK_EQ(kura_map_update(&m, l, 3, 2000), 1); /* the last one DOWN */
	CHECK_EQ(m.nodes[3].state, KURA_NODE_DOWN);
	CHECK_EQ(m.nfills, 0);
	CHECK_EQ(kura_map_copy(&before, &m), 0);
	CHECK_EQ(kura_map_update(&m, l, 3, 3000), 1); /* OUT */
	CHECK_EQ(m.nodes[3].state, KURA_NODE_OUT);
	for (uint32_t pg = 0; pg < m.pgs; pg++) {
		unsigned na = kura_map_place(&before, pg, a), nb = kura_map_place(&m, pg, b);
		for (unsigned i = 0; i < nb; i++) {
			int was = in_set(a, na, b[i]);
			CHECK_EQ(kura_map_filling(&m, pg, m.nodes[b[i]].name), !was);
			gained += !was;
			/* the one that fills is nobody's primary or source */
			if (!was) {
				CHECK(kura_map_primary(&m, pg) != (int)b[i]);
				CHECK(kura_map_primary(&m, pg) >= 0);
				CHECK_EQ(kura_map_sync_source(&m, pg), kura_map_primary(&m, pg));
			}
		}
	}
	CHECK(gained > 0);
	CHECK_EQ(m.nfills, gained);
	for (unsigned k = 0; k < 3; k++)
		CHECK_EQ(m.nodes[k].state, KURA_NODE_UP);
	/* the fills go through JSON */
	CHECK((text = kura_map_to_json(&m)) != NULL);
	CHECK_EQ(kura_map_from_json(text, strlen(text), &back, NULL, 0), 0);
	CHECK_EQ(back.nfills, m.nfills);
	CHECK(!memcmp(back.fills, m.fills, m.nfills * sizeof(*m.fills)));
	free(text);
	kura_map_free(&back);
	/* a report made under an older map ends none; one under this map ends
	 * that node's */
	l[0].filled_epoch = m.epoch - 1;
	CHECK_EQ(kura_map_update(&m, l, 3, 3100), 0);
	CHECK_EQ(m.nfills, gained);
	l[0].filled_epoch = m.epoch;
	{
		unsigned mine = 0;
		for (unsigned i = 0; i < m.nfills; i++)
			mine += !strcmp(m.fills[i].node, m.nodes[0].name);
		CHECK_EQ(kura_map_update(&m, l, 3, 3200), mine > 0);
		CHECK_EQ(m.nfills, gained - mine);
		l[0].filled_epoch = 0;
	}
	for (unsigned i = 0; i < m.nfills; i++)
		CHECK(strcmp(m.fills[i].node, m.nodes[0].name));
	/* the OUT node back: it takes its places again, the fills there end */
	CHECK_EQ(kura_map_update(&m, l, 4, 4000), 1);
	CHECK_EQ(m.nodes[3].state, KURA_NODE_RECOVERING);
	CHECK_EQ(m.nfills, 0);
	kura_map_free(&before);
	kura_map_free(&m);
}

TEST(test_map_update_domain_change_makes_the_nodes_entering_sets_fill)
{
	struct kura_map m, before;
	struct kura_live_node l[5];
	unsigned a[KURA_MAP_MAX_REPLICAS], b[KURA_MAP_MAX_REPLICAS], entered = 0;

	CHECK_EQ(kura_map_init(&m, CID, 3, 64, 1000), 0);
	for (unsigned k = 0; k < 5; k++)
		test_node(&l[k], k, 5);
	CHECK_EQ(kura_map_update(&m, l, 5, 1000), 1);
	CHECK_EQ(kura_map_copy(&before, &m), 0);
	snprintf(l[4].domain, sizeof(l[4].domain), "%s", l[3].domain); /* n004 into n003's rack */
	CHECK_EQ(kura_map_update(&m, l, 5, 2000), 1);
	for (uint32_t pg = 0; pg < m.pgs; pg++) {
		unsigned na = kura_map_place(&before, pg, a), nb = kura_map_place(&m, pg, b);
		for (unsigned i = 0; i < nb; i++) {
			int was = in_set(a, na, b[i]);
			CHECK_EQ(kura_map_filling(&m, pg, m.nodes[b[i]].name), !was);
			entered += !was;
		}
	}
	CHECK(entered > 0);
	CHECK_EQ(m.nfills, entered);
	/* sorted, as the JSON rules want */
	for (unsigned i = 1; i < m.nfills; i++)
		CHECK(m.fills[i - 1].pg < m.fills[i].pg ||
		      (m.fills[i - 1].pg == m.fills[i].pg &&
		       strcmp(m.fills[i - 1].node, m.fills[i].node) < 0));
	kura_map_free(&before);
	kura_map_free(&m);
}

TEST(test_map_json_rejects_bad_fills)
{
	static const char *const bad[] = {
		"\"fills\":{}", "\"fills\":[1]", "\"fills\":[{\"pg\":64,\"node\":\"n1\",\"epoch\":1}]",
		"\"fills\":[{\"pg\":1,\"node\":\"nx\",\"epoch\":1}]",
		"\"fills\":[{\"pg\":1,\"node\":\"n1\",\"epoch\":0}]",
		"\"fills\":[{\"pg\":1,\"node\":\"n1\",\"epoch\":8}]",
		"\"fills\":[{\"pg\":1,\"node\":\"n1\"}]",
		"\"fills\":[{\"pg\":2,\"node\":\"n1\",\"epoch\":1},{\"pg\":1,\"node\":\"n1\",\"epoch\":1}]",
		"\"fills\":[{\"pg\":1,\"node\":\"n1\",\"epoch\":1},{\"pg\":1,\"node\":\"n1\",\"epoch\":1}]",
	};
	char text[1024], err[160];
	struct kura_map m;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text),
			 "{\"cluster_id\":\"%s\",\"epoch\":7,\"replicas\":2,\"pgs\":64,"
			 "\"out_after_ms\":1000,\"nodes\":[{\"name\":\"n1\",\"addr\":\"10.0.0.1:7400\","
			 "\"domain\":\"r1\",\"state\":\"up\",\"since_ms\":1}],%s}", CID, bad[i]);
		CHECK_EQ(kura_map_from_json(text, strlen(text), &m, err, sizeof(err)), -EINVAL);
		CHECK(strstr(err, "fills") != NULL);
	}
	snprintf(text, sizeof(text),
		 "{\"cluster_id\":\"%s\",\"epoch\":7,\"replicas\":2,\"pgs\":64,"
		 "\"out_after_ms\":1000,\"nodes\":[{\"name\":\"n1\",\"addr\":\"10.0.0.1:7400\","
		 "\"domain\":\"r1\",\"state\":\"up\",\"since_ms\":1}],"
		 "\"fills\":[{\"pg\":1,\"node\":\"n1\",\"epoch\":7}]}", CID);
	CHECK_EQ(kura_map_from_json(text, strlen(text), &m, err, sizeof(err)), 0);
	CHECK_EQ(m.nfills, 1);
	CHECK(kura_map_filling(&m, 1, "n1"));
	CHECK(!kura_map_filling(&m, 2, "n1"));
	CHECK_EQ(kura_map_primary(&m, 1), -1); /* its only member is filling */
	CHECK_EQ(kura_map_sync_source(&m, 1), 0); /* the data is lost: it starts empty */
	kura_map_free(&m);
}

TEST(test_map_update_sets_back_a_node_reported_unreachable)
{
	struct kura_map m;
	struct kura_live_node l[3];

	CHECK_EQ(kura_map_init(&m, CID, 3, 16, OUT_AFTER), 0);
	live_node(&l[0], "n1", "10.99.0.1:7400", "rack1");
	live_node(&l[1], "n2", "10.99.0.2:7400", "rack2");
	live_node(&l[2], "n3", "10.99.0.3:7400", "rack3");
	CHECK_EQ(kura_map_update(&m, l, 3, 1000), 1);
	/* n1 cannot deliver to n2: n2 is set back (recovering) */
	l[0].nunreach = 1;
	snprintf(l[0].unreach[0], sizeof(l[0].unreach[0]), "n2");
	CHECK_EQ(kura_map_update(&m, l, 3, 2000), 1);
	CHECK_EQ(m.nodes[0].state, KURA_NODE_UP);
	CHECK_EQ(m.nodes[1].state, KURA_NODE_RECOVERING);
	CHECK_EQ(m.nodes[1].last_up_epoch, 2);
	/* still reported while recovering: down (its copies stop waiting) */
	CHECK_EQ(kura_map_update(&m, l, 3, 3000), 1);
	CHECK_EQ(m.nodes[1].state, KURA_NODE_DOWN);
	kura_map_free(&m);

	/* each reports the other: only the later name is set back */
	CHECK_EQ(kura_map_init(&m, CID, 3, 16, OUT_AFTER), 0);
	l[0].nunreach = 0;
	CHECK_EQ(kura_map_update(&m, l, 3, 1000), 1);
	l[0].nunreach = 1;
	l[1].nunreach = 1;
	snprintf(l[1].unreach[0], sizeof(l[1].unreach[0]), "n1");
	CHECK_EQ(kura_map_update(&m, l, 3, 2000), 1);
	CHECK_EQ(m.nodes[0].state, KURA_NODE_UP);
	CHECK_EQ(m.nodes[1].state, KURA_NODE_RECOVERING);
	CHECK_EQ(m.nodes[2].state, KURA_NODE_UP);
	/* a recovering node's word does not count; nor a name not in the map */
	l[1].nunreach = 2;
	snprintf(l[1].unreach[1], sizeof(l[1].unreach[1]), "n3");
	l[0].nunreach = 1;
	snprintf(l[0].unreach[0], sizeof(l[0].unreach[0]), "nx");
	CHECK_EQ(kura_map_update(&m, l, 3, 3000), 0);
	CHECK_EQ(m.nodes[2].state, KURA_NODE_UP);
	kura_map_free(&m);
}

static void ask(struct kura_live_node *l, const char *node, enum kura_map_ask_kind kind)
{
	snprintf(l->asks[l->nasks].node, KURA_MAP_NAME_MAX, "%s", node);
	l->asks[l->nasks++].kind = kind;
}

TEST(test_map_update_carries_out_an_up_nodes_asks_to_mark_out_and_remove)
{
	struct kura_map m, before;
	struct kura_live_node l[4];
	unsigned a[KURA_MAP_MAX_REPLICAS], b[KURA_MAP_MAX_REPLICAS], gained = 0;
	uint64_t epoch;

	CHECK_EQ(kura_map_init(&m, CID, 2, 64, OUT_AFTER), 0);
	for (unsigned k = 0; k < 4; k++)
		test_node(&l[k], k, 4);
	CHECK_EQ(kura_map_update(&m, l, 4, 1000), 1);
	/* asks about a live node, or an unknown one, do nothing */
	ask(&l[0], "n003", KURA_ASK_OUT);
	ask(&l[0], "n003", KURA_ASK_REMOVE);
	ask(&l[0], "nobody", KURA_ASK_OUT);
	epoch = m.epoch;
	CHECK_EQ(kura_map_update(&m, l, 4, 2000), 0);
	CHECK_EQ(m.epoch, epoch);
	CHECK_EQ(m.nodes[3].state, KURA_NODE_UP);
	/* n003 stops: it goes DOWN, and in the same step an UP node's ask
	 * takes it OUT long before out_after */
	l[0].nasks = 0;
	ask(&l[0], "n003", KURA_ASK_OUT);
	CHECK_EQ(kura_map_update(&m, l, 3, 3000), 1);
	CHECK_EQ(m.nodes[3].state, KURA_NODE_OUT);
	CHECK_EQ(m.nodes[3].since_ms, 3000);
	l[0].nasks = 0;
	/* another DOWN node, asked about by a RECOVERING node: its word does
	 * not count; by an UP one, it does */
	memmove(&l[1], &l[2], sizeof(l[1])); /* n002 live, n001 not */
	CHECK_EQ(kura_map_update(&m, l, 2, 4000), 1);
	CHECK_EQ(m.nodes[1].state, KURA_NODE_DOWN);
	CHECK_EQ(kura_map_copy(&before, &m), 0);
	node(&m, "n000")->state = KURA_NODE_RECOVERING;
	ask(&l[0], "n001", KURA_ASK_OUT);
	ask(&l[1], "n001", KURA_ASK_REMOVE); /* DOWN, not OUT: stays */
	CHECK_EQ(kura_map_update(&m, l, 2, 5000), 0);
	CHECK_EQ(m.nodes[1].state, KURA_NODE_DOWN);
	ask(&l[1], "n001", KURA_ASK_OUT);
	CHECK_EQ(kura_map_update(&m, l, 2, 6000), 1);
	CHECK_EQ(m.nodes[1].state, KURA_NODE_OUT);
	/* the nodes entering n001's groups fill them */
	for (uint32_t pg = 0; pg < m.pgs; pg++) {
		unsigned na = kura_map_place(&before, pg, a), nb = kura_map_place(&m, pg, b);
		for (unsigned i = 0; i < nb; i++)
			if (!in_set(a, na, b[i])) {
				CHECK(kura_map_filling(&m, pg, m.nodes[b[i]].name));
				gained++;
			}
	}
	CHECK(gained > 0);
	l[0].nasks = l[1].nasks = 0;
	/* remove: not a live node, and an OUT one (n003) */
	node(&m, "n000")->state = KURA_NODE_UP;
	kura_map_free(&before);
	CHECK_EQ(kura_map_copy(&before, &m), 0);
	ask(&l[1], "n000", KURA_ASK_REMOVE); /* live */
	ask(&l[1], "n003", KURA_ASK_REMOVE);
	epoch = m.epoch;
	CHECK_EQ(kura_map_update(&m, l, 2, 7000), 1);
	CHECK_EQ(m.epoch, epoch + 1);
	CHECK_EQ(m.nnodes, 3);
	CHECK_EQ(kura_map_find(&m, "n003"), -1);
	CHECK(kura_map_find(&m, "n001") >= 0);
	/* placement is the same without the OUT node's entry */
	for (uint32_t pg = 0; pg < m.pgs; pg++) {
		unsigned na = kura_map_place(&before, pg, a), nb = kura_map_place(&m, pg, b);
		CHECK_EQ(na, nb);
		for (unsigned i = 0; i < nb; i++)
			CHECK(!strcmp(before.nodes[a[i]].name, m.nodes[b[i]].name));
	}
	/* asked again (the ask stays in a registration until the map shows it
	 * done): nothing more happens */
	CHECK_EQ(kura_map_update(&m, l, 2, 8000), 0);
	/* the removed node registers again: a node never seen, RECOVERING
	 * (join_up_until_ms has passed) */
	l[1].nasks = 0;
	test_node(&l[2], 3, 4);
	m.join_up_until_ms = 1;
	CHECK_EQ(kura_map_update(&m, l, 3, 9000), 1);
	CHECK_EQ(node(&m, "n003")->state, KURA_NODE_RECOVERING);
	CHECK_EQ(node(&m, "n003")->last_up_epoch, 0);
	kura_map_free(&before);
	kura_map_free(&m);
}
