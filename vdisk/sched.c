/* The I/O scheduler (vdisk/sched.h): dmClock-style tags for guest I/O,
 * weighted classes and an adaptive window for background I/O. */
#include "vdisk/sched.h"

#include "common/util.h"

#include <stdlib.h>
#include <string.h>

#define NS 1000000000ull
#define MIB (1024ull * 1024)
#define HASH_BUCKETS 256u
#define DEFAULT_WEIGHT 100u
#define SMALL_IO (64u * 1024)          /* guest I/O the controller watches */
#define MIN_SAMPLES 4u                  /* guest I/Os that make a window count */
#define QUIET_NS (200ull * 1000 * 1000) /* no guest I/O this long: quiet */
/* Observed guest I/O in flight with no arrival this long: not waited for
 * (a guest waits seconds only behind a device that stopped, when holding
 * background back gains it nothing) */
#define OBS_STUCK_NS (2ull * 1000 * 1000 * 1000)
#define PROBE_EVERY_NS (10ull * NS)     /* re-measure the baseline this often */
#define SLACK_NS 100000ull              /* 100 µs */
#define LAT_RATIO_PCT 150u              /* guest mean allowed: baseline * 1.5 + slack */
#define RATE_MIN (4ull * MIB)           /* background never goes slower (bytes/s) */

struct vd_client {
	uint64_t vdisk;
	struct vd_qos q;
	struct vd_sreq *head, *tail;    /* guest requests waiting */
	uint64_t r_prev, p_prev, l_prev; /* tags of the last tagged request */
	unsigned queued, inflight;      /* every class */
	bool forget;
	struct vd_client *hnext, *anext;
	struct vd_cstats *st[KURA_IO_NCLASS];
};

struct bgq {
	struct vd_sreq *head, *tail;
	unsigned n;
	uint64_t vt;      /* virtual finish time (bytes / weight) */
	uint32_t weight;
};

struct vd_sched {
	enum vd_sched_mode mode;
	unsigned guest_depth;
	uint64_t wmin, wmax;
	struct vd_client *hash[HASH_BUCKETS];
	struct vd_client *active;       /* clients with guest requests queued */
	struct bgq bg[KURA_IO_NCLASS];  /* index 0 (guest) unused */
	uint64_t vt_now;

	unsigned guest_inflight, guest_queued, bg_inflight, bg_queued;
	uint64_t bg_inflight_bytes;
	uint64_t obs_inflight;          /* observed guest I/O started, not done */
	bool pacing;

	/* controller */
	uint64_t window, baseline, last_mean;
	uint64_t rate;                  /* background bytes/s once the window is at its
					 * minimum; 0: unpaced */
	int64_t tokens;                 /* bytes background may still send now */
	uint64_t tok_t;
	uint64_t win_bg_bytes;          /* background bytes done this window */
	uint64_t win_start, win_n, win_sum, win_sub;
	struct kura_hist win_h;         /* this window's small guest I/O latencies */
	struct kura_hist base_h;        /* clean windows', older ones decayed */
	uint64_t base_p99, last_p99;
	bool win_bg;                    /* background was in the store this window */
	uint64_t last_guest, last_clean;
	bool probing;
	uint64_t throttled;
	uint64_t sec_start;
	bool started;
};

static const uint32_t default_class_weight[KURA_IO_NCLASS] = {
	[KURA_IO_GUEST] = 0, [KURA_IO_CLONE] = 2, [KURA_IO_REBUILD] = 8,
	[KURA_IO_SCRUB] = 1, [KURA_IO_MERGE] = 4,
};

struct vd_sched *vd_sched_new(const struct vd_sched_opts *o)
{
	struct vd_sched *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->mode = o->mode;
	s->guest_depth = o->guest_depth ? o->guest_depth : 64;
	s->wmin = o->window_min ? o->window_min : MIB;
	s->wmax = o->window_max ? o->window_max : 64 * MIB;
	if (s->wmax < s->wmin)
		s->wmax = s->wmin;
	s->window = s->wmax;
	for (unsigned c = 1; c < KURA_IO_NCLASS; c++)
		s->bg[c].weight = o->class_weight[c] ? o->class_weight[c] : default_class_weight[c];
	return s;
}

static void client_free(struct vd_client *c)
{
	for (unsigned i = 0; i < KURA_IO_NCLASS; i++)
		free(c->st[i]);
	free(c);
}

void vd_sched_free(struct vd_sched *s)
{
	if (!s)
		return;
	for (unsigned i = 0; i < HASH_BUCKETS; i++) {
		while (s->hash[i]) {
			struct vd_client *c = s->hash[i];
			s->hash[i] = c->hnext;
			client_free(c);
		}
	}
	free(s);
}

enum vd_sched_mode vd_sched_mode(const struct vd_sched *s)
{
	return s->mode;
}

static struct vd_client *client_find(struct vd_sched *s, uint64_t vdisk)
{
	struct vd_client *c = s->hash[kura_hash64(vdisk) % HASH_BUCKETS];

	while (c && c->vdisk != vdisk)
		c = c->hnext;
	return c;
}

static struct vd_client *client_get(struct vd_sched *s, uint64_t vdisk)
{
	struct vd_client *c = client_find(s, vdisk);
	unsigned b;

	if (c)
		return c;
	c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->vdisk = vdisk;
	b = (unsigned)(kura_hash64(vdisk) % HASH_BUCKETS);
	c->hnext = s->hash[b];
	s->hash[b] = c;
	return c;
}

static void client_drop(struct vd_sched *s, struct vd_client *c)
{
	struct vd_client **p = &s->hash[kura_hash64(c->vdisk) % HASH_BUCKETS];

	while (*p != c)
		p = &(*p)->hnext;
	*p = c->hnext;
	client_free(c);
}

/* ---- tags ---- */

static uint64_t span_ns(uint64_t bytes, uint64_t iops, uint64_t bw)
{
	uint64_t a = iops ? NS / iops : 0;
	uint64_t b = bw ? (uint64_t)((double)bytes * (double)NS / (double)bw) : 0;

	return a > b ? a : b;
}

static uint64_t weight_cost(const struct vd_client *c, uint64_t bytes)
{
	uint32_t w = c->q.weight ? c->q.weight : DEFAULT_WEIGHT;

	/* one 4 KiB I/O is one unit; a 64 KiB one costs two */
	return (NS / 1000) * (1 + bytes / SMALL_IO) * DEFAULT_WEIGHT / w;
}

static bool has_reserve(const struct vd_client *c)
{
	return c->q.iops_reserve || c->q.bw_reserve;
}

static bool has_limit(const struct vd_client *c)
{
	return c->q.iops_limit || c->q.bw_limit;
}

/* Tags the client's head request (when it becomes the head). */
static void tag_head(struct vd_client *c, uint64_t now)
{
	struct vd_sreq *r = c->head;
	uint64_t t;

	if (has_reserve(c)) {
		t = c->r_prev + span_ns(r->bytes, c->q.iops_reserve, c->q.bw_reserve);
		r->r_tag = t > r->t_submit ? t : r->t_submit;
		c->r_prev = r->r_tag;
	} else {
		r->r_tag = UINT64_MAX;
	}
	if (has_limit(c)) {
		t = c->l_prev + span_ns(r->bytes, c->q.iops_limit, c->q.bw_limit);
		r->l_tag = t > r->t_submit ? t : r->t_submit;
		c->l_prev = r->l_tag;
	} else {
		r->l_tag = 0;
	}
	t = c->p_prev + weight_cost(c, r->bytes);
	r->p_tag = t > now ? t : now;
	c->p_prev = r->p_tag;
}

/* ---- dispatch ---- */

static void admit(struct vd_sched *s, struct vd_sreq *r)
{
	r->admitted = true;
	if (r->cls == KURA_IO_GUEST) {
		s->guest_inflight++;
	} else {
		s->bg_inflight++;
		s->bg_inflight_bytes += r->bytes;
		s->win_bg = true;
	}
	r->dispatch(r);
}

static void active_del(struct vd_sched *s, struct vd_client *c)
{
	struct vd_client **p = &s->active;

	while (*p && *p != c)
		p = &(*p)->anext;
	if (*p)
		*p = c->anext;
}

static struct vd_sreq *guest_pick(struct vd_sched *s, uint64_t now)
{
	struct vd_client *best = NULL;
	bool by_reserve = false;

	s->pacing = false;
	for (struct vd_client *c = s->active; c; c = c->anext)
		if (c->head->r_tag <= now && (!best || c->head->r_tag < best->head->r_tag))
			best = c;
	if (best) {
		by_reserve = true;
	} else {
		for (struct vd_client *c = s->active; c; c = c->anext) {
			if (c->head->l_tag > now) {
				s->pacing = true;
				continue;
			}
			if (!best || c->head->p_tag < best->head->p_tag)
				best = c;
		}
	}
	if (!best)
		return NULL;
	struct vd_sreq *r = best->head;
	/* Reserved service is not charged against the vdisk's weight share. */
	if (by_reserve && best->p_prev >= weight_cost(best, r->bytes))
		best->p_prev -= weight_cost(best, r->bytes);
	best->head = r->next;
	if (!best->head) {
		best->tail = NULL;
		active_del(s, best);
	} else {
		tag_head(best, now);
	}
	best->queued--;
	s->guest_queued--;
	return r;
}

static struct bgq *bg_pick(struct vd_sched *s)
{
	struct bgq *best = NULL;

	for (unsigned c = 1; c < KURA_IO_NCLASS; c++)
		if (s->bg[c].head && (!best || s->bg[c].vt < best->vt))
			best = &s->bg[c];
	return best;
}

/* Takes q's head off its queue, counted in flight (admit() sends it). */
static struct vd_sreq *bg_pop(struct vd_sched *s, struct bgq *q)
{
	struct vd_sreq *r = q->head;

	q->head = r->next;
	if (!q->head)
		q->tail = NULL;
	q->n--;
	s->bg_queued--;
	r->c->queued--;
	r->c->inflight++;
	return r;
}

static void refill(struct vd_sched *s, uint64_t now)
{
	if (!s->rate) {
		s->tokens = 0;
	} else if (now > s->tok_t) {
		double add = (double)s->rate * (double)(now - s->tok_t) / (double)NS;
		s->tokens = s->tokens + (int64_t)add > (int64_t)s->wmin ? (int64_t)s->wmin
									 : s->tokens + (int64_t)add;
	}
	s->tok_t = now;
}

static bool bg_may(struct vd_sched *s, const struct vd_sreq *r)
{
	if (s->probing || s->guest_queued)
		return false;
	if (s->bg_inflight && s->bg_inflight_bytes + r->bytes > s->window)
		return false;
	if (s->rate && s->tokens < 0) {
		s->pacing = true; /* tokens come back with time */
		return false;
	}
	return true;
}

static void pump(struct vd_sched *s, uint64_t now)
{
	struct vd_sreq *r;
	struct bgq *q;

	while (s->guest_queued && s->guest_inflight < s->guest_depth &&
	       (r = guest_pick(s, now)) != NULL) {
		r->c->inflight++;
		admit(s, r);
	}
	if (!s->guest_queued)
		s->pacing = false;
	refill(s, now);
	while ((q = bg_pick(s)) != NULL && bg_may(s, q->head)) {
		r = bg_pop(s, q);
		s->vt_now = q->vt;
		q->vt += r->bytes * 1000 / q->weight + 1;
		if (s->rate)
			s->tokens -= (int64_t)r->bytes;
		admit(s, r);
	}
}

/* n guest requests arrived (through here or, observed, elsewhere). */
static void guests_arrived(struct vd_sched *s, uint64_t n, uint64_t now)
{
	if (!s->last_guest || now - s->last_guest > QUIET_NS) {
		s->window = s->wmin; /* guests are back: make room at once */
		s->rate = 0;
	}
	s->last_guest = now;
	s->win_sub += n;
}

void vd_sched_submit(struct vd_sched *s, struct vd_sreq *r, uint64_t now)
{
	struct vd_client *c = client_get(s, r->vdisk);

	r->t_submit = now;
	r->next = NULL;
	r->c = c;
	r->admitted = false;
	if ((unsigned)r->cls >= KURA_IO_NCLASS)
		r->cls = KURA_IO_GUEST;
	if (!c || s->mode == VD_SCHED_FIFO) {
		/* FIFO, or no memory for the vdisk's state: straight through */
		if (c)
			c->inflight++;
		admit(s, r);
		return;
	}
	c->queued++;
	if (r->cls == KURA_IO_GUEST) {
		guests_arrived(s, 1, now);
		if (c->tail) {
			c->tail->next = r;
		} else {
			c->head = r;
			tag_head(c, now);
			c->anext = s->active;
			s->active = c;
		}
		c->tail = r;
		s->guest_queued++;
	} else {
		struct bgq *q = &s->bg[r->cls];
		if (!q->head) {
			if (q->vt < s->vt_now)
				q->vt = s->vt_now;
			q->head = r;
		} else {
			q->tail->next = r;
		}
		q->tail = r;
		q->n++;
		s->bg_queued++;
	}
	pump(s, now);
}

void vd_sched_observe(struct vd_sched *s, uint64_t started, uint64_t done, uint64_t lat_sum_ns,
		      uint64_t now)
{
	if (s->mode != VD_SCHED_QOS)
		return;
	if (started)
		guests_arrived(s, started, now);
	s->obs_inflight += started;
	s->obs_inflight -= KURA_MIN(done, s->obs_inflight);
	s->win_n += done;
	s->win_sum += lat_sum_ns;
}

void vd_sched_charge(struct vd_sched *s, uint64_t bytes)
{
	s->win_bg_bytes += bytes;
	if (s->rate)
		s->tokens -= (int64_t)bytes;
}

void vd_sched_drain(struct vd_sched *s)
{
	struct bgq *q;

	s->mode = VD_SCHED_FIFO; /* nothing is held back from here on */
	while ((q = bg_pick(s)) != NULL)
		admit(s, bg_pop(s, q));
	while (s->guest_queued) {
		struct vd_sreq *r = guest_pick(s, UINT64_MAX);

		if (!r)
			break;
		r->c->inflight++;
		admit(s, r);
	}
}

bool vd_sched_cancel(struct vd_sched *s, struct vd_sreq *r)
{
	struct bgq *q;
	struct vd_sreq **pp, *prev = NULL;

	if (r->admitted || r->cls == KURA_IO_GUEST || r->cls >= KURA_IO_NCLASS)
		return false;
	q = &s->bg[r->cls];
	for (pp = &q->head; *pp && *pp != r; pp = &(*pp)->next)
		prev = *pp;
	if (!*pp)
		return false;
	*pp = r->next;
	if (q->tail == r)
		q->tail = prev;
	r->next = NULL;
	q->n--;
	s->bg_queued--;
	r->c->queued--;
	return true;
}

static struct vd_cstats *cstats(struct vd_client *c, enum kura_io_class cls)
{
	if (!c->st[cls])
		c->st[cls] = calloc(1, sizeof(*c->st[cls]));
	return c->st[cls];
}

void vd_sched_done(struct vd_sched *s, struct vd_sreq *r, uint64_t now)
{
	struct vd_client *c = r->c;
	uint64_t lat = now > r->t_submit ? now - r->t_submit : 0;
	struct vd_cstats *st;

	if (!r->admitted)
		return;
	r->admitted = false;
	if (r->cls == KURA_IO_GUEST) {
		s->guest_inflight--;
		if (r->bytes <= SMALL_IO) {
			s->win_n++;
			s->win_sum += lat;
			kura_hist_add(&s->win_h, lat);
		}
	} else {
		s->bg_inflight--;
		s->bg_inflight_bytes -= r->bytes;
		s->win_bg_bytes += r->bytes;
	}
	if (c) {
		c->inflight--;
		if ((st = cstats(c, r->cls)) != NULL) {
			kura_counter_add(&st->ops, 1);
			kura_counter_add(&st->bytes, r->bytes);
			kura_hist_add(&st->lat, lat);
		}
		if (c->forget && !c->inflight && !c->queued)
			client_drop(s, c);
	}
	if (s->mode == VD_SCHED_QOS)
		pump(s, now);
}

/* ---- controller ---- */

/* Background gets less: first fewer bytes in the store at once, then, at
 * one request, fewer bytes a second. */
static void squeeze(struct vd_sched *s, uint64_t now)
{
	uint64_t done_rate = s->win_bg_bytes * NS / (now - s->win_start + 1);

	s->throttled++;
	if (s->window > s->wmin) {
		s->window = s->window / 2 > s->wmin ? s->window / 2 : s->wmin;
		return;
	}
	if (!s->rate)
		s->rate = done_rate > 2 * RATE_MIN ? done_rate / 2 : RATE_MIN;
	else
		s->rate = s->rate * 7 / 10 > RATE_MIN ? s->rate * 7 / 10 : RATE_MIN;
	/* no saved-up tokens at the new rate, but a debt stays: bytes charged
	 * after the fact (vd_sched_charge) are paid for in time, however often
	 * the rate is cut meanwhile */
	if (s->tokens > 0)
		s->tokens = 0;
}

/* ...and more again, in the opposite order. */
static void relax(struct vd_sched *s, uint64_t now)
{
	uint64_t done_rate = s->win_bg_bytes * NS / (now - s->win_start + 1);

	if (s->rate) {
		s->rate += s->rate / 8 + RATE_MIN;
		/* pacing no longer holds anything back: stop it */
		if (s->rate > 4 * done_rate + s->wmin * 10)
			s->rate = 0;
	} else if (s->window < s->wmax) {
		s->window = s->window + MIB < s->wmax ? s->window + MIB : s->wmax;
	}
}

/* A clean window's latencies join the histogram of idle guest latency; what
 * it held before weighs 7/8 as much. Its p99 is shown beside the current
 * window's, for the operator: the controller steers by the mean, which a
 * 100 ms window measures far more steadily than its p99 (a p99-driven
 * controller was tried: it held clones to half the throughput, with no
 * better guest p99). */
static void base_learn(struct vd_sched *s)
{
	uint64_t n = 0;

	for (unsigned i = 0; i < KURA_HIST_BUCKETS; i++) {
		s->base_h.b[i] = s->base_h.b[i] * 7 / 8 + s->win_h.b[i];
		n += s->base_h.b[i];
	}
	s->base_h.n = n;
	s->base_h.max_ns = 0;
	s->base_p99 = kura_hist_pct(&s->base_h, 0.99);
}

static void control(struct vd_sched *s, uint64_t now)
{
	bool bg_busy = s->win_bg || s->bg_inflight;
	uint64_t mean = s->win_n ? s->win_sum / s->win_n : 0;
	uint64_t p99 = kura_hist_pct(&s->win_h, 0.99);

	if (!s->win_sub && !s->guest_inflight && !s->guest_queued &&
	    (!s->last_guest || now - s->last_guest > QUIET_NS) &&
	    (!s->obs_inflight || now - s->last_guest > OBS_STUCK_NS)) {
		/* guests quiet (none arrived for as long as the arrival of the
		 * next one takes to notice: it drops the window to its
		 * minimum; none observed in flight, unless for so long that
		 * the count must be wrong): background may have everything */
		s->window = s->wmax;
		s->rate = 0;
		s->probing = false;
	} else if (!s->win_n) {
		/* guest I/O waits and none completed in 100 ms: as bad as
		 * latency gets */
		if (bg_busy)
			squeeze(s, now);
	} else if (s->win_n < MIN_SAMPLES && s->win_sub >= MIN_SAMPLES) {
		/* completions lag behind a busy guest's submissions */
		if (bg_busy)
			squeeze(s, now);
	} else if (!bg_busy) {
		/* The lowest clean figure, allowed to rise slowly: a clean
		 * window right after heavy background work still pays for
		 * the store's deferred writes and must not teach the
		 * controller that slow is normal. */
		if (!s->baseline || mean < s->baseline)
			s->baseline = mean;
		else
			s->baseline = KURA_MIN(mean, s->baseline + s->baseline / 32 + 1);
		base_learn(s);
		s->last_clean = now;
		s->probing = false;
		/* background that starts while guests run starts small */
		s->window = s->wmin;
		s->rate = 0;
	} else if (!s->baseline || now - s->last_clean > PROBE_EVERY_NS) {
		/* no idle measurement for too long: hold background for a
		 * window (once what is in the store has drained) */
		s->probing = true;
	} else if (mean > s->baseline * LAT_RATIO_PCT / 100 + SLACK_NS) {
		squeeze(s, now);
	} else {
		relax(s, now);
	}
	if (s->win_n) {
		s->last_mean = mean;
		s->last_p99 = p99;
	}
	memset(&s->win_h, 0, sizeof(s->win_h));
	s->win_n = s->win_sum = s->win_bg_bytes = s->win_sub = 0;
	s->win_bg = s->bg_inflight > 0;
	s->win_start = now;
}

static void roll_second(struct vd_sched *s)
{
	for (unsigned b = 0; b < HASH_BUCKETS; b++) {
		for (struct vd_client *c = s->hash[b]; c; c = c->hnext) {
			for (unsigned i = 0; i < KURA_IO_NCLASS; i++) {
				struct vd_cstats *st = c->st[i];
				if (!st)
					continue;
				kura_counter_set(&st->ops_1s, st->ops - st->ops_mark);
				kura_counter_set(&st->bytes_1s, st->bytes - st->bytes_mark);
				kura_hist_sub(&st->lat_1s, &st->lat, &st->lat_mark);
				st->ops_mark = st->ops;
				st->bytes_mark = st->bytes;
				st->lat_mark = st->lat;
			}
		}
	}
}

uint64_t vd_sched_tick(struct vd_sched *s, uint64_t now)
{
	if (!s->started) {
		s->started = true;
		s->win_start = s->sec_start = now;
	}
	if (now - s->win_start >= VD_SCHED_CONTROL_NS && s->mode == VD_SCHED_QOS)
		control(s, now);
	if (now - s->sec_start >= NS) {
		roll_second(s);
		s->sec_start = now;
	}
	if (s->mode == VD_SCHED_QOS)
		pump(s, now);
	return s->pacing ? VD_SCHED_PACE_NS : VD_SCHED_CONTROL_NS;
}

bool vd_sched_guests_active(const struct vd_sched *s, uint64_t now)
{
	return s->mode == VD_SCHED_QOS && s->last_guest && now - s->last_guest < QUIET_NS;
}

bool vd_sched_pacing(const struct vd_sched *s)
{
	return s->pacing;
}

/* ---- settings and state ---- */

int vd_sched_set_qos(struct vd_sched *s, uint64_t vdisk, const struct vd_qos *q, uint64_t now)
{
	struct vd_client *c = client_get(s, vdisk);

	if (!c)
		return -1;
	c->q = *q;
	c->forget = false;
	/* Restart the tags from now so a new limit holds at once, and re-tag
	 * the waiting head under the new settings. */
	c->r_prev = c->l_prev = 0;
	c->p_prev = now;
	if (c->head)
		tag_head(c, now);
	if (s->mode == VD_SCHED_QOS)
		pump(s, now);
	return 0;
}

void vd_sched_get_qos(struct vd_sched *s, uint64_t vdisk, struct vd_qos *q)
{
	struct vd_client *c = client_find(s, vdisk);

	memset(q, 0, sizeof(*q));
	if (c)
		*q = c->q;
}

void vd_sched_forget(struct vd_sched *s, uint64_t vdisk)
{
	struct vd_client *c = client_find(s, vdisk);

	if (!c)
		return;
	memset(&c->q, 0, sizeof(c->q));
	if (!c->inflight && !c->queued)
		client_drop(s, c);
	else
		c->forget = true;
}

const struct vd_cstats *vd_sched_stats(struct vd_sched *s, uint64_t vdisk, enum kura_io_class c)
{
	struct vd_client *cl = client_find(s, vdisk);

	return cl && (unsigned)c < KURA_IO_NCLASS ? cl->st[c] : NULL;
}

void vd_sched_state(const struct vd_sched *s, struct vd_sched_state *out)
{
	out->window = s->window;
	out->rate = s->rate;
	out->baseline_ns = s->baseline;
	out->guest_lat_ns = s->last_mean;
	out->guest_p99_ns = s->last_p99;
	out->baseline_p99_ns = s->base_p99;
	out->guest_inflight = s->guest_inflight;
	out->guest_queued = s->guest_queued;
	out->bg_inflight = s->bg_inflight;
	out->bg_queued = s->bg_queued;
	out->bg_inflight_bytes = s->bg_inflight_bytes;
	out->probing = s->probing;
	out->throttled = s->throttled;
}
