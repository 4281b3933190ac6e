/* libFuzzer entry point for the messages a forwarding portal sends the node
 * serving the vdisks (iscsi-target/fwd.h): the input is one message as the
 * node link delivers it. kura_fwd_parse must not read outside it, and what
 * it accepts must keep the promises the serving node relies on: the trailer
 * at the end, the data before it, a command no larger than allowed, and for
 * a session's start two non-empty names, NUL-terminated inside the data,
 * that fit a nexus.
 *
 * Build and run: make fuzz (FUZZ_FWD_SECONDS=60). */
#include "iscsi-target/fwd.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a copy of exactly size bytes: ASan sees any read past it */
	uint8_t *msg = malloc(size ? size : 1);
	struct kura_fwd_msg m;
	const char *iport, *iname;

	if (!msg)
		return 0;
	memcpy(msg, data, size);
	if (!kura_fwd_parse(msg, size, &m, &iport, &iname)) {
		if (m.dlen + sizeof(m) != size || m.magic != KURA_FWD_MAGIC)
			abort();
		if (m.kind == KURA_FWD_EXEC && (m.edtl > KURA_SCSI_MAX_XFER || m.dlen > m.edtl))
			abort();
		if (m.kind == KURA_FWD_NEXUS) {
			size_t a = strlen(iport), b = strlen(iname);

			if (!a || !b || a >= KURA_FWD_IPORT_MAX || b >= KURA_FWD_INAME_MAX ||
			    iport != (const char *)msg || iname != iport + a + 1 ||
			    a + b + 2 != m.dlen)
				abort();
		} else if (iport || iname) {
			abort();
		}
	}
	free(msg);
	return 0;
}
