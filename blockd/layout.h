/* On-disk formats of a kura disk. All integers little-endian (x86-64 and
 * aarch64 hosts; a big-endian host is refused at build time).
 *
 * A disk:
 *   [0, 4 KiB)           superblock (struct kura_sb)
 *   [1 MiB, +journal)    journal ring of batches (struct kura_jhdr + data pages)
 *   [crc_off, +crc_len)  checksum table: 256 crc32c per physical extent,
 *                        1 KiB per extent, 4 extents per 4 KiB page
 *   [data_off, ...)      data extents of 1 MiB
 *
 * The superblock is written once, at format. Where the journal's live part
 * starts is recorded in RocksDB ('J' keys) at each checkpoint, so nothing on
 * the disk is rewritten in place except data, checksum pages and journal.
 */
#ifndef KURA_BLOCKD_LAYOUT_H
#define KURA_BLOCKD_LAYOUT_H

#include <stdint.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "kura's on-disk format is little-endian"
#endif

#define KURA_FORMAT_VERSION 1u
#define KURA_SB_MAGIC 0x4b53494441525543ull   /* "CURADISK" read as LE bytes */
#define KURA_JHDR_MAGIC 0x4c4e524a41525543ull /* "CURAJRNL" */
#define KURA_JOURNAL_OFF (1u << 20)
#define KURA_CRC_PER_PAGE_EXTENTS 4u
#define KURA_MAX_BATCH_DATA (4u << 20)   /* data bytes in one journal batch */
#define KURA_MAX_BATCH_HDR (64u << 10)   /* header bytes in one journal batch */

struct kura_sb {
	uint64_t magic;
	uint32_t format;
	uint32_t sb_size;       /* sizeof(struct kura_sb) */
	uint8_t store_uuid[16];
	uint8_t disk_uuid[16];
	uint32_t disk_index;
	uint32_t block_size;
	uint32_t extent_size;
	uint32_t pad;
	uint64_t disk_size;
	uint64_t journal_off, journal_len;
	uint64_t crc_off, crc_len;
	uint64_t data_off, nextents;
	uint64_t journal_nonce; /* tags batches of this disk's journal */
	uint8_t reserved[3964];
	uint32_t crc;           /* crc32c of the bytes before it */
};
_Static_assert(sizeof(struct kura_sb) == 4096, "superblock is one page");

enum kura_jrec_type {
	KURA_JREC_WRITE = 1, /* data blocks; allocates the extent at loc if new */
	KURA_JREC_TRIM = 2,  /* clears blocks; frees the extent when none remain */
	KURA_JREC_FREE = 3,  /* frees the extent */
	KURA_JREC_MOVE = 4,  /* renames the extent to (arg_layer, arg_ext) */
	KURA_JREC_DWRITE = 5, /* like WRITE, but the blocks were written in place
			       * (durably) before the record: no data pages */
};

/* A journal batch: one header (hdr_pages pages: struct kura_jhdr, then nrec
 * records), then data_pages pages of block data. It is valid when magic,
 * nonce, seq and hdr_crc match and every data block matches its record's
 * crc; the first invalid batch ends the journal. */
struct kura_jhdr {
	uint64_t magic;
	uint64_t nonce;
	uint64_t seq;
	uint32_t hdr_pages;
	uint32_t data_pages;
	uint32_t nrec;
	uint32_t hdr_crc; /* crc32c of the header pages with this field zero */
	uint64_t hdr_bytes;
};

struct kura_jrec {
	uint16_t type;
	uint16_t blk;
	uint16_t nblk;
	uint16_t pad;
	uint32_t loc;       /* physical extent (WRITE, DWRITE) */
	uint32_t data_page; /* first data page of this record in the batch (WRITE) */
	uint64_t layer, ext;
	uint64_t version;   /* WRITE, DWRITE */
	uint64_t arg_layer, arg_ext; /* MOVE */
	/* WRITE, DWRITE: uint32_t crc[nblk] follows */
};

static inline int kura_jrec_has_crcs(const struct kura_jrec *r)
{
	return r->type == KURA_JREC_WRITE || r->type == KURA_JREC_DWRITE;
}

/* Records are padded to 8 bytes so that the next one is aligned. */
static inline uint32_t kura_jrec_size(const struct kura_jrec *r)
{
	uint32_t n = (uint32_t)(sizeof(*r) + (kura_jrec_has_crcs(r) ? 4u * r->nblk : 0u));
	return (n + 7u) & ~7u;
}

#endif
