/* mmchain — data augmentation: random crops, flips and quarter turns.
 *
 * For nadir satellite tiles every flip and every 90-degree rotation is as
 * plausible as the original, and the seed paper crops both views of a pair
 * (spectral tile and RGB image). The views may have different sizes (a 64x64
 * spectral tile and a 224x224 RGB image), so a crop box is given in RELATIVE
 * coordinates (fractions of the image's height and width): the same box
 * cuts the same piece of ground out of both.
 *
 * Images are float tensors at the NCHW boundary: one image (C, H, W) or a
 * batch (N, C, H, W). Augmentation is data preparation, not an op: nothing
 * is recorded on a tape.
 *
 * One augmentation = mc_augment_params, applied in this order:
 *   1. crop the box (y0, x0, h, w) and bring it back to the image's own
 *      size H x W:
 *        MC_CROP_RESIZE: bilinear resampling with PyTorch's
 *          interpolate(mode="bilinear", align_corners=False) convention: out
 *          pixel i reads source row y0*H + (i + 0.5) * (h*H / H) - 0.5,
 *          clamped to the pixel centres inside the box (its border pixels
 *          repeat). For a box on whole pixels this equals torchvision's
 *          resized_crop (crop, then bilinear resize, antialias off). The box
 *          must lie inside the image;
 *        MC_CROP_PAD: a shift with zero padding, torchvision's
 *          RandomCrop(size, padding): out(i, j) = in(i + dy, j + dx) with
 *          dy = round(y0 * H), dx = round(x0 * W), zero outside the image;
 *          h and w are ignored (the window has the image's size);
 *   2. hflip: mirror left-right (torch.flip(x, [-1]));
 *   3. vflip: mirror top-bottom (torch.flip(x, [-2]));
 *   4. rot90 = k quarter turns counter-clockwise, torch.rot90(x, k, (-2, -1)).
 *      An odd k needs a square image (the output keeps the input's shape). */
#ifndef MMCHAIN_AUGMENT_H
#define MMCHAIN_AUGMENT_H

#include <stdbool.h>

#include "error.h"
#include "rng.h"
#include "tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum mc_crop_mode {
    MC_CROP_RESIZE = 0, /* crop the box, resize it back (bilinear) */
    MC_CROP_PAD         /* shift by (y0, x0), zero-fill (torchvision RandomCrop with padding) */
} mc_crop_mode;

typedef struct mc_augment_params {
    mc_crop_mode mode;
    float y0, x0; /* box corner, fractions of H and W (MC_CROP_PAD: the shift, may be < 0) */
    float h, w;   /* box size, fractions of H and W, in (0, 1] (MC_CROP_RESIZE) */
    bool hflip, vflip;
    int rot90;    /* quarter turns counter-clockwise, 0..3 */
} mc_augment_params;

/* What mc_augment_sample draws from. */
typedef struct mc_augment_config {
    mc_crop_mode mode;
    /* MC_CROP_RESIZE: the box side as a fraction of the image side, uniform
     * in [crop_min, crop_max] (the box is square in relative terms), placed
     * uniformly inside the image. 1, 1 = no crop. */
    float crop_min, crop_max;
    /* MC_CROP_PAD: the shift, uniform in [-pad, pad] (fraction of the side;
     * torchvision's padding / size). */
    float pad;
    bool hflip, vflip, rot90; /* each flip with probability 1/2, k uniform in 0..3 */
} mc_augment_config;

/* The box (0, 0, 1, 1), no flip, no turn: the identity. */
mc_augment_params mc_augment_identity(void);
/* Resize crops of 0.8..1 of the side, both flips, quarter turns. */
mc_augment_config mc_augment_default_config(void);

/* Draw one augmentation. Always consumes exactly six numbers from rng,
 * whatever the config enables, so a stream stays aligned when options change. */
void mc_augment_sample(mc_rng *rng, const mc_augment_config *config, mc_augment_params *out);

/* Apply params to x and write out (same shape as x; out may be x itself).
 *   x: (C, H, W) with n_params = 1, or (N, C, H, W) with n_params = N (one
 *      per image) or 1 (the same for every image).
 * Errors: shapes, a box outside the image, an odd rot90 on a non-square image. */
mc_status mc_augment_apply(const mc_tensor *x, const mc_augment_params *params, int n_params,
                           mc_tensor *out);

/* Augment the two views of a batch of pairs: a (N, Ca, Ha, Wa) and
 * b (N, Cb, Hb, Wb) with the same N (or two single images). For each pair k,
 * params for a are drawn, then — unless `shared` — params for b; with
 * `shared` both views get the same box, flips and turn. a_out / b_out may be
 * a / b. Reproducible: the same rng state gives the same result. */
mc_status mc_augment_pair(mc_rng *rng, const mc_augment_config *config, bool shared,
                          const mc_tensor *a, mc_tensor *a_out, const mc_tensor *b, mc_tensor *b_out);

#ifdef __cplusplus
}
#endif
#endif
