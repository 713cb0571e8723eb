/* The run folder: config.json, metrics.csv, log.txt, checkpoints/.
 *
 * Files that are rewritten (config.json, metrics.csv when it gains a
 * column or drops rows) go through mc_write_file_atomic, so a run killed at
 * any moment leaves each file either old or new. Lines appended to
 * metrics.csv and log.txt are flushed one by one: a kill loses at most the
 * line being written, and a failed append to metrics.csv is cut back to the
 * previous length. A flock on RUN/.lock keeps a second process out. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <unistd.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>

/* The library's strict JSON parser (lib/io/json.h) reads config.json back.
 * It is internal to the library, not installed: the application is built
 * in the same tree and may use it. */
#include "io/json.h"
#include "mmchain/mmchain.h"
#include "mmchain_app/report.h"
#include "mmchain_app/run.h"
#include "run_internal.h"

struct mc_run {
    char *dir;
    bool quiet, resumed;
    FILE *log;        /* log.txt, opened for appending */
    int lock_fd;      /* .lock, flock'ed while the run is open; -1 when none */
    int n_columns;    /* metrics.csv's columns after "kind" */
    char **columns;
};

/* ---- folders ---- */

/* mkdir -p: every missing component of `dir`. */
static mc_status make_folders(const char *dir) {
    size_t n = strlen(dir);
    char *path = malloc(n + 1);
    if (!path) return mc_error(MC_ERR_NOMEM, "run folder %s: out of memory", dir);
    memcpy(path, dir, n + 1);
    mc_status s = MC_OK;
    for (size_t i = 1; s == MC_OK && i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0') continue;
        char saved = path[i];
        path[i] = '\0';
        struct stat info;
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            s = mc_error(MC_ERR_IO, "run folder %s: cannot create %s: %s", dir, path, strerror(errno));
        else if (stat(path, &info) != 0 || !S_ISDIR(info.st_mode))
            s = mc_error(MC_ERR_IO, "run folder %s: %s exists and is not a folder", dir, path);
        path[i] = saved;
    }
    free(path);
    return s;
}

static bool file_exists(const char *path) {
    struct stat info;
    return stat(path, &info) == 0;
}

mc_status mc_run_path(const mc_run *run, const char *relative, char *buf, size_t len) {
    int n = snprintf(buf, len, "%s/%s", run->dir, relative);
    if (n < 0 || (size_t)n >= len)
        return mc_error(MC_ERR_ARG, "run folder %s: the path of %s does not fit in %zu bytes", run->dir, relative,
                        len);
    return MC_OK;
}

const char *mc_run_dir(const mc_run *run) { return run->dir; }
bool mc_run_resumed(const mc_run *run) { return run->resumed; }
void mc_run_set_quiet(mc_run *run, bool quiet) { run->quiet = quiet; }

static void free_columns(mc_run *run) {
    for (int i = 0; i < run->n_columns; i++) free(run->columns[i]);
    free(run->columns);
    run->columns = NULL;
    run->n_columns = 0;
}

void mc_run_close(mc_run *run) {
    if (!run) return;
    if (run->log) fclose(run->log);
    if (run->lock_fd >= 0) close(run->lock_fd); /* releases the flock */
    free_columns(run);
    free(run->dir);
    free(run);
}

/* On resume: the columns already in metrics.csv's header. */
static mc_status load_columns(mc_run *run) {
    char path[4096];
    MC_TRY(mc_run_path(run, "metrics.csv", path, sizeof path));
    if (!file_exists(path)) return MC_OK;
    mc_metrics_table table;
    MC_TRY(mc_metrics_read(path, &table));
    run->columns = table.columns; /* take them over */
    run->n_columns = table.n_columns;
    table.columns = NULL;
    table.n_columns = 0;
    mc_metrics_free(&table);
    return MC_OK;
}

/* A run killed while writing a file leaves its temporary "NAME.tmp.XXXXXX"
 * (atomic.c) behind; the complete previous file is still in place, so on
 * resume the leftovers of `folder` are simply removed. */
static void remove_stale_temporaries(const char *folder) {
    DIR *d = opendir(folder);
    if (!d) return;
    for (struct dirent *e; (e = readdir(d)) != NULL;) {
        const char *tmp = strstr(e->d_name, ".tmp.");
        if (!tmp || strlen(tmp) != sizeof ".tmp.XXXXXX" - 1) continue;
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", folder, e->d_name) < (int)sizeof path) unlink(path);
    }
    closedir(d);
}

/* Fresh: empty metrics.csv and log.txt (a previous run's are replaced).
 * Resume: config.json must be there; both are appended to. */
static mc_status prepare_files(mc_run *run, bool resume) {
    char path[4096];
    if (resume) {
        MC_TRY(load_columns(run));
        remove_stale_temporaries(run->dir);
        MC_TRY(mc_run_path(run, "checkpoints", path, sizeof path));
        remove_stale_temporaries(path);
    } else {
        MC_TRY(mc_run_path(run, "metrics.csv", path, sizeof path));
        MC_TRY(mc_write_file_atomic(path, "", 0));
    }
    MC_TRY(mc_run_path(run, "log.txt", path, sizeof path));
    run->log = fopen(path, resume ? "a" : "w");
    if (!run->log) return mc_error(MC_ERR_IO, "run folder %s: cannot write %s: %s", run->dir, path, strerror(errno));
    return MC_OK;
}

/* A folder to resume must exist and hold config.json. */
static mc_status check_is_run(const mc_run *run) {
    struct stat info;
    if (stat(run->dir, &info) != 0) return mc_error(MC_ERR_IO, "resume %s: no such run folder", run->dir);
    if (!S_ISDIR(info.st_mode)) return mc_error(MC_ERR_IO, "resume %s: not a folder", run->dir);
    char path[4096];
    MC_TRY(mc_run_path(run, "config.json", path, sizeof path));
    if (!file_exists(path))
        return mc_error(MC_ERR_IO, "resume %s: not a run folder (it has no config.json)", run->dir);
    return MC_OK;
}

/* One process per run folder: two trainers writing the same checkpoints
 * and metrics.csv would interleave them. An exclusive flock on RUN/.lock is
 * held until mc_run_close (or the process's end, however it ends: the
 * kernel drops the lock, so a killed run never leaves a stale one). */
static mc_status lock_run(mc_run *run) {
    char path[4096];
    MC_TRY(mc_run_path(run, ".lock", path, sizeof path));
    run->lock_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (run->lock_fd < 0) return mc_error(MC_ERR_IO, "run folder %s: cannot create %s: %s", run->dir, path, strerror(errno));
    if (flock(run->lock_fd, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        close(run->lock_fd);
        run->lock_fd = -1;
        if (err == EWOULDBLOCK)
            return mc_error(MC_ERR_IO, "run folder %s is in use by another mmchain process "
                            "(it holds %s); wait for it to finish or choose another folder", run->dir, path);
        return mc_error(MC_ERR_IO, "run folder %s: cannot lock %s: %s", run->dir, path, strerror(err));
    }
    return MC_OK;
}

/* Whether a file name is a checkpoint's (NAME.safetensors). */
static bool is_checkpoint_name(const char *name) {
    static const char suffix[] = ".safetensors";
    size_t n = strlen(name), k = sizeof suffix - 1;
    return n > k && strcmp(name + n - k, suffix) == 0;
}

/* The checkpoints in `folder` (0 when it does not exist); with `delete`,
 * each is removed as it is counted. */
static mc_status count_checkpoints(const mc_run *run, const char *folder, bool delete,
                                   int *count) {
    *count = 0;
    DIR *d = opendir(folder);
    if (!d) return MC_OK;
    mc_status s = MC_OK;
    for (struct dirent *e; s == MC_OK && (e = readdir(d)) != NULL;) {
        if (!is_checkpoint_name(e->d_name)) continue;
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", folder, e->d_name) >= (int)sizeof path)
            s = mc_error(MC_ERR_ARG, "run folder %s: the path of checkpoint %s is too long", run->dir,
                         e->d_name);
        else if (delete && unlink(path) != 0)
            s = mc_error(MC_ERR_IO, "run folder %s: cannot delete the previous run's %s: %s",
                         run->dir, path, strerror(errno));
        else
            (*count)++;
    }
    closedir(d);
    return s;
}

/* MC_RUN_NEW: a folder that holds a run already (a config.json, a
 * checkpoint, or a model: pretrain-clip's files, which are also what a
 * downloaded CLIP folder holds) is refused, and the message says what it
 * holds (the commands add the flags that get past it). Nothing is created
 * or changed. */
static mc_status check_holds_no_run(const mc_run *run) {
    static const char *const kept[] = {"config.json", "model.safetensors", "merges.txt",
                                       "vocab.json"};
    char held[256] = "", path[4096];
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++) {
        MC_TRY(mc_run_path(run, kept[i], path, sizeof path));
        if (!file_exists(path)) continue;
        const size_t used = strlen(held);
        snprintf(held + used, sizeof held - used, "%s%s", used ? ", " : "", kept[i]);
    }
    int count;
    MC_TRY(mc_run_path(run, "checkpoints", path, sizeof path));
    MC_TRY(count_checkpoints(run, path, false, &count));
    if (count > 0) {
        const size_t used = strlen(held);
        snprintf(held + used, sizeof held - used, "%s%d checkpoint%s in checkpoints/",
                 used ? ", " : "", count, count == 1 ? "" : "s");
    }
    if (!held[0]) return MC_OK;
    return mc_error(MC_ERR_IO,
                    "run folder %s holds a run already (%s), which a new run there would leave "
                    "beside its own config.json, or replace", run->dir, held);
}

mc_status mc_run_remove(mc_run *run, const char *relative) {
    char path[4096];
    MC_TRY(mc_run_path(run, relative, path, sizeof path));
    if (unlink(path) != 0 && errno != ENOENT)
        return mc_error(MC_ERR_IO, "run folder %s: cannot delete the previous run's %s: %s", run->dir,
                        path, strerror(errno));
    return MC_OK;
}

/* A run handle for `dir` that holds nothing yet: no lock, no files. */
static mc_status new_run(mc_run **out, const char *dir, bool resume) {
    if (!dir || !*dir) return mc_error(MC_ERR_ARG, "run folder: no path given");
    mc_run *run = calloc(1, sizeof *run);
    size_t n = strlen(dir);
    if (run) run->dir = malloc(n + 1);
    if (!run || !run->dir) {
        free(run);
        return mc_error(MC_ERR_NOMEM, "run folder %s: out of memory", dir);
    }
    memcpy(run->dir, dir, n + 1);
    while (n > 1 && run->dir[n - 1] == '/') run->dir[--n] = '\0'; /* "runs/a/" -> "runs/a" */
    run->resumed = resume;
    run->lock_fd = -1;
    *out = run;
    return MC_OK;
}

mc_status mc_run_check_new(const char *dir) {
    mc_run *run;
    MC_TRY(new_run(&run, dir, false));
    mc_status s = check_holds_no_run(run);
    mc_run_close(run);
    return s;
}

mc_status mc_run_open_readonly(mc_run **out, const char *dir) {
    *out = NULL;
    mc_run *run;
    MC_TRY(new_run(&run, dir, true));
    mc_status s = check_is_run(run);
    if (s != MC_OK) {
        mc_run_close(run);
        return s;
    }
    *out = run;
    return MC_OK;
}

mc_status mc_run_open(mc_run **out, const char *dir, mc_run_mode mode) {
    *out = NULL;
    if (mode != MC_RUN_NEW && mode != MC_RUN_RESUME && mode != MC_RUN_OVERWRITE)
        return mc_error(MC_ERR_ARG, "run folder %s: unknown mode %d", dir ? dir : "(null)", (int)mode);
    const bool resume = mode == MC_RUN_RESUME;
    mc_run *run;
    MC_TRY(new_run(&run, dir, resume));
    char checkpoints[4096];
    /* Resume and a new run validate before they create anything: a folder
     * that is not a run (resume), or is one (new), gets no checkpoints/ or
     * lock file. */
    mc_status s = resume ? check_is_run(run) : mode == MC_RUN_NEW ? check_holds_no_run(run) : MC_OK;
    if (s == MC_OK && !resume) s = make_folders(run->dir);
    if (s == MC_OK) s = lock_run(run);
    /* Again under the lock: another process may have started a run there
     * since the check above. */
    if (s == MC_OK && mode == MC_RUN_NEW) s = check_holds_no_run(run);
    if (s == MC_OK) s = mc_run_path(run, "checkpoints", checkpoints, sizeof checkpoints);
    int deleted = 0;
    if (s == MC_OK && mode == MC_RUN_OVERWRITE) s = count_checkpoints(run, checkpoints, true, &deleted);
    /* and its config.json, until the caller writes the new run's */
    if (s == MC_OK && mode == MC_RUN_OVERWRITE) s = mc_run_remove(run, "config.json");
    if (s == MC_OK) s = make_folders(checkpoints);
    if (s == MC_OK) s = prepare_files(run, resume);
    if (s == MC_OK && mode == MC_RUN_OVERWRITE) {
        remove_stale_temporaries(checkpoints);
        if (deleted > 0) { /* to log.txt only: the caller has not said yet whether it is quiet */
            run->quiet = true;
            s = mc_run_log(run, "a new run in place of the previous one: its %d checkpoint%s deleted",
                           deleted, deleted == 1 ? " was" : "s were");
            run->quiet = false;
        }
    }
    if (s != MC_OK) {
        mc_run_close(run);
        return s;
    }
    *out = run;
    return MC_OK;
}

/* ---- log.txt ---- */

static void utc_timestamp(char *buf, size_t len, const char *format) {
    time_t now = time(NULL);
    struct tm utc;
    gmtime_r(&now, &utc);
    strftime(buf, len, format, &utc);
}

mc_status mc_run_log(mc_run *run, const char *fmt, ...) {
    char message[2048];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof message, fmt, args);
    va_end(args);
    size_t n = strlen(message);
    if (n > 0 && message[n - 1] == '\n') message[--n] = '\0';
    char stamp[32];
    utc_timestamp(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S");
    if (!run->quiet) {
        printf("%s\n", message);
        fflush(stdout);
    }
    if (fprintf(run->log, "[%s] %s\n", stamp, message) < 0 || fflush(run->log) != 0)
        return mc_error(MC_ERR_IO, "run folder %s: cannot append to log.txt: %s", run->dir, strerror(errno));
    return MC_OK;
}

/* ---- config.json ---- */

/* JSON's number grammar (RFC 8259 §6): -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool is_json_number(const char *s) {
    if (*s == '-') s++;
    if (*s == '0') {
        s++;
    } else if (*s >= '1' && *s <= '9') {
        while (*s >= '0' && *s <= '9') s++;
    } else {
        return false;
    }
    if (*s == '.') {
        if (!(*++s >= '0' && *s <= '9')) return false;
        while (*s >= '0' && *s <= '9') s++;
    }
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') s++;
        if (!(*s >= '0' && *s <= '9')) return false;
        while (*s >= '0' && *s <= '9') s++;
    }
    return *s == '\0';
}

/* A JSON string literal: quotes, backslashes and control characters escaped. */
static void put_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '"' || *c == '\\')
            fprintf(f, "\\%c", *c);
        else if (*c == '\n')
            fputs("\\n", f);
        else if (*c < 0x20)
            fprintf(f, "\\u%04x", *c);
        else
            fputc(*c, f);
    }
    fputc('"', f);
}

/* A whole number that int64_t holds: JSON readers (json.c among them) keep
 * larger integers as doubles, which round them (a --seed of 2^64 - 1 would
 * come back as 1.8446744073709552e+19). */
static bool fits_int64(const char *s) {
    const char *digits = *s == '-' ? s + 1 : s;
    if (strspn(digits, "0123456789") != strlen(digits)) return true; /* not an integer: as is */
    errno = 0;
    (void)strtoll(s, NULL, 10);
    return errno != ERANGE;
}

static void put_json_value(FILE *f, const char *value) {
    if (!value)
        fputs("null", f);
    else if ((is_json_number(value) && fits_int64(value)) || strcmp(value, "true") == 0 ||
             strcmp(value, "false") == 0)
        fputs(value, f);
    else
        put_json_string(f, value);
}

typedef struct config_contents {
    int n;
    const mc_metadata_entry *kv;
} config_contents;

static mc_status write_config(void *ctx, FILE *f) {
    const config_contents *c = ctx;
    char created[32], threads[16];
    utc_timestamp(created, sizeof created, "%Y-%m-%dT%H:%M:%SZ");
    snprintf(threads, sizeof threads, "%d", mc_get_num_threads());
    const mc_metadata_entry ours[] = {{"mmchain_version", mc_version()},
                                      {"created", created},
                                      {"threads", threads},
                                      {"blas", mc_blas_core_name()},
                                      {"gemm", mc_gemm_kernel_name()}};
    const int n_ours = (int)(sizeof ours / sizeof ours[0]);
    fputs("{\n", f);
    for (int i = 0; i < c->n + n_ours; i++) {
        const mc_metadata_entry *e = i < c->n ? &c->kv[i] : &ours[i - c->n];
        fputs("  ", f);
        put_json_string(f, e->key);
        fputs(": ", f);
        put_json_value(f, e->value);
        fputs(i + 1 < c->n + n_ours ? ",\n" : "\n", f);
    }
    fputs("}\n", f);
    return MC_OK;
}

mc_status mc_run_write_config(mc_run *run, int n, const mc_metadata_entry *kv) {
    if (n < 0 || (n > 0 && !kv)) return mc_error(MC_ERR_ARG, "run folder %s: bad config entries", run->dir);
    for (int i = 0; i < n; i++)
        if (!kv[i].key || !*kv[i].key)
            return mc_error(MC_ERR_ARG, "run folder %s: config entry %d has no key", run->dir, i);
    char path[4096];
    MC_TRY(mc_run_path(run, "config.json", path, sizeof path));
    config_contents contents = {n, kv};
    return mc_write_file_atomic_with(path, write_config, &contents);
}

/* A JSON value as text: strings as they are, numbers and booleans as written. */
static mc_status json_value_text(const char *path, const char *key, const mc_json *v, char *buf, size_t len) {
    int n;
    if (v->type == MC_JSON_STRING)
        n = snprintf(buf, len, "%s", v->string);
    else if (v->type == MC_JSON_NUMBER && v->is_int)
        n = snprintf(buf, len, "%lld", (long long)v->integer);
    else if (v->type == MC_JSON_NUMBER)
        n = snprintf(buf, len, "%.17g", v->number);
    else if (v->type == MC_JSON_BOOL)
        n = snprintf(buf, len, "%s", v->boolean ? "true" : "false");
    else
        return mc_error(MC_ERR_FORMAT, "%s: \"%s\" is a JSON %s, not a value", path, key, mc_json_type_name(v->type));
    if (n < 0 || (size_t)n >= len) return mc_error(MC_ERR_ARG, "%s: the value of \"%s\" does not fit", path, key);
    return MC_OK;
}

mc_status mc_run_config_get(const mc_run *run, const char *key, char *buf, size_t len) {
    char path[4096];
    MC_TRY(mc_run_path(run, "config.json", path, sizeof path));
    char *text;
    size_t text_len;
    MC_TRY(mc_read_text_file(path, &text, &text_len));
    mc_json_doc *doc = NULL;
    mc_status s = mc_json_parse(text, text_len, path, &doc);
    const mc_json *value = s == MC_OK ? mc_json_get(mc_json_root(doc), key) : NULL;
    if (s == MC_OK && !value) s = mc_error(MC_ERR_ARG, "%s: no \"%s\" in it", path, key);
    if (s == MC_OK) s = json_value_text(path, key, value, buf, len);
    mc_json_free(doc);
    free(text);
    return s;
}

/* ---- metrics.csv ---- */

/* Names go into the CSV unquoted, so they must not need quoting. */
static mc_status check_csv_name(const mc_run *run, const char *what, const char *name) {
    if (!name || !*name || strpbrk(name, ",\"\n\r"))
        return mc_error(MC_ERR_ARG, "run folder %s: metrics %s \"%s\" must be non-empty without , \" or newlines",
                        run->dir, what, name ? name : "(null)");
    return MC_OK;
}

static int column_index(const mc_run *run, const char *name) {
    for (int i = 0; i < run->n_columns; i++)
        if (strcmp(run->columns[i], name) == 0) return i;
    return -1;
}

/* The text of metrics.csv with `added` more columns: the header extended,
 * every data line given `added` empty cells. */
static mc_status widen_csv(const mc_run *run, const char *text, int added, FILE *f) {
    fputs("kind", f);
    for (int i = 0; i < run->n_columns; i++) fprintf(f, ",%s", run->columns[i]);
    fputc('\n', f);
    const char *line = strchr(text, '\n'); /* skip the old header */
    while (line && *++line) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line) : strlen(line);
        fwrite(line, 1, n, f);
        for (int i = 0; i < added; i++) fputc(',', f);
        fputc('\n', f);
        line = end;
    }
    return MC_OK;
}

typedef struct widen_contents {
    const mc_run *run;
    const char *text;
    int added;
} widen_contents;

static mc_status write_widened(void *ctx, FILE *f) {
    const widen_contents *w = ctx;
    return widen_csv(w->run, w->text, w->added, f);
}

/* Add the row's unknown columns to the header (rewriting the file once). */
static mc_status add_columns(mc_run *run, const char *path, const char *const *columns, int n) {
    int old = run->n_columns;
    for (int i = 0; i < n; i++) {
        if (column_index(run, columns[i]) >= 0) continue;
        char **grown = realloc(run->columns, sizeof *grown * (size_t)(run->n_columns + 1));
        size_t len = strlen(columns[i]) + 1;
        char *copy = grown ? malloc(len) : NULL;
        if (grown) run->columns = grown;
        if (!copy) return mc_error(MC_ERR_NOMEM, "%s: out of memory", path);
        memcpy(copy, columns[i], len);
        run->columns[run->n_columns++] = copy;
    }
    if (run->n_columns == old) return MC_OK;
    char *text = NULL;
    MC_TRY(mc_read_text_file(path, &text, NULL));
    widen_contents w = {run, text, run->n_columns - old};
    mc_status s = mc_write_file_atomic_with(path, write_widened, &w);
    free(text);
    return s;
}

static void put_number(FILE *f, double v) {
    if (isnan(v))
        fputs("nan", f);
    else if (isinf(v))
        fputs(v > 0 ? "inf" : "-inf", f);
    else
        fprintf(f, "%.9g", v);
}

mc_status mc_run_metrics_row(mc_run *run, const char *kind, const char *const *columns, const double *values,
                             int n) {
    if (n < 0 || (n > 0 && (!columns || !values)))
        return mc_error(MC_ERR_ARG, "run folder %s: bad metrics row", run->dir);
    MC_TRY(check_csv_name(run, "kind", kind));
    for (int i = 0; i < n; i++) {
        MC_TRY(check_csv_name(run, "column", columns[i]));
        if (strcmp(columns[i], "kind") == 0)
            return mc_error(MC_ERR_ARG, "run folder %s: \"kind\" is the row kind, not a metrics column", run->dir);
    }
    char path[4096];
    MC_TRY(mc_run_path(run, "metrics.csv", path, sizeof path));
    MC_TRY(add_columns(run, path, columns, n));
    FILE *f = fopen(path, "a");
    if (!f) return mc_error(MC_ERR_IO, "%s: cannot append: %s", path, strerror(errno));
    struct stat before;
    if (fstat(fileno(f), &before) != 0) before.st_size = -1;
    fputs(kind, f);
    for (int c = 0; c < run->n_columns; c++) {
        fputc(',', f);
        for (int i = 0; i < n; i++)
            if (strcmp(columns[i], run->columns[c]) == 0) {
                put_number(f, values[i]);
                break;
            }
    }
    fputc('\n', f);
    /* A row is appended whole or not at all: on a failed write (a full
     * disk) the file is cut back to its previous length, so no partial row
     * is left for the next append to run into. */
    if (fflush(f) != 0 || ferror(f)) {
        int err = errno;
        if (before.st_size >= 0 && ftruncate(fileno(f), before.st_size) != 0)
            err = errno; /* the cut-back failed too: say why */
        fclose(f);
        return mc_error(MC_ERR_IO, "%s: append failed: %s", path, strerror(err));
    }
    if (fclose(f) != 0) return mc_error(MC_ERR_IO, "%s: append failed: %s", path, strerror(errno));
    return MC_OK;
}

typedef struct filter_contents {
    const char *text;
    int column; /* index after "kind" */
    double limit;
} filter_contents;

/* Is the line's cell in the column greater than the limit? */
static bool line_is_after(const char *line, size_t len, int column, double limit) {
    const char *cell = line;
    for (int c = 0; c <= column; c++) { /* skip "kind" and the columns before */
        const char *comma = memchr(cell, ',', len - (size_t)(cell - line));
        if (!comma) return false;
        cell = comma + 1;
    }
    if (cell >= line + len || *cell == ',' || *cell == '\n') return false; /* empty: kept */
    return strtod(cell, NULL) > limit;
}

static mc_status write_filtered(void *ctx, FILE *f) {
    const filter_contents *fc = ctx;
    const char *line = fc->text;
    for (bool header = true; *line; header = false) {
        const char *end = strchr(line, '\n');
        size_t n = end ? (size_t)(end - line + 1) : strlen(line);
        if (header || !line_is_after(line, n, fc->column, fc->limit)) fwrite(line, 1, n, f);
        line += n;
    }
    return MC_OK;
}

mc_status mc_run_metrics_drop_after(mc_run *run, const char *column, double limit) {
    char path[4096];
    MC_TRY(mc_run_path(run, "metrics.csv", path, sizeof path));
    int index = column ? column_index(run, column) : -1;
    if (index < 0) return MC_OK; /* no such column yet: nothing logged after */
    char *text;
    MC_TRY(mc_read_text_file(path, &text, NULL));
    filter_contents fc = {text, index, limit};
    mc_status s = mc_write_file_atomic_with(path, write_filtered, &fc);
    free(text);
    return s;
}
