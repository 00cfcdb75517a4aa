/* Tiles normalised into the model's batch: out = in * scale[c] + shift[c], in one pass.
 *
 * Built and loaded by inference/predict/normalise.py through gee_export/core/native.py.
 * The input is band-planar float32 (a tile row, or one block's piece of a tile in the
 * mapped input file); the output is the batch tensor in either memory format. torch's
 * broadcasting multiply-add writes a channels-last batch from planar bands through a
 * strided loop; here each pixel's bands are read from their planes and written side by
 * side, which costs about 0.6x the CPU (benchmarks/bench_encoder.py).
 *
 * Strides are in elements; the input's pixels are contiguous (its bands and rows may have any
 * stride), the output's may have any stride. Compiled with
 * -ffp-contract=off so the multiply and the add round as torch's addcmul rounds them.
 * Returns 1 when any output value is NaN or infinite (found from the bits, no extra pass).
 */
#include <stdint.h>
#include <string.h>

static inline uint32_t not_finite(float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return (u & 0x7f800000u) == 0x7f800000u;
}

/* Channels last: a pixel's nb values are written side by side (nb is a constant here). */
static inline int interleaved(const float *restrict src, int64_t sb, int64_t sr,
                              int h, int w, const int nb, const float *restrict shift,
                              const float *restrict scale, float *restrict dst, int64_t dr) {
    uint32_t bad = 0;
    for (int r = 0; r < h; r++) {
        const float *s = src + r * sr;
        float *d = dst + r * dr;
        for (int x = 0; x < w; x++) {
            for (int c = 0; c < nb; c++) {
                float v = s[c * sb + x] * scale[c] + shift[c];
                d[(int64_t)x * nb + c] = v;
                bad |= not_finite(v);
            }
        }
    }
    return bad != 0;
}

#define BANDS(N) \
    case N: return interleaved(src, sb, sr, h, w, N, shift, scale, dst, dr);

int isamap_normalise(const float *src, int64_t sb, int64_t sr, int nb, int h,
                     int w, const float *shift, const float *scale, float *dst, int64_t db,
                     int64_t dr, int64_t dx) {
    if (db == 1 && dx == nb) {
        switch (nb) {
            BANDS(1) BANDS(2) BANDS(3) BANDS(4) BANDS(5) BANDS(6) BANDS(7) BANDS(8)
            BANDS(9) BANDS(10) BANDS(11) BANDS(12) BANDS(13) BANDS(14) BANDS(15) BANDS(16)
            default: break;
        }
    }
    uint32_t bad = 0;  /* any other layout: band by band, row by row */
    for (int c = 0; c < nb; c++) {
        const float k = scale[c], m = shift[c];
        for (int r = 0; r < h; r++) {
            const float *restrict s = src + c * sb + r * sr;
            float *restrict d = dst + c * db + r * dr;
            if (dx == 1) {  /* planar (channels first): contiguous rows */
                for (int x = 0; x < w; x++) {
                    float v = s[x] * k + m;
                    d[x] = v;
                    bad |= not_finite(v);
                }
            } else {
                for (int x = 0; x < w; x++) {
                    float v = s[x] * k + m;
                    d[x * dx] = v;
                    bad |= not_finite(v);
                }
            }
        }
    }
    return bad != 0;
}
