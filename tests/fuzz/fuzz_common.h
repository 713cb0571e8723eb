/* Shared by the fuzz targets (tests/fuzz/fuzz_*.c).
 *
 * Each target defines LLVMFuzzerTestOneInput(data, size): libFuzzer calls it
 * with generated inputs (clang, -fsanitize=fuzzer), and replay_main.c calls
 * it with the files of the committed corpus (any compiler), so every input
 * that ever crashed a parser stays a regression test.
 *
 * Most readers take a path, so the input is written to a file first: one
 * private folder per process, made on first use and removed at exit. */
#ifndef MMCHAIN_FUZZ_COMMON_H
#define MMCHAIN_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The process's private folder (created on first call). Never NULL: a
 * folder that cannot be made ends the process, since no input could be
 * tested. */
const char *fuzz_dir(void);

/* Write `size` bytes to fuzz_dir()/name and return that path (a static
 * buffer, valid until the next call). */
const char *fuzz_write(const char *name, const void *data, size_t size);

#endif
