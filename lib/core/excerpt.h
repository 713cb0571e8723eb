/* Text from a file, made safe to quote in an error message. */
#ifndef MMCHAIN_CORE_EXCERPT_H
#define MMCHAIN_CORE_EXCERPT_H

#include <stddef.h>

/* Copy at most the first 40 bytes of `text` into buf (always
 * NUL-terminated), with every byte that is not printable ASCII written as
 * \xNN and "..." after a cut: a garbage file quoted in a message cannot
 * send control characters to the terminal. Returns buf. */
const char *mc_excerpt(const char *text, char *buf, size_t len);

/* Enough for any excerpt: 40 bytes of 4 characters each, "...", the NUL. */
#define MC_EXCERPT_LEN 168

#endif
