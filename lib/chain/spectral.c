/* The spectral encoder: a ResNet over the selected Sentinel-2 bands with a
 * projection head into CLIP's joint space, plus InfoNCE's temperature.
 *
 * The seed paper takes an ImageNet ResNet-50, removes its classifier, feeds
 * three infrared bands where the RGB channels were and adds a Linear(2048,
 * 512) head. Here the head IS the ResNet's fc (fc_out = E), so the checkpoint
 * keeps torchvision's names ("fc.weight" (E, F)), and any depth and any band
 * count work (conv1's rule for N != 3 bands is in models.h). */
#include "mmchain/chain.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void mc_spectral_encoder_free(mc_spectral_encoder *enc) {
    if (!enc) return;
    mc_resnet_free(enc->resnet); /* owns conv1 ... fc */
    mc_tensor_free(enc->logit_scale);
    free(enc->params.items); /* the view's array only */
    free(enc);
}

/* enc->params = the ResNet's tensors followed by logit_scale, not owned. */
static mc_status build_param_view(mc_spectral_encoder *enc) {
    const mc_param_list *backbone = &enc->resnet->params;
    int count = backbone->count + 1;
    enc->params.items = malloc((size_t)count * sizeof *enc->params.items);
    if (!enc->params.items) return mc_error(MC_ERR_NOMEM, "spectral encoder: out of memory");
    memcpy(enc->params.items, backbone->items, (size_t)backbone->count * sizeof *backbone->items);
    enc->params.items[backbone->count] = enc->logit_scale;
    enc->params.count = enc->params.capacity = count;
    return MC_OK;
}

mc_status mc_spectral_encoder_new(mc_spectral_encoder **out, const mc_resnet_config *arch,
                                  const mc_bands *bands, const mc_norm *norm, int image_size,
                                  int embed_dim, float log_scale, bool learnable, uint64_t seed) {
    if (!out || !arch || !bands || !norm)
        return mc_error(MC_ERR_ARG, "spectral encoder: need an architecture, bands and a normalisation");
    if (bands->count < 1 || image_size < 8 || embed_dim < 1 || !isfinite(log_scale))
        return mc_error(MC_ERR_ARG,
                        "spectral encoder: %d bands, image size %d, embedding width %d, log scale %g "
                        "(expected >= 1 band, size >= 8, width >= 1, a finite scale)",
                        bands->count, image_size, embed_dim, (double)log_scale);
    mc_resnet_config config = *arch;
    config.in_channels = bands->count;
    config.fc_out = embed_dim;
    MC_TRY(mc_resnet_config_check(&config));
    mc_spectral_encoder *enc = calloc(1, sizeof *enc);
    if (!enc) return mc_error(MC_ERR_NOMEM, "spectral encoder: out of memory");
    enc->bands = *bands;
    enc->norm = *norm;
    enc->image_size = image_size;
    enc->embed_dim = embed_dim;
    mc_status status = mc_resnet_new(&enc->resnet, &config, seed);
    if (status == MC_OK) status = mc_tensor_new(&enc->logit_scale, MC_SHAPE(1), "logit_scale");
    if (status == MC_OK) {
        enc->logit_scale->data[0] = log_scale;
        status = mc_tensor_set_requires_grad(enc->logit_scale, learnable);
    }
    if (status == MC_OK) status = build_param_view(enc);
    if (status != MC_OK) {
        mc_spectral_encoder_free(enc);
        return status;
    }
    *out = enc;
    return MC_OK;
}

/* Positions of B04, B03, B02 (R, G, B) among the encoder's input bands, -1
 * where absent. Returns whether any is present. */
static bool rgb_positions(const mc_bands *bands, int positions[3]) {
    static const char *const rgb_names[3] = {"B04", "B03", "B02"};
    bool any = false;
    for (int c = 0; c < 3; c++) {
        positions[c] = -1;
        int file_index = mc_eurosat_band_index(rgb_names[c]);
        for (int i = 0; i < bands->count && positions[c] < 0; i++)
            if (bands->index[i] == file_index) positions[c] = i;
        any = any || positions[c] >= 0;
    }
    return any;
}

mc_status mc_spectral_encoder_load_imagenet(mc_spectral_encoder *enc, const char *path,
                                            char *report, size_t report_len) {
    if (!enc || !path) return mc_error(MC_ERR_ARG, "spectral encoder: no ImageNet weights path");
    int positions[3];
    mc_resnet_load_options options = mc_resnet_load_defaults();
    options.skip_fc = true; /* the head is new: 1000 ImageNet classes -> E */
    options.rgb_bands = rgb_positions(&enc->bands, positions) ? positions : NULL;
    mc_status status = mc_resnet_load_path(enc->resnet, path, &options, report, report_len);
    if (status != MC_OK)
        return mc_error_context(status, "ResNet weights %s: ", path);
    return MC_OK;
}

mc_status mc_spectral_encoder_forward(mc_spectral_encoder *enc, mc_graph *g, mc_tensor *x,
                                      mc_tensor **out) {
    char a[128];
    if (x->shape.ndim != 4 || x->shape.dim[1] != enc->bands.count)
        return mc_error(MC_ERR_SHAPE, "spectral encoder: input %s, expected (N, %d, H, W)",
                        mc_tensor_str(x, a, sizeof a), enc->bands.count);
    return mc_resnet_forward(enc->resnet, g, x, out);
}
