/* Rebuild pacing (rep.h, "Resync"): a node catching up sends its SYNC
 * requests only with a slot from its rebuild scheduler, a vdisk/sched.h
 * scheduler of its own whose one client is rebuild-class work. Its
 * controller watches the guest I/O of this node's store (the store counts
 * guest-class requests and their time; every 100 ms the counts go to
 * vd_sched_observe) and, when guest latency rises above its idle baseline,
 * holds slots back: first by window, then by rate, in bytes copied.
 *
 * A slot is asked for with a budget: the most extents its request may have
 * the source send (KURA_PROTO_SYNC_BUDGET with the window whole, fewer as
 * it shrinks, one once the rate is paced), and costs what they may hold, 1
 * MiB each. So the window bounds the bytes that requests in flight can
 * move, and the rate the bytes a second. What a request copied beyond its
 * cost is charged when it is answered. With guests quiet, every slot is
 * granted at once, each for 16 extents, and the resync runs at full speed.
 *
 * A source paces its side the same way, with a second scheduler fed by the
 * same counts: a SYNC job another node sent asks it for a slot before its
 * walk reads anything (pace_ask), takes the smaller of the two budgets,
 * and charges what it sent. The two are apart because a node is a member
 * and a source at once: with one window, each node's requests in flight
 * could fill it while waiting on the other's source, which waits for room
 * in that same window. Each learns the guests' idle latency from windows
 * in which its own requests were not in the store (docs/qos.md says why
 * the two are not coupled there). A source's slot that does not come within
 * PACE_SOURCE_WAIT_NS leaves the queue: the job answers, having moved
 * nothing, well within the link's timeout (the wait, then at most the
 * walk's second and its last extents).
 *
 * Slots are asked for one at a time; the scheduler grants them in its own
 * time (pace_granted), and sync_pump runs again then. A granted slot waits
 * on r->pace.granted until a request takes it, or goes back at once when
 * none wants it. Confirm requests (no data) take no slot. Loop thread only. */
#include "replication/rep_int.h"

#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define PACE_VDISK 1u /* the scheduler's one client */
/* The window when guests are quiet: every group copied at once, each
 * request sending up to 16 extents. */
#define PACE_WINDOW_MAX ((uint64_t)SYNC_PARALLEL * KURA_PROTO_SYNC_BUDGET * KURA_EXT_SIZE)
/* Window bytes per extent of a request's budget: the window shrinks from
 * 16 extents for each group's request to one extent for one request. */
#define PACE_WINDOW_PER_EXTENT ((uint64_t)SYNC_PARALLEL * KURA_EXT_SIZE)

/* A source's slot that has not come after this long gives up. */
#define PACE_SOURCE_WAIT_NS 1000000000ull

struct rslot {
	struct vd_sreq sr;      /* first: the scheduler hands this back */
	struct kura_rep *r;
	struct vd_sched *sched; /* whose slot */
	unsigned budget;        /* extents the request may have sent */
	pace_fn fn;             /* a source's job waiting for it */
	void *arg;
	uint64_t asked_ns;
	struct rslot *next;
};

static void pace_tick(struct kura_op *op, int res);
static void give_up_late(struct kura_rep *r, uint64_t now);

static void arm(struct kura_rep *r, uint64_t ns)
{
	if (r->pace.armed || r->destroying)
		return;
	r->pace.armed = 1;
	r->pace.timer.op.fn = pace_tick;
	kura_loop_timer(r->loop, &r->pace.timer, ns);
}

/* The store's guest counts since the last look go to the controller. */
static void observe(struct kura_rep *r, uint64_t now)
{
	struct rpace *p = &r->pace;
	uint64_t started, done, lat;

	kura_blk_guest_counts(r->store, &started, &done, &lat);
	vd_sched_observe(p->sched, started - p->seen_started, done - p->seen_done,
			 lat - p->seen_lat, now);
	vd_sched_observe(p->src, started - p->seen_started, done - p->seen_done,
			 lat - p->seen_lat, now);
	p->seen_started = started;
	p->seen_done = done;
	p->seen_lat = lat;
}

static void pace_tick(struct kura_op *op, int res)
{
	struct kura_rep *r = KURA_CONTAINER_OF(op, struct kura_rep, pace.timer.op);
	uint64_t now = kura_now_ns(), next;

	r->pace.armed = 0;
	if (res == -ECANCELED || r->destroying)
		return;
	observe(r, now);
	next = KURA_MIN(vd_sched_tick(r->pace.sched, now), vd_sched_tick(r->pace.src, now));
	give_up_late(r, now);
	arm(r, next);
}

static void src_run(struct kura_op *op, int res)
{
	struct kura_rep *r = KURA_CONTAINER_OF(op, struct kura_rep, pace.src_op);

	(void)res;
	r->pace.src_pending = 0;
	r->outstanding--; /* so a shutdown waits for this turn */
	while (r->pace.src_ready) {
		struct rslot *s = r->pace.src_ready;

		r->pace.src_ready = s->next;
		s->fn(s->arg, s);
	}
}

/* Hands the source's granted slots over on a later turn (not inside the
 * scheduler, which the job's end calls again); also while shutting down,
 * so the jobs end. */
static void src_soon(struct kura_rep *r)
{
	if (r->pace.src_pending)
		return;
	r->pace.src_pending = 1;
	r->outstanding++;
	r->pace.src_op.fn = src_run;
	kura_loop_defer(r->loop, &r->pace.src_op, 0);
}

/* Source jobs whose slot has not come in time go on without one; the
 * slots leave the scheduler's queue. */
static void give_up_late(struct kura_rep *r, uint64_t now)
{
	struct rslot **pp = &r->pace.src_wait, *late = NULL;

	while (*pp) {
		struct rslot *s = *pp;

		if (now - s->asked_ns < PACE_SOURCE_WAIT_NS || !vd_sched_cancel(r->pace.src, &s->sr)) {
			pp = &s->next;
			continue;
		}
		*pp = s->next;
		s->next = late;
		late = s;
	}
	while (late) {
		struct rslot *s = late;

		late = s->next;
		r->pace.src_late++;
		s->fn(s->arg, NULL);
		free(s);
	}
}

/* The scheduler admits a slot (inside vd_sched_submit, _done or _tick). */
static void granted(struct vd_sreq *sr)
{
	struct rslot *s = (struct rslot *)sr;
	struct kura_rep *r = s->r;

	if (s->sched == r->pace.src) {
		struct rslot **pp = &r->pace.src_wait;

		while (*pp && *pp != s)
			pp = &(*pp)->next;
		if (*pp)
			*pp = s->next;
		s->next = r->pace.src_ready;
		r->pace.src_ready = s;
		src_soon(r);
		return;
	}
	r->pace.asking--;
	s->next = r->pace.granted;
	r->pace.granted = s;
	if (!r->pace.in_take)
		sync_pump_soon(r);
}

int pace_init(struct kura_rep *r, enum vd_sched_mode mode)
{
	struct vd_sched_opts o = { .mode = mode, .window_max = PACE_WINDOW_MAX };

	if (!(r->pace.sched = vd_sched_new(&o)) || !(r->pace.src = vd_sched_new(&o))) {
		pace_destroy(r);
		return -ENOMEM;
	}
	observe(r, kura_now_ns());
	arm(r, VD_SCHED_CONTROL_NS);
	return 0;
}

/* A slot of sched's, asked for with the budget its state allows now. */
static struct rslot *slot_new(struct kura_rep *r, struct vd_sched *sched)
{
	struct vd_sched_state st;
	struct rslot *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	vd_sched_state(sched, &st);
	s->budget = KURA_PROTO_SYNC_BUDGET;
	if (st.rate)
		s->budget = 1;
	else if (st.window < PACE_WINDOW_MAX)
		s->budget = (unsigned)KURA_MAX(st.window / PACE_WINDOW_PER_EXTENT, 1);
	s->r = r;
	s->sched = sched;
	s->sr.vdisk = PACE_VDISK;
	s->sr.cls = KURA_IO_REBUILD;
	s->sr.bytes = (uint64_t)s->budget * KURA_EXT_SIZE;
	s->sr.dispatch = granted;
	return s;
}

struct rslot *pace_take(struct kura_rep *r)
{
	struct rpace *p = &r->pace;
	struct rslot *s;

	if (!p->sched)
		return NULL;
	if (!p->granted && !p->asking) {
		if (!(s = slot_new(r, p->sched)))
			return NULL;
		p->asking++;
		p->in_take = 1;
		vd_sched_submit(p->sched, &s->sr, kura_now_ns());
		p->in_take = 0;
		/* Held back: sync_pump runs again when it comes (a request
		 * answered, or the tick, which comes every 250 us once the
		 * scheduler paces). */
		if (!p->granted)
			p->waits++;
	}
	if (!(s = p->granted))
		return NULL;
	p->granted = s->next;
	return s;
}

int pace_ask(struct kura_rep *r, pace_fn fn, void *arg)
{
	struct rpace *p = &r->pace;
	struct rslot *s;

	if (!p->src || r->destroying || !(s = slot_new(r, p->src)))
		return 1;
	s->fn = fn;
	s->arg = arg;
	s->asked_ns = kura_now_ns();
	s->next = p->src_wait;
	p->src_wait = s;
	vd_sched_submit(p->src, &s->sr, s->asked_ns);
	if (!s->sr.admitted)
		p->src_waits++; /* held back */
	return 0;
}

unsigned pace_budget(const struct rslot *s)
{
	return s ? s->budget : KURA_PROTO_SYNC_BUDGET;
}

void pace_release(struct kura_rep *r, struct rslot *s, uint64_t bytes)
{
	struct rpace *p = &r->pace;

	if (!s)
		return;
	if (bytes > s->sr.bytes) /* (the slot's cost was taken when granted) */
		vd_sched_charge(s->sched, bytes - s->sr.bytes);
	if (s->sched == p->src)
		p->src_bytes += bytes;
	else
		p->bytes += bytes;
	vd_sched_done(s->sched, &s->sr, kura_now_ns());
	free(s);
}

/* Slots granted that no request took go back. */
void pace_return_unused(struct kura_rep *r)
{
	while (r->pace.granted) {
		struct rslot *s = r->pace.granted;

		r->pace.granted = s->next;
		pace_release(r, s, 0);
	}
}

void pace_shutdown(struct kura_rep *r)
{
	struct rpace *p = &r->pace;

	if (!p->sched)
		return;
	if (p->armed) {
		kura_loop_cancel_sync(r->loop, &p->timer.op);
		p->armed = 0;
	}
	p->in_take = 1; /* no pump from here on */
	vd_sched_drain(p->sched); /* slots still asked for: granted now */
	pace_return_unused(r);
	vd_sched_drain(p->src); /* the sources' jobs run, see the shutdown, end */
}

void pace_destroy(struct kura_rep *r)
{
	vd_sched_free(r->pace.sched);
	vd_sched_free(r->pace.src);
	r->pace.sched = NULL;
	r->pace.src = NULL;
}

void pace_status(struct kura_rep *r, struct kura_jw *w)
{
	struct vd_sched_state s;

	if (!r->pace.sched)
		return;
	vd_sched_state(r->pace.sched, &s);
	kura_jw_obj(w, "rebuild_pacing");
	kura_jw_str(w, "mode", vd_sched_mode(r->pace.sched) == VD_SCHED_FIFO ? "fifo" : "qos");
	kura_jw_u64(w, "guest_latency_us", s.guest_lat_ns / 1000);
	kura_jw_u64(w, "guest_baseline_us", s.baseline_ns / 1000);
	kura_jw_u64(w, "window", s.window);
	kura_jw_u64(w, "rate", s.rate);
	kura_jw_u64(w, "throttled", s.throttled);
	kura_jw_u64(w, "requests_held", r->pace.waits);
	kura_jw_u64(w, "bytes_copied", r->pace.bytes);
	vd_sched_state(r->pace.src, &s);
	kura_jw_u64(w, "source_window", s.window);
	kura_jw_u64(w, "source_rate", s.rate);
	kura_jw_u64(w, "source_requests_held", r->pace.src_waits);
	kura_jw_u64(w, "source_requests_late", r->pace.src_late);
	kura_jw_u64(w, "bytes_sent", r->pace.src_bytes);
	kura_jw_end(w);
}
