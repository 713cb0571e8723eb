/* ResNet weights in torchvision naming (conv1, bn1, layerS.J.convU,
 * downsample.0/1, fc), the way the program reads them:
 *   - embed --model resnet: the architecture derived from the file
 *     (mc_resnet_config_from_file: block kind, blocks per stage, width,
 *     checked tensor by tensor), the model built, every tensor loaded;
 *   - train --resnet: ImageNet weights loaded into a spectral encoder of
 *     that architecture over N != 3 bands, conv1 derived from the file's RGB
 *     kernels, with the R, G, B bands among the inputs (B02,B03,B04,B08)
 *     and without them (B11,B12).
 * Each load's heap is bounded by the file's size (fuzz_common.h). */
#include <math.h>

#include "fuzz_common.h"
#include "mmchain/mmchain.h"

/* The file's own architecture, built and loaded (fc from the file). */
static void load_as_file_says(const char *path, size_t size) {
    mc_safetensors *f = NULL;
    if (mc_safetensors_open(path, &f) != MC_OK) return;
    mc_resnet_config config;
    mc_resnet *model = NULL;
    fuzz_heap_begin();
    mc_status status = mc_resnet_config_from_file(f, &config);
    if (status == MC_OK) status = mc_resnet_new(&model, &config, 1);
    if (status == MC_OK) {
        mc_resnet_load_options options = mc_resnet_load_defaults();
        char report[256];
        (void)mc_resnet_load(model, f, &options, report, sizeof report);
    }
    fuzz_heap_check("mc_resnet_config_from_file + mc_resnet_load", size);
    mc_resnet_free(model);
    mc_safetensors_close(f);
}

/* ImageNet weights into a new spectral encoder over `bands`. */
static void load_into_encoder(const char *path, size_t size, const char *bands_text) {
    mc_safetensors *f = NULL;
    if (mc_safetensors_open(path, &f) != MC_OK) return;
    mc_resnet_config arch;
    mc_status status = mc_resnet_config_from_file(f, &arch);
    mc_safetensors_close(f);
    if (status != MC_OK) return;
    mc_bands bands;
    mc_norm norm;
    if (mc_bands_parse(bands_text, &bands) != MC_OK || mc_norm_init(&norm, MC_NORM_TORCHGEO) != MC_OK)
        return;
    mc_spectral_encoder *enc = NULL;
    fuzz_heap_begin();
    status = mc_spectral_encoder_new(&enc, &arch, &bands, &norm, 32, 4, logf(1 / 0.07f), true, 1);
    if (status == MC_OK) {
        char report[256];
        (void)mc_spectral_encoder_load_imagenet(enc, path, report, sizeof report);
    }
    fuzz_heap_check("mc_spectral_encoder_load_imagenet", size);
    mc_spectral_encoder_free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("resnet.safetensors", data, size);
    load_as_file_says(path, size);
    load_into_encoder(path, size, "B02,B03,B04,B08");
    load_into_encoder(path, size, "B11,B12");
    mc_clear_error();
    return 0;
}
