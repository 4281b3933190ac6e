/* Inside the iSCSI target: the portal (portal.c: listener, targets, their
 * settings and LUs, control requests), connections (conn.c: framing,
 * digests, sending, login) and the full feature phase (ffp.c: commands,
 * R2T/Data-Out, Data-In, task management, NOP, text, logout).
 *
 * Sessions have one connection (we negotiate MaxConnections=1), so a
 * session's state lives in its connection. Everything runs on the portal's
 * loop thread.
 */
#ifndef KURA_ISCSI_ISCSI_INT_H
#define KURA_ISCSI_ISCSI_INT_H

#include <netinet/in.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "common/bufpool.h"
#include "common/log.h"
#include "iscsi-target/login.h"
#include "iscsi-target/pdu.h"
#include "iscsi-target/scsi.h"
#include "iscsi-target/target.h"

#define ISCSI_BUFPOOL_BYTES (2u << 20) /* freed Data-Out buffers kept, per size class */
#define ISCSI_WINDOW 128u          /* commands the initiator may queue (MaxCmdSN - ExpCmdSN + 1) */
#define ISCSI_MAX_AHS 1024u        /* bytes of AHS we accept (extended CDBs are not supported) */
#define ISCSI_RBUF (256u << 10)    /* receive buffer: headers and small data segments */
#define ISCSI_TX_HIGH (32u << 20)  /* queued send bytes above which we stop reading */
#define ISCSI_MAX_ACL 256u

/* A target: one vdisk or snapshot, its settings and, while sessions use
 * it, its open handle and LU. */
struct itgt {
	uint64_t uid;               /* vdisk id or snapshot layer id: the catalog key */
	char vname[KURA_VD_NAME_MAX + 1];
	char snap[KURA_VD_NAME_MAX + 1]; /* "" for the vdisk itself */
	char iqn[KURA_ISCSI_NAME_MAX + 1];
	/* Settings (catalog kind 'i'). */
	char **acl;
	unsigned nacl;
	struct kura_iscsi_target_auth auth;
	bool write_cache;           /* WCE: writes without FUA complete cached */
	char *pr_state;             /* catalog kind 'p' */
	/* Runtime. */
	struct kura_vd_handle *h;
	struct kura_scsi_lu *lu;
	uint64_t lu_size;           /* the size the LU reports; a resize shows as a change */
	unsigned nsess;             /* sessions logged in */
	struct kura_iscsi *portal;
	bool live;                  /* its vdisk or snapshot exists (start-up pruning; on
				     * a forwarding portal: in the serving node's list) */
	struct itgt *next;
};

struct fwd_out;
struct fwd_nexus;

/* Something to send: a header, optional data (pointing into a task's buffer
 * or owned by the item), padding and digests are added when queued. */
struct txpdu {
	uint8_t bhs[KURA_ISCSI_BHS];
	uint8_t hdig[4], ddig[4];
	uint8_t pad[4];
	const uint8_t *data;
	uint32_t dlen;
	uint8_t *owned;             /* freed after sending */
	struct itask *task;         /* reference held until sent */
	bool close_after;           /* close the connection once sent */
	struct iovec iov[5];
	unsigned niov;
	size_t len, off;
	struct txpdu *next;
};

enum itask_state { T_WAIT_SN, T_DATA_OUT, T_EXEC, T_DONE };

/* A SCSI command in a session. */
struct itask {
	struct iconn *c;
	uint32_t itt, cmdsn;
	uint8_t bhs[KURA_ISCSI_BHS];
	enum itask_state state;
	bool immediate;
	bool aborted;               /* by task management: no response is sent */
	bool in_lu;                 /* kura_scsi_exec called, done not yet run */
	bool kind_pdu;              /* a non-SCSI PDU waiting for its CmdSN (data in buf) */
	bool data_err;              /* a Data-Out out of sequence: the command fails */
	unsigned refs;              /* tx items pointing into it, plus one while live */
	uint32_t edtl;
	uint8_t *buf;               /* Data-Out, edtl bytes, 4 KiB aligned */
	uint32_t got;               /* Data-Out bytes received */
	uint32_t unsol_end;         /* first burst end: unsolicited data stops here */
	uint32_t r2t_next;          /* offset the next R2T asks for */
	unsigned r2t_out;           /* R2Ts outstanding */
	uint32_t ttt_base;          /* TTTs of this task's R2Ts: ttt_base + R2TSN */
	uint32_t r2tsn;
	uint32_t datasn_expect;     /* within the current sequence */
	struct kura_scsi_cmd cmd;
	struct itask *next;         /* connection's task list */
	struct itask *sn_next;      /* waiting-for-CmdSN queue */
	struct itmf *tmf;           /* a task management request waiting for this task */
};

/* A task management request waiting for the tasks it aborted. */
struct itmf {
	struct iconn *c;
	uint8_t bhs[KURA_ISCSI_BHS];
	unsigned waiting;
	uint8_t response;
	bool cold;                  /* TARGET COLD RESET: close after answering */
};

enum iconn_state { C_LOGIN, C_FULL, C_LOGOUT, C_CLOSING };

struct iconn {
	struct kura_iscsi *p;
	int fd;
	unsigned id;
	char peer[INET6_ADDRSTRLEN + 8];
	struct sockaddr_storage local;
	enum iconn_state state;
	struct kura_ratelimit rl;   /* protocol complaints in the log */

	/* Receive. */
	uint8_t *rbuf;
	uint32_t rpos, rlen;        /* unread bytes are rbuf[rpos, rpos+rlen) */
	struct kura_op rx_op;
	bool rx_armed, rx_paused;
	uint8_t cur[KURA_ISCSI_BHS]; /* the PDU being received */
	bool in_data;               /* its header is done; its data segment is coming */
	uint8_t *dst;               /* where its data goes */
	uint8_t *dseg;              /* a small segment's own buffer (owned) */
	uint32_t dneed, dhave, dtail; /* data bytes wanted / received; pad+digest after */
	struct itask *dtask;        /* Data-Out or immediate data target task (holds a reference) */
	struct itask *ntask;        /* the task a SCSI Command header just made */
	bool ddiscard;              /* data for a task that is gone: read and drop */
	uint8_t rej;                /* Reject reason for the PDU being received, 0 none */
	uint32_t dcrc;

	/* Send. */
	struct txpdu *txq, *txq_tail;
	struct kura_op tx_op;
	bool tx_armed;
	size_t tx_bytes;            /* queued, not yet sent */
	struct msghdr tx_msg;
	struct iovec tx_iov[64];
	struct txpdu *tx_batch[16];
	unsigned tx_nbatch;

	/* Login. */
	struct kura_iscsi_login *login;
	struct kura_iscsi_params prm;

	/* Session (full feature phase). */
	enum kura_iscsi_session_type type;
	char iname[KURA_ISCSI_NAME_MAX + 1];
	uint8_t isid[6];
	uint16_t tsih;
	uint16_t cid;
	struct itgt *tgt;
	struct kura_scsi_nexus nexus;
	struct kura_iscsi_text *text;
	uint32_t statsn, exp_cmdsn, max_cmdsn;
	struct itask *tasks;
	struct itask *snq;          /* commands waiting for CmdSN order, sorted */
	uint32_t next_ttt;
	uint64_t last_rx_ns, ping_ns, connected;
	uint32_t ping_ttt;          /* outstanding NOP-In ping, 0xffffffff none */
	uint8_t logout_bhs[KURA_ISCSI_BHS]; /* a logout waiting for commands in flight */
	unsigned in_lu;             /* tasks inside the LU */
	struct iconn *next, *prev;
};

struct kura_iscsi {
	struct kura_loop *loop;
	struct kura_vd_engine *vd;
	struct kura_cat *cat;
	char portal[80];
	bool listening, stopping;
	int lfd;
	struct kura_op accept_op;
	bool accept_armed;
	struct kura_timer timer;
	bool timer_armed;
	uint64_t nop_interval_ns, nop_timeout_ns;
	struct itgt *tgts;
	struct iconn *conns;
	unsigned nconns, next_conn_id;
	uint16_t next_tsih;
	uint64_t next_nexus;
	/* Forwarding (fwd.c). A forwarding portal: */
	const struct kura_iscsi_fwd *fwd; /* non-NULL on a forwarding portal */
	uint64_t incarnation;       /* random: tells this portal's nexus ids from a
				     * previous run's at the serving node */
	uint64_t next_fwd_id;
	bool dir_ok;                /* the last target list fetched arrived */
	unsigned fwd_pending;       /* messages to the serving node awaiting answers */
	struct fwd_out *outs;       /* commands forwarded, awaiting answers */
	/* The serving node's part: */
	struct fwd_nexus *rnexus;   /* sessions of forwarding portals */
	struct kura_bufpool bufs;   /* commands' Data-Out buffers */
	unsigned rcmds;             /* their commands in the LUs */
};

/* portal.c */
/* The target of vdisk name (snap NULL) or of its snapshot, made on first use;
 * NULL when there is no such vdisk or snapshot (or no memory). */
struct itgt *iscsi_tgt_get(struct kura_iscsi *p, const char *name, const char *snap);
void iscsi_tgt_free(struct itgt *t);
bool iscsi_acl_allows(const struct itgt *t, const char *iname);
/* The target named iqn for initiator iname: 0 and *out, -ENOENT, -EACCES. */
int iscsi_target_find(struct kura_iscsi *p, const char *iqn, const char *iname,
		      struct itgt **out);
/* A session logged in to t: opens the vdisk and the LU for the first one. */
int iscsi_target_attach(struct kura_iscsi *p, struct itgt *t);
/* A session left; the LU closes when no session and no command uses it. */
void iscsi_target_detach(struct kura_iscsi *p, struct itgt *t);
extern const struct kura_iscsi_login_ops iscsi_login_ops; /* ctx: the iconn */

/* Every target the portal can serve (the engine's vdisks and snapshots, or
 * on a forwarding portal the serving node's list), as kura_vd_each. */
int iscsi_each(struct kura_iscsi *p,
	       int (*fn)(void *arg, const char *name, const char *snap, uint64_t uid,
			 uint64_t size),
	       void *arg);
/* Before a command runs on t's LU: a vdisk resized underneath shows as a
 * unit attention. */
void iscsi_target_sync_size(struct itgt *t);
struct itgt *iscsi_tgt_by_uid(struct kura_iscsi *p, uint64_t uid);
/* A forwarding portal's target list: the target uid, named name (and snap),
 * made when new; NULL without memory. */
struct itgt *iscsi_tgt_put(struct kura_iscsi *p, uint64_t uid, const char *name,
			   const char *snap);
/* ... and forgets the targets no longer listed (live false) that no
 * session uses. */
void iscsi_tgt_prune(struct kura_iscsi *p);

/* config.c: settings as catalog JSON, and the control requests. */
int iscsi_settings_parse(struct itgt *t, const char *val);
char *iscsi_settings_json(char **acl, unsigned nacl, const struct kura_iscsi_target_auth *a,
			  bool write_cache);

/* fwd.c */
extern const struct kura_scsi_fwd_ops iscsi_fwd_lu_ops; /* ctx: the itgt */
/* A connection arrived at a forwarding portal: fetches the target list,
 * then hands fd to iscsi_conn_accept. */
void iscsi_fwd_accept(struct kura_iscsi *p, int fd);
/* The portal stops: the serving node's part ends every forwarded session
 * (each goes once its commands are done). */
void iscsi_fwd_end_all(struct kura_iscsi *p);
/* The serving node's forwarded sessions to t: their count, and each as an
 * object into w's open array (w may be NULL). */
unsigned iscsi_fwd_sessions(struct kura_iscsi *p, const struct itgt *t, struct kura_jw *w);

/* conn.c */
void iscsi_conn_accept(struct kura_iscsi *p, int fd);
void iscsi_conn_close(struct iconn *c, const char *why);
/* A rate-limited warning about what this connection's peer sent. */
void iscsi_conn_warn(struct iconn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void iscsi_conn_maybe_free(struct iconn *c);
/* Queues a PDU; data (dlen bytes) must stay valid until sent: it points into
 * task (which gets a reference) or into owned (freed after sending). Fills
 * digests and padding. */
void iscsi_send(struct iconn *c, struct txpdu *t);
struct txpdu *iscsi_txpdu(uint8_t opcode);
void iscsi_conn_resume_rx(struct iconn *c);
void iscsi_conn_ping_check(struct iconn *c, uint64_t now);

/* ffp.c */
/* A full-feature PDU's header is in c->cur; returns where its data segment
 * (dlen > 0) goes: c->dst/c->dtask set, or c->ddiscard. */
void iscsi_ffp_header(struct iconn *c);
/* The whole PDU (header and data) has arrived. */
void iscsi_ffp_pdu(struct iconn *c, const uint8_t *data, uint32_t dlen);
/* The connection closes: abort every task, release what it holds. */
void iscsi_ffp_teardown(struct iconn *c);
void iscsi_task_put(struct itask *t);
/* Fills StatSN (advancing it when `advance`), ExpCmdSN and MaxCmdSN. */
void iscsi_fill_sn(struct iconn *c, uint8_t *bhs, bool advance);

#endif
