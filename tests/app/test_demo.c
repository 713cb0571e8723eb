/* The demo's pipeline at a tiny size (app/demo.c): the synthetic
 * world, a CLIP pretrained from scratch, the chained spectral encoder and
 * the shuffled-pairs control — in seconds. The full-size numbers are in
 * docs/method.md ("The demo"); here the claim is qualitative: the chain
 * carries class information from CLIP's text space to the infrared bands
 * (zero-shot accuracy far above chance) and the control does not. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "mmchain_app/demo.h"
#include "testutil.h"

/* Measured with mc_demo_tiny() and seed 1 (MMCHAIN_THREADS=1): RGB 57.5 %,
 * spectral 45.5 %, control 10.0 %; seeds 2 and 3: 64.5 / 55.0 / 13.0 and
 * 58.0 / 46.5 / 16.5. Chance is 10 %. The bounds leave room for another
 * BLAS or compiler, not for a broken chain. */
#define MIN_RGB 0.40
#define MIN_SPECTRAL 0.30
#define MAX_CONTROL 0.25

static char temp_dir[2048], run_dir[2100];

START_TEST(test_tiny_demo) {
    mc_demo_config config = mc_demo_tiny();
    config.out_dir = run_dir;
    config.quiet = true;
    mc_demo_result r;
    MC_CHECK_OK(mc_demo_run(&config, &r));
    ck_assert_int_eq(r.test_tiles, config.test_tiles);
    ck_assert_int_eq(r.num_classes, 10);
    ck_assert_msg(r.rgb_text_acc >= MIN_RGB, "RGB -> text %.3f", r.rgb_text_acc);
    ck_assert_msg(r.spectral_text_acc >= MIN_SPECTRAL, "spectral -> text %.3f", r.spectral_text_acc);
    ck_assert_msg(r.control_text_acc <= MAX_CONTROL, "control %.3f", r.control_text_acc);
    ck_assert_msg(r.spectral_text_acc > 2.0 * r.control_text_acc, "spectral %.3f vs control %.3f",
                  r.spectral_text_acc, r.control_text_acc);
    ck_assert_str_eq(r.run_dir, run_dir);

    /* The run folder: the CLIP loads like a real one, with its vocabulary;
     * the encoder's checkpoint loads; the report and the sheet exist. */
    char path[4200];
    mc_clip *clip;
    mc_tokenizer *tok;
    snprintf(path, sizeof path, "%s/clip/model.safetensors", run_dir);
    MC_CHECK_OK(mc_clip_load(path, &clip));
    snprintf(path, sizeof path, "%s/clip/merges.txt", run_dir);
    MC_CHECK_OK(mc_tokenizer_load(path, &tok));
    ck_assert_int_eq(clip->config.text.vocab, mc_tokenizer_vocab_size(tok));
    ck_assert_int_eq(clip->config.vision.image_size, config.clip.image_size);
    mc_spectral_encoder *enc;
    snprintf(path, sizeof path, "%s/checkpoints/last.safetensors", run_dir);
    MC_CHECK_OK(mc_spectral_encoder_load(path, &enc, NULL));
    ck_assert_int_eq(enc->image_size, config.tile_size);
    ck_assert_int_eq(enc->embed_dim, clip->config.embed_dim);
    ck_assert_int_eq(enc->norm.kind, MC_NORM_TORCHGEO);
    const char *files[] = {"report.html", "metrics.csv", "config.json", "log.txt", "test-tiles.png"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", run_dir, files[i]);
        ck_assert_msg(mc_test_file_exists(path), "%s is missing", path);
    }
    snprintf(path, sizeof path, "%s/report.html", run_dir);
    char *html = mc_test_read_file(path, NULL);
    ck_assert_ptr_nonnull(strstr(html, "spectral -&gt; text (chained encoder)"));
    free(html);
    mc_spectral_encoder_free(enc);
    mc_tokenizer_free(tok);
    mc_clip_free(clip);
}
END_TEST

START_TEST(test_demo_rejects_bad_sizes) {
    mc_demo_config config = mc_demo_tiny();
    mc_demo_result r;
    config.tile_size = 100;
    MC_CHECK_FAILS(mc_demo_run(&config, &r), MC_ERR_ARG, "a size in 8..64");
    config = mc_demo_tiny();
    config.bands = "B08,B99";
    MC_CHECK_FAILS(mc_demo_run(&config, &r), MC_ERR_ARG, "B99");
    ck_assert(isnan(r.control_text_acc));
}
END_TEST

START_TEST(test_cli_rejects_unknown_options) {
    const char *cli = getenv("MMCHAIN_CLI");
    if (!cli) return; /* the library-only build has no program */
    char command[8192], log[4200];
    snprintf(log, sizeof log, "%s/cli.log", temp_dir);
    snprintf(command, sizeof command, "'%s' demo --colour blue > '%s' 2>&1", cli, log);
    int status = system(command);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    char *text = mc_test_read_file(log, NULL);
    ck_assert_str_eq(text, "mmchain demo: error: unknown option '--colour' (see mmchain demo --help)\n");
    free(text);
}
END_TEST

/* --out: a folder that holds another command's run is refused unless
 * overwrite is set (its checkpoint stays), while a demo's earlier run there
 * is replaced, so that `mmchain demo` runs again as it ran first. */
START_TEST(test_demo_run_folder_policy) {
    char folder[2200], config_path[2300], checkpoint[2400], dir[2300];
    snprintf(folder, sizeof folder, "%s/policy", temp_dir);
    snprintf(dir, sizeof dir, "%s/checkpoints", folder);
    snprintf(config_path, sizeof config_path, "%s/config.json", folder);
    snprintf(checkpoint, sizeof checkpoint, "%s/last.safetensors", dir);
    ck_assert_int_eq(mkdir(folder, 0755), 0);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    mc_test_write_text(config_path, "{\"command\": \"train\"}\n");
    mc_test_write_text(checkpoint, "a trained encoder");
    mc_demo_config config = mc_demo_tiny();
    config.out_dir = folder;
    config.quiet = true;
    config.control = false;
    mc_demo_result r;
    MC_CHECK_FAILS(mc_demo_run(&config, &r), MC_ERR_IO, "holds a run already");
    ck_assert_int_eq(mc_demo_run_mode(&config), MC_RUN_NEW);
    mc_test_assert_file_text(checkpoint, "a trained encoder");

    mc_test_write_text(config_path, "{\"command\": \"demo\"}\n");
    mc_test_write_text(checkpoint, "an earlier demo's encoder");
    ck_assert_int_eq(mc_demo_run_mode(&config), MC_RUN_OVERWRITE);
    MC_CHECK_OK(mc_demo_run(&config, &r));
    mc_spectral_encoder *enc; /* the new demo's, in place of the old file */
    MC_CHECK_OK(mc_spectral_encoder_load(checkpoint, &enc, NULL));
    mc_spectral_encoder_free(enc);
}
END_TEST

int main(void) {
    /* Tiny tensors: a second thread costs more in hand-offs than it brings,
     * and one thread makes the numbers above exactly reproducible. */
    mc_set_num_threads(1);
    mc_test_temp_dir(temp_dir, sizeof temp_dir);
    snprintf(run_dir, sizeof run_dir, "%s/demo", temp_dir);
    Suite *s = suite_create("demo");
    const TTest *const tests[] = {test_tiny_demo, test_demo_rejects_bad_sizes,
                                  test_cli_rejects_unknown_options, test_demo_run_folder_policy, NULL};
    tcase_set_timeout(mc_test_add_case(s, "demo", tests), 300);
    int code = mc_test_run_suite(s);
    mc_test_remove_tree(temp_dir);
    return code;
}
