/* Full-size ResNet parity with torchvision: resnet50() and resnet18() with
 * random weights and random BN statistics.
 *   - eval forward at 64x64 and 224x224 (ResNet-50) and 64x64 (ResNet-18):
 *     logits and pooled features, relative error < 1e-4;
 *   - a training step with fc replaced by Linear(F, 512) and InfoNCE against
 *     fixed targets: loss, the gradient of every parameter (< 1e-3), BN
 *     running statistics after the step; then 5 Adam steps' losses.
 * Tolerances: tests/resnet_parity.h.
 *
 * The fixtures are too large to commit (~300 MB), so this suite generates
 * them into $MMCHAIN_GENERATED with tests/golden/gen_resnet.py --full when
 * Debian's /usr/bin/python3 with torch and torchvision is installed, and is
 * skipped (exit 77) where it is not. */
#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "resnet_parity.h"

static const char *PYTHON = "/usr/bin/python3";
static char generated_dir[1024];

/* ResNet-50 (eval at 64x64 and 224x224, a training step and Adam), then
 * ResNet-18 (eval, a training step and Adam). */
static const char *const full_cases[] = {"full50", "full18"};

START_TEST(test_full_case) { parity_run_nth(generated_dir, full_cases, _i); }
END_TEST

static double mtime_of(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (double)st.st_mtime : -1.0;
}

/* Generate the fixtures unless they are newer than the generator. */
static int ensure_fixtures(void) {
    const char *source = getenv("MMCHAIN_SOURCE_DIR");
    const char *generated = getenv("MMCHAIN_GENERATED");
    if (!source || !generated) {
        fprintf(stderr, "MMCHAIN_SOURCE_DIR and MMCHAIN_GENERATED must be set (ctest sets them)\n");
        return -1;
    }
    snprintf(generated_dir, sizeof generated_dir, "%s", generated);
    if (mkdir(generated, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "cannot create %s\n", generated);
        return -1;
    }
    char script[1200], newest[1200], command[4096];
    snprintf(script, sizeof script, "%s/tests/golden/gen_resnet.py", source);
    snprintf(newest, sizeof newest, "%s/resnet_full18_expected.safetensors", generated);
    if (mtime_of(newest) >= mtime_of(script)) return 0;
    snprintf(command, sizeof command, "%s '%s' --full --out '%s'", PYTHON, script, generated);
    printf("generating: %s\n", command);
    fflush(stdout);
    return system(command) == 0 ? 0 : -1;
}

/* libgomp's default wait policy spins its idle threads between parallel
 * regions, which starves OpenBLAS's own threads during each sgemm: on a
 * loaded 2-core machine this suite took 65 s instead of 6 s. The policy is
 * read when libgomp loads, before main(), so set it and start again.
 * (The proper place is the test environment in tests/CMakeLists.txt.) */
static void ensure_passive_openmp(char **argv) {
    if (getenv("OMP_WAIT_POLICY")) return;
    setenv("OMP_WAIT_POLICY", "PASSIVE", 1);
    execv("/proc/self/exe", argv);
    /* execv failed: carry on with the spinning policy, only slower. */
}

int main(int argc, char **argv) {
    (void)argc;
    ensure_passive_openmp(argv);
    char probe[256];
    snprintf(probe, sizeof probe, "%s -c 'import torch, torchvision' >/dev/null 2>&1", PYTHON);
    if (!mc_test_file_exists(PYTHON) || system(probe) != 0)
        return mc_test_skip("needs /usr/bin/python3 with torch and torchvision to generate the "
                            "full-size ResNet fixtures");
    if (ensure_fixtures() != 0) {
        fprintf(stderr, "generating the ResNet fixtures failed\n");
        return 1;
    }
    Suite *s = suite_create("resnet_parity");
    const TTest *const none[] = {NULL};
    const mc_test_loop full[] = {{test_full_case, 0, PARITY_N_RUNS(full_cases)}, {NULL, 0, 0}};
    tcase_set_timeout(mc_test_add_loops(mc_test_add_case(s, "full", none), full), 600);
    return mc_test_run_suite(s);
}
