/* block_hint.h - a per-thread "about to block" hook, called by code that
 * cannot know who runs it right before it waits.
 *
 * WHY. The mount's FUSE loop (fuse_loop.h) lets the thread that read a
 * request answer it without handing the reading of /dev/fuse over to
 * another thread, as long as the request does not wait; a handler that
 * finds it must wait hands the reading over first. With the metadata
 * instance in the mount's process (meta_local.h) a namespace change runs
 * in the FUSE thread through the KV store, and the waits (LMDB's writer
 * lock held by another process, another thread's group commit, a
 * synchronous fsync, an RPC when the instance declines) are deep inside
 * kv_lmdb.c and meta_client.c, which must not know about FUSE. The loop
 * registers its hand-over here for its threads; those modules call
 * block_hint_wait() right before they wait.
 *
 * Threads: the hook is thread-local: block_hint_set affects only the
 * calling thread, and block_hint_wait calls only the calling thread's
 * hook (a no-op on threads that set none). The hook runs on the waiting
 * thread with whatever locks the caller holds: it must be short and take
 * no lock of the modules that call it.
 */
#ifndef CFS_COMMON_BLOCK_HINT_H
#define CFS_COMMON_BLOCK_HINT_H

typedef void (*block_hint_fn)(void);

extern __thread block_hint_fn block_hint_cur;

/* Sets the calling thread's hook (NULL: none). */
void block_hint_set(block_hint_fn fn);

/* The calling thread is about to wait for something outside its control
 * (another thread or process, the disk, the network): runs its hook, if
 * any. Cheap when none is set. */
static inline void block_hint_wait(void)
{
	block_hint_fn fn = block_hint_cur;
	if (fn)
		fn();
}

#endif
