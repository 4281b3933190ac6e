/* JSON reader and writer; the contract is in json.h.
 *
 * The reader is a recursive descent parser whose recursion is bounded by
 * KURA_JSON_MAX_DEPTH, so hostile input cannot exhaust the stack. Each value
 * is one allocation: scalars carry their text (decoded string, or the
 * number's literal text) in a flexible array member; arrays and objects carry
 * a growing array of members, arrays simply leaving the key NULL.
 */
#include "common/json.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct member {
	struct kura_json *key; /* a string node; NULL in arrays */
	size_t at;             /* byte offset of the key, to report duplicates */
	struct kura_json *val;
};

struct kura_json {
	enum kura_json_type type;
	int b;
	size_t n, cap;
	struct member *kids;
	char text[]; /* string value or number text, NUL-terminated */
};

struct parser {
	const char *text;
	size_t len, pos;
	char *err;
	size_t errlen;
};

static int parse_value(struct parser *ps, unsigned depth, struct kura_json **out);

/* ---- shared helpers ---- */

/* Length of the well-formed UTF-8 sequence at s (RFC 3629: no overlongs, no
 * surrogates, nothing past U+10FFFF), or 0 when it is not one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	static const uint32_t min[5] = { 0, 0, 0x80, 0x800, 0x10000 };
	size_t len;
	uint32_t cp;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f;
	else if ((s[0] & 0xf0) == 0xe0)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (len > n)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
		return 0;
	return len;
}

static size_t utf8_put(char *o, uint32_t cp)
{
	static const uint8_t lead[5] = { 0, 0, 0xc0, 0xe0, 0xf0 };
	size_t n = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;

	for (size_t i = n - 1; i > 0; i--, cp >>= 6)
		o[i] = (char)(0x80 | (cp & 0x3f));
	o[0] = (char)(lead[n] | cp);
	return n;
}

static int is_digit(int c)
{
	return c >= '0' && c <= '9';
}

/* ---- reader ---- */

static int fail(struct parser *ps, size_t at, const char *what)
{
	if (ps->err && ps->errlen)
		snprintf(ps->err, ps->errlen, "%s at byte %zu", what, at);
	return -EINVAL;
}

static int oom(struct parser *ps)
{
	fail(ps, ps->pos, "out of memory");
	return -ENOMEM;
}

/* The byte at i, or -1 past the end: the text need not be NUL-terminated and
 * may hold NUL bytes, so the end cannot be told by a sentinel. */
static int peek(const struct parser *ps, size_t i)
{
	return i < ps->len ? (unsigned char)ps->text[i] : -1;
}

static void skip_ws(struct parser *ps)
{
	int c;

	while ((c = peek(ps, ps->pos)) == ' ' || c == '\t' || c == '\n' || c == '\r')
		ps->pos++;
}

static struct kura_json *new_node(enum kura_json_type type, size_t textlen)
{
	struct kura_json *v = calloc(1, sizeof(*v) + textlen + 1);

	if (v)
		v->type = type;
	return v;
}

static int add_kid(struct kura_json *v, struct kura_json *key, size_t at, struct kura_json *val)
{
	if (v->n == v->cap) {
		size_t cap = v->cap ? v->cap * 2 : 4;
		struct member *k = realloc(v->kids, cap * sizeof(*k));

		if (!k)
			return -ENOMEM;
		v->kids = k;
		v->cap = cap;
	}
	v->kids[v->n++] = (struct member){ key, at, val };
	return 0;
}

static int parse_word(struct parser *ps, const char *word, enum kura_json_type type, int b,
		      struct kura_json **out)
{
	size_t n = strlen(word);

	if (ps->len - ps->pos < n || memcmp(ps->text + ps->pos, word, n))
		return fail(ps, ps->pos, "invalid literal");
	if (!(*out = new_node(type, 0)))
		return oom(ps);
	(*out)->b = b;
	ps->pos += n;
	return 0;
}

static size_t skip_digits(const struct parser *ps, size_t i)
{
	while (is_digit(peek(ps, i)))
		i++;
	return i;
}

/* Checks the RFC 8259 number grammar and keeps the text as it stands, so
 * that the typed accessors can later read it exactly. */
static int parse_number(struct parser *ps, struct kura_json **out)
{
	size_t i = ps->pos + (peek(ps, ps->pos) == '-');

	if (peek(ps, i) == '0')
		i++;
	else if (is_digit(peek(ps, i)))
		i = skip_digits(ps, i);
	else
		return fail(ps, i, "invalid number");
	if (peek(ps, i) == '.') {
		if (!is_digit(peek(ps, ++i)))
			return fail(ps, i, "invalid number");
		i = skip_digits(ps, i);
	}
	if (peek(ps, i) == 'e' || peek(ps, i) == 'E') {
		i++;
		if (peek(ps, i) == '+' || peek(ps, i) == '-')
			i++;
		if (!is_digit(peek(ps, i)))
			return fail(ps, i, "invalid number");
		i = skip_digits(ps, i);
	}
	if (!(*out = new_node(KURA_JSON_NUM, i - ps->pos)))
		return oom(ps);
	memcpy((*out)->text, ps->text + ps->pos, i - ps->pos);
	ps->pos = i;
	return 0;
}

static int hex4(const char *s)
{
	int v = 0;

	for (int i = 0; i < 4; i++) {
		int c = (unsigned char)s[i];

		if (is_digit(c))
			c -= '0';
		else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
			c = (c | 0x20) - 'a' + 10;
		else
			return -1;
		v = v << 4 | c;
	}
	return v;
}

/* Decodes \uXXXX (and its low surrogate, when it opens a pair) at *i, which
 * points at the backslash; end is the closing quote. */
static int decode_u(struct parser *ps, size_t *i, size_t end, char *o, size_t *olen)
{
	const char *s = ps->text + *i;
	int hi = end - *i >= 6 ? hex4(s + 2) : -1, lo;

	if (hi < 0)
		return fail(ps, *i, "invalid \\u escape");
	if (hi == 0)
		return fail(ps, *i, "NUL in string");
	if (hi >= 0xdc00 && hi <= 0xdfff)
		return fail(ps, *i, "lone surrogate");
	if (hi < 0xd800 || hi > 0xdbff) {
		*olen += utf8_put(o, (uint32_t)hi);
		*i += 6;
		return 0;
	}
	lo = end - *i >= 12 && s[6] == '\\' && s[7] == 'u' ? hex4(s + 8) : -1;
	if (lo < 0xdc00 || lo > 0xdfff)
		return fail(ps, *i, "lone surrogate");
	*olen += utf8_put(o, 0x10000 + ((uint32_t)(hi - 0xd800) << 10) + (uint32_t)(lo - 0xdc00));
	*i += 12;
	return 0;
}

static int decode_escape(struct parser *ps, size_t *i, size_t end, char *o, size_t *olen)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	char c = ps->text[*i + 1];
	const char *p = c ? strchr(from, c) : NULL;

	if (c == 'u')
		return decode_u(ps, i, end, o + *olen, olen);
	if (!p)
		return fail(ps, *i, "invalid escape");
	o[(*olen)++] = to[p - from];
	*i += 2;
	return 0;
}

/* Offset of the quote closing the string whose body starts at i. Escapes are
 * stepped over whole, so that \" does not end it; they are checked later. */
static int string_end(struct parser *ps, size_t i, size_t *end)
{
	while (i < ps->len && ps->text[i] != '"')
		i += ps->text[i] == '\\' ? 2 : 1;
	if (i >= ps->len)
		return fail(ps, ps->pos, "unterminated string");
	*end = i;
	return 0;
}

static int decode_string(struct parser *ps, size_t i, size_t end, char *o)
{
	const unsigned char *s = (const unsigned char *)ps->text;
	size_t olen = 0, n;
	int err = 0;

	while (!err && i < end) {
		if (s[i] == '\\') {
			err = decode_escape(ps, &i, end, o, &olen);
		} else if (s[i] < 0x20) {
			err = fail(ps, i, s[i] ? "control character in string" : "NUL in string");
		} else if (s[i] < 0x80) {
			o[olen++] = (char)s[i++];
		} else if (!(n = utf8_seq(s + i, end - i))) {
			err = fail(ps, i, "invalid UTF-8");
		} else {
			memcpy(o + olen, s + i, n);
			olen += n;
			i += n;
		}
	}
	return err;
}

/* Every escape is at least as long as what it decodes to, so the raw length
 * bounds the decoded one and the node can be sized before decoding. */
static int parse_string(struct parser *ps, struct kura_json **out)
{
	size_t start = ps->pos + 1, end;
	struct kura_json *v;
	int err = string_end(ps, start, &end);

	if (err)
		return err;
	if (!(v = new_node(KURA_JSON_STR, end - start)))
		return oom(ps);
	err = decode_string(ps, start, end, v->text);
	if (err) {
		free(v);
		return err;
	}
	ps->pos = end + 1;
	*out = v;
	return 0;
}

static int by_key(const void *a, const void *b)
{
	const struct member *x = a, *y = b;
	int c = strcmp(x->key->text, y->key->text);

	return c ? c : (x->at > y->at) - (x->at < y->at);
}

static int by_offset(const void *a, const void *b)
{
	const struct member *x = a, *y = b;

	return (x->at > y->at) - (x->at < y->at);
}

/* Sorting rather than comparing every pair keeps a 1 MiB request with
 * 100k keys from costing 10^10 comparisons; the members are put back in
 * text order afterwards. Reports the first repeated key in the text. */
static int check_dups(struct parser *ps, struct kura_json *o)
{
	size_t dup = SIZE_MAX;

	if (o->n < 2)
		return 0;
	qsort(o->kids, o->n, sizeof(*o->kids), by_key);
	for (size_t i = 1; i < o->n; i++)
		if (!strcmp(o->kids[i - 1].key->text, o->kids[i].key->text) && o->kids[i].at < dup)
			dup = o->kids[i].at;
	qsort(o->kids, o->n, sizeof(*o->kids), by_offset);
	return dup == SIZE_MAX ? 0 : fail(ps, dup, "duplicate key");
}

static int parse_member(struct parser *ps, unsigned depth, struct kura_json *v)
{
	struct kura_json *key = NULL, *val = NULL;
	size_t at;
	int err = 0;

	skip_ws(ps);
	at = ps->pos;
	if (v->type == KURA_JSON_OBJ) {
		if (peek(ps, ps->pos) != '"')
			return fail(ps, ps->pos, "expected string key");
		if ((err = parse_string(ps, &key)))
			return err;
		skip_ws(ps);
		if (peek(ps, ps->pos) == ':')
			ps->pos++;
		else
			err = fail(ps, ps->pos, "expected ':'");
	}
	if (!err)
		err = parse_value(ps, depth + 1, &val);
	if (!err && add_kid(v, key, at, val))
		err = oom(ps);
	if (err) {
		free(key);
		kura_json_free(val);
	}
	return err;
}

static int parse_container(struct parser *ps, unsigned depth, enum kura_json_type type,
			   struct kura_json **out)
{
	int close = type == KURA_JSON_OBJ ? '}' : ']';
	struct kura_json *v;
	int err = 0;

	if (depth >= KURA_JSON_MAX_DEPTH)
		return fail(ps, ps->pos, "nesting too deep");
	if (!(v = new_node(type, 0)))
		return oom(ps);
	ps->pos++;
	skip_ws(ps);
	if (peek(ps, ps->pos) == close) {
		ps->pos++;
		*out = v;
		return 0;
	}
	while (!(err = parse_member(ps, depth, v))) {
		skip_ws(ps);
		if (peek(ps, ps->pos) == close) {
			ps->pos++;
			break;
		}
		if (peek(ps, ps->pos) != ',') {
			err = fail(ps, ps->pos,
				   close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
			break;
		}
		ps->pos++;
	}
	if (!err && type == KURA_JSON_OBJ)
		err = check_dups(ps, v);
	if (err) {
		kura_json_free(v);
		return err;
	}
	*out = v;
	return 0;
}

static int parse_value(struct parser *ps, unsigned depth, struct kura_json **out)
{
	int c;

	skip_ws(ps);
	c = peek(ps, ps->pos);
	switch (c) {
	case '{':
		return parse_container(ps, depth, KURA_JSON_OBJ, out);
	case '[':
		return parse_container(ps, depth, KURA_JSON_ARR, out);
	case '"':
		return parse_string(ps, out);
	case 't':
		return parse_word(ps, "true", KURA_JSON_BOOL, 1, out);
	case 'f':
		return parse_word(ps, "false", KURA_JSON_BOOL, 0, out);
	case 'n':
		return parse_word(ps, "null", KURA_JSON_NULL, 0, out);
	}
	if (c == '-' || is_digit(c))
		return parse_number(ps, out);
	return fail(ps, ps->pos, c < 0 ? "unexpected end of input" : "expected value");
}

int kura_json_parse(const char *text, size_t len, struct kura_json **out, char *err,
		    size_t errlen)
{
	struct parser ps = { text, len, 0, err, errlen };
	struct kura_json *v = NULL;
	int ret;

	if (out)
		*out = NULL;
	if (!out || (!text && len))
		return fail(&ps, 0, "invalid arguments");
	ret = parse_value(&ps, 0, &v);
	skip_ws(&ps);
	if (!ret && ps.pos < len)
		ret = fail(&ps, ps.pos, "unexpected data after the value");
	if (ret) {
		kura_json_free(v);
		return ret;
	}
	*out = v;
	return 0;
}

/* Recursion is bounded: only the parser builds trees, within the depth limit. */
void kura_json_free(struct kura_json *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->n; i++) {
		free(v->kids[i].key);
		kura_json_free(v->kids[i].val);
	}
	free(v->kids);
	free(v);
}

/* ---- access ---- */

/* A missing value (NULL, as kura_json_get returns for an absent key) reads
 * as null, so that lookups can be chained without checks. */
enum kura_json_type kura_json_type(const struct kura_json *v)
{
	return v ? v->type : KURA_JSON_NULL;
}

const struct kura_json *kura_json_get(const struct kura_json *v, const char *key)
{
	if (!v || v->type != KURA_JSON_OBJ || !key)
		return NULL;
	for (size_t i = 0; i < v->n; i++)
		if (!strcmp(v->kids[i].key->text, key))
			return v->kids[i].val;
	return NULL;
}

size_t kura_json_len(const struct kura_json *v)
{
	return v ? v->n : 0;
}

const struct kura_json *kura_json_at(const struct kura_json *v, size_t i)
{
	return v && i < v->n ? v->kids[i].val : NULL;
}

const char *kura_json_key_at(const struct kura_json *v, size_t i)
{
	return v && v->type == KURA_JSON_OBJ && i < v->n ? v->kids[i].key->text : NULL;
}

const char *kura_json_str(const struct kura_json *v)
{
	return v && v->type == KURA_JSON_STR ? v->text : NULL;
}

/* Reads an integer's sign and magnitude exactly; fractions and exponents are
 * refused rather than rounded, since ids and sizes must not change. */
static int int_parts(const struct kura_json *v, int *neg, uint64_t *mag)
{
	const char *s;

	if (!v || v->type != KURA_JSON_NUM)
		return -EINVAL;
	s = v->text;
	*neg = *s == '-';
	s += *neg;
	if (s[strspn(s, "0123456789")])
		return -EINVAL;
	for (*mag = 0; *s; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (*mag > (UINT64_MAX - d) / 10)
			return -ERANGE;
		*mag = *mag * 10 + d;
	}
	return 0;
}

int kura_json_u64(const struct kura_json *v, uint64_t *out)
{
	uint64_t mag;
	int neg, err = int_parts(v, &neg, &mag);

	if (err)
		return err;
	if (neg && mag)
		return -ERANGE;
	*out = mag;
	return 0;
}

int kura_json_i64(const struct kura_json *v, int64_t *out)
{
	uint64_t mag;
	int neg, err = int_parts(v, &neg, &mag);

	if (err)
		return err;
	if (mag > (uint64_t)INT64_MAX + (neg ? 1 : 0))
		return -ERANGE;
	/* written so that -2^63 never overflows on the way */
	*out = neg && mag ? -(int64_t)(mag - 1) - 1 : (int64_t)mag;
	return 0;
}

int kura_json_double(const struct kura_json *v, double *out)
{
	double d;

	if (!v || v->type != KURA_JSON_NUM)
		return -EINVAL;
	d = strtod(v->text, NULL);
	/* underflow to zero or a subnormal is fine; overflow to infinity is not */
	if (isinf(d))
		return -ERANGE;
	*out = d;
	return 0;
}

int kura_json_bool(const struct kura_json *v, int *out)
{
	if (!v || v->type != KURA_JSON_BOOL)
		return -EINVAL;
	*out = v->b;
	return 0;
}

int kura_json_get_str(const struct kura_json *obj, const char *key, const char **out)
{
	const struct kura_json *v = kura_json_get(obj, key);

	if (!v)
		return -ENOENT;
	if (v->type != KURA_JSON_STR)
		return -EINVAL;
	*out = v->text;
	return 0;
}

int kura_json_get_u64(const struct kura_json *obj, const char *key, uint64_t *out)
{
	const struct kura_json *v = kura_json_get(obj, key);

	return v ? kura_json_u64(v, out) : -ENOENT;
}

int kura_json_get_bool(const struct kura_json *obj, const char *key, int *out)
{
	const struct kura_json *v = kura_json_get(obj, key);

	return v ? kura_json_bool(v, out) : -ENOENT;
}

/* ---- writer ---- */

/* first[] holds flags per depth: whether a member was written there yet, and
 * whether the container is an object (which decides if keys are due). */
enum { JW_FIRST = 1, JW_OBJ = 2 };

void kura_jw_init(struct kura_jw *w)
{
	memset(w, 0, sizeof(*w));
	w->first[0] = JW_FIRST;
}

void kura_jw_free(struct kura_jw *w)
{
	free(w->buf);
	kura_jw_init(w);
}

/* Keeps room for a NUL after the text, which blockd's control socket
 * overwrites with the newline that ends an answer. */
static void put(struct kura_jw *w, const char *s, size_t n)
{
	if (w->err)
		return;
	if (n >= w->cap - w->len) {
		size_t cap = w->cap ? w->cap : 256;
		char *b;

		while (cap - w->len <= n && cap <= SIZE_MAX / 2)
			cap *= 2;
		if (cap - w->len <= n || !(b = realloc(w->buf, cap))) {
			w->err = -ENOMEM;
			return;
		}
		w->buf = b;
		w->cap = cap;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = '\0';
}

static void put_escape(struct kura_jw *w, unsigned char c)
{
	static const char named[] = "\b\f\n\r\t\"\\", as[] = "bfnrt\"\\";
	const char *p = c ? strchr(named, c) : NULL;
	char e[8];

	if (p)
		snprintf(e, sizeof(e), "\\%c", as[p - named]);
	else
		snprintf(e, sizeof(e), "\\u%04x", c);
	put(w, e, strlen(e));
}

/* Length of the run at s that goes out unchanged: printable ASCII other
 * than the quote and the backslash. */
static size_t plain_len(const unsigned char *s, size_t n)
{
	size_t i = 0;

	while (i < n && s[i] >= 0x20 && s[i] < 0x80 && s[i] != '"' && s[i] != '\\')
		i++;
	return i;
}

/* Bytes that are not UTF-8 become U+FFFD: a reply must stay parseable even
 * when a message was cut inside a character, and strings that came in as
 * JSON are valid already, so nothing read from JSON is ever altered. */
static void put_str(struct kura_jw *w, const char *str)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t rest = strlen(str), n;

	put(w, "\"", 1);
	for (; rest; s += n, rest -= n) {
		n = plain_len(s, rest);
		if (!n)
			n = utf8_seq(s, rest);
		if (n) {
			put(w, (const char *)s, n);
			continue;
		}
		n = 1;
		if (s[0] < 0x80)
			put_escape(w, s[0]);
		else
			put(w, "\xef\xbf\xbd", 3);
	}
	put(w, "\"", 1);
}

/* Writes what comes before a value: the comma and the key. A key where none
 * belongs, a missing one, or a second top-level value set err instead, so
 * that misuse shows at kura_jw_finish() rather than as bad JSON. */
static int begin_value(struct kura_jw *w, const char *key)
{
	uint8_t *f = &w->first[w->depth];
	int in_obj = w->depth && (*f & JW_OBJ);

	if (w->err)
		return w->err;
	if (!key != !in_obj || (!w->depth && !(*f & JW_FIRST))) {
		w->err = -EINVAL;
		return w->err;
	}
	if (!(*f & JW_FIRST))
		put(w, ",", 1);
	*f &= (uint8_t)~JW_FIRST;
	if (key) {
		put_str(w, key);
		put(w, ":", 1);
	}
	return w->err;
}

static void open_container(struct kura_jw *w, const char *key, const char *brace, uint8_t flag)
{
	if (!w->err && w->depth >= KURA_JSON_MAX_DEPTH)
		w->err = -EINVAL;
	if (begin_value(w, key))
		return;
	put(w, brace, 1);
	w->first[++w->depth] = JW_FIRST | flag;
}

void kura_jw_obj(struct kura_jw *w, const char *key)
{
	open_container(w, key, "{", JW_OBJ);
}

void kura_jw_arr(struct kura_jw *w, const char *key)
{
	open_container(w, key, "[", 0);
}

void kura_jw_end(struct kura_jw *w)
{
	if (w->err)
		return;
	if (!w->depth) {
		w->err = -EINVAL;
		return;
	}
	put(w, w->first[w->depth] & JW_OBJ ? "}" : "]", 1);
	w->depth--;
}

static void rawf(struct kura_jw *w, const char *key, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Writes a value whose text needs no escaping: numbers and literals. */
static void rawf(struct kura_jw *w, const char *key, const char *fmt, ...)
{
	char b[32];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(b, sizeof(b), fmt, ap);
	va_end(ap);
	if (!begin_value(w, key))
		put(w, b, strlen(b));
}

void kura_jw_str(struct kura_jw *w, const char *key, const char *val)
{
	if (!val)
		kura_jw_null(w, key);
	else if (!begin_value(w, key))
		put_str(w, val);
}

void kura_jw_u64(struct kura_jw *w, const char *key, uint64_t val)
{
	rawf(w, key, "%" PRIu64, val);
}

void kura_jw_i64(struct kura_jw *w, const char *key, int64_t val)
{
	rawf(w, key, "%" PRId64, val);
}

/* Integral values within int64 are written as plain integers, so that the
 * integer readers take them back; the rest need 17 digits to round-trip.
 * JSON has no NaN or infinity: those become null. */
void kura_jw_double(struct kura_jw *w, const char *key, double val)
{
	if (!isfinite(val))
		kura_jw_null(w, key);
	else if (val > -9.2e18 && val < 9.2e18 && val == (double)(int64_t)val)
		kura_jw_i64(w, key, (int64_t)val);
	else
		rawf(w, key, "%.17g", val);
}

void kura_jw_bool(struct kura_jw *w, const char *key, int val)
{
	rawf(w, key, "%s", val ? "true" : "false");
}

void kura_jw_null(struct kura_jw *w, const char *key)
{
	rawf(w, key, "null");
}

const char *kura_jw_finish(struct kura_jw *w, size_t *len)
{
	if (w->err || w->depth || (w->first[0] & JW_FIRST))
		return NULL;
	if (len)
		*len = w->len;
	return w->buf;
}
