/* Images a batch at a time: the rows of a tensor, or a folder of images
 * decoded once and kept as bytes.
 *
 * Why bytes: EuroSAT's RGB release is 27,000 JPEG tiles of 3 x 64 x 64
 * 8-bit samples. As floats the set is 1.3 GB, and a pretraining run that
 * also kept split copies and a preprocessed copy peaked near 5 GB. Kept as
 * the decoder's bytes it is 332 MB, and a batch is converted (and resized)
 * when it is needed. The conversion is the decoder's own, k / 255.0f, and
 * the resize the one mc_image_folder_load applies, image by image, so a
 * batch holds the same floats bit for bit. */
#include "mmchain/pretrain.h"
#include "io/image_internal.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------------------
 * the rows of a tensor
 * ------------------------------------------------------------------------- */

static mc_status tensor_read(void *ctx, const int *indices, int n, mc_tensor *rows) {
    const mc_tensor *images = ctx;
    const int64_t row = images->numel / images->shape.dim[0];
    for (int i = 0; i < n; i++) {
        if (indices[i] < 0 || indices[i] >= images->shape.dim[0])
            return mc_error(MC_ERR_ARG, "image rows of %s: index %d outside 0..%lld", images->name, indices[i],
                            (long long)images->shape.dim[0] - 1);
        memcpy(rows->data + i * row, images->data + indices[i] * row, (size_t)row * sizeof(float));
    }
    return MC_OK;
}

mc_image_source mc_image_source_of_tensor(const mc_tensor *images) {
    return (mc_image_source){.count = (int)images->shape.dim[0], .height = (int)images->shape.dim[2],
                             .width = (int)images->shape.dim[3], .ctx = (void *)images, .read = tensor_read};
}

/* ---------------------------------------------------------------------------
 * a folder kept as bytes
 * ------------------------------------------------------------------------- */

/* One image at its own size: planes (1 grey or 3 colour) x h x w samples,
 * bytes, or floats when its values are not all k / 255.0f. */
typedef struct byte_image {
    void *samples;
    int planes, h, w;
    bool floats;
} byte_image;

struct mc_byte_images {
    int count;
    bool antialias;
    byte_image *images; /* (count) */
    int64_t bytes;
};

void mc_byte_images_free(mc_byte_images *images) {
    if (!images) return;
    for (int i = 0; images->images && i < images->count; i++) free(images->images[i].samples);
    free(images->images);
    free(images);
}

int64_t mc_byte_images_size(const mc_byte_images *images) { return images->bytes; }

/* The byte k whose k / 255.0f is v bit for bit, or -1 when there is none. */
static int exact_byte(float v) {
    if (!(v >= 0.0f && v <= 1.0f)) return -1;
    int k = (int)(v * 255.0f + 0.5f);
    float back = (float)k / 255.0f;
    return memcmp(&back, &v, sizeof v) == 0 ? k : -1;
}

/* Decode `path` and keep the planes a batch uses (mc_image_load_into's
 * choice: grey repeated, alpha dropped) as bytes when they are exact. */
static mc_status keep_image(const char *path, byte_image *out) {
    mc_tensor *image;
    MC_TRY(mc_image_read(path, &image));
    const int channels = (int)image->shape.dim[0];
    out->planes = channels < 3 ? 1 : 3;
    out->h = (int)image->shape.dim[1];
    out->w = (int)image->shape.dim[2];
    const size_t n = (size_t)out->planes * out->h * out->w;
    unsigned char *bytes = malloc(n);
    bool exact = bytes != NULL;
    for (size_t i = 0; exact && i < n; i++) {
        int k = exact_byte(image->data[i]);
        exact = k >= 0;
        bytes[i] = (unsigned char)k;
    }
    if (exact) {
        out->samples = bytes;
    } else { /* not 8-bit values (or no memory for bytes): the floats */
        free(bytes);
        out->floats = true;
        out->samples = malloc(n * sizeof(float));
        if (out->samples) memcpy(out->samples, image->data, n * sizeof(float));
    }
    mc_tensor_free(image);
    return out->samples ? MC_OK : mc_error(MC_ERR_NOMEM, "%s: out of memory for its pixels", path);
}

typedef struct keep_job {
    const mc_image_folder *folder;
    mc_byte_images *set;
} keep_job;

static mc_status keep_one(void *ctx, int i) {
    keep_job *job = ctx;
    return keep_image(job->folder->paths[i], &job->set->images[i]);
}

mc_status mc_byte_images_load(const mc_image_folder *folder, bool antialias, mc_byte_images **out) {
    if (!folder || !out) return mc_error(MC_ERR_ARG, "mc_byte_images_load: NULL argument");
    mc_byte_images *set = calloc(1, sizeof *set);
    if (set) set->images = calloc(folder->count > 0 ? (size_t)folder->count : 1, sizeof *set->images);
    if (!set || !set->images) {
        free(set);
        return mc_error(MC_ERR_NOMEM, "mc_byte_images_load: out of memory for %d images", folder->count);
    }
    set->count = folder->count;
    set->antialias = antialias;
    mc_status status = mc_image_each_in_parallel(folder->count, keep_one, &(keep_job){folder, set});
    if (status != MC_OK) {
        mc_byte_images_free(set);
        return status;
    }
    for (int i = 0; i < set->count; i++) {
        const byte_image *im = &set->images[i];
        set->bytes += (int64_t)im->planes * im->h * im->w * (im->floats ? (int64_t)sizeof(float) : 1);
    }
    *out = set;
    return MC_OK;
}

/* Image `im` into row i of rows (N, 3, H, W): what mc_image_load_into does
 * with the decoded file, on the kept samples. */
static mc_status image_into(const byte_image *im, bool antialias, mc_tensor *rows, int i) {
    mc_tensor *image = NULL;
    MC_TRY(mc_tensor_new(&image, MC_SHAPE(im->planes, im->h, im->w), "image"));
    const size_t n = (size_t)image->numel;
    if (im->floats) {
        memcpy(image->data, im->samples, n * sizeof(float));
    } else {
        const unsigned char *bytes = im->samples;
        for (size_t k = 0; k < n; k++) image->data[k] = (float)bytes[k] / 255.0f; /* the decoder's formula */
    }
    mc_status status = mc_image_put_row(image, antialias, rows, i);
    mc_tensor_free(image);
    return status;
}

typedef struct read_job {
    const mc_byte_images *set;
    const int *indices;
    mc_tensor *rows;
} read_job;

static mc_status read_one(void *ctx, int i) {
    read_job *job = ctx;
    return image_into(&job->set->images[job->indices[i]], job->set->antialias, job->rows, i);
}

static mc_status bytes_read(void *ctx, const int *indices, int n, mc_tensor *rows) {
    const mc_byte_images *set = ctx;
    for (int i = 0; i < n; i++)
        if (indices[i] < 0 || indices[i] >= set->count)
            return mc_error(MC_ERR_ARG, "images kept as bytes: index %d outside 0..%d", indices[i], set->count - 1);
    return mc_image_each_in_parallel(n, read_one, &(read_job){set, indices, rows});
}

mc_image_source mc_byte_images_source(const mc_byte_images *images, int height, int width) {
    return (mc_image_source){.count = images->count, .height = height, .width = width, .ctx = (void *)images,
                             .read = bytes_read};
}
