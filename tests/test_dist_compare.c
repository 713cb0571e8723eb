/* Comparing two safetensors files tensor by tensor — the check behind
 * tests/script_dist_train.sh (a distributed run ends with the checkpoint of
 * the one-process run).
 *
 *     test_dist_compare A.safetensors B.safetensors RTOL [SKIP]
 *         every tensor of B is in A with the same shape, and
 *         max |a - b| <= RTOL * max |b| over each tensor (the error relative
 *         to the tensor's scale: an element near zero in a tensor of ones
 *         does not make a rounding difference look large); prints the worst
 *         tensor, and each tensor past RTOL on stderr; exit 0 when they agree,
 *         1 when not, 2 on a bad file. Tensors whose name contains SKIP are
 *         only checked for shape (see tests/script_dist_pretrain.sh).
 *     test_dist_compare
 *         the suite: the comparison on files written here, one of them
 *         changed in one element, one missing a tensor, one reshaped. */
#include "testutil.h"

#include <stdlib.h>

/* The worst relative difference of B's tensors in A; -1 and a message in
 * `why` when the files do not hold the same tensors. */
static double compare_files(const char *path_a, const char *path_b, double rtol, const char *skip,
                            char *worst_name, size_t name_len, char *why, size_t why_len) {
    mc_safetensors *a = NULL, *b = NULL;
    double worst = 0.0;
    snprintf(worst_name, name_len, "(none)");
    if (mc_safetensors_open(path_a, &a) != MC_OK || mc_safetensors_open(path_b, &b) != MC_OK) {
        snprintf(why, why_len, "%s", mc_last_error());
        worst = -1.0;
    }
    if (worst >= 0.0 && mc_safetensors_count(a) != mc_safetensors_count(b)) {
        snprintf(why, why_len, "%s holds %d tensors, %s %d", path_a, mc_safetensors_count(a), path_b,
                 mc_safetensors_count(b));
        worst = -1.0;
    }
    for (int i = 0; worst >= 0.0 && i < mc_safetensors_count(b); i++) {
        const char *name = mc_safetensors_name(b, i);
        mc_tensor *ta = NULL, *tb = NULL;
        if (mc_safetensors_read(a, name, &ta) != MC_OK || mc_safetensors_read(b, name, &tb) != MC_OK) {
            snprintf(why, why_len, "%s", mc_last_error());
            worst = -1.0;
        } else if (!mc_shape_equal(ta->shape, tb->shape)) {
            char sa[96], sb[96];
            snprintf(why, why_len, "%s: shape %s in %s, %s in %s", name, mc_shape_str(ta->shape, sa, sizeof sa),
                     path_a, mc_shape_str(tb->shape, sb, sizeof sb), path_b);
            worst = -1.0;
        } else {
            double largest = 0.0, diff = 0.0;
            for (int64_t j = 0; j < tb->numel; j++) {
                largest = fmax(largest, fabs(tb->data[j]));
                diff = fmax(diff, fabs((double)ta->data[j] - tb->data[j]));
            }
            double relative = diff == 0.0 ? 0.0 : diff / fmax(largest, 1e-30);
            if (skip && strstr(name, skip)) relative = 0.0;
            if (rtol > 0.0 && relative > rtol)
                fprintf(stderr, "%s: largest difference %.3g, %.3g of its largest value %.3g\n", name, diff,
                        relative, largest);
            if (relative > worst) {
                worst = relative;
                snprintf(worst_name, name_len, "%s", name);
            }
        }
        mc_tensor_free(ta);
        mc_tensor_free(tb);
    }
    mc_safetensors_close(a);
    mc_safetensors_close(b);
    return worst;
}

/* ---- the suite ---- */

static void write_pair(const char *path, float w0, bool with_bias, int64_t rows) {
    mc_tensor *w, *bias;
    MC_CHECK_OK(mc_tensor_new(&w, MC_SHAPE(rows, 6 / rows), "w"));
    MC_CHECK_OK(mc_tensor_new(&bias, MC_SHAPE(3), "bias"));
    for (int64_t i = 0; i < 6; i++) w->data[i] = (float)(i + 1) * 0.5f;
    w->data[0] = w0;
    for (int i = 0; i < 3; i++) bias->data[i] = 1e-3f * (float)(i + 1);
    mc_tensor *both[2] = {w, bias};
    MC_CHECK_OK(mc_safetensors_write(path, with_bias ? 2 : 1, both, 0, NULL));
    mc_tensor_free(w);
    mc_tensor_free(bias);
}

START_TEST(test_compare) {
    char dir[512], a[600], b[600], c[600], d[600], worst[128], why[512];
    mc_test_temp_dir(dir, sizeof dir);
    snprintf(a, sizeof a, "%s/a.safetensors", dir);
    snprintf(b, sizeof b, "%s/b.safetensors", dir);
    snprintf(c, sizeof c, "%s/c.safetensors", dir);
    snprintf(d, sizeof d, "%s/d.safetensors", dir);
    write_pair(a, 0.5f, true, 2);
    ck_assert(compare_files(a, a, 0.0, NULL, worst, sizeof worst, why, sizeof why) == 0.0);
    /* One element of w moved by 0.003 in a tensor whose largest value is 3. */
    write_pair(b, 0.503f, true, 2);
    double r = compare_files(b, a, 0.0, NULL, worst, sizeof worst, why, sizeof why);
    ck_assert_msg(fabs(r - 0.001) < 1e-6, "relative difference %g, expected 0.001", r);
    ck_assert_str_eq(worst, "w");
    ck_assert(compare_files(b, a, 0.0, "w", worst, sizeof worst, why, sizeof why) == 0.0);
    write_pair(c, 0.5f, false, 2);
    ck_assert(compare_files(c, a, 0.0, NULL, worst, sizeof worst, why, sizeof why) < 0.0);
    ck_assert_msg(strstr(why, "tensors") != NULL, "%s", why);
    write_pair(d, 0.5f, true, 3);
    ck_assert(compare_files(d, a, 0.0, NULL, worst, sizeof worst, why, sizeof why) < 0.0);
    ck_assert_msg(strstr(why, "shape") != NULL, "%s", why);
    mc_test_remove_tree(dir);
}
END_TEST

int main(int argc, char **argv) {
    if (argc == 4 || argc == 5) {
        char worst_name[256], why[1024];
        double rtol = atof(argv[3]);
        double worst = compare_files(argv[1], argv[2], rtol, argc == 5 ? argv[4] : NULL, worst_name,
                                     sizeof worst_name, why, sizeof why);
        if (worst < 0.0) {
            fprintf(stderr, "compare: %s\n", why);
            return 2;
        }
        printf("largest relative difference %.3g (%s), tolerance %g\n", worst, worst_name, rtol);
        return worst <= rtol ? 0 : 1;
    }
    Suite *s = suite_create("dist_compare");
    TCase *t = tcase_create("compare");
    tcase_add_test(t, test_compare);
    suite_add_tcase(s, t);
    return mc_test_run_suite(s);
}
