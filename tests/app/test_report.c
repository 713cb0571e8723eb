/* report.html, base64 and contact sheets. The HTML is checked structurally
 * (balanced tags by a tiny checker here), for the exact SVG points of known
 * data (hand-computed from the geometry documented in app/run_internal.h), for escaping
 * and for being self-contained (no script, nothing fetched). */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <stdlib.h>

#include "mmchain_app/report.h"
#include "mmchain_app/run.h"
#include "testutil.h"

/* ---- a tiny HTML well-formedness checker ----
 * Every <tag> must be closed by </tag> in order, except void elements
 * (meta, img, br, hr, link, input) and self-closed <x .../>. Quoted
 * attribute values may hold '>'. <!DOCTYPE> is skipped; <style> content is
 * skipped up to </style>. Returns NULL when balanced, else a problem. */
static const char *check_balanced(const char *html, char *problem, size_t len) {
    static const char *const voids[] = {"meta", "img", "br", "hr", "link", "input"};
    char stack[64][32];
    int depth = 0;
    for (const char *p = html; (p = strchr(p, '<')) != NULL;) {
        if (p[1] == '!') {
            p = strchr(p, '>');
            if (!p) return "unterminated <!";
            continue;
        }
        bool closing = p[1] == '/';
        const char *name = p + 1 + closing;
        size_t n = 0;
        while (isalnum((unsigned char)name[n])) n++;
        if (n == 0 || n >= 32) {
            snprintf(problem, len, "bad tag at byte %ld", (long)(p - html));
            return problem;
        }
        const char *end = name + n;
        for (char quote = 0; *end && (quote || *end != '>'); end++)
            if (*end == '"' || *end == '\'') quote = quote == *end ? 0 : (quote ? quote : *end);
        if (!*end) return "unterminated tag";
        bool self_closed = end[-1] == '/';
        char tag[32];
        memcpy(tag, name, n);
        tag[n] = '\0';
        if (closing) {
            if (depth == 0 || strcmp(stack[depth - 1], tag) != 0) {
                snprintf(problem, len, "</%s> closes <%s>", tag, depth ? stack[depth - 1] : "nothing");
                return problem;
            }
            depth--;
        } else if (!self_closed) {
            bool is_void = false;
            for (size_t v = 0; v < sizeof voids / sizeof voids[0]; v++) is_void |= strcmp(tag, voids[v]) == 0;
            if (!is_void) {
                if (depth == 64) return "too deep";
                snprintf(stack[depth++], 32, "%s", tag);
            }
        }
        p = end + 1;
        if (!closing && strcmp(tag, "style") == 0) p = strstr(p, "</style>");
        if (!p) return "unterminated <style>";
    }
    if (depth != 0) {
        snprintf(problem, len, "<%s> is never closed", stack[depth - 1]);
        return problem;
    }
    return NULL;
}

static void assert_balanced(const char *html) {
    char problem[128];
    const char *why = check_balanced(html, problem, sizeof problem);
    ck_assert_msg(why == NULL, "report HTML is not balanced: %s", why);
}

/* The report written at `path`, checked to be balanced (free it). */
static char *read_balanced_report(const char *path) {
    char *html = mc_test_read_file(path, NULL);
    assert_balanced(html);
    return html;
}

START_TEST(checker_catches_unbalanced_html) {
    char problem[128];
    ck_assert_ptr_null(check_balanced("<p>a<img src=\"x>y\"><svg><line/></svg></p>", problem, sizeof problem));
    ck_assert_ptr_nonnull(check_balanced("<p><b>a</p></b>", problem, sizeof problem));
    ck_assert_ptr_nonnull(check_balanced("<div>", problem, sizeof problem));
}
END_TEST

/* ---- base64: the RFC 4648 §10 test vectors ---- */

START_TEST(base64_rfc4648_vectors) {
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const encoded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char *out;
        MC_CHECK_OK(mc_base64_encode(plain[i], strlen(plain[i]), &out));
        ck_assert_str_eq(out, encoded[i]);
        free(out);
    }
    /* All 6-bit digits: bytes 0x00 0x10 0x83 0x10 0x51 0x87 ... spell "ABCDEFGH". */
    const unsigned char bytes[] = {0x00, 0x10, 0x83, 0x10, 0x51, 0x87, 0xfb, 0xff};
    char *out;
    MC_CHECK_OK(mc_base64_encode(bytes, 8, &out));
    ck_assert_str_eq(out, "ABCDEFGH+/8=");
    free(out);
}
END_TEST

/* ---- the report ---- */

START_TEST(report_plots_confusion_bars_and_escaping) {
    char path[512];
    mc_test_dir_path("report.html", path, sizeof path);
    const double x[] = {0, 5, 10}, y[] = {0, 0.5, 1}, y2[] = {1, NAN, 0.25};
    mc_report_plot plot = {.title = "Loss", .x_label = "step", .y_label = "loss", .n_series = 2,
                           .series = {{"train <loss>", 3, x, y}, {"val", 3, x, y2}}};
    const char *names[] = {"Sea<Lake&", "Forest"};
    const int64_t counts[] = {3, 1, 0, 0}; /* 3 of 4 right */
    mc_report_confusion confusion = {"validation", 2, names, counts};
    const double accuracies[] = {0.75, 0.0};
    mc_report_bars bars = {"per class", 2, names, accuracies};
    const mc_metadata_entry summary[] = {{"spectral->text", "91.2 %"}, {"run", "runs/<demo>"}};
    mc_report report = {.title = "Demo & test", .n_summary = 2, .summary = summary, .n_plots = 1,
                        .plots = &plot, .n_confusions = 1, .confusions = &confusion, .n_bars = 1, .bars = &bars};
    MC_CHECK_OK(mc_report_write(path, &report));
    char *html = read_balanced_report(path);
    mc_test_assert_contains("report.html", html, (const char *const[]){
        /* Geometry (app/run_internal.h): x 0..10 -> 64..504 px, y 0..1 -> 272..44 px (both axes
         * already nice): (0,0) -> (64, 272), (5,0.5) -> (284, 158), (10,1) -> (504, 44). */
        "points=\"64.0,272.0 284.0,158.0 504.0,44.0\"",
        /* The NaN point is skipped: (0,1) -> (64,44), (10,0.25) -> (504, 215). */
        "points=\"64.0,44.0 504.0,215.0\"",
        /* Ticks 0, 2, ..., 10 and 0, 0.2, ..., 1. */
        ">10</text>", ">0.6</text>",
        /* Escaping everywhere: class names, legend, summary, title. */
        "Sea&lt;Lake&amp;", "train &lt;loss&gt;", "spectral-&gt;text", "<title>Demo &amp; test</title>",
        "accuracy 75.0% (3 of 4)", ">75.0%</text>", NULL});
    /* Nothing unescaped; self-contained: no script, nothing loaded from elsewhere. */
    mc_test_assert_lacks("report.html", html,
                         (const char *const[]){"Sea<Lake", "<script", "https:", "src=\"http", "@import", NULL});
    free(html);
}
END_TEST

START_TEST(report_errors_name_the_problem) {
    char path[512];
    mc_test_dir_path("missing/report.html", path, sizeof path);
    mc_report report = {.title = "x"};
    MC_CHECK_FAILS(mc_report_write(path, &report), MC_ERR_IO, "missing/report.html");
    mc_test_dir_path("report.html", path, sizeof path);
    mc_report_image image = {"/nonexistent/sheet.png", "tiles"};
    report.n_images = 1;
    report.images = &image;
    MC_CHECK_FAILS(mc_report_write(path, &report), MC_ERR_IO, "/nonexistent/sheet.png");
    ck_assert(!mc_test_file_exists(path)); /* nothing half-written */
    mc_report_plot too_many = {.title = "crowded", .n_series = MC_REPORT_MAX_SERIES + 1};
    mc_report bad = {.n_plots = 1, .plots = &too_many};
    MC_CHECK_FAILS(mc_report_write(path, &bad), MC_ERR_ARG, "crowded");
}
END_TEST

START_TEST(report_from_metrics_csv) {
    char csv[512], path[512];
    mc_test_dir_path("metrics.csv", csv, sizeof csv);
    mc_test_dir_path("report.html", path, sizeof path);
    mc_test_write_text(csv, "kind,epoch,step,loss,val_acc,text_acc\n"
                   "step,1,10,2,,\n"
                   "step,1,20,1,,\n"
                   "epoch,1,20,1.5,0.5,0.25\n"
                   "step,2,30,0,,\n"
                   "epoch,2,30,0.5,1,0.75\n");
    const char *names[] = {"a", "b"};
    const double acc[] = {1, 0.5};
    mc_report_bars bars = {"per class", 2, names, acc};
    mc_report extra = {.title = "From metrics", .n_bars = 1, .bars = &bars};
    MC_CHECK_OK(mc_report_write_with_metrics(path, csv, &extra));
    char *html = read_balanced_report(path);
    mc_test_assert_contains("report.html", html, (const char *const[]){
        "Training loss per step", "Losses per epoch", "Accuracies per epoch", ">text_acc</text>",
        "per class",
        /* Loss per step: x 10..30 (nice step 5 -> 10..30: 64..504 px), y 0..2 (step 0.5 -> 0..2:
         * 272..44 px): (10,2) -> (64,44), (20,1) -> (284,158), (30,0) -> (504,272). */
        "points=\"64.0,44.0 284.0,158.0 504.0,272.0\"",
        /* Accuracies: x epochs 1..2 (step 0.2), y fixed at 0..1: val_acc (1,0.5) -> (64, 158),
         * (2,1) -> (504, 44); text_acc (1,0.25) -> (64, 215). */
        "points=\"64.0,158.0 504.0,44.0\"", "points=\"64.0,215.0 504.0,101.0\"", NULL});
    free(html);
    /* A header of 30,000 columns over 30,000 one-cell lines (300 KB) would
     * be 900 M values, 7 GB: refused before anything is allocated. */
    {
        const int wide = 30000;
        char *crafted = malloc((size_t)wide * 8 + 16);
        size_t at = (size_t)sprintf(crafted, "kind");
        for (int c = 0; c < wide; c++) at += (size_t)sprintf(crafted + at, ",c%d", c);
        crafted[at++] = '\n';
        mc_test_write_file(csv, crafted, at);
        FILE *f = fopen(csv, "ab");
        for (int r = 0; r < wide; r++) fputs("s\n", f);
        fclose(f);
        free(crafted);
        MC_CHECK_FAILS(mc_report_write_with_metrics(path, csv, &extra), MC_ERR_FORMAT,
                       "far more cells than the file holds");
    }
    /* No metrics file: still a report, without the curves. */
    mc_test_dir_path("absent.csv", csv, sizeof csv);
    MC_CHECK_OK(mc_report_write_with_metrics(path, csv, &extra));
    html = mc_test_read_file(path, NULL);
    ck_assert_ptr_null(strstr(html, "Training loss"));
    ck_assert_ptr_nonnull(strstr(html, "per class"));
    free(html);
}
END_TEST

START_TEST(run_report_end_to_end) {
    char path[512];
    mc_run *run;
    MC_CHECK_OK(mc_run_open(&run, mc_test_dir, MC_RUN_NEW));
    mc_run_set_quiet(run, true);
    const char *cols[] = {"epoch", "step", "loss"};
    for (int step = 1; step <= 4; step++)
        MC_CHECK_OK(mc_run_metrics_row(run, "step", cols, (double[]){1, step, 4.0 / step}, 3));
    MC_CHECK_OK(mc_run_write_report(run, NULL));
    MC_CHECK_OK(mc_run_path(run, "report.html", path, sizeof path));
    char *html = read_balanced_report(path);
    ck_assert_ptr_nonnull(strstr(html, "Training loss per step"));
    free(html);
    mc_run_close(run);
}
END_TEST

/* ---- contact sheets ---- */

START_TEST(contact_sheet_layout_and_embedding) {
    char png[512], path[512];
    mc_test_dir_path("sheet.png", png, sizeof png);
    mc_test_dir_path("report.html", path, sizeof path);
    /* Three 4x4 tiles: red, green, blue. */
    mc_tensor *tiles;
    MC_CHECK_OK(mc_tensor_new(&tiles, MC_SHAPE(3, 3, 4, 4), "tiles"));
    mc_tensor_fill(tiles, 0.0f);
    for (int t = 0; t < 3; t++)
        for (int i = 0; i < 16; i++) tiles->data[(t * 3 + t) * 16 + i] = 1.0f;
    const char *captions[] = {"pred red / true red", NULL, "b"};
    MC_CHECK_OK(mc_contact_sheet_write(png, tiles, captions, 2, 2));
    mc_tensor *sheet;
    MC_CHECK_OK(mc_png_read(png, &sheet, NULL));
    /* 2 columns of 8 px tiles: 8 + 8 + 8 + 8 + 8 = 40 wide; 2 rows of 8 px + 4 + 3 caption lines of 9 px:
     * 8 + 2 * 39 + 8 (gap) + 8 = 102 high. */
    ck_assert_int_eq(sheet->shape.dim[0], 3);
    ck_assert_int_eq(sheet->shape.dim[1], 102);
    ck_assert_int_eq(sheet->shape.dim[2], 40);
    size_t plane = 102 * 40;
    /* Tile 1 (green) starts at (8, 24); tile 2 (blue) at (55, 8); zoom 2: its pixel (7, 7) is still blue. */
    ck_assert_float_eq(sheet->data[1 * plane + 8 * 40 + 24], 1.0f);
    ck_assert_float_eq(sheet->data[0 * plane + 8 * 40 + 24], 0.0f);
    ck_assert_float_eq(sheet->data[2 * plane + (55 + 7) * 40 + 8 + 7], 1.0f);
    mc_tensor_free(sheet);
    MC_CHECK_FAILS(mc_contact_sheet_write(png, tiles, captions, 0, 1), MC_ERR_ARG, "columns");
    mc_tensor_free(tiles);

    mc_report_image image = {png, "validation tiles"};
    mc_report report = {.title = "sheet", .n_images = 1, .images = &image};
    MC_CHECK_OK(mc_report_write(path, &report));
    char *html = read_balanced_report(path);
    /* A PNG starts with 89 50 4E 47 0D 0A 1A 0A, base64 "iVBORw0KGgo". */
    ck_assert_ptr_nonnull(strstr(html, "src=\"data:image/png;base64,iVBORw0KGgo"));
    free(html);
}
END_TEST

START_TEST(canvas_text_draws_the_glyph) {
    mc_canvas cv;
    MC_CHECK_OK(mc_canvas_new(&cv, 7, 12, 0.0f));
    const float white[3] = {1, 1, 1};
    /* "1" is rows 0x04 0x0C 0x04 0x04 0x04 0x04 0x0E: its top row lights only column 2 (0x04 = 00100). */
    mc_canvas_draw_text(&cv, 0, 0, "1", 1, 1, white);
    for (int x = 0; x < 5; x++) ck_assert_float_eq(cv.image->data[x], x == 2 ? 1.0f : 0.0f);
    /* Its last row 0x0E = 01110 lights columns 1..3. */
    for (int x = 0; x < 5; x++) ck_assert_float_eq(cv.image->data[6 * 12 + x], (x >= 1 && x <= 3) ? 1.0f : 0.0f);
    mc_canvas_free(&cv);
    MC_CHECK_FAILS(mc_canvas_new(&cv, 0, 3, 0.0f), MC_ERR_ARG, "canvas");
}
END_TEST

static Suite *report_suite(void) {
    Suite *s = suite_create("report");
    const TTest *const html[] = {checker_catches_unbalanced_html, base64_rfc4648_vectors,
                                 report_plots_confusion_bars_and_escaping,
                                 report_errors_name_the_problem, report_from_metrics_csv,
                                 run_report_end_to_end, NULL};
    mc_test_use_temp_dir(mc_test_add_case(s, "html", html));
    const TTest *const sheet[] = {contact_sheet_layout_and_embedding, canvas_text_draws_the_glyph,
                                  NULL};
    mc_test_use_temp_dir(mc_test_add_case(s, "contact_sheet", sheet));
    return s;
}

int main(void) { return mc_test_run_suite(report_suite()); }
