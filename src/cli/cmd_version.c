/* cmd_version.c - chainfs version. */
#include <stdio.h>

#include "cli/cli.h"
#include "common/crc32c.h"

int cli_version(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("chainfs %s\n", CFS_VERSION);
	printf("crc32c: isa-l (%s)\n", crc32c_hw_available() ? "sse4.2" : "no sse4.2");
	return 0;
}
