#include "common/err.h"

#include <string.h>

const char *kura_strerror(int err)
{
	switch (err) {
	case 0: return "success";
	case KURA_E_CORRUPT: return "on-disk structure is corrupt";
	case KURA_E_FORMAT: return "written by a newer kura format";
	case KURA_E_FOREIGN: return "belongs to another kura store";
	case KURA_E_NOTKURA: return "holds data that is not a kura store";
	case KURA_E_PROTO: return "malformed protocol message";
	case KURA_E_DEAD: return "store stopped after a device error";
	default: break;
	}
	if (err < 0 && err > -KURA_E_BASE)
		return strerror(-err);
	return "unknown error";
}
