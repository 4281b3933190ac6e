/* The small iSCSI initiator under kura-iscsicheck: sockets with deadlines,
 * PDUs, text keys, login (none or CHAP MD5), SCSI commands, NOP, logout,
 * and the proofs run after each attack (blockd alive, healthy session). */
#ifndef KURA_TESTS_ISCSI_INITIATOR_H
#define KURA_TESTS_ISCSI_INITIATOR_H

#include "common/util.h"
#include "iscsi-target/hash.h"
#include "iscsi-target/pdu.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define NCHECKS 11
#define PDU_MS 5000u               /* one expected PDU must arrive within this */
#define MAX_RX_DATA (16u << 20)    /* larger data segments from a target are an error */
#define HEALTHY_LEN (256u << 10)   /* the healthy pattern: immediate data, then R2T */
#define ATTACK_OFF (8ull << 20)    /* attacks write from here on, away from the pattern */
#define RSVD ISCSI_RSVD_TAG
#define BHS KURA_ISCSI_BHS
/* What watch() waits for. */
#define W_STATUS 1u /* a SCSI status: SCSI Response, or Data-In with S */
#define W_R2T 2u
#define W_REJECT 4u
#define W_LOGIN 8u

struct cfg {
	const char *host, *target;
	unsigned port, lun;
	const char *iname;          /* every session's initiator name */
	const char *chap_target, *chap_user, *chap_secret;
	const char *acl_target, *acl_iname; /* acl_iname is on the ACL, iname is not */
	int pid;                    /* blockd, for liveness and RSS; 0 unknown */
	unsigned checks;            /* bit n: check n runs */
	unsigned rounds, logins, sessions, slow_qd, slow_kib, rss_slack_mib, deadline_ms;
};

struct sess {
	struct run *r;
	int fd;
	uint8_t isid[6];
	uint32_t itt, cmdsn, expstatsn;
	uint32_t mrdsl, first_burst; /* what the target accepts, from the login */
	bool imm_data;
	uint8_t login_class, login_detail;
	char why[256];              /* the last failure */
};

struct run {
	struct cfg cfg;
	struct sess healthy;        /* logged in before the attacks, used after each */
	uint32_t next_isid;         /* each connection its own ISID: no session reinstatement */
	uint32_t pattern_seq;
	uint32_t bs;                /* logical block size, from READ CAPACITY */
	char msg[1024];             /* what the running check found */
};

struct pdu {
	uint8_t bhs[BHS];
	uint8_t *data;
	uint32_t dlen;
};

/* What a connection said while we watched it. */
struct seen {
	bool closed, reject, status, r2t, login, other;
	uint8_t reason, status_byte, sense_key, asc, login_class, login_detail;
	uint32_t r2t_ttt, r2t_off, r2t_len;
	unsigned npdus;
};

struct kv {
	char buf[8192];
	uint32_t len;
};

struct login_opts {
	const char *target, *iname;
	const char *chap_user, *chap_secret; /* NULL: AuthMethod=None */
};

/* Appends to what the running check found; returns ret, so that a check
 * can end with return note(r, false, ...). */
bool note(struct run *r, bool ret, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int fail_why(struct sess *s, int err, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
uint64_t now_ms(void);
void hex(const uint8_t *b, size_t n, char *out);
void md5(const void *p, size_t n, char out[33]);
bool md5_known_answers(void);
int wait_fd(int fd, short ev, uint64_t deadline);
int io_all(int fd, bool out, void *buf, size_t len, uint64_t deadline);
int send_all(int fd, const void *buf, size_t len);
int tcp_open(const struct cfg *c, int rcvbuf);
void pdu_free(struct pdu *p);
int pdu_send(int fd, uint8_t *bhs, const void *data, uint32_t dlen);
int pdu_recv_raw(int fd, struct pdu *p, uint64_t deadline);
uint32_t next_itt(struct sess *s);
int sess_recv(struct sess *s, struct pdu *p, uint64_t deadline);
void watch(struct sess *s, unsigned ms, unsigned stop, struct seen *w);
void kv_add(struct kv *k, const char *key, const char *val);
int hexval(char c);
int parse_hex(const char *s, uint8_t *out, size_t cap);
void sess_init(struct sess *s, struct run *r);
void sess_close(struct sess *s);
void login_bhs(struct sess *s, uint8_t *h, uint8_t flags);
void take_op_keys(struct sess *s, const uint8_t *d, uint32_t n);
int chap_answer(struct sess *s, const struct login_opts *o, const uint8_t *d,
		       uint32_t n, struct kv *k);
int sess_login(struct sess *s, const struct login_opts *o);
int sess_open(struct sess *s, struct run *r, const struct login_opts *o);
bool connected(struct run *r, struct sess *s, int rcvbuf);
bool attacker(struct run *r, struct sess *s);
void scsi_bhs(struct sess *s, uint8_t *h, uint8_t flags, uint32_t edtl, const uint8_t *cdb);
void rw10_bhs(struct sess *s, uint8_t *h, bool write, uint64_t off, uint32_t len);
int send_data_out(struct sess *s, const uint8_t *cmd, uint32_t ttt, const uint8_t *data,
			 uint32_t off, uint32_t len, uint32_t sn);
int scsi_cmd(struct sess *s, uint8_t *h, uint8_t *buf, uint32_t len, uint8_t *status,
		    uint8_t *key, unsigned ms);
int scsi_good(struct sess *s, uint8_t *h, uint8_t *buf, uint32_t len, unsigned ms);
int scsi_rw(struct sess *s, bool write, uint64_t off, uint8_t *buf, uint32_t len,
		   unsigned ms);
int read_capacity(struct sess *s);
int nop_ping(struct sess *s);
int sess_logout(struct sess *s);
int write_verify(struct sess *s, uint64_t off, uint32_t len, unsigned ms);
long rss_kib(int pid);
bool blockd_alive(struct run *r);
bool healthy_ok(struct run *r);
int healthy_open(struct run *r);

#endif
