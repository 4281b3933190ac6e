#include "common/base64.h"
#include "tests/unit/harness.h"

#include <stdint.h>

static long dec(const char *s, char *out)
{
	return kura_b64_decode(s, strlen(s), out);
}

/* RFC 4648 section 10 */
TEST(test_b64_rfc4648_vectors)
{
	static const char *const v[][2] = {
		{ "", "" },
		{ "f", "Zg==" },
		{ "fo", "Zm8=" },
		{ "foo", "Zm9v" },
		{ "foob", "Zm9vYg==" },
		{ "fooba", "Zm9vYmE=" },
		{ "foobar", "Zm9vYmFy" },
	};
	char enc[KURA_B64_ENC_LEN(6)], out[KURA_B64_DEC_LEN(8)];

	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		CHECK_EQ(kura_b64_encode(v[i][0], strlen(v[i][0]), enc), strlen(v[i][1]));
		CHECK(strcmp(enc, v[i][1]) == 0);
		CHECK_EQ(dec(v[i][1], out), strlen(v[i][0]));
		CHECK(strcmp(out, v[i][0]) == 0);
	}
}

/* Every length from 0 to 64, random bytes (NULs and 0xff included), with a
 * guard byte after each buffer to catch writes past the documented sizes. */
TEST(test_b64_round_trips_every_length)
{
	uint64_t x = 0x9e3779b97f4a7c15ull;

	for (size_t len = 0; len <= 64; len++) {
		for (int rep = 0; rep < 50; rep++) {
			uint8_t in[64], back[KURA_B64_DEC_LEN(KURA_B64_ENC_LEN(64)) + 1];
			char enc[KURA_B64_ENC_LEN(64) + 1];
			size_t n;

			for (size_t i = 0; i < len; i++) {
				x ^= x << 13, x ^= x >> 7, x ^= x << 17;
				in[i] = (uint8_t)x;
			}
			if (rep == 0)
				memset(in, 0, len);
			enc[KURA_B64_ENC_LEN(len)] = '#';
			n = kura_b64_encode(in, len, enc);
			CHECK_EQ(n + 1, KURA_B64_ENC_LEN(len));
			CHECK_EQ(enc[n], '\0');
			CHECK_EQ(enc[n + 1], '#');
			back[KURA_B64_DEC_LEN(n)] = 0xa5;
			CHECK_EQ(kura_b64_decode(enc, n, back), len);
			CHECK(memcmp(back, in, len) == 0);
			CHECK_EQ(back[len], 0);
			CHECK_EQ(back[KURA_B64_DEC_LEN(n)], 0xa5);
		}
	}
}

TEST(test_b64_rejects_non_canonical_input)
{
	static const char *const bad[] = {
		/* length not a multiple of 4 */
		"Zg", "Zg=", "Zm9vY", "Zm9vYmF",
		/* padding before the end, or where a byte would be cut in two */
		"Zg==Zg==", "Zm8=Zm9v", "Z===", "====", "=Zm9", "Z=g=", "Zg=a",
		/* non-zero bits under the padding */
		"Zh==", "Zm9=", "Zm+=",
		/* outside the alphabet (URL-safe base64 included) */
		"Zm9v\n", "Zm 9v", "Zm-9", "Zm_9", "Zm9\x80",
	};
	char out[64];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		if (dec(bad[i], out) != -1) {
			fprintf(stderr, "  accepted \"%s\"\n", bad[i]);
			CHECK(0);
		}
	}
	CHECK_EQ(kura_b64_decode("Zm9v\0\0\0\0", 8, out), -1); /* NUL is not base64 */
	/* the canonical neighbours of the rejected padding cases are accepted */
	CHECK_EQ(dec("Zg==", out), 1);
	CHECK_EQ(dec("Zm8=", out), 2);
	CHECK_EQ(dec("+/+/", out), 3);
	CHECK_EQ((unsigned char)out[0], 0xfb);
}
