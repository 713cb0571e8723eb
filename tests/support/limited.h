/* Running a call in a child process under a memory and a time limit. */
#ifndef MMCHAIN_TEST_LIMITED_H
#define MMCHAIN_TEST_LIMITED_H

#include <stdbool.h>
#include <stddef.h>

#include "testutil.h"

typedef mc_status (*mc_limited_fn)(void *ctx);

/* Whether the memory limit is applied: not under AddressSanitizer, which
 * reserves terabytes of address space up front (only the time limit holds
 * there). */
bool mc_test_memory_limit_applies(void);

/* Run fn(ctx) in a forked child whose address space may grow by at most
 * extra_bytes (RLIMIT_AS) and that is killed after `seconds`; assert that
 * it returned `code` with a message containing `needle`. */
void mc_test_expect_fails_limited(mc_limited_fn fn, void *ctx, size_t extra_bytes, unsigned seconds,
                                  mc_status code, const char *needle);

#endif
