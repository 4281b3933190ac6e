/* `vdisk cluster out NODE` and `vdisk cluster remove NODE`: an
 * administrator's asks about another node, carried to the map leader in
 * this node's registration (member_int.h, "member_ask.c"). */
#include "replication/member_int.h"

#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *ask_word(enum kura_map_ask_kind k)
{
	return k == KURA_ASK_OUT ? "out" : "remove";
}

/* ---- in the registration ---- */

void member_asks_json(struct kura_member *m, struct kura_jw *w)
{
	kura_jw_arr(w, "asks");
	pthread_mutex_lock(&m->mu);
	for (unsigned i = 0; i < m->nasks; i++) {
		kura_jw_obj(w, NULL);
		kura_jw_str(w, "node", m->asks[i].node);
		kura_jw_str(w, "op", ask_word(m->asks[i].kind));
		kura_jw_end(w);
	}
	pthread_mutex_unlock(&m->mu);
	kura_jw_end(w);
}

/* Entries that are not {"node": a name that fits, "op": "out"|"remove"}
 * are left out: the leader acts only on what it understands. */
void member_asks_parse(const struct kura_json *j, struct kura_live_node *n)
{
	const struct kura_json *a = kura_json_get(j, "asks");

	n->nasks = 0;
	if (kura_json_type(a) != KURA_JSON_ARR)
		return;
	for (size_t i = 0; i < kura_json_len(a) && n->nasks < KURA_MAP_ASKS_MAX; i++) {
		const struct kura_json *e = kura_json_at(a, i);
		const char *node, *op;
		struct kura_map_ask *k = &n->asks[n->nasks];

		if (kura_json_get_str(e, "node", &node) || kura_json_get_str(e, "op", &op) ||
		    !*node || strlen(node) >= KURA_MAP_NAME_MAX)
			continue;
		if (!strcmp(op, "out"))
			k->kind = KURA_ASK_OUT;
		else if (!strcmp(op, "remove"))
			k->kind = KURA_ASK_REMOVE;
		else
			continue;
		snprintf(k->node, sizeof(k->node), "%s", node);
		n->nasks++;
	}
}

/* ---- on the loop thread: is it a sensible ask? ---- */

/* Groups that node (index x, DOWN) is a member of with no primary: no
 * member UP that holds every acknowledged write, so the node's copy may be
 * the newest there is. */
static unsigned only_copies(const struct kura_map *map, int x)
{
	unsigned idx[KURA_MAP_MAX_REPLICAS], n = 0;

	for (uint32_t pg = 0; pg < map->pgs; pg++) {
		unsigned k = kura_map_place(map, pg, idx);

		for (unsigned i = 0; i < k; i++)
			if ((int)idx[i] == x) {
				n += kura_map_primary(map, pg) < 0;
				break;
			}
	}
	return n;
}

static int registered(const struct kura_member *m, const char *name)
{
	for (size_t i = 0; m->view && i < m->view->nregs; i++)
		if (!strcmp(m->view->regs[i].n.name, name))
			return 1;
	return 0;
}

int member_ask_parse(struct kura_member *m, const struct kura_json *req, int remove,
		     struct mreq *r, char *msg, size_t len)
{
	const struct kura_map *map = m->have_map ? &m->map : NULL;
	const char *name = NULL;
	int force = 0, x, me;
	enum kura_node_state st;

	kura_json_get_str(req, "node", &name);
	kura_json_get_bool(req, "force", &force);
	if (!map) {
		snprintf(msg, len, "etcd holds no cluster yet: run `vdisk cluster init --replicas N`");
		return -ENOENT;
	}
	if (!name || !*name || (x = kura_map_find(map, name)) < 0) {
		snprintf(msg, len, "no node %.64s in the cluster map; see `vdisk cluster status`",
			 name ? name : "");
		return -ENOENT;
	}
	me = kura_map_find(map, m->name);
	if (me < 0 || map->nodes[me].state != KURA_NODE_UP) {
		snprintf(msg, len, "this node (%s) is %s, not up: run this on a node that is up",
			 m->name, me < 0 ? "not in the map" : kura_node_state_name(map->nodes[me].state));
		return -EAGAIN;
	}
	st = map->nodes[x].state;
	if (st == KURA_NODE_UP || st == KURA_NODE_RECOVERING || registered(m, name)) {
		if (remove)
			snprintf(msg, len, "node %s is up: only a node that is out can be removed "
				 "(stop its blockd, then `vdisk cluster out %s`)", name, name);
		else
			snprintf(msg, len, "node %s is up: only a node that is down can be marked out "
				 "(stop its blockd first)", name);
		return -EBUSY;
	}
	r->kind = MREQ_ASK;
	snprintf(r->ask.node, sizeof(r->ask.node), "%s", name);
	r->ask.kind = remove ? KURA_ASK_REMOVE : KURA_ASK_OUT;
	if (!remove && st == KURA_NODE_OUT) {
		r->state = "out";
		r->epoch = map->epoch;
		return 1;
	}
	if (remove && st == KURA_NODE_DOWN) {
		snprintf(msg, len, "node %s is down, not out: run `vdisk cluster out %s` first",
			 name, name);
		return -EBUSY;
	}
	if (!remove && !force) {
		unsigned n = only_copies(map, x);

		if (n) {
			snprintf(msg, len, "%u placement group%s of node %s %s no other replica up "
				 "to take writes from; marking it out gives up what only it may hold: "
				 "bring their nodes back, or pass --force", n, n == 1 ? "" : "s",
				 name, n == 1 ? "has" : "have");
			return -EBUSY;
		}
	}
	return 0;
}

/* ---- on the agent thread ---- */

static void drop_ask(struct kura_member *m, const struct kura_map_ask *a)
{
	pthread_mutex_lock(&m->mu);
	for (unsigned i = 0; i < m->nasks; i++)
		if (!strcmp(m->asks[i].node, a->node) && m->asks[i].kind == a->kind) {
			memmove(&m->asks[i], &m->asks[i + 1], (m->nasks - i - 1) * sizeof(*m->asks));
			m->nasks--;
			atomic_fetch_add(&m->asks_gen, 1);
			break;
		}
	pthread_mutex_unlock(&m->mu);
}

int member_ask_start(struct kura_member *m, struct mreq *r)
{
	int err = 0;

	pthread_mutex_lock(&m->mu);
	if (m->nasks == KURA_MAP_ASKS_MAX) {
		err = -EBUSY;
	} else {
		m->asks[m->nasks++] = r->ask;
		atomic_fetch_add(&m->asks_gen, 1);
	}
	pthread_mutex_unlock(&m->mu);
	if (err) {
		r->err = err;
		snprintf(r->msg, sizeof(r->msg), "%d node asks are in progress on this node; try "
			 "again once they are done", KURA_MAP_ASKS_MAX);
		return err;
	}
	kura_log(INFO, "cluster: asking the map leader to %s node %s", ask_word(r->ask.kind),
		 r->ask.node);
	r->deadline_ms = member_mono_ms() + KURA_MEMBER_ASK_WAIT_MS;
	r->next = m->asking;
	m->asking = r;
	return 0;
}

/* 1 when the agent's map shows r done (its answer set), -1 when it shows
 * it cannot be (the node registered again), 0 not yet. */
static int ask_outcome(struct kura_member *m, struct mreq *r)
{
	const struct kura_map *map = &m->amap;
	int x = m->have_amap ? kura_map_find(map, r->ask.node) : 0;

	if (!m->have_amap)
		return 0;
	if (x < 0 || (r->ask.kind == KURA_ASK_OUT && map->nodes[x].state == KURA_NODE_OUT)) {
		r->state = x < 0 ? "removed" : "out";
		r->epoch = map->epoch;
		return 1;
	}
	if (map->nodes[x].state == KURA_NODE_UP || map->nodes[x].state == KURA_NODE_RECOVERING) {
		r->err = -EBUSY;
		snprintf(r->msg, sizeof(r->msg), "node %s registered again (map epoch %llu: %s) "
			 "before the map leader could %s it", r->ask.node,
			 (unsigned long long)map->epoch, kura_node_state_name(map->nodes[x].state),
			 r->ask.kind == KURA_ASK_OUT ? "mark out" : "remove");
		return -1;
	}
	return 0;
}

void member_asks_check(struct kura_member *m, int cancel)
{
	struct mreq **p = &m->asking;
	uint64_t now = member_mono_ms();

	while (*p) {
		struct mreq *r = *p;
		int got = cancel ? -1 : ask_outcome(m, r);

		if (cancel) {
			r->err = -ECANCELED;
			snprintf(r->msg, sizeof(r->msg), "blockd is stopping");
		} else if (!got && now >= r->deadline_ms) {
			got = -1;
			r->err = -ETIMEDOUT;
			snprintf(r->msg, sizeof(r->msg), "the map leader (%.64s) did not %s node %s "
				 "within %d s; see `vdisk cluster status`",
				 m->leader_name[0] ? m->leader_name : "none", ask_word(r->ask.kind),
				 r->ask.node, KURA_MEMBER_ASK_WAIT_MS / 1000);
		}
		if (!got) {
			p = &r->next;
			continue;
		}
		*p = r->next;
		drop_ask(m, &r->ask);
		if (got > 0)
			kura_log(INFO, "cluster: node %s is %s (map epoch %llu)", r->ask.node, r->state,
				 (unsigned long long)r->epoch);
		else if (!cancel)
			kura_log(WARN, "cluster: %s", r->msg);
		member_post_answer(m, r);
	}
}
