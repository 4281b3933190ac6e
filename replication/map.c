/* The cluster map (replication/map.h): checks, JSON, placement by
 * rendezvous hashing, and the leader's membership step. */
#include "replication/map.h"

#include "blockd/store.h"
#include "common/json.h"
#include "common/util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- hashing ----
 *
 * Every node, whatever its version or architecture, must compute the same
 * placement from the same map, so these functions and constants are part of
 * the cluster's on-disk contract: changing any of them moves nearly every
 * extent of every cluster. The mixer is common/util.h's kura_hash64 (the
 * splitmix64 finalizer); the seeds and multipliers are here; the unit tests
 * pin the output (test_map_placement_is_pinned), so an edit that changes
 * any of them fails there. */

_Static_assert(KURA_MAP_PGS_MAX <= KURA_BLK_CLASSES, "a group is a set of extent classes");

#define SEED_PLACE 0x6b7572612d706c61ULL /* "kura-pla" */
#define SEED_NAME 0x6b7572612d6e616dULL  /* "kura-nam" */

/* Odd multipliers, one per 8-byte word of a name field. */
static const uint64_t word_mul[KURA_MAP_NAME_MAX / 8] = {
	0x57361b81ad6408e3ULL, 0x4500c5fd320a2425ULL, 0x63bfb9ca82a25973ULL,
	0xbeadc1dec4e6b4a9ULL, 0xca239bbe69973f9bULL, 0x9a752476caa32eb3ULL,
	0x1652b079d41a140dULL, 0x450c1b7ad1ef5eadULL,
};

/* Bytes p[0..8) as a little-endian number whatever the machine (compilers
 * make this one load where they can). */
static uint64_t le64(const unsigned char *p)
{
	return (uint64_t)p[0] | (uint64_t)p[1] << 8 | (uint64_t)p[2] << 16 |
	       (uint64_t)p[3] << 24 | (uint64_t)p[4] << 32 | (uint64_t)p[5] << 40 |
	       (uint64_t)p[6] << 48 | (uint64_t)p[7] << 56;
}

/* A node's key depends on its name alone, never on its index, so that
 * adding or removing a node leaves every other node's weights alone.
 *
 * kura_map_place() works out every node's key for every group, so this
 * must be cheap: the name field (KURA_MAP_NAME_MAX bytes, NUL-terminated)
 * is read a word at a time up to the word holding the NUL, bytes from the
 * NUL on are masked off, and the words are combined by a multilinear sum
 * (independent multiplies, no chain) that one kura_hash64() finishes. Names hold
 * no NUL, so distinct names give distinct word vectors (were two keys ever
 * to collide, those two nodes would only tie in every group). Bytes after
 * the NUL are read but never count. */
static uint64_t name_key(const char name[KURA_MAP_NAME_MAX])
{
	const unsigned char *p = (const unsigned char *)name;
	uint64_t h = SEED_NAME;

	for (unsigned k = 0; k < KURA_MAP_NAME_MAX / 8; k++, p += 8) {
		uint64_t w = le64(p);
		/* 0x80 in each zero byte; the lowest flag is always exact */
		uint64_t z = (w - 0x0101010101010101ULL) & ~w & 0x8080808080808080ULL;

		if (z) {
			w &= ((z & -z) >> 7) - 1; /* the bytes before the NUL */
			return kura_hash64(h + w * word_mul[k]);
		}
		h += w * word_mul[k];
	}
	return kura_hash64(h); /* not NUL-terminated: names are checked, never so */
}

static uint64_t pg_key(uint32_t pg)
{
	return kura_hash64(pg ^ SEED_PLACE);
}

static uint64_t weight(uint64_t pgk, uint64_t nodek)
{
	return kura_hash64(pgk ^ nodek);
}

uint32_t kura_map_pg(const struct kura_map *m, uint64_t layer, uint64_t ext)
{
	/* a group is the classes (blockd/store.h) equal to it in their low
	 * bits: doubling pgs splits each group in two (g goes to g or g + old
	 * pgs), and a store lists a group's extents from its class lists */
	return kura_blk_ext_class(layer, ext) & (m->pgs - 1);
}

/* ---- placement ---- */

struct cand {
	uint64_t w;
	unsigned i;
};

/* Offers node i of weight w to best[0..*n), which holds the heaviest nodes
 * seen so far, at most one per fault domain, heaviest first. Taking nodes
 * by weight and skipping taken domains is the same as ranking domains by
 * their heaviest node, which is what this keeps, in one pass and without
 * sorting. Nodes come in index order, so on equal weights the earlier one
 * (the lower name) stays ahead. */
static void offer(const struct kura_map *m, struct cand *best, unsigned *n, unsigned r,
		  uint64_t w, unsigned i)
{
	const char *dom = m->nodes[i].domain;
	unsigned at;

	for (at = 0; at < *n; at++)
		if (!strcmp(m->nodes[best[at].i].domain, dom))
			break;
	if (at < *n) {
		if (w <= best[at].w)
			return; /* its domain has a heavier node already */
	} else if (*n < r) {
		at = (*n)++;
	} else {
		at = r - 1; /* the lightest leaves */
	}
	while (at > 0 && best[at - 1].w < w) {
		best[at] = best[at - 1];
		at--;
	}
	best[at] = (struct cand){ w, i };
}

/* The placement table (kura_map_index): the inputs it was worked out
 * from, and every group's set. Immutable once built; shared by copies. */
struct tnode {
	char name[KURA_MAP_NAME_MAX], domain[KURA_MAP_NAME_MAX];
	int out;
};
struct tset {
	uint8_t n;
	uint16_t idx[KURA_MAP_MAX_REPLICAS];
};
struct kura_map_table {
	atomic_uint refs;
	unsigned pgs, replicas, nnodes;
	unsigned carried; /* groups worked out from the last table (table_fill) */
	struct tnode *in;
	struct tset *sets;
};

_Static_assert(KURA_MAP_MAX_NODES <= UINT16_MAX, "table indexes fit 16 bits");

/* Placement of group pg; keys[] holds every node's name_key() when the
 * caller places many groups, or is NULL. */
static unsigned place(const struct kura_map *m, const uint64_t *keys, uint32_t pg,
		      unsigned idx[KURA_MAP_MAX_REPLICAS])
{
	struct cand best[KURA_MAP_MAX_REPLICAS];
	unsigned n = 0, r = m->replicas;
	const struct kura_map_table *t = m->table;
	uint64_t pgk;

	if (t && pg < t->pgs) {
		for (unsigned k = 0; k < t->sets[pg].n; k++)
			idx[k] = t->sets[pg].idx[k];
		return t->sets[pg].n;
	}
	pgk = pg_key(pg);
	if (r > KURA_MAP_MAX_REPLICAS)
		r = KURA_MAP_MAX_REPLICAS;
	if (!r)
		return 0;
	for (unsigned i = 0; i < m->nnodes; i++) {
		const struct kura_map_node *nd = &m->nodes[i];
		uint64_t w;

		if (nd->state == KURA_NODE_OUT)
			continue;
		w = weight(pgk, keys ? keys[i] : name_key(nd->name));
		if (n == r && w <= best[r - 1].w)
			continue; /* the common case, decided without a string compare */
		offer(m, best, &n, r, w, i);
	}
	for (unsigned k = 0; k < n; k++)
		idx[k] = best[k].i;
	return n;
}

unsigned kura_map_place(const struct kura_map *m, uint32_t pg, unsigned idx[KURA_MAP_MAX_REPLICAS])
{
	return place(m, NULL, pg, idx);
}

unsigned kura_map_table_carried(const struct kura_map *m)
{
	return m->table ? m->table->carried : 0;
}

static void table_put(struct kura_map_table *t)
{
	if (!t || atomic_fetch_sub(&t->refs, 1) != 1)
		return;
	free(t->in);
	free(t->sets);
	free(t);
}

/* Whether t was worked out from m's placement inputs. */
static int table_fits(const struct kura_map_table *t, const struct kura_map *m)
{
	if (t->pgs != m->pgs || t->replicas != m->replicas || t->nnodes != m->nnodes)
		return 0;
	for (unsigned i = 0; i < m->nnodes; i++) {
		const struct kura_map_node *nd = &m->nodes[i];

		if (t->in[i].out != (nd->state == KURA_NODE_OUT) || strcmp(t->in[i].name, nd->name) ||
		    strcmp(t->in[i].domain, nd->domain))
			return 0;
	}
	return 1;
}

/* How a table's inputs changed from old's to m's, node by node (both
 * lists are sorted by name): which of old's nodes took part in placement
 * and no longer do (went out or left the map: leave[i] of old's index),
 * and which of m's take part and did not (joined, or back from out:
 * join[] of m's indexes); remap[i] is old node i's index in m, or -1.
 * Returns the number of nodes that changed, or -1 when a node's fault
 * domain changed (which moves it in every group's ranking at once). */
static int table_diff(const struct kura_map_table *old, const struct kura_map *m, int *remap,
		      uint8_t *leave, unsigned *join, unsigned *njoin)
{
	unsigned a = 0, b = 0;
	int changed = 0;

	*njoin = 0;
	while (a < old->nnodes || b < m->nnodes) {
		int c = a == old->nnodes   ? 1
			: b == m->nnodes ? -1
					 : strcmp(old->in[a].name, m->nodes[b].name);
		int bout = b < m->nnodes && m->nodes[b].state == KURA_NODE_OUT;

		if (c < 0) { /* left the map */
			remap[a] = -1;
			leave[a] = !old->in[a].out;
			changed += leave[a];
			a++;
		} else if (c > 0) { /* new in the map */
			if (!bout) {
				join[(*njoin)++] = b;
				changed++;
			}
			b++;
		} else {
			if (strcmp(old->in[a].domain, m->nodes[b].domain))
				return -1;
			remap[a] = (int)b;
			leave[a] = !old->in[a].out && bout;
			if (old->in[a].out && !bout)
				join[(*njoin)++] = b;
			changed += leave[a] || (old->in[a].out && !bout);
			a++, b++;
		}
	}
	return changed;
}

/* Group pg's set in m from its set in old (tables of the same pgs and
 * replicas, diffed by table_diff), when no node of that set left: a node
 * that is not in a set cannot change it by leaving (its domain then ranks
 * by a lighter node, and ranked below the set already), and a node that
 * joins enters exactly as it would in a pass over every node (offer()).
 * Returns the set's size, or -1 when it must be worked out from every
 * node: a member left, or two weights are equal (a pass breaks such ties
 * by node order, which this does not see). */
static int place_from(const struct kura_map *m, const uint64_t *keys,
		      const struct kura_map_table *old, const int *remap, const uint8_t *leave,
		      const unsigned *join, unsigned njoin, uint32_t pg,
		      unsigned idx[KURA_MAP_MAX_REPLICAS])
{
	const struct tset *os = &old->sets[pg];
	struct cand best[KURA_MAP_MAX_REPLICAS];
	unsigned n = os->n, r = m->replicas < KURA_MAP_MAX_REPLICAS ? m->replicas : KURA_MAP_MAX_REPLICAS;
	uint64_t pgk = pg_key(pg);

	if (!r)
		return 0;
	for (unsigned k = 0; k < n; k++) {
		if (leave[os->idx[k]] || remap[os->idx[k]] < 0)
			return -1;
		best[k].i = (unsigned)remap[os->idx[k]];
		best[k].w = weight(pgk, keys[best[k].i]);
	}
	for (unsigned j = 0; j < njoin; j++) {
		uint64_t w = weight(pgk, keys[join[j]]);

		for (unsigned k = 0; k < n; k++)
			if (best[k].w == w)
				return -1;
		if (n == r && w < best[r - 1].w)
			continue;
		offer(m, best, &n, r, w, join[j]);
	}
	for (unsigned k = 0; k < n; k++)
		idx[k] = best[k].i;
	return (int)n;
}

/* Fills t's sets (t's inputs are m's): from old's sets when old has the
 * same pgs and replicas and few nodes changed (a node going out changes
 * the groups it was in, about replicas/nodes of them; one joining is one
 * weight per group), else a placement of every group over every node.
 * 0 or -ENOMEM. */
static int table_fill(struct kura_map_table *t, const struct kura_map *m,
		      const struct kura_map_table *old, const uint64_t *keys)
{
	int *remap = NULL;
	uint8_t *leave = NULL;
	unsigned *join = NULL, njoin = 0;
	int changed = -1;

	if (old && old->pgs == m->pgs && old->replicas == m->replicas && old->nnodes && m->nnodes) {
		remap = malloc(old->nnodes * sizeof(*remap));
		leave = malloc(old->nnodes);
		join = malloc(m->nnodes * sizeof(*join));
		if (!remap || !leave || !join) {
			free(remap), free(leave), free(join);
			return -ENOMEM;
		}
		changed = table_diff(old, m, remap, leave, join, &njoin);
		if (changed * 4 > (int)m->nnodes)
			changed = -1; /* a pass over every node costs about as much */
	}
	for (uint32_t pg = 0; pg < m->pgs; pg++) {
		unsigned idx[KURA_MAP_MAX_REPLICAS];
		int n = changed < 0 ? -1 : place_from(m, keys, old, remap, leave, join, njoin, pg, idx);

		if (n < 0)
			n = (int)place(m, keys, pg, idx);
		else
			t->carried++;
		t->sets[pg].n = (uint8_t)n;
		for (int k = 0; k < n; k++)
			t->sets[pg].idx[k] = (uint16_t)idx[k];
	}
	free(remap), free(leave), free(join);
	return 0;
}

int kura_map_index(struct kura_map *m, const struct kura_map *prev)
{
	struct kura_map_table *t;
	uint64_t *keys = NULL;

	if (m->table && table_fits(m->table, m))
		return 0;
	table_put(m->table);
	m->table = NULL;
	if (prev && prev->table && table_fits(prev->table, m)) {
		atomic_fetch_add(&prev->table->refs, 1);
		m->table = prev->table;
		return 0;
	}
	if (!(t = calloc(1, sizeof(*t))) || !(t->sets = calloc(m->pgs, sizeof(*t->sets))) ||
	    (m->nnodes && (!(t->in = calloc(m->nnodes, sizeof(*t->in))) ||
			   !(keys = malloc(m->nnodes * sizeof(*keys)))))) {
		if (t) {
			free(t->sets);
			free(t->in);
		}
		free(t);
		return -ENOMEM;
	}
	t->pgs = m->pgs;
	t->replicas = m->replicas;
	t->nnodes = m->nnodes;
	for (unsigned i = 0; i < m->nnodes; i++) {
		memcpy(t->in[i].name, m->nodes[i].name, sizeof(t->in[i].name));
		memcpy(t->in[i].domain, m->nodes[i].domain, sizeof(t->in[i].domain));
		t->in[i].out = m->nodes[i].state == KURA_NODE_OUT;
		keys[i] = name_key(m->nodes[i].name);
	}
	if (table_fill(t, m, prev ? prev->table : NULL, keys) < 0) {
		free(keys);
		free(t->sets);
		free(t->in);
		free(t);
		return -ENOMEM;
	}
	free(keys);
	atomic_init(&t->refs, 1);
	m->table = t;
	return 0;
}

static int fill_cmp(uint32_t pg, const char *node, const struct kura_map_fill *f)
{
	if (pg != f->pg)
		return pg < f->pg ? -1 : 1;
	return strcmp(node, f->node);
}

int kura_map_filling(const struct kura_map *m, uint32_t pg, const char *node)
{
	size_t lo = 0, hi = m->nfills;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = fill_cmp(pg, node, &m->fills[mid]);

		if (!c)
			return 1;
		if (c < 0)
			hi = mid;
		else
			lo = mid + 1;
	}
	return 0;
}

/* Whether member i holds group pg: not filling it. */
static int holds(const struct kura_map *m, uint32_t pg, unsigned i)
{
	return !m->nfills || !kura_map_filling(m, pg, m->nodes[i].name);
}

static int first_up(const struct kura_map *m, uint32_t pg, const unsigned *idx, unsigned n)
{
	for (unsigned k = 0; k < n; k++)
		if (m->nodes[idx[k]].state == KURA_NODE_UP && holds(m, pg, idx[k]))
			return (int)idx[k];
	return -1;
}

int kura_map_primary(const struct kura_map *m, uint32_t pg)
{
	unsigned idx[KURA_MAP_MAX_REPLICAS];

	return first_up(m, pg, idx, kura_map_place(m, pg, idx));
}

int kura_map_sync_source(const struct kura_map *m, uint32_t pg)
{
	unsigned idx[KURA_MAP_MAX_REPLICAS], n = kura_map_place(m, pg, idx), holders = 0;
	int p = first_up(m, pg, idx, n);
	uint64_t best = 0;

	if (p >= 0)
		return p;
	for (unsigned i = 0; i < n; i++)
		if (holds(m, pg, idx[i])) {
			best = KURA_MAX(best, m->nodes[idx[i]].last_up_epoch);
			holders++;
		}
	for (unsigned i = 0; i < n; i++) {
		const struct kura_map_node *nd = &m->nodes[idx[i]];

		if (!holders ? nd->state == KURA_NODE_UP || nd->state == KURA_NODE_RECOVERING
			     : nd->state == KURA_NODE_RECOVERING && nd->last_up_epoch == best &&
				       holds(m, pg, idx[i]))
			return (int)idx[i];
	}
	return -1;
}

void kura_map_health(const struct kura_map *m, struct kura_map_health *out)
{
	/* the name keys are worked out once for all groups; without memory
	 * for them placement works them out per group, slower but the same */
	uint64_t *keys = m->nnodes ? malloc(m->nnodes * sizeof(*keys)) : NULL;

	for (unsigned i = 0; keys && i < m->nnodes; i++)
		keys[i] = name_key(m->nodes[i].name);
	memset(out, 0, sizeof(*out));
	for (uint32_t pg = 0; pg < m->pgs; pg++) {
		unsigned idx[KURA_MAP_MAX_REPLICAS], n = place(m, keys, pg, idx), up = 0;

		for (unsigned k = 0; k < n; k++)
			up += m->nodes[idx[k]].state == KURA_NODE_UP && holds(m, pg, idx[k]);
		if (!up)
			out->down++;
		else if (up == m->replicas)
			out->clean++;
		else
			out->degraded++;
	}
	free(keys);
}

/* ---- names, addresses, ids ---- */

const char *kura_node_state_name(enum kura_node_state s)
{
	switch (s) {
	case KURA_NODE_UP:
		return "up";
	case KURA_NODE_DOWN:
		return "down";
	case KURA_NODE_OUT:
		return "out";
	case KURA_NODE_RECOVERING:
		return "recovering";
	}
	return "?";
}

static int state_from_name(const char *s, enum kura_node_state *out)
{
	static const enum kura_node_state all[] = { KURA_NODE_UP, KURA_NODE_DOWN, KURA_NODE_OUT,
						    KURA_NODE_RECOVERING };

	for (size_t k = 0; k < sizeof(all) / sizeof(all[0]); k++) {
		if (!strcmp(s, kura_node_state_name(all[k]))) {
			*out = all[k];
			return 0;
		}
	}
	return -EINVAL;
}

static int name_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

/* Why s[0..len) is not a node name or fault domain, or NULL. */
static const char *name_problem(const char *s, size_t len)
{
	if (!len)
		return "empty";
	if (len >= KURA_MAP_NAME_MAX)
		return "longer than 63 characters";
	for (size_t k = 0; k < len; k++)
		if (!name_char(s[k]))
			return "has a character outside A-Z a-z 0-9 . _ -";
	return NULL;
}

/* The value of the decimal number s[0..len), saturated at a million; -1
 * when it is not one (empty, another character, a leading zero). */
static long decimal(const char *s, size_t len)
{
	long v = 0;

	if (!len || (s[0] == '0' && len > 1))
		return -1;
	for (size_t k = 0; k < len; k++) {
		if (s[k] < '0' || s[k] > '9')
			return -1;
		if (v < 1000000)
			v = v * 10 + (s[k] - '0');
	}
	return v;
}

static int dotted_quad(const char *s, size_t len)
{
	unsigned parts = 0;
	size_t start = 0;

	for (size_t k = 0; k <= len; k++) {
		long v;

		if (k < len && s[k] != '.')
			continue;
		v = decimal(s + start, k - start);
		if (++parts > 4 || v < 0 || v > 255)
			return 0;
		start = k + 1;
	}
	return parts == 4;
}

static int digits_and_dots(const char *s, size_t len)
{
	for (size_t k = 0; k < len; k++)
		if (s[k] != '.' && (s[k] < '0' || s[k] > '9'))
			return 0;
	return 1;
}

/* Why the host s[0..len) is neither a dotted quad nor a hostname, or NULL.
 * A host of digits and dots alone must be a dotted quad, so that
 * 10.0.0.256 is refused rather than taken for a name. */
static const char *host_problem(const char *s, size_t len)
{
	if (!len)
		return "empty host";
	if (digits_and_dots(s, len))
		return dotted_quad(s, len) ? NULL : "host is not a valid IPv4 address";
	for (size_t k = 0; k < len; k++)
		if (!name_char(s[k]))
			return "host has a character outside A-Z a-z 0-9 . _ -";
	return NULL;
}

/* Why s[0..len) is not HOST:PORT, or NULL. The host is everything before
 * the first colon, so an IPv6 address is refused (by its port). */
static const char *addr_problem(const char *s, size_t len)
{
	const char *colon, *why;
	size_t hlen;
	long port;

	if (!len)
		return "empty";
	if (len >= KURA_MAP_ADDR_MAX)
		return "longer than 63 characters";
	colon = memchr(s, ':', len);
	if (!colon)
		return "no port (HOST:PORT)";
	hlen = (size_t)(colon - s);
	why = host_problem(s, hlen);
	if (why)
		return why;
	port = decimal(colon + 1, len - hlen - 1);
	if (port < 0)
		return "port is not a decimal number";
	if (port < 1 || port > 65535)
		return "port out of range";
	return NULL;
}

static int hex_digit(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* Whether s is UUID text: 8-4-4-4-12 hex digits. */
static int uuid_ok(const char *s)
{
	size_t k;

	for (k = 0; k < 36 && s[k]; k++) {
		int dash = k == 8 || k == 13 || k == 18 || k == 23;

		if (dash ? s[k] != '-' : !hex_digit(s[k]))
			return 0;
	}
	return k == 36 && !s[k];
}

static int pgs_ok(unsigned pgs)
{
	return pgs >= 1 && pgs <= KURA_MAP_PGS_MAX && !(pgs & (pgs - 1));
}

static int replicas_ok(unsigned r)
{
	return r >= 1 && r <= KURA_MAP_MAX_REPLICAS;
}

/* ---- the map's life ---- */

int kura_map_init(struct kura_map *m, const char *cluster_id, unsigned replicas, unsigned pgs,
		  uint64_t out_after_ms)
{
	memset(m, 0, sizeof(*m));
	if (!cluster_id || !uuid_ok(cluster_id) || !replicas_ok(replicas) || !pgs_ok(pgs))
		return -EINVAL;
	memcpy(m->cluster_id, cluster_id, sizeof(m->cluster_id));
	m->epoch = 1;
	m->replicas = replicas;
	m->pgs = pgs;
	m->out_after_ms = out_after_ms;
	return 0;
}

void kura_map_free(struct kura_map *m)
{
	table_put(m->table);
	free(m->nodes);
	free(m->fills);
	memset(m, 0, sizeof(*m));
}

int kura_map_copy(struct kura_map *dst, const struct kura_map *src)
{
	struct kura_map_node *nodes = NULL;

	if (src->nnodes) {
		nodes = malloc(src->nnodes * sizeof(*nodes));
		if (!nodes)
			return -ENOMEM;
		memcpy(nodes, src->nodes, src->nnodes * sizeof(*nodes));
	}
	*dst = *src;
	dst->nodes = nodes;
	dst->fills = NULL;
	dst->table = NULL;
	if (src->nfills) {
		if (!(dst->fills = malloc(src->nfills * sizeof(*dst->fills)))) {
			free(nodes);
			memset(dst, 0, sizeof(*dst));
			return -ENOMEM;
		}
		memcpy(dst->fills, src->fills, src->nfills * sizeof(*dst->fills));
	}
	if (src->table) {
		atomic_fetch_add(&src->table->refs, 1);
		dst->table = src->table;
	}
	return 0;
}

int kura_map_find(const struct kura_map *m, const char *name)
{
	unsigned lo = 0, hi = m->nnodes;

	while (lo < hi) {
		unsigned mid = lo + (hi - lo) / 2;
		int c = strcmp(m->nodes[mid].name, name);

		if (!c)
			return (int)mid;
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return -1;
}

/* ---- JSON ---- */

char *kura_map_to_json(const struct kura_map *m)
{
	struct kura_jw w;
	const char *text;
	char *out = NULL;
	size_t len;

	kura_jw_init(&w);
	kura_jw_obj(&w, NULL);
	kura_jw_str(&w, "cluster_id", m->cluster_id);
	kura_jw_u64(&w, "epoch", m->epoch);
	kura_jw_u64(&w, "replicas", m->replicas);
	kura_jw_u64(&w, "pgs", m->pgs);
	kura_jw_u64(&w, "out_after_ms", m->out_after_ms);
	if (m->svc_rev)
		kura_jw_u64(&w, "svc_rev", m->svc_rev);
	kura_jw_arr(&w, "nodes");
	for (unsigned i = 0; i < m->nnodes; i++) {
		const struct kura_map_node *nd = &m->nodes[i];

		kura_jw_obj(&w, NULL);
		kura_jw_str(&w, "name", nd->name);
		kura_jw_str(&w, "addr", nd->addr);
		kura_jw_str(&w, "domain", nd->domain);
		kura_jw_str(&w, "state", kura_node_state_name(nd->state));
		kura_jw_u64(&w, "since_ms", nd->since_ms);
		kura_jw_u64(&w, "started_ms", nd->started_ms);
		kura_jw_u64(&w, "last_up_epoch", nd->last_up_epoch);
		kura_jw_end(&w);
	}
	kura_jw_end(&w);
	if (m->nfills) {
		kura_jw_arr(&w, "fills");
		for (unsigned i = 0; i < m->nfills; i++) {
			kura_jw_obj(&w, NULL);
			kura_jw_u64(&w, "pg", m->fills[i].pg);
			kura_jw_str(&w, "node", m->fills[i].node);
			kura_jw_u64(&w, "epoch", m->fills[i].epoch);
			kura_jw_end(&w);
		}
		kura_jw_end(&w);
	}
	kura_jw_end(&w);
	text = kura_jw_finish(&w, &len);
	if (text) {
		out = malloc(len + 1);
		if (out)
			memcpy(out, text, len + 1);
	}
	kura_jw_free(&w);
	return out;
}

/* Where a parse error goes, and the path of the value being read, such as
 * "nodes[3]." (empty at the top). */
struct rd {
	char *err;
	size_t errlen;
	char path[32];
};

static int fail(struct rd *r, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int fail(struct rd *r, const char *key, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (r->err && r->errlen) {
		n = snprintf(r->err, r->errlen, "%s%s: ", r->path, key);
		if (n >= 0 && (size_t)n < r->errlen) {
			va_start(ap, fmt);
			vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
			va_end(ap);
		}
	}
	return -EINVAL;
}

static int read_u64(struct rd *r, const struct kura_json *o, const char *key, uint64_t *out)
{
	const struct kura_json *v = kura_json_get(o, key);

	if (!v)
		return fail(r, key, "missing");
	if (kura_json_type(v) != KURA_JSON_NUM)
		return fail(r, key, "not a number");
	switch (kura_json_u64(v, out)) {
	case 0:
		return 0;
	case -ERANGE:
		return fail(r, key, "out of range (0 to 2^64-1)");
	default:
		return fail(r, key, "not an integer");
	}
}

/* A member that must fit an unsigned and lie in lo..hi. */
static int read_uint(struct rd *r, const struct kura_json *o, const char *key, unsigned lo,
		     unsigned hi, unsigned *out)
{
	uint64_t v;
	int err = read_u64(r, o, key, &v);

	if (err)
		return err;
	if (v < lo || v > hi)
		return fail(r, key, "must be %u to %u", lo, hi);
	*out = (unsigned)v;
	return 0;
}

static int read_str(struct rd *r, const struct kura_json *o, const char *key, const char **out)
{
	const struct kura_json *v = kura_json_get(o, key);

	if (!v)
		return fail(r, key, "missing");
	*out = kura_json_str(v);
	if (!*out)
		return fail(r, key, "not a string");
	return 0;
}

/* A name or a fault domain into dst[KURA_MAP_NAME_MAX]. */
static int read_name(struct rd *r, const struct kura_json *o, const char *key, char *dst)
{
	const char *s, *why;
	int err = read_str(r, o, key, &s);

	if (err)
		return err;
	why = name_problem(s, strlen(s));
	if (why)
		return fail(r, key, "%s", why);
	snprintf(dst, KURA_MAP_NAME_MAX, "%s", s);
	return 0;
}

static int read_addr(struct rd *r, const struct kura_json *o, const char *key, char *dst)
{
	const char *s, *why;
	int err = read_str(r, o, key, &s);

	if (err)
		return err;
	why = addr_problem(s, strlen(s));
	if (why)
		return fail(r, key, "%s", why);
	snprintf(dst, KURA_MAP_ADDR_MAX, "%s", s);
	return 0;
}

static int read_node(struct rd *r, const struct kura_json *o, struct kura_map_node *nd)
{
	const char *state;
	int err;

	if (kura_json_type(o) != KURA_JSON_OBJ) {
		r->path[strlen(r->path) - 1] = '\0'; /* "nodes[3]: ", not "nodes[3].: " */
		return fail(r, "", "not an object");
	}
	if ((err = read_name(r, o, "name", nd->name)) ||
	    (err = read_addr(r, o, "addr", nd->addr)) ||
	    (err = read_name(r, o, "domain", nd->domain)) ||
	    (err = read_str(r, o, "state", &state)) ||
	    (err = read_u64(r, o, "since_ms", &nd->since_ms)))
		return err;
	if (state_from_name(state, &nd->state))
		return fail(r, "state", "not one of up, down, out, recovering");
	/* started_ms came later: absent is 0, unknown */
	if (kura_json_get(o, "started_ms") && (err = read_u64(r, o, "started_ms", &nd->started_ms)))
		return err;
	if (kura_json_get(o, "last_up_epoch") &&
	    (err = read_u64(r, o, "last_up_epoch", &nd->last_up_epoch)))
		return err;
	return 0;
}

static int read_nodes(struct rd *r, const struct kura_json *doc, struct kura_map *m)
{
	const struct kura_json *a = kura_json_get(doc, "nodes");
	size_t n;

	if (!a)
		return fail(r, "nodes", "missing");
	if (kura_json_type(a) != KURA_JSON_ARR)
		return fail(r, "nodes", "not an array");
	n = kura_json_len(a);
	if (n > KURA_MAP_MAX_NODES)
		return fail(r, "nodes", "more than %u nodes", KURA_MAP_MAX_NODES);
	if (!n)
		return 0;
	m->nodes = calloc(n, sizeof(*m->nodes));
	if (!m->nodes)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		int err;

		snprintf(r->path, sizeof(r->path), "nodes[%zu].", i);
		err = read_node(r, kura_json_at(a, i), &m->nodes[i]);
		if (err)
			return err;
		m->nnodes++;
		if (i && strcmp(m->nodes[i - 1].name, m->nodes[i].name) >= 0)
			return fail(r, "name",
				    "not after nodes[%zu].name (names must be sorted and unique)",
				    i - 1);
	}
	r->path[0] = '\0';
	return 0;
}

static int read_fill(struct rd *r, const struct kura_json *o, const struct kura_map *m,
		     struct kura_map_fill *f)
{
	uint64_t pg;
	int err;

	if (kura_json_type(o) != KURA_JSON_OBJ) {
		r->path[strlen(r->path) - 1] = '\0';
		return fail(r, "", "not an object");
	}
	if ((err = read_u64(r, o, "pg", &pg)) || (err = read_name(r, o, "node", f->node)) ||
	    (err = read_u64(r, o, "epoch", &f->epoch)))
		return err;
	if (pg >= m->pgs)
		return fail(r, "pg", "not below pgs (%u)", m->pgs);
	f->pg = (uint32_t)pg;
	if (kura_map_find(m, f->node) < 0)
		return fail(r, "node", "not a node of the map");
	if (!f->epoch || f->epoch > m->epoch)
		return fail(r, "epoch", "not from 1 to the map's epoch");
	return 0;
}

static int read_fills(struct rd *r, const struct kura_json *doc, struct kura_map *m)
{
	const struct kura_json *a = kura_json_get(doc, "fills");
	size_t n;

	if (!a)
		return 0; /* none */
	if (kura_json_type(a) != KURA_JSON_ARR)
		return fail(r, "fills", "not an array");
	n = kura_json_len(a);
	if (n > (size_t)m->pgs * KURA_MAP_MAX_REPLICAS)
		return fail(r, "fills", "more than pgs * %u", KURA_MAP_MAX_REPLICAS);
	if (!n)
		return 0;
	if (!(m->fills = calloc(n, sizeof(*m->fills))))
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		int err;

		snprintf(r->path, sizeof(r->path), "fills[%zu].", i);
		if ((err = read_fill(r, kura_json_at(a, i), m, &m->fills[i])))
			return err;
		m->nfills++;
		if (i && fill_cmp(m->fills[i].pg, m->fills[i].node, &m->fills[i - 1]) <= 0)
			return fail(r, "pg", "not after fills[%zu] (sorted by pg and node, unique)",
				    i - 1);
	}
	r->path[0] = '\0';
	return 0;
}

static int read_map(struct rd *r, const struct kura_json *doc, struct kura_map *m)
{
	const char *id;
	int err;

	if (kura_json_type(doc) != KURA_JSON_OBJ)
		return fail(r, "map", "not a JSON object");
	if ((err = read_str(r, doc, "cluster_id", &id)))
		return err;
	if (!uuid_ok(id))
		return fail(r, "cluster_id", "not a UUID (8-4-4-4-12 hex digits)");
	memcpy(m->cluster_id, id, sizeof(m->cluster_id));
	if ((err = read_u64(r, doc, "epoch", &m->epoch)))
		return err;
	if (!m->epoch)
		return fail(r, "epoch", "must be at least 1");
	if ((err = read_uint(r, doc, "replicas", 1, KURA_MAP_MAX_REPLICAS, &m->replicas)) ||
	    (err = read_uint(r, doc, "pgs", 1, KURA_MAP_PGS_MAX, &m->pgs)))
		return err;
	if (!pgs_ok(m->pgs))
		return fail(r, "pgs", "not a power of two");
	if ((err = read_u64(r, doc, "out_after_ms", &m->out_after_ms)))
		return err;
	if (kura_json_get(doc, "svc_rev") && (err = read_u64(r, doc, "svc_rev", &m->svc_rev)))
		return err;
	if ((err = read_nodes(r, doc, m)))
		return err;
	return read_fills(r, doc, m);
}

int kura_map_from_json(const char *text, size_t len, struct kura_map *out, char *err,
		       size_t errlen)
{
	struct rd r = { .err = err, .errlen = errlen };
	struct kura_json *doc;
	struct kura_map m = { 0 };
	int ret;

	memset(out, 0, sizeof(*out));
	if (err && errlen)
		err[0] = '\0';
	ret = kura_json_parse(text, len, &doc, err, errlen);
	if (ret)
		return ret;
	ret = read_map(&r, doc, &m);
	kura_json_free(doc);
	if (ret) {
		kura_map_free(&m);
		return ret;
	}
	*out = m;
	return 0;
}

/* ---- the leader's step ---- */

static int live_cmp(const void *a, const void *b)
{
	const struct kura_live_node *x = *(const struct kura_live_node *const *)a;
	const struct kura_live_node *y = *(const struct kura_live_node *const *)b;

	return strcmp(x->name, y->name);
}

/* Whether every live node is well formed and named once; sorted[] gets
 * them in name order. */
static int check_live(const struct kura_live_node *live, size_t nlive,
		      const struct kura_live_node **sorted)
{
	for (size_t i = 0; i < nlive; i++) {
		const struct kura_live_node *l = &live[i];

		if (name_problem(l->name, strnlen(l->name, KURA_MAP_NAME_MAX)) ||
		    name_problem(l->domain, strnlen(l->domain, KURA_MAP_NAME_MAX)) ||
		    addr_problem(l->addr, strnlen(l->addr, KURA_MAP_ADDR_MAX)))
			return -EINVAL;
		sorted[i] = l;
	}
	if (nlive > 1) /* qsort() wants a valid pointer even for nothing */
		qsort(sorted, nlive, sizeof(*sorted), live_cmp);
	for (size_t i = 1; i < nlive; i++)
		if (!strcmp(sorted[i - 1]->name, sorted[i]->name))
			return -EINVAL;
	return 0;
}

/* dst: an addr or domain field (both KURA_MAP_NAME_MAX bytes). */
_Static_assert(KURA_MAP_ADDR_MAX == KURA_MAP_NAME_MAX, "addr and name fields are one size");
static int set_str(char *dst, const char *src)
{
	if (!strcmp(dst, src))
		return 0;
	snprintf(dst, KURA_MAP_NAME_MAX, "%s", src);
	return 1;
}

/* epoch: the map's before this update (a node leaving UP was UP in it). */
static int set_state(struct kura_map_node *nd, enum kura_node_state s, uint64_t now_ms,
		     uint64_t epoch)
{
	if (nd->state == s)
		return 0;
	if (nd->state == KURA_NODE_UP)
		nd->last_up_epoch = epoch;
	nd->state = s;
	nd->since_ms = now_ms;
	return 1;
}

/* A node of the map that registered, with the address and domain it gave:
 * RECOVERING when it comes back from DOWN or OUT or as a new process (it
 * may have missed writes), else as it was. Whether anything changed. */
static int node_live(struct kura_map_node *nd, const struct kura_live_node *l, uint64_t now_ms,
		     uint64_t epoch)
{
	int changed = set_str(nd->addr, l->addr);
	int restarted = nd->started_ms && l->started_ms != nd->started_ms;
	int had_domain = nd->domain[0] != '\0'; /* not a node joining now */

	if (nd->state == KURA_NODE_DOWN || nd->state == KURA_NODE_OUT || restarted)
		changed |= set_state(nd, KURA_NODE_RECOVERING, now_ms, epoch);
	else if (nd->state == KURA_NODE_RECOVERING && l->synced_ms && l->synced_ms == nd->since_ms &&
		 l->synced_epoch == epoch)
		changed |= set_state(nd, KURA_NODE_UP, now_ms, epoch);
	if (set_str(nd->domain, l->domain))
		changed |= had_domain ? 2 : 1; /* placement moves: nodes entering sets fill them */
	if (nd->started_ms != l->started_ms) {
		nd->started_ms = l->started_ms;
		changed = 1;
	}
	return changed;
}

int kura_map_mark_up(struct kura_map *m, const char *name, uint64_t now_ms)
{
	int i = kura_map_find(m, name);

	if (i < 0)
		return -ENOENT;
	if (m->nodes[i].state != KURA_NODE_RECOVERING)
		return 0;
	set_state(&m->nodes[i], KURA_NODE_UP, now_ms, m->epoch);
	m->epoch++;
	return 1;
}

/* A node of the map that did not register. A clock that went back (now
 * before since) counts as no time gone. */
static int node_gone(struct kura_map_node *nd, uint64_t now_ms, uint64_t out_after_ms,
		     uint64_t epoch)
{
	if (nd->state == KURA_NODE_UP || nd->state == KURA_NODE_RECOVERING)
		return set_state(nd, KURA_NODE_DOWN, now_ms, epoch);
	if (nd->state == KURA_NODE_DOWN && now_ms >= nd->since_ms &&
	    now_ms - nd->since_ms >= out_after_ms)
		return set_state(nd, KURA_NODE_OUT, now_ms, epoch) ? 2 : 0;
	return 0;
}

/* Which comes next in name order: the map's node i (<0), live node j (>0),
 * or both, being the same node (0). */
static int next_is(const struct kura_map *m, size_t i, const struct kura_live_node *const *live,
		   size_t nlive, size_t j)
{
	if (i == m->nnodes)
		return 1;
	if (j == nlive)
		return -1;
	return strcmp(m->nodes[i].name, live[j]->name);
}

/* Merges the map's nodes (sorted) with the live ones (sorted) into next[],
 * which has room for both; returns how many and whether anything changed. */
static size_t merge(const struct kura_map *m, const struct kura_live_node *const *live,
		    size_t nlive, uint64_t now_ms, struct kura_map_node *next, int *changed)
{
	size_t i = 0, j = 0, n = 0;

	*changed = 0;
	while (i < m->nnodes || j < nlive) {
		struct kura_map_node *nd = &next[n++];
		int c = next_is(m, i, live, nlive, j);

		if (c < 0) {
			*nd = m->nodes[i++];
			*changed |= node_gone(nd, now_ms, m->out_after_ms, m->epoch);
			continue;
		}
		if (c > 0) { /* joins */
			snprintf(nd->name, sizeof(nd->name), "%s", live[j]->name);
			nd->state = m->join_up_until_ms && now_ms >= m->join_up_until_ms
					    ? KURA_NODE_RECOVERING
					    : KURA_NODE_UP;
			nd->since_ms = now_ms;
			*changed = 1;
		} else {
			*nd = m->nodes[i++];
		}
		*changed |= node_live(nd, live[j++], now_ms, m->epoch);
	}
	return n;
}

static int fill_sort(const void *a, const void *b)
{
	const struct kura_map_fill *x = a, *y = b;

	return fill_cmp(x->pg, x->node, y);
}

/* The fills of the next map (nodes next[0..n), epoch m->epoch + 1):
 * those of m whose node is still in the group's set and has not reported
 * them filled, and, when a node went OUT (gained), one for every node that
 * entered a set. Sets *out (malloc'd, sorted) and returns whether they
 * differ from m's; -ENOMEM. */
static int next_fills(const struct kura_map *m, struct kura_map_node *next, size_t n,
		      const struct kura_live_node *const *live, size_t nlive, int gained,
		      struct kura_map_fill **out, unsigned *nout)
{
	struct kura_map after = *m;
	unsigned a[KURA_MAP_MAX_REPLICAS], b[KURA_MAP_MAX_REPLICAS], k = 0, nb;
	size_t cap = m->nfills + (gained ? (size_t)m->pgs * m->replicas : 0);
	struct kura_map_fill *f = cap ? calloc(cap, sizeof(*f)) : NULL;
	int changed = 0;

	if (cap && !f)
		return -ENOMEM;
	after.nodes = next;
	after.nnodes = (unsigned)n;
	after.nfills = 0;
	after.table = NULL; /* m's table is of m's nodes */
	if (gained)
		kura_map_index(&after, m); /* from m's table; on -ENOMEM, placed per group */
	for (uint32_t pg = 0, i = 0; pg < m->pgs && (gained || i < m->nfills); pg++) {
		if (!gained && m->fills[i].pg != pg)
			continue; /* placed only where there is something to do */
		unsigned gstart = k;

		nb = kura_map_place(&after, pg, b);
		/* the group's fills that go on */
		for (; i < m->nfills && m->fills[i].pg == pg; i++) {
			const struct kura_map_fill *o = &m->fills[i];
			int in = 0, done = 0;

			for (unsigned j = 0; j < nb; j++)
				in |= !strcmp(next[b[j]].name, o->node);
			/* a report counts only when made in the map at hand: one
			 * made under an older map may predate a change of the
			 * group's source */
			for (size_t j = 0; j < nlive; j++)
				if (!strcmp(live[j]->name, o->node))
					done = live[j]->filled_epoch == m->epoch;
			if (in && !done)
				f[k++] = *o;
			else
				changed = 1;
		}
		if (!gained || pg >= m->pgs)
			continue;
		/* nodes entering the set (in place of one gone OUT, say) */
		{
			unsigned na = kura_map_place(m, pg, a);

			for (unsigned j = 0; j < nb; j++) {
				const char *name = next[b[j]].name;
				int was = 0, have = 0;

				for (unsigned x = 0; x < na; x++)
					was |= !strcmp(m->nodes[a[x]].name, name);
				for (unsigned x = gstart; x < k; x++)
					have |= !strcmp(f[x].node, name);
				if (was || have)
					continue;
				f[k].pg = pg;
				snprintf(f[k].node, sizeof(f[k].node), "%s", name);
				f[k++].epoch = m->epoch + 1;
				changed = 1;
			}
		}
	}
	table_put(after.table);
	/* fills kept and fills new of one group interleave by name */
	if (k > 1)
		qsort(f, k, sizeof(*f), fill_sort);
	*out = f;
	*nout = k;
	return changed;
}

static int reports(const struct kura_live_node *l, const char *name)
{
	for (unsigned i = 0; i < l->nunreach && i < KURA_MAP_UNREACH_MAX; i++)
		if (!strncmp(l->unreach[i], name, KURA_MAP_NAME_MAX))
			return 1;
	return 0;
}

static const struct kura_live_node *live_find(const struct kura_live_node *const *live,
					      size_t nlive, const char *name)
{
	for (size_t i = 0; i < nlive; i++)
		if (!strcmp(live[i]->name, name))
			return live[i];
	return NULL;
}

/* The asks of nodes UP in m (see kura_map_update), on next[0..*n) as
 * merge() left it: 2 when a node went OUT (its groups get fills), else 1
 * when a node was removed, else 0. */
static int carry_asks(const struct kura_map *m, struct kura_map_node *next, size_t *n,
		      const struct kura_live_node *const *live, size_t nlive, uint64_t now_ms)
{
	int changed = 0;

	for (size_t x = 0; x < nlive; x++) {
		const struct kura_live_node *l = live[x];
		int from = kura_map_find(m, l->name);

		if (from < 0 || m->nodes[from].state != KURA_NODE_UP)
			continue; /* only an UP node's word counts */
		for (unsigned k = 0; k < l->nasks && k < KURA_MAP_ASKS_MAX; k++) {
			const struct kura_map_ask *a = &l->asks[k];
			size_t i = 0;

			while (i < *n && strncmp(next[i].name, a->node, KURA_MAP_NAME_MAX))
				i++;
			if (i == *n || live_find(live, nlive, next[i].name))
				continue;
			if (a->kind == KURA_ASK_OUT && next[i].state == KURA_NODE_DOWN) {
				set_state(&next[i], KURA_NODE_OUT, now_ms, m->epoch);
				changed = 2;
			} else if (a->kind == KURA_ASK_REMOVE && next[i].state == KURA_NODE_OUT) {
				memmove(&next[i], &next[i + 1], (*n - i - 1) * sizeof(*next));
				(*n)--;
				changed |= 1;
			}
		}
	}
	return changed;
}

/* Nodes UP nodes report unreachable are set back (see kura_map_update);
 * states are judged as merge() left them, before any of these changes. */
static int set_back_unreachable(struct kura_map_node *next, size_t n,
				const struct kura_live_node *const *live, size_t nlive,
				uint64_t now_ms, uint64_t epoch)
{
	enum kura_node_state *was = malloc((n ? n : 1) * sizeof(*was));
	int changed = 0;

	if (!was)
		return 0; /* next time */
	for (size_t i = 0; i < n; i++)
		was[i] = next[i].state;
	for (size_t x = 0; x < nlive; x++) {
		const struct kura_live_node *rep = live[x];
		size_t xi = 0;

		while (xi < n && strcmp(next[xi].name, rep->name))
			xi++;
		if (xi == n || was[xi] != KURA_NODE_UP)
			continue; /* only an UP node's word counts */
		for (unsigned k = 0; k < rep->nunreach && k < KURA_MAP_UNREACH_MAX; k++) {
			const struct kura_live_node *back;
			size_t ri = 0;

			while (ri < n && strncmp(next[ri].name, rep->unreach[k], KURA_MAP_NAME_MAX))
				ri++;
			if (ri == n || ri == xi ||
			    (was[ri] != KURA_NODE_UP && was[ri] != KURA_NODE_RECOVERING))
				continue;
			back = live_find(live, nlive, next[ri].name);
			if (back && was[ri] == KURA_NODE_UP && reports(back, rep->name) &&
			    strcmp(next[ri].name, rep->name) < 0)
				continue; /* each cannot reach the other: the later name goes */
			changed |= set_state(&next[ri],
					     was[ri] == KURA_NODE_UP ? KURA_NODE_RECOVERING
								   : KURA_NODE_DOWN,
					     now_ms, epoch);
		}
	}
	free(was);
	return changed;
}

int kura_map_update(struct kura_map *m, const struct kura_live_node *live, size_t nlive,
		    uint64_t now_ms)
{
	const struct kura_live_node **sorted = NULL;
	struct kura_map_node *next = NULL;
	struct kura_map_fill *fills = NULL;
	unsigned nfills = 0;
	size_t n = m->nnodes + nlive;
	int changed = 0, fc, err = -ENOMEM;

	if (nlive > SIZE_MAX / sizeof(*next) - m->nnodes)
		return -ENOMEM; /* no list that long could be held */
	if (nlive && !(sorted = malloc(nlive * sizeof(*sorted))))
		return -ENOMEM;
	if (n && !(next = calloc(n, sizeof(*next))))
		goto free_sorted;
	err = check_live(live, nlive, sorted);
	if (err)
		goto free_next;
	n = merge(m, sorted, nlive, now_ms, next, &changed);
	err = -ENOSPC;
	if (n > KURA_MAP_MAX_NODES)
		goto free_next;
	changed |= set_back_unreachable(next, n, sorted, nlive, now_ms, m->epoch);
	changed |= carry_asks(m, next, &n, sorted, nlive, now_ms);
	fc = next_fills(m, next, n, sorted, nlive, changed & 2, &fills, &nfills);
	err = fc < 0 ? fc : 0;
	if (err)
		goto free_next;
	if (changed || fc) {
		changed = 1;
		/* the placement's inputs may have changed: index the map again */
		table_put(m->table);
		m->table = NULL;
		free(m->nodes);
		m->nodes = next;
		m->nnodes = (unsigned)n;
		free(m->fills);
		m->fills = fills;
		m->nfills = nfills;
		fills = NULL;
		m->epoch++;
		next = NULL;
	}
	free(fills);
free_next:
	free(next); /* the new list, unless it became the map's */
free_sorted:
	free(sorted);
	return err ? err : changed;
}

void kura_map_hello(const struct kura_map *m, const char *node, struct kura_proto_hello *out)
{
	memset(out, 0, sizeof(*out));
	out->version = KURA_PROTO_VERSION;
	if (m) {
		out->epoch = m->epoch;
		memcpy(out->cluster_id, m->cluster_id, 36);
	}
	snprintf(out->node, sizeof(out->node), "%s", node);
}
