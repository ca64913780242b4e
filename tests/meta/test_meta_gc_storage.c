/* test_meta_gc_storage.c - the meta service's storage wiring end to end:
 * after `rm` of a multi-chunk file through a real mount (`chainfs up`),
 * the meta GC removes its chunks from every storage chain.
 *
 * The test reads the cluster id, mgmtd port and secret that `chainfs up`
 * wrote to its data dir, takes chain table 1 from mgmtd routing, and asks
 * the chains directly (STO_QUERY, last chunk of the inode) and every target
 * (STO_STAT chunk count). Before the rm some chain must hold the file's
 * chunks (so the check can fail); after it the test polls, bounded by time,
 * until no chain holds any and the targets' chunk counts drop by at least
 * the file's chunk count times the replication. A second case unlinks a
 * file while it is open for write: its chunks stay until the last close,
 * then GC removes them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "storage_client/storage_client.h"
#include "common/clock.h"
#include "integ_env.h"
#include "mgmtd/mgmtd_client.h"
#include "mgmtd/routing.h"
#include "net/auth.h"

#define FILE_CHUNKS 5
#define CHUNK (1u << 20) /* chainfs up's default chunk size */
#define GC_WAIT_MS 30000

static struct integ env;
static char cluster_id[128];
static char mgmtd_addr[64];
static uint8_t secret[AUTH_SECRET_MAX];
static int secret_len;
static struct mgmtd_client *mc;
static struct storage_client *sc;

static void read_conf(void)
{
	char path[700], line[512];
	unsigned port = 0;
	snprintf(path, sizeof(path), "%s/cluster.conf", env.data);
	FILE *f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		sscanf(line, "cluster_id = %127s", cluster_id);
		sscanf(line, "mgmtd_port = %u", &port);
	}
	fclose(f);
	assert_true(cluster_id[0] && port);
	snprintf(mgmtd_addr, sizeof(mgmtd_addr), "127.0.0.1:%u", port);
	char err[256];
	snprintf(path, sizeof(path), "%s/secret", env.data);
	secret_len = auth_load_secret(path, secret, err, sizeof(err));
	if (secret_len < 0)
		fprintf(stderr, "%s\n", err);
	assert_true(secret_len > 0);
}

static int setup(void **state)
{
	integ_require_fuse();
	integ_init(&env, "metagc");
	integ_up(&env);
	read_conf();
	const char *addrs[] = { mgmtd_addr };
	char err[256];
	struct mgmtd_client_opts mo = { .mgmtd_addrs = addrs, .n_mgmtd = 1,
					.cluster_id = cluster_id, .secret = secret,
					.secret_len = (size_t)secret_len };
	assert_int_equal(mgmtd_client_new(&mo, &mc, err, sizeof(err)), 0);
	assert_int_equal(mgmtd_client_wait_routing(mc, 1, 10000), 0);
	struct storage_client_opts so = { .cluster_id = cluster_id, .secret = secret,
					  .secret_len = (size_t)secret_len, .mgmtd_addrs = addrs,
					  .n_mgmtd = 1, .timeout_ms = 3000,
					  .retry_budget_ms = 5000 };
	assert_int_equal(storage_client_new(&so, &sc, err, sizeof(err)), 0);
	return 0;
}

static int teardown(void **state)
{
	storage_client_free(sc);
	mgmtd_client_free(mc);
	integ_teardown(&env);
	return 0;
}

/* Chains of table 1 that hold a chunk of INO; -1 on a query error. */
static int chains_holding(uint64_t ino)
{
	uint32_t chains[256];
	uint32_t n = 0;
	struct mgmtd_routing *snap = mgmtd_client_routing(mc);
	assert_non_null(snap);
	const struct route_table *t = route_find_table(mgmtd_routing_info(snap), 1);
	assert_non_null(t);
	for (uint32_t i = 0; i < t->n && n < 256; i++)
		chains[n++] = t->chains[i];
	mgmtd_routing_put(snap);
	assert_true(n > 0);
	int holding = 0;
	for (uint32_t i = 0; i < n; i++) {
		struct storage_loc loc = { .chain = chains[i] };
		struct sto_query_resp q;
		int rc = storage_client_query(sc, &loc, ino, 0, 1, &q);
		if (rc == 0)
			holding++;
		else if (rc != -ENOENT) {
			fprintf(stderr, "query chain %u: %d\n", chains[i], rc);
			return -1;
		}
	}
	return holding;
}

/* Sum of the chunk counts of every target in routing; -1 on an error. */
static int64_t target_chunks(void)
{
	struct mgmtd_routing *snap = mgmtd_client_routing(mc);
	assert_non_null(snap);
	const struct route_info *ri = mgmtd_routing_info(snap);
	int64_t sum = 0;
	for (size_t i = 0; i < ri->n_targets && sum >= 0; i++) {
		const struct route_node *nd = route_find_node(ri, ri->targets[i].node_id);
		struct sto_stat_resp st;
		if (!nd || storage_client_stat(sc, nd->addr, ri->targets[i].id, &st))
			sum = -1;
		else
			sum += (int64_t)st.chunks;
	}
	mgmtd_routing_put(snap);
	return sum;
}

static void test_rm_reclaims_chunks(void **state)
{
	char f[1024];
	const size_t n = (size_t)FILE_CHUNKS * CHUNK - 300;
	uint8_t *data = malloc(n);
	assert_non_null(data);
	for (size_t i = 0; i < n; i++)
		data[i] = (uint8_t)(i * 13 + 5);
	integ_path(&env, "gcfile", f, sizeof(f));
	integ_write_file(f, data, n);
	free(data);
	struct stat st;
	assert_int_equal(stat(f, &st), 0);
	assert_int_equal((long long)st.st_size, (long long)n);
	uint64_t ino = (uint64_t)st.st_ino;

	int before = chains_holding(ino);
	int64_t chunks_before = target_chunks();
	fprintf(stderr, "ino %llu: %d chains hold chunks, targets hold %lld chunks\n",
		(unsigned long long)ino, before, (long long)chunks_before);
	assert_true(before > 0);
	assert_true(chunks_before >= FILE_CHUNKS);

	assert_int_equal(unlink(f), 0);
	uint64_t deadline = clock_mono_ms() + GC_WAIT_MS;
	int left = before;
	while ((left = chains_holding(ino)) != 0 && clock_mono_ms() < deadline)
		usleep(200 * 1000);
	assert_int_equal(left, 0);
	/* A chain remove answers once the tail dropped the chunks; the other
	 * replicas finish as the acknowledgements travel back, so the count
	 * over every replica is polled too, under the same deadline. */
	int64_t chunks_after;
	while ((chunks_after = target_chunks()) != 0 && clock_mono_ms() < deadline)
		usleep(200 * 1000);
	fprintf(stderr, "after gc: targets hold %lld chunks\n", (long long)chunks_after);
	assert_true(chunks_after >= 0);
	/* Every replica of every chunk went (nothing else is written meanwhile). */
	assert_true(chunks_before - chunks_after >= FILE_CHUNKS);
	assert_int_equal(chunks_after, 0);
}

/* A file unlinked while open for write keeps its chunks (and its data
 * readable through the descriptor) until the last close; then GC takes
 * them. Runs after the rm test, so target counts are not checked here. */
static void test_open_file_kept_until_close(void **state)
{
	char f[1024];
	const size_t n = 2u * CHUNK + 123;
	uint8_t *data = malloc(n), *back = malloc(n);
	assert_true(data && back);
	for (size_t i = 0; i < n; i++)
		data[i] = (uint8_t)(i * 31 + 3);
	integ_path(&env, "gcopen", f, sizeof(f));
	int fd = open(f, O_CREAT | O_RDWR | O_TRUNC, 0644);
	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, data, n, 0), (ssize_t)n);
	assert_int_equal(fsync(fd), 0);
	struct stat st;
	assert_int_equal(fstat(fd, &st), 0);
	uint64_t ino = (uint64_t)st.st_ino;
	assert_int_equal(unlink(f), 0);
	/* Several background passes (1 s apart) go by with the file open. */
	usleep(2500 * 1000);
	assert_true(chains_holding(ino) > 0);
	assert_int_equal(pread(fd, back, n, 0), (ssize_t)n);
	assert_memory_equal(back, data, n);
	assert_int_equal(close(fd), 0);
	free(data);
	free(back);
	uint64_t deadline = clock_mono_ms() + GC_WAIT_MS;
	int left;
	while ((left = chains_holding(ino)) != 0 && clock_mono_ms() < deadline)
		usleep(200 * 1000);
	assert_int_equal(left, 0);
}

static void test_down(void **state)
{
	integ_down(&env);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rm_reclaims_chunks),
		cmocka_unit_test(test_open_file_kept_until_close),
		cmocka_unit_test(test_down),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
