/* Captions for labelled images: the class name through a prompt template,
 * plus what can be measured on the scene.
 *
 * CLIP learned from alt-text written by people; our captions are written by
 * rules, which is enough for the text tower to learn that "river" and
 * "forest" name different images. The attributes make captions of one class
 * differ from each other (so a batch holds fewer identical captions) and tie
 * words to visible properties (haze, water, greenness, brightness), as real
 * captions do. The thresholds were set on the synthetic world's statistics
 * (quantiles over 1,000 tiles, seed 5): each attribute fires on a minority of
 * tiles, and on tiles of several classes. */
#include "mmchain/pretrain.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mmchain/data.h"

/* EuroSAT band order (data.h): B01 B02 B03 B04 B05 B06 B07 B08 B09 B10 B11 B12 B8A. */
enum { BAND_B01 = 0, BAND_B02 = 1, BAND_B03 = 2, BAND_B04 = 3, BAND_B08 = 7, BAND_B10 = 9, BAND_B11 = 10 };

/* Thresholds (see the comment at the top). */
#define HAZY_MIN_B01 0.13f      /* darkest B01 pixel: ~the 75th percentile of tiles */
#define CIRRUS_MIN_B10 0.002f   /* mean B10: only tiles under thin cloud exceed it */
#define LUSH_MIN_NDVI 0.55f     /* forests, pastures, green crops */
#define BARE_MAX_NDVI 0.15f     /* built-up land, bare soil (not water) */
#define WATER_MIN_FRACTION 0.1f /* rivers, lakes, shores */
#define WATER_MAX_SWIR 0.05f    /* water absorbs the SWIR: B11 reflectance ~0 */
#define BRIGHT_MIN 0.55f        /* mean RGB value: ~the 85th percentile */
#define DARK_MAX 0.28f          /* ~the 10th percentile */

const char *const mc_caption_templates[MC_CAPTION_NUM_TEMPLATES] = {
    "a satellite photo of {}",
    "a satellite image of {}",
    "an aerial photo of {}",
    "an aerial view of {}",
    "a centered satellite photo of {}",
    "a sentinel-2 image of {}",
    "{} seen from space",
    "an overhead view of {}",
};

/* ---------------------------------------------------------------------------
 * attributes
 * ------------------------------------------------------------------------- */

static mc_status check_image(const void *pixels, int h, int w, const mc_scene_attributes *out,
                             const char *what) {
    if (!pixels || !out || h < 1 || w < 1)
        return mc_error(MC_ERR_ARG, "%s: need pixels, an output and a size >= 1x1 (got %dx%d)", what,
                        h, w);
    return MC_OK;
}

mc_status mc_scene_attributes_from_tile(const float *tile, int h, int w, mc_scene_attributes *out) {
    MC_TRY(check_image(tile, h, w, out, "scene attributes of a tile"));
    const int64_t plane = (int64_t)h * w;
    const float *b01 = tile + BAND_B01 * plane, *green = tile + BAND_B03 * plane;
    const float *red = tile + BAND_B04 * plane, *blue = tile + BAND_B02 * plane;
    const float *nir = tile + BAND_B08 * plane, *b10 = tile + BAND_B10 * plane;
    const float *swir = tile + BAND_B11 * plane;
    double brightness = 0.0, ndvi = 0.0, water = 0.0, cirrus = 0.0;
    float darkest_b01 = INFINITY;
    for (int64_t p = 0; p < plane; p++) {
        /* The RGB view's brightness, on the release's 0..1 scale. */
        brightness += (mc_eurosat_rgb_value(red[p] * 10000.0f) + mc_eurosat_rgb_value(green[p] * 10000.0f) +
                       mc_eurosat_rgb_value(blue[p] * 10000.0f)) / 3.0;
        float sum = nir[p] + red[p];
        ndvi += sum > 1e-6f ? (nir[p] - red[p]) / sum : 0.0f;
        water += nir[p] < green[p] && swir[p] < WATER_MAX_SWIR;
        cirrus += b10[p];
        /* Dark-object subtraction's idea: the darkest pixel of a band is
         * mostly the atmosphere's path radiance, i.e. the haze. */
        if (b01[p] < darkest_b01) darkest_b01 = b01[p];
    }
    out->brightness = (float)(brightness / (double)plane);
    out->vegetation = (float)(ndvi / (double)plane);
    out->water = (float)(water / (double)plane);
    out->cirrus = (float)(cirrus / (double)plane);
    out->haze = darkest_b01;
    return MC_OK;
}

mc_status mc_scene_attributes_from_rgb(const float *rgb, int h, int w, mc_scene_attributes *out) {
    MC_TRY(check_image(rgb, h, w, out, "scene attributes of an RGB image"));
    const int64_t values = 3 * (int64_t)h * w;
    double sum = 0.0;
    for (int64_t i = 0; i < values; i++) sum += rgb[i];
    *out = (mc_scene_attributes){.brightness = (float)(sum / (double)values), .vegetation = -2.0f,
                                 .water = -1.0f, .haze = -1.0f, .cirrus = -1.0f};
    return MC_OK;
}

int mc_caption_phrases(const mc_scene_attributes *a, const char **phrases, int max) {
    int n = 0;
#define ADD(cond, text) \
    if ((cond) && n < max) phrases[n++] = (text)
    ADD(a->haze >= HAZY_MIN_B01, "hazy");
    ADD(a->cirrus >= CIRRUS_MIN_B10, "under thin cloud");
    ADD(a->water >= WATER_MIN_FRACTION, "with open water");
    ADD(a->vegetation >= LUSH_MIN_NDVI, "with lush green vegetation");
    ADD(a->vegetation >= -1.0f && a->vegetation <= BARE_MAX_NDVI && a->water >= 0.0f &&
            a->water < WATER_MIN_FRACTION,
        "with little vegetation");
    ADD(a->brightness >= BRIGHT_MIN, "bright");
    ADD(a->brightness >= 0.0f && a->brightness <= DARK_MAX, "dark");
#undef ADD
    return n;
}

/* ---------------------------------------------------------------------------
 * captions
 * ------------------------------------------------------------------------- */

/* Append text to buf (len bytes, holding *used); false when it does not fit. */
static bool append(char *buf, size_t len, size_t *used, const char *text, size_t text_len) {
    if (*used + text_len + 1 > len) return false;
    memcpy(buf + *used, text, text_len);
    *used += text_len;
    buf[*used] = '\0';
    return true;
}

/* The template with "{}" replaced by the article and the class phrase. */
static bool fill_template(const char *template, const char *article, const char *class_phrase,
                          char *buf, size_t len, size_t *used) {
    const char *slot = strstr(template, "{}");
    return append(buf, len, used, template, (size_t)(slot - template)) &&
           append(buf, len, used, article, strlen(article)) &&
           append(buf, len, used, class_phrase, strlen(class_phrase)) &&
           append(buf, len, used, slot + 2, strlen(slot + 2));
}

mc_status mc_caption_make(const char *class_phrase, const mc_scene_attributes *attrs, mc_rng *rng,
                          char *buf, size_t len) {
    if (!class_phrase || !rng || !buf || len == 0)
        return mc_error(MC_ERR_ARG, "caption: need a class phrase, an rng and a buffer");
    size_t used = 0;
    buf[0] = '\0';
    /* Articles and a final period vary as in people's captions (and as in
     * CLIP's EuroSAT prompts: "... of {}.", "... of a {}.", "... of the {}."). */
    static const char *const articles[3] = {"", "a ", "the "};
    const char *template = mc_caption_templates[mc_rng_below(rng, MC_CAPTION_NUM_TEMPLATES)];
    bool fits = fill_template(template, articles[mc_rng_below(rng, 3)], class_phrase, buf, len, &used);
    const char *phrases[8];
    int n = attrs ? mc_caption_phrases(attrs, phrases, 8) : 0;
    for (int i = 0; i < n && fits; i++)
        if (mc_rng_below(rng, 2)) fits = append(buf, len, &used, ", ", 2) &&
                                         append(buf, len, &used, phrases[i], strlen(phrases[i]));
    if (fits && mc_rng_below(rng, 2)) fits = append(buf, len, &used, ".", 1);
    if (!fits)
        return mc_error(MC_ERR_ARG, "caption for \"%s\" does not fit in %zu bytes", class_phrase, len);
    return MC_OK;
}

mc_status mc_captions_make(const char *const *class_phrases, int num_classes, const int *labels,
                           const mc_scene_attributes *attrs, int n, int per_image, uint64_t seed,
                           char ***out) {
    if (!class_phrases || !labels || !out || num_classes < 1 || n < 0 || per_image < 1)
        return mc_error(MC_ERR_ARG, "captions: need class phrases, labels, n >= 0 and >= 1 caption per image");
    int64_t total = (int64_t)n * per_image;
    char **captions = calloc(total > 0 ? (size_t)total : 1, sizeof *captions);
    if (!captions) return mc_error(MC_ERR_NOMEM, "captions: out of memory for %lld captions", (long long)total);
    mc_rng rng;
    mc_rng_seed(&rng, seed);
    mc_status status = MC_OK;
    char buf[512];
    for (int64_t c = 0; c < total && status == MC_OK; c++) {
        int i = (int)(c / per_image), label = labels[i];
        if (label < 0 || label >= num_classes) {
            status = mc_error(MC_ERR_ARG, "captions: image %d has label %d, outside 0..%d", i, label,
                              num_classes - 1);
            break;
        }
        status = mc_caption_make(class_phrases[label], attrs ? &attrs[i] : NULL, &rng, buf, sizeof buf);
        if (status == MC_OK && !(captions[c] = strdup(buf)))
            status = mc_error(MC_ERR_NOMEM, "captions: out of memory");
    }
    if (status != MC_OK) {
        mc_chain_strings_free(captions, (int)total);
        return status;
    }
    *out = captions;
    return MC_OK;
}
