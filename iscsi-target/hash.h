/* MD5 (RFC 1321) and SHA-256 (FIPS 180-4), one-shot over a list of pieces,
 * for CHAP. Pure functions, any thread. */
#ifndef KURA_ISCSI_HASH_H
#define KURA_ISCSI_HASH_H

#include <stddef.h>
#include <stdint.h>

struct kura_hash_piece {
	const void *p;
	size_t n;
};

void kura_md5(const struct kura_hash_piece *v, unsigned nv, uint8_t out[16]);
void kura_sha256(const struct kura_hash_piece *v, unsigned nv, uint8_t out[32]);

#endif
