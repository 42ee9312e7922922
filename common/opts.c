#include "common/opts.h"

#include <errno.h>

#include "common/error.h"

int ims_opts_check(int present, unsigned version, unsigned current, const char *what)
{
	if (!present)
		return ims_error_set(-EINVAL, "%s: no options given", what);
	if (version == 0 || version > current)
		return ims_error_set(
			-EINVAL,
			"%s options of an unknown version %u (this build knows 1 to %u): "
			"initialise them with their _OPTS_INIT",
			what, version, current);
	return 0;
}
