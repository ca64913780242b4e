/* main.c - the chainfs binary: one executable, a subcommand per role and
 * per admin task (DESIGN.md §1). Adding a command: write cmd_<name>.c with
 * an int fn(int argc, char **argv), declare it in cli.h, add a row below. */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"

static const struct cli_cmd commands[] = {
	{ "version", cli_version, "print the version and build features" },
	{ "bench", cli_bench, "built-in load generators (chainfs bench --help)" },
	{ "admin", cli_admin, "cluster administration (chainfs admin --help)" },
	{ "mgmtd", cli_mgmtd, "run the cluster manager (chainfs mgmtd --help)" },
	{ "meta", cli_meta, "run a metadata-service instance (chainfs meta --help)" },
	{ "storage", cli_storage, "run a storage service (chainfs storage --help)" },
	{ "mount", cli_mount, "mount the file system with FUSE (chainfs mount --help)" },
	{ "up", cli_up, "start a local cluster and mount it (chainfs up --help)" },
	{ "down", cli_down, "stop what chainfs up started (chainfs down --help)" },
	{ "fsck", cli_fsck, "check metadata and chunk replicas of a cluster (chainfs fsck --help)" },
	{ "kvcache", cli_kvcache, "KVCache namespaces: create, info, clear, delete (chainfs kvcache --help)" },
};

static void usage(FILE *out)
{
	fprintf(out, "usage: chainfs <command> [options]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].help);
	fprintf(out, "\nchainfs <command> --help describes a command's options.\n");
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
		usage(stdout);
		return 0;
	}
	if (!strcmp(argv[1], "--version"))
		return cli_version(argc - 1, argv + 1);
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (!strcmp(argv[1], commands[i].name))
			return commands[i].run(argc - 1, argv + 1);
	fprintf(stderr, "chainfs: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
