/* Prints the reference of imgstored's configuration keys: the text of docs/CONFIG.md. */
#include <stdio.h>

#include "common/config.h"

int main(void)
{
	ims_config_write_reference(stdout);
	return fflush(stdout) == 0 ? 0 : 1;
}
