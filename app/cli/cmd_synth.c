/* mmchain synth — write the synthetic multispectral world to disk.
 *
 *     mmchain synth --out DIR --per-class N [--seed S] [--rgb-out DIR2 | --no-png] [--stats]
 *
 * Writes EuroSAT-MS's own layout and file format, so the real-data path and
 * the synthetic path share one loader:
 *     DIR/<Class>/<Class>_<i>.tif        13-band uint16 TIFF, i = 1..N
 *     DIR-rgb/<Class>/<Class>_<i>.png    RGB preview (B04, B03, B02)
 * The previews mirror EuroSAT's separate RGB release (a folder of class
 * folders with the same stems), so DIR-rgb can be given wherever the RGB
 * release's folder is accepted. File number i is tile index i - 1 of the
 * world (mc_synth_tile). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "cli.h"

static const char *const COMMAND = "synth";

static void print_help(void) {
    printf("usage: mmchain synth --out DIR --per-class N [--seed S] [--rgb-out DIR2 | --no-png] [--stats]\n\n"
           "Writes the synthetic multispectral world in EuroSAT-MS's layout: DIR/<Class>/<Class>_<i>.tif\n"
           "(64x64, 13 bands B01..B12,B8A, uint16 reflectance x 10000), i = 1..N for each of the 10\n"
           "classes, and an RGB preview of each tile (B04,B03,B02 / %.0f, clipped) as\n"
           "DIR2/<Class>/<Class>_<i>.png, where DIR2 is DIR-rgb unless given.\n\n"
           "  --out DIR        output folder (created if needed)\n"
           "  --per-class N    tiles per class\n"
           "  --seed S         world seed (default 0): the same seed writes the same files\n"
           "  --rgb-out DIR2   where the PNG previews go (default DIR-rgb)\n"
           "  --no-png         write no previews\n"
           "  --stats          print the mean of every band per class (with or without --out)\n",
           MC_EUROSAT_RGB_SCALE);
}

typedef struct synth_options {
    const char *out;
    const char *rgb_out;
    long per_class;
    unsigned long long seed;
    bool png, stats;
} synth_options;

/* Returns -1 to go on, otherwise the exit code: 0 after --help, 1 after a
 * usage error (like every command). */
static int parse_options(int argc, char **argv, synth_options *o) {
    int per_class = 0;
    uint64_t seed = 0;
    bool no_png = false;
    *o = (synth_options){0};
    cli_opt opts[] = { /* documented by print_help */
        CLI_STRING_OPT("--out", &o->out, NULL),
        CLI_STRING_OPT("--rgb-out", &o->rgb_out, NULL),
        CLI_INT_OPT("--per-class", &per_class, 1, 100000000, NULL),
        CLI_U64_OPT("--seed", &seed, NULL),
        CLI_FLAG_OPT("--no-png", &no_png, NULL),
        CLI_FLAG_OPT("--stats", &o->stats, NULL),
        CLI_END,
    };
    const cli_parser parser = {COMMAND, NULL, print_help, opts, CLI_NO_OPERANDS};
    int code = cli_parse(&parser, argc, argv, NULL, NULL);
    if (code >= 0) return code;
    o->per_class = per_class;
    o->seed = seed;
    o->png = !no_png;
    if (no_png && o->rgb_out)
        return cli_fail(COMMAND, "--rgb-out names where the PNG previews go: it cannot go with --no-png");
    if (o->per_class < 1) return cli_fail(COMMAND, "--per-class N is required (see mmchain synth --help)");
    if (!o->out && !o->stats) return cli_fail(COMMAND, "--out DIR is required (or --stats alone)");
    return -1;
}

/* mkdir -p. */
static mc_status make_dirs(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return mc_error(MC_ERR_ARG, "folder name too long: %s", path);
    for (char *p = buf + 1;; p++) {
        char saved = *p;
        if (saved == '/' || saved == '\0') {
            *p = '\0';
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return mc_error(MC_ERR_IO, "cannot create folder %s: %s", buf, strerror(errno));
            struct stat st;
            if (stat(buf, &st) != 0 || !S_ISDIR(st.st_mode))
                return mc_error(MC_ERR_IO, "%s exists and is not a folder", buf);
            *p = saved;
        }
        if (saved == '\0') break;
    }
    return MC_OK;
}

/* The RGB preview of tile (H, W, 13) into rgb (3, H, W): B04, B03, B02
 * through the loader's RGB mapping (data.h). */
static void rgb_preview(const uint16_t *tile, mc_tensor *rgb) {
    const int bands[3] = {3, 2, 1}; /* B04, B03, B02 */
    const long plane = (long)MC_SYNTH_SIZE * MC_SYNTH_SIZE;
    for (int c = 0; c < 3; c++)
        for (long p = 0; p < plane; p++)
            rgb->data[c * plane + p] = mc_eurosat_rgb_value((float)tile[p * MC_SYNTH_BANDS + bands[c]]);
}

static mc_status write_tile(const synth_options *o, const char *rgb_dir, int label, long number,
                            const uint16_t *tile, mc_tensor *rgb) {
    const char *name = mc_synth_class_name(label);
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s_%ld.tif", o->out, name, name, number);
    MC_TRY(mc_tiff_write_u16(path, tile, MC_SYNTH_SIZE, MC_SYNTH_SIZE, MC_SYNTH_BANDS));
    if (!o->png) return MC_OK;
    rgb_preview(tile, rgb);
    snprintf(path, sizeof path, "%s/%s/%s_%ld.png", rgb_dir, name, name, number);
    return mc_png_write(path, rgb, 8);
}

static void print_stats(const double sums[MC_SYNTH_CLASSES][MC_SYNTH_BANDS], long per_class) {
    static const char *const band_names[MC_SYNTH_BANDS] = {"B01", "B02", "B03", "B04", "B05", "B06", "B07",
                                                           "B08", "B09", "B10", "B11", "B12", "B8A"};
    printf("%-22s", "mean per band");
    for (int b = 0; b < MC_SYNTH_BANDS; b++) printf(" %5s", band_names[b]);
    printf("\n");
    for (int c = 0; c < MC_SYNTH_CLASSES; c++) {
        printf("%-22s", mc_synth_class_name(c));
        for (int b = 0; b < MC_SYNTH_BANDS; b++) printf(" %5.0f", sums[c][b] / (double)per_class);
        printf("\n");
    }
}

/* Add tile (H, W, 13)'s band means to sums[b]. */
static void add_band_means(const uint16_t *tile, double sums[MC_SYNTH_BANDS]) {
    const long plane = (long)MC_SYNTH_SIZE * MC_SYNTH_SIZE;
    for (long p = 0; p < plane; p++)
        for (int b = 0; b < MC_SYNTH_BANDS; b++) sums[b] += tile[p * MC_SYNTH_BANDS + b] / (double)plane;
}

/* Make (and write, and sum) every tile, in parallel: a tile is a pure
 * function of (seed, class, index) and has its own files, so threads share
 * nothing but the per-class sums, merged once per thread at the end. Errors
 * are thread-local (error.h): the first failing thread's message is copied
 * out and raised again on the calling thread. */
static mc_status make_world(const synth_options *o, const char *rgb_dir,
                            double sums[MC_SYNTH_CLASSES][MC_SYNTH_BANDS]) {
    const long total = o->per_class * MC_SYNTH_CLASSES;
    int failed = 0; /* set once a thread fails: the others stop early */
    mc_status first_status = MC_OK;
    char first_message[1024] = "";
#pragma omp parallel
    {
        uint16_t *tile = malloc(sizeof(uint16_t) * MC_SYNTH_SIZE * MC_SYNTH_SIZE * MC_SYNTH_BANDS);
        mc_tensor *rgb = NULL;
        mc_status s = tile ? mc_tensor_new(&rgb, MC_SHAPE(3, MC_SYNTH_SIZE, MC_SYNTH_SIZE), "rgb preview")
                           : mc_error(MC_ERR_NOMEM, "cannot allocate a tile");
        double (*my_sums)[MC_SYNTH_BANDS] = calloc(MC_SYNTH_CLASSES, sizeof *my_sums);
        if (s == MC_OK && !my_sums) s = mc_error(MC_ERR_NOMEM, "cannot allocate per-thread band sums");
        if (s != MC_OK) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 8)
        for (long k = 0; k < total; k++) { /* tile k: class k / N, index k % N */
            int stop;
#pragma omp atomic read
            stop = failed;
            if (s != MC_OK || stop) continue;
            int c = (int)(k / o->per_class);
            long i = k % o->per_class;
            s = mc_synth_tile(o->seed, c, i, tile);
            if (s == MC_OK && o->out) s = write_tile(o, rgb_dir, c, i + 1, tile, rgb);
            if (s == MC_OK && o->stats) add_band_means(tile, my_sums[c]);
            if (s != MC_OK) {
#pragma omp atomic write
                failed = 1;
            }
        }
#pragma omp critical(synth_merge)
        {
            if (s != MC_OK && first_status == MC_OK) {
                snprintf(first_message, sizeof first_message, "%s", mc_last_error());
                first_status = s;
            }
            if (my_sums)
                for (int c = 0; c < MC_SYNTH_CLASSES; c++)
                    for (int b = 0; b < MC_SYNTH_BANDS; b++) sums[c][b] += my_sums[c][b];
        }
        free(my_sums);
        free(tile);
        mc_tensor_free(rgb);
    }
    if (first_status != MC_OK) return mc_error(first_status, "%s", first_message);
    return MC_OK;
}

int cmd_synth(int argc, char **argv) {
    synth_options o;
    int code = parse_options(argc, argv, &o);
    if (code >= 0) return code;

    char rgb_dir[4096] = "";
    if (o.out) {
        size_t len = strlen(o.out);
        while (len > 1 && o.out[len - 1] == '/') len--; /* "out/" -> "out-rgb", not "out/-rgb" */
        if (o.rgb_out) snprintf(rgb_dir, sizeof rgb_dir, "%s", o.rgb_out);
        else snprintf(rgb_dir, sizeof rgb_dir, "%.*s-rgb", (int)len, o.out);
        for (int c = 0; c < MC_SYNTH_CLASSES; c++) {
            char dir[4096];
            if (snprintf(dir, sizeof dir, "%s/%s", o.out, mc_synth_class_name(c)) >= (int)sizeof dir)
                return cli_fail(COMMAND, "--out %s: the path is too long", o.out);
            mc_status s = make_dirs(dir);
            if (s == MC_OK && o.png) {
                if (snprintf(dir, sizeof dir, "%s/%s", rgb_dir, mc_synth_class_name(c)) >= (int)sizeof dir)
                    return cli_fail(COMMAND, "%s: the path is too long", rgb_dir);
                s = make_dirs(dir);
            }
            if (s != MC_OK) return cli_fail_status(COMMAND, s);
        }
    }

    static double sums[MC_SYNTH_CLASSES][MC_SYNTH_BANDS];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    mc_status s = make_world(&o, rgb_dir, sums);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (s != MC_OK) return cli_fail_status(COMMAND, s);

    double seconds = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
    long total = o.per_class * MC_SYNTH_CLASSES;
    if (o.out)
        fprintf(stderr, "mmchain synth: wrote %ld tiles (%ld per class, seed %llu) to %s%s%s in %.2f s (%.0f tiles/s)\n",
                total, o.per_class, o.seed, o.out, o.png ? " and previews to " : "", o.png ? rgb_dir : "", seconds,
                total / (seconds > 0 ? seconds : 1e-9));
    if (o.stats) print_stats(sums, o.per_class);
    return 0;
}
