/* bench_apps.h - applications timed on a mount beside a local directory:
 * the "apps" phase of chainfs bench fuse. */
#ifndef CFS_CLI_BENCH_APPS_H
#define CFS_CLI_BENCH_APPS_H

/* Times `git clone` (file://, no hard links) of a FILES-file repository and
 * a sqlite3 insert/query script, each on MOUNT_DIR and on RAW_DIR, and
 * prints one row per application (seconds and the mount/raw ratio; issue
 * 13's goal for the clone is <= 2x). The source repository is built once
 * under RAW_DIR (not timed). Everything created is removed. Runs git and
 * sqlite3 as child processes; blocks; call from the bench's main thread.
 * Returns 0, or -1 after a message when a tool failed or is missing. */
int bench_apps_run(const char *mount_dir, const char *raw_dir, long long files);

#endif
