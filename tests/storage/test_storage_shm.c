/* test_storage_shm.c - the same-host shared-memory read path (docs/rpc.md
 * "Shared memory"): a real `chainfs storage` process on 127.0.0.1 and the
 * storage client / raw RPC over its unix socket.
 *   roundtrip   random chunks read back at many sizes and offsets, singly
 *               and in batches: every byte equals what was written, and
 *               the reads went over shared memory; the same reads from a
 *               client with CFS_NO_LOCAL_SOCKET=1 (TCP: no shared memory)
 *               give the same bytes
 *   hostile     registrations without a descriptor, with an unsealed
 *               memfd, with a size beyond the file; reads naming another
 *               region, offsets and windows outside the region, ranges
 *               longer than the window: each a clear error, the
 *               connection and the service still serve; the sealed memfd
 *               cannot be truncated; a good read lands in the memfd
 *   killed      a client process SIGKILLed while its shared-memory reads
 *               are in flight: the service stays up and serves the next
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/status.h"
#include "net/rpc.h"
#include "stor_cluster.h"
#include "storage/storage_proto.h"
#include "storage_client/storage_client.h"
#include "testenv.h"

#define NCH 6
#define CHLEN (3u << 20)

static struct storage_client *new_client(void)
{
	struct storage_client_opts o = { .cluster_id = SC_CLUSTER, .secret = (const uint8_t *)SC_SECRET,
					 .secret_len = strlen(SC_SECRET), .timeout_ms = 5000,
					 .retry_budget_ms = 3000 };
	struct storage_client *c = NULL;
	char err[256];
	int rc = storage_client_new(&o, &c, err, sizeof(err));
	if (rc)
		print_message("client: %s\n", err);
	assert_int_equal(rc, 0);
	return c;
}

static uint64_t rnd_state = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 7;
	rnd_state ^= rnd_state << 17;
	return rnd_state;
}

static void fill(uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)rnd();
}

/* Writes NCH chunks of random bytes and lengths; LEN gets each length. */
static void write_chunks(struct storage_client *c, const char *addr, uint8_t **data, uint32_t *len)
{
	for (int i = 0; i < NCH; i++) {
		len[i] = i == 0 ? CHLEN : 1 + (uint32_t)(rnd() % CHLEN);
		data[i] = malloc(CHLEN);
		fill(data[i], len[i]);
		struct storage_loc loc = { .addr = addr, .target = 1 };
		assert_int_equal(storage_client_write(c, &loc, 5, (uint32_t)i, 0, len[i], data[i], 0, NULL),
				 0);
	}
}

/* 60 single reads and 10 batches of 4 at random places, checked. */
static void read_check(struct storage_client *c, const char *addr, uint8_t **data,
		       const uint32_t *len)
{
	uint8_t *buf = malloc(4 * (size_t)CHLEN);
	for (int k = 0; k < 100; k++) {
		int nb = k < 60 ? 1 : 4;
		struct storage_read r[4];
		uint8_t *p = buf;
		for (int q = 0; q < nb; q++) {
			int i = (int)(rnd() % NCH);
			uint32_t off = (uint32_t)(rnd() % (len[i] + 100));
			static const uint32_t sizes[] = { 1, 511, 4096, 4097, 65536, 262144, 1u << 20, 3u << 20 };
			uint32_t want = sizes[rnd() % 8] + (uint32_t)(rnd() % 3);
			if (want > CHLEN)
				want = CHLEN;
			r[q] = (struct storage_read){ .loc = { .addr = addr, .target = 1 }, .ino = 5,
						      .idx = (uint32_t)i, .off = off, .len = want,
						      .dst = p };
			/* Batches: adjacent or scattered memory. */
			p += want + ((k & 1) ? 4096 : 0);
		}
		assert_int_equal(storage_client_read(c, r, (size_t)nb, 0), 0);
		for (int q = 0; q < nb; q++) {
			int i = (int)r[q].idx;
			int expect = r[q].off >= len[i] ? 0 : (int)(len[i] - r[q].off < r[q].len ? len[i] - r[q].off : r[q].len);
			if (r[q].result != expect)
				print_message("read idx %d off %u len %u: %d, want %d\n", i, r[q].off,
					      r[q].len, r[q].result, expect);
			assert_int_equal(r[q].result, expect);
			if (expect > 0)
				assert_memory_equal(r[q].dst, data[i] + r[q].off, (size_t)expect);
		}
	}
	free(buf);
}

static void test_roundtrip(void **state)
{
	(void)state;
	struct stor_cluster sc;
	stor_cluster_init(&sc, "shm-rt", 1, 1, 4000);
	stor_cluster_start_storage(&sc, 0);
	const char *addr = sc.node[0].addr;
	struct storage_client *c = new_client();
	uint8_t *data[NCH];
	uint32_t len[NCH];
	write_chunks(c, addr, data, len);
	read_check(c, addr, data, len);
	struct storage_client_stats st;
	storage_client_get_stats(c, &st);
	print_message("shm reads %llu, fallbacks %llu\n", (unsigned long long)st.shm_reads,
		      (unsigned long long)st.shm_fallbacks);
	/* The first read registers (and goes over the socket); most of the
	 * rest go over shared memory (combined or oversize ones may not). */
	assert_true(st.shm_reads >= 50);
	assert_int_equal(st.shm_quarantined, 0);
	storage_client_free(c);
	/* Over TCP: no shared memory, the same bytes. */
	setenv("CFS_NO_LOCAL_SOCKET", "1", 1);
	c = new_client();
	unsetenv("CFS_NO_LOCAL_SOCKET");
	read_check(c, addr, data, len);
	storage_client_get_stats(c, &st);
	assert_int_equal(st.shm_reads, 0);
	storage_client_free(c);
	for (int i = 0; i < NCH; i++)
		free(data[i]);
	stor_cluster_signal(&sc, 0, SIGTERM);
	stor_cluster_fini(&sc);
}

static int call(struct rpc_client *rc, const char *addr, uint16_t type, const struct buf *pl,
		int fd, struct buf *resp)
{
	struct rpc_peer *p;
	char err[128];
	assert_int_equal(rpc_client_peer(rc, addr, &p, err, sizeof(err)), 0);
	struct rpc_call cl = { .type = type, .payload = pl->data, .payload_len = (uint32_t)pl->len,
			       .timeout_ms = 5000, .flags = fd >= 0 ? RPC_CALL_SEND_FD : 0,
			       .send_fd = fd };
	buf_reset(resp);
	return rpc_call(p, &cl, resp, NULL);
}

static int reg(struct rpc_client *rc, const char *addr, int fd, uint64_t size, uint64_t *region)
{
	struct buf b, resp;
	buf_init(&b);
	buf_init(&resp);
	struct sto_shm_reg_req m = { .size = size };
	sto_shm_reg_req_encode(&b, &m);
	int r = call(rc, addr, STO_MSG_SHM_REG, &b, fd, &resp);
	if (!r) {
		struct sto_shm_reg_resp rr;
		assert_int_equal(sto_shm_reg_resp_decode(resp.data, resp.len, &rr), 0);
		*region = rr.region;
	}
	buf_fini(&b);
	buf_fini(&resp);
	return r;
}

/* SHM_READ of [OFF, OFF+LEN) of chunk (5, IDX) into CAP bytes at AT of
 * REGION; the first result in *RES. */
static int shm_read(struct rpc_client *rc, const char *addr, uint64_t region, uint64_t at,
		    uint64_t cap, uint32_t idx, uint32_t off, uint32_t len, int32_t *res)
{
	struct buf b, resp;
	buf_init(&b);
	buf_init(&resp);
	struct sto_read_range rr = { .target = 1, .ino = 5, .idx = idx, .off = off, .len = len };
	struct sto_read_req m = { .n = 1, .r = &rr };
	struct sto_shm_at w = { .region = region, .off = at, .cap = cap };
	sto_shm_read_req_encode(&b, &w, &m);
	int r = call(rc, addr, STO_MSG_SHM_READ, &b, -1, &resp);
	if (!r && res) {
		struct sto_read_res out;
		struct sto_read_resp rp;
		assert_int_equal(sto_read_resp_decode(resp.data, resp.len, &rp, &out, 1), 0);
		*res = out.result;
	}
	buf_fini(&b);
	buf_fini(&resp);
	return r;
}

static int sealed_memfd(size_t size)
{
	int fd = memfd_create("shm-test", MFD_CLOEXEC | MFD_ALLOW_SEALING);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	assert_int_equal(fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW), 0);
	return fd;
}

static void test_hostile(void **state)
{
	(void)state;
	struct stor_cluster sc;
	stor_cluster_init(&sc, "shm-bad", 1, 1, 4000);
	stor_cluster_start_storage(&sc, 0);
	const char *addr = sc.node[0].addr;
	struct storage_client *c = new_client();
	uint8_t *data[NCH];
	uint32_t len[NCH];
	write_chunks(c, addr, data, len);

	struct rpc_opts ro = { .cluster_id = SC_CLUSTER, .secret = (const uint8_t *)SC_SECRET,
			       .secret_len = strlen(SC_SECRET) };
	struct rpc_client *rc;
	assert_int_equal(rpc_client_new(&ro, &rc), 0);
	uint64_t region = 0;
	const size_t size = 4u << 20;
	/* No descriptor. */
	assert_int_equal(reg(rc, addr, -1, size, &region), -EBADF);
	/* Not sealed against shrinking (the service could SIGBUS on it). */
	int ufd = memfd_create("shm-unsealed", MFD_CLOEXEC);
	assert_true(ufd >= 0);
	assert_int_equal(ftruncate(ufd, (off_t)size), 0);
	assert_int_equal(reg(rc, addr, ufd, size, &region), -EBADF);
	close(ufd);
	/* Not a memfd at all. */
	int pfd[2];
	assert_int_equal(pipe(pfd), 0);
	assert_int_equal(reg(rc, addr, pfd[0], size, &region), -EBADF);
	close(pfd[0]);
	close(pfd[1]);
	/* Sizes: beyond the file, zero. */
	int fd = sealed_memfd(size);
	assert_int_equal(reg(rc, addr, fd, size + 4096, &region), -EINVAL);
	assert_int_equal(reg(rc, addr, fd, 0, &region), -EINVAL);
	/* A good one; the seal stops a truncate that would pull pages from
	 * under the service's mapping. */
	assert_int_equal(reg(rc, addr, fd, size, &region), 0);
	assert_true(region != 0);
	assert_int_equal(ftruncate(fd, 4096), -1);
	assert_int_equal(errno, EPERM);
	uint8_t *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_true(map != MAP_FAILED);
	/* Hostile reads: each a clear error, the connection survives. */
	int32_t res = 0;
	assert_int_equal(shm_read(rc, addr, region + 1000, 0, 4096, 0, 0, 4096, &res), -ESTALE);
	assert_int_equal(shm_read(rc, addr, region, size, 1, 0, 0, 1, &res), -EFAULT);
	assert_int_equal(shm_read(rc, addr, region, size - 4095, 4096, 0, 0, 4096, &res), -EFAULT);
	assert_int_equal(shm_read(rc, addr, region, UINT64_MAX - 10, 4096, 0, 0, 4096, &res),
			 -EFAULT);
	assert_int_equal(shm_read(rc, addr, region, 4096, UINT64_MAX, 0, 0, 4096, &res), -EFAULT);
	assert_int_equal(shm_read(rc, addr, region, 0, 4096, 0, 0, 8192, &res), -EFAULT);
	/* A good one lands in the memfd. */
	memset(map, 0xee, size);
	assert_int_equal(shm_read(rc, addr, region, 8192, 1u << 20, 0, 100, 1u << 20, &res), 0);
	assert_int_equal(res, 1 << 20);
	assert_memory_equal(map + 8192, data[0] + 100, 1u << 20);
	assert_int_equal(map[8191], 0xee);
	assert_int_equal(map[8192 + (1u << 20)], 0xee);
	/* Up to the last byte of the region. */
	assert_int_equal(shm_read(rc, addr, region, size - 4096, 4096, 0, 7, 4096, &res), 0);
	assert_memory_equal(map + size - 4096, data[0] + 7, 4096);
	/* The client unmaps and closes its side: the service keeps its own
	 * mapping until the connection closes, so reads still work. */
	munmap(map, size);
	close(fd);
	assert_int_equal(shm_read(rc, addr, region, 0, 4096, 0, 0, 4096, &res), 0);
	assert_int_equal(res, 4096);
	/* Descriptors nobody asked for: closed by the service, no harm. */
	for (int k = 0; k < 8; k++) {
		int xfd = sealed_memfd(4096);
		struct buf b, resp;
		buf_init(&b);
		buf_init(&resp);
		struct sto_query_req q = { .target = 1, .ino = 5, .idx = 0 };
		sto_query_req_encode(&b, &q);
		assert_int_equal(call(rc, addr, STO_MSG_QUERY, &b, xfd, &resp), 0);
		buf_fini(&b);
		buf_fini(&resp);
		close(xfd);
	}
	rpc_client_free(rc);
	assert_true(testenv_alive(sc.node[0].pid));
	/* The service still serves (over shared memory too). */
	read_check(c, addr, data, len);
	storage_client_free(c);
	for (int i = 0; i < NCH; i++)
		free(data[i]);
	stor_cluster_signal(&sc, 0, SIGTERM);
	stor_cluster_fini(&sc);
}

static void test_killed(void **state)
{
	(void)state;
	struct stor_cluster sc;
	stor_cluster_init(&sc, "shm-kill", 1, 1, 4000);
	stor_cluster_start_storage(&sc, 0);
	const char *addr = sc.node[0].addr;
	struct storage_client *c = new_client();
	uint8_t *data[NCH];
	uint32_t len[NCH];
	write_chunks(c, addr, data, len);
	for (int round = 0; round < 3; round++) {
		pid_t pid = fork();
		assert_true(pid >= 0);
		if (pid == 0) {
			/* Reads of 3 MiB in a loop until killed. */
			struct storage_client *cc = new_client();
			uint8_t *buf = malloc(CHLEN);
			for (;;) {
				struct storage_read r = { .loc = { .addr = addr, .target = 1 }, .ino = 5,
							  .idx = 0, .len = CHLEN, .dst = buf };
				storage_client_read(cc, &r, 1, 0);
			}
		}
		usleep(200000 + (useconds_t)(rnd() % 200000));
		kill(pid, SIGKILL);
		int st;
		assert_int_equal(waitpid(pid, &st, 0), pid);
		assert_true(testenv_alive(sc.node[0].pid));
	}
	read_check(c, addr, data, len);
	storage_client_free(c);
	for (int i = 0; i < NCH; i++)
		free(data[i]);
	stor_cluster_signal(&sc, 0, SIGTERM);
	stor_cluster_fini(&sc);
}

int main(void)
{
	signal(SIGPIPE, SIG_IGN);
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_roundtrip),
		cmocka_unit_test(test_hostile),
		cmocka_unit_test(test_killed),
	};
	int rc = cmocka_run_group_tests(tests, NULL, NULL);
	testenv_cleanup();
	return rc;
}
