/* base64 (RFC 4648 section 4); the contract is in base64.h.
 *
 * Decoding is strict so that one value has exactly one text: etcd's gateway
 * always writes canonical base64, and anything else in an answer means the
 * answer is not etcd's. */
#include "common/base64.h"

#include <stdint.h>

static const char alphabet[64] =
	"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t kura_b64_encode(const void *in, size_t len, char *out)
{
	const uint8_t *p = in;
	char *o = out;
	size_t i;

	for (i = 0; i + 3 <= len; i += 3) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
		*o++ = alphabet[v >> 18];
		*o++ = alphabet[(v >> 12) & 63];
		*o++ = alphabet[(v >> 6) & 63];
		*o++ = alphabet[v & 63];
	}
	if (len - i == 1) {
		uint32_t v = (uint32_t)p[i] << 16;
		*o++ = alphabet[v >> 18];
		*o++ = alphabet[(v >> 12) & 63];
		*o++ = '=';
		*o++ = '=';
	} else if (len - i == 2) {
		uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8;
		*o++ = alphabet[v >> 18];
		*o++ = alphabet[(v >> 12) & 63];
		*o++ = alphabet[(v >> 6) & 63];
		*o++ = '=';
	}
	*o = '\0';
	return (size_t)(o - out);
}

int kura_b64_sextet(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Decodes one quantum of four characters; returns the bytes written (1 to 3)
 * or -1. Padding is legal only in the last quantum (last says so), as "xx=="
 * or "xxx=", and the bits it leaves over must be zero. */
static int quantum(const unsigned char *s, int last, uint8_t *o)
{
	int a = kura_b64_sextet(s[0]), b = kura_b64_sextet(s[1]), c = kura_b64_sextet(s[2]),
	    d = kura_b64_sextet(s[3]);

	if (a < 0 || b < 0)
		return -1;
	if (c < 0 || d < 0) {
		if (!last || s[3] != '=')
			return -1;
		if (c < 0) {
			if (s[2] != '=' || (b & 15))
				return -1;
			o[0] = (uint8_t)(a << 2 | b >> 4);
			return 1;
		}
		if (c & 3)
			return -1;
		o[0] = (uint8_t)(a << 2 | b >> 4);
		o[1] = (uint8_t)((b & 15) << 4 | c >> 2);
		return 2;
	}
	o[0] = (uint8_t)(a << 2 | b >> 4);
	o[1] = (uint8_t)((b & 15) << 4 | c >> 2);
	o[2] = (uint8_t)((c & 3) << 6 | d);
	return 3;
}

long kura_b64_decode(const char *in, size_t len, void *out)
{
	const unsigned char *s = (const unsigned char *)in;
	uint8_t *o = out;
	size_t n = 0;

	if (len % 4)
		return -1;
	for (size_t i = 0; i < len; i += 4) {
		int r = quantum(s + i, i + 4 == len, o + n);
		if (r < 0)
			return -1;
		n += (size_t)r;
	}
	o[n] = '\0';
	return (long)n;
}
