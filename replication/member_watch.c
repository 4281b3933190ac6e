/* Watches (member_int.h, "watches"): one thread per key the agent follows
 * (the map, the leader key, the vdisk service key), each on its own etcd
 * connection. A thread lists its key (for the revision to watch from),
 * then watches it from the next revision; every change, and every start
 * and end of a watch, pokes the agent, which reads the keys at once. While
 * every watch is live the agent reads them only when poked, and every
 * KURA_MEMBER_POLL_MS besides; else every tick, as without watches.
 *
 * A change made while a watch is being set up is not missed: the watch
 * starts at the revision after the list, and etcd replays what came since.
 * A watch that cannot start (etcd down, history compacted) is tried again
 * after WATCH_RETRY_MS, listing afresh (twice as long after each failure
 * in a row, up to WATCH_RETRY_MAX_MS). A stream whose etcd member was cut
 * off answers nothing until TCP gives up on it (about half a minute): when
 * the agent's timed read finds the map at a revision its watch has not
 * reported, and the watch still has not a tick later (events trail reads
 * a little), it restarts that watch (member_watch_restart). */
#include "replication/member_int.h"

#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define WATCH_RETRY_MS 250
#define WATCH_RETRY_MAX_MS 2000

/* (the map's first: MEMBER_WATCH_MAP) */
static const char *const watch_keys[MEMBER_WATCHES] = { KEY_MAP, KEY_LEADER, KEY_SERVICE };

void member_poke(struct kura_member *m)
{
	pthread_mutex_lock(&m->mu);
	atomic_fetch_add(&m->poke_gen, 1);
	pthread_cond_signal(&m->cv);
	pthread_mutex_unlock(&m->mu);
}

static int on_event(void *arg, enum kura_etcd_event ev, const struct kura_etcd_kv *kv)
{
	struct mwatch *w = arg;

	if (w->tab) {
		/* the leader's registrations: into its table; the leader reads
		 * it at its next tick, as it would have listed them */
		if (!atomic_load(&w->m->leading))
			return -ECANCELED; /* no longer leads: the watch ends */
		if (regtab_event(w->tab, ev, kv))
			return -ENOMEM; /* set up again, listing afresh */
	}
	atomic_store(&w->seen_rev, kv->mod_rev);
	member_poke(w->m);
	return 0;
}

/* Sleeps ms, or less when the member stops. */
static void pause_ms(struct kura_member *m, unsigned ms)
{
	struct timespec ts = { 0, 50 * 1000000L };

	for (unsigned t = 0; t < ms && !atomic_load(&m->stop); t += 50)
		nanosleep(&ts, NULL);
}

static void *watch_main(void *arg)
{
	struct mwatch *w = arg;
	struct kura_member *m = w->m;
	unsigned fails = 0;

	while (!atomic_load(&m->stop)) {
		struct kura_etcd_kv *kvs;
		size_t n;
		int64_t rev = 0;
		int err;

		if (w->tab && !atomic_load(&m->leading)) {
			/* the registrations' watch runs only while the node leads */
			atomic_store(&w->halt, 0);
			pause_ms(m, 100);
			fails = 0;
			continue;
		}
		err = kura_etcd_list(w->e, w->key, &kvs, &n, &rev);
		if (!err) {
			uint64_t t0 = member_mono_ms();

			if (w->tab)
				err = regtab_list(w->tab, kvs, n, rev, NULL);
			kura_etcd_kvs_free(kvs, n);
			if (err)
				goto retry;
			atomic_store(&w->seen_rev, rev);
			atomic_fetch_add(w->live, 1);
			member_poke(m); /* a change before rev may have gone unseen */
			err = kura_etcd_watch(w->e, w->key, rev + 1, on_event, w, &w->halt);
			/* (while a watch is down the agent reads every tick) */
			atomic_fetch_sub(w->live, 1);
			if (w->tab)
				regtab_reset(w->tab);
			if (atomic_load(&m->stop))
				break;
			if (w->tab && !atomic_load(&m->leading))
				continue;
			if (atomic_exchange(&w->halt, 0)) {
				kura_log(INFO, "cluster: a change of %s came without its etcd watch; "
					 "watching it again", w->key);
				fails = 0;
				continue;
			}
			if (member_mono_ms() - t0 >= WATCH_RETRY_MAX_MS)
				fails = 0; /* it served a while: not a failure in a row */
		}
retry:
		if (err && err != -ECANCELED && !fails)
			kura_log(INFO, "cluster: watching %s in etcd failed (%s); reading it every "
				 "%d ms until the watch is back", w->key, strerror(-err),
				 KURA_MEMBER_TICK_MS);
		pause_ms(m, KURA_MIN(WATCH_RETRY_MS << KURA_MIN(fails, 3u), WATCH_RETRY_MAX_MS));
		fails += err && err != -ECANCELED;
	}
	return NULL;
}

/* The watches, the registrations' last. */
static struct mwatch *watch_at(struct kura_member *m, unsigned i)
{
	return i < MEMBER_WATCHES ? &m->watches[i] : &m->regw;
}

void member_watch_start(struct kura_member *m)
{
	for (unsigned i = 0; i <= MEMBER_WATCHES; i++) {
		struct mwatch *w = watch_at(m, i);
		char errbuf[256];

		w->m = m;
		w->key = i < MEMBER_WATCHES ? watch_keys[i] : KEY_NODES;
		w->live = i < MEMBER_WATCHES ? &m->watch_live : &m->regw_live;
		w->tab = i < MEMBER_WATCHES ? NULL : &m->regtab;
		if (kura_etcd_open(m->endpoints, KURA_MEMBER_ETCD_TIMEOUT_MS, &w->e, errbuf,
				   sizeof(errbuf))) {
			kura_log(WARN, "cluster: cannot watch %s (%s); reading it every %d ms",
				 w->key, errbuf, KURA_MEMBER_TICK_MS);
			continue;
		}
		if (pthread_create(&w->thread, NULL, watch_main, w)) {
			kura_log(WARN, "cluster: cannot start the thread watching %s; reading it "
				 "every %d ms", w->key, KURA_MEMBER_TICK_MS);
			kura_etcd_close(w->e);
			w->e = NULL;
			continue;
		}
		w->started = 1;
	}
}

void member_watch_restart(struct kura_member *m, unsigned i)
{
	atomic_store(&m->watches[i].halt, 1);
}

void member_watch_stop(struct kura_member *m)
{
	for (unsigned i = 0; i <= MEMBER_WATCHES; i++) {
		struct mwatch *w = watch_at(m, i);

		atomic_store(&w->halt, 1); /* (m->stop is set) */
		if (w->started)
			pthread_join(w->thread, NULL);
		w->started = 0;
		if (w->e)
			kura_etcd_close(w->e);
		w->e = NULL;
	}
}
