/* CLIP's image preprocessing (OpenAI clip/clip.py, _transform): resize the
 * shorter side (bicubic), centre crop, normalise with CLIP's constants.
 * The resize and the crop are image.h's. */
#include "mmchain/clip.h"

#include <string.h>

#include "mmchain/image.h"

/* OpenAI CLIP, clip/clip.py _transform(): Normalize(mean, std). */
const float mc_clip_mean[3] = {0.48145466f, 0.4578275f, 0.40821073f};
const float mc_clip_std[3] = {0.26862954f, 0.26130258f, 0.27577711f};

mc_status mc_image_clip_normalize(mc_tensor *image) {
    char buf[160];
    if (!image) return mc_error(MC_ERR_ARG, "mc_image_clip_normalize: NULL image");
    int nd = image->shape.ndim;
    if ((nd != 3 && nd != 4) || image->shape.dim[nd - 3] != 3)
        return mc_error(MC_ERR_SHAPE, "mc_image_clip_normalize: image %s must be (3, H, W) or (N, 3, H, W)",
                        mc_tensor_str(image, buf, sizeof buf));
    int64_t plane = image->shape.dim[nd - 2] * image->shape.dim[nd - 1];
    int64_t planes = image->numel / plane;
    for (int64_t p = 0; p < planes; p++) {
        int c = (int)(p % 3);
        float *x = image->data + p * plane;
        for (int64_t i = 0; i < plane; i++) x[i] = (x[i] - mc_clip_mean[c]) / mc_clip_std[c];
    }
    return MC_OK;
}

mc_status mc_clip_preprocess(const mc_tensor *images, int size, bool antialias, mc_tensor **out) {
    char buf[160];
    if (!images || !out) return mc_error(MC_ERR_ARG, "mc_clip_preprocess: NULL argument");
    int nd = images->shape.ndim;
    if ((nd != 3 && nd != 4) || images->shape.dim[nd - 3] != 3)
        return mc_error(MC_ERR_SHAPE, "mc_clip_preprocess: images %s must be (3, H, W) or (N, 3, H, W)",
                        mc_tensor_str(images, buf, sizeof buf));
    mc_tensor *resized = NULL, *cropped = NULL;
    MC_TRY(mc_image_resize_shorter(images, size, antialias, &resized));
    mc_status status = mc_image_center_crop(resized, size, size, &cropped);
    mc_tensor_free(resized);
    if (status == MC_OK) status = mc_image_clip_normalize(cropped);
    if (status == MC_OK && nd == 3)
        status = mc_tensor_reshape_inplace(cropped, MC_SHAPE(1, 3, size, size));
    if (status != MC_OK) {
        mc_tensor_free(cropped);
        return status;
    }
    *out = cropped;
    return MC_OK;
}

/* The same pixels on g's arena. A trainer embeds a batch of crops every
 * step: on the heap its three image-sized buffers (the rows resampled, the
 * resized images, the crop) were fresh memory each time, and filling fresh
 * pages cost about as much as the resampling itself. Square images (the
 * tiles) resize straight into the result: their resized size is size x
 * size, so the centre crop is the whole image. */
mc_status mc_clip_preprocess_on(mc_graph *g, const mc_tensor *images, int size, bool antialias,
                                mc_tensor **out) {
    char buf[160];
    if (!g || !images || !out) return mc_error(MC_ERR_ARG, "mc_clip_preprocess_on: NULL argument");
    if (images->shape.ndim != 4 || images->shape.dim[1] != 3)
        return mc_error(MC_ERR_SHAPE, "mc_clip_preprocess_on: images %s must be (N, 3, H, W)",
                        mc_tensor_str(images, buf, sizeof buf));
    const int64_t n = images->shape.dim[0];
    mc_tensor *pixels;
    MC_TRY(mc_graph_tensor_uninit(g, MC_SHAPE(n, 3, size, size), "pixels", &pixels));
    if (images->shape.dim[2] != images->shape.dim[3]) { /* resize, crop, normalise on the heap */
        mc_tensor *heap;
        MC_TRY(mc_clip_preprocess(images, size, antialias, &heap));
        memcpy(pixels->data, heap->data, (size_t)heap->numel * sizeof(float));
        mc_tensor_free(heap);
        *out = pixels;
        return MC_OK;
    }
    mc_tensor *scratch;
    MC_TRY(mc_graph_tensor_uninit(g, MC_SHAPE(mc_image_resize_scratch_floats(images, size)), "resize_rows",
                                  &scratch));
    MC_TRY(mc_image_resize_into(images, antialias, scratch->data, pixels));
    MC_TRY(mc_image_clip_normalize(pixels));
    *out = pixels;
    return MC_OK;
}
