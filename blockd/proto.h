/* The store protocol: the store's API over a stream socket: blockd's unix
 * socket, and the node-to-node TCP links of a cluster (blockd --listen).
 * Little-endian, fixed headers.
 *
 * A client sends requests and may pipeline them; each carries a tag that the
 * response echoes. Responses may come in any order. A request is 64 bytes,
 * followed by data_len bytes (WRITE only: nblk * 4096). A response is 24
 * bytes, followed by data_len bytes (READ: the blocks; INFO: a
 * struct kura_proto_info; LIST: uint64 extent numbers; STATS: JSON text).
 *
 * Validation: a request with a bad magic, unknown op, non-zero flags or a
 * data_len that does not match its op is a framing error: the server logs it
 * and closes that connection. A well-framed request with bad fields (range,
 * class) is answered with status -EINVAL. Status is 0 or -errno (kura codes
 * from common/err.h included).
 */
#ifndef KURA_BLOCKD_PROTO_H
#define KURA_BLOCKD_PROTO_H

#include <stdint.h>

#define KURA_PROTO_MAGIC 0x3152554bu /* "KUR1" */
#define KURA_PROTO_RESP_MAGIC 0x3153554bu /* "KUS1" */

enum kura_proto_op {
	KURA_OP_READ = 1,
	KURA_OP_WRITE = 2,
	KURA_OP_TRIM = 3,
	KURA_OP_FREE = 4,
	KURA_OP_MOVE = 5,
	KURA_OP_FLUSH = 6,
	KURA_OP_INFO = 7,
	KURA_OP_LIST = 8,
	KURA_OP_STATS = 9,
	KURA_OP_HELLO = 10,
	KURA_OP_SYNC = 11,
	KURA_OP_GLIST = 12,
	KURA_OP_PLIST = 13,
	KURA_OP_FWD = 14,
	KURA_OP_MAX = 14
};

/* flags: on node links only, on WRITE and FREE only, one at a time (a
 * FREE has no blocks and no data), and F_PRIMARY on READ. */
#define KURA_PROTO_F_PRIMARY 1u /* "you are the group's primary: replicate it"; on a
				 * READ: "... read another member's copy when
				 * yours fails"; without it a READ on a link
				 * reads the receiver's own copy */
#define KURA_PROTO_F_REPLICA 2u /* "your copy, version from the primary": applied
				 * only when newer (kura_blk_write_replica) */

struct kura_proto_req {
	uint32_t magic;
	uint16_t op;
	uint8_t cls;
	uint8_t flags;
	uint64_t tag;
	uint64_t layer;
	uint64_t ext;
	uint16_t blk;
	uint16_t nblk;
	uint32_t data_len;
	uint64_t version;
	uint64_t arg_layer; /* MOVE: destination; WRITE and FREE on node links: the
			     * map epoch the sender sent it under as the
			     * group's primary or sync source */
	uint64_t arg_ext;   /* MOVE: destination; WRITE flagged F_REPLICA: the
			     * version the primary's extent had before it (0:
			     * none, or freed; kura_blk_write_replica) */
};
_Static_assert(sizeof(struct kura_proto_req) == 64, "request header is 64 bytes");

struct kura_proto_resp {
	uint32_t magic;
	int32_t status;
	uint64_t tag;
	uint32_t data_len;
	uint32_t flags; /* KURA_PROTO_RF_*: on node links only; zero elsewhere */
};
/* The answering node's store is low on space (kura_blk_space_low): a
 * group's primary sends it no write that needs a new extent for a while
 * (replication/rep.h, "Space"). */
#define KURA_PROTO_RF_LOW_SPACE 1u
_Static_assert(sizeof(struct kura_proto_resp) == 24, "response header is 24 bytes");

struct kura_proto_info {
	uint64_t version;
	uint32_t disk, nblocks;
	uint64_t present[4];
};

/* HELLO: on a node-to-node link, the first request, and only there; its
 * data is a struct kura_proto_hello naming the sender, and the answer's data
 * names the receiver. A link whose cluster ids differ is refused (status
 * -EXDEV, then closed); any other request first, a second HELLO, or a HELLO
 * on the local socket is a framing error. Strings are NUL-padded. */
#define KURA_PROTO_VERSION 5u /* 2: FREE and PLIST between nodes, versions in write
			       * answers; 3: READ flagged F_PRIMARY, answers'
			       * flags; 4: FWD; 5: a replica's copy names the
			       * version it follows */
struct kura_proto_hello {
	uint32_t version;     /* KURA_PROTO_VERSION */
	uint32_t pad;         /* zero */
	uint64_t epoch;       /* the newest map epoch the sender holds */
	char cluster_id[40];  /* 36 characters of UUID text, then NULs */
	char node[64];        /* the sender's node name, NUL-terminated */
	uint64_t reserved;    /* zero */
};
_Static_assert(sizeof(struct kura_proto_hello) == 128, "hello is 128 bytes");

/* SYNC: on node links only, from a node that is behind to a group's sync
 * source (replication/rep.h, "Resync"): "bring my copy of group pg up to
 * date over [from, to); here is what I hold there". The data is a struct
 * kura_proto_sync and n entries, ascending by (layer, ext), each in [from,
 * to) and in group pg. The source answers once it has copied (over its own
 * link to the sender) what the sender lacks of a part of the range, with a
 * struct kura_proto_sync_result saying where the next request starts.
 * -EREMOTE: the source's map does not make it the group's source or the
 * sender a member (the maps differ; the sender asks again). -EINVAL: the
 * data breaks the rules above. budget: the most extents the source sends
 * or frees for this request (1 to KURA_PROTO_SYNC_BUDGET; 0: that many);
 * a node whose rebuild is paced asks for fewer at a time, so that what
 * one request moves stays within what its pacing allows. */
#define KURA_PROTO_SYNC_MAX 4096u /* entries per request */
#define KURA_PROTO_SYNC_BUDGET 16u
struct kura_proto_sync {
	uint32_t pg;
	uint32_t n;
	uint64_t from_layer, from_ext; /* inclusive */
	uint64_t to_layer, to_ext;     /* exclusive; all ones: to the end */
	uint32_t budget;               /* extents sent or freed at most (0: all 16) */
	uint32_t reserved;             /* zero */
};
_Static_assert(sizeof(struct kura_proto_sync) == 48, "sync header is 48 bytes");
struct kura_proto_sync_ent {
	uint64_t layer, ext, version;
};
struct kura_proto_sync_result {
	uint64_t checked;      /* extents compared */
	uint64_t copied;       /* extents sent whole */
	uint64_t copied_bytes; /* their present blocks' bytes */
	uint64_t freed;        /* extents the sender held and the source does not */
	uint64_t next_layer, next_ext; /* the rest of the range starts here */
	uint32_t done;         /* 1: nothing of the range is left */
	uint32_t stream;       /* the source's stream to the sender: another value
				* than before means it began again (the sender may
				* have missed writes meanwhile: it starts the group
				* over) */
};
_Static_assert(sizeof(struct kura_proto_sync_result) == 56, "sync result is 56 bytes");

/* GLIST: on node links only, from a group's new primary to a member it
 * peers with (replication/rep.h, "Peering"): "list what you hold of group
 * arg_layer from (layer, ext) on; my map's epoch is version". No data; the
 * answer, once what the member took before is in its index, is a struct
 * kura_proto_sync (pg, n, from, to: where the list stops, all ones when it
 * holds all the rest) and n entries, at most KURA_PROTO_SYNC_MAX.
 * -EINVAL: pg or ext out of range; -EHOSTDOWN: no map yet; -EAGAIN: the
 * member's map is older than the asker's (it asks again). */

/* PLIST: on node links only, to a group's primary, from a node serving
 * vdisks (replication/vdblk.h): like GLIST, with each entry's present
 * blocks; only extents of layers >= layer are listed and only the group's
 * primary answers (-EREMOTE otherwise, -EAGAIN while it peers the group).
 * Entries: struct kura_proto_plist_ent, at most KURA_PROTO_PLIST_MAX. */
struct kura_proto_plist_ent {
	uint64_t layer, ext, version;
	uint64_t present[4]; /* bit i: block i of the extent holds data */
};
_Static_assert(sizeof(struct kura_proto_plist_ent) == 56, "plist entry is 56 bytes");
#define KURA_PROTO_PLIST_MAX 1024u

/* FWD: on node links only, to the node serving the vdisks: a frontend's
 * request forwarded from another node's frontend (iscsi-target/target.h,
 * "Forwarding"). Its data (1 to KURA_PROTO_FWD_MAX bytes) and the answer's
 * (at most the asker's buffer) are the frontend's own message format; the
 * store protocol only carries them. -EREMOTE: the receiver does not serve
 * the vdisks. */
#define KURA_PROTO_FWD_MAX ((8u << 20) + 4096u)

/* Checks framing: 0, or KURA_E_PROTO with a reason in *why. */
int kura_proto_check(const struct kura_proto_req *r, const char **why);

#endif
