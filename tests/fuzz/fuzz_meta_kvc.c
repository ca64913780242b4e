/* fuzz_meta_kvc.c - libFuzzer target for the KVCache index messages
 * (meta/meta_kvc_proto.h, types 250..259) and the index behind them
 * (meta/meta_kvcache.h). Input: a whole message payload.
 * Properties: decoding never reads out of bounds or fails with a code
 * outside its contract (-CFS_EPROTO, -ENOMEM); whatever decodes re-encodes
 * to a canonical form that decodes and re-encodes to the same bytes; and
 * serving it on an in-memory KV store returns 0 or an error (never
 * crashes), with a reply that encodes. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/buf.h"
#include "common/status.h"
#include "kv/kv.h"
#include "meta/meta_kvc_proto.h"
#include "meta/meta_kvcache.h"

static struct kvc_msg m1, m2, r;
static kv_engine *kv;
static uint64_t fz_id; /* a namespace made at start; ns_id 5 in an input means it */

static void init(void)
{
	char err[256];
	struct kvc_msg q = { .type = META_RPC_KVC_NS_CREATE, .name = (const uint8_t *)"fz",
			     .name_len = 2 }, rr;
	if (kv_open("mem://", &kv, err, sizeof(err)))
		abort();
	q.ns = (struct kvc_ns){ .page_size = 65536, .nslots = 16, .nslabs = 1,
				.slots_per_slab = 16 };
	if (meta_kvc_serve(kv, &q, &rr, err, sizeof(err)))
		abort();
	fz_id = rr.ns.id;
}

int LLVMFuzzerTestOneInput(const uint8_t *p, size_t n)
{
	struct buf b1 = BUF_INIT, b2 = BUF_INIT;
	char err[256];
	int rc = kvc_msg_decode(p, n, &m1);
	if (rc) {
		if (rc != -CFS_EPROTO && rc != -ENOMEM)
			abort();
		return 0;
	}
	if (m1.n > KVC_BATCH_MAX || m1.name_len > KVC_NAME_MAX || m1.ns.nslabs > KVC_SLABS_MAX)
		abort();
	for (uint32_t i = 0; i < m1.n; i++)
		if (m1.items[i].key_len > KVC_KEY_MAX)
			abort();
	if (kvc_msg_encode(&b1, &m1) || kvc_msg_decode(b1.data, b1.len, &m2) ||
	    kvc_msg_encode(&b2, &m2))
		abort();
	if (b1.len != b2.len || memcmp(b1.data, b2.data, b1.len))
		abort();
	if (!kv)
		init();
	if (m1.ns_id == 5)
		m1.ns_id = fz_id;
	/* Small namespaces only: a fuzzed capacity must not make the pass slow. */
	if (m1.type != META_RPC_KVC_NS_CREATE || m1.ns.nslots <= 4096) {
		rc = meta_kvc_serve(kv, &m1, &r, err, sizeof(err));
		if (rc == 0) {
			buf_reset(&b2);
			if (kvc_msg_encode(&b2, &r))
				abort();
			kvc_msg_fini(&r);
		}
	}
	kvc_msg_fini(&m1);
	kvc_msg_fini(&m2);
	buf_fini(&b1);
	buf_fini(&b2);
	return 0;
}
