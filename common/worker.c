#include "common/worker.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

struct kura_worker {
	struct kura_loop *loop;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct kura_work *head, *tail;
	int stopping;
};

static void *worker_main(void *arg)
{
	struct kura_worker *w = arg;

	pthread_mutex_lock(&w->lock);
	for (;;) {
		struct kura_work *work;

		while (!w->head && !w->stopping)
			pthread_cond_wait(&w->cond, &w->lock);
		if (!w->head)
			break;
		work = w->head;
		w->head = work->next;
		if (!w->head)
			w->tail = NULL;
		pthread_mutex_unlock(&w->lock);
		work->run(work);
		kura_loop_post(w->loop, &work->done, work->result);
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

int kura_worker_create(struct kura_worker **out, struct kura_loop *loop, const char *name)
{
	struct kura_worker *w = calloc(1, sizeof(*w));
	int err;

	if (!w)
		return -ENOMEM;
	w->loop = loop;
	pthread_mutex_init(&w->lock, NULL);
	pthread_cond_init(&w->cond, NULL);
	err = pthread_create(&w->thread, NULL, worker_main, w);
	if (err) {
		free(w);
		return -err;
	}
	if (name) {
		char n[16];
		strncpy(n, name, sizeof(n) - 1);
		n[sizeof(n) - 1] = '\0';
		pthread_setname_np(w->thread, n);
	}
	*out = w;
	return 0;
}

void kura_worker_destroy(struct kura_worker *w)
{
	if (!w)
		return;
	pthread_mutex_lock(&w->lock);
	w->stopping = 1;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
	pthread_join(w->thread, NULL);
	pthread_mutex_destroy(&w->lock);
	pthread_cond_destroy(&w->cond);
	free(w);
}

void kura_worker_submit(struct kura_worker *w, struct kura_work *work)
{
	work->next = NULL;
	pthread_mutex_lock(&w->lock);
	if (w->tail)
		w->tail->next = work;
	else
		w->head = work;
	w->tail = work;
	pthread_cond_signal(&w->cond);
	pthread_mutex_unlock(&w->lock);
}
