/* The chain's test inputs (tests/chain_fixture.h), two ways:
 *
 *   test_chain_fixture                    a suite checking that the fixture's
 *                                         files read back as what they claim
 *   test_chain_fixture --write DIR N      write the fixture (N tiles per class)
 *                                         for the script tests and print
 *                                         "data data3 clip vocab" paths */
#include <stdlib.h>
#include <string.h>

#include "chain_fixture.h"
#include "testutil.h"

START_TEST(fixture_files_read_back) {
    chain_fixture f;
    MC_CHECK_OK(fixture_write(mc_test_dir, 2, &f));
    mc_eurosat *ds;
    MC_CHECK_OK(mc_eurosat_open(&ds, f.data, NULL));
    int h, w, bands;
    mc_eurosat_tile_shape(ds, &h, &w, &bands);
    ck_assert_int_eq(mc_eurosat_size(ds), 20);
    ck_assert_int_eq(bands, 13);
    ck_assert_int_eq(h, 64);
    ck_assert_str_eq(mc_eurosat_class_name(ds, 9), "SeaLake");
    mc_eurosat_free(ds);
    MC_CHECK_OK(mc_eurosat_open(&ds, f.data3, NULL));
    mc_eurosat_tile_shape(ds, &h, &w, &bands);
    ck_assert_int_eq(bands, 3);
    mc_eurosat_free(ds);
    mc_clip *clip;
    MC_CHECK_OK(mc_clip_load(f.clip, &clip));
    ck_assert_int_eq(clip->config.embed_dim, FIXTURE_EMBED);
    mc_tokenizer *tok;
    MC_CHECK_OK(mc_tokenizer_load(f.vocab, &tok));
    ck_assert_int_eq(mc_tokenizer_vocab_size(tok), clip->config.text.vocab);
    mc_tokenizer_free(tok);
    mc_clip_free(clip);
}
END_TEST

int main(int argc, char **argv) {
    if (argc == 4 && strcmp(argv[1], "--write") == 0) {
        chain_fixture f;
        mc_status s = fixture_write(argv[2], atoi(argv[3]), &f);
        if (s != MC_OK) {
            fprintf(stderr, "fixture: %s\n", mc_last_error());
            return 1;
        }
        printf("%s %s %s %s\n", f.data, f.data3, f.clip, f.vocab);
        return 0;
    }
    Suite *s = suite_create("chain_fixture");
    const TTest *const tests[] = {fixture_files_read_back, NULL};
    mc_test_use_temp_dir(mc_test_add_case(s, "fixture", tests));
    return mc_test_run_suite(s);
}
