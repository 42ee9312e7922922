/* cli/cmd_audit.c: imgstore audit verify FILE...: the hash chain of imgstored's audit log,
 * checked where the files are (no server: the CLI reads them itself). */
#include "cli/cli.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/chain.h"

/* Exit 0 when every line of the files, in the order given, follows the one before it; 1 naming
 * the first line that does not (or a file that cannot be read). */
static int audit_verify(ims_cli *cli, const ims_cli_args *a)
{
	ims_chain_state st = IMS_CHAIN_STATE_INIT;
	char *line = NULL, msg[1200];
	size_t cap = 0;
	int rc = IMS_CLI_EXIT_OK;
	for (unsigned i = 0; i < a->npos && rc == IMS_CLI_EXIT_OK; i++) {
		const char *path = a->pos[i];
		FILE *f = fopen(path, "r");
		if (!f)
			return ims_cli_fail(cli, "cannot read '%s': %s", path, strerror(errno));
		unsigned long no = 0;
		ssize_t n;
		while ((n = getline(&line, &cap, f)) > 0) {
			no++;
			if (line[n - 1] != '\n')
				break; /* a last line still being written: not yet part of the chain
					*/
			int r = ims_chain_check(&st, line, (size_t)n - 1, no == 1);
			if (r == -ENOENT) {
				rc = ims_cli_fail(
					cli, "%s:%lu: the chain is broken: the line has no hash",
					path, no);
				break;
			}
			if (r < 0) {
				rc = ims_cli_fail(
					cli,
					"%s:%lu: the chain is broken: this line, or the one "
					"before it, was edited, removed or inserted",
					path, no);
				break;
			}
		}
		fclose(f);
	}
	free(line);
	if (rc != IMS_CLI_EXIT_OK)
		return rc;
	snprintf(msg, sizeof(msg), "%lu lines, chain intact%s; last hash %s", st.lines,
		 st.first_unchecked ? " (its first line continues an earlier file, not given: "
				      "not checked)"
				    : "",
		 st.started ? st.prev : "-");
	ims_cli_print_line(cli, msg);
	return IMS_CLI_EXIT_OK;
}

const ims_cli_verb ims_cli__audit_verbs[] = {
	{"audit", "verify", "FILE...",
	 "Check the hash chain of imgstored's audit log (the files in order, oldest first); exit 1 "
	 "naming the first broken line.",
	 ims_cli__no_opts, 1, IMS_CLI_MAX_POS, audit_verify, NULL},
	{NULL, NULL, NULL, NULL, NULL, 0, 0, NULL, NULL},
};
