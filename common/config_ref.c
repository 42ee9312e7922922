/*
 * Prints the reference of imgstored's configuration keys: the text of docs/CONFIG.md, or with
 * --man VERSION the manual page imgstored.conf(5) (the build writes it; see man/).
 */
#include <stdio.h>
#include <string.h>

#include "common/config.h"

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "--man")) {
		ims_config_write_man(stdout, argv[2]);
	} else if (argc == 1) {
		ims_config_write_reference(stdout);
	} else {
		fprintf(stderr, "usage: imgstore-config-ref [--man VERSION]\n");
		return 2;
	}
	return fflush(stdout) == 0 ? 0 : 1;
}
