/* test_integ_kvcache_cache.c - KVCache namespaces in cache durability mode
 * (`chainfs kvcache create --durability cache`, CFS_KVC_CACHE;
 * docs/kvcache.md "Durability") on a real `chainfs up` cluster:
 *
 * test_cli_durability: the CLI makes sync and cache namespaces, `info`
 *   says which; an unknown --durability is refused with a message that
 *   says what is allowed, and the library refuses unknown create flags.
 * test_cache_round_trips: whole-page and partial values of a prefilled
 *   cache-mode namespace read back, over rounds of deletes and puts that
 *   overwrite the same pages (copy-on-write into blocks storage knows
 *   written: the writes that skip the flush), and a sync namespace beside
 *   it too.
 * test_corrupt_every_replica_is_a_miss: a page whose stored bytes are
 *   flipped in all three replicas' block files is a MISS for get (not an
 *   error, never wrong bytes), and the services stay in service: other
 *   keys put and read back, every target still SERVING.
 * test_kill9_storage_cache: kill -9 of a storage service under a put load
 *   of whole pages into a cache-mode namespace; after its restart every
 *   acknowledged put reads back with its bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chainfs.h"
#include "common/clock.h"
#include "integ_env.h"
#include "kvc_test.h"
#include "testenv.h"

static struct integ env;
#define PAGE KVT_PAGE

static struct cfs_kvc_opts opts(uint32_t flags)
{
	return (struct cfs_kvc_opts){ .cluster_dir = env.data, .rings = 2, .flags = flags };
}

/* `chainfs kvcache SUB NAME --mount M --cluster-dir D [EXTRA...]`; its
 * output goes to OUT (a path). Returns the exit code. */
static int cli(const char *out, const char *sub, const char *name, const char *e1,
	       const char *e2)
{
	char *argv[] = { (char *)testenv_chainfs(), "kvcache", (char *)sub, (char *)name,
			 "--mount", env.mnt, "--cluster-dir", env.data, (char *)e1, (char *)e2,
			 NULL };
	return integ_run(argv, NULL, out, 60000);
}

static void test_cli_durability(void **st)
{
	(void)st;
	char out[700];
	snprintf(out, sizeof(out), "%s/kvc-dur.out", env.dir);
	assert_int_equal(cli(out, "create", "dc", "--durability", "cache"), 0);
	assert_true(testenv_file_has(out, "durability cache"));
	assert_int_equal(cli(out, "info", "dc", NULL, NULL), 0);
	assert_true(testenv_file_has(out, "durability cache"));
	assert_int_equal(cli(out, "create", "ds", "--durability", "sync"), 0);
	assert_int_equal(cli(out, "info", "ds", NULL, NULL), 0);
	assert_true(testenv_file_has(out, "durability sync"));
	/* Bad input: refused with a message, nothing made. */
	assert_int_equal(cli(out, "create", "dx", "--durability", "fast"), 2);
	assert_true(testenv_file_has(out, "--durability must be sync or cache"));
	assert_int_equal(cli(out, "info", "dx", NULL, NULL), 1);
	struct cfs_kvc_opts o = opts(0x80);
	assert_int_equal(cfs_kvc_create(env.mnt, "dy", "kv/dy", PAGE, 8 * PAGE, 1, &o), -EINVAL);
	o = opts(0);
	cfs_kvc *kv;
	assert_int_equal(cfs_kvc_open(env.mnt, "dy", &o, &kv), -ENOENT);
	assert_int_equal(cli(out, "delete", "dc", NULL, NULL), 0);
	assert_int_equal(cli(out, "delete", "ds", NULL, NULL), 0);
}

static void round_trips(uint32_t flags, const char *name)
{
	struct cfs_kvc_opts o = opts(flags | CFS_KVC_PREFILL);
	char dir[96];
	snprintf(dir, sizeof(dir), "kv/%s", name);
	cfs_kvc *kv;
	cfs_iov *iov;
	assert_int_equal(cfs_kvc_create(env.mnt, name, dir, PAGE, 64 * PAGE, 4, &o), 0);
	assert_int_equal(cfs_kvc_open(env.mnt, name, &o, &kv), 0);
	struct cfs_kvc_info in;
	assert_int_equal(cfs_kvc_stats(kv, 0, &in), 0);
	assert_int_equal(in.durability, (flags & CFS_KVC_CACHE) ? 1 : 0);
	assert_int_equal(cfs_iov_create(env.mnt, 32 * PAGE, 0, -1, &iov), 0);
	/* Rounds over the same 48 pages: put, read, delete, put again. */
	for (uint32_t round = 0; round < 6; round++) {
		for (uint32_t b = 0; b < 48; b += 16)
			kvt_put_n_ok(kv, iov, 16, b, round % 3 == 2 ? 12345 : PAGE, round);
		for (uint32_t b = 0; b < 48; b += 16)
			kvt_get_n_check(kv, iov, 16, b, round % 3 == 2 ? 12345 : PAGE);
		int res[16];
		for (uint32_t b = 0; b < 48; b += 16) {
			struct kvt_batch kb;
			kvt_batch_keys(&kb, 16, NULL, b);
			assert_int_equal(cfs_kvc_delete(kv, 16, kb.keys, kb.kl, res), 0);
		}
		assert_int_equal(kvt_get_n(kv, iov, 16, 0, res), 0);
		for (int i = 0; i < 16; i++)
			assert_int_equal(res[i], -ENOENT);
	}
	cfs_iov_destroy(iov);
	cfs_kvc_close(kv);
	assert_int_equal(cfs_kvc_destroy(env.mnt, name, &o), 0);
}

static void test_cache_round_trips(void **st)
{
	(void)st;
	round_trips(CFS_KVC_CACHE, "rtc");
	round_trips(0, "rts");
}

static void test_corrupt_every_replica_is_a_miss(void **st)
{
	(void)st;
	struct cfs_kvc_opts o = opts(CFS_KVC_CACHE);
	cfs_kvc *kv;
	cfs_iov *iov;
	assert_int_equal(cfs_kvc_create(env.mnt, "bad", "kv/bad", PAGE, 64 * PAGE, 2, &o), 0);
	assert_int_equal(cfs_kvc_open(env.mnt, "bad", &o, &kv), 0);
	assert_int_equal(cfs_iov_create(env.mnt, 32 * PAGE, 0, -1, &iov), 0);
	/* One whole page with a marker the block files can be searched for. */
	uint8_t *mem = cfs_iov_base(iov);
	char marker[64];
	snprintf(marker, sizeof(marker), "CFS-KVC-CORRUPT-%08lx", (unsigned long)random());
	for (size_t i = 0; i < PAGE; i++)
		mem[i] = (uint8_t)(i * 7);
	memcpy(mem + 4096, marker, strlen(marker));
	const char *key = "corrupt-me";
	const void *keys[1] = { key }, *vals[1] = { mem };
	size_t kl[1] = { strlen(key) }, lens[1] = { PAGE }, caps[1] = { PAGE };
	void *bufs[1] = { mem + 16 * PAGE };
	int res[16];
	assert_int_equal(cfs_kvc_put(kv, iov, 1, keys, kl, vals, lens, res), 0);
	assert_int_equal(res[0], 0);
	assert_int_equal(cfs_kvc_get(kv, iov, 1, keys, kl, bufs, caps, res), 0);
	assert_int_equal(res[0], (int)PAGE);
	assert_int_equal(integ_flip_marker(&env, marker, 3), 3);
	/* Every replica fails its CRC: a miss, never wrong bytes, no error. */
	for (int k = 0; k < 4; k++) {
		memset(bufs[0], 0xEE, PAGE);
		assert_int_equal(cfs_kvc_get(kv, iov, 1, keys, kl, bufs, caps, res), 0);
		assert_int_equal(res[0], -ENOENT);
	}
	/* The services stay in service: other keys go on. */
	kvt_put_n_ok(kv, iov, 16, 500, PAGE, 9);
	kvt_get_n_check(kv, iov, 16, 500, PAGE);
	assert_true(integ_all_serving(&env));
	cfs_iov_destroy(iov);
	cfs_kvc_close(kv);
	assert_int_equal(cfs_kvc_destroy(env.mnt, "bad", &o), 0);
}

/* The put load of test_kill9_storage_cache: whole pages, 8 keys at a
 * time, at most MAXPUTS (so that it stays under the namespace's pages). */
#define NS_PAGES 512
#define MAXPUTS 480
static void test_kill9_storage_cache(void **st)
{
	(void)st;
	struct cfs_kvc_opts o = opts(CFS_KVC_CACHE | CFS_KVC_PREFILL);
	char acks[700], stopf[700];
	snprintf(acks, sizeof(acks), "%s/kc-acks", env.dir);
	snprintf(stopf, sizeof(stopf), "%s/kc-stop", env.dir);
	assert_int_equal(cfs_kvc_create(env.mnt, "kc", "kv/kc", PAGE, NS_PAGES * PAGE, 8, &o), 0);
	/* Warm-up: fill the namespace and clear it, twice, so that the
	 * copy-on-write puts of the load land in blocks storage has written
	 * and synced (the writes that skip the flush). */
	{
		cfs_kvc *kv;
		cfs_iov *iov;
		assert_int_equal(cfs_kvc_open(env.mnt, "kc", &o, &kv), 0);
		assert_int_equal(cfs_iov_create(env.mnt, 32 * PAGE, 0, -1, &iov), 0);
		for (int w = 0; w < 2; w++) {
			for (uint32_t b = 0; b < NS_PAGES; b += 16)
				kvt_put_n_ok(kv, iov, 16, 100000u + b, PAGE, 2);
			assert_int_equal(cfs_kvc_clear(kv), 0);
		}
		cfs_iov_destroy(iov);
		cfs_kvc_close(kv);
	}
	struct cfs_kvc_opts wo = opts(0);
	struct kvt_writer w = { .mnt = env.mnt, .o = &wo, .ns = "kc", .acks = acks,
				.stopf = stopf, .max_ids = MAXPUTS, .len = PAGE, .pause_ms = 60 };
	pid_t pid = kvt_writer_start(&w);
	kvt_kill_under_load(&env, acks, "storage2", 160, MAXPUTS - 8);
	long n, lost = kvt_writer_lost(&w, pid, &env, &n);
	printf("cache-mode durability: %ld acknowledged whole-page puts, %ld lost\n", n, lost);
	assert_true(n >= 160 + 64 || n >= MAXPUTS - 8);
	assert_int_equal(lost, 0);
}

int main(void)
{
	srandom((unsigned)getpid());
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cli_durability),
		cmocka_unit_test(test_cache_round_trips),
		cmocka_unit_test(test_corrupt_every_replica_is_a_miss),
		cmocka_unit_test(test_kill9_storage_cache),
	};
	return integ_main(&env, "integ-kvcache-cache", tests, sizeof(tests) / sizeof(tests[0]));
}
