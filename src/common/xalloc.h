/* xalloc.h - allocation policy (STYLE.md §3).
 *
 * Daemons use the aborting x* functions for bookkeeping: a failure there
 * leaves no sane way on. Request-sized buffers use plain malloc (or buf.h)
 * and return -ENOMEM. The client library and FUSE glue never use x*.
 */
#ifndef CFS_COMMON_XALLOC_H
#define CFS_COMMON_XALLOC_H

#include <stddef.h>

void *xmalloc(size_t n);
void *xcalloc(size_t nmemb, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

#endif
