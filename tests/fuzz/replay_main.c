/* Run a fuzz target over files instead of libFuzzer's generated inputs:
 *     fuzz_png_replay tests/fuzz/corpus/png [more files or folders...]
 * calls LLVMFuzzerTestOneInput once per file (folders: each file in them).
 * Built with every compiler, so the committed corpus — seeds and the inputs
 * that once crashed a parser — runs in the ordinary test suite, under the
 * sanitizers in the asan build. Exit 0 when every input returned. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"

static int run_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        return 1;
    }
    size_t size = 0, capacity = 4096;
    uint8_t *data = malloc(capacity);
    for (size_t got; data && (got = fread(data + size, 1, capacity - size, f)) > 0;) {
        size += got;
        if (size == capacity) data = realloc(data, capacity *= 2);
    }
    fclose(f);
    if (!data) {
        fprintf(stderr, "%s: out of memory\n", path);
        return 1;
    }
    LLVMFuzzerTestOneInput(data, size);
    free(data);
    return 0;
}

static int compare_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every regular file directly in `folder`, in name order. */
static int run_folder(const char *folder, int *count) {
    DIR *d = opendir(folder);
    if (!d) {
        perror(folder);
        return 1;
    }
    char **names = NULL;
    int n = 0, failed = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        if (e->d_name[0] == '.') continue;
        names = realloc(names, sizeof *names * (size_t)(n + 1));
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    if (n > 0) qsort(names, (size_t)n, sizeof *names, compare_names);
    for (int i = 0; i < n; i++) {
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", folder, names[i]);
        struct stat info;
        if (stat(path, &info) == 0 && S_ISREG(info.st_mode)) failed |= run_file(path), ++*count;
        free(names[i]);
    }
    free(names);
    return failed;
}

int main(int argc, char **argv) {
    int failed = 0, count = 0;
    for (int i = 1; i < argc; i++) {
        struct stat info;
        if (stat(argv[i], &info) != 0) {
            perror(argv[i]);
            failed = 1;
        } else if (S_ISDIR(info.st_mode)) {
            failed |= run_folder(argv[i], &count);
        } else {
            failed |= run_file(argv[i]), count++;
        }
    }
    printf("%s: %d inputs replayed\n", argv[0], count);
    if (count == 0) {
        fprintf(stderr, "%s: no inputs (an empty corpus tests nothing)\n", argv[0]);
        return 1;
    }
    return failed;
}
