/* The leader's table of node registrations (KEY_NODES), kept from an etcd
 * watch instead of listing every registration at every tick.
 *
 * It is fed by two sources that may arrive in any order: the watch's
 * events (a put or a delete of one key, with the revision that made it)
 * and full listings (every key under the prefix as of one revision). A
 * key's entry remembers the revision of the last change it took, and a
 * change older than that is ignored, so a listing read before an event
 * that has already been applied cannot bring a deleted node back or an
 * older registration over a newer one. A deleted key stays as a
 * tombstone until a listing at or past its delete no longer shows it;
 * past that, a key the newest listing did not show takes no change older
 * than that listing.
 *
 * A listing also says what the watch has not delivered yet: keys it shows
 * newer than the table, or keys the table holds that it, read after their
 * last change, no longer has. A watch that only trails the listing
 * delivers those events within moments; one whose stream went silent
 * never does, which the caller tells apart by the revision the watch
 * reported last.
 *
 * Thread rule: every call takes the table's mutex; the watch thread feeds
 * events, the agent thread feeds listings and copies. */
#ifndef KURA_REPLICATION_REGTAB_H
#define KURA_REPLICATION_REGTAB_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "metadata/etcd.h"
#include "replication/map.h"

/* A node's registration (KEY_NODES NAME). */
struct mreg {
	struct kura_live_node n;
	uint64_t capacity, used, started_ms;
};

struct regtab_ent {
	char key[KURA_MAP_NAME_MAX]; /* the name after KEY_NODES */
	struct mreg reg;
	int64_t rev;  /* the revision of the last change taken */
	int gone;     /* deleted (or not a registration) as of rev */
};

struct regtab {
	pthread_mutex_t mu;
	struct regtab_ent *e; /* sorted by key */
	size_t n, cap;
	int valid;            /* a listing was taken since the last reset */
	int64_t floor;        /* the newest listing's revision: a key absent
			       * then takes no change made before it */
};

void regtab_init(struct regtab *t);
void regtab_free(struct regtab *t);
/* Forgets everything (the watch ended): copies fail until the next listing. */
void regtab_reset(struct regtab *t);
/* A watch event. Returns 0, or -ENOMEM. */
int regtab_event(struct regtab *t, enum kura_etcd_event ev, const struct kura_etcd_kv *kv);
/* A listing at revision rev; the table is valid from then on. *missed
 * (optional): 0 when the table had every change the listing shows, else a
 * revision its watch should have reported by now (the newest such change
 * made there or later). Returns 0, or -ENOMEM. */
int regtab_list(struct regtab *t, const struct kura_etcd_kv *kvs, size_t n, int64_t rev,
		int64_t *missed);
/* The registrations, in key order, as a malloc'd array (member_list_regs'
 * form). -EAGAIN while no listing was taken since the last reset. */
int regtab_copy(struct regtab *t, struct mreg **regs, size_t *n);

#endif
