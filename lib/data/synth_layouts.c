/* The synthetic world's class layouts: what lies on the ground of a tile.
 *
 * Each painter fills the canvas with surface reflectance for one class. The
 * scenes are built so that what separates the classes is mostly geometry
 * and texture — stripes, rows, lines, grids, curves, canopy grain — while
 * their average spectra overlap (crops, pastures and meadows are all
 * mixtures of the same vegetation and soil; highways, rivers and villages
 * sit in the same countryside). A classifier that only looks at a tile's
 * band means therefore gets only part of the way (tests/test_synth.c).
 *
 * Geometry is in pixels (10 m). Many layouts work in a rotated frame
 * (u along, v across) centred on the tile. */
#include <math.h>
#include <string.h>

#include "synth_internal.h"

/* ---- small helpers ---- */

float mc_synth_uniform(mc_rng *rng, float lo, float hi) {
    return lo + (hi - lo) * (float)mc_rng_uniform(rng);
}

int mc_synth_pick(mc_rng *rng, int n) { return (int)mc_rng_below(rng, (uint64_t)n); }

float mc_synth_clamp(float x, float lo, float hi) { return x < lo ? lo : (x > hi ? hi : x); }

static float smoothstep(float e0, float e1, float x) {
    float t = mc_synth_clamp((x - e0) / (e1 - e0), 0.0f, 1.0f);
    return t * t * (3.0f - 2.0f * t);
}

/* A reproducible number in 0..1 for a cell (a, b) of a grid, so a field or a
 * house gets its attributes without storing them. `salt` comes from the
 * tile's rng, so every tile has its own. (splitmix64's finaliser.) */
static float cell_hash(uint64_t salt, int64_t a, int64_t b, int k) {
    uint64_t z = salt ^ ((uint64_t)a * 0x9e3779b97f4a7c15ULL) ^ ((uint64_t)b * 0xc2b2ae3d27d4eb4fULL) ^
                 ((uint64_t)k * 0x165667b19e3779f9ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

void mc_synth_put(synth_canvas *c, int y, int x, synth_spectrum s, float alpha) {
    if (alpha <= 0.0f) return;
    float *p = synth_px(c, y, x);
    if (alpha >= 1.0f) {
        memcpy(p, s.r, sizeof s.r);
        return;
    }
    for (int b = 0; b < SYNTH_B; b++) p[b] += alpha * (s.r[b] - p[b]);
}

void mc_synth_fill(synth_canvas *c, synth_spectrum s) {
    for (int y = 0; y < SYNTH_S; y++)
        for (int x = 0; x < SYNTH_S; x++) memcpy(synth_px(c, y, x), s.r, sizeof s.r);
}

void mc_synth_fbm(mc_rng *rng, float cell, int octaves, float *out) {
    enum { MAX_LATTICE = SYNTH_S + 3 };
    float lattice[MAX_LATTICE * MAX_LATTICE];
    memset(out, 0, sizeof(float) * SYNTH_S * SYNTH_S);
    float amplitude = 1.0f, total = 0.0f;
    for (int o = 0; o < octaves && cell >= 1.0f; o++, cell *= 0.5f, amplitude *= 0.5f) {
        int n = (int)ceilf((float)SYNTH_S / cell) + 2;
        if (n > MAX_LATTICE) n = MAX_LATTICE;
        for (int i = 0; i < n * n; i++) lattice[i] = (float)mc_rng_uniform(rng);
        /* A random phase, so lattice points do not line up with pixel 0. */
        float oy = (float)mc_rng_uniform(rng), ox = (float)mc_rng_uniform(rng);
        for (int y = 0; y < SYNTH_S; y++) {
            float fy = (float)y / cell + oy;
            int iy = (int)fy;
            float ty = fy - (float)iy;
            ty = ty * ty * (3.0f - 2.0f * ty);
            for (int x = 0; x < SYNTH_S; x++) {
                float fx = (float)x / cell + ox;
                int ix = (int)fx;
                float tx = fx - (float)ix;
                tx = tx * tx * (3.0f - 2.0f * tx);
                const float *row0 = lattice + iy * n, *row1 = row0 + n;
                float top = row0[ix] + tx * (row0[ix + 1] - row0[ix]);
                float bottom = row1[ix] + tx * (row1[ix + 1] - row1[ix]);
                out[y * SYNTH_S + x] += amplitude * (top + ty * (bottom - top));
            }
        }
        total += amplitude;
    }
    if (total > 0.0f)
        for (int i = 0; i < SYNTH_S * SYNTH_S; i++) out[i] /= total;
}

/* A rotated frame centred at (cx, cy): u along angle, v across it. */
typedef struct frame {
    float cx, cy, cs, sn;
} frame;

static frame make_frame(float cx, float cy, float angle) {
    frame f = {cx, cy, cosf(angle), sinf(angle)};
    return f;
}

static void to_uv(frame f, int y, int x, float *u, float *v) {
    float dx = (float)x + 0.5f - f.cx, dy = (float)y + 0.5f - f.cy;
    *u = dx * f.cs + dy * f.sn;
    *v = -dx * f.sn + dy * f.cs;
}

/* An angle that is axis-aligned (plus a little) half the time: farmland and
 * towns often follow a grid. */
static float layout_angle(mc_rng *rng) {
    if (mc_rng_uniform(rng) < 0.5)
        return (float)mc_synth_pick(rng, 2) * 0.5f * SYNTH_PI + 0.08f * (float)mc_rng_normal(rng);
    return mc_synth_uniform(rng, 0.0f, SYNTH_PI);
}

/* Coverage of a pixel by a band |d| < half_width, anti-aliased over 1 px. */
static float band_alpha(float d, float half_width) {
    return mc_synth_clamp(half_width + 0.5f - fabsf(d), 0.0f, 1.0f);
}

/* Grass of a random vigour: stage near full cover, some dryness. */
static synth_spectrum random_grass(mc_rng *rng) {
    return mc_synth_vary(rng, mc_synth_canopy(mc_synth_uniform(rng, 0.65f, 1.0f), mc_synth_uniform(rng, 0.0f, 0.45f),
                                        mc_synth_uniform(rng, 0.0f, 1.0f)),
                      0.06f);
}

static synth_spectrum random_tree(mc_rng *rng) {
    return mc_synth_vary(rng, mc_synth_mix(mc_synth_material_spectrum(MAT_BROADLEAF_FOREST),
                                     mc_synth_material_spectrum(MAT_CONIFER_FOREST), mc_synth_uniform(rng, 0.0f, 0.6f)),
                      0.08f);
}

/* Round crowns (trees, bushes) of radius r at n random places. */
static void scatter_crowns(synth_canvas *c, int n, float r_lo, float r_hi) {
    for (int k = 0; k < n; k++) {
        float cy = mc_synth_uniform(c->rng, 0.0f, SYNTH_S), cx = mc_synth_uniform(c->rng, 0.0f, SYNTH_S);
        float r = mc_synth_uniform(c->rng, r_lo, r_hi);
        synth_spectrum tree = random_tree(c->rng);
        int y0 = (int)floorf(cy - r - 1), y1 = (int)ceilf(cy + r + 1);
        int x0 = (int)floorf(cx - r - 1), x1 = (int)ceilf(cx + r + 1);
        for (int y = y0 < 0 ? 0 : y0; y < y1 && y < SYNTH_S; y++)
            for (int x = x0 < 0 ? 0 : x0; x < x1 && x < SYNTH_S; x++) {
                float d = hypotf((float)x + 0.5f - cx, (float)y + 0.5f - cy);
                mc_synth_put(c, y, x, tree, mc_synth_clamp(r + 0.5f - d, 0.0f, 1.0f));
            }
    }
}

/* Forest canopy over the whole canvas: a species map (conifer share) at a
 * coarse scale and crown grain with shadows at a fine one. */
static void paint_canopy(synth_canvas *c, float conifer_share) {
    synth_spectrum broadleaf = mc_synth_vary(c->rng, mc_synth_material_spectrum(MAT_BROADLEAF_FOREST), 0.08f);
    synth_spectrum conifer = mc_synth_vary(c->rng, mc_synth_material_spectrum(MAT_CONIFER_FOREST), 0.08f);
    mc_synth_fbm(c->rng, mc_synth_uniform(c->rng, 12.0f, 28.0f), 3, c->field);
    mc_synth_fbm(c->rng, mc_synth_uniform(c->rng, 2.0f, 3.5f), 2, c->field2);
    float grain = mc_synth_uniform(c->rng, 0.35f, 0.7f);
    for (int y = 0; y < SYNTH_S; y++)
        for (int x = 0; x < SYNTH_S; x++) {
            int i = y * SYNTH_S + x;
            float t = smoothstep(conifer_share - 0.08f, conifer_share + 0.08f, c->field[i]);
            synth_spectrum s = mc_synth_mix(conifer, broadleaf, t);
            /* Sunlit crowns and the shadows between them. */
            s = mc_synth_scaled(s, 1.0f + grain * (c->field2[i] - 0.5f));
            mc_synth_put(c, y, x, s, 1.0f);
        }
}

/* Countryside around roads and rivers: 2..6 Voronoi parcels of grass,
 * crops or woodland. */
static void paint_countryside(synth_canvas *c) {
    enum { MAX_PARCELS = 6 };
    int n = 2 + mc_synth_pick(c->rng, MAX_PARCELS - 1);
    float py[MAX_PARCELS], px[MAX_PARCELS];
    synth_spectrum look[MAX_PARCELS];
    int wooded[MAX_PARCELS];
    for (int k = 0; k < n; k++) {
        py[k] = mc_synth_uniform(c->rng, -8.0f, SYNTH_S + 8.0f);
        px[k] = mc_synth_uniform(c->rng, -8.0f, SYNTH_S + 8.0f);
        float r = (float)mc_rng_uniform(c->rng);
        wooded[k] = r < 0.2f;
        if (r < 0.55f)
            look[k] = random_grass(c->rng);
        else
            look[k] = mc_synth_vary(c->rng, mc_synth_canopy(mc_synth_uniform(c->rng, 0.0f, 1.0f), mc_synth_uniform(c->rng, 0.0f, 0.8f),
                                                      mc_synth_uniform(c->rng, 0.0f, 1.0f)),
                                 0.05f);
    }
    mc_synth_fbm(c->rng, 3.0f, 2, c->field2);
    synth_spectrum broadleaf = mc_synth_material_spectrum(MAT_BROADLEAF_FOREST);
    for (int y = 0; y < SYNTH_S; y++)
        for (int x = 0; x < SYNTH_S; x++) {
            int best = 0;
            float best_d = 1e9f;
            for (int k = 0; k < n; k++) {
                float d = hypotf((float)x - px[k], (float)y - py[k]);
                if (d < best_d) best_d = d, best = k;
            }
            synth_spectrum s = look[best];
            if (wooded[best])
                s = mc_synth_scaled(broadleaf, 0.75f + 0.5f * c->field2[y * SYNTH_S + x]);
            mc_synth_put(c, y, x, s, 1.0f);
        }
}

/* ---- AnnualCrop: a patchwork of large fields in strips, each at its own
 * growth stage, with faint sowing rows inside ---- */
static void paint_annual_crop(synth_canvas *c) {
    enum { MAX_CUTS = 12 };
    frame f = make_frame(SYNTH_S / 2.0f, SYNTH_S / 2.0f, layout_angle(c->rng));
    /* Strip boundaries across v, then field boundaries along u per strip. */
    float v_cut[MAX_CUTS + 1];
    int n_strips = 0;
    for (float v = -48.0f; v < 48.0f && n_strips < MAX_CUTS; n_strips++) {
        v_cut[n_strips] = v;
        v += mc_synth_uniform(c->rng, 10.0f, 30.0f);
    }
    v_cut[n_strips] = 1e9f;
    float u_shift[MAX_CUTS], u_len[MAX_CUTS];
    for (int j = 0; j < n_strips; j++) {
        u_shift[j] = mc_synth_uniform(c->rng, 0.0f, 60.0f);
        u_len[j] = mc_synth_uniform(c->rng, 18.0f, 60.0f);
    }
    uint64_t salt = mc_rng_u64(c->rng);
    mc_synth_fbm(c->rng, mc_synth_uniform(c->rng, 6.0f, 14.0f), 2, c->field);
    synth_spectrum track = mc_synth_vary(c->rng, mc_synth_material_spectrum(MAT_DRY_SOIL), 0.1f);
    for (int y = 0; y < SYNTH_S; y++)
        for (int x = 0; x < SYNTH_S; x++) {
            float u, v;
            to_uv(f, y, x, &u, &v);
            int j = 0;
            while (v >= v_cut[j + 1]) j++;
            float fu = (u + 64.0f + u_shift[j]) / u_len[j];
            int k = (int)floorf(fu);
            /* The field's attributes, from its (strip, field) cell. */
            float kind = cell_hash(salt, j, k, 0);
            float stage, dryness = 0.1f * cell_hash(salt, j, k, 1);
            if (kind < 0.22f) stage = 0.08f * cell_hash(salt, j, k, 2);                   /* ploughed */
            else if (kind < 0.75f) stage = 0.25f + 0.75f * cell_hash(salt, j, k, 2);      /* growing */
            else stage = 0.85f, dryness = 0.5f + 0.5f * cell_hash(salt, j, k, 2);         /* ripening */
            float soil = cell_hash(salt, j, k, 3);
            /* Sowing rows: period 2..3.5 px, along u or v. */
            float period = 2.0f + 1.5f * cell_hash(salt, j, k, 4);
            float along = cell_hash(salt, j, k, 5) < 0.5f ? u : v;
            float rows = 0.5f + 0.5f * sinf(2.0f * SYNTH_PI * along / period);
            float row_depth = 0.25f * stage * (1.0f - stage) * 4.0f * cell_hash(salt, j, k, 6);
            float local = stage * (1.0f - row_depth * rows) + 0.12f * (c->field[y * SYNTH_S + x] - 0.5f);
            synth_spectrum s = mc_synth_canopy(local, dryness, soil);
            s = mc_synth_scaled(s, 0.92f + 0.16f * cell_hash(salt, j, k, 7));
            mc_synth_put(c, y, x, s, 1.0f);
            /* Tracks between fields (about half of the boundaries). */
            float du = (fu - (float)k) * u_len[j], dv = v - v_cut[j];
            float edge = fminf(fminf(du, u_len[j] - du), dv);
            if (edge < 0.8f && cell_hash(salt, j, k, 8) < 0.5f) mc_synth_put(c, y, x, track, 0.6f);
        }
}

/* ---- PermanentCrop: orchards (trees on a grid) and vineyards (continuous
 * rows) over grass or bare inter-rows, in one or two parcels ---- */
typedef struct orchard {
    frame f;
    int vineyard;
    float row_spacing, tree_spacing, radius;
    synth_spectrum tree, ground;
} orchard;

static orchard random_orchard(mc_rng *rng) {
    orchard o;
    o.f = make_frame(SYNTH_S / 2.0f, SYNTH_S / 2.0f, layout_angle(rng));
    o.vineyard = mc_rng_uniform(rng) < 0.4;
    o.row_spacing = o.vineyard ? mc_synth_uniform(rng, 2.2f, 3.2f) : mc_synth_uniform(rng, 3.0f, 5.0f);
    o.tree_spacing = mc_synth_uniform(rng, 2.5f, 4.0f);
    o.radius = o.vineyard ? mc_synth_uniform(rng, 0.45f, 0.8f) : mc_synth_uniform(rng, 0.8f, 1.5f);
    o.tree = random_tree(rng);
    if (o.vineyard) o.tree = mc_synth_mix(o.tree, mc_synth_material_spectrum(MAT_GREEN_VEGETATION), 0.5f);
    o.ground = mc_rng_uniform(rng) < 0.5
                   ? mc_synth_vary(rng, mc_synth_canopy(mc_synth_uniform(rng, 0.3f, 0.9f), mc_synth_uniform(rng, 0.1f, 0.8f),
                                                  mc_synth_uniform(rng, 0.0f, 1.0f)),
                                0.05f)
                   : mc_synth_vary(rng, mc_synth_canopy(mc_synth_uniform(rng, 0.0f, 0.2f), 0.3f, mc_synth_uniform(rng, 0.0f, 1.0f)),
                                0.05f);
    return o;
}

static void paint_orchard_pixel(synth_canvas *c, const orchard *o, int y, int x) {
    float u, v;
    to_uv(o->f, y, x, &u, &v);
    float rv = v / o->row_spacing;
    float dv = (rv - floorf(rv) - 0.5f) * o->row_spacing;
    float d = fabsf(dv);
    if (!o->vineyard) {
        float ru = u / o->tree_spacing;
        float du = (ru - floorf(ru) - 0.5f) * o->tree_spacing;
        d = hypotf(du, dv);
    }
    mc_synth_put(c, y, x, o->ground, 1.0f);
    mc_synth_put(c, y, x, o->tree, mc_synth_clamp(o->radius + 0.5f - d, 0.0f, 1.0f));
}

static void paint_permanent_crop(synth_canvas *c) {
    orchard a = random_orchard(c->rng), b = random_orchard(c->rng);
    int two = mc_rng_uniform(c->rng) < 0.6;
    frame split = make_frame(mc_synth_uniform(c->rng, 16.0f, 48.0f), mc_synth_uniform(c->rng, 16.0f, 48.0f),
                             mc_synth_uniform(c->rng, 0.0f, 2.0f * SYNTH_PI));
    for (int y = 0; y < SYNTH_S; y++)
        for (int x = 0; x < SYNTH_S; x++) {
            float u, v;
            to_uv(split, y, x, &u, &v);
            paint_orchard_pixel(c, (two && v > 0.0f) ? &b : &a, y, x);
        }
}

/* ---- Pasture: smooth grassland with slow changes of vigour, an odd
 * hedgerow or tree ---- */
static void paint_pasture(synth_canvas *c) {
    float stage = mc_synth_uniform(c->rng, 0.8f, 1.0f), dryness = mc_synth_uniform(c->rng, 0.0f, 0.25f);
    float soil = mc_synth_uniform(c->rng, 0.0f, 1.0f);
    mc_synth_fbm(c->rng, mc_synth_uniform(c->rng, 20.0f, 40.0f), 2, c->field);
    mc_synth_fbm(c->rng, mc_synth_uniform(c->rng, 8.0f, 16.0f), 2, c->field2);
    /* Two paddocks half of the time, split along a fence line. */
    frame fence = make_frame(mc_synth_uniform(c->rng, 10.0f, 54.0f), mc_synth_uniform(c->rng, 10.0f, 54.0f),
                             layout_angle(c->rng));
    int paddocks = mc_rng_uniform(c->rng) < 0.5;
    float stage2 = mc_synth_clamp(stage + mc_synth_uniform(c->rng, -0.2f, 0.2f), 0.5f, 1.0f);
    float dry2 = mc_synth_clamp(dryness + mc_synth_uniform(c->rng, -0.2f, 0.2f), 0.0f, 0.6f);
    for (int y = 0; y < SYNTH_S; y++)
        for (int x = 0; x < SYNTH_S; x++) {
            int i = y * SYNTH_S + x;
            float u, v;
            to_uv(fence, y, x, &u, &v);
            int second = paddocks && v > 0.0f;
            float st = (second ? stage2 : stage) + 0.16f * (c->field[i] - 0.5f);
            float dr = (second ? dry2 : dryness) + 0.2f * (c->field2[i] - 0.5f);
            mc_synth_put(c, y, x, mc_synth_canopy(st, mc_synth_clamp(dr, 0.0f, 1.0f), soil), 1.0f);
        }
    if (mc_rng_uniform(c->rng) < 0.5) { /* a hedgerow along the fence */
        synth_spectrum hedge = random_tree(c->rng);
        float width = mc_synth_uniform(c->rng, 0.5f, 1.2f);
        for (int y = 0; y < SYNTH_S; y++)
            for (int x = 0; x < SYNTH_S; x++) {
                float u, v;
                to_uv(fence, y, x, &u, &v);
                mc_synth_put(c, y, x, hedge, band_alpha(v, width));
            }
    }
    scatter_crowns(c, mc_synth_pick(c->rng, 5), 1.0f, 2.5f);
}

/* ---- HerbaceousVegetation: a patchy mosaic of shrubs, green and dry
 * grass and bare ground at the scale of 5..15 px ---- */
static void paint_herbaceous(synth_canvas *c) {
    synth_spectrum shrub = mc_synth_vary(c->rng, mc_synth_material_spectrum(MAT_SHRUB), 0.08f);
    synth_spectrum grass = random_grass(c->rng);
    synth_spectrum dry = mc_synth_vary(c->rng, mc_synth_canopy(0.8f, mc_synth_uniform(c->rng, 0.5f, 1.0f), 0.7f), 0.08f);
    synth_spectrum bare = mc_synth_vary(c->rng, mc_synth_canopy(mc_synth_uniform(c->rng, 0.0f, 0.3f), 0.5f, 0.8f), 0.08f);
    mc_synth_fbm(c->rng, mc_synth_uniform(c->rng, 8.0f, 16.0f), 3, c->field);
    mc_synth_fbm(c->rng, mc_synth_uniform(c->rng, 2.0f, 4.0f), 2, c->field2);
    /* Thresholds on the field: shares of the four covers vary by tile. */
    float t1 = mc_synth_uniform(c->rng, 0.35f, 0.55f), t2 = t1 + mc_synth_uniform(c->rng, 0.03f, 0.12f);
    float t3 = t2 + mc_synth_uniform(c->rng, 0.05f, 0.2f);
    const float soft = 0.025f;
    for (int y = 0; y < SYNTH_S; y++)
        for (int x = 0; x < SYNTH_S; x++) {
            int i = y * SYNTH_S + x;
            float f = c->field[i];
            synth_spectrum s = mc_synth_mix(shrub, grass, smoothstep(t1 - soft, t1 + soft, f));
            s = mc_synth_mix(s, dry, smoothstep(t2 - soft, t2 + soft, f));
            s = mc_synth_mix(s, bare, smoothstep(t3 - soft, t3 + soft, f));
            s = mc_synth_scaled(s, 0.85f + 0.3f * c->field2[i]);
            mc_synth_put(c, y, x, s, 1.0f);
        }
    scatter_crowns(c, mc_synth_pick(c->rng, 8), 0.7f, 1.6f);
}

/* ---- Forest: closed canopy, crown grain and shadows; now and then a
 * clearing or a forest track ---- */
static void paint_forest(synth_canvas *c) {
    paint_canopy(c, mc_synth_uniform(c->rng, -0.1f, 1.1f));
    if (mc_rng_uniform(c->rng) < 0.25) {
        float cy = mc_synth_uniform(c->rng, 0.0f, SYNTH_S), cx = mc_synth_uniform(c->rng, 0.0f, SYNTH_S);
        float r = mc_synth_uniform(c->rng, 4.0f, 10.0f), phase = mc_synth_uniform(c->rng, 0.0f, 2.0f * SYNTH_PI);
        synth_spectrum glade = random_grass(c->rng);
        for (int y = 0; y < SYNTH_S; y++)
            for (int x = 0; x < SYNTH_S; x++) {
                float dx = (float)x + 0.5f - cx, dy = (float)y + 0.5f - cy;
                /* An irregular outline: the radius wobbles with the direction. */
                float edge = r * (1.0f + 0.3f * sinf(3.0f * atan2f(dy, dx) + phase));
                mc_synth_put(c, y, x, glade, mc_synth_clamp(edge + 0.5f - hypotf(dx, dy), 0.0f, 1.0f));
            }
    }
    if (mc_rng_uniform(c->rng) < 0.15) {
        frame f = make_frame(mc_synth_uniform(c->rng, 8.0f, 56.0f), mc_synth_uniform(c->rng, 8.0f, 56.0f),
                             mc_synth_uniform(c->rng, 0.0f, SYNTH_PI));
        synth_spectrum track = mc_synth_vary(c->rng, mc_synth_material_spectrum(MAT_MOIST_SOIL), 0.1f);
        for (int y = 0; y < SYNTH_S; y++)
            for (int x = 0; x < SYNTH_S; x++) {
                float u, v;
                to_uv(f, y, x, &u, &v);
                mc_synth_put(c, y, x, track, 0.8f * band_alpha(v, 0.5f));
            }
    }
}

/* ---- Highway: a road (single or dual carriageway) with verges, gently
 * curved, through countryside; sometimes a second, smaller road ---- */
static void paint_road(synth_canvas *c, float width_scale) {
    frame f = make_frame(mc_synth_uniform(c->rng, 20.0f, 44.0f), mc_synth_uniform(c->rng, 20.0f, 44.0f),
                         mc_synth_uniform(c->rng, 0.0f, SYNTH_PI));
    float bend = mc_synth_uniform(c->rng, -0.008f, 0.008f);
    int dual = width_scale >= 1.0f && mc_rng_uniform(c->rng) < 0.5;
    float lane = width_scale * (dual ? mc_synth_uniform(c->rng, 1.0f, 1.6f) : mc_synth_uniform(c->rng, 1.0f, 2.0f));
    float median = dual ? mc_synth_uniform(c->rng, 0.5f, 1.2f) : 0.0f;
    float verge = mc_synth_uniform(c->rng, 0.8f, 2.0f) * width_scale;
    synth_spectrum asphalt = mc_synth_vary(c->rng, mc_synth_material_spectrum(MAT_ASPHALT), 0.12f);
    synth_spectrum verge_look = mc_synth_vary(c->rng, mc_synth_mix(mc_synth_material_spectrum(MAT_CONCRETE),
                                                             mc_synth_canopy(0.6f, 0.6f, 0.8f), mc_synth_uniform(c->rng, 0.2f, 0.9f)),
                                           0.08f);
    synth_spectrum reserve = random_grass(c->rng);
    float half = dual ? median + 2.0f * lane : lane;
    for (int y = 0; y < SYNTH_S; y++)
        for (int x = 0; x < SYNTH_S; x++) {
            float u, v;
            to_uv(f, y, x, &u, &v);
            float d = v - bend * u * u;
            mc_synth_put(c, y, x, verge_look, band_alpha(d, half + verge));
            mc_synth_put(c, y, x, asphalt, band_alpha(d, half));
            if (dual) mc_synth_put(c, y, x, reserve, band_alpha(d, median));
        }
}

static void paint_highway(synth_canvas *c) {
    paint_countryside(c);
    paint_road(c, 1.0f);
    if (mc_rng_uniform(c->rng) < 0.35) paint_road(c, 0.6f);
}

/* ---- Industrial: big halls with flat grey, white or sawtooth roofs,
 * concrete and asphalt yards, service roads, little green ---- */
static void paint_industrial(synth_canvas *c) {
    synth_spectrum asphalt = mc_synth_vary(c->rng, mc_synth_material_spectrum(MAT_ASPHALT), 0.1f);
    synth_spectrum concrete = mc_synth_vary(c->rng, mc_synth_material_spectrum(MAT_CONCRETE), 0.1f);
    synth_spectrum green = random_grass(c->rng);
    mc_synth_fbm(c->rng, mc_synth_uniform(c->rng, 5.0f, 10.0f), 3, c->field);
    float green_share = mc_synth_uniform(c->rng, 0.0f, 0.25f);
    for (int y = 0; y < SYNTH_S; y++)
        for (int x = 0; x < SYNTH_S; x++) {
            float t = c->field[y * SYNTH_S + x];
            /* Yards: worn concrete and asphalt, never pure white. */
            synth_spectrum s = mc_synth_mix(asphalt, concrete, 0.15f + 0.6f * smoothstep(0.3f, 0.7f, t));
            s = mc_synth_mix(s, green, smoothstep(1.0f - green_share - 0.02f, 1.0f - green_share + 0.02f, t));
            mc_synth_put(c, y, x, s, 1.0f);
        }
    frame f = make_frame(SYNTH_S / 2.0f, SYNTH_S / 2.0f, layout_angle(c->rng));
    int halls = 3 + mc_synth_pick(c->rng, 6);
    for (int h = 0; h < halls; h++) {
        float cu = mc_synth_uniform(c->rng, -30.0f, 30.0f), cv = mc_synth_uniform(c->rng, -30.0f, 30.0f);
        float hu = mc_synth_uniform(c->rng, 4.0f, 14.0f), hv = mc_synth_uniform(c->rng, 3.0f, 10.0f);
        float r = (float)mc_rng_uniform(c->rng);
        synth_material_id roof = r < 0.25f ? MAT_BRIGHT_ROOF : (r < 0.85f ? MAT_GREY_ROOF : MAT_CONCRETE);
        synth_spectrum look = mc_synth_vary(c->rng, mc_synth_material_spectrum(roof), 0.12f);
        int sawtooth = mc_rng_uniform(c->rng) < 0.3;
        float period = mc_synth_uniform(c->rng, 2.0f, 3.0f);
        for (int y = 0; y < SYNTH_S; y++)
            for (int x = 0; x < SYNTH_S; x++) {
                float u, v;
                to_uv(f, y, x, &u, &v);
                float a = fminf(band_alpha(u - cu, hu), band_alpha(v - cv, hv));
                if (a <= 0.0f) continue;
                synth_spectrum s = look;
                if (sawtooth) s = mc_synth_scaled(s, 0.8f + 0.4f * (0.5f + 0.5f * sinf(2.0f * SYNTH_PI * u / period)));
                mc_synth_put(c, y, x, s, a);
            }
    }
    /* A service road along the frame's u axis. */
    float road_v = mc_synth_uniform(c->rng, -25.0f, 25.0f);
    for (int y = 0; y < SYNTH_S; y++)
        for (int x = 0; x < SYNTH_S; x++) {
            float u, v;
            to_uv(f, y, x, &u, &v);
            mc_synth_put(c, y, x, asphalt, band_alpha(v - road_v, 1.2f));
        }
}

/* ---- Residential: a street grid; in each block two rows of houses with
 * red or grey roofs, gardens with trees between them ---- */
static void paint_residential(synth_canvas *c) {
    frame f = make_frame(SYNTH_S / 2.0f, SYNTH_S / 2.0f, layout_angle(c->rng));
    float block_u = mc_synth_uniform(c->rng, 12.0f, 20.0f), block_v = mc_synth_uniform(c->rng, 10.0f, 16.0f);
    float street = mc_synth_uniform(c->rng, 1.0f, 2.0f);
    float pitch = mc_synth_uniform(c->rng, 3.0f, 5.0f), gap = mc_synth_uniform(c->rng, 0.8f, 1.5f);
    float depth = mc_synth_uniform(c->rng, 2.0f, 3.5f), setback = mc_synth_uniform(c->rng, 0.5f, 1.5f);
    float off_u = mc_synth_uniform(c->rng, 0.0f, block_u), off_v = mc_synth_uniform(c->rng, 0.0f, block_v);
    float red_share = mc_synth_uniform(c->rng, 0.2f, 0.9f);
    synth_spectrum asphalt = mc_synth_vary(c->rng, mc_synth_material_spectrum(MAT_ASPHALT), 0.1f);
    synth_spectrum garden = random_grass(c->rng);
    synth_spectrum tree = random_tree(c->rng);
    synth_spectrum roofs[3] = {mc_synth_material_spectrum(MAT_RED_ROOF), mc_synth_material_spectrum(MAT_GREY_ROOF),
                               mc_synth_material_spectrum(MAT_BRIGHT_ROOF)};
    uint64_t salt = mc_rng_u64(c->rng);
    mc_synth_fbm(c->rng, mc_synth_uniform(c->rng, 2.5f, 4.0f), 2, c->field);
    float tree_cut = mc_synth_uniform(c->rng, 0.5f, 0.7f);
    for (int y = 0; y < SYNTH_S; y++)
        for (int x = 0; x < SYNTH_S; x++) {
            float u, v;
            to_uv(f, y, x, &u, &v);
            float fu = (u + 64.0f + off_u) / block_u, fv = (v + 64.0f + off_v) / block_v;
            int iu = (int)floorf(fu), iv = (int)floorf(fv);
            float a = (fu - (float)iu) * block_u, b = (fv - (float)iv) * block_v; /* inside the block */
            /* Gardens and trees everywhere first, then houses, then streets. */
            float t = c->field[y * SYNTH_S + x];
            mc_synth_put(c, y, x, mc_synth_mix(garden, tree, smoothstep(tree_cut - 0.05f, tree_cut + 0.05f, t)), 1.0f);
            float inner_b = b - street;
            int row = inner_b < block_v * 0.5f ? 0 : 1;
            float from_edge = row == 0 ? inner_b - setback : (block_v - setback) - b;
            float along = a - street;
            int house = (int)floorf(along / pitch);
            float in_house = along - (float)house * pitch;
            if (inner_b > 0.0f && along > 0.0f && from_edge > 0.0f && from_edge < depth && in_house < pitch - gap &&
                cell_hash(salt, iu * 64 + house, iv * 2 + row, 0) < 0.9f) {
                float r = cell_hash(salt, iu * 64 + house, iv * 2 + row, 1);
                int kind = r < red_share ? 0 : (r < red_share + (1.0f - red_share) * 0.85f ? 1 : 2);
                float k = 0.85f + 0.3f * cell_hash(salt, iu * 64 + house, iv * 2 + row, 2);
                mc_synth_put(c, y, x, mc_synth_scaled(roofs[kind], k), 1.0f);
            }
            float street_d = fminf(a, b); /* distance into the block from its street corner lines */
            mc_synth_put(c, y, x, asphalt, mc_synth_clamp(street + 0.5f - street_d, 0.0f, 1.0f));
        }
}

/* ---- River: a meandering channel with sandy or wooded banks through
 * countryside ---- */
static void paint_river(synth_canvas *c) {
    paint_countryside(c);
    frame f = make_frame(mc_synth_uniform(c->rng, 24.0f, 40.0f), mc_synth_uniform(c->rng, 24.0f, 40.0f),
                         mc_synth_uniform(c->rng, 0.0f, SYNTH_PI));
    float a1 = mc_synth_uniform(c->rng, 2.0f, 12.0f), l1 = mc_synth_uniform(c->rng, 40.0f, 120.0f);
    float a2 = mc_synth_uniform(c->rng, 0.0f, 1.5f), l2 = mc_synth_uniform(c->rng, 20.0f, 35.0f);
    float p1 = mc_synth_uniform(c->rng, 0.0f, 2.0f * SYNTH_PI), p2 = mc_synth_uniform(c->rng, 0.0f, 2.0f * SYNTH_PI);
    float width = mc_synth_uniform(c->rng, 4.0f, 18.0f), bank = mc_synth_uniform(c->rng, 0.8f, 2.5f);
    synth_spectrum water = mc_synth_vary(c->rng, mc_synth_mix(mc_synth_material_spectrum(MAT_CLEAR_WATER),
                                                        mc_synth_material_spectrum(MAT_TURBID_WATER),
                                                        mc_synth_uniform(c->rng, 0.2f, 1.0f)),
                                      0.1f);
    synth_spectrum shore = mc_rng_uniform(c->rng) < 0.5
                               ? mc_synth_vary(c->rng, mc_synth_material_spectrum(MAT_DRY_SOIL), 0.1f)
                               : random_tree(c->rng);
    for (int y = 0; y < SYNTH_S; y++)
        for (int x = 0; x < SYNTH_S; x++) {
            float u, v;
            to_uv(f, y, x, &u, &v);
            float w1 = 2.0f * SYNTH_PI / l1, w2 = 2.0f * SYNTH_PI / l2;
            float centre = a1 * sinf(w1 * u + p1) + a2 * sinf(w2 * u + p2);
            float slope = a1 * w1 * cosf(w1 * u + p1) + a2 * w2 * cosf(w2 * u + p2);
            /* Distance across the channel, corrected for its local slope. */
            float d = (v - centre) / sqrtf(1.0f + slope * slope);
            float half = 0.5f * width * (1.0f + 0.2f * sinf(0.05f * u + p2));
            mc_synth_put(c, y, x, shore, band_alpha(d, half + bank));
            mc_synth_put(c, y, x, water, band_alpha(d, half));
        }
}

/* ---- SeaLake: open water with slow changes of turbidity; about half of
 * the tiles show a shore with a beach and land behind it ---- */
static void paint_sea_lake(synth_canvas *c) {
    float turbidity = mc_synth_uniform(c->rng, 0.0f, 0.8f);
    synth_spectrum clear = mc_synth_vary(c->rng, mc_synth_material_spectrum(MAT_CLEAR_WATER), 0.1f);
    synth_spectrum turbid = mc_synth_vary(c->rng, mc_synth_material_spectrum(MAT_TURBID_WATER), 0.1f);
    mc_synth_fbm(c->rng, mc_synth_uniform(c->rng, 24.0f, 48.0f), 3, c->field);
    int has_shore = mc_rng_uniform(c->rng) < 0.45;
    frame f = make_frame(SYNTH_S / 2.0f, SYNTH_S / 2.0f, mc_synth_uniform(c->rng, 0.0f, 2.0f * SYNTH_PI));
    float line = mc_synth_uniform(c->rng, 18.0f, 32.0f), amp = mc_synth_uniform(c->rng, 0.0f, 5.0f);
    float wave = mc_synth_uniform(c->rng, 20.0f, 60.0f), phase = mc_synth_uniform(c->rng, 0.0f, 2.0f * SYNTH_PI);
    float beach_w = mc_synth_uniform(c->rng, 0.8f, 3.0f);
    synth_spectrum beach = mc_synth_vary(c->rng, mc_synth_material_spectrum(MAT_DRY_SOIL), 0.1f);
    synth_spectrum land = random_grass(c->rng);
    mc_synth_fbm(c->rng, 3.0f, 2, c->field2);
    for (int y = 0; y < SYNTH_S; y++)
        for (int x = 0; x < SYNTH_S; x++) {
            int i = y * SYNTH_S + x;
            float t = mc_synth_clamp(turbidity + 0.3f * (c->field[i] - 0.5f), 0.0f, 1.0f);
            mc_synth_put(c, y, x, mc_synth_mix(clear, turbid, t), 1.0f);
            if (!has_shore) continue;
            float u, v;
            to_uv(f, y, x, &u, &v);
            float d = v - (line + amp * sinf(2.0f * SYNTH_PI * u / wave + phase)); /* > 0: land */
            mc_synth_put(c, y, x, beach, mc_synth_clamp(d + 0.5f, 0.0f, 1.0f));
            mc_synth_put(c, y, x, mc_synth_scaled(land, 0.8f + 0.4f * c->field2[i]),
                      mc_synth_clamp(d - beach_w + 0.5f, 0.0f, 1.0f));
        }
}

typedef void (*class_painter)(synth_canvas *c);

/* In label order: EuroSAT's sorted class names (synth.c). */
static const class_painter painters[MC_SYNTH_CLASSES] = {
    paint_annual_crop, paint_forest,      paint_herbaceous,  paint_highway, paint_industrial,
    paint_pasture,     paint_permanent_crop, paint_residential, paint_river,   paint_sea_lake,
};

void mc_synth_paint_class(synth_canvas *c, int label) { painters[label](c); }
