#include "common/loop.h"
#include "common/log.h"

#include <errno.h>
#include <stddef.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct kura_loop {
	struct io_uring ring;
	unsigned inflight;
	int stop;
	struct kura_op *deferred_head, *deferred_tail;

	/* Cross-thread queue: guarded by post_lock; the eventfd read wakes the loop. */
	pthread_mutex_t post_lock;
	struct kura_op *posted_head, *posted_tail;
	int efd;
	uint64_t efd_buf;
	struct kura_op efd_op;
	int efd_armed;
};

static void arm_eventfd(struct kura_loop *l);

static void drain_posted(struct kura_loop *l)
{
	struct kura_op *list;

	pthread_mutex_lock(&l->post_lock);
	list = l->posted_head;
	l->posted_head = l->posted_tail = NULL;
	pthread_mutex_unlock(&l->post_lock);
	while (list) {
		struct kura_op *op = list;
		list = op->next;
		op->fn(op, op->res);
	}
}

static void efd_done(struct kura_op *op, int res)
{
	struct kura_loop *l = (struct kura_loop *)((char *)op - offsetof(struct kura_loop, efd_op));

	(void)res;
	l->efd_armed = 0;
	drain_posted(l);
	arm_eventfd(l);
}

static void arm_eventfd(struct kura_loop *l)
{
	struct io_uring_sqe *sqe;

	/* Stays armed after kura_loop_stop(): shutdown still turns the loop
	 * and waits for workers' answers. */
	if (l->efd_armed)
		return;
	l->efd_op.fn = efd_done;
	sqe = kura_loop_sqe(l, &l->efd_op);
	io_uring_prep_read(sqe, l->efd, &l->efd_buf, sizeof(l->efd_buf), 0);
	l->efd_armed = 1;
}

int kura_loop_create(struct kura_loop **out, unsigned depth)
{
	struct kura_loop *l = calloc(1, sizeof(*l));
	int err;

	if (!l)
		return -ENOMEM;
	{
		/* Completions run only when this thread asks for them: no interrupts
		 * of the loop for task work (kernel 6.1+; older kernels get plain). */
		struct io_uring_params p = { .flags = IORING_SETUP_COOP_TASKRUN |
						      IORING_SETUP_SINGLE_ISSUER |
						      IORING_SETUP_DEFER_TASKRUN };
		err = io_uring_queue_init_params(depth, &l->ring, &p);
		if (err == -EINVAL)
			err = io_uring_queue_init(depth, &l->ring, 0);
	}
	if (err < 0)
		goto free_loop;
	l->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->efd < 0) {
		err = -errno;
		goto exit_ring;
	}
	pthread_mutex_init(&l->post_lock, NULL);
	arm_eventfd(l);
	*out = l;
	return 0;

exit_ring:
	io_uring_queue_exit(&l->ring);
free_loop:
	free(l);
	return err;
}

void kura_loop_destroy(struct kura_loop *l)
{
	if (!l)
		return;
	io_uring_queue_exit(&l->ring);
	close(l->efd);
	pthread_mutex_destroy(&l->post_lock);
	free(l);
}

struct io_uring_sqe *kura_loop_sqe(struct kura_loop *l, struct kura_op *op)
{
	struct io_uring_sqe *sqe;

	while (!(sqe = io_uring_get_sqe(&l->ring))) {
		int err = io_uring_submit(&l->ring);
		if (err < 0 && err != -EAGAIN && err != -EINTR)
			kura_log(ERR, "io_uring_submit: %s", strerror(-err));
	}
	io_uring_sqe_set_data(sqe, op);
	l->inflight++;
	return sqe;
}

void kura_loop_defer(struct kura_loop *l, struct kura_op *op, int res)
{
	op->res = res;
	op->next = NULL;
	if (l->deferred_tail)
		l->deferred_tail->next = op;
	else
		l->deferred_head = op;
	l->deferred_tail = op;
}

void kura_loop_post(struct kura_loop *l, struct kura_op *op, int res)
{
	uint64_t one = 1;
	ssize_t n;

	op->res = res;
	op->next = NULL;
	pthread_mutex_lock(&l->post_lock);
	if (l->posted_tail)
		l->posted_tail->next = op;
	else
		l->posted_head = op;
	l->posted_tail = op;
	pthread_mutex_unlock(&l->post_lock);
	n = write(l->efd, &one, sizeof(one));
	(void)n; /* a full counter still wakes the loop */
}

static int run_deferred(struct kura_loop *l)
{
	struct kura_op *list = l->deferred_head;
	int n = 0;

	l->deferred_head = l->deferred_tail = NULL;
	while (list) {
		struct kura_op *op = list;
		list = op->next;
		op->fn(op, op->res);
		n++;
	}
	return n;
}

int kura_loop_run_once(struct kura_loop *l, uint64_t timeout_ns)
{
	struct io_uring_cqe *cqe;
	int n = 0;

	n += run_deferred(l);
	if (l->deferred_head)
		timeout_ns = 0;
	if (timeout_ns && !n) {
		struct __kernel_timespec ts = {
			.tv_sec = (long long)(timeout_ns / 1000000000ULL),
			.tv_nsec = (long long)(timeout_ns % 1000000000ULL),
		};
		int err = io_uring_submit_and_wait_timeout(&l->ring, &cqe, 1, &ts, NULL);
		if (err < 0 && err != -ETIME && err != -EINTR && err != -EAGAIN)
			kura_log(ERR, "io_uring wait: %s", strerror(-err));
	} else {
		io_uring_submit_and_get_events(&l->ring);
	}
	/* Each completion is consumed before its handler runs, so a handler
	 * that turns the loop itself (a close that waits for a cancel) never
	 * sees the same completion again. */
	while (io_uring_peek_cqe(&l->ring, &cqe) == 0) {
		struct kura_op *op = io_uring_cqe_get_data(cqe);
		int res = cqe->res;

		io_uring_cqe_seen(&l->ring, cqe);
		l->inflight--;
		if (op)
			op->fn(op, res);
		n++;
	}
	n += run_deferred(l);
	return n;
}

void kura_loop_run(struct kura_loop *l)
{
	l->stop = 0;
	arm_eventfd(l);
	while (!l->stop)
		kura_loop_run_once(l, 1000000000ULL);
}

void kura_loop_stop(struct kura_loop *l)
{
	l->stop = 1;
}

struct cancel_wait {
	struct kura_op op;
	int done;
};

static void cancel_done(struct kura_op *op, int res)
{
	(void)res;
	((struct cancel_wait *)(void *)op)->done = 1;
}

void kura_loop_cancel_sync(struct kura_loop *l, struct kura_op *target)
{
	struct cancel_wait w = { .op.fn = cancel_done };
	struct io_uring_sqe *sqe = kura_loop_sqe(l, &w.op);

	io_uring_prep_cancel(sqe, target, 0);
	while (!w.done)
		kura_loop_run_once(l, 100000000ULL);
}

unsigned kura_loop_inflight(const struct kura_loop *l)
{
	return l->inflight;
}

void kura_loop_timer(struct kura_loop *l, struct kura_timer *t, uint64_t ns)
{
	struct io_uring_sqe *sqe;

	t->ts.tv_sec = (long long)(ns / 1000000000ULL);
	t->ts.tv_nsec = (long long)(ns % 1000000000ULL);
	sqe = kura_loop_sqe(l, &t->op);
	io_uring_prep_timeout(sqe, &t->ts, 0, 0);
}
