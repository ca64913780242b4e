/* kvc_test.c - values, batches and acknowledged-put logs of the KVCache
 * integration tests (kvc_test.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/crc32c.h"
#include "kvc_test.h"

void kvt_fill(uint8_t *p, size_t len, uint32_t key, uint32_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)((i * 2654435761u >> 11) ^ key ^ (seed * 31));
	if (len >= 8) {
		memcpy(p + 4, &key, 4);
		uint32_t c = crc32c(0, p + 4, len - 4);
		memcpy(p, &c, 4);
	}
}

int kvt_self_ok(const uint8_t *p, size_t len, uint32_t key)
{
	uint32_t c, k;
	if (len < 8)
		return 0;
	memcpy(&c, p, 4);
	memcpy(&k, p + 4, 4);
	return k == key && c == crc32c(0, p + 4, len - 4);
}

void kvt_keyname(char *out, uint32_t id) { snprintf(out, KVT_NAME_CAP, "key-%08x", id); }

void kvt_batch_keys(struct kvt_batch *b, int n, const uint32_t *ids, uint32_t id0)
{
	assert_true(n >= 0 && n <= KVT_BATCH);
	b->n = n;
	for (int i = 0; i < n; i++) {
		b->ids[i] = ids ? ids[i] : id0 + (uint32_t)i;
		kvt_keyname(b->names[i], b->ids[i]);
		b->keys[i] = b->names[i];
		b->kl[i] = strlen(b->names[i]);
	}
}

void kvt_batch_vals(struct kvt_batch *b, uint8_t *mem, size_t len, uint32_t seed)
{
	for (int i = 0; i < b->n; i++) {
		uint8_t *v = mem + (size_t)i * KVT_PAGE;
		kvt_fill(v, len, b->ids[i], seed);
		b->vals[i] = v;
		b->lens[i] = len;
	}
}

void kvt_batch_bufs(struct kvt_batch *b, uint8_t *mem)
{
	for (int i = 0; i < b->n; i++) {
		b->bufs[i] = mem + (size_t)i * KVT_PAGE;
		b->caps[i] = KVT_PAGE;
	}
}

int kvt_put_n(cfs_kvc *kv, cfs_iov *iov, int n, uint32_t base, size_t len, uint32_t seed,
	      int *res)
{
	struct kvt_batch b;
	assert_true(n <= 16);
	kvt_batch_keys(&b, n, NULL, base);
	kvt_batch_vals(&b, cfs_iov_base(iov), len, seed);
	return cfs_kvc_put(kv, iov, n, b.keys, b.kl, b.vals, b.lens, res);
}

int kvt_get_n(cfs_kvc *kv, cfs_iov *iov, int n, uint32_t base, int *res)
{
	struct kvt_batch b;
	assert_true(n <= 16);
	kvt_batch_keys(&b, n, NULL, base);
	kvt_batch_bufs(&b, (uint8_t *)cfs_iov_base(iov) + 16 * (size_t)KVT_PAGE);
	return cfs_kvc_get(kv, iov, n, b.keys, b.kl, b.bufs, b.caps, res);
}

void kvt_put_n_ok(cfs_kvc *kv, cfs_iov *iov, int n, uint32_t base, size_t len, uint32_t seed)
{
	int res[16];
	assert_int_equal(kvt_put_n(kv, iov, n, base, len, seed, res), 0);
	for (int i = 0; i < n; i++)
		assert_int_equal(res[i], 0);
}

void kvt_get_n_check(cfs_kvc *kv, cfs_iov *iov, int n, uint32_t base, size_t len)
{
	int res[16];
	assert_int_equal(kvt_get_n(kv, iov, n, base, res), 0);
	for (int i = 0; i < n; i++) {
		assert_int_equal(res[i], (int)len);
		assert_true(kvt_self_ok((uint8_t *)cfs_iov_base(iov) + (size_t)(16 + i) * KVT_PAGE,
					len, base + (uint32_t)i));
	}
}

static void __attribute__((noreturn)) writer_child(const struct kvt_writer *w)
{
	cfs_kvc *kv;
	cfs_iov *iov;
	int fd = open(w->acks, O_WRONLY | O_APPEND | O_CREAT, 0644);
	if (fd < 0 || cfs_kvc_open(w->mnt, w->ns, w->o, &kv) ||
	    cfs_iov_create(w->mnt, 8 * (size_t)KVT_PAGE, 0, -1, &iov))
		_exit(2);
	uint32_t next = 0;
	while (access(w->stopf, F_OK) != 0) {
		if (next >= w->max_ids) {
			clock_sleep_ms(50);
			continue;
		}
		struct kvt_batch b;
		int res[8], nok = 0;
		uint32_t ok[8];
		kvt_batch_keys(&b, 8, NULL, w->id0 + next);
		next += 8;
		kvt_batch_vals(&b, cfs_iov_base(iov), w->len, 1);
		if (cfs_kvc_put(kv, iov, 8, b.keys, b.kl, b.vals, b.lens, res))
			continue;
		for (int i = 0; i < 8; i++)
			if (res[i] == 0)
				ok[nok++] = b.ids[i];
		if (nok && write(fd, ok, (size_t)nok * 4) != (ssize_t)nok * 4)
			_exit(4);
		if (w->pause_ms)
			clock_sleep_ms((uint64_t)w->pause_ms);
	}
	cfs_iov_destroy(iov);
	cfs_kvc_close(kv);
	_exit(0);
}

pid_t kvt_writer_start(const struct kvt_writer *w)
{
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		writer_child(w);
	return pid;
}

long kvt_acked(const char *acks)
{
	struct stat st;
	return stat(acks, &st) == 0 ? (long)st.st_size / 4 : 0;
}

void kvt_kill_under_load(const struct integ *e, const char *acks, const char *role, long ahead,
			 long cap)
{
	char tag[64];
	long before = kvt_acked(acks);
	uint64_t end = clock_mono_ms() + 60000;
	while (kvt_acked(acks) < before + ahead && clock_mono_ms() < end)
		clock_sleep_ms(20);
	assert_true(kvt_acked(acks) >= before + ahead);
	integ_kill9(e, role);
	clock_sleep_ms(300);
	snprintf(tag, sizeof(tag), "up-again-%s", role);
	assert_int_equal(integ_up_again(e, tag), 0);
	long mid = kvt_acked(acks);
	end = clock_mono_ms() + 90000;
	while (kvt_acked(acks) < mid + 64 && kvt_acked(acks) < cap && clock_mono_ms() < end)
		clock_sleep_ms(50);
	assert_true(kvt_acked(acks) >= mid + 64 || kvt_acked(acks) >= cap);
}

/* Every id of ACKS (their count into *N); the caller frees. */
static uint32_t *acks_load(const char *acks, long *n)
{
	*n = kvt_acked(acks);
	uint32_t *ids = calloc((size_t)*n + 1, 4);
	assert_non_null(ids);
	FILE *f = fopen(acks, "rb");
	assert_non_null(f);
	assert_int_equal(fread(ids, 4, (size_t)*n, f), (size_t)*n);
	fclose(f);
	return ids;
}

/* How many of the N keys key-IDS[i] do not read back, through RD (an iov
 * of KVT_BATCH pages), as LEN bytes kvt_fill made for their id. */
static long lost_of(cfs_kvc *kv, cfs_iov *rd, const uint32_t *ids, long n, size_t len)
{
	const int per = KVT_BATCH;
	long lost = 0;
	for (long i = 0; i < n; i += per) {
		int m = n - i < per ? (int)(n - i) : per, res[KVT_BATCH];
		struct kvt_batch b;
		kvt_batch_keys(&b, m, ids + i, 0);
		kvt_batch_bufs(&b, cfs_iov_base(rd));
		assert_int_equal(cfs_kvc_get(kv, rd, m, b.keys, b.kl, b.bufs, b.caps, res), 0);
		for (int j = 0; j < m; j++)
			if (res[j] != (int)len || !kvt_self_ok(b.bufs[j], len, b.ids[j]))
				lost++;
	}
	return lost;
}

long kvt_writer_lost(const struct kvt_writer *w, pid_t pid, const struct integ *e, long *acked)
{
	FILE *f = fopen(w->stopf, "w");
	assert_non_null(f);
	fclose(f);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	integ_wait_serving(e, 60000);
	long n;
	uint32_t *ids = acks_load(w->acks, &n);
	cfs_kvc *kv;
	cfs_iov *rd;
	assert_int_equal(cfs_kvc_open(w->mnt, w->ns, w->o, &kv), 0);
	assert_int_equal(cfs_iov_create(w->mnt, KVT_BATCH * (size_t)KVT_PAGE, 0, -1, &rd), 0);
	long lost = lost_of(kv, rd, ids, n, w->len);
	free(ids);
	cfs_iov_destroy(rd);
	cfs_kvc_close(kv);
	*acked = n;
	return lost;
}
