/* integ_env.h - a whole ChainFS cluster for integration tests, through
 * `chainfs up` / `chainfs down` in a private temp dir.
 *
 * integ_up starts the cluster (data in DIR/data, mount at DIR/mnt) and
 * returns once the mount is usable; integ_down runs `chainfs down` and
 * asserts that the mount is gone and that no process recorded by up (pid
 * files read before down) is still alive, and that no role's log holds a
 * sanitizer report (ASan builds). An atexit hook brings a cluster
 * that is still up down, so a failed test leaves no mount or process.
 * Tests call integ_require_fuse first: it exits 77 when /dev/fuse is
 * missing (the only reason these tests skip).
 */
#ifndef CFS_TESTS_INTEG_ENV_H
#define CFS_TESTS_INTEG_ENV_H

#include <stddef.h>
#include <sys/types.h>
#include <stdint.h>

struct integ {
	char *dir;      /* private temp dir (owned) */
	char data[512]; /* DIR/data: chainfs up --dir */
	char mnt[512];  /* DIR/mnt: the mount point */
	int up;
};

/* Exits 77 when /dev/fuse does not exist. */
void integ_require_fuse(void);
/* Creates the temp dir (mode 0755, so other uids reach the mount). */
void integ_init(struct integ *e, const char *tag);
/* `chainfs up`; asserts it succeeded and the mount answers. */
void integ_up(struct integ *e);
/* `chainfs down`; asserts the mount and every recorded process are gone
 * and the logs are free of sanitizer reports. Call it from a test (the last
 * of the group), not from a group teardown: cmocka does not count teardown
 * failures in its exit status. */
void integ_down(struct integ *e);
/* Group teardown: `chainfs down` without checks when a failed test left
 * the cluster up. */
void integ_teardown(struct integ *e);
struct CMUnitTest;
/* The whole main of an integration test program: exits 77 without FUSE,
 * then runs TESTS (N) as one cmocka group over a cluster in E (temp dir
 * tagged TAG, `chainfs up` before the first test), plus a last test that
 * runs integ_down and its checks, and integ_teardown after the group.
 * Returns cmocka's status. One group per process. */
int integ_main(struct integ *e, const char *tag, const struct CMUnitTest *tests, size_t n);
/* Runs ARGV (argv[0] a path or a name on $PATH) with stdout+stderr to
 * LOG (may be NULL: inherit) and CWD (may be NULL); kills it after
 * TIMEOUT_MS. Returns the exit status, or -1 (killed, or not exited). */
int integ_run(char *const argv[], const char *cwd, const char *log, int timeout_ms);
/* Copies file PATH to stderr (a failed step's log); nothing when it
 * cannot be opened. */
void integ_print_file(const char *path);
/* "DIR/mnt/REL" in OUT. */
void integ_path(const struct integ *e, const char *rel, char *out, size_t cap);
/* Creates or truncates file PATH (mode 0644) and writes the N bytes of
 * DATA in one write, then fsyncs and closes it: what the test wrote is
 * acknowledged data. Fails the test on any error (a short write too). */
void integ_write_file(const char *path, const void *data, size_t n);
/* Creates PATH empty (O_EXCL) and closes it; fails the test on error. */
void integ_touch(const char *path);
/* Entries of DIR (not . and ..), or -1 when it cannot be read. */
int integ_count_entries(const char *dir);
/* CRC32C of a whole file; -1 on error. */
int64_t integ_file_crc(const char *path);
/* The value of KEY in E's DATA/cluster.conf (ports, cluster id, mount)
 * into OUT; fails the test when the key is missing. */
void integ_conf_get(const struct integ *e, const char *key, char *out, size_t cap);
/* Requests meta has served so far (`chainfs admin rpc-stats`; the call
 * itself counts as one); fails the test when it cannot be read.
 * Meta reads its counter somewhere inside the call, which takes a
 * process start and a handshake (a second or more on a loaded machine):
 * a test that allows for background requests (directory polls,
 * heartbeats) by elapsed time must time from before the first reading's
 * call to after the second's, not just the work between them. */
unsigned long long integ_meta_requests(const struct integ *e);
/* integ_meta_requests once meta has settled: at most QUIET requests
 * (polls, the call itself) came in a 250 ms gap, so work queued earlier
 * (deferred closes sent after close(2) returned) is not counted later.
 * Gives up after 10 s and returns the last count. *T0_NS (may be NULL)
 * gets clock_mono_ns() from just before the call that returned it read
 * the count, the start of the window to allow for. */
unsigned long long integ_meta_requests_settled(const struct integ *e, unsigned quiet,
                                               uint64_t *t0_ns);
/* The same for the service whose port is PORT_KEY in cluster.conf
 * ("meta_port", "storage2_port", ...). */
unsigned long long integ_role_requests(const struct integ *e, const char *port_key);
/* 0 when PID has exited (gone, or a zombie), else 1. */
int integ_pid_alive(int pid);
/* The pid `chainfs up` recorded for ROLE ("meta", "mgmtd", "storage1",
 * "mount", ...) in DATA/pids; fails the test when there is none. */
int integ_role_pid(const struct integ *e, const char *role);
/* kill -9 of ROLE's recorded process, returning once it is gone (a
 * zombie or reaped; at most 10 s, else the test fails). A `chainfs up`
 * right after a bare kill() could still see the process alive (the kill
 * is not processed yet on a loaded machine), report it "already running"
 * and restart nothing: test_integ_metadur then hung on a meta that was
 * gone. Returns the pid. */
int integ_kill9(const struct integ *e, const char *role);
/* 1 when `chainfs admin list-chains` shows chains and every member of
 * every chain serving (none offline, syncing, waiting or last-serving). */
int integ_all_serving(const struct integ *e);
/* Waits up to MS for integ_all_serving: 1 when it came, 0 when not. */
int integ_wait_serving(const struct integ *e, int ms);
/* Brings back what was killed: `chainfs up` over E's data, which starts
 * just what is missing (output in E->dir/TAG.out; killed after 120 s).
 * Returns its exit status, or -1. */
int integ_up_again(const struct integ *e, const char *tag);
/* integ_up_again, which must succeed, then a wait of up to SERVING_MS for
 * integ_all_serving, which must come. */
void integ_up_serving(const struct integ *e, const char *tag, int serving_ms);
/* Starts a second `chainfs mount` of E's cluster on E->dir/mnt2 (its path
 * into MNT, CAP bytes; output in E->dir/mount2.log) and waits up to 30 s
 * until it is mounted, failing the test otherwise. Returns its pid. */
pid_t integ_mount2_start(const struct integ *e, char *mnt, size_t cap);
/* The same with one more `chainfs mount` argument EXTRA (may be NULL),
 * e.g. "--fuse-uring". */
pid_t integ_mount2_start_args(const struct integ *e, char *mnt, size_t cap, const char *extra);
/* Stops the mount of *PID (SIGTERM, up to 10 s, then SIGKILL), reaps it
 * and sets *PID to 0; nothing when *PID <= 0. */
void integ_mount2_stop(pid_t *pid);

/* Has the kernel drop its dentries and inodes (drop_caches 2, after a
 * sync), as after memory pressure: 1 when that worked (root only), 0
 * otherwise. */
int integ_drop_dentries(void);
/* How often anyone on the machine has had the kernel drop its dentries
 * (drop_caches 2 or 3: /proc/vmstat drop_slab), 0 when unknown. A count
 * of meta requests that assumes the kernel still holds the names a test
 * made compares this before and after: another test (ctest runs two at
 * once) or a benchmark dropping caches meanwhile makes every name cost a
 * lookup again. */
unsigned long long integ_cache_drops(void);

/* Waits until PATH exists as seen through this process's view (stat
 * succeeds), polling every 20 ms for up to TIMEOUT_MS: 1 when it showed,
 * 0 when it did not. For a name another mount made: this mount may answer
 * from names it cached until its next directory-count poll
 * (--dircache-poll-ms, README "Durability of metadata"). */
int integ_wait_visible(const char *path, int timeout_ms);

/* Write sessions in E's meta store, from `chainfs fsck` (it reads the KV
 * while the cluster runs; output in E->dir/fsck-sessions.out), or -1 when
 * fsck printed no count. */
long long integ_fsck_sessions(const struct integ *e);

/* Damages stored data the way a bad disk would: flips 8 bytes 100 bytes
 * after MARKER (a string the test wrote into the data) in the first block
 * file under storage service STORAGE's data dir (DATA/storageN, N 1..3)
 * that holds it; LMDB files and the WAL are passed over. The flip is
 * fsynced; the service is left running (it finds it by CRC on read).
 * 1 when a copy was flipped, 0 when none holds MARKER. */
int integ_flip_copy(const struct integ *e, int storage, const char *marker);
/* integ_flip_copy over storage services 1, 2, 3 until COPIES copies are
 * flipped (one per service). Returns how many were. */
int integ_flip_marker(const struct integ *e, const char *marker, int copies);

#endif
