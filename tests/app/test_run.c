/* The running-a-program plumbing: atomic files, the progress line, the run
 * folder (config.json, metrics.csv, log.txt). Expected outputs are written
 * out by hand from the documented formats. */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mmchain_app/report.h"
#include "mmchain_app/run.h"
#include "limited.h"
#include "testutil.h"

/* ---- helpers ---- */

/* How many entries of `dir` contain `part` in their name. */
static int count_entries(const char *dir, const char *part) {
    DIR *d = opendir(dir);
    ck_assert(d != NULL);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;) n += strstr(e->d_name, part) != NULL;
    closedir(d);
    return n;
}

/* A fresh, quiet run in `dir` with an empty config.json written. */
static mc_run *new_quiet_run(const char *dir) {
    mc_run *run;
    MC_CHECK_OK(mc_run_open(&run, dir, MC_RUN_NEW));
    mc_run_set_quiet(run, true);
    MC_CHECK_OK(mc_run_write_config(run, 0, NULL));
    return run;
}

/* ---- atomic files ---- */

static mc_status write_then_fail(void *ctx, FILE *f) {
    (void)ctx;
    fputs("half a new fi", f);
    return mc_error(MC_ERR_IO, "simulated failure in the middle of the write");
}

static mc_status write_hello(void *ctx, const char *tmp_path) {
    (void)ctx;
    mc_test_write_text(tmp_path, "hello via path");
    return MC_OK;
}

static mc_status fail_via_path(void *ctx, const char *tmp_path) {
    (void)ctx;
    mc_test_write_text(tmp_path, "partial");
    return mc_error(MC_ERR_FORMAT, "simulated encoder failure");
}

START_TEST(atomic_write_replaces_and_failure_keeps_old) {
    char path[512];
    mc_test_dir_path("state.bin", path, sizeof path);
    MC_CHECK_OK(mc_write_file_atomic(path, "old contents", 12));
    mc_test_assert_file_text(path, "old contents");
    /* A writer that fails half way: the old file survives, no temp remains. */
    MC_CHECK_FAILS(mc_write_file_atomic_with(path, write_then_fail, NULL), MC_ERR_IO, "simulated failure");
    mc_test_assert_file_text(path, "old contents");
    ck_assert_int_eq(count_entries(mc_test_dir, ".tmp."), 0);
    MC_CHECK_FAILS(mc_write_file_atomic_via(path, fail_via_path, NULL), MC_ERR_FORMAT, "simulated encoder");
    mc_test_assert_file_text(path, "old contents");
    ck_assert_int_eq(count_entries(mc_test_dir, ".tmp."), 0);
    /* Success replaces the contents, both ways; only the file is left. */
    MC_CHECK_OK(mc_write_file_atomic(path, "new", 3));
    mc_test_assert_file_text(path, "new");
    MC_CHECK_OK(mc_write_file_atomic_via(path, write_hello, NULL));
    mc_test_assert_file_text(path, "hello via path");
    MC_CHECK_OK(mc_write_file_atomic(path, "", 0));
    mc_test_assert_file_text(path, "");
    ck_assert_int_eq(count_entries(mc_test_dir, "state"), 1);
}
END_TEST

START_TEST(atomic_write_into_missing_folder_names_it) {
    char path[512];
    mc_test_dir_path("no/such/folder/x.bin", path, sizeof path);
    MC_CHECK_FAILS(mc_write_file_atomic(path, "x", 1), MC_ERR_IO, "no/such/folder/x.bin");
    MC_CHECK_FAILS(mc_write_file_atomic(NULL, "x", 1), MC_ERR_ARG, "path");
}
END_TEST

START_TEST(safetensors_writer_uses_the_atomic_path) {
    /* A checkpoint into a missing folder fails cleanly; an existing one is replaced whole. */
    char path[512];
    mc_tensor *t;
    MC_CHECK_OK(mc_tensor_new(&t, MC_SHAPE(2), "w"));
    t->data[0] = 1.5f;
    t->data[1] = -2.0f;
    mc_test_dir_path("w.safetensors", path, sizeof path);
    mc_test_write_text(path, "garbage that is not a safetensors file");
    MC_CHECK_OK(mc_safetensors_write(path, 1, &t, 0, NULL));
    ck_assert_int_eq(count_entries(mc_test_dir, ".tmp."), 0);
    mc_safetensors *f;
    MC_CHECK_OK(mc_safetensors_open(path, &f));
    mc_tensor *back;
    MC_CHECK_OK(mc_safetensors_read(f, "w", &back));
    ck_assert_float_eq(back->data[1], -2.0f);
    mc_tensor_free(back);
    mc_safetensors_close(f);
    mc_test_dir_path("missing/w.safetensors", path, sizeof path);
    MC_CHECK_FAILS(mc_safetensors_write(path, 1, &t, 0, NULL), MC_ERR_IO, "missing/w.safetensors");
    mc_tensor_free(t);
}
END_TEST

/* ---- progress ---- */

static double fake_clock(void *ctx) { return *(double *)ctx; }

/* Output into a memstream with a fake clock. */
typedef struct capture {
    char *text;
    size_t len;
    FILE *out;
    double now;
    mc_progress_options options;
} capture;

static void capture_begin(capture *c, mc_progress_mode mode) {
    memset(c, 0, sizeof *c);
    c->out = open_memstream(&c->text, &c->len);
    ck_assert(c->out != NULL);
    c->options = (mc_progress_options){c->out, mode, fake_clock, &c->now, 2, 100.0};
}

/* Start capturing, in `mode`, what the progress display `p` prints. */
static void capture_progress(capture *c, mc_progress_mode mode, mc_progress *p, const char *label,
                             int64_t total_steps, bool quiet) {
    capture_begin(c, mode);
    mc_progress_begin_with(p, label, total_steps, quiet, &c->options);
}

/* Stop capturing and free what was captured, which must be `expected`
 * (NULL: anything). */
static void capture_end(capture *c, const char *expected) {
    fclose(c->out);
    if (expected) ck_assert_str_eq(c->text, expected);
    free(c->text);
}

START_TEST(progress_on_a_terminal_rewrites_one_line) {
    capture c;
    mc_progress p;
    capture_progress(&c, MC_PROGRESS_TERMINAL, &p, "train", 4, false);
    /* t = 1 s, step 1 of 4, 10 items: 10 items/s; 3 steps left at 1 s each -> ETA 0:03. */
    c.now = 1.0;
    mc_progress_update(&p, 1, 1, 12.5, 10);
    /* 0.05 s later: under the 0.1 s redraw interval, not drawn. */
    c.now = 1.05;
    mc_progress_update(&p, 1, 2, 9.0, 20);
    /* t = 2 s, step 3: 30 items / 2 s = 15 items/s; 2/3 s a step -> 0.67 s -> ETA 0:01.
     * "loss 1.2500" is one character shorter than "loss 12.5000": one space pads it. */
    c.now = 2.0;
    mc_progress_update(&p, 1, 3, 1.25, 30);
    mc_progress_end(&p, "done: 3 steps");
    capture_end(&c, "\rtrain  epoch 1  step 1/4  loss 12.5000  10.0 items/s  ETA 0:03"
                    "\rtrain  epoch 1  step 3/4  loss 1.2500  15.0 items/s  ETA 0:01 "
                    "\ndone: 3 steps\n");
}
END_TEST

START_TEST(progress_in_a_log_prints_plain_lines_every_n_steps) {
    capture c;
    mc_progress p;
    capture_progress(&c, MC_PROGRESS_PLAIN, &p, "", 5, false); /* every 2 steps or 100 s */
    for (int step = 1; step <= 5; step++) {
        c.now = step; /* one step a second, 4 items a step */
        mc_progress_update(&p, 2, step, 1.0 / step, 4 * step);
    }
    mc_progress_end(&p, NULL);
    /* Printed: the first step, then when 2 steps have passed (3, 5); 5 is also the last. */
    capture_end(&c, "epoch 2  step 1/5  loss 1.0000  4.0 items/s  ETA 0:04\n"
                    "epoch 2  step 3/5  loss 0.3333  4.0 items/s  ETA 0:02\n"
                    "epoch 2  step 5/5  loss 0.2000  4.0 items/s  ETA 0:00\n");
}
END_TEST

START_TEST(progress_after_resume_and_when_quiet) {
    capture c;
    mc_progress p;
    capture_progress(&c, MC_PROGRESS_PLAIN, &p, "resumed", 200, false);
    /* Resumed at step 101: 1 step in 2 s -> 99 steps left -> 198 s = 3:18.
     * Then 2 steps in 200 s -> 100 s a step x 98 left = 9800 s = 2:43:20 (h:mm:ss over an hour). */
    c.now = 2.0;
    mc_progress_update(&p, 3, 101, 0.5, 0);
    c.now = 200.0; /* 100 s past the last line: printed although < 2 steps */
    mc_progress_update(&p, 3, 102, 0.25, 0);
    mc_progress_end(&p, "bye");
    capture_end(&c, "resumed  epoch 3  step 101/200  loss 0.5000  ETA 3:18\n"
                    "resumed  epoch 3  step 102/200  loss 0.2500  ETA 2:43:20\n"
                    "bye\n");

    capture_progress(&c, MC_PROGRESS_TERMINAL, &p, "quiet", 3, true);
    c.now = 1;
    mc_progress_update(&p, 1, 1, 1.0, 1);
    mc_progress_end(&p, "not shown");
    capture_end(&c, "");

    /* Zeroed options mean the defaults: a memory stream is no terminal. */
    capture_begin(&c, MC_PROGRESS_AUTO);
    mc_progress_begin_with(&p, "auto", 3, false, &(mc_progress_options){.out = c.out});
    ck_assert(!p.terminal);
    ck_assert_int_eq(p.every_steps, 50);
    capture_end(&c, NULL);
}
END_TEST

/* ---- the run folder ---- */

START_TEST(run_folder_created_with_parents) {
    char run_dir[512], path[1024];
    mc_test_dir_path("runs/a/b/", run_dir, sizeof run_dir);
    mc_run *run;
    MC_CHECK_OK(mc_run_open(&run, run_dir, MC_RUN_NEW));
    ck_assert(!mc_run_resumed(run));
    MC_CHECK_OK(mc_run_path(run, "checkpoints/last.safetensors", path, sizeof path));
    char expected[1024];
    mc_test_dir_path("runs/a/b/checkpoints/last.safetensors", expected, sizeof expected);
    ck_assert_str_eq(path, expected);
    mc_test_dir_path("runs/a/b/checkpoints", path, sizeof path);
    struct stat info;
    ck_assert(stat(path, &info) == 0 && S_ISDIR(info.st_mode));
    char tiny[8];
    MC_CHECK_FAILS(mc_run_path(run, "checkpoints/last.safetensors", tiny, sizeof tiny), MC_ERR_ARG, "does not fit");
    mc_run_close(run);
}
END_TEST

START_TEST(run_folder_unwritable_or_missing_is_a_clear_error) {
    char path[512];
    /* A plain file where a folder should be: fails even for root. */
    mc_test_dir_path("blocker", path, sizeof path);
    mc_test_write_text(path, "x");
    mc_test_dir_path("blocker/run", path, sizeof path);
    mc_run *run = (mc_run *)1;
    MC_CHECK_FAILS(mc_run_open(&run, path, MC_RUN_NEW), MC_ERR_IO, "blocker");
    ck_assert_ptr_null(run);
    mc_test_dir_path("never-ran", path, sizeof path);
    MC_CHECK_FAILS(mc_run_open(&run, path, MC_RUN_RESUME), MC_ERR_IO, "never-ran");
    /* A folder that exists but holds no config.json is not a run to resume. */
    mc_test_dir_path("empty", path, sizeof path);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    MC_CHECK_FAILS(mc_run_open(&run, path, MC_RUN_RESUME), MC_ERR_IO, "config.json");
    MC_CHECK_FAILS(mc_run_open(&run, "", MC_RUN_NEW), MC_ERR_ARG, "no path");
}
END_TEST

START_TEST(run_config_json) {
    char path[512], value[128];
    mc_run *run;
    MC_CHECK_OK(mc_run_open(&run, mc_test_dir, MC_RUN_NEW));
    const mc_metadata_entry config[] = {
        {"lr", "1e-4"}, {"epochs", "10"}, {"symmetric", "false"}, {"bands", "B08,B11,B12"},
        {"name", "a \"quoted\"\\name"}, {"version_like", "1.0.0"}, {"leading_zero", "007"},
    };
    MC_CHECK_OK(mc_run_write_config(run, 7, config));
    mc_test_dir_path("config.json", path, sizeof path);
    char *text = mc_test_read_file(path, NULL);
    char version[64];
    snprintf(version, sizeof version, "\"mmchain_version\": \"%s\"", mc_version());
    mc_test_assert_contains("config.json", text, (const char *const[]){
        /* Numbers and booleans stay bare; anything else is a JSON string, escaped. */
        "\"lr\": 1e-4,", "\"epochs\": 10,", "\"symmetric\": false,", "\"bands\": \"B08,B11,B12\",",
        "\"name\": \"a \\\"quoted\\\"\\\\name\",", "\"version_like\": \"1.0.0\",",
        "\"leading_zero\": \"007\",",
        /* What made the run. */
        version, "\"threads\": ", "\"blas\": ", "\"created\": \"20", NULL});
    /* Read back through the JSON parser. */
    MC_CHECK_OK(mc_run_config_get(run, "name", value, sizeof value));
    ck_assert_str_eq(value, "a \"quoted\"\\name");
    MC_CHECK_OK(mc_run_config_get(run, "epochs", value, sizeof value));
    ck_assert_str_eq(value, "10");
    MC_CHECK_OK(mc_run_config_get(run, "symmetric", value, sizeof value));
    ck_assert_str_eq(value, "false");
    MC_CHECK_FAILS(mc_run_config_get(run, "nope", value, sizeof value), MC_ERR_ARG, "nope");
    mc_run_close(run);
    free(text);
}
END_TEST

START_TEST(run_metrics_rows_resume_and_drop) {
    char path[512];
    mc_test_dir_path("metrics.csv", path, sizeof path);
    mc_run *run = new_quiet_run(mc_test_dir);
    const char *step_cols[] = {"epoch", "step", "loss"};
    MC_CHECK_OK(mc_run_metrics_row(run, "step", step_cols, (double[]){1, 1, 2.5}, 3));
    MC_CHECK_OK(mc_run_metrics_row(run, "step", step_cols, (double[]){1, 2, 2.25}, 3));
    /* An epoch row brings a new column: the header grows, earlier rows get an empty cell. */
    const char *epoch_cols[] = {"epoch", "step", "val_acc", "loss"};
    MC_CHECK_OK(mc_run_metrics_row(run, "epoch", epoch_cols, (double[]){1, 2, 0.5, 2.3}, 4));
    mc_test_assert_file_text(path, "kind,epoch,step,loss,val_acc\n"
                                     "step,1,1,2.5,\n"
                                     "step,1,2,2.25,\n"
                                     "epoch,1,2,2.3,0.5\n");
    MC_CHECK_FAILS(mc_run_metrics_row(run, "a,b", step_cols, (double[]){1, 2, 3}, 3), MC_ERR_ARG, "a,b");
    const char *bad_cols[] = {"kind"};
    MC_CHECK_FAILS(mc_run_metrics_row(run, "step", bad_cols, (double[]){1}, 1), MC_ERR_ARG, "kind");
    mc_run_close(run);

    /* A kill during a checkpoint write left a temporary file: resume removes it. */
    char stale[512];
    mc_test_dir_path("checkpoints/last.safetensors.tmp.Ab3xYz", stale, sizeof stale);
    mc_test_write_text(stale, "half a checkpoint");
    /* Resume: rows are appended under the same header; NaN is "nan". */
    MC_CHECK_OK(mc_run_open(&run, mc_test_dir, MC_RUN_RESUME));
    ck_assert(!mc_test_file_exists(stale));
    mc_run_set_quiet(run, true);
    ck_assert(mc_run_resumed(run));
    MC_CHECK_OK(mc_run_metrics_row(run, "step", step_cols, (double[]){2, 3, NAN}, 3));
    MC_CHECK_OK(mc_run_metrics_row(run, "step", step_cols, (double[]){2, 4, 1.0 / 3.0}, 3));
    mc_test_assert_file_text(path, "kind,epoch,step,loss,val_acc\n"
                                     "step,1,1,2.5,\n"
                                     "step,1,2,2.25,\n"
                                     "epoch,1,2,2.3,0.5\n"
                                     "step,2,3,nan,\n"
                                     "step,2,4,0.333333333,\n");
    /* Resuming from the checkpoint of step 2 drops what was logged after it. */
    MC_CHECK_OK(mc_run_metrics_drop_after(run, "step", 2));
    mc_test_assert_file_text(path, "kind,epoch,step,loss,val_acc\n"
                                     "step,1,1,2.5,\n"
                                     "step,1,2,2.25,\n"
                                     "epoch,1,2,2.3,0.5\n");
    const char *lr_col[] = {"lr"};
    MC_CHECK_OK(mc_run_metrics_row(run, "step", lr_col, (double[]){1e-4}, 1));
    mc_test_assert_file_text(path, "kind,epoch,step,loss,val_acc,lr\n"
                                     "step,1,1,2.5,,\n"
                                     "step,1,2,2.25,,\n"
                                     "epoch,1,2,2.3,0.5,\n"
                                     "step,,,,,0.0001\n");
    mc_run_close(run);

    /* A fresh run in its place starts an empty metrics.csv. */
    MC_CHECK_OK(mc_run_open(&run, mc_test_dir, MC_RUN_OVERWRITE));
    mc_test_assert_file_text(path, "");
    mc_run_close(run);
}
END_TEST

START_TEST(run_log_appends_lines) {
    char path[512];
    mc_test_dir_path("log.txt", path, sizeof path);
    mc_run *run = new_quiet_run(mc_test_dir);
    MC_CHECK_OK(mc_run_log(run, "epoch %d: loss %.2f\n", 1, 0.25));
    mc_run_close(run);
    MC_CHECK_OK(mc_run_open(&run, mc_test_dir, MC_RUN_RESUME));
    mc_run_set_quiet(run, true);
    MC_CHECK_OK(mc_run_log(run, "resumed"));
    mc_run_close(run);
    /* "[YYYY-MM-DD HH:MM:SS] message": 22 characters of stamp, then the text. */
    char *text = mc_test_read_file(path, NULL);
    ck_assert_int_eq(text[0], '[');
    ck_assert(strncmp(text + 22, "epoch 1: loss 0.25\n", 19) == 0);
    ck_assert_ptr_nonnull(strstr(text, "] epoch 1: loss 0.25\n["));
    ck_assert_ptr_nonnull(strstr(text, "] resumed\n"));
    ck_assert_int_eq((int)(strchr(text, ']') - text), 20);
    free(text);
}
END_TEST

/* Resuming a folder that is not a run creates nothing in it. */
START_TEST(run_resume_of_a_non_run_creates_nothing) {
    mc_test_write_text(mc_test_dir_path("notes.txt", (char[512]){0}, 512), "my own files");
    mc_run *run = (mc_run *)1;
    MC_CHECK_FAILS(mc_run_open(&run, mc_test_dir, MC_RUN_RESUME), MC_ERR_IO, "config.json");
    ck_assert_ptr_null(run);
    ck_assert_int_eq(count_entries(mc_test_dir, ""), 3); /* ".", "..", notes.txt */
}
END_TEST

/* A new run in a folder that holds one is refused, naming what the folder
 * holds and the way out, before anything there changes: the old run's
 * checkpoints would outlive the new config.json, and a later --resume
 * would load them under it. MC_RUN_OVERWRITE deletes them, and only them. */
START_TEST(run_new_refuses_a_folder_holding_a_run) {
    char checkpoint[512], metrics[512], cached[512], log[512];
    mc_test_dir_path("checkpoints/last.safetensors", checkpoint, sizeof checkpoint);
    mc_test_dir_path("metrics.csv", metrics, sizeof metrics);
    mc_test_dir_path("cache", cached, sizeof cached);
    mc_test_dir_path("log.txt", log, sizeof log);
    mc_run *run = new_quiet_run(mc_test_dir);
    const char *cols[] = {"loss"};
    MC_CHECK_OK(mc_run_metrics_row(run, "step", cols, (double[]){2.5}, 1));
    mc_run_close(run);
    mc_test_write_text(checkpoint, "the old run's weights");
    ck_assert_int_eq(mkdir(cached, 0755), 0);
    mc_test_dir_path("cache/targets.bin", cached, sizeof cached);
    mc_test_write_text(cached, "targets");

    run = (mc_run *)1;
    MC_CHECK_FAILS(mc_run_open(&run, mc_test_dir, MC_RUN_NEW), MC_ERR_IO,
                   "holds a run already (config.json, 1 checkpoint in checkpoints/)");
    ck_assert_ptr_null(run);
    const char *const why[] = {"beside its own config.json", NULL};
    mc_test_assert_contains("the refusal", mc_last_error(), why);
    MC_CHECK_FAILS(mc_run_check_new(mc_test_dir), MC_ERR_IO, "holds a run already");
    mc_test_assert_file_text(checkpoint, "the old run's weights");
    mc_test_assert_file_text(metrics, "kind,loss\nstep,2.5\n");

    /* A checkpoint alone (config.json gone) is a run too. */
    char config[512];
    unlink(mc_test_dir_path("config.json", config, sizeof config));
    MC_CHECK_FAILS(mc_run_open(&run, mc_test_dir, MC_RUN_NEW), MC_ERR_IO,
                   "holds a run already (1 checkpoint in checkpoints/)");

    /* The overwrite deletes the old config.json and checkpoints, and what
     * the caller names (mc_run_remove), not the rest. */
    mc_test_write_text(config, "{\"command\": \"train\"}\n");
    char model[512];
    mc_test_dir_path("model.safetensors", model, sizeof model);
    mc_test_write_text(model, "the old run's model");
    MC_CHECK_OK(mc_run_open(&run, mc_test_dir, MC_RUN_OVERWRITE));
    ck_assert(!mc_test_file_exists(config));
    MC_CHECK_OK(mc_run_remove(run, "model.safetensors"));
    MC_CHECK_OK(mc_run_remove(run, "never-written.txt"));
    mc_run_close(run);
    ck_assert(!mc_test_file_exists(model));
    ck_assert(!mc_test_file_exists(checkpoint));
    mc_test_assert_file_text(metrics, "");
    mc_test_assert_file_text(cached, "targets"); /* not the run's to delete */
    char *text = mc_test_read_file(log, NULL);
    ck_assert_ptr_nonnull(strstr(text, "its 1 checkpoint was deleted"));
    free(text);
    /* Nothing left that makes it a run: a new one may start there. */
    MC_CHECK_OK(mc_run_check_new(mc_test_dir));
    MC_CHECK_OK(mc_run_open(&run, mc_test_dir, MC_RUN_NEW));
    mc_run_close(run);
}
END_TEST

/* A model's folder is a run's too: pretrain-clip writes model.safetensors,
 * merges.txt and vocab.json into --out, and a downloaded CLIP's folder
 * holds just those. A new run there would replace them: refused, and
 * nothing is touched. */
START_TEST(run_new_refuses_a_folder_holding_a_model) {
    char model[512], merges[512], vocab[512];
    mc_test_write_text(mc_test_dir_path("model.safetensors", model, sizeof model), "weights");
    mc_test_write_text(mc_test_dir_path("merges.txt", merges, sizeof merges), "merges");
    mc_test_write_text(mc_test_dir_path("vocab.json", vocab, sizeof vocab), "{}");
    mc_run *run = (mc_run *)1;
    MC_CHECK_FAILS(mc_run_open(&run, mc_test_dir, MC_RUN_NEW), MC_ERR_IO,
                   "holds a run already (model.safetensors, merges.txt, vocab.json)");
    ck_assert_ptr_null(run);
    mc_test_assert_file_text(model, "weights");
    mc_test_assert_file_text(vocab, "{}");
}
END_TEST

/* One process at a time: a second open of an open run folder is refused
 * with a clear message; closing the first frees it. (flock locks belong to
 * the open file, so a second open in the same process is refused as one in
 * another process would be.) */
START_TEST(run_folder_is_locked_while_open) {
    mc_run *first, *second = (mc_run *)1;
    MC_CHECK_OK(mc_run_open(&first, mc_test_dir, MC_RUN_NEW));
    MC_CHECK_OK(mc_run_write_config(first, 0, NULL));
    char checkpoint[512];
    mc_test_dir_path("checkpoints/last.safetensors", checkpoint, sizeof checkpoint);
    mc_test_write_text(checkpoint, "the first run's");
    /* An overwrite waits for the lock before it deletes anything. */
    MC_CHECK_FAILS(mc_run_open(&second, mc_test_dir, MC_RUN_OVERWRITE), MC_ERR_IO,
                   "in use by another mmchain process");
    ck_assert_ptr_null(second);
    mc_test_assert_file_text(checkpoint, "the first run's");
    MC_CHECK_FAILS(mc_run_open(&second, mc_test_dir, MC_RUN_RESUME), MC_ERR_IO, "in use by another mmchain process");
    /* Reading the options of a locked run (the other ranks of a distributed
     * run do) takes no lock, and a folder that is not a run is refused. */
    MC_CHECK_OK(mc_run_open_readonly(&second, mc_test_dir));
    char value[64];
    ck_assert_int_eq(mc_run_config_get(second, "no-such-key", value, sizeof value) == MC_OK, 0);
    mc_run_close(second);
    char not_a_run[300];
    mc_test_dir_path("checkpoints", not_a_run, sizeof not_a_run);
    second = (mc_run *)1;
    ck_assert_int_ne(mc_run_open_readonly(&second, not_a_run), MC_OK);
    ck_assert_ptr_null(second);
    mc_run_close(first);
    MC_CHECK_OK(mc_run_open(&second, mc_test_dir, MC_RUN_RESUME));
    mc_run_close(second);
}
END_TEST

typedef struct larger_files {
    mc_run *run;
    const char *report, *sheet;
} larger_files;

/* Each write must fail (the file size limit): MC_OK when all four did. */
static mc_status write_larger_files(void *ctx) {
    const larger_files *w = ctx;
    static char long_value[2048];
    memset(long_value, 'v', sizeof long_value - 1);
    const mc_metadata_entry big[] = {{"note", long_value}};
    if (mc_run_write_config(w->run, 1, big) == MC_OK) return mc_error(MC_ERR_STATE, "config.json was written");
    const char *cols[] = {"step", "loss"};
    if (mc_run_metrics_row(w->run, "step", cols, (double[]){123456789, 0.123456789}, 2) == MC_OK)
        return mc_error(MC_ERR_STATE, "the metrics row was appended");
    if (mc_report_write(w->report, &(mc_report){.title = long_value}) == MC_OK)
        return mc_error(MC_ERR_STATE, "report.html was written");
    mc_tensor *tiles = NULL;
    MC_TRY(mc_tensor_new(&tiles, MC_SHAPE(4, 3, 64, 64), NULL));
    uint64_t state = 3;
    for (int64_t i = 0; i < tiles->numel; i++) tiles->data[i] = (float)(mc_test_fuzz_next(&state) % 256) / 255.0f;
    mc_status sheet = mc_contact_sheet_write(w->sheet, tiles, NULL, 2, 1);
    mc_tensor_free(tiles);
    return sheet == MC_OK ? mc_error(MC_ERR_STATE, "the contact sheet was written") : MC_OK;
}

/* Every file of a run folder survives a failed write (a full disk, here
 * writes past 600 bytes failing with EFBIG): config.json and report.html
 * are replaced atomically, a metrics.csv row is appended whole or not at
 * all, and the contact sheet PNG stays the old one. */
START_TEST(run_files_survive_a_failed_write) {
    char config[512], metrics[512], report[512], sheet[512];
    mc_test_dir_path("config.json", config, sizeof config);
    mc_test_dir_path("metrics.csv", metrics, sizeof metrics);
    mc_test_dir_path("report.html", report, sizeof report);
    mc_test_dir_path("sheet.png", sheet, sizeof sheet);
    mc_run *run;
    MC_CHECK_OK(mc_run_open(&run, mc_test_dir, MC_RUN_NEW));
    mc_run_set_quiet(run, true);
    MC_CHECK_OK(mc_run_write_config(run, 0, NULL));
    const char *cols[] = {"step", "loss"};
    MC_CHECK_OK(mc_run_metrics_row(run, "step", cols, (double[]){1, 0.5}, 2));
    MC_CHECK_OK(mc_report_write(report, &(mc_report){.title = "small"}));
    mc_tensor *tiles = NULL;
    MC_CHECK_OK(mc_tensor_new(&tiles, MC_SHAPE(2, 3, 8, 8), NULL));
    MC_CHECK_OK(mc_contact_sheet_write(sheet, tiles, NULL, 2, 1));
    size_t n_config, n_metrics, n_report, n_sheet;
    char *old_config = mc_test_read_file(config, &n_config);
    char *old_metrics = mc_test_read_file(metrics, &n_metrics);
    char *old_report = mc_test_read_file(report, &n_report);
    char *old_sheet = mc_test_read_file(sheet, &n_sheet);

    char message[1024];
    larger_files writes = {run, report, sheet};
    mc_status status = mc_test_with_file_size_limit(n_metrics + 10, write_larger_files, &writes, message, sizeof message);
    ck_assert_msg(status == MC_OK, "%s", message);
    mc_test_assert_survived(config, old_config, n_config, mc_test_dir);
    mc_test_assert_survived(metrics, old_metrics, n_metrics, mc_test_dir);
    mc_test_assert_survived(report, old_report, n_report, mc_test_dir);
    mc_test_assert_survived(sheet, old_sheet, n_sheet, mc_test_dir);
    free(old_config), free(old_metrics), free(old_report), free(old_sheet);
    mc_tensor_free(tiles);
    mc_run_close(run);
}
END_TEST

/* An atomically written file gets the mode a plain fopen would give it:
 * 0666 less the umask (not mkstemp's 0600, nor a fixed 0644). */
START_TEST(atomic_write_follows_the_umask) {
    char path[512];
    mc_test_dir_path("private.json", path, sizeof path);
    const mode_t masks[] = {077, 022, 002};
    for (size_t i = 0; i < sizeof masks / sizeof masks[0]; i++) {
        const mode_t old = umask(masks[i]);
        const mc_status s = mc_write_file_atomic(path, "{}", 2);
        umask(old);
        MC_CHECK_OK(s);
        struct stat info;
        ck_assert_int_eq(stat(path, &info), 0);
        ck_assert_msg((info.st_mode & 0777) == (0666 & ~masks[i]), "umask %03o: mode %03o",
                      (unsigned)masks[i], (unsigned)(info.st_mode & 0777));
    }
    ck_assert_int_eq(count_entries(mc_test_dir, ".tmp."), 0);
}
END_TEST

static Suite *run_suite(void) {
    Suite *s = suite_create("run");
    const TTest *const atomic[] = {atomic_write_replaces_and_failure_keeps_old,
                                   atomic_write_into_missing_folder_names_it,
                                   safetensors_writer_uses_the_atomic_path,
                                   atomic_write_follows_the_umask, NULL};
    mc_test_use_temp_dir(mc_test_add_case(s, "atomic", atomic));
    const TTest *const progress[] = {progress_on_a_terminal_rewrites_one_line,
                                     progress_in_a_log_prints_plain_lines_every_n_steps,
                                     progress_after_resume_and_when_quiet, NULL};
    mc_test_add_case(s, "progress", progress);
    const TTest *const folder[] = {run_folder_created_with_parents,
                                   run_folder_unwritable_or_missing_is_a_clear_error,
                                   run_config_json, run_metrics_rows_resume_and_drop,
                                   run_log_appends_lines, run_resume_of_a_non_run_creates_nothing,
                                   run_folder_is_locked_while_open, run_files_survive_a_failed_write,
                                   run_new_refuses_a_folder_holding_a_run,
                                   run_new_refuses_a_folder_holding_a_model, NULL};
    mc_test_use_temp_dir(mc_test_add_case(s, "folder", folder));
    return s;
}

int main(void) { return mc_test_run_suite(run_suite()); }
