/* The I/O scheduler against a simulated disk and a fake clock: limits,
 * reservations, weights, class weights and the adaptive background window. */
#include "tests/unit/harness.h"

#include "common/hist.h"
#include "vdisk/sched.h"

#include <stdlib.h>

#define US 1000ull
#define MS 1000000ull
#define SEC 1000000000ull

/* A disk that serves one byte stream at `bw` bytes/s in admission order,
 * plus a fixed latency: what queues in it delays what comes after. */
struct sim {
	struct vd_sched *s;
	uint64_t now, busy_until, fixed, bw;
	struct req *inflight;       /* unsorted; few */
	struct req *all;            /* every request made, freed at the end */
	uint64_t admitted[8];       /* by tag (vdisk or class) */
	uint64_t admitted_bytes[8];
	uint64_t guest_lat_sum, guest_n, guest_max;
};

struct req {
	struct vd_sreq sr;
	struct sim *sim;
	uint64_t done_at;
	unsigned tag;      /* which counter */
	int stream;        /* closed loop: resubmit on completion while >= 0 */
	struct req *next, *all_next;
};

static void on_dispatch(struct vd_sreq *r)
{
	struct req *q = (struct req *)r;
	struct sim *m = q->sim;
	uint64_t start = m->busy_until > m->now ? m->busy_until : m->now;

	m->busy_until = start + (m->bw ? r->bytes * SEC / m->bw : 0);
	q->done_at = m->busy_until + m->fixed;
	q->next = m->inflight;
	m->inflight = q;
	m->admitted[q->tag]++;
	m->admitted_bytes[q->tag] += r->bytes;
}

static struct req *new_req(struct sim *m, uint64_t vdisk, enum kura_io_class cls, uint64_t bytes,
			   unsigned tag)
{
	struct req *q = calloc(1, sizeof(*q));

	CHECK(q);
	q->sim = m;
	q->sr.vdisk = vdisk;
	q->sr.cls = cls;
	q->sr.bytes = bytes;
	q->sr.dispatch = on_dispatch;
	q->tag = tag;
	q->stream = 1;
	q->all_next = m->all;
	m->all = q;
	return q;
}

static void submit(struct sim *m, struct req *q)
{
	vd_sched_submit(m->s, &q->sr, m->now);
}

/* Runs the simulation until `until`: completions in time order, a tick every
 * 250 µs. Completed closed-loop requests go again at once. */
static void run(struct sim *m, uint64_t until)
{
	uint64_t next_tick = m->now;

	while (m->now < until) {
		struct req **best = NULL;
		for (struct req **p = &m->inflight; *p; p = &(*p)->next)
			if (!best || (*p)->done_at < (*best)->done_at)
				best = p;
		if (best && (*best)->done_at <= next_tick) {
			struct req *q = *best;
			*best = q->next;
			if (q->done_at > m->now)
				m->now = q->done_at;
			if (q->sr.cls == KURA_IO_GUEST) {
				uint64_t lat = m->now - q->sr.t_submit;
				m->guest_lat_sum += lat;
				m->guest_n++;
				if (lat > m->guest_max)
					m->guest_max = lat;
			}
			vd_sched_done(m->s, &q->sr, m->now);
			if (q->stream >= 0)
				submit(m, q);
		} else {
			m->now = next_tick;
			vd_sched_tick(m->s, m->now);
			next_tick += 250 * US;
		}
	}
}

static void sim_init_w(struct sim *m, enum vd_sched_mode mode, unsigned depth, uint64_t wmax)
{
	struct vd_sched_opts o = { .mode = mode, .guest_depth = depth, .window_max = wmax };

	memset(m, 0, sizeof(*m));
	m->s = vd_sched_new(&o);
	CHECK(m->s);
	m->now = 1 * SEC;
	m->fixed = 50 * US;
}

static void sim_init(struct sim *m, enum vd_sched_mode mode, unsigned depth)
{
	sim_init_w(m, mode, depth, 0);
}

/* Stops the streams and lets what is in flight finish. */
static void sim_end(struct sim *m)
{
	for (struct req *q = m->inflight; q; q = q->next)
		q->stream = -1;
	while (m->inflight) {
		struct req *q = m->inflight;
		m->inflight = q->next;
		vd_sched_done(m->s, &q->sr, m->now);
	}
	vd_sched_free(m->s); /* drops what still waits in it */
	while (m->all) {
		struct req *q = m->all;
		m->all = q->all_next;
		free(q);
	}
}

static void streams(struct sim *m, uint64_t vdisk, enum kura_io_class cls, uint64_t bytes,
		    unsigned tag, unsigned qd)
{
	for (unsigned i = 0; i < qd; i++)
		submit(m, new_req(m, vdisk, cls, bytes, tag));
}

TEST(test_hist_buckets_and_percentiles)
{
	struct kura_hist h = { 0 };

	CHECK_EQ(kura_hist_bucket(0), 0);
	CHECK_EQ(kura_hist_bucket(1023), 0);
	CHECK_EQ(kura_hist_bucket(1024), 1);
	for (uint64_t ns = 1024; ns < 60 * SEC; ns = ns * 9 / 8 + 7) {
		unsigned b = kura_hist_bucket(ns);
		CHECK(ns <= kura_hist_upper(b));
		CHECK(b == 0 || ns > kura_hist_upper(b - 1));
		/* a bucket is at most 1/8 wide */
		CHECK(kura_hist_upper(b) - ns <= ns / 8 + 1);
	}
	for (int i = 1; i <= 1000; i++)
		kura_hist_add(&h, (uint64_t)i * US); /* 1 µs .. 1 ms */
	CHECK_EQ(h.n, 1000);
	CHECK_EQ(h.max_ns, 1000 * US);
	uint64_t p50 = kura_hist_pct(&h, 0.5), p99 = kura_hist_pct(&h, 0.99);
	CHECK(p50 >= 500 * US && p50 <= 500 * US * 9 / 8);
	CHECK(p99 >= 990 * US && p99 <= 1000 * US);
	CHECK_EQ(kura_hist_pct(&h, 1.0), 1000 * US);
	struct kura_hist a, d;
	kura_hist_copy(&a, &h);
	kura_hist_add(&h, 5 * MS);
	kura_hist_sub(&d, &h, &a);
	CHECK_EQ(d.n, 1);
	CHECK(kura_hist_pct(&d, 0.5) >= 5 * MS);
}

TEST(test_sched_iops_limit_holds_under_qd32)
{
	struct sim m;
	struct vd_qos q = { .iops_limit = 1000 };

	sim_init(&m, VD_SCHED_QOS, 64);
	m.bw = 0; /* an infinitely fast disk: only the limit holds it back */
	CHECK(!vd_sched_set_qos(m.s, 7, &q, m.now));
	streams(&m, 7, KURA_IO_GUEST, 4096, 0, 32);
	streams(&m, 8, KURA_IO_GUEST, 4096, 1, 4); /* an unlimited neighbour */
	run(&m, m.now + 10 * SEC);
	/* 10 s at 1000 IOPS, within 1% (the limit is a tag schedule) */
	CHECK(m.admitted[0] >= 9900 && m.admitted[0] <= 10100);
	CHECK(m.admitted[1] > 100000);
	/* a new limit applies at once */
	q.iops_limit = 200;
	uint64_t before = m.admitted[0];
	CHECK(!vd_sched_set_qos(m.s, 7, &q, m.now));
	run(&m, m.now + 5 * SEC);
	CHECK(m.admitted[0] - before >= 990 && m.admitted[0] - before <= 1040);
	sim_end(&m);
}

TEST(test_sched_bw_limit)
{
	struct sim m;
	struct vd_qos q = { .bw_limit = 10 << 20 }; /* 10 MiB/s */

	sim_init(&m, VD_SCHED_QOS, 64);
	CHECK(!vd_sched_set_qos(m.s, 3, &q, m.now));
	streams(&m, 3, KURA_IO_GUEST, 64 << 10, 0, 16);
	run(&m, m.now + 4 * SEC);
	/* 40 MiB in 4 s, within 2% */
	CHECK(m.admitted_bytes[0] >= (40ull << 20) * 98 / 100);
	CHECK(m.admitted_bytes[0] <= (40ull << 20) * 102 / 100);
	sim_end(&m);
}

TEST(test_sched_weights_share_a_saturated_disk)
{
	struct sim m;
	struct vd_qos a = { .weight = 300 }, b = { .weight = 100 };

	sim_init(&m, VD_SCHED_QOS, 2);
	m.bw = 40ull << 20; /* 10,000 4 KiB I/Os a second */
	CHECK(!vd_sched_set_qos(m.s, 1, &a, m.now));
	CHECK(!vd_sched_set_qos(m.s, 2, &b, m.now));
	streams(&m, 1, KURA_IO_GUEST, 4096, 0, 16);
	streams(&m, 2, KURA_IO_GUEST, 4096, 1, 16);
	run(&m, m.now + 5 * SEC);
	double ratio = (double)m.admitted[0] / (double)m.admitted[1];
	CHECK(ratio > 2.7 && ratio < 3.3);
	sim_end(&m);
}

TEST(test_sched_reservation_is_met_before_weights)
{
	struct sim m;
	struct vd_qos small = { .iops_reserve = 3000, .weight = 1 }, big = { .weight = 10000 };

	sim_init(&m, VD_SCHED_QOS, 2);
	m.bw = 40ull << 20; /* 10,000 IOPS in all */
	CHECK(!vd_sched_set_qos(m.s, 1, &small, m.now));
	CHECK(!vd_sched_set_qos(m.s, 2, &big, m.now));
	streams(&m, 1, KURA_IO_GUEST, 4096, 0, 16);
	streams(&m, 2, KURA_IO_GUEST, 4096, 1, 16);
	run(&m, m.now + 5 * SEC);
	/* weight alone would give vdisk 1 a ten-thousandth; it reserved 3000/s */
	CHECK(m.admitted[0] >= 5 * 3000 * 97 / 100);
	CHECK(m.admitted[1] >= 5 * 6000);
	sim_end(&m);
}

TEST(test_sched_background_classes_by_weight)
{
	struct sim m;

	/* a window of 4 requests, so that the classes queue for it */
	sim_init_w(&m, VD_SCHED_QOS, 64, 4 << 20);
	m.bw = 100ull << 20;
	streams(&m, 5, KURA_IO_REBUILD, 1 << 20, 0, 8);
	streams(&m, 6, KURA_IO_SCRUB, 1 << 20, 1, 8);
	run(&m, m.now + 5 * SEC);
	double ratio = (double)m.admitted_bytes[0] / (double)m.admitted_bytes[1];
	CHECK(ratio > 7.0 && ratio < 9.0); /* rebuild 8 : scrub 1 */
	sim_end(&m);
}

/* The scenario in small: a guest at QD8 alone, then with four clone streams,
 * on a disk where background bytes queue ahead of guest I/O. */
static void guest_with_clones(enum vd_sched_mode mode, uint64_t *idle_mean, uint64_t *busy_mean,
			      uint64_t *busy_max, uint64_t *clone_bytes)
{
	struct sim m;

	sim_init(&m, mode, 64);
	m.bw = 1000ull << 20; /* 1000 MiB/s */
	streams(&m, 1, KURA_IO_GUEST, 4096, 0, 8);
	run(&m, m.now + 2 * SEC);
	*idle_mean = m.guest_lat_sum / m.guest_n;
	streams(&m, 2, KURA_IO_CLONE, 1 << 20, 1, 8);
	streams(&m, 3, KURA_IO_CLONE, 1 << 20, 1, 8);
	streams(&m, 4, KURA_IO_CLONE, 1 << 20, 1, 8);
	streams(&m, 5, KURA_IO_CLONE, 1 << 20, 1, 8);
	run(&m, m.now + 1 * SEC); /* the controller settles */
	m.guest_lat_sum = m.guest_n = m.guest_max = 0;
	uint64_t b0 = m.admitted_bytes[1];
	run(&m, m.now + 10 * SEC);
	*busy_mean = m.guest_lat_sum / m.guest_n;
	*busy_max = m.guest_max;
	*clone_bytes = m.admitted_bytes[1] - b0;
	sim_end(&m);
}

TEST(test_sched_background_yields_to_guests)
{
	uint64_t idle, busy, max, bytes, f_idle, f_busy, f_max, f_bytes;

	guest_with_clones(VD_SCHED_QOS, &idle, &busy, &max, &bytes);
	guest_with_clones(VD_SCHED_FIFO, &f_idle, &f_busy, &f_max, &f_bytes);
	fprintf(stderr, "  qos: guest mean %llu -> %llu us (max %llu us), clones %llu MiB/s\n",
		(unsigned long long)(idle / US), (unsigned long long)(busy / US),
		(unsigned long long)(max / US), (unsigned long long)(bytes >> 20) / 10);
	fprintf(stderr, "  fifo: guest mean %llu -> %llu us (max %llu us), clones %llu MiB/s\n",
		(unsigned long long)(f_idle / US), (unsigned long long)(f_busy / US),
		(unsigned long long)(f_max / US), (unsigned long long)(f_bytes >> 20) / 10);
	/* FIFO: the guest waits behind 32 MiB of clone data each time */
	CHECK(f_busy > 10 * f_idle);
	/* QoS: guest latency stays near its idle figure... */
	CHECK(busy < idle * 13 / 10 + 100 * US);
	CHECK(max < 5 * MS);
	/* ...and the clones still move at a useful share of the disk (on this
	 * disk every clone request holds it for 1 ms) */
	CHECK(bytes / 10 > (300ull << 20));
}

TEST(test_sched_quiet_guests_give_background_everything)
{
	struct sim m;
	struct vd_sched_state st;

	sim_init(&m, VD_SCHED_QOS, 64);
	m.bw = 1000ull << 20;
	streams(&m, 1, KURA_IO_GUEST, 4096, 0, 8);
	streams(&m, 2, KURA_IO_CLONE, 1 << 20, 1, 32);
	run(&m, m.now + 3 * SEC);
	vd_sched_state(m.s, &st);
	CHECK(st.window < 8 << 20); /* squeezed while the guest runs */
	/* the guest stops */
	for (struct req *q = m.inflight; q; q = q->next)
		if (q->sr.cls == KURA_IO_GUEST)
			q->stream = -1;
	run(&m, m.now + 1 * SEC);
	vd_sched_state(m.s, &st);
	CHECK_EQ(st.window, 64 << 20);
	CHECK(st.bg_inflight > 8);
	sim_end(&m);
}

TEST(test_sched_fifo_admits_everything_at_once)
{
	struct sim m;
	struct vd_qos q = { .iops_limit = 10 };
	struct vd_sched_state st;

	sim_init(&m, VD_SCHED_FIFO, 4);
	CHECK(!vd_sched_set_qos(m.s, 1, &q, m.now));
	streams(&m, 1, KURA_IO_GUEST, 4096, 0, 32);
	streams(&m, 2, KURA_IO_CLONE, 1 << 20, 1, 32);
	vd_sched_state(m.s, &st);
	CHECK_EQ(st.guest_inflight, 32);
	CHECK_EQ(st.bg_inflight, 32);
	CHECK_EQ(st.guest_queued + st.bg_queued, 0);
	sim_end(&m);
}

TEST(test_sched_stats_per_vdisk_and_class)
{
	struct sim m;
	const struct vd_cstats *g, *c;

	sim_init(&m, VD_SCHED_QOS, 64);
	m.bw = 100ull << 20;
	streams(&m, 9, KURA_IO_GUEST, 8192, 0, 1);
	streams(&m, 9, KURA_IO_CLONE, 1 << 20, 1, 1);
	run(&m, m.now + 2500 * MS);
	g = vd_sched_stats(m.s, 9, KURA_IO_GUEST);
	c = vd_sched_stats(m.s, 9, KURA_IO_CLONE);
	CHECK(g && c);
	CHECK(!vd_sched_stats(m.s, 9, KURA_IO_SCRUB));
	CHECK(g->ops > 100 && g->bytes == g->ops * 8192);
	CHECK_EQ(g->lat.n, g->ops);
	CHECK(g->ops_1s > 0 && g->ops_1s < g->ops);
	CHECK(c->bytes == c->ops << 20);
	CHECK(kura_hist_pct(&g->lat, 0.99) >= 50 * US);
	vd_sched_forget(m.s, 9); /* requests in flight: kept until they finish */
	sim_end(&m);
}

/* Guest I/O the scheduler only hears about (vd_sched_observe, as the
 * cluster's rebuild pacing feeds it from the store's counts): background
 * requests that each hold the disk for a while, guest latency that grows
 * with the background in flight. */
struct obg {
	struct vd_sreq sr;
	uint64_t done_at;
	int inflight;
};

static uint64_t obg_now;
static unsigned obg_dispatched;

static void obg_dispatch(struct vd_sreq *r)
{
	struct obg *b = (struct obg *)r;

	b->inflight = 1;
	b->done_at = obg_now + 2 * MS;
	obg_dispatched++;
}

static uint64_t obg_fixed_lat; /* guests' latency whatever the background (0: none) */

/* Runs for `ns` in 1 ms steps: due requests complete and go again (when
 * `again`), then guests are observed (10 I/Os a step, 200 us each plus
 * 150 us per background request in flight, or obg_fixed_lat), unless
 * `quiet`. */
static void obg_run(struct vd_sched *s, struct obg *b, unsigned n, uint64_t ns, int quiet,
		    int again, uint64_t *inflight_sum, uint64_t *steps)
{
	uint64_t end = obg_now + ns;
	struct vd_sched_state st;

	while (obg_now < end) {
		obg_now += MS;
		for (unsigned i = 0; i < n; i++) {
			if (!b[i].inflight || b[i].done_at > obg_now)
				continue;
			b[i].inflight = 0;
			vd_sched_done(s, &b[i].sr, obg_now);
			if (again)
				vd_sched_submit(s, &b[i].sr, obg_now);
		}
		vd_sched_state(s, &st);
		if (!quiet)
			vd_sched_observe(s, 10, 10,
					 10 * (obg_fixed_lat ? obg_fixed_lat
							     : 200 * US + 150 * US * st.bg_inflight),
					 obg_now);
		vd_sched_tick(s, obg_now);
		if (inflight_sum) {
			*inflight_sum += st.bg_inflight;
			(*steps)++;
		}
	}
}

/* A QoS scheduler at 1 s on the fake clock and n rebuild requests of 64
 * KiB, not submitted yet. */
static struct vd_sched *obg_setup(struct obg *b, unsigned n)
{
	struct vd_sched_opts o = { .mode = VD_SCHED_QOS };
	struct vd_sched *s = vd_sched_new(&o);

	memset(b, 0, n * sizeof(*b));
	obg_now = 1 * SEC;
	obg_dispatched = 0;
	for (unsigned i = 0; i < n; i++) {
		b[i].sr.vdisk = 1;
		b[i].sr.cls = KURA_IO_REBUILD;
		b[i].sr.bytes = 64 * 1024;
		b[i].sr.dispatch = obg_dispatch;
	}
	if (s)
		vd_sched_tick(s, obg_now);
	return s;
}

TEST(test_sched_observed_guests_pace_background)
{
	struct obg b[24];
	struct vd_sched *s = obg_setup(b, 24);
	struct vd_sched_state st;
	uint64_t sum = 0, steps = 0;
	unsigned before;

	CHECK(s);
	obg_run(s, b, 0, 2 * SEC, 0, 0, NULL, NULL); /* the guests alone: the baseline */
	vd_sched_state(s, &st);
	CHECK(st.baseline_ns >= 200 * US && st.baseline_ns < 260 * US);
	for (unsigned i = 0; i < 16; i++)
		vd_sched_submit(s, &b[i].sr, obg_now);
	obg_run(s, b, 16, 2 * SEC, 0, 1, NULL, NULL); /* the controller settles */
	before = obg_dispatched;
	obg_run(s, b, 16, 2 * SEC, 0, 1, &sum, &steps);
	/* held to about one request in flight (guest latency allowed: 1.5x +
	 * 100 us), and still moving */
	CHECK(sum * 10 / steps <= 20);
	CHECK(obg_dispatched - before > 100);
	vd_sched_state(s, &st);
	CHECK(st.throttled > 0);
	/* paced by then; charged bytes count against the rate */
	CHECK(st.rate > 0);
	vd_sched_charge(s, 64ull << 20);
	before = obg_dispatched;
	obg_run(s, b, 16, 100 * MS, 0, 1, NULL, NULL);
	CHECK(obg_dispatched - before <= 2);
	/* guests quiet: everything goes */
	sum = steps = 0;
	obg_run(s, b, 16, 1 * SEC, 1, 1, &sum, &steps);
	vd_sched_state(s, &st);
	CHECK_EQ(st.window, 64ull << 20);
	CHECK(st.bg_inflight == 16);
	/* a stopping owner gets every queued request at once */
	for (unsigned i = 16; i < 24; i++)
		vd_sched_submit(s, &b[i].sr, obg_now); /* 64 MiB window: all admitted */
	obg_run(s, b, 24, 3 * SEC, 0, 1, NULL, NULL); /* guests back: the window shrinks */
	vd_sched_state(s, &st);
	CHECK(st.bg_queued > 0);
	before = obg_dispatched;
	vd_sched_drain(s);
	vd_sched_state(s, &st);
	CHECK_EQ(st.bg_queued, 0);
	CHECK(obg_dispatched > before);
	vd_sched_free(s);
}

/* Guests observed at `lat` each, 10 a 1 ms step, for `ns`; every request
 * that comes due completes and goes again. */
static void obg_slow_guests(struct vd_sched *s, struct obg *b, unsigned n, uint64_t ns,
			    uint64_t lat)
{
	obg_fixed_lat = lat;
	obg_run(s, b, n, ns, 0, 1, NULL, NULL);
	obg_fixed_lat = 0;
}

/* Bytes charged after the fact (a rebuild request that copied 256 MiB)
 * are owed until the rate has paid for them, however often the controller
 * cuts the rate meanwhile: a cut used to wipe the debt, and a request went
 * after every cut, every 100 ms, whatever the last had moved. */
TEST(test_sched_charged_bytes_stay_owed_while_the_rate_is_cut)
{
	struct obg b[4];
	struct vd_sched *s = obg_setup(b, 4);
	struct vd_sched_state st;
	unsigned before;

	CHECK(s);
	obg_run(s, b, 0, 1 * SEC, 0, 0, NULL, NULL); /* the baseline: 200 us */
	for (unsigned i = 0; i < 4; i++)
		vd_sched_submit(s, &b[i].sr, obg_now);
	obg_slow_guests(s, b, 4, 2 * SEC, 2 * MS); /* ten times the baseline */
	vd_sched_state(s, &st);
	CHECK(st.rate > 0 && st.window == 1ull << 20);
	/* one request stays in the store from here on (every window has
	 * background in it: the controller cuts the rate in each) */
	while (!b[0].inflight)
		obg_slow_guests(s, b, 4, 1 * MS, 2 * MS);
	b[0].done_at = UINT64_MAX;
	vd_sched_charge(s, 256ull << 20);
	before = obg_dispatched;
	obg_slow_guests(s, b, 4, 1 * SEC, 2 * MS);
	vd_sched_state(s, &st);
	CHECK(st.throttled >= 30);
	CHECK(obg_dispatched - before <= 1); /* (one may have been owed nothing) */
	vd_sched_free(s);
}

/* Observed guest I/O still in flight is not quiet, even with no new
 * arrival for a while (a guest stuck behind background work must not open
 * the window to it); quiet comes once none is in flight and none arrived
 * for longer than it takes the next arrival to shrink the window again
 * (200 ms), not after one 100 ms window without an arrival. */
TEST(test_sched_observed_guests_in_flight_are_not_quiet)
{
	struct obg b[1];
	struct vd_sched *s = obg_setup(b, 1);
	struct vd_sched_state st;

	CHECK(s);
	obg_run(s, b, 0, 1 * SEC, 0, 0, NULL, NULL);
	vd_sched_submit(s, &b[0].sr, obg_now);
	obg_run(s, b, 1, 500 * MS, 0, 1, NULL, NULL);
	vd_sched_observe(s, 8, 0, 0, obg_now); /* 8 arrive, and take long */
	for (unsigned k = 0; k < 10; k++) {
		obg_now += 100 * MS;
		vd_sched_tick(s, obg_now);
		vd_sched_state(s, &st);
		CHECK(st.window < 64ull << 20);
	}
	vd_sched_observe(s, 0, 8, 8 * 1000 * MS, obg_now); /* done at last */
	obg_now += 100 * MS;
	vd_sched_tick(s, obg_now);
	vd_sched_state(s, &st);
	CHECK_EQ(st.window, 64ull << 20); /* none in flight, none for a second */
	/* one arrives and is done at once: the window shrinks; 100 and 200 ms
	 * later (the second a window with no arrival) are too soon to call it
	 * quiet, 300 ms is not */
	vd_sched_observe(s, 1, 1, 200 * US, obg_now);
	vd_sched_state(s, &st);
	CHECK_EQ(st.window, 1ull << 20);
	for (unsigned k = 0; k < 2; k++) {
		obg_now += 100 * MS;
		vd_sched_tick(s, obg_now);
		vd_sched_state(s, &st);
		CHECK(st.window < 64ull << 20);
	}
	obg_now += 100 * MS;
	vd_sched_tick(s, obg_now);
	vd_sched_state(s, &st);
	CHECK_EQ(st.window, 64ull << 20);
	vd_sched_free(s);
}

/* A queued background request can be taken back (a rebuild source whose
 * slot did not come in time answers without it): it is never dispatched,
 * and an admitted one cannot be. */
TEST(test_sched_queued_background_can_be_cancelled)
{
	struct obg b[2];
	struct vd_sched *s = obg_setup(b, 2);
	struct vd_sched_state st;

	CHECK(s);
	obg_run(s, b, 0, 1 * SEC, 0, 0, NULL, NULL); /* guests run: window 1 MiB */
	b[0].sr.bytes = b[1].sr.bytes = 1ull << 20;
	vd_sched_submit(s, &b[0].sr, obg_now);
	vd_sched_submit(s, &b[1].sr, obg_now); /* waits: the window is full */
	CHECK_EQ(obg_dispatched, 1);
	CHECK(!vd_sched_cancel(s, &b[0].sr));
	CHECK(vd_sched_cancel(s, &b[1].sr));
	CHECK(!vd_sched_cancel(s, &b[1].sr));
	vd_sched_state(s, &st);
	CHECK_EQ(st.bg_queued, 0);
	obg_run(s, b, 2, 1 * SEC, 0, 0, NULL, NULL);
	CHECK_EQ(obg_dispatched, 1);
	CHECK(!b[1].inflight && !b[1].done_at);
	vd_sched_free(s);
}
