/* block_hint.c - the per-thread "about to block" hook (block_hint.h). */
#include "common/block_hint.h"

#include <stddef.h>

__thread block_hint_fn block_hint_cur;

void block_hint_set(block_hint_fn fn)
{
	block_hint_cur = fn;
}
