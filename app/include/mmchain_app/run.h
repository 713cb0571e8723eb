/* mmchain's application layer — running like a real training program: a
 * progress line and a run folder (config.json, metrics.csv, log.txt,
 * checkpoints/). report.h renders report.html from it; demo.h is the demo.
 *
 *     mc_run *run;
 *     MC_TRY(mc_run_open(&run, "runs/demo", resume ? MC_RUN_RESUME : MC_RUN_NEW));
 *     mc_run_set_quiet(run, quiet);
 *     mc_metadata_entry cfg[] = {{"lr", "1e-4"}, {"batch", "100"}, {"seed", "7"}};
 *     MC_TRY(mc_run_write_config(run, 3, cfg));
 *
 *     mc_progress bar;
 *     mc_progress_begin(&bar, "train", steps_total, quiet);
 *     for (...) {
 *         mc_progress_update(&bar, epoch, step, loss, items_done);
 *         const char *cols[] = {"epoch", "step", "loss"};
 *         double vals[] = {epoch, step, loss};
 *         MC_TRY(mc_run_metrics_row(run, "step", cols, vals, 3));
 *     }
 *     mc_progress_end(&bar, "epoch 3 done");
 *     mc_run_log(run, "best spectral->text accuracy %.3f", best);
 *     MC_TRY(mc_run_write_report(run, &extra));   // plots from metrics.csv + extra
 *     mc_run_close(run);
 */
#ifndef MMCHAIN_APP_RUN_H
#define MMCHAIN_APP_RUN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "mmchain/error.h"
#include "mmchain/io.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- progress ----------------------------------------------------------
 * On a terminal: one line rewritten in place with '\r':
 *     train  epoch 2  step 130/400  loss 1.2345  812.3 items/s  ETA 0:41
 * Not a terminal (a log file, a pipe): the same text as a plain line, at
 * most once every `every_steps` steps or `every_seconds` seconds (whichever
 * comes first), plus the final step. Nothing at all when quiet. */

typedef double (*mc_clock_fn)(void *ctx); /* seconds, monotonic */

typedef enum mc_progress_mode {
    MC_PROGRESS_AUTO = 0, /* in place when isatty(fileno(out)), else plain lines */
    MC_PROGRESS_TERMINAL, /* in place with '\r' */
    MC_PROGRESS_PLAIN     /* plain lines */
} mc_progress_mode;

typedef struct mc_progress_options { /* zero = every default */
    FILE *out;            /* default stderr */
    mc_progress_mode mode;
    mc_clock_fn clock;    /* default: CLOCK_MONOTONIC */
    void *clock_ctx;
    int64_t every_steps;  /* plain mode: print every N steps (default 50) */
    double every_seconds; /* plain mode: or every S seconds (default 10) */
} mc_progress_options;

typedef struct mc_progress {
    char label[48];
    FILE *out;
    bool quiet, terminal;
    mc_clock_fn clock;
    void *clock_ctx;
    int64_t total_steps, every_steps;
    double every_seconds;
    double start_time;      /* clock at mc_progress_begin */
    double last_print_time;
    int64_t base_step;      /* the step before the first update (0, or where a resume began) */
    int64_t last_print_step;
    int line_len;           /* length of the last in-place line (to blank it) */
    bool started;           /* at least one update seen */
    bool line_open;         /* an in-place line is on screen without its newline */
} mc_progress;

/* Start a progress display with the defaults (stderr, isatty, monotonic clock). */
void mc_progress_begin(mc_progress *p, const char *label, int64_t total_steps, bool quiet);
/* The same with options (opt may be NULL = defaults); tests use it to capture
 * output into a memstream and to inject a fake clock. */
void mc_progress_begin_with(mc_progress *p, const char *label, int64_t total_steps, bool quiet,
                            const mc_progress_options *opt);
/* Report that `step` (1-based, counted across epochs, <= total_steps) has
 * finished with this loss; items_done counts the items (images, pairs)
 * processed since mc_progress_begin, for the throughput. A resumed run may
 * start at any step: the ETA uses the steps done since the first update. */
void mc_progress_update(mc_progress *p, int epoch, int64_t step, double loss, int64_t items_done);
/* Finish the line (newline on a terminal) and print `summary` (may be NULL). */
void mc_progress_end(mc_progress *p, const char *summary);
/* The status text for the current state, e.g. for a log line. */
void mc_progress_format(const mc_progress *p, int epoch, int64_t step, double loss,
                        int64_t items_done, double now, char *buf, size_t len);

/* ---- run folder ---------------------------------------------------------
 *   DIR/config.json        every flag and default, plus mmchain_version,
 *                          created (UTC date), threads, blas
 *   DIR/metrics.csv        "kind" + the union of all columns ever written;
 *                          a row leaves the others' cells empty
 *   DIR/log.txt            timestamped lines of mc_run_log
 *   DIR/checkpoints/       created for the caller (last/best.safetensors)
 *   DIR/report.html        mc_run_write_report */

typedef struct mc_run mc_run;

/* What mc_run_open does with the folder. */
typedef enum mc_run_mode {
    /* A fresh run. A folder that holds a run already (a config.json or a
     * checkpoint) is refused, MC_ERR_IO naming what it holds, before
     * anything in it is touched: its checkpoints would otherwise outlive
     * the new run's config.json, and a later resume would load them. */
    MC_RUN_NEW,
    /* Continue the run in the folder: it must exist with a config.json;
     * metrics and log are appended to, and temporary files left by a write
     * that was killed are removed. A folder that is not a run is refused
     * before anything is created in it. */
    MC_RUN_RESUME,
    /* A fresh run in place of the one the folder may hold: its
     * config.json and the .safetensors files in its checkpoints/ are
     * deleted (once the folder is locked), metrics.csv and log.txt
     * replaced. What else is there (a cache/ of targets, a report, files
     * of the caller's own: mc_run_remove) stays until the new run
     * rewrites it. */
    MC_RUN_OVERWRITE,
} mc_run_mode;

/* Create `dir` (and its parents) and dir/checkpoints, as `mode` says. The
 * folder is locked (an flock on dir/.lock, held until mc_run_close or the
 * process's end): a second open, by this process or another, is an
 * MC_ERR_IO saying the folder is in use. An unwritable folder is MC_ERR_IO
 * naming it. */
mc_status mc_run_open(mc_run **out, const char *dir, mc_run_mode mode);
/* Delete `relative` (a file of the previous run's, e.g. a model a command
 * writes beside the checkpoints) from the run folder; a missing file is no
 * error. For a run opened with MC_RUN_OVERWRITE. */
mc_status mc_run_remove(mc_run *run, const char *relative);
/* The refusal of MC_RUN_NEW on its own (MC_OK: `dir` holds no run),
 * touching nothing: for a command that loads much before it opens its
 * run folder, to stop before the loading. */
mc_status mc_run_check_new(const char *dir);
/* An existing run folder opened to read its config.json only: no lock, and
 * nothing in the folder is created, changed or removed. The other ranks of a
 * distributed run read their options this way while rank 0 holds the lock. */
mc_status mc_run_open_readonly(mc_run **out, const char *dir);
void mc_run_close(mc_run *run);
/* quiet: mc_run_log writes only to log.txt, not to stdout. */
void mc_run_set_quiet(mc_run *run, bool quiet);
const char *mc_run_dir(const mc_run *run);
bool mc_run_resumed(const mc_run *run);

/* Write DIR/config.json atomically: the caller's n key/value pairs (every
 * flag with its value or default, the seed, ...) and ours. Values that look
 * like numbers / true / false are written as JSON numbers / booleans. */
mc_status mc_run_write_config(mc_run *run, int n, const mc_metadata_entry *kv);
/* Read back a value of DIR/config.json into buf (MC_ERR_ARG when absent):
 * resume uses it to check the same flags. */
mc_status mc_run_config_get(const mc_run *run, const char *key, char *buf, size_t len);

/* Append one row of `kind` ("step", "epoch", "eval", ...) to metrics.csv.
 * New column names extend the header (the file is rewritten atomically
 * once); NaN is written as "nan". */
mc_status mc_run_metrics_row(mc_run *run, const char *kind, const char *const *columns,
                             const double *values, int n);
/* On resume: drop the rows whose `column` is greater than `limit` (rows
 * logged after the checkpoint the run resumes from), so that metrics.csv
 * matches an uninterrupted run. Rows without that column are kept. */
mc_status mc_run_metrics_drop_after(mc_run *run, const char *column, double limit);

/* Append a line to log.txt (with a timestamp) and print it to stdout unless
 * quiet. A trailing newline in fmt is optional. */
mc_status mc_run_log(mc_run *run, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* buf = DIR/relative (MC_ERR_ARG when it does not fit). */
mc_status mc_run_path(const mc_run *run, const char *relative, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
