/* Running a call in a child process under a memory and time limit or a
 * file size limit. */
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

/* Run fn(ctx) in a child process in which writes that would make any file
 * larger than `bytes` fail with EFBIG, as on a full disk (RLIMIT_FSIZE, with
 * SIGXFSZ ignored so that write() returns the error instead of the signal
 * killing the process). A child, because the limit would also hit Check's
 * own result file. Returns fn's status; `message` gets its error message. */
mc_status mc_test_with_file_size_limit(size_t bytes, mc_limited_fn fn, void *ctx, char *message,
                                       size_t message_len);

#endif
