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

/* ---- the heap a loader may take: the file's size plus a bounded constant ----
 *
 * A model loader derives a configuration from the file and must check every
 * tensor's shape against it before allocating the model, so that a file of
 * a few bytes cannot make it build a network of gigabytes. The model
 * targets check this directly: between fuzz_heap_begin() and
 * fuzz_heap_check() every byte the process allocates is counted (sanitizer
 * builds: ASan's allocation hooks), and a peak above
 *     FUZZ_HEAP_PER_FILE_BYTE * file size + FUZZ_HEAP_CONSTANT
 * aborts the process naming the loader (libFuzzer reports it as a crash and
 * keeps the input). Without a sanitizer (the release build's replays)
 * there are no hooks and the check is skipped (fuzz_heap_counted() says so);
 * the fuzz and asan builds count.
 *
 * Why 64 bytes per file byte: the parse tree of the JSON header (a node of
 * about 80 bytes for as little as two bytes of text, "0,") dominates; the
 * rest is the file itself (mmap or one malloc'd copy), the model's tensors
 * (at most what the file holds, since every one of them was found in it),
 * one tensor converted from F16/BF16 at a time, the optimizer's state (in
 * the file too) and the derived conv1 of an N-band encoder. The constant
 * covers the fixed-size parts (layer tables, messages). A loader that sized
 * a model from a declared shape before checking the file exceeds it by
 * orders of magnitude (a transposed token embedding: gigabytes). */
#define FUZZ_HEAP_PER_FILE_BYTE 64
#define FUZZ_HEAP_CONSTANT (1u << 20)

/* Start counting: the peak is measured from the heap in use now. */
void fuzz_heap_begin(void);
/* Abort (naming `what`) when the peak since fuzz_heap_begin() exceeds the
 * bound for a file of `file_size` bytes. */
void fuzz_heap_check(const char *what, size_t file_size);
/* The peak since fuzz_heap_begin(), in bytes (0 when not counted). */
size_t fuzz_heap_peak(void);
/* Whether this build counts the heap at all. */
int fuzz_heap_counted(void);

#endif
