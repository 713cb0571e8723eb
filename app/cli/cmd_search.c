/* mmchain search — text -> tile retrieval in the joint space.
 *
 *     mmchain search --run RUN_DIR --text "a river crossing farmland" [--data DIR] [--top K]
 *
 * The trained encoder puts every tile's bands where CLIP puts its RGB view,
 * so CLIP's text embedding of a free query can rank tiles it has never seen
 * in RGB: by the cosine between the query's embedding and each tile's
 * spectral embedding. The tiles' embeddings (the index) are computed once and
 * kept in RUN_DIR/search-index.safetensors, written atomically; the index
 * records what it was made from (the checkpoint and every tile, with their
 * sizes and modification times) and is made again when any of that changes.
 * Prints the top K (score, path) and writes a contact sheet of their RGB
 * views (RUN_DIR/search.png unless --sheet). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chain_cli.h"

static const char *const COMMAND = "search";
static const char *const USAGE =
    "usage: mmchain search --run RUN_DIR --text \"QUERY\" [--data DIR] [--top K] [options]\n\n"
    "Ranks the tiles of DIR (a EuroSAT-MS layout folder; default: the run's --data) by the cosine\n"
    "between CLIP's text embedding of QUERY and each tile's spectral embedding by the run's encoder.\n"
    "Prints the top K with their scores and writes a contact sheet of their RGB views. The tiles'\n"
    "embeddings are cached in RUN_DIR/search-index.safetensors (made again when the data or the\n"
    "checkpoint changes).";

typedef struct search_args {
    const char *run, *text, *checkpoint, *which, *sheet;
    chain_data_args d; /* --data, --clip, --vocab: each defaults to the run's */
    int top, batch;
} search_args;

typedef struct search_setup {
    char data[4096], clip[4096], vocab[4096], checkpoint[4096], index[4096], sheet[4096];
    mc_spectral_encoder *enc;
    mc_eurosat *ds;
    mc_chain_data tiles;
    mc_tensor *embeds; /* (tiles, E) the index */
    mc_tensor *query;  /* (1, E) unit length */
} search_setup;

static void free_setup(search_setup *s) {
    mc_tensor_free(s->query);
    mc_tensor_free(s->embeds);
    mc_chain_data_free(&s->tiles);
    mc_eurosat_free(s->ds);
    mc_spectral_encoder_free(s->enc);
}

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* A flag's value, else the run's config.json value, else `fallback`
 * (relative to the run folder; NULL = none), into buf; false when none. */
static bool run_value(mc_run *run, const char *given, const char *key, const char *fallback, char *buf, size_t len) {
    if (given) snprintf(buf, len, "%s", given);
    else if (mc_run_config_get(run, key, buf, len) == MC_OK && buf[0]) return true;
    else if (fallback) mc_run_path(run, fallback, buf, len);
    else buf[0] = '\0';
    return buf[0] != '\0' && (given || exists(buf));
}

/* Where everything is: flags first, then the run's config.json, then the
 * files a demo run holds (clip/model.safetensors, clip/merges.txt). */
static int locate(const search_args *a, search_setup *s) {
    if (!a->run) return cli_fail(COMMAND, "--run RUN_DIR is required (see mmchain search --help)");
    if (!a->text || !a->text[0] || strspn(a->text, " \t\n") == strlen(a->text))
        return cli_fail(COMMAND, "--text: the query is empty");
    mc_run *run;
    if (mc_run_open_readonly(&run, a->run) != MC_OK) return cli_fail(COMMAND, "--run %s: %s", a->run, mc_last_error());
    bool have_data = run_value(run, a->d.data, "data", NULL, s->data, sizeof s->data);
    bool have_clip = run_value(run, a->d.clip, "clip", "clip/model.safetensors", s->clip, sizeof s->clip);
    bool have_vocab = run_value(run, a->d.vocab, "vocab", "clip/merges.txt", s->vocab, sizeof s->vocab);
    chain_cli_run_checkpoint(run, a->which, a->checkpoint, s->checkpoint, sizeof s->checkpoint);
    mc_run_path(run, "search-index.safetensors", s->index, sizeof s->index);
    if (a->sheet) snprintf(s->sheet, sizeof s->sheet, "%s", a->sheet);
    else mc_run_path(run, "search.png", s->sheet, sizeof s->sheet);
    mc_run_close(run);
    if (!have_data) return cli_fail(COMMAND, "--data DIR is required (the run names no data)");
    if (!have_clip) return cli_fail(COMMAND, "--clip FILE is required (the run names no CLIP)");
    if (!have_vocab) return cli_fail(COMMAND, "--vocab FILE is required (the run names no vocabulary)");
    return 0;
}

/* "path size mtime": what a file's content is taken to depend on. */
static void stamp(const char *path, char *buf, size_t len) {
    struct stat st;
    if (stat(path, &st) != 0) snprintf(buf, len, "%s - -\n", path);
    else snprintf(buf, len, "%s %lld %lld\n", path, (long long)st.st_size, (long long)st.st_mtime);
}

/* What the index is made from: the checkpoint and every tile. */
static char *index_source(const search_setup *s) {
    size_t cap = 4096, len = 0;
    char *text = malloc(cap), line[4200];
    for (int i = -1; text && i < s->tiles.count; i++) {
        stamp(i < 0 ? s->checkpoint : s->tiles.tile_key(s->tiles.ctx, i), line, sizeof line);
        size_t n = strlen(line);
        if (len + n + 1 > cap) {
            char *grown = realloc(text, cap = 2 * (len + n + 1));
            if (!grown) free(text);
            text = grown;
            if (!text) break;
        }
        memcpy(text + len, line, n + 1);
        len += n;
    }
    return text;
}

/* The cached index when it was made from exactly these files. */
static mc_tensor *read_index(const search_setup *s, const char *source) {
    mc_safetensors *f;
    mc_tensor *t = NULL;
    if (mc_safetensors_open(s->index, &f) != MC_OK) {
        mc_clear_error(); /* absent or unreadable: make it */
        return NULL;
    }
    const char *made_from = mc_safetensors_metadata(f, "source");
    if (made_from && strcmp(made_from, source) == 0 && mc_safetensors_read(f, "embeddings", &t) != MC_OK) t = NULL;
    if (t && (t->shape.ndim != 2 || t->shape.dim[0] != s->tiles.count || t->shape.dim[1] != s->enc->embed_dim)) {
        mc_tensor_free(t);
        t = NULL;
    }
    mc_safetensors_close(f);
    mc_clear_error();
    return t;
}

/* Every tile's spectral embedding, `batch` tiles at a time. */
static mc_status embed_tiles(search_setup *s, int batch) {
    const mc_chain_data *d = &s->tiles;
    MC_TRY(mc_tensor_new(&s->embeds, MC_SHAPE(d->count, s->enc->embed_dim), "embeddings"));
    int *items = malloc((size_t)batch * sizeof *items);
    mc_tensor *x = NULL;
    mc_status st = items ? MC_OK : mc_error(MC_ERR_NOMEM, "search: out of memory");
    for (int first = 0; first < d->count && st == MC_OK; first += batch) {
        int n = d->count - first < batch ? d->count - first : batch;
        for (int i = 0; i < n; i++) items[i] = first + i;
        st = mc_tensor_new(&x, MC_SHAPE(n, d->bands, d->height, d->width), "tiles");
        if (st == MC_OK) st = d->load(d->ctx, items, n, x, NULL, NULL);
        mc_tensor rows = mc_tensor_rows(s->embeds, first, n);
        if (st == MC_OK) st = mc_spectral_encoder_embed(s->enc, x, batch, &rows);
        mc_tensor_free(x);
        x = NULL;
    }
    free(items);
    return st;
}

/* The index: from the cache when it is current, else made and stored. */
static mc_status build_index(search_setup *s, int batch, bool *cached) {
    char *source = index_source(s);
    if (!source) return mc_error(MC_ERR_NOMEM, "search: out of memory");
    s->embeds = read_index(s, source);
    *cached = s->embeds != NULL;
    mc_status st = MC_OK;
    if (!s->embeds) {
        st = embed_tiles(s, batch);
        mc_metadata_entry meta[] = {{"format", "mmchain.search-index"}, {"source", source}};
        if (st == MC_OK) st = mc_safetensors_write(s->index, 1, &s->embeds, 2, meta);
    }
    free(source);
    return st;
}

static int open_inputs(const search_args *a, search_setup *s) {
    if (mc_spectral_encoder_load(s->checkpoint, &s->enc, NULL) != MC_OK)
        return cli_fail(COMMAND, "checkpoint %s: %s", s->checkpoint, mc_last_error());
    mc_eurosat_options options = mc_eurosat_default_options();
    if (mc_eurosat_open(&s->ds, s->data, &options) != MC_OK ||
        mc_chain_data_from_eurosat(&s->tiles, s->ds, MC_SPLIT_ALL, &s->enc->bands, &s->enc->norm) != MC_OK)
        return cli_fail(COMMAND, "--data %s: %s", s->data, mc_last_error());
    mc_clip *clip;
    int code = chain_cli_load_clip(COMMAND, s->clip, &clip);
    if (code) return code;
    mc_tokenizer *tok = NULL;
    const char *query = a->text, *whole = "{}"; /* the query as it is: no prompt template */
    mc_status st = clip->config.embed_dim == s->enc->embed_dim
                       ? mc_tokenizer_load(s->vocab, &tok)
                       : mc_error(MC_ERR_SHAPE, "the encoder outputs %d values, the CLIP %s has a %d-d joint space",
                                  s->enc->embed_dim, s->clip, clip->config.embed_dim);
    if (st == MC_OK) st = mc_chain_text_classifier(clip, tok, &query, 1, &whole, 1, &s->query);
    mc_tokenizer_free(tok);
    mc_clip_free(clip);
    return st == MC_OK ? 0 : cli_fail_status(COMMAND, st);
}

/* Tile numbers by descending cosine with the query. */
typedef struct scored {
    int tile;
    double score;
} scored;

static int by_score(const void *a, const void *b) {
    const scored *x = a, *y = b;
    return x->score < y->score ? 1 : x->score > y->score ? -1 : x->tile - y->tile;
}

static scored *rank_tiles(const search_setup *s) {
    const int n = s->tiles.count, e = s->enc->embed_dim;
    scored *order = malloc((size_t)n * sizeof *order);
    for (int i = 0; order && i < n; i++) {
        const float *v = s->embeds->data + (int64_t)i * e;
        double dot = 0.0, norm = 0.0;
        for (int d = 0; d < e; d++) {
            dot += (double)v[d] * s->query->data[d];
            norm += (double)v[d] * v[d];
        }
        order[i] = (scored){i, norm > 0 ? dot / sqrt(norm) : 0.0};
    }
    if (order) qsort(order, (size_t)n, sizeof *order, by_score);
    return order;
}

/* The RGB views of the top k, captioned with rank and score. */
static mc_status write_sheet(const search_setup *s, const scored *top, int k) {
    const mc_chain_data *d = &s->tiles;
    int *items = malloc((size_t)k * sizeof *items);
    char(*text)[32] = malloc((size_t)k * sizeof *text);
    const char **captions = malloc((size_t)k * sizeof *captions);
    mc_tensor *rgb = NULL;
    mc_status st = items && text && captions ? mc_tensor_new(&rgb, MC_SHAPE(k, 3, d->rgb_height, d->rgb_width), "rgb")
                                             : mc_error(MC_ERR_NOMEM, "search: out of memory");
    for (int i = 0; i < k && st == MC_OK; i++) {
        items[i] = top[i].tile;
        snprintf(text[i], sizeof text[i], "%d %.3f", i + 1, top[i].score);
        captions[i] = text[i];
    }
    if (st == MC_OK) st = d->load(d->ctx, items, k, NULL, rgb, NULL);
    if (st == MC_OK) st = mc_contact_sheet_write(s->sheet, rgb, captions, k < 8 ? k : 8, 2);
    mc_tensor_free(rgb);
    free(items);
    free(text);
    free(captions);
    return st;
}

static int search(const search_args *a, search_setup *s) {
    bool cached;
    mc_status st = build_index(s, a->batch, &cached);
    if (st != MC_OK) return cli_fail(COMMAND, "index %s: %s", s->index, mc_last_error());
    scored *order = rank_tiles(s);
    if (!order) return cli_fail(COMMAND, "out of memory");
    int k = a->top < s->tiles.count ? a->top : s->tiles.count;
    printf("query \"%s\": top %d of %d tiles (index %s%s)\n", a->text, k, s->tiles.count, s->index,
           cached ? ", from the cache" : ", made now");
    for (int i = 0; i < k; i++)
        printf("%3d  %.4f  %s\n", i + 1, order[i].score, s->tiles.tile_key(s->tiles.ctx, order[i].tile));
    st = write_sheet(s, order, k);
    free(order);
    if (st != MC_OK) return cli_fail(COMMAND, "--sheet %s: %s", s->sheet, mc_last_error());
    printf("contact sheet: %s\n", s->sheet);
    return 0;
}

int cmd_search(int argc, char **argv) {
    search_args a = {.which = "best", .d = chain_cli_data_defaults(), .top = 10, .batch = 64};
    cli_opt opts[] = {
        CLI_STRING_OPT("--run", &a.run, "DIR: a run folder of mmchain train (or demo)"),
        CLI_STRING_OPT("--text", &a.text, "QUERY: what to look for, in words"),
        CLI_STRING_OPT("--data", &a.d.data, "DIR: EuroSAT-MS layout folder of tiles (default: the run's)"),
        CLI_INT_OPT("--top", &a.top, 1, 1000, "K: how many tiles to show"),
        CLI_STRING_OPT("--which", &a.which, "best|last: the run's checkpoint"),
        CLI_STRING_OPT("--checkpoint", &a.checkpoint, "FILE: an encoder checkpoint instead of the run's"),
        CLI_STRING_OPT("--clip", &a.d.clip, "FILE: CLIP (default: the run's)"),
        CLI_STRING_OPT("--vocab", &a.d.vocab, "FILE: CLIP's vocabulary (default: the run's)"),
        CLI_STRING_OPT("--sheet", &a.sheet, "FILE.png: the contact sheet (default RUN_DIR/search.png)"),
        CLI_INT_OPT("--batch", &a.batch, 1, 100000, "B: tiles per encoder forward"),
        CLI_END,
    };
    int code = cli_parse_options(COMMAND, USAGE, opts, argc, argv);
    if (code >= 0) return code;
    if (chain_cli_check_which(COMMAND, a.which, cli_opt_find(opts, "--which")->given, a.checkpoint))
        return 1;
    search_setup *s = calloc(1, sizeof *s);
    if (!s) return cli_fail(COMMAND, "out of memory");
    code = locate(&a, s);
    if (!code) code = open_inputs(&a, s);
    if (!code) code = search(&a, s);
    free_setup(s);
    free(s);
    return code;
}
