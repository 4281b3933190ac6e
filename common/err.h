/* Error codes shared by every kura module.
 *
 * Functions return 0 or a negative errno. kura's own conditions are negative
 * numbers below -4096 so they never collide with errno values; kura_strerror()
 * decodes both. Wire status (SCSI sense, virtio status) is made only at the
 * protocol edge from these codes.
 */
#ifndef KURA_COMMON_ERR_H
#define KURA_COMMON_ERR_H

enum {
	KURA_E_BASE = 4096,
	KURA_E_CORRUPT = -(KURA_E_BASE + 1),   /* on-disk structure failed validation */
	KURA_E_FORMAT = -(KURA_E_BASE + 2),    /* data dir or disk of a newer format */
	KURA_E_FOREIGN = -(KURA_E_BASE + 3),   /* belongs to another kura store */
	KURA_E_NOTKURA = -(KURA_E_BASE + 4),   /* holds data that is not kura's */
	KURA_E_PROTO = -(KURA_E_BASE + 5),     /* malformed protocol message */
	KURA_E_DEAD = -(KURA_E_BASE + 6),      /* store stopped after a fatal device error */
};

const char *kura_strerror(int err);

#endif
