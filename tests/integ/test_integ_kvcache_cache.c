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
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chainfs.h"
#include "common/clock.h"
#include "common/crc32c.h"
#include "integ_env.h"
#include "testenv.h"

static struct integ env;
#define PAGE (64u << 10)

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

static int file_has(const char *path, const char *needle)
{
	char text[4096] = "";
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	size_t got = fread(text, 1, sizeof(text) - 1, f);
	text[got] = 0;
	fclose(f);
	return strstr(text, needle) != NULL;
}

/* A self-checking value: [u32 crc of the rest][u32 key][bytes...]. */
static void fill(uint8_t *p, size_t len, uint32_t key, uint32_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)((i * 2654435761u >> 13) ^ key ^ (seed * 77));
	memcpy(p + 4, &key, 4);
	uint32_t c = crc32c(0, p + 4, len - 4);
	memcpy(p, &c, 4);
}

static int self_ok(const uint8_t *p, size_t len, uint32_t key)
{
	uint32_t c, k;
	memcpy(&c, p, 4);
	memcpy(&k, p + 4, 4);
	return k == key && c == crc32c(0, p + 4, len - 4);
}

static void keyname(char *out, uint32_t id) { snprintf(out, 32, "ck-%08x", id); }

/* Puts N (<= 16) keys ck-(BASE+i), values of LEN bytes (seed SEED) from
 * the iov's first 16 pages; RES per key. */
static int put_n(cfs_kvc *kv, cfs_iov *iov, int n, uint32_t base, size_t len, uint32_t seed,
		 int *res)
{
	char names[16][32];
	const void *keys[16], *vals[16];
	size_t kl[16], lens[16];
	uint8_t *mem = cfs_iov_base(iov);
	for (int i = 0; i < n; i++) {
		keyname(names[i], base + (uint32_t)i);
		keys[i] = names[i];
		kl[i] = strlen(names[i]);
		vals[i] = mem + (size_t)i * PAGE;
		lens[i] = len;
		fill(mem + (size_t)i * PAGE, len, base + (uint32_t)i, seed);
	}
	return cfs_kvc_put(kv, iov, n, keys, kl, vals, lens, res);
}

/* Gets N keys ck-(BASE+i) into the iov's pages 16..31; RES per key. */
static int get_n(cfs_kvc *kv, cfs_iov *iov, int n, uint32_t base, int *res)
{
	char names[16][32];
	const void *keys[16];
	void *bufs[16];
	size_t kl[16], caps[16];
	uint8_t *mem = cfs_iov_base(iov);
	for (int i = 0; i < n; i++) {
		keyname(names[i], base + (uint32_t)i);
		keys[i] = names[i];
		kl[i] = strlen(names[i]);
		bufs[i] = mem + (size_t)(16 + i) * PAGE;
		caps[i] = PAGE;
	}
	return cfs_kvc_get(kv, iov, n, keys, kl, bufs, caps, res);
}

static void put_ok(cfs_kvc *kv, cfs_iov *iov, int n, uint32_t base, size_t len, uint32_t seed)
{
	int res[16];
	assert_int_equal(put_n(kv, iov, n, base, len, seed, res), 0);
	for (int i = 0; i < n; i++)
		assert_int_equal(res[i], 0);
}

static void get_ok(cfs_kvc *kv, cfs_iov *iov, int n, uint32_t base, size_t len)
{
	int res[16];
	assert_int_equal(get_n(kv, iov, n, base, res), 0);
	for (int i = 0; i < n; i++) {
		assert_int_equal(res[i], (int)len);
		assert_true(self_ok((uint8_t *)cfs_iov_base(iov) + (size_t)(16 + i) * PAGE, len,
				    base + (uint32_t)i));
	}
}

static void test_cli_durability(void **st)
{
	(void)st;
	char out[700];
	snprintf(out, sizeof(out), "%s/kvc-dur.out", env.dir);
	assert_int_equal(cli(out, "create", "dc", "--durability", "cache"), 0);
	assert_true(file_has(out, "durability cache"));
	assert_int_equal(cli(out, "info", "dc", NULL, NULL), 0);
	assert_true(file_has(out, "durability cache"));
	assert_int_equal(cli(out, "create", "ds", "--durability", "sync"), 0);
	assert_int_equal(cli(out, "info", "ds", NULL, NULL), 0);
	assert_true(file_has(out, "durability sync"));
	/* Bad input: refused with a message, nothing made. */
	assert_int_equal(cli(out, "create", "dx", "--durability", "fast"), 2);
	assert_true(file_has(out, "--durability must be sync or cache"));
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
			put_ok(kv, iov, 16, b, round % 3 == 2 ? 12345 : PAGE, round);
		for (uint32_t b = 0; b < 48; b += 16)
			get_ok(kv, iov, 16, b, round % 3 == 2 ? 12345 : PAGE);
		int res[16];
		for (uint32_t b = 0; b < 48; b += 16) {
			char names[16][32];
			const void *keys[16];
			size_t kl[16];
			for (int i = 0; i < 16; i++) {
				keyname(names[i], b + (uint32_t)i);
				keys[i] = names[i];
				kl[i] = strlen(names[i]);
			}
			assert_int_equal(cfs_kvc_delete(kv, 16, keys, kl, res), 0);
		}
		assert_int_equal(get_n(kv, iov, 16, 0, res), 0);
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

/* Flips 8 bytes 100 bytes after MARKER in the first block file under DIR
 * that holds it (a storage service's targets). 1 when it flipped. */
static int flip_in(const char *dir, const char *marker)
{
	DIR *d = opendir(dir);
	int flipped = 0;
	if (!d)
		return 0;
	for (struct dirent *de; !flipped && (de = readdir(d));) {
		if (de->d_name[0] == '.')
			continue;
		char path[1400];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		struct stat sb;
		if (lstat(path, &sb) < 0)
			continue;
		if (S_ISDIR(sb.st_mode)) {
			flipped = flip_in(path, marker);
			continue;
		}
		if (!S_ISREG(sb.st_mode) || strstr(de->d_name, ".mdb") || !strcmp(de->d_name, "wal"))
			continue;
		int fd = open(path, O_RDWR);
		if (fd < 0)
			continue;
		size_t ml = strlen(marker), cap = 1 << 20;
		char *buf = malloc(cap + ml);
		for (off_t pos = 0;; pos += (off_t)cap) {
			ssize_t r = pread(fd, buf, cap + ml, pos);
			if (r <= 0)
				break;
			char *hit = memmem(buf, (size_t)r, marker, ml);
			if (hit) {
				off_t at = pos + (hit - buf) + 100;
				uint8_t b[8];
				assert_int_equal(pread(fd, b, 8, at), 8);
				for (int i = 0; i < 8; i++)
					b[i] ^= 0xA5;
				assert_int_equal(pwrite(fd, b, 8, at), 8);
				assert_int_equal(fsync(fd), 0);
				flipped = 1;
				break;
			}
			if ((size_t)r < cap + ml)
				break;
		}
		free(buf);
		close(fd);
	}
	closedir(d);
	return flipped;
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
	int flipped = 0;
	for (int s = 1; s <= 3; s++) {
		char dir[700];
		snprintf(dir, sizeof(dir), "%s/storage%d", env.data, s);
		flipped += flip_in(dir, marker);
	}
	assert_int_equal(flipped, 3);
	/* Every replica fails its CRC: a miss, never wrong bytes, no error. */
	for (int k = 0; k < 4; k++) {
		memset(bufs[0], 0xEE, PAGE);
		assert_int_equal(cfs_kvc_get(kv, iov, 1, keys, kl, bufs, caps, res), 0);
		assert_int_equal(res[0], -ENOENT);
	}
	/* The services stay in service: other keys go on. */
	put_ok(kv, iov, 16, 500, PAGE, 9);
	get_ok(kv, iov, 16, 500, PAGE);
	assert_true(integ_all_serving(&env));
	cfs_iov_destroy(iov);
	cfs_kvc_close(kv);
	assert_int_equal(cfs_kvc_destroy(env.mnt, "bad", &o), 0);
}

/* The writer child of test_kill9_storage_cache (forked while this process
 * has no threads): whole-page puts of 8 keys at a time, the ids of those
 * acknowledged appended to ACKS, until STOPF exists or MAXPUTS. */
#define NS_PAGES 512
#define MAXPUTS 480
static void writer_child(const char *acks, const char *stopf)
{
	struct cfs_kvc_opts o = opts(0);
	cfs_kvc *kv;
	cfs_iov *iov;
	int fd = open(acks, O_WRONLY | O_APPEND | O_CREAT, 0644);
	if (fd < 0 || cfs_kvc_open(env.mnt, "kc", &o, &kv) ||
	    cfs_iov_create(env.mnt, 32 * PAGE, 0, -1, &iov))
		_exit(2);
	uint32_t next = 0;
	while (access(stopf, F_OK) != 0) {
		if (next >= MAXPUTS) {
			clock_sleep_ms(50);
			continue;
		}
		int res[8];
		uint32_t ok[8];
		int nok = 0;
		uint32_t base = next;
		next += 8;
		if (put_n(kv, iov, 8, base, PAGE, 1, res))
			continue;
		for (int i = 0; i < 8; i++)
			if (res[i] == 0)
				ok[nok++] = base + (uint32_t)i;
		if (nok && write(fd, ok, (size_t)nok * 4) != (ssize_t)nok * 4)
			_exit(4);
		clock_sleep_ms(60); /* keep under the namespace's pages */
	}
	cfs_iov_destroy(iov);
	cfs_kvc_close(kv);
	_exit(0);
}

static long acked(const char *acks)
{
	struct stat sb;
	return stat(acks, &sb) == 0 ? (long)sb.st_size / 4 : 0;
}

static void test_kill9_storage_cache(void **st)
{
	(void)st;
	struct cfs_kvc_opts o = opts(CFS_KVC_CACHE | CFS_KVC_PREFILL);
	char acks[700], stopf[700], log[700];
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
				put_ok(kv, iov, 16, 100000u + b, PAGE, 2);
			assert_int_equal(cfs_kvc_clear(kv), 0);
		}
		cfs_iov_destroy(iov);
		cfs_kvc_close(kv);
	}
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		writer_child(acks, stopf);
	uint64_t end = clock_mono_ms() + 60000;
	while (acked(acks) < 160 && clock_mono_ms() < end)
		clock_sleep_ms(20);
	assert_true(acked(acks) >= 160);
	integ_kill9(&env, "storage2");
	clock_sleep_ms(300);
	snprintf(log, sizeof(log), "%s/kc-up-again.out", env.dir);
	char *again[] = { (char *)testenv_chainfs(), "up", "--dir", env.data, NULL };
	assert_int_equal(integ_run(again, NULL, log, 120000), 0);
	long mid = acked(acks);
	end = clock_mono_ms() + 90000;
	while (acked(acks) < mid + 64 && acked(acks) < MAXPUTS - 8 && clock_mono_ms() < end)
		clock_sleep_ms(50);
	assert_true(acked(acks) >= mid + 64 || acked(acks) >= MAXPUTS - 8);
	FILE *f = fopen(stopf, "w");
	assert_non_null(f);
	fclose(f);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	uint64_t t0 = clock_mono_ms();
	while (!integ_all_serving(&env) && clock_mono_ms() - t0 < 60000)
		clock_sleep_ms(200);
	long n = acked(acks);
	uint32_t *ids = calloc((size_t)n + 1, 4);
	f = fopen(acks, "rb");
	assert_non_null(f);
	assert_int_equal(fread(ids, 4, (size_t)n, f), (size_t)n);
	fclose(f);
	o = opts(0);
	cfs_kvc *kv;
	cfs_iov *rd;
	int lost = 0;
	assert_int_equal(cfs_kvc_open(env.mnt, "kc", &o, &kv), 0);
	assert_int_equal(cfs_iov_create(env.mnt, 16 * PAGE, 0, -1, &rd), 0);
	for (long i = 0; i < n; i += 16) {
		int m = n - i < 16 ? (int)(n - i) : 16, res[16];
		char names[16][32];
		const void *keys[16];
		void *bufs[16];
		size_t kl[16], caps[16];
		for (int j = 0; j < m; j++) {
			keyname(names[j], ids[i + j]);
			keys[j] = names[j];
			kl[j] = strlen(names[j]);
			bufs[j] = (uint8_t *)cfs_iov_base(rd) + (size_t)j * PAGE;
			caps[j] = PAGE;
		}
		assert_int_equal(cfs_kvc_get(kv, rd, m, keys, kl, bufs, caps, res), 0);
		for (int j = 0; j < m; j++)
			if (res[j] != (int)PAGE || !self_ok(bufs[j], PAGE, ids[i + j]))
				lost++;
	}
	printf("cache-mode durability: %ld acknowledged whole-page puts, %d lost\n", n, lost);
	assert_true(n >= 160 + 64 || n >= MAXPUTS - 8);
	assert_int_equal(lost, 0);
	free(ids);
	cfs_iov_destroy(rd);
	cfs_kvc_close(kv);
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
