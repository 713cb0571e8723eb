/* A training progress line: in place on a terminal, plain lines in a log.
 *
 *     train  epoch 2  step 130/400  loss 1.2345  812.3 items/s  ETA 0:41
 *
 * On a terminal the line is redrawn with '\r' (at most 10 times a second,
 * so a fast loop does not spend its time printing); a shorter line is
 * padded with spaces to erase the end of the previous one. Elsewhere (a
 * pipe, a file) a line is printed every `every_steps` steps or
 * `every_seconds` seconds, and for the last step, so logs stay readable. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "mmchain_app/run.h"

enum { DEFAULT_EVERY_STEPS = 50 };
static const double DEFAULT_EVERY_SECONDS = 10.0;
static const double TERMINAL_REDRAW_SECONDS = 0.1;

static double monotonic_seconds(void *ctx) {
    (void)ctx;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void mc_progress_begin_with(mc_progress *p, const char *label, int64_t total_steps, bool quiet,
                            const mc_progress_options *opt) {
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    p->out = opt && opt->out ? opt->out : stderr;
    mc_progress_mode mode = opt ? opt->mode : MC_PROGRESS_AUTO;
    p->terminal = mode == MC_PROGRESS_AUTO ? isatty(fileno(p->out)) == 1 : mode == MC_PROGRESS_TERMINAL;
    p->quiet = quiet;
    p->clock = opt && opt->clock ? opt->clock : monotonic_seconds;
    p->clock_ctx = opt ? opt->clock_ctx : NULL;
    p->total_steps = total_steps;
    p->every_steps = opt && opt->every_steps > 0 ? opt->every_steps : DEFAULT_EVERY_STEPS;
    p->every_seconds = opt && opt->every_seconds > 0 ? opt->every_seconds : DEFAULT_EVERY_SECONDS;
    p->start_time = p->clock(p->clock_ctx);
    p->last_print_time = p->start_time;
}

void mc_progress_begin(mc_progress *p, const char *label, int64_t total_steps, bool quiet) {
    mc_progress_begin_with(p, label, total_steps, quiet, NULL);
}

static const double MIN_RATE_SECONDS = 0.5;

/* "0:41", "12:05", "1:02:03". */
static void format_duration(double seconds, char *buf, size_t len) {
    long s = (long)(seconds + 0.5);
    if (s >= 3600)
        snprintf(buf, len, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
    else
        snprintf(buf, len, "%ld:%02ld", s / 60, s % 60);
}

void mc_progress_format(const mc_progress *p, int epoch, int64_t step, double loss,
                        int64_t items_done, double now, char *buf, size_t len) {
    double elapsed = now - p->start_time;
    int64_t steps_done = step - p->base_step;
    char rate[32] = "", eta[32] = "ETA --";
    /* A rate over a few milliseconds is noise (or millions of items/s). */
    if (elapsed >= MIN_RATE_SECONDS && items_done > 0)
        snprintf(rate, sizeof rate, "  %.1f items/s", (double)items_done / elapsed);
    if (elapsed > 0 && steps_done > 0 && p->total_steps >= step) {
        char left[24];
        format_duration(elapsed / (double)steps_done * (double)(p->total_steps - step), left, sizeof left);
        snprintf(eta, sizeof eta, "ETA %s", left);
    }
    char total[32] = "";
    if (p->total_steps > 0) snprintf(total, sizeof total, "/%lld", (long long)p->total_steps);
    snprintf(buf, len, "%s%sepoch %d  step %lld%s  loss %.4f%s  %s", p->label, p->label[0] ? "  " : "",
             epoch, (long long)step, total, loss, rate, eta);
}

static bool should_print(const mc_progress *p, int64_t step, double now) {
    bool last = p->total_steps > 0 && step >= p->total_steps;
    if (p->terminal) return last || !p->started || now - p->last_print_time >= TERMINAL_REDRAW_SECONDS;
    return last || !p->started || step - p->last_print_step >= p->every_steps ||
           now - p->last_print_time >= p->every_seconds;
}

void mc_progress_update(mc_progress *p, int epoch, int64_t step, double loss, int64_t items_done) {
    if (!p->started) p->base_step = step - 1;
    if (p->quiet) {
        p->started = true;
        return;
    }
    double now = p->clock(p->clock_ctx);
    if (!should_print(p, step, now)) return;
    p->started = true;
    char line[256];
    mc_progress_format(p, epoch, step, loss, items_done, now, line, sizeof line);
    int len = (int)strlen(line);
    if (p->terminal) {
        /* Pad with spaces over the rest of a longer previous line. */
        int pad = p->line_len > len ? p->line_len - len : 0;
        fprintf(p->out, "\r%s%*s", line, pad, "");
        p->line_open = true;
    } else {
        fprintf(p->out, "%s\n", line);
    }
    fflush(p->out);
    p->line_len = len;
    p->last_print_time = now;
    p->last_print_step = step;
}

void mc_progress_end(mc_progress *p, const char *summary) {
    if (p->quiet) return;
    if (p->line_open) fputc('\n', p->out);
    p->line_open = false;
    p->line_len = 0;
    if (summary && *summary) fprintf(p->out, "%s\n", summary);
    fflush(p->out);
}
