/* vdisk fsck: checks the catalog against itself and against the store. It
 * only reads; every problem is one line saying what is wrong. */
#include "vdisk/vd_int.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct fsck {
	struct kura_jw *w;
	unsigned problems;
	uint64_t leaked_extents, dangling;
};

static void problem(struct fsck *f, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct fsck *f, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	kura_jw_str(f->w, NULL, line);
	f->problems++;
}

static bool job_alive(struct kura_vd_engine *e, uint64_t id)
{
	struct vd_job *j = vd_job_get(e, id);
	return j && j->state == JOB_RUNNING;
}

static void check_layers(struct kura_vd_engine *e, struct fsck *f)
{
	for (struct vd_layer *l = e->layers; l; l = l->next) {
		unsigned long long id = (unsigned long long)l->id;
		struct vd_vdisk *v = vd_get(e, l->vdisk);
		if (l->parent && !vd_layer_get(e, l->parent)) {
			problem(f, "layer %llu has a missing parent layer %llu (dangling)", id,
				(unsigned long long)l->parent);
			f->dangling++;
		}
		if (l->job && !job_alive(e, l->job))
			problem(f, "layer %llu waits for job %llu, which is not running", id,
				(unsigned long long)l->job);
		if (!v && !l->job)
			problem(f, "layer %llu belongs to no vdisk and no job frees it", id);
		if (l->hidden && !l->job && vd_children(e, l->id, NULL) < 2)
			problem(f, "hidden layer %llu has fewer than two dependents but is not "
				"being merged", id);
		if (l->snap[0] && l->hidden)
			problem(f, "layer %llu is both snapshot '%s' and hidden", id, l->snap);
	}
}

static void check_vdisks(struct kura_vd_engine *e, struct fsck *f)
{
	for (struct vd_vdisk *v = e->vdisks; v; v = v->next) {
		struct vd_layer *t = vd_layer_get(e, v->top);
		struct vd_chain c = { 0 };
		if (!t || t->vdisk != v->id)
			problem(f, "vdisk '%s': its top layer %llu is missing or not its own", v->name,
				(unsigned long long)v->top);
		if (v->state == VD_BUILDING && !job_alive(e, v->job))
			problem(f, "vdisk '%s' is marked building but job %llu is not running",
				v->name, (unsigned long long)v->job);
		if (vd_chain_build(e, &c, v->top, UINT64_MAX))
			problem(f, "vdisk '%s': its chain of layers is broken", v->name);
		vd_chain_free(&c);
	}
}

/* Store layers the catalog does not know: space nobody will ever free. */
static uint64_t check_store(struct kura_vd_engine *e, struct fsck *f, uint64_t *nlayers)
{
	uint64_t *ids, total = 0, exts, blocks;
	size_t n;

	*nlayers = 0;
	if (e->bops->layers(e->b, &ids, &n)) {
		problem(f, "cannot list the store's layers: out of memory");
		return 0;
	}
	for (size_t i = 0; i < n; i++) {
		if (ids[i] < KURA_VD_ID_BASE)
			continue;
		e->bops->layer_usage(e->b, ids[i], &exts, &blocks);
		total += exts;
		(*nlayers)++;
		if (!vd_layer_get(e, ids[i])) {
			problem(f, "store layer %llu holds %llu extents but the catalog does not know "
				"it (leaked)", (unsigned long long)ids[i], (unsigned long long)exts);
			f->leaked_extents += exts;
		}
	}
	free(ids);
	return total;
}

void vd_op_fsck(struct vd_ctl *c)
{
	struct kura_vd_engine *e = c->e;
	struct fsck f = { .w = c->out };
	uint64_t extents, store_layers, nlayers = 0, nvdisks = 0;

	kura_jw_arr(c->out, "problems");
	check_layers(e, &f);
	check_vdisks(e, &f);
	extents = check_store(e, &f, &store_layers);
	kura_jw_end(c->out);
	for (struct vd_layer *l = e->layers; l; l = l->next)
		nlayers++;
	for (struct vd_vdisk *v = e->vdisks; v; v = v->next)
		nvdisks++;
	kura_jw_bool(c->out, "clean", !f.problems);
	kura_jw_u64(c->out, "vdisks", nvdisks);
	kura_jw_u64(c->out, "layers", nlayers);
	kura_jw_u64(c->out, "store_layers", store_layers);
	kura_jw_u64(c->out, "extents", extents);
	kura_jw_u64(c->out, "leaked_extents", f.leaked_extents);
	kura_jw_u64(c->out, "dangling_layers", f.dangling);
	vd_ctl_reply(c, 0, NULL);
}
