/* The leader's registration table (regtab.h): watch events and listings
 * in any order give what a listing at the newest revision gives; a listing
 * read before an applied event neither brings a deleted node back nor an
 * older registration over a newer one; a listing counts what the watch
 * had not said. */
#include "replication/member_int.h"
#include "tests/unit/harness.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct kvbuf {
	struct kura_etcd_kv kv;
	char key[128], val[256];
};

/* A registration of node name at revision rev, its capacity cap. */
static const struct kura_etcd_kv *reg_kv(struct kvbuf *b, const char *name, int64_t rev,
					 uint64_t cap)
{
	snprintf(b->key, sizeof(b->key), "%s%s", KEY_NODES, name);
	snprintf(b->val, sizeof(b->val),
		 "{\"name\":\"%s\",\"addr\":\"10.0.0.1:7000\",\"domain\":\"r1\",\"capacity\":%llu,"
		 "\"used\":0,\"started_ms\":1,\"synced_ms\":0,\"synced_epoch\":0,"
		 "\"filled_epoch\":0,\"unreachable\":[]}",
		 name, (unsigned long long)cap);
	memset(&b->kv, 0, sizeof(b->kv));
	b->kv.key = b->key;
	b->kv.val = b->val;
	b->kv.val_len = strlen(b->val);
	b->kv.mod_rev = rev;
	return &b->kv;
}

static const struct kura_etcd_kv *del_kv(struct kvbuf *b, const char *name, int64_t rev)
{
	snprintf(b->key, sizeof(b->key), "%s%s", KEY_NODES, name);
	b->val[0] = 0;
	memset(&b->kv, 0, sizeof(b->kv));
	b->kv.key = b->key;
	b->kv.val = b->val;
	b->kv.mod_rev = rev;
	return &b->kv;
}

/* "name:capacity,..." of the table's registrations, in order. */
static void summary(struct regtab *t, char *out, size_t len)
{
	struct mreg *regs;
	size_t n, o = 0;

	out[0] = 0;
	CHECK_EQ(regtab_copy(t, &regs, &n), 0);
	for (size_t i = 0; i < n; i++)
		o += (size_t)snprintf(out + o, len - o, "%s%s:%llu", i ? "," : "", regs[i].n.name,
				      (unsigned long long)regs[i].capacity);
	free(regs);
}

TEST(test_regtab_events_and_listings_in_any_order)
{
	struct regtab t;
	struct kvbuf b[4];
	struct kura_etcd_kv l[4];
	char s[256];

	regtab_init(&t);
	struct mreg *regs;
	size_t n;
	CHECK_EQ(regtab_copy(&t, &regs, &n), -EAGAIN); /* nothing listed yet */

	/* listing at 10: a, b, c */
	l[0] = *reg_kv(&b[0], "a", 5, 100);
	l[1] = *reg_kv(&b[1], "b", 6, 200);
	l[2] = *reg_kv(&b[2], "c", 7, 300);
	CHECK_EQ(regtab_list(&t, l, 3, 10, NULL), 0);
	summary(&t, s, sizeof(s));
	CHECK(!strcmp(s, "a:100,b:200,c:300"));

	/* events: b deleted at 11, d joins at 12, a refreshed at 13 */
	CHECK_EQ(regtab_event(&t, KURA_ETCD_DELETE, del_kv(&b[0], "b", 11)), 0);
	CHECK_EQ(regtab_event(&t, KURA_ETCD_PUT, reg_kv(&b[0], "d", 12, 400)), 0);
	CHECK_EQ(regtab_event(&t, KURA_ETCD_PUT, reg_kv(&b[0], "a", 13, 150)), 0);
	summary(&t, s, sizeof(s));
	CHECK(!strcmp(s, "a:150,c:300,d:400"));

	/* a listing read at 11, before the watch's later events were applied
	 * here: it has b deleted and d not yet, a at its old value: nothing of
	 * it is newer, so nothing changes and nothing was missed */
	l[0] = *reg_kv(&b[0], "a", 5, 100);
	l[1] = *reg_kv(&b[1], "c", 7, 300);
	int64_t missed = -1;
	CHECK_EQ(regtab_list(&t, l, 2, 11, &missed), 0);
	CHECK_EQ(missed, 0);
	summary(&t, s, sizeof(s));
	CHECK(!strcmp(s, "a:150,c:300,d:400"));

	/* an event older than what the table holds is ignored */
	CHECK_EQ(regtab_event(&t, KURA_ETCD_PUT, reg_kv(&b[0], "b", 9, 999)), 0);
	summary(&t, s, sizeof(s));
	CHECK(!strcmp(s, "a:150,c:300,d:400"));

	/* a listing at 20 with what the watch did not say: c gone (its last
	 * change at 7), e new at 18: the watch owes an event of 18 or later */
	l[0] = *reg_kv(&b[0], "a", 13, 150);
	l[1] = *reg_kv(&b[1], "d", 12, 400);
	l[2] = *reg_kv(&b[2], "e", 18, 500);
	CHECK_EQ(regtab_list(&t, l, 3, 20, &missed), 0);
	CHECK_EQ(missed, 18);
	summary(&t, s, sizeof(s));
	CHECK(!strcmp(s, "a:150,d:400,e:500"));
	/* only c gone: the watch owes its delete, made after 7 */
	CHECK_EQ(regtab_event(&t, KURA_ETCD_PUT, reg_kv(&b[3], "c", 21, 300)), 0);
	l[2] = *reg_kv(&b[2], "e", 18, 500);
	CHECK_EQ(regtab_list(&t, l, 3, 30, &missed), 0);
	CHECK_EQ(missed, 22);
	/* d refreshed at 31 */
	l[1] = *reg_kv(&b[1], "d", 31, 450);
	CHECK_EQ(regtab_list(&t, l, 3, 31, &missed), 0);
	CHECK_EQ(missed, 31);
	summary(&t, s, sizeof(s));
	CHECK(!strcmp(s, "a:150,d:450,e:500"));

	/* a registration that does not parse counts as absent */
	struct kvbuf bad;
	del_kv(&bad, "f", 21);
	snprintf(bad.val, sizeof(bad.val), "{\"name\":\"g\"}");
	bad.kv.val_len = strlen(bad.val);
	CHECK_EQ(regtab_event(&t, KURA_ETCD_PUT, &bad.kv), 0);
	summary(&t, s, sizeof(s));
	CHECK(!strcmp(s, "a:150,d:450,e:500"));

	/* the watch ended: copies wait for the next listing */
	regtab_reset(&t);
	CHECK_EQ(regtab_copy(&t, &regs, &n), -EAGAIN);
	l[0] = *reg_kv(&b[0], "a", 13, 150);
	CHECK_EQ(regtab_list(&t, l, 1, 35, &missed), 0);
	CHECK_EQ(missed, 0); /* the first listing after a reset owes nothing */
	summary(&t, s, sizeof(s));
	CHECK(!strcmp(s, "a:150"));
	regtab_free(&t);
}

/* Many nodes; the watch's events reach the table late and in bursts (in
 * revision order, as a watch delivers them) while listings at the newest
 * revision come in between: once every event is delivered the table equals
 * the model, and a listing taken with nothing pending counts nothing
 * missed. */
struct pending {
	int del;
	unsigned k;
	int64_t rev;
	uint64_t cap;
};

static void model_list(const int *alive, const int64_t *mrev, const uint64_t *mcap, unsigned nodes,
		       struct kvbuf *lb, struct kura_etcd_kv *l, size_t *nl, char *want, size_t wlen)
{
	size_t o = 0;

	*nl = 0;
	want[0] = 0;
	for (unsigned i = 0; i < nodes; i++) {
		char nm[16];

		if (!alive[i])
			continue;
		snprintf(nm, sizeof(nm), "n%02u", i);
		l[(*nl)++] = *reg_kv(&lb[i], nm, mrev[i], mcap[i]);
		o += (size_t)snprintf(want + o, wlen - o, "%s%s:%llu", *nl > 1 ? "," : "", nm,
				      (unsigned long long)mcap[i]);
	}
}

static void deliver(struct regtab *t, struct pending *p, size_t *np, size_t upto)
{
	struct kvbuf b;
	char name[16];

	for (size_t i = 0; i < upto; i++) {
		snprintf(name, sizeof(name), "n%02u", p[i].k);
		CHECK_EQ(regtab_event(t, p[i].del ? KURA_ETCD_DELETE : KURA_ETCD_PUT,
				      p[i].del ? del_kv(&b, name, p[i].rev)
					       : reg_kv(&b, name, p[i].rev, p[i].cap)),
			 0);
	}
	memmove(p, p + upto, (*np - upto) * sizeof(*p));
	*np -= upto;
}

/* "name:cap,..." of the model as of revision x, from every change made
 * (hist, in revision order). */
static void model_at(const struct pending *hist, size_t nh, int64_t x, unsigned nodes, char *out,
		     size_t len)
{
	size_t o = 0;
	int first = 1;

	out[0] = 0;
	for (unsigned i = 0; i < nodes; i++) {
		const struct pending *last = NULL;

		for (size_t h = 0; h < nh && hist[h].rev <= x; h++)
			if (hist[h].k == i)
				last = &hist[h];
		if (!last || last->del)
			continue;
		o += (size_t)snprintf(out + o, len - o, "%sn%02u:%llu", first ? "" : ",", i,
				      (unsigned long long)last->cap);
		first = 0;
	}
}

TEST(test_regtab_matches_a_model_with_late_events)
{
	enum { NODES = 40, STEPS = 4000 };
	static struct pending pend[STEPS], hist[STEPS];
	size_t nh = 0;
	int64_t listed = 1, delivered = 0;
	static struct kvbuf lb[NODES];
	struct kura_etcd_kv l[NODES];
	struct regtab t;
	int64_t mrev[NODES] = { 0 };
	uint64_t mcap[NODES] = { 0 };
	int alive[NODES] = { 0 };
	int64_t rev = 1;
	unsigned seed = 12345, listings = 0, missed_seen = 0;
	size_t np = 0, nl;
	char want[4096], got[4096];

	regtab_init(&t);
	CHECK_EQ(regtab_list(&t, NULL, 0, rev, NULL), 0);
	for (int step = 0; step < STEPS; step++) {
		unsigned r = (seed = seed * 1103515245u + 12345u) >> 8;
		unsigned k = r % NODES;

		if (r % 11 == 0) {
			int64_t missed = -1;

			model_list(alive, mrev, mcap, NODES, lb, l, &nl, want, sizeof(want));
			CHECK_EQ(regtab_list(&t, l, nl, rev, &missed), 0);
			listed = rev;
			if (!np)
				CHECK_EQ(missed, 0);
			else /* an event still to come makes up for it */
				CHECK(missed <= pend[np - 1].rev);
			missed_seen += missed > 0;
			listings++;
			summary(&t, got, sizeof(got));
			CHECK(!strcmp(got, want)); /* a listing brings the table up to it */
			continue;
		}
		if (r % 5 == 0) {
			size_t upto = np ? (r >> 4) % np + 1 : 0;

			if (upto)
				delivered = pend[upto - 1].rev;
			deliver(&t, pend, &np, upto);
			/* what the table shows: the newest listing, and every
			 * event delivered past it */
			model_at(hist, nh, KURA_MAX(listed, delivered), NODES, want, sizeof(want));
			summary(&t, got, sizeof(got));
			CHECK(!strcmp(got, want));
			continue;
		}
		rev++;
		pend[np].k = k;
		pend[np].rev = rev;
		if (alive[k] && r % 3 == 0) {
			alive[k] = 0;
			pend[np].del = 1;
		} else {
			alive[k] = 1;
			mcap[k] = r % 100000;
			pend[np].del = 0;
			pend[np].cap = mcap[k];
		}
		mrev[k] = rev;
		hist[nh++] = pend[np];
		np++;
	}
	deliver(&t, pend, &np, np);
	model_list(alive, mrev, mcap, NODES, lb, l, &nl, want, sizeof(want));
	summary(&t, got, sizeof(got));
	CHECK(!strcmp(got, want));
	CHECK(listings > 100);
	CHECK(missed_seen > 10); /* the late events were seen as missed */
	regtab_free(&t);
}

TEST(test_registration_asks_parse_and_ignore_what_is_not_understood)
{
	static const char text[] =
		"{\"name\":\"n1\",\"addr\":\"10.0.0.1:7000\",\"domain\":\"r1\",\"asks\":["
		"{\"node\":\"n4\",\"op\":\"out\"},{\"node\":\"n5\",\"op\":\"remove\"},"
		"{\"node\":\"n6\",\"op\":\"destroy\"},{\"node\":7,\"op\":\"out\"},{\"op\":\"out\"},"
		"{\"node\":\"\",\"op\":\"out\"},\"n7\",{\"node\":\"n8\",\"op\":\"out\"},"
		"{\"node\":\"n9\",\"op\":\"out\"},{\"node\":\"n10\",\"op\":\"out\"}]}";
	char key[64], longname[KURA_MAP_NAME_MAX + 40], bad[256];
	struct mreg r;

	snprintf(key, sizeof(key), "%sn1", KEY_NODES);
	CHECK_EQ(member_parse_reg(key, text, strlen(text), &r), 0);
	/* the first KURA_MAP_ASKS_MAX that are understood */
	CHECK_EQ(r.n.nasks, KURA_MAP_ASKS_MAX);
	CHECK(!strcmp(r.n.asks[0].node, "n4"));
	CHECK_EQ(r.n.asks[0].kind, KURA_ASK_OUT);
	CHECK(!strcmp(r.n.asks[1].node, "n5"));
	CHECK_EQ(r.n.asks[1].kind, KURA_ASK_REMOVE);
	CHECK(!strcmp(r.n.asks[2].node, "n8"));
	CHECK(!strcmp(r.n.asks[3].node, "n9"));
	/* a name too long for the map, or asks that are not an array */
	memset(longname, 'x', sizeof(longname) - 1);
	longname[sizeof(longname) - 1] = 0;
	snprintf(bad, sizeof(bad),
		 "{\"name\":\"n1\",\"addr\":\"10.0.0.1:7000\",\"domain\":\"r1\",\"asks\":["
		 "{\"node\":\"%s\",\"op\":\"out\"}]}", longname);
	CHECK_EQ(member_parse_reg(key, bad, strlen(bad), &r), 0);
	CHECK_EQ(r.n.nasks, 0);
	snprintf(bad, sizeof(bad),
		 "{\"name\":\"n1\",\"addr\":\"10.0.0.1:7000\",\"domain\":\"r1\",\"asks\":{}}");
	CHECK_EQ(member_parse_reg(key, bad, strlen(bad), &r), 0);
	CHECK_EQ(r.n.nasks, 0);
}
