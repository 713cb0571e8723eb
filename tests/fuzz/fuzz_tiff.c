/* GeoTIFF tiles as EuroSAT-MS has them (libtiff under our size checks). */
#include "fuzz_common.h"
#include "mmchain/mmchain.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mc_raster raster;
    if (mc_tiff_read(fuzz_write("input.tif", data, size), &raster) == MC_OK) mc_raster_free(&raster);
    return 0;
}
