/* gen_meta_proto_corpus.c - writes the seed corpus of the meta_proto fuzz
 * target: one well-formed request and one well-formed reply per message
 * type, in the target's input format (type byte, direction byte, payload).
 *   gen_meta_proto_corpus DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "meta/meta_proto.h"

static int write_case(const char *dir, int resp, uint16_t type, const struct buf *b)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s-%s", dir, resp ? "resp" : "req", meta_rpc_name(type));
	FILE *f = fopen(path, "wb");
	if (!f)
		return -1;
	/* The type byte as fuzz_meta_proto.c reads it: from 250 the 240..249
	 * block, from 0xE0 the lock types, 0xD0 inline data, 0xD8 the 265
	 * block, 0xC0 the 267 block, 0xC8 the 225 block, 0xCC the 233 block,
	 * 0xBC the 290 block, below the main range. */
	uint8_t t0 = type >= META_RPC_FIRST_290 ? (uint8_t)(0xBC + type - META_RPC_FIRST_290)
		     : type >= META_RPC_FIRST_267 ? (uint8_t)(0xC0 + type - META_RPC_FIRST_267)
		     : type >= META_RPC_FIRST_225 && type <= META_RPC_LAST_225
			     ? (uint8_t)(0xC8 + type - META_RPC_FIRST_225)
		     : type >= META_RPC_FIRST_233 && type <= META_RPC_LAST_233
			     ? (uint8_t)(0xCC + type - META_RPC_FIRST_233)
		     : type >= META_RPC_FIRST_265 ? (uint8_t)(0xD8 + type - META_RPC_FIRST_265)
		     : type >= META_RPC_IDATA_FIRST ? (uint8_t)(0xD0 + type - META_RPC_IDATA_FIRST)
		     : type >= META_RPC_FSYNC ? (uint8_t)(250 + type - META_RPC_FSYNC)
		     : type >= META_RPC_LOCK_FIRST && type <= META_RPC_LOCK_LAST
			     ? (uint8_t)(0xE0 + type - META_RPC_LOCK_FIRST)
			     : (uint8_t)(type - META_RPC_FIRST);
	uint8_t hdr[2] = { t0, (uint8_t)resp };
	fwrite(hdr, 1, 2, f);
	fwrite(b->data, 1, b->len, f);
	return fclose(f);
}

int main(int argc, char **argv)
{
	static struct meta_rpc_req m;
	static struct meta_inode in;
	static struct meta_dirent ents[3];
	static const uint32_t groups[] = { 10, 20 };
	if (argc != 2) {
		fprintf(stderr, "usage: gen_meta_proto_corpus DIR\n");
		return 2;
	}
	in.ino = 42;
	in.type = META_T_SYMLINK;
	in.mode = 0777;
	in.nlink = 1;
	in.has_layout = 1;
	in.layout = (struct meta_layout){ 1 << 20, 2, 1, 99, 2, { 3, 4 } };
	strcpy(in.target, "../target");
	in.target_len = 9;
	for (int i = 0; i < 3; i++) {
		ents[i].ino = 100 + (uint64_t)i;
		ents[i].type = META_T_FILE;
		ents[i].name_len = (uint8_t)snprintf(ents[i].name, sizeof(ents[i].name), "e%d", i);
	}
	static const uint8_t dirver_data[16] = { 1, 0, 0, 0, 0, 0, 0, 0, 42 };
	/* LOOKUP_PLUS reply entries: the symlink inode under two names */
	struct buf plus = BUF_INIT;
	for (int i = 0; i < 2; i++)
		if (meta_rpc_plus_put(&plus, &ents[i], &in))
			return 1;
	/* LOOKUP_PLUSD entries: a file with its 5 inline bytes, then the symlink */
	struct buf plusd = BUF_INIT;
	static struct meta_inode fin;
	fin = in;
	fin.type = META_T_FILE;
	fin.idata = 1;
	fin.size = 5;
	fin.target_len = 0;
	fin.target[0] = 0;
	if (meta_rpc_plusd_put(&plusd, &ents[0], &fin, (const uint8_t *)"bytes", 5) ||
	    meta_rpc_plusd_put(&plusd, &ents[1], &in, NULL, 0))
		return 1;
	/* every type of the family's table (meta_rpc_name), 200..299 */
	for (uint16_t t = META_RPC_FIRST; t < 300; t++) {
		struct buf b = BUF_INIT;
		if (!meta_rpc_name(t))
			continue;
		memset(&m, 0, sizeof(m));
		m.type = t;
		m.uid = 1000;
		m.gid = 1000;
		m.ngroups = 2;
		memcpy(m.groups, groups, sizeof(groups));
		m.client = 7;
		m.seq = meta_rpc_is_mutation(t) ? 1 : 0;
		m.idem_low = m.seq; /* the lowest awaited: itself */
		m.ino = 1;
		m.ino2 = 2;
		m.name = meta_name_c("name");
		m.name2 = meta_name_c("other");
		m.mode = t == META_RPC_MKNOD ? 0020644 : 0644;
		m.rdev = t == META_RPC_MKNOD ? 0x10305 : 0;
		m.count = 16;
		m.data = (const uint8_t *)"value";
		m.data_len = 5;
		m.has_len = 1;
		m.len = (struct meta_length){ 4096, 1 };
		m.sa = (struct meta_setattr){ .valid = META_SET_MODE, .mode = 0600 };
		m.chunk_size = 1 << 20;
		m.stripe = 1;
		m.table_id = 1;
		m.lock = (struct meta_lock){ 7, 0x1234, 99, META_LOCK_POSIX, META_LOCK_WR, 10, 19 };
		if (t == META_RPC_LOCK_RELEASE)
			m.flags = META_LOCK_ALL_KINDS;
		m.off = 100;
		m.ver = 3;
		if (t == META_RPC_IDATA_CONVERT)
			m.count = META_RPC_IDATA_BEGIN;
		if (t == META_RPC_DIRVER || t == META_RPC_CLOSE_MANY) { /* u64 ids */
			m.data = dirver_data;
			m.data_len = sizeof(dirver_data);
		}
		if (meta_rpc_req_encode(&b, &m) || write_case(argv[1], 0, t, &b))
			return 1;
		buf_reset(&b);
		static struct meta_inode dir;
		dir = in;
		dir.type = META_T_DIR;
		dir.has_layout = 0;
		dir.target_len = 0;
		dir.target[0] = 0;
		struct meta_rpc_resp r = { .type = t, .inode = &in, .session = 5, .size = 5, .dir = &dir,
					   .data = t == META_RPC_DIRVER ? dirver_data
									: (const uint8_t *)"value",
					   .data_len = t == META_RPC_DIRVER ? 16 : 5,
					   .ents = ents, .n = 3, .eof = 1, .has_layout = 1,
					   .layout = &in.layout, .instance_id = 9, .threads = 4,
					   .has_lock = 1, .lock = m.lock, .has_idata = 1,
					   .idata_ver = 3, .idata = (const uint8_t *)"inline bytes",
					   .idata_len = 12, .dir_ver = 42 };
		if (t == META_RPC_LOOKUP_PLUS) {
			r.data = plus.data;
			r.data_len = (uint32_t)plus.len;
			r.n = 2;
		}
		if (t == META_RPC_LOOKUP_PLUSD) {
			r.data = plusd.data;
			r.data_len = (uint32_t)plusd.len;
			r.n = 2;
		}
		if (meta_rpc_resp_encode(&b, &r) || write_case(argv[1], 1, t, &b))
			return 1;
		buf_fini(&b);
	}
	buf_fini(&plus);
	buf_fini(&plusd);
	return 0;
}
