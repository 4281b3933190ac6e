/* Output: JSON for scripts, aligned tables and "key: value" lists for people. */
#include "vdisk/cli/cli.h"

#include "common/util.h"

#include <assert.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- JSON ---- */

static void put_num(struct kura_jw *w, const char *key, const struct kura_json *v)
{
	uint64_t u;
	int64_t i;
	double d = 0;

	if (!kura_json_u64(v, &u))
		kura_jw_u64(w, key, u);
	else if (!kura_json_i64(v, &i))
		kura_jw_i64(w, key, i);
	else
		kura_jw_double(w, key, kura_json_double(v, &d) ? 0 : d);
}

/* Writes v again through the writer, which escapes strings for us. */
static void put_value(struct kura_jw *w, const char *key, const struct kura_json *v,
		      const char *skip)
{
	int b = 0;

	switch (kura_json_type(v)) {
	case KURA_JSON_NULL:
		kura_jw_null(w, key);
		break;
	case KURA_JSON_BOOL:
		kura_json_bool(v, &b);
		kura_jw_bool(w, key, b);
		break;
	case KURA_JSON_NUM:
		put_num(w, key, v);
		break;
	case KURA_JSON_STR:
		kura_jw_str(w, key, kura_json_str(v));
		break;
	case KURA_JSON_ARR:
		kura_jw_arr(w, key);
		for (size_t i = 0; i < kura_json_len(v); i++)
			put_value(w, NULL, kura_json_at(v, i), NULL);
		kura_jw_end(w);
		break;
	case KURA_JSON_OBJ:
		kura_jw_obj(w, key);
		for (size_t i = 0; i < kura_json_len(v); i++) {
			const char *k = kura_json_key_at(v, i);
			if (!skip || strcmp(k, skip))
				put_value(w, k, kura_json_at(v, i), NULL);
		}
		kura_jw_end(w);
		break;
	}
}

static void newline(unsigned depth)
{
	putchar('\n');
	for (unsigned i = 0; i < depth; i++)
		fputs("  ", stdout);
}

/* Indents compact JSON text; only structure outside strings is touched, so
 * the result parses to the same value. */
static void print_indented(const char *s, size_t len)
{
	unsigned depth = 0;

	for (size_t i = 0; i < len; i++) {
		char ch = s[i];

		if (ch == '"') {
			size_t j = i + 1;
			while (j < len && s[j] != '"')
				j += s[j] == '\\' ? 2 : 1;
			j = KURA_MIN(j, len - 1);
			fwrite(s + i, 1, j + 1 - i, stdout);
			i = j;
		} else if ((ch == '{' || ch == '[') && i + 1 < len &&
			   (s[i + 1] == '}' || s[i + 1] == ']')) {
			putchar(ch);
			putchar(s[++i]);
		} else if (ch == '{' || ch == '[') {
			putchar(ch);
			newline(++depth);
		} else if (ch == '}' || ch == ']') {
			newline(--depth);
			putchar(ch);
		} else if (ch == ',') {
			putchar(ch);
			newline(depth);
		} else if (ch == ':') {
			fputs(": ", stdout);
		} else {
			putchar(ch);
		}
	}
	putchar('\n');
}

int cli_print_json(const struct kura_json *v, const char *skip)
{
	struct kura_jw w;
	const char *text;
	size_t len;

	kura_jw_init(&w);
	put_value(&w, NULL, v, skip);
	text = kura_jw_finish(&w, &len);
	if (text)
		print_indented(text, len);
	kura_jw_free(&w);
	return text ? 0 : cli_fail(-ENOMEM, "out of memory");
}

/* ---- fields ---- */

const struct kura_json *cli_get(const struct kura_json *o, const char *key,
				enum kura_json_type type)
{
	const struct kura_json *v = o ? kura_json_get(o, key) : NULL;

	return v && kura_json_type(v) == type ? v : NULL;
}

const struct kura_json *cli_need(const struct kura_json *o, const char *key,
				 enum kura_json_type type)
{
	const struct kura_json *v = cli_get(o, key, type);

	if (!v)
		cli_fail(-EPROTO, "blockd's answer lacks the field \"%s\"; is blockd older than "
			 "this vdisk?", key);
	return v;
}

const char *cli_str(const struct kura_json *o, const char *key)
{
	const struct kura_json *v = cli_get(o, key, KURA_JSON_STR);

	/* A table cell must not be empty, or the columns after it shift. */
	return v && *kura_json_str(v) ? kura_json_str(v) : "-";
}

uint64_t cli_u64(const struct kura_json *o, const char *key)
{
	const struct kura_json *v = cli_get(o, key, KURA_JSON_NUM);
	uint64_t x;

	return v && !kura_json_u64(v, &x) ? x : 0;
}

int cli_show(struct cli *c, struct kura_json *ans, const char *key, enum kura_json_type type,
	     int (*human)(const struct kura_json *v))
{
	const struct kura_json *v = cli_need(ans, key, type);
	int err = -EPROTO;

	if (v)
		err = (c->opts & OPT_JSON) ? cli_print_json(v, NULL) : human(v);
	kura_json_free(ans);
	return err;
}

const char *cli_str_at(const struct kura_json *arr, size_t i)
{
	const char *s = kura_json_str(kura_json_at(arr, i));

	return s ? s : "?";
}

char *cli_join(const struct kura_json *arr)
{
	size_t n = arr ? kura_json_len(arr) : 0, len = 2;
	char *out;

	for (size_t i = 0; i < n; i++)
		len += strlen(cli_str_at(arr, i)) + 2;
	out = malloc(len);
	if (!out)
		return NULL;
	size_t at = (size_t)snprintf(out, len, "%s", n ? "" : "-");
	for (size_t i = 0; i < n && at < len; i++)
		at += (size_t)snprintf(out + at, len - at, "%s%s", i ? ", " : "", cli_str_at(arr, i));
	return out;
}

const char *cli_fmt_time(uint64_t epoch, char *buf, size_t len)
{
	time_t t = (time_t)epoch;
	struct tm tm;

	if (!epoch || !localtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S %z", &tm))
		snprintf(buf, len, "-");
	return buf;
}

const char *cli_fmt_secs(uint64_t s, char *buf, size_t len)
{
	if (s >= 3600)
		snprintf(buf, len, "%lluh%02llum", (unsigned long long)(s / 3600),
			 (unsigned long long)(s / 60 % 60));
	else if (s >= 60)
		snprintf(buf, len, "%llum%02llus", (unsigned long long)(s / 60),
			 (unsigned long long)(s % 60));
	else
		snprintf(buf, len, "%llus", (unsigned long long)s);
	return buf;
}

/* ---- tables ---- */

void cli_table_init(struct cli_table *t, unsigned ncols, const char *const *header)
{
	memset(t, 0, sizeof(*t));
	assert(ncols >= 1 && ncols <= CLI_TABLE_COLS);
	t->ncols = ncols;
	for (unsigned i = 0; i < ncols; i++)
		cli_table_add(t, "%s", header[i]);
}

void cli_table_add(struct cli_table *t, const char *fmt, ...)
{
	va_list ap;
	char *cell, **p;

	if (t->n == t->cap) {
		p = realloc(t->cells, (t->cap ? t->cap * 2 : 64) * sizeof(*p));
		if (!p) {
			t->err = -ENOMEM;
			return;
		}
		t->cells = p;
		t->cap = t->cap ? t->cap * 2 : 64;
	}
	va_start(ap, fmt);
	if (vasprintf(&cell, fmt, ap) < 0) {
		t->err = -ENOMEM;
		cell = NULL;
	}
	va_end(ap);
	t->cells[t->n++] = cell;
}

void cli_table_size(struct cli_table *t, uint64_t bytes)
{
	char b[32];

	cli_table_add(t, "%s", kura_fmt_size(bytes, b, sizeof(b)));
}

int cli_table_print(struct cli_table *t)
{
	size_t w[CLI_TABLE_COLS] = { 0 };
	int err = t->err;

	for (size_t i = 0; !err && i < t->n; i++)
		w[i % t->ncols] = KURA_MAX(w[i % t->ncols], strlen(t->cells[i]));
	for (size_t i = 0; !err && i < t->n; i++) {
		/* The last column is not padded: no trailing blanks. */
		if ((i + 1) % t->ncols)
			printf("%-*s  ", (int)w[i % t->ncols], t->cells[i]);
		else
			printf("%s\n", t->cells[i]);
	}
	for (size_t i = 0; i < t->n; i++)
		free(t->cells[i]);
	free(t->cells);
	return err ? cli_fail(err, "out of memory") : 0;
}

void cli_kv(const char *key, const char *fmt, ...)
{
	va_list ap;

	printf("%-12s ", key); /* a long key still gets its space */
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}
