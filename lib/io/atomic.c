/* Atomic file replacement: write a temporary file beside the destination,
 * flush and fsync it, rename() it over the destination, fsync the folder.
 *
 * Why this order: rename() within one file system is atomic (POSIX), so a
 * reader — or a run restarted after a crash — sees either the old file or
 * the complete new one. fsync before rename makes sure the new name never
 * points at data still in the page cache only; fsync of the folder makes
 * the rename itself durable. On any failure the temporary file is removed
 * and the destination is untouched. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "mmchain/io.h"

/* The six characters that make a temporary name unique (mkstemp's
 * XXXXXX): drawn from a generator seeded by the process, the clock, a
 * per-process counter and the attempt, so that two writers of one file,
 * in one process or two, draw different names; a name taken all the same
 * is caught by O_EXCL and drawn again. */
static void fill_unique(char *six, unsigned attempt) {
    static const char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    static _Atomic unsigned counter; /* plain width: no libatomic on 32-bit targets */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    unsigned long long x = (unsigned long long)now.tv_nsec ^ ((unsigned long long)now.tv_sec << 30) ^
                           ((unsigned long long)getpid() << 20) ^ ((unsigned long long)counter++ << 8) ^
                           attempt;
    for (int i = 0; i < 6; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull; /* Knuth's MMIX LCG */
        six[i] = alphabet[(x >> 33) % (sizeof alphabet - 1)];
    }
}

/* A new empty temporary file "<path>.tmp.XXXXXX": *tmp is malloc'd.
 * Created with mode 0666 less the umask, as fopen would create the file
 * itself (mkstemp's 0600, or a fixed 0644, would ignore a umask of 077 or
 * 002 and the folder's default ACL). */
static mc_status create_temp(const char *path, char **tmp, int *fd) {
    size_t tmp_len = strlen(path) + sizeof ".tmp.XXXXXX";
    *tmp = malloc(tmp_len);
    if (!*tmp) return mc_error(MC_ERR_NOMEM, "%s: out of memory", path);
    snprintf(*tmp, tmp_len, "%s.tmp.XXXXXX", path);
    char *six = *tmp + tmp_len - sizeof "XXXXXX";
    *fd = -1;
    for (unsigned attempt = 0; *fd < 0 && attempt < 100; attempt++) {
        fill_unique(six, attempt);
        *fd = open(*tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (*fd < 0 && errno != EEXIST) break;
    }
    if (*fd < 0) {
        mc_status s = mc_error(MC_ERR_IO, "%s: cannot create a temporary file beside it: %s", path,
                               strerror(errno));
        free(*tmp);
        *tmp = NULL;
        return s;
    }
    return MC_OK;
}

/* Best effort: make the rename durable. Some file systems refuse fsync on a
 * folder (EINVAL); the file is already in place then, so this is no error. */
static void sync_parent_folder(const char *path) {
    const char *slash = strrchr(path, '/');
    char folder[4096];
    if (!slash) {
        snprintf(folder, sizeof folder, ".");
    } else if (slash == path) {
        snprintf(folder, sizeof folder, "/");
    } else {
        size_t n = (size_t)(slash - path);
        if (n >= sizeof folder) return;
        memcpy(folder, path, n);
        folder[n] = '\0';
    }
    int fd = open(folder, O_RDONLY);
    if (fd < 0) return;
    (void)fsync(fd);
    close(fd);
}

/* Rename the finished temporary file into place, or remove it. */
static mc_status finish(const char *path, char *tmp, mc_status status) {
    if (status == MC_OK && rename(tmp, path) != 0)
        status = mc_error(MC_ERR_IO, "%s: cannot rename the temporary file into place: %s", path,
                          strerror(errno));
    if (status == MC_OK)
        sync_parent_folder(path);
    else
        unlink(tmp);
    free(tmp);
    return status;
}

/* The new content of `path` in a temporary file beside it, written by
 * write(ctx, f), flushed and fsync'ed: *tmp (malloc'd) names it. On
 * failure nothing remains (*tmp NULL). */
static mc_status write_temp(const char *path, mc_atomic_writer_fn write, void *ctx, char **tmp) {
    if (!path || !*path || !write) return mc_error(MC_ERR_ARG, "atomic write: a path and a writer are needed");
    int fd;
    MC_TRY(create_temp(path, tmp, &fd));
    FILE *fp = fdopen(fd, "wb");
    mc_status status = MC_OK;
    if (!fp) {
        status = mc_error(MC_ERR_IO, "%s: fdopen failed: %s", path, strerror(errno));
        close(fd);
    } else {
        status = write(ctx, fp);
        if (status == MC_OK && (fflush(fp) != 0 || ferror(fp) || fsync(fileno(fp)) != 0))
            status = mc_error(MC_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        if (fclose(fp) != 0 && status == MC_OK)
            status = mc_error(MC_ERR_IO, "%s: close failed: %s", path, strerror(errno));
    }
    if (status != MC_OK) {
        unlink(*tmp);
        free(*tmp);
        *tmp = NULL;
    }
    return status;
}

mc_status mc_write_file_atomic_with(const char *path, mc_atomic_writer_fn write, void *ctx) {
    char *tmp;
    MC_TRY(write_temp(path, write, ctx, &tmp));
    return finish(path, tmp, MC_OK);
}

mc_status mc_write_files_atomic(int n, const mc_atomic_file *files) {
    if (n < 1 || !files) return mc_error(MC_ERR_ARG, "atomic write: no files given");
    char **tmps = calloc((size_t)n, sizeof *tmps);
    if (!tmps) return mc_error(MC_ERR_NOMEM, "atomic write of %s and %d more: out of memory",
                               files[0].path ? files[0].path : "(null)", n - 1);
    mc_status status = MC_OK;
    for (int i = 0; i < n && status == MC_OK; i++) {
        status = write_temp(files[i].path, files[i].write, files[i].ctx, &tmps[i]);
        /* which of the files failed, where the writer's message does not say */
        if (status != MC_OK && files[i].path && !strstr(mc_last_error(), files[i].path))
            status = mc_error_context(status, "%s: ", files[i].path);
    }
    /* All written, or none replaced: the renames come only after every
     * temporary file is complete on disk. */
    for (int i = 0; i < n; i++)
        if (tmps[i]) {
            mc_status renamed = finish(files[i].path, tmps[i], status);
            if (status == MC_OK) status = renamed;
        }
    free(tmps);
    return status;
}

mc_status mc_write_file_atomic_via(const char *path, mc_atomic_path_writer_fn write, void *ctx) {
    if (!path || !*path || !write) return mc_error(MC_ERR_ARG, "atomic write: a path and a writer are needed");
    char *tmp;
    int fd;
    MC_TRY(create_temp(path, &tmp, &fd));
    close(fd); /* the writer opens the file by name */
    mc_status status = write(ctx, tmp);
    if (status == MC_OK) {
        int sync_fd = open(tmp, O_RDONLY);
        if (sync_fd < 0 || fsync(sync_fd) != 0)
            status = mc_error(MC_ERR_IO, "%s: fsync of the temporary file failed: %s", path, strerror(errno));
        if (sync_fd >= 0) close(sync_fd);
    }
    return finish(path, tmp, status);
}

typedef struct byte_span {
    const char *path;
    const void *data;
    size_t len;
} byte_span;

static mc_status write_span(void *ctx, FILE *f) {
    const byte_span *span = ctx;
    if (span->len > 0 && fwrite(span->data, 1, span->len, f) != span->len)
        return mc_error(MC_ERR_IO, "%s: write failed: %s", span->path, strerror(errno));
    return MC_OK;
}

mc_status mc_write_file_atomic(const char *path, const void *data, size_t len) {
    if (len > 0 && !data) return mc_error(MC_ERR_ARG, "atomic write %s: NULL data", path ? path : "(null)");
    byte_span span = {path, data, len};
    return mc_write_file_atomic_with(path, write_span, &span);
}
