/* crc32c (Castagnoli, the iSCSI polynomial) through ISA-L. Any thread. */
#ifndef KURA_COMMON_CRC_H
#define KURA_COMMON_CRC_H

#include <isa-l/crc.h>
#include <stddef.h>
#include <stdint.h>

static inline uint32_t kura_crc32c(uint32_t seed, const void *buf, size_t len)
{
	return crc32_iscsi((unsigned char *)buf, (int)len, seed);
}

#endif
