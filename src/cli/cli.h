/* cli.h - the chainfs subcommands. Each returns the process exit status
 * (0 success, 1 failure, 2 usage error) and owns nothing past its return. */
#ifndef CFS_CLI_CLI_H
#define CFS_CLI_CLI_H

struct cli_cmd {
	const char *name;
	int (*run)(int argc, char **argv); /* argv[0] is the subcommand name */
	const char *help;                  /* one line for chainfs --help */
};

int cli_version(int argc, char **argv);
int cli_bench(int argc, char **argv);
int cli_admin(int argc, char **argv); /* cmd_admin.c; commands in admin.h */
int cli_mgmtd(int argc, char **argv); /* cmd_mgmtd.c */
int cli_meta(int argc, char **argv); /* cmd_meta.c */
int cli_storage(int argc, char **argv); /* cmd_storage.c */
int cli_bench_storage(int argc, char **argv); /* bench_storage.c */
int cli_mount(int argc, char **argv); /* cmd_mount.c */
int cli_up(int argc, char **argv); /* cmd_up.c */
int cli_down(int argc, char **argv); /* cmd_up.c */
int cli_fsck(int argc, char **argv); /* cmd_fsck.c */
int cli_kvcache(int argc, char **argv); /* cmd_kvcache.c */
int cli_bench_rpc(int argc, char **argv); /* bench_rpc.c */
int cli_bench_chunk(int argc, char **argv); /* bench_chunk.c */
int cli_bench_kv(int argc, char **argv); /* bench_kv.c */
int cli_bench_meta(int argc, char **argv); /* bench_meta.c */
int cli_bench_fuse(int argc, char **argv); /* bench_fuse.c */
int cli_bench_usrbio(int argc, char **argv); /* bench_usrbio.c */
int cli_bench_kvcache(int argc, char **argv); /* bench_kvcache.c */

/* Bench groups, dispatched by cli_bench (cmd_bench.c). */
struct cli_bench_cmd {
	const char *name;
	int (*run)(int argc, char **argv);
	const char *help;
};

#endif
