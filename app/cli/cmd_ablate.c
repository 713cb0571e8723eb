/* mmchain ablate — which bands carry the signal.
 *
 *     mmchain ablate [--sets "B04,B03,B02;B05,B06,B07"] [--seeds 1,2,3] [--epochs E] [--out DIR]
 *
 * The same encoder, schedule and seeds trained on several band sets, each
 * also on shuffled pairs (the control), on the synthetic world (the demo's
 * world and CLIP, no download): one table of spectral->text, matching,
 * control and per-class accuracy, mean +- sd over the seeds, as markdown on
 * stdout, DIR/ablation.csv and DIR/report.html. With --data (a EuroSAT-MS
 * folder, --clip, --vocab) the same on real tiles: `mmchain train`'s encoder
 * and schedule (the paper's), scored on the test split. In both, each
 * encoder is scored with its last epoch's weights: no checkpoint is chosen. */
#include <errno.h>
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
    "With --data EUROSAT_MS_DIR --clip CLIP --vocab V: the same on EuroSAT-MS, with the encoder and\n"
    "schedule of mmchain train (--depth, --width, --layers, --resnet, --epochs, --batch, --lr),\n"
    "scored on the test split (each seed also draws the split).\n"
    "Default sets: RGB as spectral bands; the seed paper's three infrared bands; the three 20 m\n"
    "bands B8A,B11,B12; the red edge B05,B06,B07; all 13 bands.";

static const char *const DEFAULT_SETS = "B04,B03,B02;B08,B11,B12;B8A,B11,B12;B05,B06,B07;all";

typedef struct ablate_args {
    const char *sets, *seeds, *out;
    int epochs;
    bool tiny, quiet, no_control;
    bool overwrite; /* --overwrite: the ablation may replace a run in --out */
    /* --data: EuroSAT-MS with a given CLIP, mmchain train's encoder and
     * trainer (--batch and --lr bound to the trainer's options) */
    chain_data_args d;
    chain_encoder_args enc;
    mc_chain_train_config train;
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
    char class_names[MC_EUROSAT_NUM_CLASSES][64]; /* the columns' names (class folders) */
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
    for (int c = 0; c < k; c++) printf(" %s |", ab->class_names[c]);
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

/* One CSV cell, text + suffix, quoted (RFC 4180: quotes doubled) where
 * it holds a comma, a quote or a line break: class names are folder
 * names, and any character may be in them. */
static void write_csv_cell(FILE *f, const char *text, const char *suffix) {
    if (!strpbrk(text, ",\"\r\n")) {
        fprintf(f, "%s%s", text, suffix);
        return;
    }
    fputc('"', f);
    for (const char *c = text; *c; c++) {
        if (*c == '"') fputc('"', f);
        fputc(*c, f);
    }
    fprintf(f, "%s\"", suffix);
}

static mc_status write_csv(void *ctx, FILE *f) {
    const ablation *ab = ctx;
    const int k = ab->rows[0].num_classes;
    fprintf(f, "bands,seeds,spectral_text_acc,spectral_text_sd,match_acc,match_sd,control_text_acc,control_text_sd,"
               "rgb_text_acc,rgb_text_sd");
    for (int c = 0; c < k; c++) {
        fputc(',', f);
        write_csv_cell(f, ab->class_names[c], "_acc");
    }
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

/* "71.3 ± 2.0 %" ("71.3 %" without a spread), or "-" for a value not
 * measured (the control, with --no-control), as the report's tables say. */
static void mean_sd_percent(double mean, double sd, char *buf, size_t len) {
    if (!isfinite(mean) || !isfinite(sd)) mc_report_percent(mean, buf, len);
    else snprintf(buf, len, "%.1f ± %.1f %%", 100 * mean, 100 * sd);
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
    for (int c = 0; c < k; c++) class_names[c] = ab->class_names[c];
    for (int set = 0; set < n && status == MC_OK; set++) {
        double m[4], sd[4];
        for (int i = 0; i < 4; i++) column(ab, set, SUMMARY_PICKS[i], 0, &m[i], &sd[i]);
        char cells[4][48];
        for (int i = 0; i < 4; i++) mean_sd_percent(m[i], i == 3 ? NAN : sd[i], cells[i], sizeof cells[i]);
        snprintf(values[set], sizeof values[set],
                 "spectral->text %s, matching %s, control %s, RGB->text %s", cells[0], cells[1],
                 cells[2], cells[3]);
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
        errno = 0;
        ab->seeds[i] = strtoull(seeds[i], &end, 10);
        if (end == seeds[i] || *end || seeds[i][0] == '-' || errno == ERANGE)
            code = cli_fail(COMMAND, "--seeds: '%s' is not a seed (a whole number below 2^64)", seeds[i]);
    }
    mc_chain_strings_free(seeds, ab->n_seeds);
    if (code) return code;
    ab->rows = calloc((size_t)ab->n_seeds * (size_t)ab->n_sets, sizeof *ab->rows);
    return ab->rows ? 0 : cli_fail(COMMAND, "out of memory");
}

/* ---------------------------------------------------------------------------
 * --data: the ablation on EuroSAT-MS
 * ------------------------------------------------------------------------- */

/* What every band set of one seed shares: the tiles, the CLIP, the prompts
 * and the CLIP targets of the test tiles. */
typedef struct eurosat_seed {
    mc_eurosat *ds;
    mc_split test_split;
    mc_clip *clip;
    mc_tensor *classes, *test_targets;
    char **names;
    int n_names;
    mc_norm norm;
} eurosat_seed;

static void free_seed(eurosat_seed *e) {
    mc_tensor_free(e->test_targets);
    mc_tensor_free(e->classes);
    mc_chain_strings_free(e->names, e->n_names);
    mc_clip_free(e->clip);
    mc_eurosat_free(e->ds);
    memset(e, 0, sizeof *e);
}

static int open_seed(const ablate_args *a, uint64_t seed, const char *cache, eurosat_seed *e, ablation *ab) {
    chain_data_args d = a->d;
    d.eurosat.seed = seed;
    int code = chain_cli_open_eurosat(COMMAND, &d, &e->ds);
    if (!code) code = chain_cli_load_clip(COMMAND, d.clip, &e->clip);
    if (code) return code;
    const int *indices;
    int test_count = 0;
    mc_eurosat_split(e->ds, MC_SPLIT_TEST, &indices, &test_count);
    e->test_split = test_count > 0 ? MC_SPLIT_TEST : MC_SPLIT_VAL;
    const char *folders[MC_EUROSAT_NUM_CLASSES];
    int k = mc_eurosat_num_classes(e->ds);
    if (k > MC_EUROSAT_NUM_CLASSES)
        return cli_fail(COMMAND, "--data %s has %d classes, the ablation table holds %d", d.data, k,
                        MC_EUROSAT_NUM_CLASSES);
    for (int c = 0; c < k; c++) folders[c] = mc_eurosat_class_name(e->ds, c);
    for (int c = 0; c < k; c++) snprintf(ab->class_names[c], sizeof ab->class_names[c], "%s", folders[c]);
    code = chain_cli_classifier(COMMAND, e->clip, &d, folders, k, &e->classes, &e->names, &e->n_names);
    if (code) return code;
    mc_bands rgb;
    mc_chain_data test;
    mc_status st = mc_norm_init(&e->norm, MC_NORM_TORCHGEO);
    if (st == MC_OK) st = mc_bands_parse("rgb", &rgb);
    if (st == MC_OK) st = mc_chain_data_from_eurosat(&test, e->ds, e->test_split, &rgb, &e->norm);
    if (st == MC_OK) {
        st = mc_chain_targets(e->clip, &test, cache, mc_chain_train_defaults().clip_batch, &e->test_targets, NULL);
        mc_chain_data_free(&test);
    }
    return st == MC_OK ? 0 : cli_fail(COMMAND, "--data %s: %s", d.data, mc_last_error());
}

/* One band set of one seed: the encoder and its control, trained on the
 * training split (validated on the validation split), scored on the test. */
static mc_status eurosat_set(const ablate_args *a, const mc_resnet_config *arch, uint64_t seed, eurosat_seed *e,
                             const char *list, const char *cache, mc_ablate_row *row) {
    mc_bands bands;
    MC_TRY(mc_bands_parse(list, &bands));
    mc_chain_data data[3];
    memset(data, 0, sizeof data);
    const mc_split splits[3] = {MC_SPLIT_TRAIN, MC_SPLIT_VAL, e->test_split};
    mc_chain_metrics metrics[2];
    memset(metrics, 0, sizeof metrics);
    mc_status st = MC_OK;
    for (int k = 0; k < 3 && st == MC_OK; k++) st = mc_chain_data_from_eurosat(&data[k], e->ds, splits[k], &bands, &e->norm);
    for (int control = 0; control < (a->no_control ? 1 : 2) && st == MC_OK; control++) {
        mc_chain_train_config cfg = a->train;
        cfg.seed = seed;
        cfg.shuffle_pairs = control;
        cfg.cache_dir = cache;
        mc_spectral_encoder *enc = NULL;
        mc_chain_trainer *trainer = NULL;
        st = mc_spectral_encoder_new(&enc, arch, &bands, &e->norm, data[0].height, e->clip->config.embed_dim,
                                     logf(1.0f / cfg.temperature), false, seed);
        if (st == MC_OK && a->enc.resnet) st = mc_spectral_encoder_load_imagenet(enc, a->enc.resnet, NULL, 0);
        if (st == MC_OK) st = mc_chain_trainer_new(&trainer, &cfg, enc, e->clip, &data[0], &data[1], e->classes, NULL);
        if (st == MC_OK) st = mc_chain_trainer_run(trainer);
        if (st == MC_OK)
            st = mc_chain_evaluate(enc, &data[2], e->test_targets, e->classes, cfg.val_batch_size, cfg.symmetric,
                                   &metrics[control]);
        mc_chain_trainer_free(trainer);
        mc_spectral_encoder_free(enc);
    }
    if (st == MC_OK) {
        snprintf(row->bands, sizeof row->bands, "%s", list);
        row->text_acc = metrics[0].spectral_text_acc;
        row->match_acc = metrics[0].match_acc;
        row->rgb_text_acc = metrics[0].rgb_text_acc;
        row->control_text_acc = a->no_control ? NAN : metrics[1].spectral_text_acc;
        row->num_classes = metrics[0].num_classes < MC_EUROSAT_NUM_CLASSES ? metrics[0].num_classes
                                                                           : MC_EUROSAT_NUM_CLASSES;
        for (int c = 0; c < row->num_classes; c++) row->class_acc[c] = metrics[0].spectral_class_acc[c];
    }
    for (int k = 0; k < 2; k++) mc_chain_metrics_free(&metrics[k]);
    for (int k = 0; k < 3; k++) mc_chain_data_free(&data[k]);
    return st;
}

static mc_status eurosat_ablation(ablate_args *a, mc_run *run, ablation *ab, int *code) {
    char cache[4096];
    if (a->epochs > 0) a->train.epochs = a->epochs; /* else the trainer's default */
    mc_resnet_config arch;
    *code = chain_cli_encoder_arch(COMMAND, &a->enc, &arch);
    if (*code) return MC_OK;
    MC_TRY(mc_run_path(run, "cache", cache, sizeof cache));
    mc_status st = MC_OK;
    for (int s = 0; s < ab->n_seeds && st == MC_OK && !*code; s++) {
        eurosat_seed e = {0};
        *code = open_seed(a, ab->seeds[s], cache, &e, ab);
        for (int i = 0; i < ab->n_sets && st == MC_OK && !*code; i++) {
            mc_run_log(run, "seed %llu: %s", (unsigned long long)ab->seeds[s], ab->sets[i]);
            st = eurosat_set(a, &arch, ab->seeds[s], &e, ab->sets[i], cache, ab->rows + s * ab->n_sets + i);
        }
        free_seed(&e);
    }
    return st;
}

static int run_ablation(ablate_args *a, mc_run *run, ablation *ab) {
    mc_demo_config base = a->tiny ? mc_demo_tiny() : mc_demo_defaults();
    base.quiet = a->quiet;
    base.control = !a->no_control;
    if (a->epochs > 0) base.train.epochs = a->epochs;
    for (int c = 0; c < MC_SYNTH_CLASSES; c++)
        snprintf(ab->class_names[c], sizeof ab->class_names[c], "%s", mc_synth_class_name(c));
    mc_metadata_entry config[] = {{"command", "ablate"}, {"sets", a->sets}, {"seeds", a->seeds},
                                  {"sizes", a->tiny ? "tiny" : "demo"}, {"control", base.control ? "true" : "false"}};
    if (a->d.data) config[3] = (mc_metadata_entry){"data", a->d.data};
    mc_status st = mc_run_write_config(run, 5, config);
    int code = 0;
    if (a->d.data && st == MC_OK) st = eurosat_ablation(a, run, ab, &code);
    if (code) return code;
    for (int s = 0; s < ab->n_seeds && st == MC_OK && !a->d.data; s++) {
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

/* The options of the two sources checked together, before the run folder
 * is opened: without --data (the synthetic world, the demo's sizes or
 * --tiny's) the EuroSAT and encoder options would be ignored, so they are
 * refused; with --data, --tiny (the world's sizes) is, and the encoder's
 * architecture and the CLIP files are checked. Returns 0 or the exit code. */
static int check_sources(const ablate_args *a, cli_opt *opts) {
    static const char *const data_only[] = {"--rgb",        "--clip",   "--vocab", "--splits",
                                            "--train-size", "--val-size", "--resnet", "--depth",
                                            "--width",      "--layers", "--batch", "--lr"};
    if (!a->d.data) {
        for (size_t i = 0; i < sizeof data_only / sizeof data_only[0]; i++)
            if (cli_opt_find(opts, data_only[i])->given)
                return cli_fail(COMMAND, "%s goes with --data (EuroSAT); the synthetic world "
                                "takes the demo's sizes, or --tiny's", data_only[i]);
        return 0;
    }
    if (a->tiny)
        return cli_fail(COMMAND, "--tiny sets the synthetic world's sizes: it cannot go with --data");
    if (!a->d.clip) return cli_fail(COMMAND, "--data needs --clip CLIP.safetensors (a Hugging Face CLIPModel)");
    if (!a->d.vocab) return cli_fail(COMMAND, "--data needs --vocab (CLIP's merges.txt)");
    mc_resnet_config arch;
    return chain_cli_encoder_arch(COMMAND, &a->enc, &arch);
}

int cmd_ablate(int argc, char **argv) {
    ablate_args a = {.sets = DEFAULT_SETS, .seeds = "1", .out = "runs/ablate", .d = chain_cli_data_defaults(),
                     .enc = chain_cli_encoder_defaults(), .train = mc_chain_train_defaults()};
    cli_opt opts[] = {
        CLI_STRING_OPT("--sets", &a.sets, "LIST;LIST: band sets, ';'-separated (each like B08,B11,B12, rgb or all)"),
        CLI_STRING_OPT("--seeds", &a.seeds, "S1,S2: seeds (the world, the CLIP, the weights, the data order)"),
        CLI_INT_OPT("--epochs", &a.epochs, 0, 100000, "E: the encoder's epochs (0: the demo's, or train's with --data)"),
        CLI_STRING_OPT("--out", &a.out, "DIR: output folder"),
        CHAIN_CLI_OVERWRITE_OPT(&a.overwrite),
        CLI_FLAG_OPT("--tiny", &a.tiny, "the test suite's tiny sizes (seconds; low accuracy)"),
        CLI_FLAG_OPT("--no-control", &a.no_control, "skip the shuffled-pairs controls"),
        CLI_FLAG_OPT("--quiet", &a.quiet, "no progress lines or log, only the table"),
        CLI_STRING_OPT("--data", &a.d.data, "DIR: EuroSAT-MS folder instead of the synthetic world"),
        CLI_STRING_OPT("--rgb", &a.d.eurosat.rgb_dir, "DIR: with --data, EuroSAT RGB release (default: RGB from B04,B03,B02)"),
        CLI_STRING_OPT("--clip", &a.d.clip, "FILE: with --data, CLIP (Hugging Face CLIPModel safetensors)"),
        CLI_STRING_OPT("--vocab", &a.d.vocab, "FILE: with --data, CLIP's merges.txt"),
        CLI_STRING_OPT("--splits", &a.d.eurosat.split_dir, "DIR: with --data, torchgeo's eurosat-{train,val,test}.txt"),
        CLI_INT_OPT("--train-size", &a.d.eurosat.train_size, 0, 100000000, "N: with --data, training tiles"),
        CLI_INT_OPT("--val-size", &a.d.eurosat.val_size, 0, 100000000, "N: with --data, validation tiles"),
        CLI_STRING_OPT("--resnet", &a.enc.resnet, "FILE: with --data, ImageNet ResNet weights"),
        CLI_INT_OPT("--depth", &a.enc.depth, 18, 152, "N: with --data, ResNet depth"),
        CLI_INT_OPT("--width", &a.enc.width, 1, 4096, "W: with --data, ResNet base width"),
        CLI_STRING_OPT("--layers", &a.enc.layers, "A,B,C,D: with --data, blocks per stage"),
        CLI_INT_OPT("--batch", &a.train.batch_size, 2, 100000, "B: with --data, training batch"),
        CLI_FLOAT_OPT("--lr", &a.train.lr, 1e-12, 10, "LR: with --data, Adam learning rate"),
        CLI_END,
    };
    int code = cli_parse_options(COMMAND, USAGE, opts, argc, argv);
    if (code >= 0) return code;
    ablation ab = {0};
    code = parse_lists(&a, &ab);
    if (!code) code = check_sources(&a, opts);
    if (!code) code = chain_cli_check_out(COMMAND, a.out, a.overwrite, false);
    mc_run *run = NULL;
    if (!code && mc_run_open(&run, a.out, chain_cli_run_mode(a.overwrite)) != MC_OK)
        code = cli_fail(COMMAND, "--out %s: %s", a.out, mc_last_error());
    if (!code) {
        mc_run_set_quiet(run, a.quiet);
        code = run_ablation(&a, run, &ab);
    }
    mc_run_close(run);
    free_ablation(&ab);
    return code;
}
