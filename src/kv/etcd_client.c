/* etcd_client.c - etcd v3 over its JSON gateway (grpc-gateway, /v3/...).
 *
 * How it works. Every call builds a JSON body with jansson (keys and values
 * base64 through OpenSSL's EVP_EncodeBlock/DecodeBlock, int64 fields as
 * decimal strings, as the gateway prints them), POSTs it with a pooled curl
 * easy handle to the current member, and parses the reply. A non-200 reply
 * carries {"error": msg, "code": grpc code}; the message decides what the
 * failure means (see classify_error).
 *
 * Each attempt ends in one of five outcomes:
 *   OK        - parsed reply;
 *   FINAL     - a definite error (compacted, quota, too large, ...);
 *   NOT_SENT  - the request provably did not reach etcd's state machine:
 *               the connect failed before curl read any of the body, or the
 *               member refused before proposing ("no leader");
 *   BUSY      - the member refused for now and applied nothing (too many
 *               requests, future revision on a lagging member);
 *   UNKNOWN   - anything after the body left: timeout, reset, stopped
 *               server, garbled reply. The request may have been applied.
 * call() then returns, moves to the next member, or waits and repeats.
 * UNKNOWN on an ETCDC_ONCE request ends the call with -CFS_EMAYBE; only
 * NOT_SENT and BUSY are ever repeated for those.
 *
 * Invariants: a curl handle is used by one thread at a time (taken from and
 * returned to the pool under pool_lock); curl may silently re-send a request
 * on a reused connection that died, so "never sent" is judged from our own
 * read callback (body bytes handed to curl), not from curl's error code.
 */
#include "kv/etcd_client.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/evp.h>

#include "common/buf.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/status.h"
#include "common/xalloc.h"

#define ETCD_MAX_TXN_OPS 128 /* etcd's default --max-txn-ops */

struct etcdc {
	char **urls;                 /* "http://host:port", neps entries */
	char **names;                /* "host:port" */
	int neps;
	_Atomic int cur;             /* member new requests go to */
	struct etcdc_opts opts;
	struct curl_slist *headers;  /* shared, read-only after open */
	pthread_mutex_t pool_lock;   /* guards pool, npool, pool_cap */
	CURL **pool;
	size_t npool, pool_cap;
	_Atomic uint64_t st_requests, st_failovers, st_maybe;
	_Atomic uint64_t quota_logged_ms; /* last "quota exhausted" log line */
	atomic_bool cancelled;       /* etcdc_cancel: every call ends with -ECANCELED */
};

enum req_kind { REQ_IDEM, REQ_ONCE };
enum outcome { OUT_OK, OUT_FINAL, OUT_NOT_SENT, OUT_BUSY, OUT_UNKNOWN };

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void)
{
	curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

/* ---- endpoints ---------------------------------------------------------- */

static void seterr(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	if (!err || !errlen)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

static int parse_endpoint(const char *s, size_t n, char **name, char **url, char *err,
			  size_t errlen)
{
	char tmp[256];
	while (n && (*s == ' ' || *s == '\t'))
		s++, n--;
	while (n && (s[n - 1] == ' ' || s[n - 1] == '\t'))
		n--;
	if (n >= sizeof(tmp)) {
		seterr(err, errlen, "etcd endpoint too long");
		return -EINVAL;
	}
	memcpy(tmp, s, n);
	tmp[n] = 0;
	const char *hp = tmp;
	if (!strncmp(hp, "https://", 8)) {
		seterr(err, errlen, "etcd endpoint %s: https is not supported", tmp);
		return -EINVAL;
	}
	if (!strncmp(hp, "http://", 7))
		hp += 7;
	const char *colon = strrchr(hp, ':');
	if (!*hp || !colon || colon == hp || strchr(hp, '/')) {
		seterr(err, errlen, "etcd endpoint '%s' is not host:port", tmp);
		return -EINVAL;
	}
	char *endp;
	errno = 0;
	long port = strtol(colon + 1, &endp, 10);
	if (errno || *endp || endp == colon + 1 || port < 1 || port > 65535) {
		seterr(err, errlen, "etcd endpoint '%s' has a bad port", tmp);
		return -EINVAL;
	}
	*name = xstrdup(hp);
	size_t ul = strlen(hp) + 8;
	*url = xmalloc(ul);
	snprintf(*url, ul, "http://%s", hp);
	return 0;
}

int etcdc_open(const char *endpoints, const struct etcdc_opts *opts, struct etcdc **out,
	       char *err, size_t errlen)
{
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK) {
		seterr(err, errlen, "curl_global_init failed: %s", curl_easy_strerror(curl_init_rc));
		return -ENOMEM;
	}
	if (!endpoints || !*endpoints) {
		seterr(err, errlen, "etcd endpoint list is empty");
		return -EINVAL;
	}
	struct etcdc *c = xcalloc(1, sizeof(*c));
	int rc = 0;
	int cap = 1;
	for (const char *p = endpoints; *p; p++)
		cap += *p == ',';
	c->urls = xcalloc((size_t)cap, sizeof(char *));
	c->names = xcalloc((size_t)cap, sizeof(char *));
	const char *s = endpoints;
	for (;;) {
		const char *e = strchr(s, ',');
		size_t n = e ? (size_t)(e - s) : strlen(s);
		rc = parse_endpoint(s, n, &c->names[c->neps], &c->urls[c->neps], err, errlen);
		if (rc)
			goto fail;
		c->neps++;
		if (!e)
			break;
		s = e + 1;
	}
	if (opts)
		c->opts = *opts;
	if (c->opts.attempt_timeout_ms <= 0)
		c->opts.attempt_timeout_ms = 5000;
	if (c->opts.op_timeout_ms <= 0)
		c->opts.op_timeout_ms = 10000;
	if (c->opts.connect_timeout_ms <= 0)
		c->opts.connect_timeout_ms = 1000;
	/* "Expect:" stops curl's 100-continue round trip on large bodies;
	 * hasleader makes a member without a leader refuse at once. */
	const char *hdrs[] = { "Content-Type: application/json", "Expect:",
			       "Grpc-Metadata-hasleader: true" };
	for (size_t i = 0; i < sizeof(hdrs) / sizeof(hdrs[0]); i++) {
		struct curl_slist *h = curl_slist_append(c->headers, hdrs[i]);
		if (!h) {
			rc = -ENOMEM;
			goto fail;
		}
		c->headers = h;
	}
	pthread_mutex_init(&c->pool_lock, NULL);
	*out = c;
	return 0;
fail:
	for (int i = 0; i < c->neps; i++) {
		free(c->names[i]);
		free(c->urls[i]);
	}
	free(c->names);
	free(c->urls);
	curl_slist_free_all(c->headers);
	free(c);
	return rc;
}

void etcdc_cancel(struct etcdc *c)
{
	atomic_store(&c->cancelled, true);
}

void etcdc_close(struct etcdc *c)
{
	if (!c)
		return;
	for (size_t i = 0; i < c->npool; i++)
		curl_easy_cleanup(c->pool[i]);
	free(c->pool);
	pthread_mutex_destroy(&c->pool_lock);
	for (int i = 0; i < c->neps; i++) {
		free(c->names[i]);
		free(c->urls[i]);
	}
	free(c->names);
	free(c->urls);
	curl_slist_free_all(c->headers);
	free(c);
}

int etcdc_endpoint_count(const struct etcdc *c)
{
	return c->neps;
}

const char *etcdc_endpoint(const struct etcdc *c, int i)
{
	return i >= 0 && i < c->neps ? c->names[i] : NULL;
}

int etcdc_current(const struct etcdc *c)
{
	return atomic_load_explicit(&((struct etcdc *)c)->cur, memory_order_relaxed);
}

void etcdc_get_stats(const struct etcdc *c, struct etcdc_stats *out)
{
	out->requests = atomic_load_explicit(&c->st_requests, memory_order_relaxed);
	out->failovers = atomic_load_explicit(&c->st_failovers, memory_order_relaxed);
	out->maybe = atomic_load_explicit(&c->st_maybe, memory_order_relaxed);
}

/* ---- handle pool -------------------------------------------------------- */

static CURL *handle_get(struct etcdc *c)
{
	CURL *h = NULL;
	pthread_mutex_lock(&c->pool_lock);
	if (c->npool)
		h = c->pool[--c->npool];
	pthread_mutex_unlock(&c->pool_lock);
	return h ? h : curl_easy_init();
}

static void handle_put(struct etcdc *c, CURL *h)
{
	pthread_mutex_lock(&c->pool_lock);
	if (c->npool == c->pool_cap) {
		c->pool_cap = c->pool_cap ? 2 * c->pool_cap : 8;
		c->pool = xrealloc(c->pool, c->pool_cap * sizeof(*c->pool));
	}
	c->pool[c->npool++] = h;
	pthread_mutex_unlock(&c->pool_lock);
}

/* ---- one HTTP attempt --------------------------------------------------- */

struct xfer {
	const char *body;
	size_t len, off;
	bool body_read; /* curl took body bytes: the request may have arrived */
	struct buf resp;
	bool oom;
};

static size_t read_cb(char *dst, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb;
	if (n > x->len - x->off)
		n = x->len - x->off;
	memcpy(dst, x->body + x->off, n);
	x->off += n;
	if (n)
		x->body_read = true;
	return n;
}

static int seek_cb(void *arg, curl_off_t off, int origin)
{
	struct xfer *x = arg;
	if (origin != SEEK_SET || off < 0 || (size_t)off > x->len)
		return CURL_SEEKFUNC_FAIL;
	x->off = (size_t)off;
	return CURL_SEEKFUNC_OK;
}

static size_t write_cb(char *p, size_t size, size_t nmemb, void *arg)
{
	struct xfer *x = arg;
	size_t n = size * nmemb;
	if (x->resp.len + n > (64u << 20) || buf_append(&x->resp, p, n)) {
		x->oom = true;
		return 0;
	}
	return n;
}

static const char *jstr(json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);
	return json_is_string(v) ? json_string_value(v) : NULL;
}

/* int64 field that the gateway prints as a string (or, rarely, a number);
 * a missing field is proto3's default 0. */
static int64_t ji64(json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);
	if (json_is_integer(v))
		return (int64_t)json_integer_value(v);
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		char *end;
		errno = 0;
		long long x = strtoll(s, &end, 10);
		if (!errno && end != s && !*end)
			return x;
	}
	return 0;
}

/* uint64 field (member ids use all 64 bits). */
static uint64_t ju64(json_t *o, const char *name)
{
	json_t *v = json_object_get(o, name);
	if (json_is_integer(v))
		return (uint64_t)json_integer_value(v);
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		char *end;
		errno = 0;
		unsigned long long x = strtoull(s, &end, 10);
		if (!errno && end != s && !*end && *s != '-')
			return x;
	}
	return 0;
}

static bool jbool(json_t *o, const char *name)
{
	return json_is_true(json_object_get(o, name));
}

/* Maps an error reply of etcd to an outcome and, for FINAL, a code. */
static enum outcome classify_error(const char *msg, int64_t code, long http, int *rc)
{
	static const struct {
		const char *needle;
		enum outcome out;
		int rc;
	} tab[] = {
		{ "required revision has been compacted", OUT_FINAL, -CFS_ETOOOLD },
		{ "required revision is a future revision", OUT_BUSY, 0 },
		{ "database space exceeded", OUT_FINAL, -ENOSPC },
		{ "too many operations in txn request", OUT_FINAL, -CFS_ETOOLARGE },
		{ "request is too large", OUT_FINAL, -CFS_ETOOLARGE },
		{ "requested lease not found", OUT_FINAL, -ENOENT },
		{ "lease already exists", OUT_FINAL, -EEXIST },
		{ "duplicate key given in txn request", OUT_FINAL, -EINVAL },
		{ "no leader", OUT_NOT_SENT, 0 },
		{ "too many requests", OUT_BUSY, 0 },
		{ "proposal dropped", OUT_BUSY, 0 }, /* never appended to the log */
		{ "not capable", OUT_BUSY, 0 },
		{ "unhealthy cluster", OUT_BUSY, 0 },
	};
	if (msg)
		for (size_t i = 0; i < sizeof(tab) / sizeof(tab[0]); i++)
			if (strstr(msg, tab[i].needle)) {
				*rc = tab[i].rc;
				return tab[i].out;
			}
	if (http == 413) {
		*rc = -CFS_ETOOLARGE;
		return OUT_FINAL;
	}
	if (code == 3 /* InvalidArgument */ || http == 400) {
		*rc = -EINVAL;
		return OUT_FINAL;
	}
	return OUT_UNKNOWN;
}

/* Aborts a transfer in progress once the client is cancelled: curl calls
 * this at least about once a second even while nothing moves (a member cut
 * off by a partition), so a cancelled call ends within that. */
static int xferinfo_cb(void *arg, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
		       curl_off_t ulnow)
{
	(void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
	return atomic_load_explicit(&((struct etcdc *)arg)->cancelled, memory_order_relaxed);
}

static enum outcome attempt(struct etcdc *c, int ep, const char *path, const char *body,
			    size_t len, int timeout_ms, json_t **reply, int *rc, char *why,
			    size_t whylen)
{
	struct xfer x = { .body = body, .len = len };
	char url[512];
	enum outcome out;
	CURL *h = handle_get(c);
	*reply = NULL;
	if (!h) {
		*rc = -ENOMEM;
		return OUT_FINAL;
	}
	snprintf(url, sizeof(url), "%s%s", c->urls[ep], path);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_POST, 1L);
	curl_easy_setopt(h, CURLOPT_POSTFIELDS, NULL);
	curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
	curl_easy_setopt(h, CURLOPT_READFUNCTION, read_cb);
	curl_easy_setopt(h, CURLOPT_READDATA, &x);
	curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, seek_cb);
	curl_easy_setopt(h, CURLOPT_SEEKDATA, &x);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
	curl_easy_setopt(h, CURLOPT_HTTPHEADER, c->headers);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)(c->opts.connect_timeout_ms < timeout_ms ? c->opts.connect_timeout_ms
									: timeout_ms));
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http");
	curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, xferinfo_cb);
	curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
	curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
	atomic_fetch_add_explicit(&c->st_requests, 1, memory_order_relaxed);
	CURLcode cc = curl_easy_perform(h);
	long http = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http);
	handle_put(c, h);

	if (x.oom) {
		snprintf(why, whylen, "reply too large or out of memory");
		*rc = -ENOMEM;
		out = x.body_read ? OUT_UNKNOWN : OUT_FINAL;
		goto done;
	}
	if (cc != CURLE_OK) {
		snprintf(why, whylen, "%s", curl_easy_strerror(cc));
		out = x.body_read ? OUT_UNKNOWN : OUT_NOT_SENT;
		goto done;
	}
	json_error_t jerr;
	json_t *j = json_loadb((const char *)x.resp.data, x.resp.len, 0, &jerr);
	if (!j || !json_is_object(j)) {
		snprintf(why, whylen, "HTTP %ld with unparsable body (%s)", http, jerr.text);
		json_decref(j);
		*rc = -CFS_EPROTO;
		out = OUT_UNKNOWN;
		goto done;
	}
	if (http == 200) {
		/* Streaming RPCs (keepalive) wrap their reply in result/error. */
		json_t *res = json_object_get(j, "result");
		json_t *err = json_object_get(j, "error");
		if (json_is_object(err)) {
			const char *msg = jstr(err, "message");
			snprintf(why, whylen, "%s", msg ? msg : "stream error");
			out = classify_error(msg, ji64(err, "grpc_code"), http, rc);
			json_decref(j);
			goto done;
		}
		if (json_is_object(res)) {
			json_incref(res);
			json_decref(j);
			j = res;
		}
		*reply = j;
		*rc = 0;
		out = OUT_OK;
		goto done;
	}
	const char *msg = jstr(j, "error");
	if (!msg)
		msg = jstr(j, "message");
	snprintf(why, whylen, "HTTP %ld: %s", http, msg ? msg : "(no message)");
	out = classify_error(msg, ji64(j, "code"), http, rc);
	json_decref(j);
done:
	buf_fini(&x.resp);
	return out;
}

/* Every write fails while the NOSPACE alarm is raised, so say what the
 * operator must do, at most every 10 s. */
static void log_quota(struct etcdc *c, const char *why)
{
	uint64_t now = clock_mono_ms(), last = atomic_load(&c->quota_logged_ms);
	if (last && now - last < 10000)
		return;
	if (!atomic_compare_exchange_strong(&c->quota_logged_ms, &last, now))
		return;
	LOG_ERR("kv", "etcd: quota exhausted, writes refused: %s: compact old revisions, "
		"defragment each member, then disarm the NOSPACE alarm "
		"(etcdctl alarm disarm), or raise --quota-backend-bytes", why);
}

/* Sends BODY to PATH with failover (ONLY_EP < 0) or to member ONLY_EP.
 * Takes no ownership. On 0, *reply is the parsed reply (caller decrefs). */
static int call(struct etcdc *c, const char *path, json_t *body, enum req_kind kind, int only_ep,
		json_t **reply)
{
	char *text = json_dumps(body, JSON_COMPACT);
	if (!text)
		return -ENOMEM;
	size_t len = strlen(text);
	uint64_t deadline = clock_mono_ms() + (uint64_t)c->opts.op_timeout_ms;
	int ep = only_ep >= 0 ? only_ep : atomic_load_explicit(&c->cur, memory_order_relaxed);
	int since_sleep = 0, backoff = 20, rc = -CFS_EUNAVAIL;
	char why[256] = "";
	for (;;) {
		uint64_t now = clock_mono_ms();
		if (atomic_load(&c->cancelled)) {
			rc = -ECANCELED;
			goto out;
		}
		if (now >= deadline)
			break;
		int t = (int)(deadline - now);
		if (t > c->opts.attempt_timeout_ms)
			t = c->opts.attempt_timeout_ms;
		int arc = 0;
		enum outcome o = attempt(c, ep, path, text, len, t, reply, &arc, why, sizeof(why));
		if (o == OUT_OK) {
			if (only_ep < 0)
				atomic_store_explicit(&c->cur, ep, memory_order_relaxed);
			rc = 0;
			goto out;
		}
		if (o == OUT_FINAL) {
			rc = arc;
			if (rc == -ENOSPC)
				log_quota(c, why);
			goto out;
		}
		if (o == OUT_UNKNOWN && kind == REQ_ONCE) {
			atomic_fetch_add_explicit(&c->st_maybe, 1, memory_order_relaxed);
			LOG_WARN("kv", "etcd: outcome unknown: member=%s path=%s why=%s",
				 c->names[ep], path, why);
			rc = -CFS_EMAYBE;
			goto out;
		}
		if (only_ep >= 0) {
			rc = arc ? arc : -CFS_EUNAVAIL;
			goto out;
		}
		if (o != OUT_BUSY && c->neps > 1) {
			int next = (ep + 1) % c->neps;
			int expect = ep;
			if (atomic_compare_exchange_strong(&c->cur, &expect, next)) {
				atomic_fetch_add_explicit(&c->st_failovers, 1, memory_order_relaxed);
				LOG_WARN("kv", "etcd: failover: from=%s to=%s why=%s", c->names[ep],
					 c->names[next], why);
			}
			ep = next;
		}
		/* Sleep once every member refused in a row, or the one we
		 * stay on is busy: a new leader needs about an election
		 * timeout. */
		if (o == OUT_BUSY || ++since_sleep >= c->neps) {
			since_sleep = 0;
			now = clock_mono_ms();
			if (now >= deadline)
				break;
			uint64_t nap = (uint64_t)(o == OUT_BUSY ? 10 : backoff);
			if (nap > deadline - now)
				nap = deadline - now;
			for (uint64_t slept = 0; slept < nap && !atomic_load(&c->cancelled);
			     slept += 50)
				clock_sleep_ms(nap - slept < 50 ? nap - slept : 50);
			if (o != OUT_BUSY && backoff < 500)
				backoff *= 2;
		}
	}
	LOG_DEBUG("kv", "etcd: unavailable: path=%s last=%s", path, why);
	rc = -CFS_EUNAVAIL;
out:
	free(text);
	return rc;
}

/* ---- JSON helpers ------------------------------------------------------- */

static int jset_bytes(json_t *o, const char *name, const void *p, size_t n)
{
	if (n > INT_MAX / 2)
		return -CFS_ETOOLARGE;
	size_t cap = 4 * ((n + 2) / 3) + 1;
	unsigned char *b = malloc(cap);
	if (!b)
		return -ENOMEM;
	int m = n ? EVP_EncodeBlock(b, p, (int)n) : 0;
	int rc = json_object_set_new(o, name, json_stringn_nocheck((char *)b, (size_t)m)) ? -ENOMEM : 0;
	free(b);
	return rc;
}

static int jset_i64(json_t *o, const char *name, int64_t v)
{
	char s[24];
	snprintf(s, sizeof(s), "%lld", (long long)v);
	return json_object_set_new(o, name, json_string(s)) ? -ENOMEM : 0;
}

static int jset_str(json_t *o, const char *name, const char *s)
{
	return json_object_set_new(o, name, json_string(s)) ? -ENOMEM : 0;
}

/* Decoded size bound of a base64 string of length n. */
static size_t b64_bound(size_t n)
{
	return n / 4 * 3 + 3;
}

/* Decodes S into DST (room for b64_bound(strlen(s))). -CFS_EPROTO on junk. */
static int b64_decode(const char *s, uint8_t *dst, size_t *outlen)
{
	size_t n = strlen(s);
	if (n == 0) {
		*outlen = 0;
		return 0;
	}
	if (n % 4 || n > INT_MAX)
		return -CFS_EPROTO;
	int m = EVP_DecodeBlock(dst, (const unsigned char *)s, (int)n);
	if (m < 0)
		return -CFS_EPROTO;
	size_t pad = (s[n - 1] == '=') + (s[n - 2] == '=');
	*outlen = (size_t)m - pad;
	return 0;
}

/* ---- range ------------------------------------------------------------- */

void etcdc_range_res_fini(struct etcdc_range_res *r)
{
	if (!r)
		return;
	free(r->kvs);
	free(r->mem);
	memset(r, 0, sizeof(*r));
}

/* Fills OUT from a RangeResponse object (top-level or inside a txn). */
static int parse_range(json_t *j, struct etcdc_range_res *out)
{
	memset(out, 0, sizeof(*out));
	json_t *hdr = json_object_get(j, "header");
	out->revision = ji64(hdr, "revision");
	out->member_id = ju64(hdr, "member_id");
	out->more = jbool(j, "more");
	out->count = ji64(j, "count");
	json_t *kvs = json_object_get(j, "kvs");
	if (!kvs)
		return 0;
	if (!json_is_array(kvs))
		return -CFS_EPROTO;
	size_t n = json_array_size(kvs), total = 0;
	for (size_t i = 0; i < n; i++) {
		json_t *kv = json_array_get(kvs, i);
		const char *k = jstr(kv, "key"), *v = jstr(kv, "value");
		if (!json_is_object(kv) || !k)
			return -CFS_EPROTO;
		total += b64_bound(strlen(k)) + (v ? b64_bound(strlen(v)) : 0);
	}
	if (!n)
		return 0;
	out->kvs = calloc(n, sizeof(*out->kvs));
	out->mem = malloc(total ? total : 1);
	if (!out->kvs || !out->mem) {
		etcdc_range_res_fini(out);
		return -ENOMEM;
	}
	uint8_t *p = out->mem;
	for (size_t i = 0; i < n; i++) {
		json_t *kv = json_array_get(kvs, i);
		struct etcdc_kv *e = &out->kvs[i];
		const char *v = jstr(kv, "value");
		if (b64_decode(jstr(kv, "key"), p, &e->key_len)) {
			etcdc_range_res_fini(out);
			return -CFS_EPROTO;
		}
		e->key = p;
		p += e->key_len;
		if (v) {
			if (b64_decode(v, p, &e->val_len)) {
				etcdc_range_res_fini(out);
				return -CFS_EPROTO;
			}
			e->val = p;
			p += e->val_len;
		}
		e->create_rev = ji64(kv, "create_revision");
		e->mod_rev = ji64(kv, "mod_revision");
		e->version = ji64(kv, "version");
		e->lease = ji64(kv, "lease");
	}
	out->n = n;
	return 0;
}

static int build_range(json_t *o, const struct etcdc_range_req *req)
{
	int rc = jset_bytes(o, "key", req->key, req->key_len);
	if (!rc && req->end)
		rc = jset_bytes(o, "range_end", req->end, req->end_len);
	if (!rc && req->revision)
		rc = jset_i64(o, "revision", req->revision);
	if (!rc && req->limit)
		rc = jset_i64(o, "limit", req->limit);
	if (!rc && req->sort != ETCDC_SORT_NONE) {
		rc = jset_str(o, "sort_order", req->sort == ETCDC_SORT_ASCEND ? "ASCEND" : "DESCEND");
		if (!rc)
			rc = jset_str(o, "sort_target", "KEY");
	}
	if (!rc && req->keys_only)
		rc = json_object_set_new(o, "keys_only", json_true()) ? -ENOMEM : 0;
	if (!rc && req->count_only)
		rc = json_object_set_new(o, "count_only", json_true()) ? -ENOMEM : 0;
	if (!rc && req->serializable)
		rc = json_object_set_new(o, "serializable", json_true()) ? -ENOMEM : 0;
	return rc;
}

int etcdc_range(struct etcdc *c, const struct etcdc_range_req *req, struct etcdc_range_res *out)
{
	json_t *body = json_object(), *reply = NULL;
	memset(out, 0, sizeof(*out));
	if (!body)
		return -ENOMEM;
	int rc = build_range(body, req);
	if (!rc)
		rc = call(c, "/v3/kv/range", body, REQ_IDEM, -1, &reply);
	if (!rc)
		rc = parse_range(reply, out);
	json_decref(reply);
	json_decref(body);
	return rc;
}

/* ---- txn --------------------------------------------------------------- */

void etcdc_txn_res_fini(struct etcdc_txn_res *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->nops; i++)
		etcdc_range_res_fini(&r->ops[i].range);
	free(r->ops);
	memset(r, 0, sizeof(*r));
}

static const char *const cmp_target_name[] = { "VERSION", "CREATE", "MOD", "VALUE", "LEASE" };
static const char *const cmp_field_name[] = { "version", "create_revision", "mod_revision",
					      "value", "lease" };
static const char *const cmp_result_name[] = { "EQUAL", "GREATER", "LESS", "NOT_EQUAL" };

static int build_cmp(json_t *arr, const struct etcdc_cmp *cm)
{
	if ((unsigned)cm->target > ETCDC_CMP_LEASE || (unsigned)cm->result > ETCDC_CMP_NOT_EQUAL)
		return -EINVAL;
	json_t *o = json_object();
	if (!o || json_array_append_new(arr, o))
		return -ENOMEM;
	int rc = jset_bytes(o, "key", cm->key, cm->key_len);
	if (!rc && cm->end)
		rc = jset_bytes(o, "range_end", cm->end, cm->end_len);
	if (!rc)
		rc = jset_str(o, "target", cmp_target_name[cm->target]);
	if (!rc)
		rc = jset_str(o, "result", cmp_result_name[cm->result]);
	if (!rc) {
		if (cm->target == ETCDC_CMP_VALUE)
			rc = jset_bytes(o, "value", cm->value, cm->value_len);
		else
			rc = jset_i64(o, cmp_field_name[cm->target], cm->num);
	}
	return rc;
}

static int build_op(json_t *arr, const struct etcdc_op *op)
{
	json_t *wrap = json_object(), *o = json_object();
	if (!wrap || !o || json_array_append_new(arr, wrap)) {
		json_decref(o);
		return -ENOMEM;
	}
	const char *kind;
	switch (op->type) {
	case ETCDC_OP_PUT: kind = "request_put"; break;
	case ETCDC_OP_DELETE: kind = "request_delete_range"; break;
	case ETCDC_OP_RANGE: kind = "request_range"; break;
	default: json_decref(o); return -EINVAL;
	}
	if (json_object_set_new(wrap, kind, o))
		return -ENOMEM;
	int rc = jset_bytes(o, "key", op->key, op->key_len);
	if (!rc && op->end && op->type != ETCDC_OP_PUT)
		rc = jset_bytes(o, "range_end", op->end, op->end_len);
	if (!rc && op->type == ETCDC_OP_PUT) {
		rc = jset_bytes(o, "value", op->val, op->val_len);
		if (!rc && op->lease)
			rc = jset_i64(o, "lease", op->lease);
	}
	if (!rc && op->type == ETCDC_OP_RANGE) {
		if (op->limit)
			rc = jset_i64(o, "limit", op->limit);
		if (!rc && op->keys_only)
			rc = json_object_set_new(o, "keys_only", json_true()) ? -ENOMEM : 0;
		if (!rc && op->revision)
			rc = jset_i64(o, "revision", op->revision);
		if (!rc && op->serializable)
			rc = json_object_set_new(o, "serializable", json_true()) ? -ENOMEM : 0;
	}
	return rc;
}

static int parse_txn(json_t *j, struct etcdc_txn_res *out)
{
	out->revision = ji64(json_object_get(j, "header"), "revision");
	out->succeeded = jbool(j, "succeeded");
	json_t *resps = json_object_get(j, "responses");
	if (!resps)
		return 0;
	if (!json_is_array(resps))
		return -CFS_EPROTO;
	size_t n = json_array_size(resps);
	if (!n)
		return 0;
	out->ops = calloc(n, sizeof(*out->ops));
	if (!out->ops)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		json_t *r = json_array_get(resps, i), *x;
		struct etcdc_op_res *o = &out->ops[i];
		out->nops = i + 1;
		if ((x = json_object_get(r, "response_range"))) {
			o->type = ETCDC_OP_RANGE;
			int rc = parse_range(x, &o->range);
			if (rc)
				return rc;
		} else if ((x = json_object_get(r, "response_delete_range"))) {
			o->type = ETCDC_OP_DELETE;
			o->deleted = ji64(x, "deleted");
		} else if (json_object_get(r, "response_put")) {
			o->type = ETCDC_OP_PUT;
		} else {
			return -CFS_EPROTO;
		}
	}
	return 0;
}

int etcdc_parse_range_reply(const char *json, size_t len, struct etcdc_range_res *out)
{
	memset(out, 0, sizeof(*out));
	json_t *j = json_loadb(json, len, 0, NULL);
	int rc = json_is_object(j) ? parse_range(j, out) : -CFS_EPROTO;
	json_decref(j);
	return rc;
}

int etcdc_parse_txn_reply(const char *json, size_t len, struct etcdc_txn_res *out)
{
	memset(out, 0, sizeof(*out));
	json_t *j = json_loadb(json, len, 0, NULL);
	int rc = json_is_object(j) ? parse_txn(j, out) : -CFS_EPROTO;
	if (rc)
		etcdc_txn_res_fini(out);
	json_decref(j);
	return rc;
}

int etcdc_txn(struct etcdc *c, const struct etcdc_cmp *cmps, size_t ncmps,
	      const struct etcdc_op *success, size_t nsuccess, const struct etcdc_op *failure,
	      size_t nfailure, struct etcdc_txn_res *out)
{
	if (out)
		memset(out, 0, sizeof(*out));
	if (ncmps > ETCD_MAX_TXN_OPS || nsuccess > ETCD_MAX_TXN_OPS || nfailure > ETCD_MAX_TXN_OPS)
		return -CFS_ETOOLARGE;
	enum req_kind kind = REQ_IDEM;
	for (size_t i = 0; i < nsuccess; i++)
		if (success[i].type != ETCDC_OP_RANGE)
			kind = REQ_ONCE;
	for (size_t i = 0; i < nfailure; i++)
		if (failure[i].type != ETCDC_OP_RANGE)
			kind = REQ_ONCE;
	json_t *body = json_object(), *reply = NULL;
	json_t *jc = json_array(), *js = json_array(), *jf = json_array();
	int rc = 0;
	if (!body || !jc || !js || !jf) {
		json_decref(jc);
		json_decref(js);
		json_decref(jf);
		rc = -ENOMEM;
		goto out;
	}
	if (json_object_set_new(body, "compare", jc) | json_object_set_new(body, "success", js) |
	    json_object_set_new(body, "failure", jf)) {
		rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; !rc && i < ncmps; i++)
		rc = build_cmp(jc, &cmps[i]);
	for (size_t i = 0; !rc && i < nsuccess; i++)
		rc = build_op(js, &success[i]);
	for (size_t i = 0; !rc && i < nfailure; i++)
		rc = build_op(jf, &failure[i]);
	if (!rc)
		rc = call(c, "/v3/kv/txn", body, kind, -1, &reply);
	if (!rc && out) {
		rc = parse_txn(reply, out);
		if (rc)
			etcdc_txn_res_fini(out);
	}
	/* A committed write whose reply we cannot read is still committed. */
	if (rc && reply && kind == REQ_ONCE)
		rc = -CFS_EMAYBE;
out:
	json_decref(reply);
	json_decref(body);
	return rc;
}

int etcdc_compact(struct etcdc *c, int64_t revision)
{
	json_t *body = json_object(), *reply = NULL;
	if (!body)
		return -ENOMEM;
	int rc = jset_i64(body, "revision", revision);
	if (!rc)
		rc = json_object_set_new(body, "physical", json_true()) ? -ENOMEM : 0;
	if (!rc)
		rc = call(c, "/v3/kv/compaction", body, REQ_IDEM, -1, &reply);
	json_decref(reply);
	json_decref(body);
	return rc;
}

/* ---- leases ------------------------------------------------------------ */

static int lease_call(struct etcdc *c, const char *path, enum req_kind kind, int64_t id,
		      int64_t ttl, json_t **reply)
{
	json_t *body = json_object();
	if (!body)
		return -ENOMEM;
	int rc = 0;
	if (id)
		rc = jset_i64(body, "ID", id);
	if (!rc && ttl)
		rc = jset_i64(body, "TTL", ttl);
	if (!rc)
		rc = call(c, path, body, kind, -1, reply);
	json_decref(body);
	return rc;
}

int etcdc_lease_grant(struct etcdc *c, int64_t ttl_s, int64_t id, int64_t *id_out,
		      int64_t *ttl_out)
{
	json_t *reply = NULL;
	if (ttl_s <= 0 || id < 0)
		return -EINVAL;
	int rc = lease_call(c, "/v3/lease/grant", id ? REQ_IDEM : REQ_ONCE, id, ttl_s, &reply);
	if (!rc) {
		const char *e = jstr(reply, "error");
		int64_t got = ji64(reply, "ID");
		if (e && *e) {
			int frc = -CFS_EPROTO;
			classify_error(e, 0, 200, &frc);
			rc = frc ? frc : -CFS_EPROTO;
		} else if (!got) {
			rc = id ? -CFS_EPROTO : -CFS_EMAYBE;
		} else {
			if (id_out)
				*id_out = got;
			if (ttl_out)
				*ttl_out = ji64(reply, "TTL");
		}
	}
	json_decref(reply);
	return rc;
}

/* The TTL that the lease call PATH answers for lease ID into *TTL_OUT (may
 * be NULL); -ENOENT when it is below MIN_TTL (the lease is gone). */
static int lease_ttl_call(struct etcdc *c, const char *path, int64_t id, int64_t min_ttl,
			  int64_t *ttl_out)
{
	json_t *reply = NULL;
	int rc = lease_call(c, path, REQ_IDEM, id, 0, &reply);
	if (!rc) {
		int64_t ttl = ji64(reply, "TTL");
		if (ttl < min_ttl)
			rc = -ENOENT;
		else if (ttl_out)
			*ttl_out = ttl;
	}
	json_decref(reply);
	return rc;
}

int etcdc_lease_keepalive(struct etcdc *c, int64_t id, int64_t *ttl_out)
{
	/* A keepalive of a lease that is gone answers TTL 0 (or none). */
	return lease_ttl_call(c, "/v3/lease/keepalive", id, 1, ttl_out);
}

int etcdc_lease_revoke(struct etcdc *c, int64_t id)
{
	json_t *reply = NULL;
	int rc = lease_call(c, "/v3/lease/revoke", REQ_IDEM, id, 0, &reply);
	json_decref(reply);
	return rc;
}

int etcdc_lease_ttl(struct etcdc *c, int64_t id, int64_t *ttl_out)
{
	/* timetolive answers TTL -1 for a lease that is gone; 0 is a live
	 * lease about to expire. */
	return lease_ttl_call(c, "/v3/lease/timetolive", id, 0, ttl_out);
}

/* ---- status ------------------------------------------------------------ */

int etcdc_status(struct etcdc *c, int i, struct etcdc_status *out)
{
	if (i < 0 || i >= c->neps)
		return -EINVAL;
	json_t *body = json_object(), *reply = NULL;
	if (!body)
		return -ENOMEM;
	int rc = call(c, "/v3/maintenance/status", body, REQ_IDEM, i, &reply);
	if (!rc) {
		json_t *hdr = json_object_get(reply, "header");
		memset(out, 0, sizeof(*out));
		out->member_id = ju64(hdr, "member_id");
		out->revision = ji64(hdr, "revision");
		out->leader = ju64(reply, "leader");
		out->raft_term = ji64(reply, "raftTerm");
		out->raft_index = ji64(reply, "raftIndex");
		out->db_size = ji64(reply, "dbSize");
	}
	json_decref(reply);
	json_decref(body);
	return rc;
}
