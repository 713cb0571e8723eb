/* torchgeo split files of a small EuroSAT-MS folder. The input is
 * eurosat-train.txt up to its first NUL byte and eurosat-val.txt after it,
 * so the fuzzer reaches the checks across files (a tile in two splits). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz_common.h"
#include "mmchain/mmchain.h"

/* fuzz_dir()/ms/{Forest,River}/{Forest,River}_{0,1}.tif, made once. */
static const char *dataset(void) {
    static char ms[600];
    if (ms[0]) return ms;
    snprintf(ms, sizeof ms, "%s/ms", fuzz_dir());
    mkdir(ms, 0755);
    static const uint16_t pixels[2 * 2 * 13];
    const char *classes[] = {"Forest", "River"};
    for (int c = 0; c < 2; c++) {
        char folder[700], path[800];
        snprintf(folder, sizeof folder, "%s/%s", ms, classes[c]);
        mkdir(folder, 0755);
        for (int i = 0; i < 2; i++) {
            snprintf(path, sizeof path, "%s/%s_%d.tif", folder, classes[c], i);
            /* without the tiles every input would be refused, and the
             * target would test nothing while passing */
            if (mc_tiff_write_u16(path, pixels, 2, 2, 13) != MC_OK) {
                fprintf(stderr, "fuzz_split_file: cannot write %s: %s\n", path, mc_last_error());
                exit(1);
            }
        }
    }
    return ms;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *ms = dataset();
    char splits[600];
    snprintf(splits, sizeof splits, "%s/splits", fuzz_dir());
    mkdir(splits, 0755);
    const uint8_t *nul = memchr(data, 0, size);
    size_t train_len = nul ? (size_t)(nul - data) : size;
    char name[700];
    snprintf(name, sizeof name, "splits/eurosat-train.txt");
    fuzz_write(name, data, train_len);
    snprintf(name, sizeof name, "splits/eurosat-val.txt");
    fuzz_write(name, nul ? nul + 1 : data, nul ? size - train_len - 1 : 0);
    mc_eurosat_options options = mc_eurosat_default_options();
    options.split_dir = splits;
    mc_eurosat *ds = NULL;
    if (mc_eurosat_open(&ds, ms, &options) == MC_OK) mc_eurosat_free(ds);
    return 0;
}
