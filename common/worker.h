/* A worker thread for calls that block (RocksDB syncs, fsync of a directory).
 *
 * Thread rule: kura_worker_submit() is called on the owning loop's thread;
 * work->run(work) runs on the worker thread and must touch only what the work
 * item owns; then work->done.fn(&work->done, work->result) runs back on the
 * loop thread. Items run one at a time, in submission order.
 */
#ifndef KURA_COMMON_WORKER_H
#define KURA_COMMON_WORKER_H

#include "common/loop.h"

struct kura_work {
	void (*run)(struct kura_work *w);
	struct kura_op done;
	int result;
	struct kura_work *next;
};

struct kura_worker;

int kura_worker_create(struct kura_worker **out, struct kura_loop *loop, const char *name);
/* Finishes queued items, then joins the thread. */
void kura_worker_destroy(struct kura_worker *w);
void kura_worker_submit(struct kura_worker *w, struct kura_work *work);

#endif
