/* Tiles normalised into the model's batch: out = in * scale[c] + shift[c], in one pass.
 *
 * Built and loaded by inference/predict/normalise.py through gee_export/core/native.py.
 * The input is band-planar float32 (a tile row, or one block's piece of a tile in the
 * mapped input file); the output is the batch tensor in either memory format. torch's
 * broadcasting multiply-add writes a channels-last batch from planar bands through a
 * strided loop; here each pixel's bands are read from their planes and written side by
 * side (benchmarks/bench_encoder.py compares the two).
 *
 * Strides are in elements; the input's pixels are contiguous (its bands and rows may have
 * any stride), the output's may have any stride. Built with -ffp-contract=off: the multiply
 * and the add round separately, as torch's addcmul rounds them.
 * Returns 1 when any output value is NaN or infinite (found from the bits, no extra pass).
 */
#include <stdint.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static inline uint32_t not_finite(float v) {
    uint32_t u;
    memcpy(&u, &v, sizeof u);
    return (u & 0x7f800000u) == 0x7f800000u;
}

/* Channels last: a pixel's nb values are written side by side (nb is a constant here). */
static inline uint32_t interleaved(const float *restrict src, int64_t sb, int64_t sr, int h,
                                   int x0, int w, const int nb, const float *restrict shift,
                                   const float *restrict scale, float *restrict dst,
                                   int64_t dr) {
    uint32_t bad = 0;
    for (int r = 0; r < h; r++) {
        const float *s = src + r * sr;
        float *d = dst + r * dr;
        for (int x = x0; x < w; x++) {
            for (int c = 0; c < nb; c++) {
                float v = s[c * sb + x] * scale[c] + shift[c];
                d[(int64_t)x * nb + c] = v;
                bad |= not_finite(v);
            }
        }
    }
    return bad;
}

#if defined(__SSE2__)
/* Six bands, four pixels at a time: the first four bands' vectors transposed, the last two
 * paired, written as six vectors holding the four pixels side by side. The pixels past a
 * multiple of four go through the scalar loop. */
static int six_bands(const float *restrict src, int64_t sb, int64_t sr, int h, int w,
                     const float *restrict shift, const float *restrict scale,
                     float *restrict dst, int64_t dr) {
    __m128 k[6], m[6];
    for (int c = 0; c < 6; c++) {
        k[c] = _mm_set1_ps(scale[c]);
        m[c] = _mm_set1_ps(shift[c]);
    }
    const __m128 exponent = _mm_castsi128_ps(_mm_set1_epi32(0x7f800000));
    __m128 bad = _mm_setzero_ps();
    const int w4 = w - w % 4;
    for (int r = 0; r < h; r++) {
        const float *s = src + r * sr;
        float *d = dst + r * dr;
        for (int x = 0; x < w4; x += 4) {
            __m128 v[6];
            for (int c = 0; c < 6; c++) {
                v[c] = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(s + c * sb + x), k[c]), m[c]);
                bad = _mm_or_ps(bad, _mm_cmpeq_ps(_mm_and_ps(v[c], exponent), exponent));
            }
            __m128 p0 = v[0], p1 = v[1], p2 = v[2], p3 = v[3];
            _MM_TRANSPOSE4_PS(p0, p1, p2, p3);  /* p0: bands 0-3 of pixel 0, ... */
            __m128 lo = _mm_unpacklo_ps(v[4], v[5]);  /* bands 4, 5 of pixels 0, 1 */
            __m128 hi = _mm_unpackhi_ps(v[4], v[5]);  /* bands 4, 5 of pixels 2, 3 */
            float *o = d + (int64_t)x * 6;
            _mm_storeu_ps(o, p0);
            _mm_storeu_ps(o + 4, _mm_movelh_ps(lo, p1));
            _mm_storeu_ps(o + 8, _mm_shuffle_ps(p1, lo, _MM_SHUFFLE(3, 2, 3, 2)));
            _mm_storeu_ps(o + 12, p2);
            _mm_storeu_ps(o + 16, _mm_movelh_ps(hi, p3));
            _mm_storeu_ps(o + 20, _mm_shuffle_ps(p3, hi, _MM_SHUFFLE(3, 2, 3, 2)));
        }
    }
    uint32_t rest = interleaved(src, sb, sr, h, w4, w, 6, shift, scale, dst, dr);
    return rest != 0 || _mm_movemask_ps(bad) != 0;
}
#endif

#define BANDS(N) \
    case N: return interleaved(src, sb, sr, h, 0, w, N, shift, scale, dst, dr) != 0;

int isamap_normalise(const float *src, int64_t sb, int64_t sr, int nb, int h, int w,
                     const float *shift, const float *scale, float *dst, int64_t db,
                     int64_t dr, int64_t dx) {
    if (db == 1 && dx == nb) {
        switch (nb) {
#if defined(__SSE2__)
            case 6: return six_bands(src, sb, sr, h, w, shift, scale, dst, dr);
#else
            BANDS(6)
#endif
            BANDS(1) BANDS(2) BANDS(3) BANDS(4) BANDS(5) BANDS(7) BANDS(8)
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
