#include "common/json.h"
#include "tests/unit/harness.h"

#include <errno.h>
#include <math.h>

/* Parses text (a C string) and returns the error; *out is freed by caller. */
static int parse(const char *text, struct kura_json **out, char *why, size_t whylen)
{
	return kura_json_parse(text, strlen(text), out, why, whylen);
}

/* Parses a document that must be valid; the test ends when it is not. */
static struct kura_json *ok(const char *text)
{
	struct kura_json *v;
	char why[128];

	if (parse(text, &v, why, sizeof(why))) {
		fprintf(stderr, "  cannot parse %s: %s\n", text, why);
		exit(1);
	}
	return v;
}

/* Parses bytes copied to a heap buffer of exactly len, so that ASan sees any
 * read past the end; returns the error, which must come with a message. */
static int bad_bytes(const char *text, size_t len, char *why, size_t whylen)
{
	char *copy = malloc(len ? len : 1);
	struct kura_json *v = (struct kura_json *)copy; /* must become NULL */
	int err;

	CHECK(copy);
	memcpy(copy, text, len);
	why[0] = '\0';
	err = kura_json_parse(copy, len, &v, why, whylen);
	free(copy);
	if (!err) {
		fprintf(stderr, "  accepted %.*s\n", (int)len, text);
		kura_json_free(v);
		exit(1);
	}
	CHECK(v == NULL);
	CHECK(strstr(why, " at byte "));
	CHECK(!strchr(why, '\n'));
	return err;
}

static int bad(const char *text)
{
	char why[128];

	return bad_bytes(text, strlen(text), why, sizeof(why));
}

/* The error message for text, which must fail. */
static const char *why_bad(const char *text)
{
	static char why[128];

	bad_bytes(text, strlen(text), why, sizeof(why));
	return why;
}

static void check_str(const char *doc, const char *want)
{
	struct kura_json *v = ok(doc);

	CHECK(kura_json_str(v));
	if (strcmp(kura_json_str(v), want)) {
		fprintf(stderr, "  %s decoded wrong\n", doc);
		exit(1);
	}
	kura_json_free(v);
}

static const char *finish(struct kura_jw *w)
{
	size_t len = 0;
	const char *s = kura_jw_finish(w, &len);

	CHECK(s);
	CHECK_EQ(len, strlen(s));
	return s;
}

TEST(test_json_parses_structure)
{
	struct kura_json *v = ok(" {\"a\": [1, true, false, null, \"x\"], \"b\": {}, \"c\": []}\n");
	const struct kura_json *a = kura_json_get(v, "a");
	int b;

	CHECK_EQ(kura_json_type(v), KURA_JSON_OBJ);
	CHECK_EQ(kura_json_len(v), 3);
	CHECK(!strcmp(kura_json_key_at(v, 0), "a"));
	CHECK(!strcmp(kura_json_key_at(v, 2), "c"));
	CHECK(!kura_json_key_at(v, 3));
	CHECK_EQ(kura_json_type(a), KURA_JSON_ARR);
	CHECK_EQ(kura_json_len(a), 5);
	CHECK(!kura_json_key_at(a, 0));
	CHECK_EQ(kura_json_type(kura_json_at(a, 0)), KURA_JSON_NUM);
	CHECK_EQ(kura_json_bool(kura_json_at(a, 1), &b), 0);
	CHECK_EQ(b, 1);
	CHECK_EQ(kura_json_bool(kura_json_at(a, 2), &b), 0);
	CHECK_EQ(b, 0);
	CHECK_EQ(kura_json_type(kura_json_at(a, 3)), KURA_JSON_NULL);
	CHECK(!strcmp(kura_json_str(kura_json_at(a, 4)), "x"));
	CHECK(!kura_json_at(a, 5));
	CHECK_EQ(kura_json_len(kura_json_get(v, "b")), 0);
	CHECK_EQ(kura_json_type(kura_json_get(v, "c")), KURA_JSON_ARR);
	CHECK(!kura_json_get(v, "d"));
	CHECK(!kura_json_get(a, "a"));
	kura_json_free(v);
}

TEST(test_json_accessors_check_types)
{
	struct kura_json *v = ok("{\"s\":\"t\",\"n\":5,\"b\":true,\"z\":null}");
	const char *s;
	uint64_t u;
	int b;

	CHECK_EQ(kura_json_get_str(v, "s", &s), 0);
	CHECK(!strcmp(s, "t"));
	CHECK_EQ(kura_json_get_str(v, "n", &s), -EINVAL);
	CHECK_EQ(kura_json_get_str(v, "z", &s), -EINVAL);
	CHECK_EQ(kura_json_get_str(v, "q", &s), -ENOENT);
	CHECK_EQ(kura_json_get_u64(v, "n", &u), 0);
	CHECK_EQ(u, 5);
	CHECK_EQ(kura_json_get_u64(v, "s", &u), -EINVAL);
	CHECK_EQ(kura_json_get_u64(v, "q", &u), -ENOENT);
	CHECK_EQ(kura_json_get_bool(v, "b", &b), 0);
	CHECK_EQ(b, 1);
	CHECK_EQ(kura_json_get_bool(v, "n", &b), -EINVAL);
	CHECK_EQ(kura_json_get_bool(v, "q", &b), -ENOENT);
	CHECK(!kura_json_str(kura_json_get(v, "n")));
	CHECK_EQ(kura_json_bool(kura_json_get(v, "s"), &b), -EINVAL);
	/* a missing value reads as null and as empty, never crashes */
	CHECK_EQ(kura_json_type(NULL), KURA_JSON_NULL);
	CHECK_EQ(kura_json_len(NULL), 0);
	CHECK(!kura_json_at(NULL, 0));
	CHECK(!kura_json_get(NULL, "s"));
	CHECK(!kura_json_str(NULL));
	CHECK_EQ(kura_json_u64(NULL, &u), -EINVAL);
	CHECK_EQ(kura_json_get_str(NULL, "s", &s), -ENOENT);
	kura_json_free(v);
	kura_json_free(NULL);
}

TEST(test_json_decodes_every_escape)
{
	check_str("\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\/\b\f\n\r\t");
	check_str("\"\\u0041\\u00e9\\u00E9\\u20ac\\u0001\\u001f\"",
		  "A\xc3\xa9\xc3\xa9\xe2\x82\xac\x01\x1f");
	check_str("\"\\u07ff\\u0800\\uffff\"", "\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf");
	check_str("\"a\\nb\"", "a\nb");
	check_str("\"\"", "");
	CHECK_EQ(bad("\"\\x\""), -EINVAL);
	CHECK_EQ(bad("\"\\'\""), -EINVAL);
	CHECK_EQ(bad("\"\\u12\""), -EINVAL);
	CHECK_EQ(bad("\"\\u12g4\""), -EINVAL);
	CHECK_EQ(bad("\"\\U0041\""), -EINVAL);
	CHECK_EQ(bad("\"\\"), -EINVAL);
	CHECK_EQ(bad("\"\\\""), -EINVAL);
}

TEST(test_json_surrogate_pairs)
{
	check_str("\"\\ud83d\\ude00\"", "\xf0\x9f\x98\x80");
	check_str("\"\\uD834\\uDD1E!\"", "\xf0\x9d\x84\x9e!");
	check_str("\"\\udbff\\udfff\"", "\xf4\x8f\xbf\xbf");
	check_str("\"\\ud800\\udc00\"", "\xf0\x90\x80\x80");
	CHECK(strstr(why_bad("\"\\ud83d\""), "surrogate"));
	CHECK(strstr(why_bad("\"\\ude00\""), "surrogate"));
	CHECK(strstr(why_bad("\"\\ude00\\ud83d\""), "surrogate"));
	CHECK(strstr(why_bad("\"\\ud83dx\\ude00\""), "surrogate"));
	CHECK(strstr(why_bad("\"\\ud83d\\ud83d\""), "surrogate"));
	CHECK(strstr(why_bad("\"\\ud83d\\u0041\""), "surrogate"));
	CHECK(strstr(why_bad("\"\\ud83d\\n\""), "surrogate"));
	CHECK(strstr(why_bad("\"\\ud83d\\ude0\""), "surrogate"));
}

TEST(test_json_rejects_bad_string_bytes)
{
	static const char *const bad_utf8[] = {
		"\"\x80\"",             /* lone continuation */
		"\"\xc0\x80\"",         /* overlong NUL */
		"\"\xc1\xbf\"",         /* overlong */
		"\"\xe0\x80\x80\"",     /* overlong 3-byte */
		"\"\xed\xa0\x80\"",     /* encoded surrogate */
		"\"\xf0\x80\x80\x80\"", /* overlong 4-byte */
		"\"\xf4\x90\x80\x80\"", /* past U+10FFFF */
		"\"\xf5\x80\x80\x80\"",
		"\"\xff\"",
		"\"\xe2\x82\"",         /* cut short by the quote */
		"\"\xe2\x82",           /* cut short by the end */
		"\"\xc3x\"",
	};
	char why[128];

	check_str("\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x7f\"",
		  "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x7f");
	for (size_t i = 0; i < sizeof(bad_utf8) / sizeof(bad_utf8[0]); i++)
		CHECK_EQ(bad(bad_utf8[i]), -EINVAL);
	CHECK(strstr(why_bad("\"\xc0\x80\""), "UTF-8"));
	CHECK(strstr(why_bad("\"a\tb\""), "control"));
	CHECK(strstr(why_bad("\"a\nb\""), "control"));
	CHECK(strstr(why_bad("\"\x1f\""), "control"));
	CHECK(strstr(why_bad("\"\\u0000\""), "NUL"));
	CHECK_EQ(bad_bytes("\"a\0b\"", 5, why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "NUL"));
	CHECK_EQ(bad_bytes("[1]\0", 4, why, sizeof(why)), -EINVAL);
	CHECK_EQ(bad_bytes("\0", 1, why, sizeof(why)), -EINVAL);
}

TEST(test_json_u64_exact_and_overflow)
{
	struct kura_json *v = ok("[18446744073709551615, 18446744073709551616,"
				 " 99999999999999999999, 0, -0, -1, 1.0, 1e3,"
				 " 9007199254740993, \"5\"]");
	uint64_t u;

	CHECK_EQ(kura_json_u64(kura_json_at(v, 0), &u), 0);
	CHECK(u == UINT64_MAX);
	CHECK_EQ(kura_json_u64(kura_json_at(v, 1), &u), -ERANGE);
	CHECK_EQ(kura_json_u64(kura_json_at(v, 2), &u), -ERANGE);
	CHECK_EQ(kura_json_u64(kura_json_at(v, 3), &u), 0);
	CHECK_EQ(u, 0);
	CHECK_EQ(kura_json_u64(kura_json_at(v, 4), &u), 0);
	CHECK_EQ(u, 0);
	CHECK_EQ(kura_json_u64(kura_json_at(v, 5), &u), -ERANGE);
	CHECK_EQ(kura_json_u64(kura_json_at(v, 6), &u), -EINVAL);
	CHECK_EQ(kura_json_u64(kura_json_at(v, 7), &u), -EINVAL);
	/* above 2^53: a double would round it */
	CHECK_EQ(kura_json_u64(kura_json_at(v, 8), &u), 0);
	CHECK(u == 9007199254740993ull);
	CHECK_EQ(kura_json_u64(kura_json_at(v, 9), &u), -EINVAL);
	kura_json_free(v);
}

TEST(test_json_i64_negative_and_limits)
{
	struct kura_json *v = ok("[-9223372036854775808, 9223372036854775807,"
				 " -9223372036854775809, 9223372036854775808, -42, 42, -0,"
				 " -1.5e3, 1e400, -1e400, 1e-400]");
	int64_t i;
	double d;

	CHECK_EQ(kura_json_i64(kura_json_at(v, 0), &i), 0);
	CHECK(i == INT64_MIN);
	CHECK_EQ(kura_json_i64(kura_json_at(v, 1), &i), 0);
	CHECK(i == INT64_MAX);
	CHECK_EQ(kura_json_i64(kura_json_at(v, 2), &i), -ERANGE);
	CHECK_EQ(kura_json_i64(kura_json_at(v, 3), &i), -ERANGE);
	CHECK_EQ(kura_json_i64(kura_json_at(v, 4), &i), 0);
	CHECK_EQ(i, -42);
	CHECK_EQ(kura_json_i64(kura_json_at(v, 5), &i), 0);
	CHECK_EQ(i, 42);
	CHECK_EQ(kura_json_i64(kura_json_at(v, 6), &i), 0);
	CHECK_EQ(i, 0);
	CHECK_EQ(kura_json_i64(kura_json_at(v, 7), &i), -EINVAL);
	CHECK_EQ(kura_json_double(kura_json_at(v, 7), &d), 0);
	CHECK(d == -1500.0);
	CHECK_EQ(kura_json_double(kura_json_at(v, 4), &d), 0);
	CHECK(d == -42.0);
	CHECK_EQ(kura_json_double(kura_json_at(v, 8), &d), -ERANGE);
	CHECK_EQ(kura_json_double(kura_json_at(v, 9), &d), -ERANGE);
	CHECK_EQ(kura_json_double(kura_json_at(v, 10), &d), 0);
	CHECK(d == 0.0);
	CHECK_EQ(kura_json_double(NULL, &d), -EINVAL);
	kura_json_free(v);
}

TEST(test_json_number_grammar)
{
	static const char *const good[] = { "0", "-0", "0.5", "-0.5", "1E+2", "1e-2", "12.34e5",
					    "[0,1]", "1 " };
	static const char *const nums[] = { "01", "-", "+1", ".5", "1.", "1e", "1e+", "-01",
					    "0x10", "NaN", "Infinity", "-Infinity", "1.e3",
					    "--1", "[01]", "1e5.5", "- 1" };

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		kura_json_free(ok(good[i]));
	for (size_t i = 0; i < sizeof(nums) / sizeof(nums[0]); i++)
		CHECK_EQ(bad(nums[i]), -EINVAL);
}

TEST(test_json_rejects_non_rfc_syntax)
{
	static const char *const texts[] = {
		"", " ", "[1,]", "{\"a\":1,}", "[1 2]", "{\"a\" 1}", "{\"a\":}", "{a:1}",
		"{'a':1}", "// c\n1", "/* c */ 1", "[", "]", "{", "}", "{\"a\"}", "[,1]",
		"{,}", "tru", "truex", "nul", "False", "[] []", "{}x", "\"a\" \"b\"", "[1]]",
		"\xef\xbb\xbf[]", "\v1", "\f1", "[1,,2]", "{\"a\":1 \"b\":2}", "{1:2}",
	};

	for (size_t i = 0; i < sizeof(texts) / sizeof(texts[0]); i++)
		CHECK_EQ(bad(texts[i]), -EINVAL);
	kura_json_free(ok(" \t\r\n[ \t\r\n1 \t\r\n, {\"a\" \t: 2 } ] \t\r\n"));
}

TEST(test_json_error_message_has_offset)
{
	struct kura_json *v;
	char tiny[8];

	CHECK(!strcmp(why_bad("{\"a\":1,\"b\" 2}"), "expected ':' at byte 11"));
	CHECK(!strcmp(why_bad("[1,2"), "expected ',' or ']' at byte 4"));
	CHECK(!strcmp(why_bad("{\"a\":1]"), "expected ',' or '}' at byte 6"));
	CHECK(!strcmp(why_bad("[1,]"), "expected value at byte 3"));
	CHECK(!strcmp(why_bad("[1,"), "unexpected end of input at byte 3"));
	CHECK(!strcmp(why_bad("{} 1"), "unexpected data after the value at byte 3"));
	CHECK(!strcmp(why_bad("[\"ab"), "unterminated string at byte 1"));
	CHECK(!strcmp(why_bad("\"a\\qb\""), "invalid escape at byte 2"));
	/* a short or missing buffer truncates or drops the message, no more */
	CHECK_EQ(parse("[1,]", &v, tiny, sizeof(tiny)), -EINVAL);
	CHECK_EQ(strlen(tiny), sizeof(tiny) - 1);
	CHECK_EQ(parse("[1,]", &v, NULL, 0), -EINVAL);
	CHECK_EQ(kura_json_parse(NULL, 0, &v, NULL, 0), -EINVAL);
	CHECK_EQ(kura_json_parse(NULL, 5, &v, NULL, 0), -EINVAL);
}

TEST(test_json_depth_limit)
{
	char doc[4 * KURA_JSON_MAX_DEPTH + 16];
	struct kura_json *v;
	size_t n = 0;

	for (int i = 0; i < KURA_JSON_MAX_DEPTH; i++)
		n += (size_t)snprintf(doc + n, sizeof(doc) - n, "%s", i % 2 ? "[" : "{\"k\":");
	n += (size_t)snprintf(doc + n, sizeof(doc) - n, "1");
	for (int i = KURA_JSON_MAX_DEPTH - 1; i >= 0; i--)
		n += (size_t)snprintf(doc + n, sizeof(doc) - n, "%s", i % 2 ? "]" : "}");
	v = ok(doc);
	kura_json_free(v);

	memset(doc, '[', KURA_JSON_MAX_DEPTH + 1);
	memset(doc + KURA_JSON_MAX_DEPTH + 1, ']', KURA_JSON_MAX_DEPTH + 1);
	doc[2 * KURA_JSON_MAX_DEPTH + 2] = '\0';
	CHECK(strstr(why_bad(doc), "nesting"));
	doc[2 * KURA_JSON_MAX_DEPTH + 1] = '\0';
	memmove(doc, doc + 1, strlen(doc));
	kura_json_free(ok(doc));
}

TEST(test_json_deep_garbage_does_not_recurse)
{
	size_t n = 1 << 20;
	char *doc = malloc(n);
	char why[128];

	CHECK(doc);
	memset(doc, '[', n);
	CHECK_EQ(bad_bytes(doc, n, why, sizeof(why)), -EINVAL);
	for (size_t i = 0; i + 5 <= n; i += 5)
		memcpy(doc + i, "{\"a\":", 5);
	CHECK_EQ(bad_bytes(doc, n, why, sizeof(why)), -EINVAL);
	CHECK(strstr(why, "nesting"));
	free(doc);
}

TEST(test_json_duplicate_keys)
{
	char doc[16384];
	struct kura_json *v;
	size_t n = 0;

	CHECK(!strcmp(why_bad("{\"a\":1,\"a\":2}"), "duplicate key at byte 7"));
	CHECK(!strcmp(why_bad("{\"b\":1,\"a\":2,\"b\":3,\"a\":4}"), "duplicate key at byte 13"));
	CHECK_EQ(bad("{\"a\":1,\"\\u0061\":2}"), -EINVAL);
	CHECK_EQ(bad("[{\"x\":{\"a\":1,\"a\":1}}]"), -EINVAL);
	v = ok("{\"a\":{\"a\":1},\"b\":{\"a\":2},\"A\":3,\"a \":4}");
	kura_json_free(v);

	/* many keys: order kept; a late duplicate is still found */
	n += (size_t)snprintf(doc + n, sizeof(doc) - n, "{");
	for (int i = 999; i >= 0; i--)
		n += (size_t)snprintf(doc + n, sizeof(doc) - n, "\"k%d\":%d,", i, i);
	doc[n - 1] = '}';
	v = ok(doc);
	CHECK_EQ(kura_json_len(v), 1000);
	for (size_t i = 0; i < 1000; i++) {
		char key[16];
		uint64_t u;

		snprintf(key, sizeof(key), "k%zu", 999 - i);
		CHECK(!strcmp(kura_json_key_at(v, i), key));
		CHECK_EQ(kura_json_u64(kura_json_at(v, i), &u), 0);
		CHECK_EQ(u, 999 - i);
	}
	kura_json_free(v);
	snprintf(doc + n - 1, sizeof(doc) - (n - 1), ",\"k500\":0}");
	CHECK_EQ(bad(doc), -EINVAL);
}

static const char sample[] =
	"{\"name\":\"vd\\u00e9 \\\"1\\\"\\n\",\"size\":18446744073709551615,\"neg\":-12,"
	"\"f\":-2.5e-3,\"ok\":true,\"no\":false,\"z\":null,\"emoji\":\"\\ud83d\\ude00\xc3\xa9\","
	"\"arr\":[[],{},[1,[2,{\"x\":[null]}]],\"\"],\"deep\":{\"a\":{\"b\":{\"c\":0}}}}";

TEST(test_json_every_prefix_fails_cleanly)
{
	char why[128];
	struct kura_json *v = ok(sample);

	kura_json_free(v);
	for (size_t len = 0; len < sizeof(sample) - 1; len++)
		CHECK_EQ(bad_bytes(sample, len, why, sizeof(why)), -EINVAL);
}

/* xorshift: a fixed sequence, so a failure reproduces */
static uint32_t rnd(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void parse_any(const char *text, size_t len)
{
	char *copy = malloc(len ? len : 1);
	struct kura_json *v;
	char why[64];
	int err;

	CHECK(copy);
	memcpy(copy, text, len);
	err = kura_json_parse(copy, len, &v, why, sizeof(why));
	CHECK(err == 0 || err == -EINVAL);
	if (!err)
		kura_json_free(v);
	free(copy);
}

TEST(test_json_garbage_never_crashes)
{
	static const char alphabet[] = "{}[]:,\"\\u0123456789abcdefABCDEF-+.eEtruefalsenull \n\t";
	size_t n = sizeof(sample) - 1;
	char buf[sizeof(sample)];
	uint32_t seed = 12345;

	for (int round = 0; round < 20000; round++) {
		size_t len = rnd(&seed) % 64;

		for (size_t i = 0; i < len; i++) {
			uint32_t r = rnd(&seed);

			buf[i] = round % 2 ? (char)r : alphabet[r % (sizeof(alphabet) - 1)];
		}
		parse_any(buf, len);
	}
	/* the sample with a few bytes changed, to reach the deeper paths */
	for (int round = 0; round < 20000; round++) {
		memcpy(buf, sample, n);
		for (int k = 0; k < 1 + round % 3; k++)
			buf[rnd(&seed) % n] = (char)rnd(&seed);
		parse_any(buf, n);
	}
}

TEST(test_json_writer_all_types)
{
	struct kura_jw w;

	kura_jw_init(&w);
	kura_jw_obj(&w, NULL);
	kura_jw_str(&w, "s", "v");
	kura_jw_str(&w, "n", NULL);
	kura_jw_u64(&w, "u", UINT64_MAX);
	kura_jw_i64(&w, "i", INT64_MIN);
	kura_jw_double(&w, "d", 0.5);
	kura_jw_bool(&w, "t", 1);
	kura_jw_bool(&w, "f", 0);
	kura_jw_null(&w, "z");
	kura_jw_arr(&w, "a");
	kura_jw_u64(&w, NULL, 1);
	kura_jw_obj(&w, NULL);
	kura_jw_end(&w);
	kura_jw_arr(&w, NULL);
	kura_jw_end(&w);
	kura_jw_end(&w);
	kura_jw_obj(&w, "o");
	kura_jw_end(&w);
	kura_jw_end(&w);
	CHECK(!strcmp(finish(&w), "{\"s\":\"v\",\"n\":null,\"u\":18446744073709551615,"
				  "\"i\":-9223372036854775808,\"d\":0.5,\"t\":true,\"f\":false,"
				  "\"z\":null,\"a\":[1,{},[]],\"o\":{}}"));
	kura_jw_free(&w);

	kura_jw_init(&w);
	kura_jw_str(&w, NULL, "top");
	CHECK(!strcmp(finish(&w), "\"top\""));
	kura_jw_free(&w);
}

TEST(test_json_writer_escapes_and_parses_back)
{
	char all[160], *p = all;
	struct kura_jw w;
	struct kura_json *v;
	const char *out;

	for (int c = 1; c < 0x20; c++)
		*p++ = (char)c;
	p += snprintf(p, sizeof(all) - (size_t)(p - all), "\"\\/ plain \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x7f");
	*p = '\0';
	kura_jw_init(&w);
	kura_jw_obj(&w, NULL);
	kura_jw_str(&w, all, all);
	kura_jw_str(&w, "tabs", "a\tb\nc\rd\be\ff\x01g\x1f");
	kura_jw_end(&w);
	out = finish(&w);
	CHECK(strstr(out, "\"a\\tb\\nc\\rd\\be\\ff\\u0001g\\u001f\""));
	CHECK(strstr(out, "\\\"\\\\/ plain "));
	v = ok(out);
	CHECK_EQ(kura_json_len(v), 2);
	CHECK(!strcmp(kura_json_key_at(v, 0), all));
	CHECK(!strcmp(kura_json_str(kura_json_at(v, 0)), all));
	CHECK(!strcmp(kura_json_str(kura_json_get(v, "tabs")), "a\tb\nc\rd\be\ff\x01g\x1f"));
	kura_json_free(v);
	kura_jw_free(&w);

	/* bytes that are not UTF-8 must not make the output unparseable */
	kura_jw_init(&w);
	kura_jw_arr(&w, NULL);
	kura_jw_str(&w, NULL, "a\xff" "b\xe2\x82");
	kura_jw_end(&w);
	out = finish(&w);
	CHECK(!strcmp(out, "[\"a\xef\xbf\xbd" "b\xef\xbf\xbd\xef\xbf\xbd\"]"));
	kura_json_free(ok(out));
	kura_jw_free(&w);
}

TEST(test_json_writer_doubles)
{
	static const double vals[] = { 0.1, -2.5, 1e300, -1e-300, 3.0, 1e17, 123456789.125,
				       4.9e-324, 1.7976931348623157e308 };
	struct kura_jw w;
	struct kura_json *v;
	double d;

	kura_jw_init(&w);
	kura_jw_arr(&w, NULL);
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++)
		kura_jw_double(&w, NULL, vals[i]);
	kura_jw_double(&w, NULL, NAN);
	kura_jw_double(&w, NULL, INFINITY);
	kura_jw_double(&w, NULL, -INFINITY);
	kura_jw_double(&w, NULL, -7.0);
	kura_jw_end(&w);
	v = ok(finish(&w));
	for (size_t i = 0; i < sizeof(vals) / sizeof(vals[0]); i++) {
		CHECK_EQ(kura_json_double(kura_json_at(v, i), &d), 0);
		CHECK(d == vals[i]);
	}
	CHECK(strstr(finish(&w), ",3,100000000000000000,"));
	CHECK(strstr(finish(&w), ",null,null,null,-7]"));
	kura_json_free(v);
	kura_jw_free(&w);
}

static void check_misuse(struct kura_jw *w)
{
	CHECK_EQ(w->err, -EINVAL);
	CHECK(!kura_jw_finish(w, NULL));
	kura_jw_free(w);
	kura_jw_init(w);
}

TEST(test_json_writer_misuse_sets_error)
{
	struct kura_jw w;

	kura_jw_init(&w);
	CHECK(!kura_jw_finish(&w, NULL)); /* nothing written */
	kura_jw_u64(&w, "k", 1);          /* key at the top level */
	check_misuse(&w);
	kura_jw_obj(&w, NULL);
	kura_jw_u64(&w, NULL, 1);         /* no key in an object */
	check_misuse(&w);
	kura_jw_arr(&w, NULL);
	kura_jw_str(&w, "k", "v");        /* key in an array */
	check_misuse(&w);
	kura_jw_arr(&w, NULL);
	kura_jw_obj(&w, "k");
	check_misuse(&w);
	kura_jw_null(&w, NULL);
	kura_jw_null(&w, NULL);           /* two top-level values */
	check_misuse(&w);
	kura_jw_end(&w);                  /* nothing open */
	check_misuse(&w);
	kura_jw_arr(&w, NULL);
	kura_jw_end(&w);
	kura_jw_end(&w);
	check_misuse(&w);

	/* an error sticks; later calls change nothing */
	kura_jw_obj(&w, NULL);
	kura_jw_bool(&w, NULL, 1);
	kura_jw_u64(&w, "k", 1);
	kura_jw_end(&w);
	CHECK_EQ(w.len, 1);
	check_misuse(&w);

	/* unclosed is no value, but not an error either */
	kura_jw_obj(&w, NULL);
	CHECK(!kura_jw_finish(&w, NULL));
	CHECK_EQ(w.err, 0);
	kura_jw_free(&w);
}

TEST(test_json_writer_depth_limit)
{
	struct kura_jw w;
	struct kura_json *v;

	kura_jw_init(&w);
	for (int i = 0; i < KURA_JSON_MAX_DEPTH; i++)
		kura_jw_arr(&w, NULL);
	for (int i = 0; i < KURA_JSON_MAX_DEPTH; i++)
		kura_jw_end(&w);
	v = ok(finish(&w));
	kura_json_free(v);
	kura_jw_free(&w);

	kura_jw_init(&w);
	for (int i = 0; i <= KURA_JSON_MAX_DEPTH; i++)
		kura_jw_arr(&w, NULL);
	check_misuse(&w);
	kura_jw_free(&w);
}

/* Writes v back with the writer: numbers go through the typed readers, so a
 * round trip also checks that they read what was written. */
static void emit(struct kura_jw *w, const char *key, const struct kura_json *v)
{
	uint64_t u;
	int64_t i;
	double d;
	int b;

	switch (kura_json_type(v)) {
	case KURA_JSON_NULL: kura_jw_null(w, key); break;
	case KURA_JSON_BOOL: kura_json_bool(v, &b); kura_jw_bool(w, key, b); break;
	case KURA_JSON_STR: kura_jw_str(w, key, kura_json_str(v)); break;
	case KURA_JSON_NUM:
		if (!kura_json_u64(v, &u))
			kura_jw_u64(w, key, u);
		else if (!kura_json_i64(v, &i))
			kura_jw_i64(w, key, i);
		else if (!kura_json_double(v, &d))
			kura_jw_double(w, key, d);
		break;
	case KURA_JSON_ARR:
	case KURA_JSON_OBJ:
		if (kura_json_type(v) == KURA_JSON_ARR)
			kura_jw_arr(w, key);
		else
			kura_jw_obj(w, key);
		for (size_t n = 0; n < kura_json_len(v); n++)
			emit(w, kura_json_key_at(v, n), kura_json_at(v, n));
		kura_jw_end(w);
		break;
	}
}

static void round_trip(const char *in, const char *want)
{
	struct kura_json *v = ok(in);
	struct kura_jw w;

	kura_jw_init(&w);
	emit(&w, NULL, v);
	if (strcmp(finish(&w), want)) {
		fprintf(stderr, "  %s\n  became %s\n  not     %s\n", in, finish(&w), want);
		exit(1);
	}
	kura_json_free(v);
	kura_jw_free(&w);
}

TEST(test_json_round_trips)
{
	round_trip(sample,
		   "{\"name\":\"vd\xc3\xa9 \\\"1\\\"\\n\",\"size\":18446744073709551615,"
		   "\"neg\":-12,"
		   "\"f\":-0.0025000000000000001,\"ok\":true,\"no\":false,\"z\":null,"
		   "\"emoji\":\"\xf0\x9f\x98\x80\xc3\xa9\","
		   "\"arr\":[[],{},[1,[2,{\"x\":[null]}]],\"\"],"
		   "\"deep\":{\"a\":{\"b\":{\"c\":0}}}}");
	round_trip(" [ 1 , -1 , 0.5 , \"\\u001f\" ] ", "[1,-1,0.5,\"\\u001f\"]");
	round_trip("\"\\/\"", "\"/\"");
	round_trip("-9223372036854775808", "-9223372036854775808");
	round_trip("{}", "{}");
}

TEST(test_json_writer_grows_and_keeps_room_for_nul)
{
	struct kura_jw w;
	struct kura_json *v;
	size_t len;
	const char *s;

	kura_jw_init(&w);
	kura_jw_arr(&w, NULL);
	for (uint64_t i = 0; i < 100000; i++)
		kura_jw_u64(&w, NULL, i);
	kura_jw_end(&w);
	s = kura_jw_finish(&w, &len);
	CHECK(s);
	CHECK_EQ(len, strlen(s));
	CHECK(len < w.cap); /* blockd turns the NUL into a newline */
	v = ok(s);
	CHECK_EQ(kura_json_len(v), 100000);
	kura_json_free(v);
	kura_jw_free(&w);
	CHECK(!w.buf);
}
