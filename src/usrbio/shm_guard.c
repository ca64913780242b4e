/* shm_guard.c - SIGBUS recovery for application shared memory (see the
 * header). The table is a fixed array of {base, size, poisoned} atomics: a
 * slot is claimed by a CAS of base from 0, so the handler never takes a
 * lock. A slot is cleared only after nothing touches its region any more
 * (the server's refcounts), so the handler cannot race a removal that
 * matters.
 */
#include "usrbio/shm_guard.h"

#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define GUARD_SLOTS 4096

struct guard_slot {
	_Atomic uintptr_t base;
	_Atomic size_t size;
	_Atomic int poisoned;
};

static struct guard_slot slots[GUARD_SLOTS];
static _Atomic int installed;

static void on_sigbus(int sig, siginfo_t *si, void *uc)
{
	uintptr_t a = (uintptr_t)si->si_addr;
	for (int i = 0; i < GUARD_SLOTS; i++) {
		uintptr_t b = atomic_load_explicit(&slots[i].base, memory_order_acquire);
		size_t s = atomic_load_explicit(&slots[i].size, memory_order_acquire);
		if (b && a >= b && a - b < s) {
			/* mmap is a plain system call: safe enough here, and the
			 * only way to make the faulting access succeed. */
			mmap((void *)b, s, PROT_READ | PROT_WRITE,
			     MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			atomic_store_explicit(&slots[i].poisoned, 1, memory_order_release);
			return;
		}
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_DFL;
	sigaction(SIGBUS, &sa, NULL);
	raise(SIGBUS);
}

int shm_guard_install(void)
{
	int expect = 0;
	if (!atomic_compare_exchange_strong(&installed, &expect, 1))
		return 0;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_sigaction = on_sigbus;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGBUS, &sa, NULL) < 0) {
		atomic_store(&installed, 0);
		return -errno;
	}
	return 0;
}

int shm_guard_add(void *base, size_t size)
{
	for (int i = 0; i < GUARD_SLOTS; i++) {
		uintptr_t zero = 0;
		if (atomic_load_explicit(&slots[i].base, memory_order_relaxed))
			continue;
		atomic_store_explicit(&slots[i].size, 0, memory_order_relaxed);
		if (atomic_compare_exchange_strong(&slots[i].base, &zero, (uintptr_t)base)) {
			atomic_store_explicit(&slots[i].poisoned, 0, memory_order_relaxed);
			atomic_store_explicit(&slots[i].size, size, memory_order_release);
			return i;
		}
	}
	return -ENOSPC;
}

void shm_guard_remove(int slot)
{
	if (slot < 0 || slot >= GUARD_SLOTS)
		return;
	atomic_store_explicit(&slots[slot].size, 0, memory_order_release);
	atomic_store_explicit(&slots[slot].base, 0, memory_order_release);
}

int shm_guard_poisoned(int slot)
{
	if (slot < 0 || slot >= GUARD_SLOTS)
		return 0;
	return atomic_load_explicit(&slots[slot].poisoned, memory_order_acquire);
}
