/* The fuzz targets' scratch files (fuzz_common.h). */
#include "fuzz_common.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char dir[512];

static void remove_dir(void) {
    char command[600];
    snprintf(command, sizeof command, "rm -rf '%s'", dir);
    if (system(command) != 0) fprintf(stderr, "fuzz: could not remove %s\n", dir);
}

const char *fuzz_dir(void) {
    if (dir[0]) return dir;
    const char *base = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/mmchain-fuzz-XXXXXX", base && base[0] ? base : "/tmp");
    if (!mkdtemp(dir)) {
        perror("fuzz: cannot create a scratch folder");
        exit(1);
    }
    atexit(remove_dir);
    return dir;
}

const char *fuzz_write(const char *name, const void *data, size_t size) {
    static char path[1024];
    snprintf(path, sizeof path, "%s/%s", fuzz_dir(), name);
    FILE *f = fopen(path, "wb");
    if (!f || (size > 0 && fwrite(data, 1, size, f) != size) || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
    return path;
}

/* ---- heap accounting (fuzz_common.h) ---- */

/* The hooks need AddressSanitizer's allocator and its header; GCC's ASan
 * runtime has the hooks but Debian's GCC ships no allocator_interface.h, so
 * a GCC sanitizer build replays the corpus without heap accounting. */
#if defined(__has_include)
#if __has_include(<sanitizer/allocator_interface.h>)
#if defined(__SANITIZE_ADDRESS__)
#define FUZZ_HAVE_HOOKS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FUZZ_HAVE_HOOKS 1
#endif
#endif
#endif
#endif

#ifdef FUZZ_HAVE_HOOKS
#include <sanitizer/allocator_interface.h>

/* Bytes in use (counted from the first fuzz_heap_begin(); blocks older than
 * that, freed later, take it below zero, hence signed) and the highest value
 * since the last fuzz_heap_begin(). Atomic: OpenMP and BLAS threads
 * allocate too. */
static int64_t heap_in_use, heap_start, heap_peak;
static int hooks_installed;

static void on_malloc(const volatile void *ptr, size_t size) {
    (void)ptr;
    int64_t now = __atomic_add_fetch(&heap_in_use, (int64_t)size, __ATOMIC_RELAXED);
    int64_t peak = __atomic_load_n(&heap_peak, __ATOMIC_RELAXED);
    while (now > peak &&
           !__atomic_compare_exchange_n(&heap_peak, &peak, now, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
    }
}

static void on_free(const volatile void *ptr) {
    /* Called before the block is released, so its size is still known. */
    if (ptr && __sanitizer_get_ownership((const void *)ptr))
        __atomic_sub_fetch(&heap_in_use, (int64_t)__sanitizer_get_allocated_size((const void *)ptr),
                           __ATOMIC_RELAXED);
}

void fuzz_heap_begin(void) {
    if (!hooks_installed)
        hooks_installed = __sanitizer_install_malloc_and_free_hooks(on_malloc, on_free);
    heap_start = __atomic_load_n(&heap_in_use, __ATOMIC_RELAXED);
    __atomic_store_n(&heap_peak, heap_start, __ATOMIC_RELAXED);
}

size_t fuzz_heap_peak(void) {
    return hooks_installed ? (size_t)(__atomic_load_n(&heap_peak, __ATOMIC_RELAXED) - heap_start) : 0;
}

int fuzz_heap_counted(void) { return hooks_installed; }
#else
void fuzz_heap_begin(void) {}
size_t fuzz_heap_peak(void) { return 0; }
int fuzz_heap_counted(void) { return 0; }
#endif

void fuzz_heap_check(const char *what, size_t file_size) {
    size_t peak = fuzz_heap_peak(), bound = FUZZ_HEAP_PER_FILE_BYTE * file_size + FUZZ_HEAP_CONSTANT;
    if (getenv("MMCHAIN_FUZZ_HEAP_REPORT"))
        fprintf(stderr, "fuzz: %s took a heap peak of %zu bytes from a %zu-byte file (bound %zu)\n",
                what, peak, file_size, bound);
    if (peak > bound) {
        fprintf(stderr,
                "fuzz: %s allocated a peak of %zu bytes from a %zu-byte file, more than the bound "
                "%d x file + %u = %zu: it sized something from the file before checking it\n",
                what, peak, file_size, FUZZ_HEAP_PER_FILE_BYTE, FUZZ_HEAP_CONSTANT, bound);
        abort();
    }
}
