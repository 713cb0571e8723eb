/* CLIP's image preprocessing (OpenAI clip/clip.py, _transform): resize the
 * shorter side (bicubic), centre crop, normalise with CLIP's constants.
 * The resize and the crop are image.h's. */
#include "mmchain/clip.h"

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
