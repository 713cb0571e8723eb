/* mmchain ablate — which bands carry the signal.
 *
 *     mmchain ablate [--sets "B04,B03,B02;B05,B06,B07"] [--seeds 1,2,3] [--epochs E] [--out DIR]
 *
 * The same encoder, schedule and seeds trained on several band sets, each
 * also on shuffled pairs (the control), on the synthetic world (the demo's
 * world and CLIP, no download): one table of spectral->text, matching,
 * control and per-class accuracy, mean +- sd over the seeds, as markdown on
 * stdout, DIR/ablation.csv and DIR/report.html. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chain_cli.h"
#include "mmchain_app/demo.h"

static const char *const COMMAND = "ablate";
static const char *const USAGE =
    "usage: mmchain ablate [--sets \"LIST;LIST;...\"] [--seeds S1,S2,...] [--epochs E] [--out DIR] [options]\n\n"
    "Trains the same spectral encoder with the same schedule and seeds on several band sets of the\n"
    "synthetic world (the demo's world and CLIP; no download), each also on shuffled pairs (the\n"
    "control), and scores each zero-shot on the same held-out tiles. Prints one markdown table\n"
    "(mean +- sd over the seeds) and writes DIR/{ablation.csv, report.html, log.txt, config.json}.\n"
    "Default sets: RGB as spectral bands; the seed paper's three infrared bands; the three 20 m\n"
    "bands B8A,B11,B12; the red edge B05,B06,B07; all 13 bands.";

static const char *const DEFAULT_SETS = "B04,B03,B02;B08,B11,B12;B8A,B11,B12;B05,B06,B07;all";

typedef struct ablate_args {
    const char *sets, *seeds, *out;
    int epochs;
    bool tiny, quiet, no_control;
} ablate_args;

/* mean and sample standard deviation of n values (sd 0 for one value). */
static void mean_sd(const double *v, int n, double *mean, double *sd) {
    double sum = 0.0, sq = 0.0;
    for (int i = 0; i < n; i++) sum += v[i];
    *mean = sum / n;
    for (int i = 0; i < n; i++) sq += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(sq / (n - 1)) : 0.0;
}

/* The results: rows[seed * n_sets + set]. */
typedef struct ablation {
    char **sets;
    int n_sets;
    uint64_t *seeds;
    int n_seeds;
    mc_ablate_row *rows;
} ablation;

/* One column of the results over the seeds for set `set`. */
static void column(const ablation *ab, int set, double (*pick)(const mc_ablate_row *, int), int arg, double *mean,
                   double *sd) {
    double values[64];
    for (int s = 0; s < ab->n_seeds; s++) values[s] = pick(&ab->rows[s * ab->n_sets + set], arg);
    mean_sd(values, ab->n_seeds, mean, sd);
}

static double pick_text(const mc_ablate_row *r, int k) { (void)k; return r->text_acc; }
static double pick_match(const mc_ablate_row *r, int k) { (void)k; return r->match_acc; }
static double pick_control(const mc_ablate_row *r, int k) { (void)k; return r->control_text_acc; }
static double pick_rgb(const mc_ablate_row *r, int k) { (void)k; return r->rgb_text_acc; }
static double pick_class(const mc_ablate_row *r, int k) { return r->class_acc[k]; }

typedef double (*pick_fn)(const mc_ablate_row *, int);
static const pick_fn SUMMARY_PICKS[4] = {pick_text, pick_match, pick_control, pick_rgb};

static void print_markdown(const ablation *ab) {
    const int k = ab->rows[0].num_classes;
    printf("\n| bands | spectral->text | matching | control | RGB->text |");
    for (int c = 0; c < k; c++) printf(" %s |", mc_synth_class_name(c));
    printf("\n|---|---|---|---|---|");
    for (int c = 0; c < k; c++) printf("---|");
    printf("\n");
    for (int set = 0; set < ab->n_sets; set++) {
        printf("| %s |", ab->rows[set].bands);
        for (int i = 0; i < 4; i++) {
            double mean, sd;
            column(ab, set, SUMMARY_PICKS[i], 0, &mean, &sd);
            if (isnan(mean)) printf(" - |");
            else printf(" %.1f ± %.1f |", 100 * mean, 100 * sd);
        }
        for (int c = 0; c < k; c++) {
            double mean, sd;
            column(ab, set, pick_class, c, &mean, &sd);
            printf(" %.0f |", 100 * mean);
        }
        printf("\n");
    }
    printf("\nAccuracies in %% on the held-out test tiles, mean ± sd over %d seed(s); per-class columns: "
           "spectral->text mean. Chance is %.0f %%.\n", ab->n_seeds, 100.0 / k);
}

static mc_status write_csv(void *ctx, FILE *f) {
    const ablation *ab = ctx;
    const int k = ab->rows[0].num_classes;
    fprintf(f, "bands,seeds,spectral_text_acc,spectral_text_sd,match_acc,match_sd,control_text_acc,control_text_sd,"
               "rgb_text_acc,rgb_text_sd");
    for (int c = 0; c < k; c++) fprintf(f, ",%s_acc", mc_synth_class_name(c));
    fprintf(f, "\n");
    for (int set = 0; set < ab->n_sets; set++) {
        fprintf(f, "\"%s\",%d", ab->rows[set].bands, ab->n_seeds);
        for (int i = 0; i < 4; i++) {
            double mean, sd;
            column(ab, set, SUMMARY_PICKS[i], 0, &mean, &sd);
            fprintf(f, ",%.6g,%.6g", mean, sd);
        }
        for (int c = 0; c < k; c++) {
            double mean, sd;
            column(ab, set, pick_class, c, &mean, &sd);
            fprintf(f, ",%.6g", mean);
        }
        fprintf(f, "\n");
    }
    return MC_OK;
}

/* report.html: the table as summary rows, a bar chart of the sets, and
 * each set's per-class accuracy. */
static mc_status write_report(mc_run *run, const ablation *ab) {
    const int n = ab->n_sets, k = ab->rows[0].num_classes;
    mc_metadata_entry *summary = calloc((size_t)n, sizeof *summary);
    char(*values)[256] = calloc((size_t)n, sizeof *values);
    const char **set_names = calloc((size_t)n, sizeof *set_names);
    double *text = calloc((size_t)n, sizeof *text), *class_acc = calloc((size_t)n * (size_t)k, sizeof *class_acc);
    mc_report_bars *bars = calloc((size_t)n + 1, sizeof *bars);
    const char *class_names[MC_EUROSAT_NUM_CLASSES];
    mc_status status = summary && values && set_names && text && class_acc && bars
                           ? MC_OK
                           : mc_error(MC_ERR_NOMEM, "ablate: out of memory for the report");
    for (int c = 0; c < k; c++) class_names[c] = mc_synth_class_name(c);
    for (int set = 0; set < n && status == MC_OK; set++) {
        double m[4], sd[4];
        for (int i = 0; i < 4; i++) column(ab, set, SUMMARY_PICKS[i], 0, &m[i], &sd[i]);
        snprintf(values[set], sizeof values[set],
                 "spectral->text %.1f ± %.1f %%, matching %.1f ± %.1f %%, control %.1f ± %.1f %%, "
                 "RGB->text %.1f %%", 100 * m[0], 100 * sd[0], 100 * m[1], 100 * sd[1], 100 * m[2], 100 * sd[2],
                 100 * m[3]);
        summary[set] = (mc_metadata_entry){ab->rows[set].bands, values[set]};
        set_names[set] = ab->rows[set].bands;
        text[set] = m[0];
        for (int c = 0; c < k; c++) {
            double mean, unused;
            column(ab, set, pick_class, c, &mean, &unused);
            class_acc[set * k + c] = mean;
        }
        bars[set + 1] = (mc_report_bars){ab->rows[set].bands, k, class_names, class_acc + set * k};
    }
    if (status == MC_OK) {
        bars[0] = (mc_report_bars){"spectral -> text by band set (mean over the seeds)", n, set_names, text};
        char path[4096];
        mc_report report = {.title = "mmchain ablate: which bands carry the signal", .n_summary = n,
                            .summary = summary, .n_bars = n + 1, .bars = bars};
        status = mc_run_path(run, "report.html", path, sizeof path);
        if (status == MC_OK) status = mc_report_write(path, &report);
    }
    free(summary);
    free(values);
    free(set_names);
    free(text);
    free(class_acc);
    free(bars);
    return status;
}

static void free_ablation(ablation *ab) {
    mc_chain_strings_free(ab->sets, ab->n_sets);
    free(ab->seeds);
    free(ab->rows);
}

/* --sets and --seeds, every band set checked before anything runs. */
static int parse_lists(const ablate_args *a, ablation *ab) {
    if (mc_chain_split_list(a->sets, ';', "--sets", &ab->sets, &ab->n_sets) != MC_OK)
        return cli_fail(COMMAND, "%s", mc_last_error());
    for (int i = 0; i < ab->n_sets; i++) {
        mc_bands bands;
        if (mc_bands_parse(ab->sets[i], &bands) != MC_OK) return cli_fail(COMMAND, "--sets: %s", mc_last_error());
    }
    char **seeds;
    if (mc_chain_split_list(a->seeds, ',', "--seeds", &seeds, &ab->n_seeds) != MC_OK)
        return cli_fail(COMMAND, "%s", mc_last_error());
    ab->seeds = calloc((size_t)ab->n_seeds, sizeof *ab->seeds);
    int code = ab->seeds && ab->n_seeds <= 64 ? 0 : cli_fail(COMMAND, "--seeds: at most 64 seeds");
    for (int i = 0; i < ab->n_seeds && !code; i++) {
        char *end;
        ab->seeds[i] = strtoull(seeds[i], &end, 10);
        if (*end || seeds[i][0] == '-') code = cli_fail(COMMAND, "--seeds: '%s' is not a seed (a whole number)", seeds[i]);
    }
    mc_chain_strings_free(seeds, ab->n_seeds);
    if (code) return code;
    ab->rows = calloc((size_t)ab->n_seeds * (size_t)ab->n_sets, sizeof *ab->rows);
    return ab->rows ? 0 : cli_fail(COMMAND, "out of memory");
}

static int run_ablation(const ablate_args *a, const cli_opt *opts, mc_run *run, ablation *ab) {
    mc_demo_config base = a->tiny ? mc_demo_tiny() : mc_demo_defaults();
    base.quiet = a->quiet;
    base.control = !a->no_control;
    if (cli_opt_find((cli_opt *)opts, "--epochs")->given) base.train.epochs = a->epochs;
    mc_metadata_entry config[] = {{"command", "ablate"}, {"sets", a->sets}, {"seeds", a->seeds},
                                  {"sizes", a->tiny ? "tiny" : "demo"}, {"control", base.control ? "true" : "false"}};
    mc_status st = mc_run_write_config(run, 5, config);
    for (int s = 0; s < ab->n_seeds && st == MC_OK; s++) {
        base.seed = ab->seeds[s];
        mc_run_log(run, "seed %llu: the world, the CLIP, then %d band sets", (unsigned long long)base.seed, ab->n_sets);
        st = mc_demo_ablate(&base, (const char *const *)ab->sets, ab->n_sets, ab->rows + s * ab->n_sets);
        for (int i = 0; i < ab->n_sets && st == MC_OK; i++) {
            const mc_ablate_row *r = &ab->rows[s * ab->n_sets + i];
            mc_run_log(run, "seed %llu, %s: spectral->text %.1f %%, matching %.1f %%, control %.1f %%",
                       (unsigned long long)base.seed, r->bands, 100 * r->text_acc, 100 * r->match_acc,
                       100 * r->control_text_acc);
        }
    }
    char csv[4096];
    if (st == MC_OK) st = mc_run_path(run, "ablation.csv", csv, sizeof csv);
    if (st == MC_OK) st = mc_write_file_atomic_with(csv, write_csv, ab);
    if (st == MC_OK) st = write_report(run, ab);
    if (st != MC_OK) return cli_fail_status(COMMAND, st);
    print_markdown(ab);
    printf("\ntable: %s\nreport: %s/report.html\n", csv, mc_run_dir(run));
    return 0;
}

int cmd_ablate(int argc, char **argv) {
    mc_demo_config defaults = mc_demo_defaults();
    ablate_args a = {.sets = DEFAULT_SETS, .seeds = "1", .out = "runs/ablate", .epochs = defaults.train.epochs};
    cli_opt opts[] = {
        CLI_STRING_OPT("--sets", &a.sets, "LIST;LIST: band sets, ';'-separated (each like B08,B11,B12, rgb or all)"),
        CLI_STRING_OPT("--seeds", &a.seeds, "S1,S2: seeds (the world, the CLIP, the weights, the data order)"),
        CLI_INT_OPT("--epochs", &a.epochs, 1, 100000, "E: the encoder's epochs"),
        CLI_STRING_OPT("--out", &a.out, "DIR: output folder"),
        CLI_FLAG_OPT("--tiny", &a.tiny, "the test suite's tiny sizes (seconds; low accuracy)"),
        CLI_FLAG_OPT("--no-control", &a.no_control, "skip the shuffled-pairs controls"),
        CLI_FLAG_OPT("--quiet", &a.quiet, "no progress lines or log, only the table"),
        CLI_END,
    };
    const cli_parser parser = {COMMAND, USAGE, NULL, opts, CLI_NO_OPERANDS};
    int code = cli_parse(&parser, argc, argv, NULL, NULL);
    if (code >= 0) return code;
    ablation ab = {0};
    code = parse_lists(&a, &ab);
    mc_run *run = NULL;
    if (!code && mc_run_open(&run, a.out, false) != MC_OK) code = cli_fail(COMMAND, "--out %s: %s", a.out, mc_last_error());
    if (!code) {
        mc_run_set_quiet(run, a.quiet);
        code = run_ablation(&a, opts, run, &ab);
    }
    mc_run_close(run);
    free_ablation(&ab);
    return code;
}
