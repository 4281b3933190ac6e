/* The cluster map (map.h): what changed between two maps, for the log. */
#include "replication/map.h"
#include "common/util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- what changed, for the log ---- */

struct says {
	char *buf;
	size_t len, at;
	int items;
};

static void say(struct says *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct says *w, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (w->at + 1 >= w->len)
		return; /* full: cut */
	if (w->items++) {
		n = snprintf(w->buf + w->at, w->len - w->at, ", ");
		w->at = KURA_MIN(w->len - 1, w->at + (size_t)n);
	}
	va_start(ap, fmt);
	n = vsnprintf(w->buf + w->at, w->len - w->at, fmt, ap);
	va_end(ap);
	if (n < 0 || w->at + (size_t)n >= w->len) {
		/* cut: end with "..." where it fits */
		w->at = w->len - 1;
		if (w->len >= 4)
			memcpy(w->buf + w->len - 4, "...", 4);
		return;
	}
	w->at += (size_t)n;
}

void kura_map_describe_change(const struct kura_map *prev, const struct kura_map *next,
			      char *buf, size_t len)
{
	struct says w = { buf, len, 0, 0 };

	if (!len)
		return;
	buf[0] = 0;
	for (unsigned i = 0; i < next->nnodes; i++) {
		const struct kura_map_node *b = &next->nodes[i];
		int k = kura_map_find(prev, b->name);
		const struct kura_map_node *a = k >= 0 ? &prev->nodes[k] : NULL;

		if (!a) {
			say(&w, "%s new (%s)", b->name, kura_node_state_name(b->state));
			continue;
		}
		if (a->state != b->state)
			say(&w, "%s %s -> %s", b->name, kura_node_state_name(a->state),
			    kura_node_state_name(b->state));
		if (strcmp(a->addr, b->addr))
			say(&w, "%s at %s", b->name, b->addr);
		if (strcmp(a->domain, b->domain))
			say(&w, "%s in fault domain %s", b->name, b->domain);
	}
	for (unsigned i = 0; i < prev->nnodes; i++)
		if (kura_map_find(next, prev->nodes[i].name) < 0)
			say(&w, "%s gone", prev->nodes[i].name);
	if (prev->nfills != next->nfills)
		say(&w, "fills %u -> %u", prev->nfills, next->nfills);
	if (prev->svc_rev != next->svc_rev)
		say(&w, "vdisk service revision %llu", (unsigned long long)next->svc_rev);
	if (!w.items)
		say(&w, "no node's state");
}
