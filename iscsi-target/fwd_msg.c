/* Checking forwarded messages (fwd.h): no state, so that the fuzz target
 * (fuzz/fuzz_fwd.c) runs it alone. */
#include "iscsi-target/fwd.h"

#include <errno.h>
#include <string.h>

/* The fields a kind does not use are zero; the data is where it says. */
static int trailer_valid(const struct kura_fwd_msg *m, size_t len)
{
	static const uint8_t zero[16];
	int exec = m->kind == KURA_FWD_EXEC;

	if (m->magic != KURA_FWD_MAGIC || m->dlen != len - sizeof(*m) || m->pad ||
	    m->kind < KURA_FWD_DIR || m->kind > KURA_FWD_RESET)
		return 0;
	if (!exec && (m->dir || m->edtl || m->lun || memcmp(m->cdb, zero, sizeof(zero))))
		return 0;
	if (exec && (m->dir > (KURA_SCSI_READ | KURA_SCSI_WRITE) ||
		     m->edtl > KURA_SCSI_MAX_XFER || m->dlen > m->edtl))
		return 0;
	if (m->kind != KURA_FWD_NEXUS && m->uid)
		return 0;
	if (!exec && m->kind != KURA_FWD_ABORT && m->id)
		return 0;
	if (m->kind != KURA_FWD_EXEC && m->kind != KURA_FWD_NEXUS && m->dlen)
		return 0;
	return m->kind == KURA_FWD_DIR ? !m->nexus : m->nexus != 0;
}

int kura_fwd_parse(const uint8_t *data, size_t len, struct kura_fwd_msg *m, const char **iport,
		   const char **iname)
{
	size_t a, b;

	if (len < sizeof(*m))
		return -EPROTO;
	memcpy(m, data + len - sizeof(*m), sizeof(*m));
	if (!trailer_valid(m, len))
		return -EPROTO;
	*iport = *iname = NULL;
	if (m->kind != KURA_FWD_NEXUS)
		return 0;
	/* "iport\0iname\0", both non-empty, nothing after */
	a = strnlen((const char *)data, m->dlen);
	if (!a || a >= m->dlen || a >= KURA_FWD_IPORT_MAX)
		return -EPROTO;
	b = strnlen((const char *)data + a + 1, m->dlen - a - 1);
	if (!b || b >= m->dlen - a - 1 || b >= KURA_FWD_INAME_MAX || a + b + 2 != m->dlen)
		return -EPROTO;
	*iport = (const char *)data;
	*iname = (const char *)data + a + 1;
	return 0;
}
