/* hex.h - hexadecimal digits: ids, secrets and escapes written as text
 * (usrbio link names, the cluster secret file, %XX in KV URLs). */
#ifndef CFS_COMMON_HEX_H
#define CFS_COMMON_HEX_H

#include <stddef.h>
#include <stdint.h>

/* The value (0..15) of hex digit C, either case; -1 for anything else
 * (C may be any char, negative ones included). */
int hex_digit(int c);
/* Writes the N bytes of IN as 2N lowercase hex digits and a NUL to OUT
 * (2N + 1 bytes). */
void hex_encode(const uint8_t *in, size_t n, char *out);

#endif
