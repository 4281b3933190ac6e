/* The reactor: one io_uring event loop per thread.
 *
 * Thread rule: a loop is owned by the thread that runs it. Every function here
 * except kura_loop_post() must be called on that thread. kura_loop_post() may
 * be called from any thread (it is how workers hand results back).
 *
 * Completions: every submission carries a struct kura_op; when the kernel (or
 * a deferred/posted completion) finishes, op->fn(op, res) runs on the loop
 * thread with res = the CQE result (>= 0, or -errno). The op's memory must stay
 * valid until its fn has run; ops are normally embedded in a larger request
 * and recovered with KURA_CONTAINER_OF.
 *
 * Errors: functions return 0 or -errno.
 */
#ifndef KURA_COMMON_LOOP_H
#define KURA_COMMON_LOOP_H

#include <liburing.h>
#include <stdint.h>

struct kura_op;
typedef void (*kura_op_fn)(struct kura_op *op, int res);

struct kura_op {
	kura_op_fn fn;
	struct kura_op *next; /* used by the deferred and posted queues */
	int res;
};

struct kura_loop;

int kura_loop_create(struct kura_loop **out, unsigned depth);
void kura_loop_destroy(struct kura_loop *l);

/* An SQE whose completion runs op->fn. Submits queued SQEs to make room when
 * the submission queue is full; never returns NULL. */
struct io_uring_sqe *kura_loop_sqe(struct kura_loop *l, struct kura_op *op);

/* Runs op->fn(op, res) on a later turn of the loop (never from inside this call). */
void kura_loop_defer(struct kura_loop *l, struct kura_op *op, int res);

/* Any thread: queue op->fn(op, res) to run on the loop thread. */
void kura_loop_post(struct kura_loop *l, struct kura_op *op, int res);

/* One turn: submit, wait up to timeout_ns (0: do not wait) for at least one
 * completion, run every completion and deferred op. Returns the number of ops run. */
int kura_loop_run_once(struct kura_loop *l, uint64_t timeout_ns);

/* Turns until kura_loop_stop() is called from a callback. */
void kura_loop_run(struct kura_loop *l);
void kura_loop_stop(struct kura_loop *l);

/* Asks the kernel to cancel the submission carrying `target` (a timer, an
 * accept, a read) and turns the loop until that request has been answered.
 * The target's own completion (usually -ECANCELED) runs as usual; callers
 * wait for it themselves. Startup and shutdown only. */
void kura_loop_cancel_sync(struct kura_loop *l, struct kura_op *target);

/* Number of kernel submissions not yet completed. */
unsigned kura_loop_inflight(const struct kura_loop *l);

/* A one-shot timer: op->fn runs after ns nanoseconds with res -ETIME
 * (or -ECANCELED when the ring is torn down). */
struct kura_timer {
	struct kura_op op;
	struct __kernel_timespec ts;
};
void kura_loop_timer(struct kura_loop *l, struct kura_timer *t, uint64_t ns);

#endif
