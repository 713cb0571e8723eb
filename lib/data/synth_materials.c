/* The synthetic world's materials: 13-band surface reflectances.
 *
 * Each row is a material's hemispherical reflectance (0..1) at the centres
 * of the Sentinel-2 bands, in EuroSAT file order. Band centres are ESA's
 * for Sentinel-2A (Sentinel-2 User Handbook / MSI spectral response
 * functions, nm):
 *
 *     B01 442.7  B02 492.4  B03 559.8  B04 664.6  B05 704.1  B06 740.5
 *     B07 782.8  B08 832.8  B09 945.1  B10 1373.5 B11 1613.7 B12 2202.4
 *     B8A 864.7
 *
 * The values are rounded readings of the shapes of public library spectra
 * at those wavelengths — they are representative, not a resampling of one
 * particular sample:
 *   - USGS Spectral Library Version 7 (Kokaly et al., 2017, USGS Data
 *     Series 1035, doi:10.3133/ds1035): green and dry grass (the
 *     "Lawn_Grass", "Grass_dry" vegetation spectra), the AVIRIS-derived
 *     forest stands (e.g. "Espruce-Sfir YNP-SF-2" conifer, aspen broadleaf),
 *     soils, and the man-made chapter (asphalt road, concrete, roofing);
 *   - ECOSTRESS Spectral Library 1.0 (Meerdink et al., 2019, formerly ASTER;
 *     Baldridge et al., 2009): tap / sea water, soils, construction
 *     materials (asphalt, concrete, terracotta roof tile, galvanised sheet
 *     metal).
 * The features that matter and that the tests check:
 *   - vegetation: chlorophyll absorption in the blue and red (B02, B04 low),
 *     a green bump (B03), the red edge (B05 -> B07 steep rise) and a high
 *     NIR plateau (B08, B8A), leaf-water dips towards B11 and B12;
 *     conifers are darker than broadleaf trees in the NIR;
 *   - senescent vegetation: no red absorption, NIR lower, SWIR higher;
 *   - water: highest in the blue/green, near zero beyond 750 nm (clear
 *     water absorbs NIR and SWIR), turbid water brighter and greener;
 *   - soils: reflectance rising steadily from the blue into the SWIR;
 *   - asphalt dark and flat, slowly rising; concrete bright and flat;
 *     clay roof tiles red (a sharp rise at 600 nm, iron oxides) and bright
 *     in the SWIR; grey and white roofs flat.
 * B10 (cirrus, 1375 nm) sees almost nothing of the ground (water vapour
 * absorbs it); its surface values matter little (see synth.c). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "synth_internal.h"

typedef struct material_row {
    const char *name;
    float r[SYNTH_B]; /* B01 B02 B03 B04 B05 B06 B07 B08 B09 B10 B11 B12 B8A */
} material_row;

static const material_row materials[MAT_COUNT] = {
    /*                             B01   B02   B03   B04   B05   B06   B07   B08   B09   B10   B11   B12   B8A */
    [MAT_GREEN_VEGETATION]     = {"green vegetation",
                                  {.025f, .035f, .080f, .035f, .110f, .300f, .400f, .440f, .420f, .120f, .230f, .110f, .450f}},
    [MAT_SENESCENT_VEGETATION] = {"senescent vegetation",
                                  {.060f, .080f, .120f, .160f, .200f, .230f, .260f, .280f, .290f, .150f, .360f, .250f, .290f}},
    [MAT_CONIFER_FOREST]       = {"conifer forest",
                                  {.020f, .025f, .045f, .022f, .070f, .170f, .230f, .250f, .240f, .060f, .120f, .050f, .260f}},
    [MAT_BROADLEAF_FOREST]     = {"broadleaf forest",
                                  {.025f, .032f, .070f, .030f, .100f, .280f, .370f, .400f, .390f, .090f, .190f, .085f, .410f}},
    [MAT_SHRUB]                = {"shrub",
                                  {.030f, .040f, .070f, .050f, .100f, .220f, .280f, .300f, .300f, .100f, .230f, .120f, .310f}},
    [MAT_CLEAR_WATER]          = {"clear water",
                                  {.060f, .055f, .045f, .020f, .012f, .008f, .006f, .005f, .004f, .002f, .002f, .001f, .004f}},
    [MAT_TURBID_WATER]         = {"turbid water",
                                  {.070f, .075f, .095f, .070f, .060f, .035f, .028f, .024f, .015f, .003f, .004f, .002f, .022f}},
    [MAT_MOIST_SOIL]           = {"moist soil",
                                  {.050f, .060f, .085f, .120f, .140f, .155f, .170f, .180f, .190f, .180f, .240f, .190f, .185f}},
    [MAT_DRY_SOIL]             = {"dry soil",
                                  {.110f, .140f, .200f, .260f, .290f, .310f, .320f, .330f, .340f, .320f, .380f, .330f, .335f}},
    [MAT_ASPHALT]              = {"asphalt",
                                  {.050f, .055f, .060f, .065f, .068f, .072f, .076f, .080f, .082f, .090f, .100f, .095f, .081f}},
    [MAT_CONCRETE]             = {"concrete",
                                  {.180f, .210f, .250f, .280f, .290f, .300f, .310f, .315f, .320f, .300f, .330f, .290f, .318f}},
    [MAT_RED_ROOF]             = {"red roof",
                                  {.060f, .065f, .085f, .220f, .290f, .330f, .350f, .360f, .370f, .350f, .420f, .380f, .365f}},
    [MAT_GREY_ROOF]            = {"grey roof",
                                  {.090f, .095f, .100f, .105f, .105f, .108f, .110f, .112f, .113f, .110f, .110f, .100f, .113f}},
    [MAT_BRIGHT_ROOF]          = {"bright roof",
                                  {.300f, .320f, .340f, .350f, .350f, .350f, .350f, .350f, .350f, .330f, .330f, .290f, .350f}},
};

synth_spectrum mc_synth_material_spectrum(synth_material_id id) {
    synth_spectrum s;
    memcpy(s.r, materials[id].r, sizeof s.r);
    return s;
}

synth_spectrum mc_synth_mix(synth_spectrum a, synth_spectrum b, float t) {
    synth_spectrum m;
    for (int i = 0; i < SYNTH_B; i++) m.r[i] = (1.0f - t) * a.r[i] + t * b.r[i];
    return m;
}

synth_spectrum mc_synth_scaled(synth_spectrum a, float k) {
    for (int i = 0; i < SYNTH_B; i++) a.r[i] *= k;
    return a;
}

synth_spectrum mc_synth_vary(mc_rng *rng, synth_spectrum a, float amount) {
    float gain = 1.0f + amount * (float)mc_rng_normal(rng);
    /* A tilt in the band index (visible vs infrared), smaller than the gain:
     * real samples of one material differ more in brightness than in shape. */
    float tilt = 0.5f * amount * (float)mc_rng_normal(rng);
    for (int i = 0; i < SYNTH_B; i++) {
        float k = gain * (1.0f + tilt * ((float)i - 6.0f) / 6.0f);
        a.r[i] = mc_synth_clamp(a.r[i] * k, 0.0f, 1.0f);
    }
    return a;
}

synth_spectrum mc_synth_canopy(float stage, float dryness, float soil_brightness) {
    synth_spectrum soil = mc_synth_mix(mc_synth_material_spectrum(MAT_MOIST_SOIL),
                                    mc_synth_material_spectrum(MAT_DRY_SOIL), soil_brightness);
    synth_spectrum leaves = mc_synth_mix(mc_synth_material_spectrum(MAT_GREEN_VEGETATION),
                                      mc_synth_material_spectrum(MAT_SENESCENT_VEGETATION), dryness);
    return mc_synth_mix(soil, leaves, mc_synth_clamp(stage, 0.0f, 1.0f));
}

/* ---- public: the material library ---- */

int mc_synth_material_count(void) { return MAT_COUNT; }

const char *mc_synth_material_name(int i) {
    if (i < 0 || i >= MAT_COUNT) return NULL;
    return materials[i].name;
}

mc_status mc_synth_material(const char *name, float reflectance[MC_SYNTH_BANDS]) {
    if (!name || !reflectance) return mc_error(MC_ERR_ARG, "mc_synth_material: name and reflectance must not be NULL");
    for (int i = 0; i < MAT_COUNT; i++) {
        if (strcmp(materials[i].name, name) == 0) {
            memcpy(reflectance, materials[i].r, sizeof materials[i].r);
            return MC_OK;
        }
    }
    char valid[512] = "";
    size_t used = 0;
    for (int i = 0; i < MAT_COUNT && used < sizeof valid; i++)
        used += (size_t)snprintf(valid + used, sizeof valid - used, "%s\"%s\"", i ? ", " : "",
                                 materials[i].name);
    return mc_error(MC_ERR_ARG, "mc_synth_material: unknown material \"%s\"; valid: %s", name, valid);
}
