/* measure_meta_kv.c - LMDB vs RocksDB for the chunk-metadata pattern.
 *
 * A one-off measurement behind the choice in src/storage/chunk_store.c; not
 * part of the build or of ctest (RocksDB is not a project dependency). Run:
 *
 *   apt-get install librocksdb-dev
 *   gcc -O2 -o /tmp/measure_meta_kv tests/storage/measure_meta_kv.c -llmdb -lrocksdb
 *   /tmp/measure_meta_kv /path/on/the/data/disk
 *
 * Pattern, identical for both: values of 1068 bytes (the metadata of a
 * 1 MiB chunk: 40-byte header, 256 page CRCs, record CRC) under 12-byte
 * big-endian (inode, index) keys; N random puts over 20,000 inodes x 16
 * chunks committed durably in batches of B (LMDB: one write txn with its
 * default two syncs; RocksDB: one WriteBatch with sync=1), then 100,000
 * random point gets.
 */
#include <lmdb.h>
#include <rocksdb/c.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define VAL 1068

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void mkkey(uint8_t *k)
{
	uint64_t ino = rnd() % 20000, idx = rnd() % 16;
	for (int i = 0; i < 8; i++) k[i] = (uint8_t)(ino >> (56 - 8 * i));
	for (int i = 0; i < 4; i++) k[8 + i] = (uint8_t)(idx >> (24 - 8 * i));
}

static void run_lmdb(const char *dir, int n, int batch)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	uint8_t k[12], v[VAL];
	memset(v, 0x5a, sizeof(v));
	mdb_env_create(&env);
	mdb_env_set_mapsize(env, (size_t)4 << 30);
	if (mdb_env_open(env, dir, MDB_NOTLS, 0644)) {
		fprintf(stderr, "lmdb open %s failed\n", dir);
		exit(1);
	}
	mdb_txn_begin(env, NULL, 0, &txn);
	mdb_dbi_open(txn, NULL, 0, &dbi);
	mdb_txn_commit(txn);
	double t0 = now();
	for (int i = 0; i < n; i += batch) {
		mdb_txn_begin(env, NULL, 0, &txn);
		for (int j = 0; j < batch; j++) {
			mkkey(k);
			v[0] = (uint8_t)j;
			MDB_val key = { 12, k }, val = { VAL, v };
			mdb_put(txn, dbi, &key, &val, 0);
		}
		mdb_txn_commit(txn);
	}
	double t1 = now();
	mdb_txn_begin(env, NULL, MDB_RDONLY, &txn);
	int found = 0;
	for (int i = 0; i < 100000; i++) {
		mkkey(k);
		MDB_val key = { 12, k }, val;
		found += mdb_get(txn, dbi, &key, &val) == 0;
	}
	mdb_txn_abort(txn);
	double t2 = now();
	printf("lmdb    batch=%-3d puts/s=%8.0f gets/s=%8.0f (found %d)\n", batch, n / (t1 - t0),
	       100000 / (t2 - t1), found);
	mdb_env_close(env);
}

static void run_rocks(const char *dir, int n, int batch)
{
	char *err = NULL;
	rocksdb_options_t *o = rocksdb_options_create();
	rocksdb_options_set_create_if_missing(o, 1);
	rocksdb_t *db = rocksdb_open(o, dir, &err);
	if (err) {
		fprintf(stderr, "rocksdb open: %s\n", err);
		exit(1);
	}
	rocksdb_writeoptions_t *wo = rocksdb_writeoptions_create();
	rocksdb_writeoptions_set_sync(wo, 1);
	rocksdb_readoptions_t *ro = rocksdb_readoptions_create();
	uint8_t k[12], v[VAL];
	memset(v, 0x5a, sizeof(v));
	double t0 = now();
	for (int i = 0; i < n; i += batch) {
		rocksdb_writebatch_t *wb = rocksdb_writebatch_create();
		for (int j = 0; j < batch; j++) {
			mkkey(k);
			v[0] = (uint8_t)j;
			rocksdb_writebatch_put(wb, (char *)k, 12, (char *)v, VAL);
		}
		rocksdb_write(db, wo, wb, &err);
		rocksdb_writebatch_destroy(wb);
		if (err) {
			fprintf(stderr, "rocksdb write: %s\n", err);
			exit(1);
		}
	}
	double t1 = now();
	int found = 0;
	for (int i = 0; i < 100000; i++) {
		size_t vl;
		mkkey(k);
		char *val = rocksdb_get(db, ro, (char *)k, 12, &vl, &err);
		found += val != NULL;
		rocksdb_free(val);
	}
	double t2 = now();
	printf("rocksdb batch=%-3d puts/s=%8.0f gets/s=%8.0f (found %d)\n", batch, n / (t1 - t0),
	       100000 / (t2 - t1), found);
	rocksdb_readoptions_destroy(ro);
	rocksdb_writeoptions_destroy(wo);
	rocksdb_close(db);
	rocksdb_options_destroy(o);
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: measure_meta_kv DIR\n");
		return 2;
	}
	static const int batches[] = { 1, 8, 64 };
	for (int r = 0; r < 2; r++) {
		for (size_t i = 0; i < 3; i++) {
			int b = batches[i], n = b == 1 ? 3000 : 100000;
			char d[4096];
			snprintf(d, sizeof(d), "rm -rf %s/l %s/r && mkdir -p %s/l", argv[1], argv[1], argv[1]);
			if (system(d))
				return 1;
			snprintf(d, sizeof(d), "%s/l", argv[1]);
			run_lmdb(d, n, b);
			snprintf(d, sizeof(d), "%s/r", argv[1]);
			run_rocks(d, n, b);
		}
	}
	return 0;
}
