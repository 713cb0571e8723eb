/* The usage example in the opening comment of include/mmchain/chain.h,
 * compiled and run: tests/CMakeLists.txt copies the lines between its
 * chain-example markers into chain_example.inc, which becomes the body of
 * chain_example() below. It runs on the chain's tiny fixture (synthetic
 * tiles, a random tiny CLIP), so a change of the API that the comment does
 * not follow breaks this build, and one that makes it wrong fails here. */
#define _XOPEN_SOURCE 700
#include <math.h>
#include <stdio.h>

#include "chain_fixture.h"

static int epochs_seen;
static double last_accuracy = -1;

/* The on_epoch hook the example names. */
static mc_status print_epoch(void *ctx, const mc_chain_epoch_info *info) {
    (void)ctx;
    printf("epoch %d: zero-shot %.3f\n", info->epoch, info->val->spectral_text_acc);
    epochs_seen++;
    last_accuracy = info->val->spectral_text_acc;
    return MC_OK;
}

static mc_status chain_example(const char *data_dir, const char *clip_path, const char *vocab_path,
                               mc_resnet_config arch, int epochs, int batch) {
#include "chain_example.inc"
    return MC_OK;
}

START_TEST(header_example_trains) {
    chain_fixture f;
    MC_CHECK_OK(fixture_write(mc_test_dir, 3, &f));
    MC_CHECK_OK(chain_example(f.data, f.clip, f.vocab, fixture_arch(), 2, 8));
    ck_assert_int_eq(epochs_seen, 2);
    ck_assert(last_accuracy >= 0 && last_accuracy <= 1);
}
END_TEST

int main(void) {
    Suite *suite = suite_create("chain_example");
    const TTest *const tests[] = {header_example_trains, NULL};
    TCase *example = mc_test_add_case(suite, "chain.h", tests);
    mc_test_use_temp_dir(example);
    tcase_set_timeout(example, 120);
    return mc_test_run_suite(suite);
}
