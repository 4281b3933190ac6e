/* The leader's table of node registrations (regtab.h). */
#include "replication/member_int.h"

#include "common/log.h"
#include "common/util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void regtab_init(struct regtab *t)
{
	memset(t, 0, sizeof(*t));
	pthread_mutex_init(&t->mu, NULL);
}

void regtab_free(struct regtab *t)
{
	free(t->e);
	pthread_mutex_destroy(&t->mu);
	memset(t, 0, sizeof(*t));
}

void regtab_reset(struct regtab *t)
{
	pthread_mutex_lock(&t->mu);
	t->n = 0;
	t->valid = 0;
	t->floor = 0;
	pthread_mutex_unlock(&t->mu);
}

/* The name part of a registration's key, or NULL when the key is not
 * one (outside the prefix, empty or too long a name). */
static const char *key_name(const char *key)
{
	size_t pl = strlen(KEY_NODES);

	if (strncmp(key, KEY_NODES, pl) || !key[pl] || strlen(key + pl) >= KURA_MAP_NAME_MAX)
		return NULL;
	return key + pl;
}

/* Where name is or would go. */
static size_t find(const struct regtab *t, const char *name, int *found)
{
	size_t lo = 0, hi = t->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(t->e[mid].key, name);

		if (!c) {
			*found = 1;
			return mid;
		}
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	*found = 0;
	return lo;
}

/* The entry for name, made (gone, at the newest listing's revision) when
 * absent; NULL when out of memory. */
static struct regtab_ent *entry(struct regtab *t, const char *name)
{
	int found;
	size_t i = find(t, name, &found);

	if (found)
		return &t->e[i];
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		struct regtab_ent *e = realloc(t->e, cap * sizeof(*e));

		if (!e)
			return NULL;
		t->e = e;
		t->cap = cap;
	}
	memmove(&t->e[i + 1], &t->e[i], (t->n - i) * sizeof(*t->e));
	t->n++;
	memset(&t->e[i], 0, sizeof(t->e[i]));
	snprintf(t->e[i].key, sizeof(t->e[i].key), "%s", name);
	t->e[i].gone = 1;
	t->e[i].rev = t->floor;
	return &t->e[i];
}

/* Takes one change of a key at revision rev unless the entry has a newer
 * one: 1 when it took it, 0 when not, -ENOMEM. */
static int take(struct regtab *t, const struct kura_etcd_kv *kv, int del, int64_t rev)
{
	const char *name = key_name(kv->key);
	struct regtab_ent *e;

	if (!name)
		return 0;
	if (!(e = entry(t, name)))
		return -ENOMEM;
	if (e->rev >= rev)
		return 0;
	e->rev = rev;
	/* what is not a registration counts as gone */
	e->gone = del || member_parse_reg(kv->key, kv->val, kv->val_len, &e->reg) != 0;
	if (e->gone && !del)
		kura_log(WARN, "cluster: %s in etcd is not a node registration; ignored", kv->key);
	return 1;
}

int regtab_event(struct regtab *t, enum kura_etcd_event ev, const struct kura_etcd_kv *kv)
{
	int r;

	pthread_mutex_lock(&t->mu);
	r = take(t, kv, ev == KURA_ETCD_DELETE, kv->mod_rev);
	pthread_mutex_unlock(&t->mu);
	return r < 0 ? r : 0;
}

int regtab_list(struct regtab *t, const struct kura_etcd_kv *kvs, size_t n, int64_t rev,
		int64_t *missed)
{
	int64_t miss = 0;
	size_t k = 0;
	char *seen;
	int r;

	pthread_mutex_lock(&t->mu);
	for (size_t i = 0; i < n; i++) {
		if ((r = take(t, &kvs[i], 0, kvs[i].mod_rev)) < 0)
			goto fail;
		if (r && t->valid)
			miss = KURA_MAX(miss, kvs[i].mod_rev);
	}
	/* entries the listing does not show: deleted by rev when their last
	 * change is not newer than the listing (a later one came from the
	 * watch, after the listing was read) */
	if (!(seen = calloc(t->n ? t->n : 1, 1))) {
		r = -ENOMEM;
		goto fail;
	}
	for (size_t i = 0; i < n; i++) {
		const char *name = key_name(kvs[i].key);
		int found;
		size_t at = name ? find(t, name, &found) : 0;

		if (name && found)
			seen[at] = 1;
	}
	for (size_t i = 0; i < t->n; i++) {
		struct regtab_ent *e = &t->e[i];

		if (seen[i] || e->rev > rev) {
			t->e[k++] = *e;
			continue;
		}
		if (!e->gone && t->valid) /* deleted after e->rev, unreported */
			miss = KURA_MAX(miss, e->rev + 1);
		/* gone as of the listing: a tombstone is no longer needed */
	}
	t->n = k;
	free(seen);
	t->valid = 1;
	t->floor = KURA_MAX(t->floor, rev);
	pthread_mutex_unlock(&t->mu);
	if (missed)
		*missed = miss;
	return 0;
fail:
	pthread_mutex_unlock(&t->mu);
	return r;
}

int regtab_copy(struct regtab *t, struct mreg **regs, size_t *n)
{
	size_t k = 0;

	pthread_mutex_lock(&t->mu);
	if (!t->valid) {
		pthread_mutex_unlock(&t->mu);
		return -EAGAIN;
	}
	*regs = calloc(t->n ? t->n : 1, sizeof(**regs));
	if (!*regs) {
		pthread_mutex_unlock(&t->mu);
		return -ENOMEM;
	}
	for (size_t i = 0; i < t->n; i++)
		if (!t->e[i].gone)
			(*regs)[k++] = t->e[i].reg;
	pthread_mutex_unlock(&t->mu);
	*n = k;
	return 0;
}
