#include "replication/map.h"
#include "common/util.h"
#include "tests/unit/harness.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "tests/unit/replication/maptest.h"

/* A map of n UP nodes spread over racks, joined in index order at t=1000. */
static void make_map(struct kura_map *m, unsigned replicas, unsigned pgs, unsigned n,
		     unsigned racks)
{
	struct kura_live_node *live = calloc(n ? n : 1, sizeof(*live));

	CHECK(live);
	for (unsigned k = 0; k < n; k++)
		test_node(&live[k], k, racks);
	CHECK_EQ(kura_map_init(m, CID, replicas, pgs, OUT_AFTER), 0);
	CHECK_EQ(kura_map_update(m, live, n, 1000), n ? 1 : 0);
	CHECK_EQ(m->epoch, n ? 2 : 1);
	free(live);
}

/* A group's set by node names, so that maps with different node lists
 * compare. */
struct set {
	unsigned n;
	const char *name[KURA_MAP_MAX_REPLICAS];
};

static struct set set_of(const struct kura_map *m, uint32_t pg)
{
	unsigned idx[KURA_MAP_MAX_REPLICAS];
	struct set s = { 0 };

	s.n = kura_map_place(m, pg, idx);
	CHECK(s.n <= m->replicas);
	for (unsigned k = 0; k < s.n; k++) {
		CHECK(idx[k] < m->nnodes);
		s.name[k] = m->nodes[idx[k]].name;
	}
	return s;
}

static int set_has(const struct set *s, const char *name)
{
	for (unsigned k = 0; k < s->n; k++)
		if (!strcmp(s->name[k], name))
			return 1;
	return 0;
}

static int same_set(const struct set *a, const struct set *b)
{
	if (a->n != b->n)
		return 0;
	for (unsigned k = 0; k < a->n; k++)
		if (strcmp(a->name[k], b->name[k]))
			return 0;
	return 1;
}

/* a with the node called skip left out. */
static struct set without(const struct set *a, const char *skip)
{
	struct set s = { 0 };

	for (unsigned k = 0; k < a->n; k++)
		if (strcmp(a->name[k], skip))
			s.name[s.n++] = a->name[k];
	return s;
}

/* Whether a is b in the same order with some members left out. */
static int subsequence(const struct set *a, const struct set *b)
{
	unsigned j = 0;

	for (unsigned k = 0; k < a->n; k++) {
		while (j < b->n && strcmp(a->name[k], b->name[j]))
			j++;
		if (j == b->n)
			return 0;
		j++;
	}
	return 1;
}

static void check_maps_equal(const struct kura_map *a, const struct kura_map *b)
{
	CHECK(!strcmp(a->cluster_id, b->cluster_id));
	CHECK_EQ(a->epoch, b->epoch);
	CHECK_EQ(a->replicas, b->replicas);
	CHECK_EQ(a->pgs, b->pgs);
	CHECK_EQ(a->out_after_ms, b->out_after_ms);
	CHECK_EQ(a->nnodes, b->nnodes);
	for (unsigned i = 0; i < a->nnodes; i++) {
		CHECK(!strcmp(a->nodes[i].name, b->nodes[i].name));
		CHECK(!strcmp(a->nodes[i].addr, b->nodes[i].addr));
		CHECK(!strcmp(a->nodes[i].domain, b->nodes[i].domain));
		CHECK_EQ(a->nodes[i].state, b->nodes[i].state);
		CHECK_EQ(a->nodes[i].since_ms, b->nodes[i].since_ms);
	}
}

/* ---- JSON ---- */

TEST(test_map_json_round_trip)
{
	struct kura_map m, back;
	struct kura_live_node live[4];
	char err[160];
	char *text, *again;

	CHECK_EQ(kura_map_init(&m, CID, 2, 64, 5000), 0);
	live_node(&live[0], "n1", "10.99.0.1:7400", "rack1");
	live_node(&live[1], "node-b.example", "node-b.example:65535", "rack_2");
	live_node(&live[2], "n3", "192.168.100.200:1", "rack1");
	live_node(&live[3], "N.4_x-y", "h:7400", "r");
	CHECK_EQ(kura_map_update(&m, live, 4, 1796300000000ull), 1);
	CHECK_EQ(kura_map_update(&m, live, 3, 1796300000001ull), 1); /* N.4_x-y down */
	CHECK_EQ(kura_map_update(&m, live, 2, 1796300009000ull), 1); /* N.4_x-y out, n3 down */
	CHECK_EQ(node(&m, "N.4_x-y")->state, KURA_NODE_OUT);
	CHECK_EQ(node(&m, "n3")->state, KURA_NODE_DOWN);

	text = kura_map_to_json(&m);
	CHECK(text);
	CHECK_EQ(kura_map_from_json(text, strlen(text), &back, err, sizeof(err)), 0);
	check_maps_equal(&m, &back);
	again = kura_map_to_json(&back);
	CHECK(again);
	CHECK(!strcmp(text, again));
	free(again);
	free(text);
	kura_map_free(&back);
	kura_map_free(&m);

	/* an empty map too */
	CHECK_EQ(kura_map_init(&m, CID, 1, 1, 0), 0);
	text = kura_map_to_json(&m);
	CHECK(text);
	CHECK_EQ(kura_map_from_json(text, strlen(text), &back, err, sizeof(err)), 0);
	check_maps_equal(&m, &back);
	CHECK(back.nodes == NULL);
	free(text);
	kura_map_free(&back);
	kura_map_free(&m);
}

TEST(test_map_json_reads_the_documented_shape_and_ignores_unknown_keys)
{
	static const char text[] =
		"{\"cluster_id\":\"" CID "\",\"epoch\":7,\"replicas\":3,\"pgs\":256,"
		"\"out_after_ms\":600000,\"future\":{\"a\":[1,2,{\"b\":null}]},\"nodes\":["
		"{\"name\":\"n1\",\"addr\":\"10.99.0.1:7400\",\"domain\":\"rack1\",\"state\":\"up\","
		"\"since_ms\":1796300000000,\"weight\":2},"
		"{\"name\":\"n2\",\"addr\":\"n2.example:7400\",\"domain\":\"rack2\",\"state\":\"down\","
		"\"since_ms\":5},"
		"{\"name\":\"n3\",\"addr\":\"10.99.0.3:7400\",\"domain\":\"rack3\",\"state\":\"out\","
		"\"since_ms\":18446744073709551615}]}";
	struct kura_map m;
	char err[160];

	CHECK_EQ(kura_map_from_json(text, strlen(text), &m, err, sizeof(err)), 0);
	CHECK(!strcmp(m.cluster_id, CID));
	CHECK_EQ(m.epoch, 7);
	CHECK_EQ(m.replicas, 3);
	CHECK_EQ(m.pgs, 256);
	CHECK_EQ(m.out_after_ms, 600000);
	CHECK_EQ(m.nnodes, 3);
	CHECK(!strcmp(m.nodes[0].name, "n1"));
	CHECK(!strcmp(m.nodes[0].addr, "10.99.0.1:7400"));
	CHECK(!strcmp(m.nodes[0].domain, "rack1"));
	CHECK_EQ(m.nodes[0].state, KURA_NODE_UP);
	CHECK_EQ(m.nodes[0].since_ms, 1796300000000ull);
	CHECK_EQ(m.nodes[1].state, KURA_NODE_DOWN);
	CHECK_EQ(m.nodes[2].state, KURA_NODE_OUT);
	CHECK(m.nodes[2].since_ms == UINT64_MAX);
	kura_map_free(&m);
}

#define NODE(nm, ad, dm, st, since)                                                  \
	"{\"name\":" nm ",\"addr\":" ad ",\"domain\":" dm ",\"state\":" st           \
	",\"since_ms\":" since "}"
#define N1 NODE("\"n1\"", "\"10.99.0.1:7400\"", "\"rack1\"", "\"up\"", "1")
#define N2 NODE("\"n2\"", "\"10.99.0.2:7400\"", "\"rack2\"", "\"up\"", "1")
#define NAME(nm) NODE(nm, "\"10.99.0.1:7400\"", "\"rack1\"", "\"up\"", "1")
#define ADDR(ad) NODE("\"n1\"", ad, "\"rack1\"", "\"up\"", "1")
#define MAP(id, ep, rf, pgs, oa, nodes)                                              \
	"{\"cluster_id\":" id ",\"epoch\":" ep ",\"replicas\":" rf ",\"pgs\":" pgs          \
	",\"out_after_ms\":" oa ",\"nodes\":" nodes "}"
#define GOOD_ID "\"" CID "\""
#define WITH_ID(id) MAP(id, "7", "3", "256", "600000", "[" N1 "]")
#define WITH_EPOCH(ep) MAP(GOOD_ID, ep, "3", "256", "600000", "[" N1 "]")
#define WITH_RF(rf) MAP(GOOD_ID, "7", rf, "256", "600000", "[" N1 "]")
#define WITH_PGS(pgs) MAP(GOOD_ID, "7", "3", pgs, "600000", "[" N1 "]")
#define WITH_OA(oa) MAP(GOOD_ID, "7", "3", "256", oa, "[" N1 "]")
#define WITH_NODES(nodes) MAP(GOOD_ID, "7", "3", "256", "600000", nodes)
#define LONG63 "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijk"

/* text must be refused with -EINVAL and a one-line reason naming field;
 * the output map must hold nothing. */
static void check_rejected(const char *text, size_t len, const char *field)
{
	struct kura_map m;
	char err[200];
	char *copy = malloc(len ? len : 1); /* exactly len, so ASan sees overreads */
	int ret;

	CHECK(copy);
	memcpy(copy, text, len);
	memset(&m, 0xa5, sizeof(m));
	ret = kura_map_from_json(copy, len, &m, err, sizeof(err));
	free(copy);
	if (ret != -EINVAL || !strstr(err, field) || strchr(err, '\n')) {
		fprintf(stderr, "  %.*s\n  gave %d \"%s\", expected -EINVAL naming %s\n",
			(int)KURA_MIN(len, 300), text, ret, err, field);
		exit(1);
	}
	CHECK(m.nodes == NULL);
	CHECK_EQ(m.nnodes, 0);
}

TEST(test_map_json_rejects_hostile_input)
{
	static const struct {
		const char *text, *field;
	} bad[] = {
		/* the template itself is good: see below */
		{ "", "at byte" },
		{ "garbage", "at byte" },
		{ "[]", "map" },
		{ "null", "map" },
		{ "{}", "cluster_id" },
		{ MAP(GOOD_ID, "7", "3", "256", "600000", "[" N1 "]") "x", "at byte" },
		{ "{\"cluster_id\":" GOOD_ID ",\"cluster_id\":" GOOD_ID "}", "at byte" },
		{ "{\"epoch\":7,\"replicas\":3,\"pgs\":256,\"out_after_ms\":1,\"nodes\":[]}",
		  "cluster_id: missing" },
		{ WITH_ID("7"), "cluster_id: not a string" },
		{ WITH_ID("null"), "cluster_id" },
		{ WITH_ID("\"\""), "cluster_id: not a UUID" },
		{ WITH_ID("\"2f1c0f0e-8d6a-4c39-9a57-3b1f6e2d9c4\""), "cluster_id: not a UUID" },
		{ WITH_ID("\"2f1c0f0e-8d6a-4c39-9a57-3b1f6e2d9c411\""), "cluster_id: not a UUID" },
		{ WITH_ID("\"2f1c0f0e-8d6a-4c39-9a57-3b1f6e2d9cg1\""), "cluster_id: not a UUID" },
		{ WITH_ID("\"2f1c0f0e08d6a-4c39-9a57-3b1f6e2d9c41\""), "cluster_id: not a UUID" },
		{ WITH_ID("{\"a\":{\"b\":{\"c\":1}}}"), "cluster_id: not a string" },
		{ "{\"cluster_id\":" GOOD_ID ",\"replicas\":3,\"pgs\":256,\"out_after_ms\":1,"
		  "\"nodes\":[]}",
		  "epoch: missing" },
		{ WITH_EPOCH("0"), "epoch: must be at least 1" },
		{ WITH_EPOCH("-1"), "epoch" },
		{ WITH_EPOCH("1.5"), "epoch: not an integer" },
		{ WITH_EPOCH("1e3"), "epoch: not an integer" },
		{ WITH_EPOCH("\"7\""), "epoch: not a number" },
		{ WITH_EPOCH("true"), "epoch: not a number" },
		{ WITH_EPOCH("[7]"), "epoch: not a number" },
		{ WITH_EPOCH("18446744073709551616"), "epoch: out of range" },
		{ WITH_EPOCH("99999999999999999999999999999999999999999999"), "epoch: out of range" },
		{ "{\"cluster_id\":" GOOD_ID ",\"epoch\":7,\"pgs\":256,\"out_after_ms\":1,"
		  "\"nodes\":[]}",
		  "replicas: missing" },
		{ WITH_RF("0"), "replicas" },
		{ WITH_RF("4"), "replicas" },
		{ WITH_RF("4294967297"), "replicas" }, /* 2^32 + 1: 1 if cut to 32 bits */
		{ WITH_RF("null"), "replicas" },
		{ WITH_PGS("3"), "pgs: not a power of two" },
		{ WITH_PGS("0"), "pgs" },
		{ WITH_PGS("96"), "pgs" },
		{ WITH_PGS("131072"), "pgs" },
		{ WITH_PGS("4294967552"), "pgs" }, /* 2^32 + 256 */
		{ WITH_PGS("\"256\""), "pgs" },
		{ WITH_OA("-5"), "out_after_ms" },
		{ WITH_OA("null"), "out_after_ms" },
		{ "{\"cluster_id\":" GOOD_ID ",\"epoch\":7,\"replicas\":3,\"pgs\":256,"
		  "\"out_after_ms\":1}",
		  "nodes: missing" },
		{ WITH_NODES("{}"), "nodes: not an array" },
		{ WITH_NODES("\"n1\""), "nodes: not an array" },
		{ WITH_NODES("[1]"), "nodes[0]: not an object" },
		{ WITH_NODES("[" N1 ",null]"), "nodes[1]: not an object" },
		{ WITH_NODES("[[" N1 "]]"), "nodes[0]: not an object" },
		{ WITH_NODES("[{\"addr\":\"10.99.0.1:7400\",\"domain\":\"r\",\"state\":\"up\","
			     "\"since_ms\":1}]"),
		  "nodes[0].name: missing" },
		{ WITH_NODES("[{\"name\":\"n1\",\"addr\":\"10.99.0.1:7400\",\"domain\":\"r\","
			     "\"since_ms\":1}]"),
		  "nodes[0].state: missing" },
		{ WITH_NODES("[{\"name\":\"n1\",\"addr\":\"10.99.0.1:7400\",\"domain\":\"r\","
			     "\"state\":\"up\"}]"),
		  "nodes[0].since_ms: missing" },
		{ WITH_NODES("[" NAME("5") "]"), "nodes[0].name: not a string" },
		{ WITH_NODES("[" NAME("\"\"") "]"), "nodes[0].name: empty" },
		{ WITH_NODES("[" NAME("\"n 1\"") "]"), "nodes[0].name: has a character" },
		{ WITH_NODES("[" NAME("\"n/1\"") "]"), "nodes[0].name: has a character" },
		{ WITH_NODES("[" NAME("\"n\\u00fc\"") "]"), "nodes[0].name: has a character" },
		{ WITH_NODES("[" NAME("\"n\\n\"") "]"), "nodes[0].name: has a character" },
		{ WITH_NODES("[" NAME("\"" LONG63 "x\"") "]"), "nodes[0].name: longer" },
		{ WITH_NODES("[" N1 "," NODE("\"n2\"", "\"10.99.0.2:7400\"", "\"rack 2\"",
					       "\"up\"", "1") "]"),
		  "nodes[1].domain: has a character" },
		{ WITH_NODES("[" NODE("\"n1\"", "\"10.99.0.1:7400\"", "\"" LONG63 "z\"", "\"up\"",
				      "1") "]"),
		  "nodes[0].domain: longer" },
		{ WITH_NODES("[" ADDR("\"10.99.0.1\"") "]"), "nodes[0].addr: no port" },
		{ WITH_NODES("[" ADDR("\"10.99.0.1:0\"") "]"), "nodes[0].addr: port out of range" },
		{ WITH_NODES("[" ADDR("\"10.99.0.1:65536\"") "]"),
		  "nodes[0].addr: port out of range" },
		{ WITH_NODES("[" ADDR("\"10.99.0.1:99999999999999999999\"") "]"),
		  "nodes[0].addr: port out of range" },
		{ WITH_NODES("[" ADDR("\"10.99.0.1:\"") "]"), "nodes[0].addr: port" },
		{ WITH_NODES("[" ADDR("\"10.99.0.1:74x0\"") "]"), "nodes[0].addr: port" },
		{ WITH_NODES("[" ADDR("\"10.99.0.1:-1\"") "]"), "nodes[0].addr: port" },
		{ WITH_NODES("[" ADDR("\"10.99.0.1: 7400\"") "]"), "nodes[0].addr: port" },
		{ WITH_NODES("[" ADDR("\":7400\"") "]"), "nodes[0].addr: empty host" },
		{ WITH_NODES("[" ADDR("\"\"") "]"), "nodes[0].addr: empty" },
		{ WITH_NODES("[" ADDR("\"10.99.0.256:7400\"") "]"), "nodes[0].addr: host" },
		{ WITH_NODES("[" ADDR("\"10.99.0:7400\"") "]"), "nodes[0].addr: host" },
		{ WITH_NODES("[" ADDR("\"10.99.0.1.2:7400\"") "]"), "nodes[0].addr: host" },
		{ WITH_NODES("[" ADDR("\"10..0.1:7400\"") "]"), "nodes[0].addr: host" },
		{ WITH_NODES("[" ADDR("\"010.99.0.1:7400\"") "]"), "nodes[0].addr: host" },
		{ WITH_NODES("[" ADDR("\"my host:7400\"") "]"), "nodes[0].addr: host" },
		{ WITH_NODES("[" ADDR("\"[::1]:7400\"") "]"), "nodes[0].addr" },
		{ WITH_NODES("[" ADDR("\"fe80::1:7400\"") "]"), "nodes[0].addr" },
		{ WITH_NODES("[" ADDR("\"" LONG63 ":1\"") "]"), "nodes[0].addr: longer" },
		{ WITH_NODES("[" ADDR("7400") "]"), "nodes[0].addr: not a string" },
		{ WITH_NODES("[" NODE("\"n1\"", "\"10.99.0.1:7400\"", "\"r\"", "\"UP\"", "1") "]"),
		  "nodes[0].state: not one of" },
		{ WITH_NODES("[" NODE("\"n1\"", "\"10.99.0.1:7400\"", "\"r\"", "\"gone\"", "1") "]"),
		  "nodes[0].state: not one of" },
		{ WITH_NODES("[" NODE("\"n1\"", "\"10.99.0.1:7400\"", "\"r\"", "0", "1") "]"),
		  "nodes[0].state: not a string" },
		{ WITH_NODES("[" NODE("\"n1\"", "\"10.99.0.1:7400\"", "\"r\"", "\"up\"", "-1") "]"),
		  "nodes[0].since_ms" },
		{ WITH_NODES("[" NODE("\"n1\"", "\"10.99.0.1:7400\"", "\"r\"", "\"up\"",
				      "18446744073709551616") "]"),
		  "nodes[0].since_ms: out of range" },
		{ WITH_NODES("[" N2 "," N1 "]"), "nodes[1].name: not after nodes[0].name" },
		{ WITH_NODES("[" N1 "," N1 "]"), "nodes[1].name: not after nodes[0].name" },
		{ WITH_NODES("[" N1 "," N2 "," N1 "]"), "nodes[2].name: not after" },
	};
	static const char good[] = WITH_NODES("[" N1 "," N2 "]");
	struct kura_map m;
	char err[200], *text;
	size_t len;

	/* every case is the good text with one thing wrong */
	CHECK_EQ(kura_map_from_json(good, strlen(good), &m, err, sizeof(err)), 0);
	kura_map_free(&m);
	for (size_t k = 0; k < KURA_ARRAY_SIZE(bad); k++)
		check_rejected(bad[k].text, strlen(bad[k].text), bad[k].field);

	/* every truncation */
	for (len = 0; len < strlen(good); len++)
		check_rejected(good, len, "at byte");

	/* a NUL inside */
	check_rejected("{\"cluster_id\":\"2f1c0f0e-8d6a-4c39-9a57-3b1f6e2d9c41\0\"}", 52, "at byte");

	/* nesting past the reader's limit, at the top and under an unknown key */
	text = malloc(4096);
	CHECK(text);
	len = 0;
	for (int k = 0; k < 1000; k++)
		text[len++] = '[';
	for (int k = 0; k < 1000; k++)
		text[len++] = ']';
	check_rejected(text, len, "at byte");
	len = (size_t)snprintf(text, 4096, "{\"x\":");
	for (int k = 0; k < 40; k++)
		len += (size_t)snprintf(text + len, 4096 - len, "{\"a\":");
	len += (size_t)snprintf(text + len, 4096 - len, "1");
	for (int k = 0; k < 41; k++)
		text[len++] = '}';
	check_rejected(text, len, "at byte");
	free(text);
}

/* A map text of n nodes, each valid, names sorted. */
static char *many_nodes_text(unsigned n)
{
	size_t cap = 200 + (size_t)n * 120, len;
	char *text = malloc(cap);

	CHECK(text);
	len = (size_t)snprintf(text, cap,
			       "{\"cluster_id\":\"" CID "\",\"epoch\":1,\"replicas\":3,\"pgs\":256,"
			       "\"out_after_ms\":1,\"nodes\":[");
	for (unsigned k = 0; k < n; k++)
		len += (size_t)snprintf(text + len, cap - len,
					"%s{\"name\":\"n%05u\",\"addr\":\"10.99.%u.%u:7400\","
					"\"domain\":\"rack%u\",\"state\":\"up\",\"since_ms\":1}",
					k ? "," : "", k, k / 250, k % 250 + 1, k % 16);
	len += (size_t)snprintf(text + len, cap - len, "]}");
	CHECK(len < cap);
	return text;
}

TEST(test_map_json_node_count_limit)
{
	struct kura_map m;
	char err[200];
	char *text = many_nodes_text(KURA_MAP_MAX_NODES);

	CHECK_EQ(kura_map_from_json(text, strlen(text), &m, err, sizeof(err)), 0);
	CHECK_EQ(m.nnodes, KURA_MAP_MAX_NODES);
	kura_map_free(&m);
	free(text);
	text = many_nodes_text(KURA_MAP_MAX_NODES + 1);
	check_rejected(text, strlen(text), "nodes: more than 4096");
	free(text);
}

TEST(test_map_json_error_buffer_is_optional_and_bounded)
{
	static const char text[] = WITH_RF("9");
	struct kura_map m;
	char err[8];

	CHECK_EQ(kura_map_from_json(text, strlen(text), &m, NULL, 0), -EINVAL);
	memset(err, 'x', sizeof(err));
	CHECK_EQ(kura_map_from_json(text, strlen(text), &m, err, sizeof(err)), -EINVAL);
	CHECK(memchr(err, '\0', sizeof(err)));
	CHECK(!strncmp(err, "replica", 7));
}

/* ---- init, copy, find, names ---- */

TEST(test_map_init_checks_its_arguments)
{
	struct kura_map m;

	CHECK_EQ(kura_map_init(&m, CID, 3, 256, OUT_AFTER), 0);
	CHECK_EQ(m.epoch, 1);
	CHECK_EQ(m.nnodes, 0);
	CHECK(!strcmp(m.cluster_id, CID));
	kura_map_free(&m);
	CHECK_EQ(kura_map_init(&m, CID, 0, 256, 1), -EINVAL);
	CHECK_EQ(kura_map_init(&m, CID, 4, 256, 1), -EINVAL);
	CHECK_EQ(kura_map_init(&m, CID, 3, 0, 1), -EINVAL);
	CHECK_EQ(kura_map_init(&m, CID, 3, 3, 1), -EINVAL);
	CHECK_EQ(kura_map_init(&m, CID, 3, 131072, 1), -EINVAL);
	CHECK_EQ(kura_map_init(&m, "not-a-uuid", 3, 256, 1), -EINVAL);
	CHECK_EQ(kura_map_init(&m, NULL, 3, 256, 1), -EINVAL);
	CHECK_EQ(kura_map_init(&m, CID, 1, 1, 1), 0);
	kura_map_free(&m);
	CHECK_EQ(kura_map_init(&m, CID, 3, 65536, 1), 0);
	kura_map_free(&m);
	kura_map_free(&m); /* twice is harmless */
}

TEST(test_map_copy_is_independent_and_find_uses_names)
{
	struct kura_map m, c;

	make_map(&m, 3, 64, 20, 5);
	CHECK_EQ(kura_map_copy(&c, &m), 0);
	CHECK(c.nodes != m.nodes);
	check_maps_equal(&m, &c);
	node(&c, "n004")->state = KURA_NODE_OUT;
	CHECK_EQ(node(&m, "n004")->state, KURA_NODE_UP);
	CHECK_EQ(kura_map_find(&m, "n000"), 0);
	CHECK_EQ(kura_map_find(&m, "n019"), 19);
	CHECK_EQ(kura_map_find(&m, "n020"), -1);
	CHECK_EQ(kura_map_find(&m, ""), -1);
	CHECK_EQ(kura_map_find(&m, "n00"), -1);
	kura_map_free(&c);
	kura_map_free(&m);
	CHECK_EQ(kura_map_find(&m, "n000"), -1);
}

TEST(test_map_state_names)
{
	CHECK(!strcmp(kura_node_state_name(KURA_NODE_UP), "up"));
	CHECK(!strcmp(kura_node_state_name(KURA_NODE_DOWN), "down"));
	CHECK(!strcmp(kura_node_state_name(KURA_NODE_OUT), "out"));
}

/* ---- placement groups ---- */

TEST(test_map_pg_spreads_consecutive_extents)
{
	struct kura_map m;
	unsigned count[256] = { 0 }, same = 0, lo = ~0u, hi = 0, differ = 0;

	CHECK_EQ(kura_map_init(&m, CID, 3, 256, 1), 0);
	for (uint64_t ext = 0; ext < 256 * 64; ext++) {
		uint32_t pg = kura_map_pg(&m, 42, ext);

		CHECK(pg < 256);
		count[pg]++;
		same += ext && pg == kura_map_pg(&m, 42, ext - 1);
		differ += pg != kura_map_pg(&m, 43, ext);
	}
	for (unsigned g = 0; g < 256; g++) {
		lo = KURA_MIN(lo, count[g]);
		hi = KURA_MAX(hi, count[g]);
	}
	/* 64 per group on average; a good mix stays well within 2x */
	CHECK(lo >= 32);
	CHECK(hi <= 96);
	/* neighbours share a group about 1 time in 256, not in long runs */
	CHECK(same < 256);
	/* another layer is laid out differently */
	CHECK(differ > 256 * 64 * 9 / 10);
	/* the same extent always lands in the same group */
	CHECK_EQ(kura_map_pg(&m, 42, 7), kura_map_pg(&m, 42, 7));
	/* doubling the groups splits each in two */
	for (uint64_t ext = 0; ext < 1000; ext++) {
		uint32_t a;

		m.pgs = 256;
		a = kura_map_pg(&m, 9, ext);
		m.pgs = 512;
		CHECK_EQ(kura_map_pg(&m, 9, ext) & 255, a);
	}
	m.pgs = 1;
	CHECK_EQ(kura_map_pg(&m, 5, 12345), 0);
	kura_map_free(&m);
}

/* ---- placement ---- */

/* Nodes whose names cover every word boundary of the name field. */
static const char *const pinned_names[] = {
	"a",
	"n7",
	"node-01",
	"exactly8",
	"node-0017.rack17",
	"node-0017.rack17.dc1",
	"kura-storage-node-with-a-rather-long-name-0042.example.com",
	"x23456789012345678901234567890123456789012345678901234567890123",
	"Z.Z_Z-Z",
};

static void make_pinned_map(struct kura_map *m)
{
	struct kura_live_node live[KURA_ARRAY_SIZE(pinned_names)];

	for (unsigned k = 0; k < KURA_ARRAY_SIZE(pinned_names); k++) {
		char rack[16];

		snprintf(rack, sizeof(rack), "rack%u", k % 3);
		live_node(&live[k], pinned_names[k], "10.99.0.1:7400", rack);
	}
	CHECK_EQ(kura_map_init(m, CID, 3, 1024, OUT_AFTER), 0);
	CHECK_EQ(kura_map_update(m, live, KURA_ARRAY_SIZE(live), 1000), 1);
}

/* The hash functions are part of the cluster's on-disk contract: every
 * node of every version and architecture must agree, and a change that
 * moves these values moves every cluster's data. (They were checked against
 * a separate model of the header's rule: sort every node that is not OUT by
 * weight, take them in order skipping fault domains already taken.) */
TEST(test_map_placement_is_pinned)
{
	static const uint32_t pg_of_7[] = { 298, 295, 688, 798 };
	static const char *const first[][3] = {
		{ "kura-storage-node-with-a-rather-long-name-0042.example.com",
		  "x23456789012345678901234567890123456789012345678901234567890123", "node-01" },
		{ "kura-storage-node-with-a-rather-long-name-0042.example.com", "n7",
		  "node-0017.rack17.dc1" },
		{ "node-0017.rack17", "Z.Z_Z-Z",
		  "kura-storage-node-with-a-rather-long-name-0042.example.com" },
		{ "kura-storage-node-with-a-rather-long-name-0042.example.com", "node-0017.rack17",
		  "node-01" },
		{ "n7", "exactly8", "node-01" },
		{ "n7", "kura-storage-node-with-a-rather-long-name-0042.example.com", "Z.Z_Z-Z" },
	};
	/* replicas and primaries of each node over all 1024 groups */
	static const struct {
		const char *name;
		unsigned replicas, primaries;
	} counts[] = {
		{ "Z.Z_Z-Z", 353, 112 },
		{ "a", 333, 107 },
		{ "exactly8", 369, 134 },
		{ "kura-storage-node-with-a-rather-long-name-0042.example.com", 322, 114 },
		{ "n7", 356, 125 },
		{ "node-0017.rack17", 340, 125 },
		{ "node-0017.rack17.dc1", 325, 95 },
		{ "node-01", 346, 104 },
		{ "x23456789012345678901234567890123456789012345678901234567890123", 328, 108 },
	};
	unsigned replicas[KURA_ARRAY_SIZE(pinned_names)] = { 0 };
	unsigned primaries[KURA_ARRAY_SIZE(pinned_names)] = { 0 };
	struct kura_map m;

	make_pinned_map(&m);
	for (uint64_t ext = 0; ext < KURA_ARRAY_SIZE(pg_of_7); ext++)
		CHECK_EQ(kura_map_pg(&m, 7, ext), pg_of_7[ext]);
	CHECK_EQ(kura_map_pg(&m, UINT64_MAX, UINT64_MAX), 771);
	for (uint32_t pg = 0; pg < KURA_ARRAY_SIZE(first); pg++) {
		struct set s = set_of(&m, pg);

		CHECK_EQ(s.n, 3);
		for (unsigned k = 0; k < 3; k++)
			CHECK(!strcmp(s.name[k], first[pg][k]));
	}
	for (uint32_t pg = 0; pg < m.pgs; pg++) {
		unsigned idx[KURA_MAP_MAX_REPLICAS], n = kura_map_place(&m, pg, idx);

		for (unsigned k = 0; k < n; k++)
			replicas[idx[k]]++;
		primaries[idx[0]]++;
	}
	for (unsigned k = 0; k < KURA_ARRAY_SIZE(counts); k++) {
		int i = kura_map_find(&m, counts[k].name);

		CHECK(i >= 0);
		CHECK_EQ(replicas[i], counts[k].replicas);
		CHECK_EQ(primaries[i], counts[k].primaries);
	}
	kura_map_free(&m);
}

/* Placement reads a name field a word at a time: what lies after the NUL
 * must not count. */
TEST(test_map_place_ignores_bytes_after_a_name)
{
	struct kura_map m, junk;

	make_pinned_map(&m);
	CHECK_EQ(kura_map_copy(&junk, &m), 0);
	for (unsigned i = 0; i < junk.nnodes; i++) {
		char *nm = junk.nodes[i].name;

		for (size_t k = strlen(nm) + 1; k < sizeof(junk.nodes[i].name); k++)
			nm[k] = (char)(0x41 + (k * 7 + i) % 50);
	}
	for (uint32_t pg = 0; pg < m.pgs; pg++) {
		struct set a = set_of(&m, pg), b = set_of(&junk, pg);

		CHECK(same_set(&a, &b));
	}
	kura_map_free(&junk);
	kura_map_free(&m);
}

/* A simple shuffle that is the same everywhere. */
static void shuffle(struct kura_live_node *a, unsigned n, uint64_t seed)
{
	for (unsigned k = n - 1; k > 0; k--) {
		unsigned j;
		struct kura_live_node t;

		seed = seed * 6364136223846793005ull + 1442695040888963407ull;
		j = (unsigned)((seed >> 33) % (k + 1));
		t = a[k];
		a[k] = a[j];
		a[j] = t;
	}
}

TEST(test_map_place_is_deterministic_whatever_the_join_order)
{
	enum { N = 40 };
	struct kura_live_node live[N];
	struct kura_map a, b;
	char *ta, *tb;

	make_map(&a, 3, 1024, N, 7);
	for (unsigned k = 0; k < N; k++)
		test_node(&live[k], k, 7);
	shuffle(live, N, 12345);
	CHECK(strcmp(live[0].name, "n000")); /* the order did change */
	CHECK_EQ(kura_map_init(&b, CID, 3, 1024, OUT_AFTER), 0);
	CHECK_EQ(kura_map_update(&b, live, N, 1000), 1);
	ta = kura_map_to_json(&a);
	tb = kura_map_to_json(&b);
	CHECK(ta && tb);
	CHECK(!strcmp(ta, tb));
	for (uint32_t pg = 0; pg < a.pgs; pg++) {
		struct set sa = set_of(&a, pg), sb = set_of(&b, pg), again = set_of(&a, pg);

		CHECK_EQ(sa.n, 3);
		CHECK(same_set(&sa, &sb));
		CHECK(same_set(&sa, &again));
		CHECK_EQ(kura_map_primary(&a, pg), kura_map_primary(&b, pg));
	}
	free(ta);
	free(tb);
	kura_map_free(&a);
	kura_map_free(&b);
}

TEST(test_map_place_uses_distinct_fault_domains)
{
	struct kura_map m;

	make_map(&m, 3, 1024, 9, 3);
	for (uint32_t pg = 0; pg < m.pgs; pg++) {
		unsigned idx[KURA_MAP_MAX_REPLICAS], racks = 0;

		CHECK_EQ(kura_map_place(&m, pg, idx), 3);
		for (unsigned k = 0; k < 3; k++)
			racks |= 1u << (m.nodes[idx[k]].domain[4] - '0');
		CHECK_EQ(racks, 7); /* one node in each of rack0, rack1, rack2 */
	}
	kura_map_free(&m);

	/* many nodes per rack, many racks: still never two in one rack */
	make_map(&m, 3, 1024, 50, 4);
	for (uint32_t pg = 0; pg < m.pgs; pg++) {
		struct set s = set_of(&m, pg);

		CHECK_EQ(s.n, 3);
		for (unsigned x = 0; x < 3; x++)
			for (unsigned y = x + 1; y < 3; y++)
				CHECK(strcmp(node(&m, s.name[x])->domain,
					     node(&m, s.name[y])->domain));
	}
	kura_map_free(&m);
}

TEST(test_map_place_returns_fewer_when_domains_run_out)
{
	struct kura_map m;
	unsigned idx[KURA_MAP_MAX_REPLICAS];

	make_map(&m, 3, 64, 4, 2); /* 4 nodes, 2 racks */
	for (uint32_t pg = 0; pg < m.pgs; pg++) {
		CHECK_EQ(kura_map_place(&m, pg, idx), 2);
		CHECK(strcmp(m.nodes[idx[0]].domain, m.nodes[idx[1]].domain));
	}
	kura_map_free(&m);

	make_map(&m, 3, 64, 5, 1); /* one rack */
	for (uint32_t pg = 0; pg < m.pgs; pg++)
		CHECK_EQ(kura_map_place(&m, pg, idx), 1);
	kura_map_free(&m);

	make_map(&m, 3, 64, 6, 3); /* a whole rack out leaves two */
	for (unsigned i = 0; i < m.nnodes; i++)
		if (!strcmp(m.nodes[i].domain, "rack1"))
			m.nodes[i].state = KURA_NODE_OUT;
	for (uint32_t pg = 0; pg < m.pgs; pg++)
		CHECK_EQ(kura_map_place(&m, pg, idx), 2);
	for (unsigned i = 0; i < m.nnodes; i++)
		m.nodes[i].state = KURA_NODE_OUT;
	for (uint32_t pg = 0; pg < m.pgs; pg++) {
		CHECK_EQ(kura_map_place(&m, pg, idx), 0);
		CHECK_EQ(kura_map_primary(&m, pg), -1);
	}
	kura_map_free(&m);

	make_map(&m, 3, 64, 0, 1); /* no nodes */
	CHECK_EQ(kura_map_place(&m, 0, idx), 0);
	CHECK_EQ(kura_map_primary(&m, 0), -1);
	kura_map_free(&m);
}

/* Every node holds 0.7x to 1.3x of the mean replicas and primaries. */
static void check_balance(unsigned racks)
{
	enum { N = 12, PGS = 1024 };
	struct kura_map m;
	unsigned replicas[N] = { 0 }, primaries[N] = { 0 };
	double mean_r = PGS * 3.0 / N, mean_p = (double)PGS / N;

	make_map(&m, 3, PGS, N, racks);
	for (uint32_t pg = 0; pg < PGS; pg++) {
		unsigned idx[KURA_MAP_MAX_REPLICAS], n = kura_map_place(&m, pg, idx);

		CHECK_EQ(n, 3);
		for (unsigned k = 0; k < n; k++)
			replicas[idx[k]]++;
		CHECK_EQ(kura_map_primary(&m, pg), idx[0]);
		primaries[idx[0]]++;
	}
	for (unsigned i = 0; i < N; i++) {
		fprintf(stderr, "%s: %u replicas, %u primaries\n", m.nodes[i].name, replicas[i],
			primaries[i]);
		CHECK(replicas[i] >= 0.7 * mean_r && replicas[i] <= 1.3 * mean_r);
		CHECK(primaries[i] >= 0.7 * mean_p && primaries[i] <= 1.3 * mean_p);
	}
	kura_map_free(&m);
}

TEST(test_map_place_balances_replicas_and_primaries)
{
	check_balance(12); /* a rack each */
	check_balance(4);  /* three nodes in each of four racks */
}

/* Adds node n005b in rack to a 12-node map over 4 racks (in the middle of
 * the name order, so later nodes change index): a group whose new set
 * lacks it keeps its set; a group whose set has it differs only by it
 * taking one slot (and, when the set was full, one node leaving). */
static void check_join_moves_only_its_groups(const char *rack)
{
	struct kura_map before, after;
	struct kura_live_node live[13];
	unsigned moved = 0;

	make_map(&before, 3, 1024, 12, 4);
	CHECK_EQ(kura_map_copy(&after, &before), 0);
	for (unsigned k = 0; k < 12; k++)
		test_node(&live[k], k, 4);
	live_node(&live[12], "n005b", "10.99.0.99:7400", rack);
	CHECK_EQ(kura_map_update(&after, live, 13, 2000), 1);
	CHECK_EQ(after.nnodes, 13);
	CHECK_EQ(after.epoch, 3);
	CHECK_EQ(kura_map_update(&after, live, 13, 3000), 0);
	CHECK_EQ(after.epoch, 3);
	for (uint32_t pg = 0; pg < before.pgs; pg++) {
		struct set old = set_of(&before, pg), now = set_of(&after, pg), rest;

		CHECK_EQ(now.n, 3);
		if (!set_has(&now, "n005b")) {
			CHECK(same_set(&old, &now));
			continue;
		}
		moved++;
		rest = without(&now, "n005b");
		CHECK_EQ(rest.n, 2);
		CHECK(subsequence(&rest, &old)); /* the others keep their order */
	}
	fprintf(stderr, "joining %s: %u of 1024 groups moved\n", rack, moved);
	/* about 3/13 of the groups take the new node, none for no reason */
	CHECK(moved > 1024 / 13);
	CHECK(moved < 1024 * 3 / 7);
	kura_map_free(&before);
	kura_map_free(&after);
}

TEST(test_map_place_join_moves_only_groups_the_new_node_enters)
{
	check_join_moves_only_its_groups("rack1"); /* an existing rack */
	check_join_moves_only_its_groups("rack9"); /* a new rack */
}

TEST(test_map_place_out_moves_only_groups_the_node_leaves)
{
	struct kura_map before, after;
	unsigned moved = 0;

	make_map(&before, 3, 1024, 12, 4);
	CHECK_EQ(kura_map_copy(&after, &before), 0);
	node(&after, "n005")->state = KURA_NODE_OUT;
	for (uint32_t pg = 0; pg < before.pgs; pg++) {
		struct set old = set_of(&before, pg), now = set_of(&after, pg), rest;

		CHECK_EQ(now.n, 3);
		CHECK(!set_has(&now, "n005"));
		if (!set_has(&old, "n005")) {
			CHECK(same_set(&old, &now));
			continue;
		}
		moved++;
		/* the others stay, in their order; one node takes the place */
		rest = without(&old, "n005");
		CHECK(subsequence(&rest, &now));
	}
	CHECK(moved > 0);
	kura_map_free(&before);
	kura_map_free(&after);
}

TEST(test_map_place_down_keeps_sets_and_moves_primaries_to_the_next_up)
{
	struct kura_map before, after;
	int x;
	unsigned moved = 0;

	make_map(&before, 3, 1024, 12, 4);
	CHECK_EQ(kura_map_copy(&after, &before), 0);
	x = kura_map_find(&after, "n007");
	after.nodes[x].state = KURA_NODE_DOWN;
	for (uint32_t pg = 0; pg < before.pgs; pg++) {
		struct set old = set_of(&before, pg), now = set_of(&after, pg);
		int p_old = kura_map_primary(&before, pg), p_now = kura_map_primary(&after, pg);

		CHECK(same_set(&old, &now));
		CHECK(p_now >= 0 && p_now != x);
		if (p_old != x) {
			CHECK_EQ(p_now, p_old);
			continue;
		}
		moved++;
		CHECK(!strcmp(after.nodes[p_now].name, old.name[1]));
	}
	CHECK(moved > 0);

	/* a second node down in the same groups: the third replica leads */
	for (uint32_t pg = 0; pg < before.pgs; pg++) {
		struct set s = set_of(&after, pg);

		if (strcmp(s.name[0], "n007"))
			continue;
		node(&after, s.name[1])->state = KURA_NODE_DOWN;
		CHECK(!strcmp(after.nodes[kura_map_primary(&after, pg)].name, s.name[2]));
		node(&after, s.name[2])->state = KURA_NODE_DOWN;
		CHECK_EQ(kura_map_primary(&after, pg), -1);
		break;
	}
	kura_map_free(&before);
	kura_map_free(&after);
}

/* Times placement of every group and health over the map; prints, asserts
 * only that placement worked. */
static void time_placement(struct kura_map *m, const char *what)
{
	struct kura_map_health h;
	uint64_t t0, t1, t2;

	t0 = kura_now_ns();
	for (uint32_t pg = 0; pg < m->pgs; pg++) {
		unsigned idx[KURA_MAP_MAX_REPLICAS];

		CHECK_EQ(kura_map_place(m, pg, idx), 3);
	}
	t1 = kura_now_ns();
	kura_map_health(m, &h);
	t2 = kura_now_ns();
	CHECK_EQ(h.clean, m->pgs);
	fprintf(stderr, "%u groups over %u nodes (%s): kura_map_place %.1f ms, "
		"kura_map_health %.1f ms\n",
		m->pgs, m->nnodes, what, (double)(t1 - t0) / 1e6, (double)(t2 - t1) / 1e6);
}

TEST_T(test_map_place_speed_65536_groups_over_1000_nodes, 120)
{
	enum { N = 1000 };
	struct kura_live_node *live = calloc(N, sizeof(*live));
	struct kura_map m;

	make_map(&m, 3, 65536, N, 25);
	time_placement(&m, "names like n017");
	kura_map_free(&m);

	CHECK(live);
	for (unsigned k = 0; k < N; k++) {
		char name[32], addr[32], rack[32];

		snprintf(name, sizeof(name), "node-%04u.rack%02u.dc1", k, k % 25);
		snprintf(addr, sizeof(addr), "10.99.%u.%u:7400", k / 200, k % 200 + 1);
		snprintf(rack, sizeof(rack), "dc1-rack%02u", k % 25);
		live_node(&live[k], name, addr, rack);
	}
	CHECK_EQ(kura_map_init(&m, CID, 3, 65536, OUT_AFTER), 0);
	CHECK_EQ(kura_map_update(&m, live, N, 1000), 1);
	time_placement(&m, "names like node-0017.rack17.dc1");
	kura_map_free(&m);
	free(live);
}

/* ---- the leader's step ---- */

TEST(test_map_update_walks_a_node_through_its_states)
{
	struct kura_map m;
	struct kura_live_node live[3], two[2];
	uint64_t t = 1796300000000ull;

	CHECK_EQ(kura_map_init(&m, CID, 3, 64, OUT_AFTER), 0);
	live_node(&live[0], "n3", "10.99.0.3:7400", "rack3");
	live_node(&live[1], "n1", "10.99.0.1:7400", "rack1");
	live_node(&live[2], "n2", "10.99.0.2:7400", "rack2");
	two[0] = live[0];
	two[1] = live[1];

	/* joins: UP, sorted by name */
	CHECK_EQ(kura_map_update(&m, live, 3, t), 1);
	CHECK_EQ(m.epoch, 2);
	CHECK_EQ(m.nnodes, 3);
	CHECK(!strcmp(m.nodes[0].name, "n1") && !strcmp(m.nodes[1].name, "n2") &&
	      !strcmp(m.nodes[2].name, "n3"));
	for (unsigned i = 0; i < 3; i++) {
		CHECK_EQ(m.nodes[i].state, KURA_NODE_UP);
		CHECK_EQ(m.nodes[i].since_ms, t);
	}
	CHECK(!strcmp(node(&m, "n2")->addr, "10.99.0.2:7400"));
	CHECK(!strcmp(node(&m, "n2")->domain, "rack2"));

	/* the same nodes again, in another order, later: nothing */
	CHECK_EQ(kura_map_update(&m, (struct kura_live_node[]){ live[2], live[1], live[0] }, 3,
				 t + 5),
		 0);
	CHECK_EQ(m.epoch, 2);

	/* n3 missing: DOWN now */
	CHECK_EQ(kura_map_update(&m, &live[1], 2, t + 10), 1);
	CHECK_EQ(m.epoch, 3);
	CHECK_EQ(node(&m, "n3")->state, KURA_NODE_DOWN);
	CHECK_EQ(node(&m, "n3")->since_ms, t + 10);
	CHECK_EQ(node(&m, "n1")->since_ms, t); /* untouched */

	/* still missing, not yet long enough: nothing */
	CHECK_EQ(kura_map_update(&m, &live[1], 2, t + 10 + OUT_AFTER - 1), 0);
	CHECK_EQ(m.epoch, 3);
	CHECK_EQ(node(&m, "n3")->state, KURA_NODE_DOWN);
	CHECK_EQ(node(&m, "n3")->since_ms, t + 10);

	/* gone for out_after: OUT */
	CHECK_EQ(kura_map_update(&m, &live[1], 2, t + 10 + OUT_AFTER), 1);
	CHECK_EQ(m.epoch, 4);
	CHECK_EQ(node(&m, "n3")->state, KURA_NODE_OUT);
	CHECK_EQ(node(&m, "n3")->since_ms, t + 10 + OUT_AFTER);
	CHECK_EQ(kura_map_update(&m, &live[1], 2, t + 100 * OUT_AFTER), 0);
	CHECK_EQ(m.epoch, 4);

	/* back: RECOVERING (it may have missed writes), not primary anywhere */
	CHECK_EQ(kura_map_update(&m, live, 3, t + 200 * OUT_AFTER), 1);
	CHECK_EQ(m.epoch, 5);
	CHECK_EQ(node(&m, "n3")->state, KURA_NODE_RECOVERING);
	CHECK_EQ(node(&m, "n3")->since_ms, t + 200 * OUT_AFTER);
	CHECK_EQ(m.nnodes, 3);
	for (uint32_t pg = 0; pg < m.pgs; pg++)
		CHECK(strcmp(m.nodes[kura_map_primary(&m, pg)].name, "n3"));
	/* brought up to date: UP */
	CHECK_EQ(kura_map_mark_up(&m, "n3", t + 200 * OUT_AFTER + 1), 1);
	CHECK_EQ(m.epoch, 6);
	CHECK_EQ(node(&m, "n3")->state, KURA_NODE_UP);
	CHECK_EQ(kura_map_mark_up(&m, "n3", t + 200 * OUT_AFTER + 2), 0);
	CHECK_EQ(kura_map_mark_up(&m, "n9", t + 200 * OUT_AFTER + 2), -ENOENT);
	CHECK_EQ(m.epoch, 6);

	/* the same live set, any order: nothing, however often */
	CHECK_EQ(kura_map_update(&m, (struct kura_live_node[]){ live[2], live[0], live[1] }, 3,
				 t + 201 * OUT_AFTER),
		 0);
	CHECK_EQ(kura_map_update(&m, live, 3, t + 202 * OUT_AFTER), 0);
	CHECK_EQ(m.epoch, 6);

	/* down and back before out_after: RECOVERING too, since reset */
	CHECK_EQ(kura_map_update(&m, two, 2, t + 300 * OUT_AFTER), 1);
	CHECK_EQ(node(&m, "n2")->state, KURA_NODE_DOWN);
	CHECK_EQ(kura_map_update(&m, live, 3, t + 300 * OUT_AFTER + 5), 1);
	CHECK_EQ(node(&m, "n2")->state, KURA_NODE_RECOVERING);
	CHECK_EQ(node(&m, "n2")->since_ms, t + 300 * OUT_AFTER + 5);
	CHECK_EQ(m.epoch, 8);

	/* a restart the leader never saw as a gap (a new started_ms): RECOVERING */
	CHECK_EQ(kura_map_mark_up(&m, "n2", t + 301 * OUT_AFTER), 1);
	live[0].started_ms = 77;
	CHECK_EQ(kura_map_update(&m, live, 3, t + 302 * OUT_AFTER), 1);
	CHECK_EQ(node(&m, "n3")->state, KURA_NODE_UP); /* first time seen: known now */
	live[0].started_ms = 78;
	CHECK_EQ(kura_map_update(&m, live, 3, t + 303 * OUT_AFTER), 1);
	CHECK_EQ(node(&m, "n3")->state, KURA_NODE_RECOVERING);
	CHECK_EQ(node(&m, "n3")->started_ms, 78);
	CHECK_EQ(m.epoch, 11);

	/* everyone gone at once, RECOVERING too: all DOWN in one step */
	CHECK_EQ(kura_map_update(&m, NULL, 0, t + 400 * OUT_AFTER), 1);
	CHECK_EQ(m.epoch, 12);
	for (unsigned i = 0; i < 3; i++)
		CHECK_EQ(m.nodes[i].state, KURA_NODE_DOWN);
	kura_map_free(&m);
}

TEST(test_map_update_address_or_domain_change_bumps_epoch)
{
	struct kura_map m;
	struct kura_live_node l;

	CHECK_EQ(kura_map_init(&m, CID, 3, 64, OUT_AFTER), 0);
	live_node(&l, "n1", "10.99.0.1:7400", "rack1");
	CHECK_EQ(kura_map_update(&m, &l, 1, 1000), 1);
	CHECK_EQ(m.epoch, 2);
	live_node(&l, "n1", "10.99.0.1:7401", "rack1");
	CHECK_EQ(kura_map_update(&m, &l, 1, 2000), 1);
	CHECK_EQ(m.epoch, 3);
	CHECK(!strcmp(m.nodes[0].addr, "10.99.0.1:7401"));
	CHECK_EQ(m.nodes[0].since_ms, 1000); /* no state change */
	live_node(&l, "n1", "10.99.0.1:7401", "rack2");
	CHECK_EQ(kura_map_update(&m, &l, 1, 3000), 1);
	CHECK_EQ(m.epoch, 4);
	CHECK(!strcmp(m.nodes[0].domain, "rack2"));
	CHECK_EQ(kura_map_update(&m, &l, 1, 4000), 0);
	CHECK_EQ(m.epoch, 4);
	kura_map_free(&m);
}

TEST(test_map_update_clock_going_back_is_no_time_gone)
{
	struct kura_map m;
	struct kura_live_node l[2];

	CHECK_EQ(kura_map_init(&m, CID, 3, 64, OUT_AFTER), 0);
	live_node(&l[0], "n1", "10.99.0.1:7400", "rack1");
	live_node(&l[1], "n2", "10.99.0.2:7400", "rack2");
	CHECK_EQ(kura_map_update(&m, l, 2, 10000000), 1);
	CHECK_EQ(kura_map_update(&m, l, 1, 10000000), 1);
	CHECK_EQ(node(&m, "n2")->state, KURA_NODE_DOWN);
	CHECK_EQ(kura_map_update(&m, l, 1, 5000), 0); /* a leader with a slow clock */
	CHECK_EQ(node(&m, "n2")->state, KURA_NODE_DOWN);
	CHECK_EQ(kura_map_update(&m, l, 1, 0), 0);
	CHECK_EQ(node(&m, "n2")->state, KURA_NODE_DOWN);
	kura_map_free(&m);
}

TEST(test_map_update_rejects_bad_live_nodes_and_leaves_the_map)
{
	struct kura_map m;
	struct kura_live_node l[3];
	char *before, *after;

	make_map(&m, 3, 64, 6, 3);
	before = kura_map_to_json(&m);
	CHECK(before);
	live_node(&l[0], "n000", "10.99.0.1:7400", "rack0");
	live_node(&l[1], "zz", "10.99.0.9:7400", "rack0");

	live_node(&l[2], "bad name", "10.99.0.9:7400", "rack0");
	CHECK_EQ(kura_map_update(&m, l, 3, 5000), -EINVAL);
	live_node(&l[2], "", "10.99.0.9:7400", "rack0");
	CHECK_EQ(kura_map_update(&m, l, 3, 5000), -EINVAL);
	live_node(&l[2], "ok", "10.99.0.9:0", "rack0");
	CHECK_EQ(kura_map_update(&m, l, 3, 5000), -EINVAL);
	live_node(&l[2], "ok", "10.99.0.9", "rack0");
	CHECK_EQ(kura_map_update(&m, l, 3, 5000), -EINVAL);
	live_node(&l[2], "ok", "10.99.0.999:7400", "rack0");
	CHECK_EQ(kura_map_update(&m, l, 3, 5000), -EINVAL);
	live_node(&l[2], "ok", "10.99.0.9:7400", "rack/0");
	CHECK_EQ(kura_map_update(&m, l, 3, 5000), -EINVAL);
	live_node(&l[2], "ok", "10.99.0.9:7400", "");
	CHECK_EQ(kura_map_update(&m, l, 3, 5000), -EINVAL);
	live_node(&l[2], "ok", "10.99.0.9:7400", "rack0");
	memset(l[2].name, 'a', sizeof(l[2].name)); /* no NUL */
	CHECK_EQ(kura_map_update(&m, l, 3, 5000), -EINVAL);
	live_node(&l[2], "ok", "10.99.0.9:7400", "rack0");
	memset(l[2].addr, '1', sizeof(l[2].addr));
	CHECK_EQ(kura_map_update(&m, l, 3, 5000), -EINVAL);
	live_node(&l[2], "zz", "10.99.0.8:7400", "rack1"); /* zz twice */
	CHECK_EQ(kura_map_update(&m, l, 3, 5000), -EINVAL);

	after = kura_map_to_json(&m);
	CHECK(after);
	CHECK(!strcmp(before, after));
	free(after);

	/* and the same list with the bad entry fixed goes through */
	live_node(&l[2], "ok", "host-9.example:7400", "rack0");
	CHECK_EQ(kura_map_update(&m, l, 3, 5000), 1);
	CHECK_EQ(m.nnodes, 8);
	free(before);
	kura_map_free(&m);
}

TEST(test_map_update_stops_at_the_node_limit)
{
	struct kura_map m;
	struct kura_live_node *live = calloc(KURA_MAP_MAX_NODES + 1, sizeof(*live));
	uint64_t epoch;

	CHECK(live);
	for (unsigned k = 0; k <= KURA_MAP_MAX_NODES; k++) {
		char name[16];

		snprintf(name, sizeof(name), "n%05u", k);
		live_node(&live[k], name, "10.99.0.1:7400", "rack0");
	}
	CHECK_EQ(kura_map_init(&m, CID, 3, 64, OUT_AFTER), 0);
	CHECK_EQ(kura_map_update(&m, live, KURA_MAP_MAX_NODES + 1, 1000), -ENOSPC);
	CHECK_EQ(m.nnodes, 0);
	CHECK_EQ(m.epoch, 1);
	CHECK_EQ(kura_map_update(&m, live, KURA_MAP_MAX_NODES, 1000), 1);
	CHECK_EQ(m.nnodes, KURA_MAP_MAX_NODES);
	epoch = m.epoch;
	/* one more joins while one leaves: still too many, since the one that
	 * left keeps its place */
	CHECK_EQ(kura_map_update(&m, live + 1, KURA_MAP_MAX_NODES, 2000), -ENOSPC);
	CHECK_EQ(m.nnodes, KURA_MAP_MAX_NODES);
	CHECK_EQ(m.epoch, epoch);
	CHECK_EQ(node(&m, "n00000")->state, KURA_NODE_UP);
	free(live);
	kura_map_free(&m);
}

/* ---- health ---- */

TEST(test_map_health_counts_groups)
{
	struct kura_map m;
	struct kura_map_health h;
	unsigned with_x = 0;
	int x;

	make_map(&m, 3, 256, 6, 6);
	kura_map_health(&m, &h);
	CHECK_EQ(h.clean, 256);
	CHECK_EQ(h.degraded, 0);
	CHECK_EQ(h.down, 0);

	x = kura_map_find(&m, "n002");
	m.nodes[x].state = KURA_NODE_DOWN;
	for (uint32_t pg = 0; pg < m.pgs; pg++) {
		struct set s = set_of(&m, pg);

		with_x += set_has(&s, "n002");
	}
	CHECK(with_x > 0 && with_x < 256);
	kura_map_health(&m, &h);
	CHECK_EQ(h.degraded, with_x);
	CHECK_EQ(h.clean, 256 - with_x);
	CHECK_EQ(h.down, 0);

	/* the node OUT: its groups take another node and are clean again */
	m.nodes[x].state = KURA_NODE_OUT;
	kura_map_health(&m, &h);
	CHECK_EQ(h.clean, 256);
	kura_map_free(&m);

	/* one replica each: a down node's groups are down */
	make_map(&m, 1, 256, 4, 4);
	m.nodes[1].state = KURA_NODE_DOWN;
	with_x = 0;
	for (uint32_t pg = 0; pg < m.pgs; pg++)
		with_x += kura_map_primary(&m, pg) < 0;
	CHECK(with_x > 0);
	kura_map_health(&m, &h);
	CHECK_EQ(h.down, with_x);
	CHECK_EQ(h.clean, 256 - with_x);
	CHECK_EQ(h.degraded, 0);
	kura_map_free(&m);

	/* too few racks for the replicas: every group is short, so degraded */
	make_map(&m, 3, 64, 4, 2);
	kura_map_health(&m, &h);
	CHECK_EQ(h.degraded, 64);
	CHECK_EQ(h.clean, 0);
	kura_map_free(&m);

	/* no nodes: every group is down */
	make_map(&m, 3, 64, 0, 1);
	kura_map_health(&m, &h);
	CHECK_EQ(h.down, 64);
	kura_map_free(&m);
}

/* Once the cluster has formed, a node seen for the first time joins
 * RECOVERING: it would otherwise be primary of groups whose data it lacks. */
TEST(test_map_update_late_joiner_is_recovering)
{
	struct kura_map m;
	struct kura_live_node l[2];

	CHECK_EQ(kura_map_init(&m, CID, 2, 64, OUT_AFTER), 0);
	m.join_up_until_ms = 5000;
	live_node(&l[0], "n1", "10.99.0.1:7400", "rack1");
	live_node(&l[1], "n2", "10.99.0.2:7400", "rack2");
	CHECK_EQ(kura_map_update(&m, l, 1, 4999), 1);
	CHECK_EQ(m.nodes[0].state, KURA_NODE_UP);
	CHECK_EQ(kura_map_update(&m, l, 2, 5000), 1);
	CHECK_EQ(m.nodes[1].state, KURA_NODE_RECOVERING);
	for (uint32_t pg = 0; pg < m.pgs; pg++)
		CHECK_EQ(kura_map_primary(&m, pg), 0);
	kura_map_free(&m);
}


/* The leader's log line names what a new map changed: states, new and
 * gone nodes, addresses, fills and the vdisk service's revision; a line
 * too long for its buffer ends with "...". */
TEST(test_map_describe_change_names_what_moved)
{
	struct kura_map a, b;
	char s[256], small[24];

	make_map(&a, 2, 16, 3, 3);
	CHECK_EQ(kura_map_copy(&b, &a), 0);
	kura_map_describe_change(&a, &b, s, sizeof(s));
	CHECK(!strcmp(s, "no node's state"));
	b.nodes[1].state = KURA_NODE_DOWN;
	b.nodes[2].state = KURA_NODE_RECOVERING;
	snprintf(b.nodes[2].addr, sizeof(b.nodes[2].addr), "10.0.0.9:7400");
	b.svc_rev = 812;
	kura_map_describe_change(&a, &b, s, sizeof(s));
	CHECK(!strcmp(s, "n001 up -> down, n002 up -> recovering, n002 at 10.0.0.9:7400, "
			 "vdisk service revision 812"));
	kura_map_describe_change(&b, &a, s, sizeof(s));
	CHECK(!strcmp(s, "n001 down -> up, n002 recovering -> up, n002 at 10.99.0.3:7400, "
			 "vdisk service revision 0"));
	kura_map_describe_change(&a, &b, small, sizeof(small));
	CHECK_EQ(strlen(small), sizeof(small) - 1);
	CHECK(!strcmp(small + sizeof(small) - 4, "..."));
	CHECK(!strcmp(small, "n001 up -> down, n00..."));
	kura_map_free(&b);
	kura_map_free(&a);
}
