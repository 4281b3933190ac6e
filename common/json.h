/* A small JSON reader and writer for the control socket and the catalog.
 *
 * Thread rule: no shared state; any thread may use its own values.
 *
 * Reader: strict RFC 8259 (no comments, no trailing commas, no NaN, UTF-8
 * passed through, \uXXXX escapes decoded to UTF-8 including surrogate pairs,
 * lone surrogates rejected, embedded NUL rejected). Nesting is limited to
 * KURA_JSON_MAX_DEPTH; duplicate object keys are rejected. Numbers keep their
 * text so that 64-bit integers round-trip exactly.
 *
 * Writer: builds one value into a growing buffer; keys and strings are
 * escaped; an allocation failure is remembered and reported by
 * kura_jw_finish(), so callers need not check every call.
 *
 * Errors: 0 or -errno (-EINVAL for bad text or a wrong type, -ENOMEM,
 * -ERANGE for a number that does not fit).
 */
#ifndef KURA_COMMON_JSON_H
#define KURA_COMMON_JSON_H

#include <stddef.h>
#include <stdint.h>

#define KURA_JSON_MAX_DEPTH 32

enum kura_json_type {
	KURA_JSON_NULL,
	KURA_JSON_BOOL,
	KURA_JSON_NUM,
	KURA_JSON_STR,
	KURA_JSON_ARR,
	KURA_JSON_OBJ,
};

struct kura_json;

/* Parses exactly one value (surrounding whitespace allowed) from text[0..len).
 * On error returns -EINVAL (or -ENOMEM) and a one-line reason with the byte
 * offset in err. */
int kura_json_parse(const char *text, size_t len, struct kura_json **out, char *err,
		    size_t errlen);
void kura_json_free(struct kura_json *v);

enum kura_json_type kura_json_type(const struct kura_json *v);
/* Member of an object by key; NULL when v is not an object or has no such key. */
const struct kura_json *kura_json_get(const struct kura_json *v, const char *key);
/* Elements of an array or members of an object; 0 for other types. */
size_t kura_json_len(const struct kura_json *v);
const struct kura_json *kura_json_at(const struct kura_json *v, size_t i);
/* Key of member i of an object; NULL otherwise. */
const char *kura_json_key_at(const struct kura_json *v, size_t i);

/* Typed access: -EINVAL when the type differs. */
const char *kura_json_str(const struct kura_json *v); /* NULL unless a string */
int kura_json_u64(const struct kura_json *v, uint64_t *out); /* integer >= 0, exact */
int kura_json_i64(const struct kura_json *v, int64_t *out);  /* integer, exact */
int kura_json_double(const struct kura_json *v, double *out);
int kura_json_bool(const struct kura_json *v, int *out);

/* Convenience for objects: member key of the given type. -ENOENT when absent,
 * -EINVAL when present with another type. */
int kura_json_get_str(const struct kura_json *obj, const char *key, const char **out);
int kura_json_get_u64(const struct kura_json *obj, const char *key, uint64_t *out);
int kura_json_get_bool(const struct kura_json *obj, const char *key, int *out);

/* Writer. Inside an object every value takes a key; at the top level and in
 * arrays key must be NULL. */
struct kura_jw {
	char *buf;
	size_t len, cap;
	int err;
	unsigned depth;
	uint8_t first[KURA_JSON_MAX_DEPTH + 1]; /* no member written yet at this depth */
};

void kura_jw_init(struct kura_jw *w);
void kura_jw_free(struct kura_jw *w);
void kura_jw_obj(struct kura_jw *w, const char *key);   /* opens { */
void kura_jw_arr(struct kura_jw *w, const char *key);   /* opens [ */
void kura_jw_end(struct kura_jw *w);                     /* closes the innermost */
void kura_jw_str(struct kura_jw *w, const char *key, const char *val); /* NULL writes null */
void kura_jw_u64(struct kura_jw *w, const char *key, uint64_t val);
void kura_jw_i64(struct kura_jw *w, const char *key, int64_t val);
void kura_jw_double(struct kura_jw *w, const char *key, double val);
void kura_jw_bool(struct kura_jw *w, const char *key, int val);
void kura_jw_null(struct kura_jw *w, const char *key);
/* Returns the NUL-terminated text (owned by w) and its length, or NULL when an
 * allocation failed or the value is not closed. */
const char *kura_jw_finish(struct kura_jw *w, size_t *len);

#endif
