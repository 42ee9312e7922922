/*
 * imgstore-cli-ref: prints imgstore(1) (--man VERSION) or the bash completion of `imgstore`
 * (--bash-completion), from the CLI's own tables (cli/ref.c). The build runs it (man/).
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--man")) {
		ims_cli_write_man(stdout, argv[2]);
	} else if (argc == 2 && !strcmp(argv[1], "--bash-completion")) {
		ims_cli_write_bash_completion(stdout);
	} else {
		fprintf(stderr, "usage: imgstore-cli-ref --man VERSION | --bash-completion\n");
		return 2;
	}
	return fflush(stdout) == 0 ? 0 : 1;
}
