/* Cluster membership: start and stop, and the agent thread that renews the
 * lease, keeps the node registered, follows the map and, when it holds the
 * leader key, writes the next map (replication/member.h). */
#include "replication/member_int.h"

#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t member_wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

uint64_t member_mono_ms(void)
{
	return kura_now_ns() / 1000000;
}

/* ---- the map, handed from the agent to the loop ---- */

struct mapmsg {
	struct kura_op op;
	struct kura_member *m;
	struct kura_map map;
	int fresh; /* read after a re-registration: ends the stale-map fence */
};

static void map_arrived(struct kura_op *op, int res)
{
	struct mapmsg *mm = KURA_CONTAINER_OF(op, struct mapmsg, op);
	struct kura_member *m = mm->m;

	(void)res;
	if (!m->have_map || mm->map.epoch > m->map.epoch) {
		if (m->have_map)
			kura_map_free(&m->map);
		m->map = mm->map;
		m->have_map = 1;
		if (m->on_map)
			m->on_map(m->arg, &m->map);
	} else {
		kura_map_free(&mm->map);
	}
	if (mm->fresh)
		atomic_store(&m->map_stale, 0);
	free(mm);
	atomic_fetch_add(&m->delivered, 1);
}

/* Maps go to the node only once the leader has seen this process start:
 * a map naming this node with another process's start (started_ms) is from
 * before it (a restart quicker than the leader's tick) and may call it UP
 * and a group's primary, while what it holds may be less than what that
 * process held (a data disk dropped at restart); acting on it, the node
 * would peer as primary and free on the other members what it lacks. The
 * leader's next map marks it recovering, with its own start. */
static int map_is_mine(struct kura_member *m)
{
	int i = kura_map_find(&m->amap, m->name);

	if (i < 0 || m->amap.nodes[i].started_ms == m->started_ms)
		return 1;
	if (!m->old_map_logged)
		kura_log(INFO, "cluster: map epoch %llu is from before node %s started; waiting "
			 "for one with this start", (unsigned long long)m->amap.epoch, m->name);
	m->old_map_logged = 1;
	return 0;
}

static void post_map(struct kura_member *m, int fresh)
{
	struct mapmsg *mm;

	if (!map_is_mine(m))
		return;
	if (!(mm = calloc(1, sizeof(*mm))) || kura_map_copy(&mm->map, &m->amap)) {
		free(mm);
		kura_log(WARN, "cluster: out of memory handing map epoch %llu to the node",
			 (unsigned long long)m->amap.epoch);
		return;
	}
	mm->op.fn = map_arrived;
	mm->m = m;
	mm->fresh = fresh;
	atomic_fetch_add(&m->posted, 1);
	kura_loop_post(m->loop, &mm->op, 0);
}

/* ---- the cluster id this store belongs to (DIR/cluster-id) ---- */

static int read_cluster_file(struct kura_member *m, char id[37])
{
	FILE *f = fopen(m->cluster_file, "r");
	size_t n;

	id[0] = '\0';
	if (!f)
		return errno == ENOENT ? 0 : -errno;
	n = fread(id, 1, 36, f);
	fclose(f);
	id[n] = '\0';
	return n == 36 ? 1 : -EINVAL;
}

static int write_cluster_file(struct kura_member *m, const char *id)
{
	char tmp[4200];
	int fd, err = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", m->cluster_file);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	if (write(fd, id, 36) != 36 || write(fd, "\n", 1) != 1 || fsync(fd))
		err = errno ? -errno : -EIO;
	close(fd);
	if (!err && rename(tmp, m->cluster_file))
		err = -errno;
	return err;
}

/* The store may join cluster c: 0, or -EXDEV with the reason in msg. */
static int check_cluster_id(struct kura_member *m, const struct mcluster *c, char *msg,
			    size_t len)
{
	char mine[37];
	int have = read_cluster_file(m, mine);

	if (have < 0) {
		snprintf(msg, len, "cannot read %s: %s", m->cluster_file, strerror(-have));
		return have;
	}
	if (!c) {
		if (have)
			snprintf(msg, len, "this store belongs to cluster %s, but etcd at %s holds no "
				 "cluster (wrong --cluster?)", mine, m->endpoints);
		return have ? -EXDEV : 0;
	}
	if (have && strcmp(mine, c->id)) {
		snprintf(msg, len, "this store belongs to cluster %s, but etcd at %s holds cluster "
			 "%s; give the right --cluster, or a new --data dir", mine, m->endpoints,
			 c->id);
		return -EXDEV;
	}
	if (!have) {
		int err = write_cluster_file(m, c->id);
		if (err) {
			snprintf(msg, len, "cannot write %s: %s", m->cluster_file, strerror(-err));
			return err;
		}
	}
	return 0;
}

/* ---- agent: cluster, registration, lease ---- */

/* Reads KEY_CLUSTER: 1 when the cluster exists (m->cluster set), 0 when not. */
static int load_cluster(struct kura_member *m)
{
	struct kura_etcd_kv kv;
	int err = kura_etcd_get(m->etcd, KEY_CLUSTER, &kv);

	if (err == -ENOENT)
		return 0;
	if (err)
		return err;
	err = member_parse_cluster(kv.val, kv.val_len, &m->cluster);
	if (err)
		kura_log(WARN, "cluster: %s in etcd is not a cluster record; ignored", KEY_CLUSTER);
	kura_etcd_kv_free(&kv);
	return err ? err : 1;
}

static char *reg_json(struct kura_member *m, uint64_t synced_ms, uint64_t synced_epoch,
		      uint64_t filled_epoch)
{
	struct kura_jw w;
	const char *t;
	char *s = NULL;

	kura_jw_init(&w);
	kura_jw_obj(&w, NULL);
	kura_jw_str(&w, "name", m->name);
	kura_jw_str(&w, "addr", m->addr);
	kura_jw_str(&w, "domain", m->domain);
	kura_jw_u64(&w, "capacity", atomic_load(&m->capacity));
	kura_jw_u64(&w, "used", atomic_load(&m->used));
	kura_jw_u64(&w, "started_ms", m->started_ms);
	kura_jw_u64(&w, "synced_ms", synced_ms);
	kura_jw_u64(&w, "synced_epoch", synced_epoch);
	kura_jw_u64(&w, "filled_epoch", filled_epoch);
	kura_jw_arr(&w, "unreachable");
	pthread_mutex_lock(&m->mu);
	for (unsigned i = 0; i < m->nunreach; i++)
		kura_jw_str(&w, NULL, m->unreach[i]);
	pthread_mutex_unlock(&m->mu);
	kura_jw_end(&w);
	member_asks_json(m, &w);
	kura_jw_end(&w);
	if ((t = kura_jw_finish(&w, NULL)))
		s = strdup(t);
	kura_jw_free(&w);
	return s;
}

/* Registers the node under a new lease: create-if-absent, so that a second
 * process with the same name (or this node's previous life, whose lease has
 * not lapsed yet) keeps the name until its lease goes. */
static int do_register(struct kura_member *m)
{
	char key[128], *val;
	struct kura_etcd_cmp cmp;
	struct kura_etcd_op op;
	uint64_t agen = atomic_load(&m->asks_gen);
	int ok = 0, err;

	if (!m->lease) {
		uint64_t sent = member_mono_ms(); /* the lease runs from before the call */

		err = kura_etcd_lease_grant(m->etcd, KURA_MEMBER_LEASE_TTL_S, &m->lease);
		if (err)
			return err;
		atomic_store(&m->renewed_ms, sent);
		m->next_renew_ms = sent + KURA_MEMBER_RENEW_MS;
	}
	snprintf(key, sizeof(key), "%s%s", KEY_NODES, m->name);
	if (!(val = reg_json(m, 0, 0, 0)))
		return -ENOMEM;
	cmp = (struct kura_etcd_cmp){ .key = key, .mod_rev = 0 };
	op = (struct kura_etcd_op){ .key = key, .val = val, .len = strlen(val), .lease = m->lease };
	err = kura_etcd_txn(m->etcd, &cmp, 1, &op, 1, &ok, NULL);
	free(val);
	if (err || !ok) {
		/* nothing renews a lease until the node is registered: a new one
		 * for the next attempt (this one would lapse meanwhile) */
		if (!err)
			kura_etcd_lease_revoke(m->etcd, m->lease);
		m->lease = 0;
		atomic_store(&m->renewed_ms, 0);
	}
	if (err)
		return err;
	m->reg_synced_ms = m->reg_synced_epoch = 0;
	m->reg_filled_epoch = 0;
	m->reg_asks_gen = agen;
	if (!ok) {
		if (!m->waiting_logged)
			kura_log(WARN, "cluster: node name %s is still registered (another blockd, or "
				 "this node before a crash: its lease lapses within %d s); waiting",
				 m->name, KURA_MEMBER_LEASE_TTL_S);
		m->waiting_logged = 1;
		return -EEXIST;
	}
	m->registered = 1;
	m->must_read = 1; /* map_stale, and the vdisk service may be free */
	m->waiting_logged = 0;
	m->next_reg_put_ms = member_mono_ms() + 10000;
	kura_log(INFO, "cluster: node %s (%s, fault domain %s) joined cluster %s", m->name, m->addr,
		 m->domain, m->cluster.id);
	return 0;
}

/* The lease is gone (lapsed, or revoked on leaving): so are the
 * registration, the leadership and the vdisk service it held. */
static void forget_lease(struct kura_member *m)
{
	m->lease = 0;
	m->registered = 0;
	m->leader = 0;
	atomic_store(&m->renewed_ms, 0);
	/* the cluster may have moved on while the lease was gone: acknowledge
	 * nothing until the map has been read again after registering */
	atomic_store(&m->map_stale, 1);
	member_service_lost(m);
}

static void lost_lease(struct kura_member *m, const char *why)
{
	kura_log(WARN, "cluster: node %s lost its lease (%s); it acknowledges no replicated write "
		 "until it has registered again", m->name, why);
	forget_lease(m);
}

static void renew(struct kura_member *m)
{
	uint64_t sent = member_mono_ms();
	int64_t left = 0;
	int err;

	if (sent < m->next_renew_ms)
		return;
	err = kura_etcd_lease_keepalive(m->etcd, m->lease, &left);
	if (!err && left <= 0)
		err = -ENOENT;
	if (err == -ENOENT) {
		lost_lease(m, "it expired");
		return;
	}
	if (err) {
		/* etcd unreachable: retry at the next tick; fencing counts from the
		 * last renewal that worked */
		uint64_t zero = 0;

		if (atomic_compare_exchange_strong(&m->etcd_failing_ms, &zero, member_wall_ms()))
			kura_log(WARN, "cluster: etcd at %s does not answer (%s); this node "
				 "acknowledges no replicated write until it does", m->endpoints,
				 strerror(-err));
		return;
	}
	if (atomic_exchange(&m->etcd_failing_ms, 0))
		kura_log(INFO, "cluster: etcd answers again");
	atomic_store(&m->renewed_ms, sent);
	m->next_renew_ms = sent + KURA_MEMBER_RENEW_MS;
	if (sent >= m->next_reg_put_ms || atomic_load(&m->synced_ms) != m->reg_synced_ms ||
	    atomic_load(&m->synced_epoch) != m->reg_synced_epoch ||
	    atomic_load(&m->filled_epoch) != m->reg_filled_epoch ||
	    atomic_load(&m->unreach_gen) != m->reg_unreach_gen ||
	    atomic_load(&m->asks_gen) != m->reg_asks_gen) {
		/* refresh capacity and use in the registration (same lease), or
		 * tell the leader this node is in sync */
		uint64_t synced = atomic_load(&m->synced_ms), sepoch = atomic_load(&m->synced_epoch);
		uint64_t filled = atomic_load(&m->filled_epoch), ugen = atomic_load(&m->unreach_gen);
		uint64_t agen = atomic_load(&m->asks_gen);
		char key[128], *val = reg_json(m, synced, sepoch, filled);

		snprintf(key, sizeof(key), "%s%s", KEY_NODES, m->name);
		if (val && !kura_etcd_put(m->etcd, key, val, strlen(val), m->lease)) {
			m->next_reg_put_ms = sent + 10000;
			m->reg_synced_ms = synced;
			m->reg_synced_epoch = sepoch;
			m->reg_filled_epoch = filled;
			m->reg_unreach_gen = ugen;
			m->reg_asks_gen = agen;
		}
		free(val);
	}
}

/* ---- agent: map and leader ---- */

/* Reads the map when it changed and hands a newer one to the loop: 1 when
 * its revision changed, 0 when not, -1 when etcd did not answer. After
 * a re-registration (map_stale), the message that follows this read, new
 * map or not, ends the stale-map fence on the loop. */
static int follow_map(struct kura_member *m)
{
	struct kura_etcd_kv kv;
	struct kura_map nm;
	char why[160];
	int stale = atomic_load(&m->map_stale);
	int64_t rev;
	int err;

	/* the map's revision first: the map itself (100 KiB at 1000 nodes)
	 * travels only when it changed */
	if (kura_etcd_get_rev(m->etcd, KEY_MAP, &rev))
		return -1;
	if (m->have_amap && rev == m->amap_rev) {
		if (stale)
			post_map(m, 1);
		return 0;
	}
	if ((err = kura_etcd_get(m->etcd, KEY_MAP, &kv)))
		return -1;
	if (m->have_amap && kv.mod_rev == m->amap_rev) {
		if (stale)
			post_map(m, 1);
		kura_etcd_kv_free(&kv);
		return 0;
	}
	err = kura_map_from_json(kv.val, kv.val_len, &nm, why, sizeof(why));
	if (err) {
		kura_log(WARN, "cluster: the map in etcd is invalid (%s); keeping epoch %llu", why,
			 (unsigned long long)m->amap.epoch);
	} else if (m->have_amap && nm.epoch <= m->amap.epoch) {
		kura_map_free(&nm);
	} else {
		/* every group's set, worked out here rather than on the node's
		 * loop (or taken from the last map: states alone changed) */
		kura_map_index(&nm, m->have_amap ? &m->amap : NULL);
		if (m->have_amap)
			kura_map_free(&m->amap);
		m->amap = nm;
		m->have_amap = 1;
		post_map(m, stale);
	}
	m->amap_rev = kv.mod_rev;
	kura_etcd_kv_free(&kv);
	return 1;
}

static int campaign(struct kura_member *m)
{
	struct kura_etcd_kv kv;
	struct kura_etcd_cmp cmp = { .key = KEY_LEADER, .mod_rev = 0 };
	struct kura_etcd_op op = { .key = KEY_LEADER, .val = m->name, .len = strlen(m->name),
				   .lease = m->lease };
	int ok = 0, was = m->leader, err = kura_etcd_get(m->etcd, KEY_LEADER, &kv);
	int64_t rev = 0;

	if (!err) {
		m->leader = kv.lease == m->lease && !strcmp(kv.val, m->name);
		m->leader_rev = kv.mod_rev;
		snprintf(m->leader_name, sizeof(m->leader_name), "%s", kv.val);
		kura_etcd_kv_free(&kv);
	} else if (err == -ENOENT) {
		m->leader_name[0] = '\0';
		if ((err = kura_etcd_txn(m->etcd, &cmp, 1, &op, 1, &ok, &rev)))
			return -1;
		if (ok) {
			m->leader = 1;
			m->leader_rev = rev;
			snprintf(m->leader_name, sizeof(m->leader_name), "%s", m->name);
		}
	}
	if (m->leader != was)
		kura_log(INFO, "cluster: node %s %s the map leader", m->name,
			 m->leader ? "is now" : "is no longer");
	return err && err != -ENOENT ? -1 : 0;
}

/* Keeps in live only the unreachable reports that have stood
 * KURA_MEMBER_REPORT_AGE_MS; remembers when each was first seen. */
static void age_reports(struct kura_member *m, struct kura_live_node *live, size_t n)
{
	uint64_t now = member_mono_ms();
	size_t k = 0;

	for (size_t j = 0; j < m->nureps; j++)
		m->ureps[j].seen = 0;
	for (size_t i = 0; i < n; i++) {
		for (unsigned u = 0; u < live[i].nunreach && u < KURA_MAP_UNREACH_MAX; u++) {
			struct ureport *e = NULL;

			for (size_t j = 0; j < m->nureps && !e; j++)
				if (!strcmp(m->ureps[j].from, live[i].name) &&
				    !strcmp(m->ureps[j].to, live[i].unreach[u]))
					e = &m->ureps[j];
			if (!e) {
				struct ureport *nv = realloc(m->ureps, (m->nureps + 1) * sizeof(*nv));

				if (!nv)
					continue; /* not counted this time */
				m->ureps = nv;
				e = &m->ureps[m->nureps++];
				snprintf(e->from, sizeof(e->from), "%s", live[i].name);
				snprintf(e->to, sizeof(e->to), "%s", live[i].unreach[u]);
				e->first_ms = now;
			}
			e->seen = 1;
		}
	}
	/* a report stands once old enough, and once the reverse one, if any,
	 * is too (then the map's rule between the two applies) */
	for (size_t i = 0; i < n; i++) {
		unsigned keep = 0;

		for (unsigned u = 0; u < live[i].nunreach && u < KURA_MAP_UNREACH_MAX; u++) {
			int old = 0, reverse_young = 0;

			for (size_t j = 0; j < m->nureps; j++) {
				const struct ureport *e = &m->ureps[j];
				int young = now - e->first_ms < KURA_MEMBER_REPORT_AGE_MS;

				if (!e->seen)
					continue;
				if (!strcmp(e->from, live[i].name) && !strcmp(e->to, live[i].unreach[u]))
					old = !young;
				else if (!strcmp(e->from, live[i].unreach[u]) &&
					 !strcmp(e->to, live[i].name))
					reverse_young = young;
			}
			if (old && !reverse_young)
				memmove(live[i].unreach[keep++], live[i].unreach[u], KURA_MAP_NAME_MAX);
		}
		live[i].nunreach = keep;
	}
	for (size_t j = 0; j < m->nureps; j++)
		if (m->ureps[j].seen)
			m->ureps[k++] = m->ureps[j];
	m->nureps = k;
}

/* The registrations, for the leader: from the table its watch keeps
 * (regtab.h) while that is live, listed every KURA_MEMBER_POLL_MS besides
 * (into the table too); listed at every tick while the watch is down. A
 * listing that finds changes the watch has not reported, still unreported
 * a tick later (events trail a listing by moments), means a silent stream
 * (on an etcd member cut off): the watch is set up again. */
static int leader_regs(struct kura_member *m, struct mreg **regs, size_t *n)
{
	uint64_t now = member_mono_ms();
	int live = atomic_load(&m->regw_live), err;
	int64_t missed = 0;

	if (m->reg_suspect_rev && now - m->reg_suspect_ms >= KURA_MEMBER_TICK_MS) {
		if (live && atomic_load(&m->regw.seen_rev) < m->reg_suspect_rev)
			atomic_store(&m->regw.halt, 1); /* watch_main logs it */
		m->reg_suspect_rev = 0;
	}
	if (live && now < m->next_reglist_ms && !regtab_copy(&m->regtab, regs, n))
		return 0;
	err = member_list_regs(m, live ? &m->regtab : NULL, &missed, regs, n);
	if (err || !live)
		return err;
	m->next_reglist_ms = now + KURA_MEMBER_POLL_MS;
	if (missed && !m->reg_suspect_rev) {
		m->reg_suspect_rev = missed;
		m->reg_suspect_ms = now;
	}
	return 0;
}

static void lead(struct kura_member *m)
{
	struct kura_live_node *live = NULL;
	struct mreg *regs = NULL;
	struct kura_map next;
	size_t n = 0;
	char *text;
	int changed, ok = 0;
	int64_t rev = 0;

	if (!m->have_amap || leader_regs(m, &regs, &n))
		return;
	if (n && !(live = calloc(n, sizeof(*live)))) {
		free(regs);
		return;
	}
	for (size_t i = 0; i < n; i++)
		live[i] = regs[i].n;
	if (member_mono_ms() >= m->next_view_ms || n != m->view_n) {
		m->view_n = n;
		member_post_view(m, regs, n);
		m->next_view_ms = member_mono_ms() + 1000;
	} else {
		free(regs);
	}
	if (kura_map_copy(&next, &m->amap)) {
		free(live);
		return;
	}
	/* nodes joining the first minute form the cluster; later ones must
	 * be brought up to date first */
	next.join_up_until_ms = m->cluster.created_ms + KURA_MEMBER_FORMING_MS;
	age_reports(m, live, n);
	changed = kura_map_update(&next, live, n, member_wall_ms());
	free(live);
	if (changed >= 0 && m->svc_key_rev > 0 && (uint64_t)m->svc_key_rev > next.svc_rev) {
		/* a node took the vdisk service: every node learns from the
		 * map to refuse the vdisk writes of the one before */
		next.svc_rev = (uint64_t)m->svc_key_rev;
		if (!changed)
			next.epoch++;
		changed = 1;
	}
	if (changed <= 0 || !(text = kura_map_to_json(&next))) {
		if (changed < 0)
			kura_log(WARN, "cluster: cannot update the map: %s", strerror(-changed));
		kura_map_free(&next);
		return;
	}
	{
		struct kura_etcd_cmp cmp[2] = { { KEY_MAP, m->amap_rev },
						{ KEY_LEADER, m->leader_rev } };
		struct kura_etcd_op op = { KEY_MAP, text, strlen(text), 0 };

		if (kura_etcd_txn(m->etcd, cmp, 2, &op, 1, &ok, &rev) || !ok) {
			/* someone else wrote the map, or we lost the leader key (or
			 * etcd did not answer): read both again */
			m->must_read = 1;
			kura_map_free(&next);
			free(text);
			return;
		}
	}
	free(text);
	{
		char what[512];

		kura_map_describe_change(&m->amap, &next, what, sizeof(what));
		kura_log(INFO, "cluster: map epoch %llu written: %s", (unsigned long long)next.epoch,
			 what);
	}
	kura_map_index(&next, &m->amap);
	kura_map_free(&m->amap);
	m->amap = next;
	m->amap_rev = rev;
	post_map(m, 0);
}

/* A non-leader lists the registrations for status only while someone
 * looks (status asked within 30 s), at most once a second. */
static void refresh_view(struct kura_member *m)
{
	uint64_t now = member_mono_ms(), wanted = atomic_load(&m->view_wanted_ms);
	struct mreg *regs;
	size_t n;

	if (now < m->next_view_ms || !wanted || now - wanted > 30000)
		return;
	if (member_list_regs(m, NULL, NULL, &regs, &n))
		return;
	member_post_view(m, regs, n);
	m->next_view_ms = now + 1000;
}

/* The control requests, waiting up to wait_ms for one, or for a poke. */
static struct mreq *take_requests(struct kura_member *m, uint64_t wait_ms)
{
	struct mreq *r;
	struct timespec ts;

	pthread_mutex_lock(&m->mu);
	if (!m->reqs && !atomic_load(&m->stop) && wait_ms &&
	    atomic_load(&m->poke_gen) == m->seen_poke) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += (long)(wait_ms % 1000) * 1000000L;
		ts.tv_sec += (time_t)(wait_ms / 1000) + ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		pthread_cond_timedwait(&m->cv, &m->mu, &ts);
	}
	r = m->reqs;
	m->reqs = NULL;
	pthread_mutex_unlock(&m->mu);
	return r;
}

static void answer_requests(struct kura_member *m, struct mreq *r, int cancel)
{
	while (r) {
		struct mreq *next = r->next;

		if (cancel) {
			r->err = -ECANCELED;
			snprintf(r->msg, sizeof(r->msg), "blockd is stopping");
		} else if (member_agent_request(m, r)) {
			r = next; /* answered once the map shows it done */
			continue;
		}
		member_post_answer(m, r);
		r = next;
	}
}

/* kura_member_leave: the lease goes (so does the registration, and the
 * leader marks the node down at once) and the node never registers
 * again. */
static int left(struct kura_member *m)
{
	if (!atomic_load(&m->leaving))
		return 0;
	if (m->lease) {
		kura_etcd_lease_revoke(m->etcd, m->lease);
		kura_log(WARN, "cluster: node %s left the cluster: %s", m->name, m->leave_why);
		forget_lease(m);
	}
	return 1;
}

static void tick(struct kura_member *m)
{
	uint64_t now, poke = atomic_load(&m->poke_gen);
	int err, read, timed, got;

	if (poke != m->seen_poke) {
		m->seen_poke = poke; /* a change from here on pokes again */
		m->must_read = 1;
	}
	if (left(m))
		return;

	if (!m->have_cluster) {
		char msg[512];

		if (load_cluster(m) != 1)
			return;
		if ((err = check_cluster_id(m, &m->cluster, msg, sizeof(msg)))) {
			kura_log(ERR, "cluster: %s", msg);
			return;
		}
		m->have_cluster = 1;
	}
	if (!m->registered && do_register(m))
		return;
	renew(m);
	if (!m->registered)
		return;
	/* the watched keys are read when a watch saw them change, after a
	 * registration, and every KURA_MEMBER_POLL_MS (every tick while a
	 * watch is down): the leader's and the vdisk service's keys are held
	 * by their holders' leases, and only the leader writes the map, so
	 * no holder needs to read more often */
	now = member_mono_ms();
	/* timed: nothing but the clock asks for this read, every watch live */
	timed = !m->must_read && atomic_load(&m->watch_live) == MEMBER_WATCHES &&
		now >= m->next_poll_ms;
	read = m->must_read || now >= m->next_poll_ms ||
	       atomic_load(&m->watch_live) < MEMBER_WATCHES;
	m->must_read = 0;
	if (read)
		m->next_poll_ms = now + KURA_MEMBER_POLL_MS;
	/* (a read that failed is tried again at the next tick) */
	got = read || atomic_load(&m->map_stale) ? follow_map(m) : 0;
	if (got < 0)
		m->must_read = 1;
	else if (got > 0 && timed)
		m->suspect_rev = m->amap_rev, m->suspect_ms = now; /* unless its watch says so soon */
	if (m->suspect_rev && now - m->suspect_ms >= KURA_MEMBER_TICK_MS) {
		/* a tick after that read: has the map's watch reported it? */
		if (atomic_load(&m->watches[MEMBER_WATCH_MAP].seen_rev) < m->suspect_rev &&
		    atomic_load(&m->watch_live) == MEMBER_WATCHES)
			member_watch_restart(m, MEMBER_WATCH_MAP);
		m->suspect_rev = 0;
	}
	if (read && campaign(m))
		m->must_read = 1;
	if (strcmp(m->leader_name, m->view_leader)) {
		/* a new leader: status shows it at once */
		snprintf(m->view_leader, sizeof(m->view_leader), "%s", m->leader_name);
		m->next_view_ms = 0;
		m->view_n = (size_t)-1;
	}
	if (atomic_load(&m->leading) != m->leader) {
		/* the registrations' watch runs while the node leads */
		atomic_store(&m->leading, m->leader);
		if (!m->leader)
			atomic_store(&m->regw.halt, 1);
		m->next_reglist_ms = 0;
		m->reg_suspect_rev = 0;
	}
	if (m->leader)
		lead(m);
	else
		refresh_view(m);
	if (member_service_tick(m, read))
		m->must_read = 1;
}

static void *agent(void *arg)
{
	struct kura_member *m = arg;
	uint64_t next = 0;

	while (!atomic_load(&m->stop)) {
		uint64_t now = member_mono_ms();

		if (now >= next || atomic_load(&m->poke_gen) != m->seen_poke) {
			tick(m);
			if (now >= next)
				next = now + KURA_MEMBER_TICK_MS;
			now = member_mono_ms();
		}
		answer_requests(m, take_requests(m, next > now ? next - now : 0), 0);
		member_asks_check(m, 0);
	}
	answer_requests(m, take_requests(m, 0), 1);
	member_asks_check(m, 1);
	if (m->lease)
		kura_etcd_lease_revoke(m->etcd, m->lease);
	return NULL;
}

/* ---- start and stop (loop thread) ---- */

static void usage_tick(struct kura_op *op, int res)
{
	struct kura_member *m = KURA_CONTAINER_OF(op, struct kura_member, usage_timer.op);
	uint64_t cap = 0, used = 0;

	m->usage_armed = 0;
	if (res == -ECANCELED || atomic_load(&m->stop))
		return;
	if (m->usage) {
		m->usage(m->arg, &cap, &used);
		atomic_store(&m->capacity, cap);
		atomic_store(&m->used, used);
	}
	m->usage_armed = 1;
	kura_loop_timer(m->loop, &m->usage_timer, 5000000000ull);
}

static int valid_name(const char *s)
{
	size_t n = strlen(s);

	if (!n || n >= KURA_MAP_NAME_MAX)
		return 0;
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-") == n;
}

static int setup(struct kura_member *m, const struct kura_member_opts *o, char *errbuf,
		 size_t errlen)
{
	const char *domain = o->domain ? o->domain : o->name;

	if (!o->name || !valid_name(o->name)) {
		snprintf(errbuf, errlen, "--node: give a name of 1-63 letters, digits, '.', '_', '-'");
		return -EINVAL;
	}
	if (!valid_name(domain)) {
		snprintf(errbuf, errlen, "--fault-domain: give 1-63 letters, digits, '.', '_', '-'");
		return -EINVAL;
	}
	if (!o->addr || !strchr(o->addr, ':') || strlen(o->addr) >= KURA_MAP_ADDR_MAX) {
		snprintf(errbuf, errlen, "--listen: give the node-to-node address as HOST:PORT");
		return -EINVAL;
	}
	snprintf(m->name, sizeof(m->name), "%s", o->name);
	snprintf(m->addr, sizeof(m->addr), "%s", o->addr);
	snprintf(m->domain, sizeof(m->domain), "%s", domain);
	snprintf(m->cluster_file, sizeof(m->cluster_file), "%s/cluster-id", o->data_dir);
	m->endpoints = strdup(o->endpoints);
	m->data_dir = strdup(o->data_dir);
	if (!m->endpoints || !m->data_dir) {
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	m->loop = o->loop;
	m->out_after_ms = o->out_after_ms ? o->out_after_ms : KURA_MEMBER_OUT_AFTER_MS;
	m->usage = o->usage;
	m->on_map = o->on_map;
	m->status = o->status;
	m->on_service = o->on_service;
	m->arg = o->arg;
	m->started_ms = member_wall_ms();
	atomic_store(&m->view_wanted_ms, member_mono_ms());
	return 0;
}

static void member_free(struct kura_member *m)
{
	if (m->etcd)
		kura_etcd_close(m->etcd);
	if (m->have_map)
		kura_map_free(&m->map);
	if (m->have_amap)
		kura_map_free(&m->amap);
	if (m->view) {
		free(m->view->regs);
		free(m->view);
	}
	regtab_free(&m->regtab);
	pthread_mutex_destroy(&m->mu);
	pthread_cond_destroy(&m->cv);
	free(m->endpoints);
	free(m->ureps);
	free(m->data_dir);
	free(m);
}

int kura_member_start(const struct kura_member_opts *o, struct kura_member **out, char *errbuf,
		      size_t errlen)
{
	struct kura_member *m = calloc(1, sizeof(*m));
	int err, have;

	if (!m) {
		snprintf(errbuf, errlen, "out of memory");
		return -ENOMEM;
	}
	pthread_mutex_init(&m->mu, NULL);
	pthread_cond_init(&m->cv, NULL);
	regtab_init(&m->regtab);
	if ((err = setup(m, o, errbuf, errlen)))
		goto fail;
	if ((err = kura_etcd_open(m->endpoints, KURA_MEMBER_ETCD_TIMEOUT_MS, &m->etcd, errbuf, errlen)))
		goto fail;
	if ((err = kura_etcd_status(m->etcd, NULL, NULL))) {
		snprintf(errbuf, errlen, "etcd at %s does not answer (%s); start etcd or fix --cluster",
			 m->endpoints, strerror(-err));
		goto fail;
	}
	have = load_cluster(m);
	if (have < 0) {
		err = have;
		snprintf(errbuf, errlen, "cannot read %s from etcd at %s: %s", KEY_CLUSTER,
			 m->endpoints, strerror(-err));
		goto fail;
	}
	if ((err = check_cluster_id(m, have ? &m->cluster : NULL, errbuf, errlen)))
		goto fail;
	m->have_cluster = have;
	if (!have)
		kura_log(WARN, "cluster: etcd at %s holds no cluster yet; run `vdisk cluster init "
			 "--replicas N` on one node", m->endpoints);
	m->usage_timer.op.fn = usage_tick;
	usage_tick(&m->usage_timer.op, 0);
	if ((err = -pthread_create(&m->thread, NULL, agent, m))) {
		snprintf(errbuf, errlen, "cannot start the cluster agent: %s", strerror(-err));
		goto fail;
	}
	m->thread_started = 1;
	member_watch_start(m);
	*out = m;
	return 0;
fail:
	if (m->usage_armed) {
		atomic_store(&m->stop, 1);
		kura_loop_cancel_sync(m->loop, &m->usage_timer.op);
	}
	member_free(m);
	return err;
}

void kura_member_stop(struct kura_member *m)
{
	if (!m)
		return;
	pthread_mutex_lock(&m->mu);
	atomic_store(&m->stop, 1);
	pthread_cond_signal(&m->cv);
	pthread_mutex_unlock(&m->mu);
	if (m->thread_started)
		pthread_join(m->thread, NULL);
	member_watch_stop(m);
	while (atomic_load(&m->delivered) < atomic_load(&m->posted))
		kura_loop_run_once(m->loop, 10000000ull);
	if (m->usage_armed)
		kura_loop_cancel_sync(m->loop, &m->usage_timer.op);
	member_service_stop(m);
	member_free(m);
}

const struct kura_map *kura_member_map(const struct kura_member *m)
{
	return m->have_map ? &m->map : NULL;
}

void kura_member_set_synced(struct kura_member *m, uint64_t since_ms, uint64_t epoch)
{
	atomic_store(&m->synced_epoch, epoch);
	atomic_store(&m->synced_ms, since_ms);
}

void kura_member_set_unreachable(struct kura_member *m, const char (*names)[KURA_MAP_NAME_MAX],
				 unsigned n)
{
	int same;

	n = n > KURA_MAP_UNREACH_MAX ? KURA_MAP_UNREACH_MAX : n;
	pthread_mutex_lock(&m->mu);
	same = n == m->nunreach;
	for (unsigned i = 0; same && i < n; i++)
		same = !strcmp(m->unreach[i], names[i]);
	for (unsigned i = 0; !same && i < n; i++)
		snprintf(m->unreach[i], KURA_MAP_NAME_MAX, "%s", names[i]);
	m->nunreach = n;
	pthread_mutex_unlock(&m->mu);
	if (!same) {
		atomic_fetch_add(&m->unreach_gen, 1);
		if (n)
			kura_log(WARN, "cluster: node %s cannot deliver copies to %u node(s) (first: "
				 "%s); asking the leader to set them back", m->name, n, names[0]);
	}
}

void kura_member_set_filled(struct kura_member *m, uint64_t epoch)
{
	atomic_store(&m->filled_epoch, epoch);
}

void kura_member_leave(struct kura_member *m, const char *why)
{
	if (atomic_load(&m->leaving))
		return;
	snprintf(m->leave_why, sizeof(m->leave_why), "%s", why);
	atomic_store(&m->renewed_ms, 0); /* no acknowledgement from now on */
	pthread_mutex_lock(&m->mu);
	atomic_store(&m->leaving, 1); /* after leave_why: the agent reads it then */
	pthread_cond_signal(&m->cv);
	pthread_mutex_unlock(&m->mu);
}

int kura_member_may_ack(const struct kura_member *m)
{
	uint64_t renewed = atomic_load(&m->renewed_ms);
	int i;

	if (!renewed || !m->have_map || atomic_load(&m->leaving))
		return 0;
	if (member_mono_ms() - renewed >=
	    KURA_MEMBER_LEASE_TTL_S * 1000ull - KURA_MEMBER_FENCE_MARGIN_MS)
		return 0;
	if (atomic_load(&m->map_stale))
		return 0;
	i = kura_map_find(&m->map, m->name);
	return i >= 0 && m->map.nodes[i].state == KURA_NODE_UP;
}
