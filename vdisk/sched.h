/* The I/O scheduler: decides when each vdisk I/O reaches the store.
 *
 * Every I/O above the store (guest I/O from a frontend, a job's extent step:
 * clone, flatten, merge, import, export) is a request carrying its vdisk,
 * its class and its size. The scheduler admits it at once or queues it:
 *
 * - Guest class: per-vdisk dmClock-style tags. A vdisk's reservation (IOPS
 *   and/or bytes/s) is served first, in reservation-tag order; what remains
 *   of the queue is shared by weight (tag += cost / weight) among vdisks whose
 *   limit tag has come due. A vdisk over its limit waits even when the disk
 *   is idle. At most `guest_depth` guest requests are in the store at once;
 *   the rest wait here in tag order.
 * - Background classes (clone, rebuild, scrub, merge): one FIFO per class,
 *   chosen by class weight (weighted fair queueing on bytes); together they
 *   may have at most `window` bytes in the store (always at least one
 *   request, so background work never stops).
 * - The controller: every 100 ms it compares guest latency (submission to
 *   completion, small I/O) against the idle baseline (guest latency measured
 *   while no background request was in the store; when background work runs
 *   for long, it pauses it for a short probe to measure the baseline again).
 *   Guest latency above baseline * 1.5 + 100 µs halves the window, and once
 *   the window is down to one request, cuts the background byte rate
 *   (paced by a token bucket, never below 4 MiB/s); otherwise the rate
 *   grows by 1/8 (pacing stops once it no longer holds anything back) and
 *   then the window by 1 MiB a step; when guests are quiet (none arrived
 *   for 200 ms, none queued or in the store, observed ones included), the
 *   window is the maximum and pacing off at once. A cut of the rate keeps
 *   what background owes (bytes charged after the fact). Guest I/O arriving after a quiet
 *   spell drops the window to its minimum before the next request is
 *   admitted.
 *
 * With mode FIFO every request is admitted at once in arrival order: no
 * limits, no window (the comparison baseline; `blockd --scheduler fifo`).
 * Statistics are kept in both modes.
 *
 * Statistics: per vdisk and class, requests, bytes and a latency histogram
 * (submission to completion, so time queued here counts) plus the figures
 * of the last whole second (common/hist.h: lock-free, single writer).
 *
 * Thread rule: a scheduler belongs to the engine's loop thread. It keeps no
 * clock and no timers of its own: callers pass `now` (ns, monotonic) and call
 * vd_sched_tick() when asked to (vdisk/qos.c does that on the loop), so the
 * unit tests drive it with a fake clock. A request's dispatch callback may run
 * inside vd_sched_submit, vd_sched_done, vd_sched_tick or vd_sched_set_qos.
 */
#ifndef KURA_VDISK_SCHED_H
#define KURA_VDISK_SCHED_H

#include <stdbool.h>
#include <stdint.h>

#include "blockd/store.h"
#include "common/hist.h"

enum vd_sched_mode { VD_SCHED_QOS = 0, VD_SCHED_FIFO };

/* Per-vdisk settings; 0 means none (no limit, no reservation, weight 100). */
struct vd_qos {
	uint64_t iops_limit, bw_limit;     /* bytes/s */
	uint64_t iops_reserve, bw_reserve; /* bytes/s */
	uint32_t weight;                   /* 1..10000 */
};

struct vd_sreq;
typedef void (*vd_sreq_fn)(struct vd_sreq *r);

struct vd_sreq {
	/* set by the caller */
	uint64_t vdisk;
	enum kura_io_class cls;
	uint64_t bytes;
	vd_sreq_fn dispatch;
	/* the scheduler's */
	uint64_t t_submit;
	uint64_t r_tag, p_tag, l_tag;
	struct vd_client *c;
	struct vd_sreq *next;
	bool admitted;
};

struct vd_sched_opts {
	enum vd_sched_mode mode;
	unsigned guest_depth;    /* 0: 64 */
	uint64_t window_min;     /* bytes; 0: 1 MiB */
	uint64_t window_max;     /* bytes; 0: 64 MiB */
	uint32_t class_weight[KURA_IO_NCLASS]; /* 0: defaults (rebuild 8, merge 4, clone 2, scrub 1) */
};

/* Per vdisk and class statistics (one writer; readers use kura_hist_copy). */
struct vd_cstats {
	uint64_t ops, bytes;
	struct kura_hist lat;
	/* the last whole second */
	uint64_t ops_1s, bytes_1s;
	struct kura_hist lat_1s;
	/* internal: totals at the start of this second */
	uint64_t ops_mark, bytes_mark;
	struct kura_hist lat_mark;
};

struct vd_sched;

struct vd_sched *vd_sched_new(const struct vd_sched_opts *o);
/* Requests still queued are dropped (the engine drains I/O before this). */
void vd_sched_free(struct vd_sched *s);
enum vd_sched_mode vd_sched_mode(const struct vd_sched *s);

/* Admits r now (r->dispatch runs before this returns) or queues it. */
void vd_sched_submit(struct vd_sched *s, struct vd_sreq *r, uint64_t now);
/* r finished in the store: accounts for it and admits what may follow. */
void vd_sched_done(struct vd_sched *s, struct vd_sreq *r, uint64_t now);
/* Runs the controller (when 100 ms have passed), rolls the per-second
 * statistics, and admits requests whose limit has come due. Returns when to
 * call again at the latest, in ns from now. */
uint64_t vd_sched_tick(struct vd_sched *s, uint64_t now);
/* Whether requests wait for a limit tag: the caller should tick within
 * vd_sched_pace_ns() (and not only every 100 ms). */
bool vd_sched_pacing(const struct vd_sched *s);
#define VD_SCHED_PACE_NS 250000ull
#define VD_SCHED_CONTROL_NS 100000000ull

/* Guest I/O that does not pass this scheduler but shares its disks (in a
 * cluster: replica copies and reads this node serves), as counted by the
 * store since the last call: `started` requests arrived, `done` completed,
 * taking `lat_sum_ns` in all. The controller treats them as its own guest
 * I/O (a mean per window, no histogram). */
void vd_sched_observe(struct vd_sched *s, uint64_t started, uint64_t done, uint64_t lat_sum_ns,
		      uint64_t now);
/* Background bytes moved beyond what the requests declared (a request
 * whose size is known only once done): they count against the pacing
 * rate and in the controller's figures. */
void vd_sched_charge(struct vd_sched *s, uint64_t bytes);
/* Takes r, a background request still queued, off its queue: it will not
 * be dispatched. False when r was not queued here (admitted already). */
bool vd_sched_cancel(struct vd_sched *s, struct vd_sreq *r);
/* Admits every queued request now, whatever the window (the owner is
 * stopping and its requests must end). */
void vd_sched_drain(struct vd_sched *s);

/* Whether guest I/O ran within the last 200 ms (and not FIFO): background
 * work then moves in small pieces. */
bool vd_sched_guests_active(const struct vd_sched *s, uint64_t now);

/* Settings of a vdisk; they apply to queued and future requests at once. */
int vd_sched_set_qos(struct vd_sched *s, uint64_t vdisk, const struct vd_qos *q, uint64_t now);
void vd_sched_get_qos(struct vd_sched *s, uint64_t vdisk, struct vd_qos *q);
/* The vdisk is gone: drops its settings and statistics once it has no
 * request queued or in flight. */
void vd_sched_forget(struct vd_sched *s, uint64_t vdisk);

/* Statistics of a vdisk's class, or NULL when it never had a request. */
const struct vd_cstats *vd_sched_stats(struct vd_sched *s, uint64_t vdisk, enum kura_io_class c);

/* The controller's state, for `vdisk stats` and tests. */
struct vd_sched_state {
	uint64_t window, baseline_ns, guest_lat_ns; /* last window's guest mean */
	uint64_t baseline_p99_ns, guest_p99_ns;     /* ...and p99 */
	uint64_t rate;       /* background bytes/s when paced, else 0 */
	unsigned guest_inflight, guest_queued, bg_inflight, bg_queued;
	uint64_t bg_inflight_bytes;
	bool probing;
	uint64_t throttled;  /* windows in which the controller shrank the window */
};
void vd_sched_state(const struct vd_sched *s, struct vd_sched_state *out);

#endif
