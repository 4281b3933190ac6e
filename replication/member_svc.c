/* The vdisk service (member.h): one node at a time holds key vdisk-service
 * under its lease and serves the cluster's vdisks. Agent thread, except
 * where noted. */
#include "replication/member_int.h"

#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct svcmsg {
	struct kura_op op;
	struct kura_member *m;
	int held;
	int64_t rev;
	char holder[KURA_MAP_NAME_MAX];
};

/* loop thread: whether the lease was renewed recently enough that etcd
 * cannot have expired it (the fence of member.h) */
static int lease_fresh(const struct kura_member *m)
{
	uint64_t renewed = atomic_load(&m->renewed_ms);

	return renewed && !atomic_load(&m->leaving) && member_mono_ms() - renewed <
				  KURA_MEMBER_LEASE_TTL_S * 1000ull - KURA_MEMBER_FENCE_MARGIN_MS;
}

/* loop thread: the service is dropped here; the agent learns it on its
 * next tick (svc_dropped) and tells again when the key is still ours */
static void svc_drop(struct kura_member *m)
{
	m->svc_held_loop = 0;
	m->svc_rev_loop = 0;
	atomic_store(&m->svc_dropped, 1);
	m->on_service(m->arg, 0, 0);
}

static void svc_watch(struct kura_op *op, int res);

static void svc_watch_arm(struct kura_member *m)
{
	if (m->svc_watch_armed)
		return;
	m->svc_watch_armed = 1;
	m->svc_watch.op.fn = svc_watch;
	kura_loop_timer(m->loop, &m->svc_watch, 100000000ull);
}

/* Every 100 ms while this node serves the vdisks: no renewal confirmed
 * for the lease time less the fence margin, and etcd may expire the lease
 * (and the key) any moment and another node take the service; this one
 * stops serving now, on the loop, however long the agent waits on etcd. */
static void svc_watch(struct kura_op *op, int res)
{
	struct kura_member *m = KURA_CONTAINER_OF(op, struct kura_member, svc_watch.op);

	m->svc_watch_armed = 0;
	if (res == -ECANCELED || atomic_load(&m->stop) || !m->svc_held_loop)
		return;
	if (!lease_fresh(m)) {
		kura_log(WARN, "cluster: node %s has no confirmed lease: it stops serving the "
			 "vdisks", m->name);
		svc_drop(m);
		return;
	}
	svc_watch_arm(m);
}

void member_service_stop(struct kura_member *m)
{
	if (m->svc_watch_armed)
		kura_loop_cancel_sync(m->loop, &m->svc_watch.op);
	m->svc_watch_armed = 0;
}

/* loop thread */
static void svc_arrived(struct kura_op *op, int res)
{
	struct svcmsg *sm = KURA_CONTAINER_OF(op, struct svcmsg, op);
	struct kura_member *m = sm->m;

	(void)res;
	snprintf(m->svc_holder, sizeof(m->svc_holder), "%s", sm->holder);
	if (m->on_service && sm->held && !lease_fresh(m)) {
		/* heard late: the lease may be gone by now; the agent tells
		 * again once a renewal is confirmed */
		if (m->svc_held_loop)
			svc_drop(m);
		else
			atomic_store(&m->svc_dropped, 1);
	} else if (m->on_service &&
		   (sm->held != m->svc_held_loop || sm->rev != m->svc_rev_loop)) {
		/* taken again at another revision: the catalog's fence moves */
		m->svc_held_loop = sm->held;
		m->svc_rev_loop = sm->rev;
		m->on_service(m->arg, sm->held, sm->rev);
		if (sm->held)
			svc_watch_arm(m);
	}
	free(sm);
	atomic_fetch_add(&m->delivered, 1);
}

static void svc_post(struct kura_member *m)
{
	struct svcmsg *sm = calloc(1, sizeof(*sm));

	if (!sm) {
		kura_log(WARN, "cluster: out of memory telling the node about the vdisk service");
		return;
	}
	sm->op.fn = svc_arrived;
	sm->m = m;
	sm->held = m->svc_held;
	sm->rev = m->svc_rev;
	snprintf(sm->holder, sizeof(sm->holder), "%s", m->svc_name);
	atomic_fetch_add(&m->posted, 1);
	kura_loop_post(m->loop, &sm->op, 0);
}

/* This node may take the service: registered, and UP in the newest map
 * (a node still catching up would serve vdisks with stale copies under
 * it only through their primaries, but it is also the likeliest to be
 * failing). */
static int svc_eligible(struct kura_member *m)
{
	int i;

	if (!m->registered || !m->have_amap || !m->on_service)
		return 0;
	i = kura_map_find(&m->amap, m->name);
	return i >= 0 && m->amap.nodes[i].state == KURA_NODE_UP;
}

int member_service_tick(struct kura_member *m, int read)
{
	struct kura_etcd_cmp cmp = { .key = KEY_SERVICE, .mod_rev = 0 };
	struct kura_etcd_op op = { .key = KEY_SERVICE, .val = m->name, .len = strlen(m->name),
				   .lease = m->lease };
	int held = 0, ok = 0, err;
	char name[KURA_MAP_NAME_MAX] = "";
	struct kura_etcd_kv kv;
	int64_t rev = 0;
	int dropped = atomic_exchange(&m->svc_dropped, 0);

	if (!read && !dropped)
		return 0; /* nobody changed the key (its watch would have said) */
	if (dropped && m->svc_held) {
		/* the loop stopped serving: tell it again if the key is ours,
		 * under a new revision (below) */
		m->svc_dropped_rev = m->svc_rev;
		m->svc_held = 0;
		m->svc_rev = 0;
	}
	err = kura_etcd_get(m->etcd, KEY_SERVICE, &kv);
	if (err == -ENOENT)
		m->svc_key_rev = 0;
	if (err == -ENOENT && svc_eligible(m) && kura_etcd_txn(m->etcd, &cmp, 1, &op, 1, &ok, &rev))
		return -1; /* tried again next tick: nothing else would say the key is free */
	if (err == -ENOENT && ok) {
		held = 1;
		m->svc_key_rev = rev;
		snprintf(name, sizeof(name), "%s", m->name);
	} else if (!err) {
		m->svc_key_rev = kv.mod_rev;
		held = m->lease && kv.lease == m->lease && !strcmp(kv.val, m->name);
		rev = kv.mod_rev;
		snprintf(name, sizeof(name), "%s", kv.val);
		kura_etcd_kv_free(&kv);
		if (held && rev <= m->svc_dropped_rev) {
			/* served again, it must not be at the revision whose writes
			 * were abandoned (some may still be on their way): the key
			 * is written again, and the map's svc_rev moves past them */
			struct kura_etcd_cmp same = { .key = KEY_SERVICE, .mod_rev = rev };

			if (kura_etcd_txn(m->etcd, &same, 1, &op, 1, &ok, &rev) || !ok)
				return -1; /* tried again next tick */
			m->svc_key_rev = rev;
		}
	} else if (err != -ENOENT) {
		return -1; /* etcd does not answer: nothing changes until it does */
	}
	if (held == m->svc_held && (!held || rev == m->svc_rev) && !strcmp(name, m->svc_name))
		return 0;
	if (held != m->svc_held)
		kura_log(INFO, "cluster: node %s %s the cluster's vdisks", m->name,
			 held ? "now serves" : "no longer serves");
	m->svc_held = held;
	m->svc_rev = held ? rev : 0;
	snprintf(m->svc_name, sizeof(m->svc_name), "%s", name);
	svc_post(m);
	return 0;
}

/* The lease is gone: so is the key it held. */
void member_service_lost(struct kura_member *m)
{
	if (!m->svc_held)
		return;
	m->svc_held = 0;
	m->svc_rev = 0;
	m->svc_name[0] = '\0';
	svc_post(m);
}

const char *kura_member_service_holder(const struct kura_member *m)
{
	return m->svc_holder;
}
