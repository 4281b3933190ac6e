/* The engine's side of the I/O scheduler (vdisk/sched.h): its timers on the
 * loop, per-vdisk settings in the catalog (kind 'q', keyed by vdisk id), and
 * the control requests qos, qos_show and stats (docs/qos.md). */
#include "vdisk/vd_int.h"

#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- timers ---- */

static void arm(struct kura_vd_engine *e, struct kura_timer *t, bool *armed, uint64_t ns)
{
	if (*armed || e->sched_stopping)
		return;
	*armed = true;
	kura_loop_timer(e->loop, t, ns);
}

static void tick(struct kura_vd_engine *e)
{
	vd_sched_tick(e->sched, kura_now_ns());
	if (vd_sched_pacing(e->sched))
		arm(e, &e->pace_timer, &e->pace_armed, VD_SCHED_PACE_NS);
}

static void control_fired(struct kura_op *op, int res)
{
	struct kura_vd_engine *e =
		KURA_CONTAINER_OF(op, struct kura_vd_engine, control_timer.op);

	e->control_armed = false;
	if (res == -ECANCELED || e->sched_stopping)
		return;
	tick(e);
	arm(e, &e->control_timer, &e->control_armed, VD_SCHED_CONTROL_NS);
}

static void pace_fired(struct kura_op *op, int res)
{
	struct kura_vd_engine *e = KURA_CONTAINER_OF(op, struct kura_vd_engine, pace_timer.op);

	e->pace_armed = false;
	if (res == -ECANCELED || e->sched_stopping)
		return;
	tick(e);
}

int vd_qos_start(struct kura_vd_engine *e, bool fifo)
{
	struct vd_sched_opts o = { .mode = fifo ? VD_SCHED_FIFO : VD_SCHED_QOS };

	e->sched = vd_sched_new(&o);
	if (!e->sched)
		return -ENOMEM;
	e->control_timer.op.fn = control_fired;
	e->pace_timer.op.fn = pace_fired;
	arm(e, &e->control_timer, &e->control_armed, VD_SCHED_CONTROL_NS);
	return 0;
}

void vd_qos_stop(struct kura_vd_engine *e)
{
	if (!e->sched)
		return;
	e->sched_stopping = true;
	if (e->control_armed)
		kura_loop_cancel_sync(e->loop, &e->control_timer.op);
	if (e->pace_armed)
		kura_loop_cancel_sync(e->loop, &e->pace_timer.op);
	while (e->control_armed || e->pace_armed)
		kura_loop_run_once(e->loop, 100000000ull);
	vd_sched_free(e->sched);
	e->sched = NULL;
}

void vd_sched_go(struct kura_vd_engine *e, struct vd_sreq *r)
{
	vd_sched_submit(e->sched, r, kura_now_ns());
	if (vd_sched_pacing(e->sched))
		arm(e, &e->pace_timer, &e->pace_armed, VD_SCHED_PACE_NS);
}

void vd_sched_end(struct kura_vd_engine *e, struct vd_sreq *r)
{
	vd_sched_done(e->sched, r, kura_now_ns());
	if (vd_sched_pacing(e->sched))
		arm(e, &e->pace_timer, &e->pace_armed, VD_SCHED_PACE_NS);
}

/* ---- settings ---- */

static const char *const qos_keys[] = { "iops_limit", "bw_limit", "iops_reserve", "bw_reserve",
					"weight" };

static uint64_t *qos_field(struct vd_qos *q, unsigned i, uint64_t *w)
{
	switch (i) {
	case 0: return &q->iops_limit;
	case 1: return &q->bw_limit;
	case 2: return &q->iops_reserve;
	case 3: return &q->bw_reserve;
	default: *w = q->weight; return w;
	}
}

static void qos_json(struct kura_jw *w, const char *key, const struct vd_qos *q)
{
	struct vd_qos c = *q;
	uint64_t wt;

	kura_jw_obj(w, key);
	for (unsigned i = 0; i < KURA_ARRAY_SIZE(qos_keys); i++)
		kura_jw_u64(w, qos_keys[i], *qos_field(&c, i, &wt));
	kura_jw_end(w);
}

/* Reads the fields present in o into q; -EINVAL names the bad one in bad. */
static int qos_from_json(const struct kura_json *o, struct vd_qos *q, const char **bad)
{
	for (unsigned i = 0; i < KURA_ARRAY_SIZE(qos_keys); i++) {
		uint64_t v, wt = 0, *f;
		int err = kura_json_get_u64(o, qos_keys[i], &v);

		if (err == -ENOENT)
			continue;
		if (err) {
			*bad = qos_keys[i];
			return -EINVAL;
		}
		f = qos_field(q, i, &wt);
		if (f == &wt)
			q->weight = v > VD_QOS_WEIGHT_MAX ? VD_QOS_WEIGHT_MAX + 1 : (uint32_t)v;
		else
			*f = v;
	}
	return 0;
}

int vd_qos_load(struct kura_vd_engine *e, uint64_t id, const struct kura_json *o)
{
	struct vd_qos q = { 0 };
	const char *bad;

	if (qos_from_json(o, &q, &bad) || q.weight > VD_QOS_WEIGHT_MAX)
		return -EINVAL;
	return vd_sched_set_qos(e->sched, id, &q, kura_now_ns()) ? -ENOMEM : 0;
}

static int qos_check(struct vd_ctl *c, const struct vd_qos *q)
{
	if (q->weight > VD_QOS_WEIGHT_MAX) {
		vd_ctl_reply(c, -EINVAL, "weight must be 1 to %u (0 for the default, %u)",
			     VD_QOS_WEIGHT_MAX, VD_QOS_WEIGHT_DEFAULT);
		return -EINVAL;
	}
	if (q->bw_limit && q->bw_limit < VD_QOS_BW_MIN) {
		vd_ctl_reply(c, -EINVAL, "bandwidth limit must be at least 4K/s (0 for none)");
		return -EINVAL;
	}
	if (q->iops_limit && q->iops_reserve > q->iops_limit) {
		vd_ctl_reply(c, -EINVAL, "IOPS reservation %llu is above the IOPS limit %llu",
			     (unsigned long long)q->iops_reserve, (unsigned long long)q->iops_limit);
		return -EINVAL;
	}
	if (q->bw_limit && q->bw_reserve > q->bw_limit) {
		vd_ctl_reply(c, -EINVAL, "bandwidth reservation %llu is above the bandwidth limit %llu",
			     (unsigned long long)q->bw_reserve, (unsigned long long)q->bw_limit);
		return -EINVAL;
	}
	return 0;
}

struct qos_set {
	struct vd_ctl *c;
	uint64_t id;
	struct vd_qos q;
};

static void qos_committed(void *arg, int err)
{
	struct qos_set *qs = arg;
	struct vd_ctl *c = qs->c;
	struct kura_vd_engine *e = c->e;

	if (err) {
		vd_ctl_reply(c, err, "cannot save the settings: %s", strerror(-err));
	} else if (!vd_get(e, qs->id)) {
		vd_ctl_reply(c, -ENOENT, "the vdisk was deleted meanwhile");
	} else if (vd_sched_set_qos(e->sched, qs->id, &qs->q, kura_now_ns())) {
		vd_ctl_reply(c, -ENOMEM, "out of memory");
	} else {
		qos_json(c->out, "qos", &qs->q);
		vd_ctl_reply(c, 0, NULL);
	}
	free(qs);
}

void vd_op_qos(struct vd_ctl *c, const char *name)
{
	struct kura_vd_engine *e = c->e;
	struct vd_vdisk *v = vd_need_vdisk(c, name);
	struct kura_cat_txn t;
	struct qos_set *qs;
	const char *bad;
	struct kura_jw w;

	if (!v)
		return;
	if (v->deleting) {
		vd_ctl_reply(c, -ENOENT, "vdisk '%s' is being deleted", name);
		return;
	}
	qs = calloc(1, sizeof(*qs));
	if (!qs) {
		vd_ctl_reply(c, -ENOMEM, "out of memory");
		return;
	}
	qs->c = c;
	qs->id = v->id;
	vd_sched_get_qos(e->sched, v->id, &qs->q);
	if (qos_from_json(c->req, &qs->q, &bad)) {
		vd_ctl_reply(c, -EINVAL, "request 'qos' has a wrong type for the field '%s'", bad);
		free(qs);
		return;
	}
	if (qos_check(c, &qs->q)) {
		free(qs);
		return;
	}
	kura_cat_txn_init(&t);
	if (!memcmp(&qs->q, &(struct vd_qos){ 0 }, sizeof(qs->q))) {
		kura_cat_txn_add(&t, 'q', v->id, NULL);
	} else {
		const char *txt;
		kura_jw_init(&w);
		qos_json(&w, NULL, &qs->q);
		if (!(txt = kura_jw_finish(&w, NULL)))
			t.err = -ENOMEM;
		else
			kura_cat_txn_add(&t, 'q', v->id, txt);
		kura_jw_free(&w);
	}
	if (kura_cat_commit(e->cat, &t, qos_committed, qs)) {
		vd_ctl_reply(c, -ENOMEM, "out of memory");
		free(qs);
	}
}

void vd_op_qos_show(struct vd_ctl *c, const char *name)
{
	struct vd_vdisk *v = vd_need_vdisk(c, name);
	struct vd_qos q;

	if (!v)
		return;
	vd_sched_get_qos(c->e->sched, v->id, &q);
	qos_json(c->out, "qos", &q);
	vd_ctl_reply(c, 0, NULL);
}

/* ---- statistics ---- */

static void lat_json(struct kura_jw *w, const char *key, const struct kura_hist *h)
{
	kura_jw_obj(w, key);
	kura_jw_u64(w, "p50", kura_hist_pct(h, 0.50) / 1000);
	kura_jw_u64(w, "p99", kura_hist_pct(h, 0.99) / 1000);
	kura_jw_u64(w, "p999", kura_hist_pct(h, 0.999) / 1000);
	kura_jw_u64(w, "max", h->max_ns / 1000);
	kura_jw_u64(w, "mean", h->n ? h->sum_ns / h->n / 1000 : 0);
	kura_jw_end(w);
}

static void class_json(struct kura_jw *w, enum kura_io_class cls, const struct vd_cstats *st)
{
	struct kura_hist h;

	kura_jw_obj(w, kura_io_class_name(cls));
	kura_jw_u64(w, "ops", st->ops);
	kura_jw_u64(w, "bytes", st->bytes);
	kura_jw_u64(w, "iops", st->ops_1s);
	kura_jw_u64(w, "bw", st->bytes_1s);
	kura_hist_copy(&h, &st->lat_1s);
	lat_json(w, "lat_us", &h);
	kura_hist_copy(&h, &st->lat);
	lat_json(w, "lat_total_us", &h);
	kura_jw_end(w);
}

static void vdisk_stats_json(struct kura_vd_engine *e, struct kura_jw *w, struct vd_vdisk *v)
{
	struct vd_qos q;

	kura_jw_obj(w, NULL);
	kura_jw_str(w, "name", v->name);
	vd_sched_get_qos(e->sched, v->id, &q);
	qos_json(w, "qos", &q);
	kura_jw_obj(w, "classes");
	for (unsigned i = 0; i < KURA_IO_NCLASS; i++) {
		const struct vd_cstats *st = vd_sched_stats(e->sched, v->id, i);
		if (st)
			class_json(w, i, st);
	}
	kura_jw_end(w);
	kura_jw_end(w);
}

void vd_op_stats(struct vd_ctl *c, const char *name)
{
	struct kura_vd_engine *e = c->e;
	struct vd_sched_state s;
	struct kura_blk_disk_info di;
	struct vd_vdisk *one = NULL;

	if (name && !(one = vd_need_vdisk(c, name)))
		return;
	vd_sched_state(e->sched, &s);
	kura_jw_obj(c->out, "scheduler");
	kura_jw_str(c->out, "mode", vd_sched_mode(e->sched) == VD_SCHED_FIFO ? "fifo" : "qos");
	kura_jw_u64(c->out, "background_window", s.window);
	kura_jw_u64(c->out, "background_rate", s.rate);
	kura_jw_u64(c->out, "guest_baseline_us", s.baseline_ns / 1000);
	kura_jw_u64(c->out, "guest_latency_us", s.guest_lat_ns / 1000);
	kura_jw_u64(c->out, "guest_baseline_p99_us", s.baseline_p99_ns / 1000);
	kura_jw_u64(c->out, "guest_p99_us", s.guest_p99_ns / 1000);
	kura_jw_bool(c->out, "probing", s.probing);
	kura_jw_u64(c->out, "throttled", s.throttled);
	kura_jw_u64(c->out, "guest_inflight", s.guest_inflight);
	kura_jw_u64(c->out, "guest_queued", s.guest_queued);
	kura_jw_u64(c->out, "background_inflight", s.bg_inflight);
	kura_jw_u64(c->out, "background_queued", s.bg_queued);
	kura_jw_end(c->out);
	kura_jw_arr(c->out, "disks");
	for (unsigned i = 0; !e->bops->disk_info(e->b, i, &di); i++) {
		kura_jw_obj(c->out, NULL);
		kura_jw_str(c->out, "path", di.path);
		kura_jw_u64(c->out, "slow_ios", di.slow_ios);
		kura_jw_u64(c->out, "slow_worst_ms", di.slow_worst_ns / 1000000);
		kura_jw_bool(c->out, "failed", di.failed);
		kura_jw_end(c->out);
	}
	kura_jw_end(c->out);
	kura_jw_arr(c->out, "vdisks");
	for (struct vd_vdisk *v = e->vdisks; v; v = v->next)
		if (!v->deleting && (!one || v == one))
			vdisk_stats_json(e, c->out, v);
	kura_jw_end(c->out);
	vd_ctl_reply(c, 0, NULL);
}
