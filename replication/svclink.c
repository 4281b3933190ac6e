/* A link to the node serving the vdisks (svclink.h). */
#include "replication/svclink.h"

#include "blockd/proto.h"
#include "common/log.h"
#include "common/util.h"
#include "replication/link.h"
#include "replication/map.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A link being let go: closed on a later loop turn. */
struct retired {
	struct kura_op op;
	struct kura_link *l;
	struct kura_svclink *s;
	struct retired *next;
};

struct kura_svclink {
	struct kura_loop *loop;
	struct kura_member *m;
	char name[KURA_MAP_NAME_MAX];
	unsigned timeout_ms;
	struct kura_link *l;
	char peer[KURA_MAP_NAME_MAX], addr[KURA_MAP_ADDR_MAX];
	struct retired *retired; /* closes still to run */
	struct kura_timer watch;  /* every 100 ms: has the service moved? */
	int watch_armed;
	int held;                 /* reset: nothing is sent until resumed */
};

struct fwdreq {
	struct kura_link_req r;
	void (*cb)(void *cbarg, int err, size_t got);
	void *cbarg;
};

static void hello(void *arg, struct kura_proto_hello *out)
{
	struct kura_svclink *s = arg;

	kura_map_hello(kura_member_map(s->m), s->name, out);
}

static void retired_close(struct kura_op *op, int res)
{
	struct retired *r = KURA_CONTAINER_OF(op, struct retired, op);
	struct kura_svclink *s = r->s;

	(void)res;
	for (struct retired **pp = &s->retired; *pp; pp = &(*pp)->next)
		if (*pp == r) {
			*pp = r->next;
			break;
		}
	kura_link_close(r->l);
	free(r);
}

static void retire(struct kura_svclink *s)
{
	struct retired *r;

	if (!s->l)
		return;
	if (!(r = calloc(1, sizeof(*r)))) {
		kura_log(ERR, "cluster: out of memory letting a link go");
		return; /* kept: the next request goes to it */
	}
	r->l = s->l;
	r->s = s;
	r->op.fn = retired_close;
	r->next = s->retired;
	s->retired = r;
	s->l = NULL;
	kura_loop_defer(s->loop, &r->op, 0);
}

/* Every 100 ms: when the service has moved (or this node took it), the
 * link to the previous holder goes at once, so that what waits on it (a
 * dead node's link retries, and requests queue) fails now rather than at
 * its timeout, and is sent again to the new one. */
static void watch(struct kura_op *op, int res)
{
	struct kura_svclink *s = KURA_CONTAINER_OF(op, struct kura_svclink, watch.op);

	s->watch_armed = 0;
	if (res == -ECANCELED)
		return;
	if (s->l && strcmp(kura_member_service_holder(s->m), s->peer))
		retire(s);
	s->watch_armed = 1;
	kura_loop_timer(s->loop, &s->watch, 100000000ull);
}

int kura_svclink_create(struct kura_loop *loop, struct kura_member *m, const char *name,
			unsigned timeout_ms, struct kura_svclink **out)
{
	struct kura_svclink *s = calloc(1, sizeof(*s));

	if (!s)
		return -ENOMEM;
	s->loop = loop;
	s->m = m;
	s->timeout_ms = timeout_ms;
	snprintf(s->name, sizeof(s->name), "%s", name);
	s->watch.op.fn = watch;
	s->watch_armed = 1;
	kura_loop_timer(loop, &s->watch, 100000000ull);
	*out = s;
	return 0;
}

void kura_svclink_reset(struct kura_svclink *s)
{
	if (!s)
		return;
	s->held = 1;
	retire(s);
}

void kura_svclink_resume(struct kura_svclink *s)
{
	if (s)
		s->held = 0;
}

void kura_svclink_destroy(struct kura_svclink *s)
{
	if (!s)
		return;
	if (s->watch_armed)
		kura_loop_cancel_sync(s->loop, &s->watch.op);
	kura_link_close(s->l);
	while (s->retired)
		kura_loop_run_once(s->loop, 1000000ull); /* the deferred closes run */
	free(s);
}

static void answered(struct kura_link_req *r)
{
	struct fwdreq *f = KURA_CONTAINER_OF(r, struct fwdreq, r);

	f->cb(f->cbarg, r->status, r->status ? 0 : r->got);
	free(f);
}

/* The link to the serving node: opened, or moved to where the service is. */
static int aim(struct kura_svclink *s)
{
	const char *holder = kura_member_service_holder(s->m);
	const struct kura_map *map = kura_member_map(s->m);
	struct kura_link_opts o = { 0 };
	int i;

	if (!holder[0] || !strcmp(holder, s->name) || !map ||
	    (i = kura_map_find(map, holder)) < 0)
		return -EHOSTUNREACH;
	if (s->l && !strcmp(s->peer, holder) && !strcmp(s->addr, map->nodes[i].addr))
		return 0;
	retire(s);
	snprintf(s->peer, sizeof(s->peer), "%s", holder);
	snprintf(s->addr, sizeof(s->addr), "%s", map->nodes[i].addr);
	o.loop = s->loop;
	o.addr = s->addr;
	o.peer = s->peer;
	o.timeout_ms = s->timeout_ms;
	o.hello = hello;
	o.arg = s;
	return kura_link_open(&o, &s->l);
}

int kura_svclink_send(struct kura_svclink *s, const void *msg, size_t len, void *ans, size_t cap,
		      void (*cb)(void *cbarg, int err, size_t got), void *cbarg)
{
	struct fwdreq *f;
	int err;

	if (!len || len > KURA_PROTO_FWD_MAX)
		return -EINVAL;
	if (s->held)
		return -ENOTCONN;
	if ((err = aim(s)))
		return err;
	if (!(f = calloc(1, sizeof(*f))))
		return -ENOMEM;
	f->r.req.op = KURA_OP_FWD;
	f->r.req.data_len = (uint32_t)len;
	f->r.data = msg;
	f->r.buf = ans;
	f->r.cap = cap;
	f->r.cb = answered;
	f->cb = cb;
	f->cbarg = cbarg;
	if ((err = kura_link_submit(s->l, &f->r)))
		free(f);
	return err;
}
