/* Decode attention over an MLA latent cache, fp32, one pass over the keys (online softmax).
 *
 * Every query head attends to the same cached rows: row = [latent (r) | rope key (C - r)], and the values
 * are the latent part of the same rows (weight absorption). Per query row the visible keys are the first
 * n_keys[i] rows of its batch's cache. Keys are read once per query row, in blocks that stay in L1 while
 * every head uses them; nothing of size S is materialised.
 *
 * Written with GCC/Clang vector extensions (16 floats per vector): -march=native turns them into AVX-512
 * here, into pairs of AVX2 registers or NEON elsewhere. No intrinsics, no libm.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

typedef float v16 __attribute__((vector_size(64), aligned(4)));
typedef float v8 __attribute__((vector_size(32), aligned(4)));
#define BLOCK 32
#define MAX_HEADS 64

static inline v16 load16(const float *p) { v16 v; memcpy(&v, p, sizeof v); return v; }
static inline void store16(float *p, v16 v) { memcpy(p, &v, sizeof v); }
static inline float hsum16(v16 v) {
    float s = 0.0f;
    for (int i = 0; i < 16; i++) s += v[i];
    return s;
}

/* exp(f) for |f| <= ln2 / 2 from p = its leading coefficient (float or vector): the polynomial both exps share. */
#define EXP_POLY(p, f)                      \
    do {                                    \
        p = p * f + 1.3981999507e-3f;       \
        p = p * f + 8.3334519073e-3f;       \
        p = p * f + 4.1665795894e-2f;       \
        p = p * f + 1.6666665459e-1f;       \
        p = p * f + 5.0000001201e-1f;       \
        p = p * f * f + f + 1.0f;           \
    } while (0)

/* exp(x) for x <= 0 (softmax arguments) to about 2 ulp; vectorisable (no branches, no libm call). */
static inline float exp_nonpositive(float x) {
    x = x < -87.0f ? -87.0f : x;
    const float log2e = 1.44269504088896341f, ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
    float n = __builtin_floorf(x * log2e + 0.5f);
    float f = x - n * ln2_hi - n * ln2_lo;
    float p = 1.9875691500e-4f;
    EXP_POLY(p, f);
    int32_t bits = ((int32_t)n + 127) << 23;
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

/* Rows j0 .. j0+nb of a cache whose entries are fp32 (key_bits 32) or bf16 (16), as fp32 rows: fp32 is read
 * in place (*rs = the cache's row stride); bf16 is widened into tmp (nb x C, *rs = C), which stays in L1. */
static inline const float *key_block(const void *keys, int key_bits, int64_t j0, int64_t nb, int64_t row_stride,
                                     int64_t C, float *restrict tmp, int64_t *rs) {
    if (key_bits == 32) {
        *rs = row_stride;
        return (const float *)keys + j0 * row_stride;
    }
    const uint16_t *src = (const uint16_t *)keys + j0 * row_stride;
    for (int64_t j = 0; j < nb; j++)
        for (int64_t c = 0; c < C; c++) {
            const uint32_t bits = (uint32_t)src[j * row_stride + c] << 16;
            memcpy(tmp + j * C + c, &bits, sizeof bits);
        }
    *rs = C;
    return tmp;
}

/* Prefetch the rows of the block after next: at long context the cache streams from DRAM. */
static inline void prefetch_ahead(const void *keys, int key_bits, int64_t j0, int64_t n, int64_t row_stride,
                                  int64_t C) {
    const int64_t start = j0 + 2 * BLOCK;
    if (start >= n) return;
    const int64_t na = n - start < BLOCK ? n - start : BLOCK, esize = key_bits / 8;
    const char *base = (const char *)keys + start * row_stride * esize;
    for (int64_t jj = 0; jj < na; jj++)
        for (int64_t b = 0; b < C * esize; b += 64) __builtin_prefetch(base + jj * row_stride * esize + b);
}

/* scores[h * BLOCK + j] = q_h . k_j for the nb keys of a block; C a multiple of 16, H <= 8 per pass. */
static inline __attribute__((always_inline)) void block_scores16(
    const float *restrict qs, const float *restrict blk, int64_t row_stride, int64_t nb, int64_t H, int64_t C,
    float *restrict s) {
    for (int64_t h0 = 0; h0 < H; h0 += 8) {
        const int64_t hn = H - h0 < 8 ? H - h0 : 8;
        for (int64_t j = 0; j < nb; j++) {
            const float *k = blk + j * row_stride;
            v16 acc[8] = {0};
            for (int64_t c = 0; c < C; c += 16) {
                const v16 kv = load16(k + c);
                for (int64_t h = 0; h < hn; h++) acc[h] += load16(qs + (h0 + h) * C + c) * kv;
            }
            for (int64_t h = 0; h < hn; h++) s[(h0 + h) * BLOCK + j] = hsum16(acc[h]);
        }
    }
}

static inline __attribute__((always_inline)) void block_scores(
    const float *restrict qs, const float *restrict blk, int64_t row_stride, int64_t nb, int64_t H, int64_t C,
    float *restrict s) {
    for (int64_t h = 0; h < H; h++)
        for (int64_t j = 0; j < nb; j++) {
            const float *k = blk + j * row_stride;
            float d = 0.0f;
            for (int64_t c = 0; c < C; c++) d += qs[h * C + c] * k[c];
            s[h * BLOCK + j] = d;
        }
}

/* out_h += sum_j p[h, j] * k_j[:r] with the accumulators in registers; r a multiple of 16, at most 64.
 * Even and odd keys accumulate separately: twice the independent FMA chains. */
static inline __attribute__((always_inline)) void block_values16(
    const float *restrict p, const float *restrict blk, int64_t row_stride, int64_t nb, int64_t r, float *restrict oh) {
    v16 even[4] = {0}, odd[4] = {0};
    const int64_t nv = r / 16;
    int64_t j = 0;
    for (; j + 2 <= nb; j += 2) {
        const float *k = blk + j * row_stride;
        const float p0 = p[j], p1 = p[j + 1];
        for (int64_t v = 0; v < nv; v++) {
            even[v] += p0 * load16(k + 16 * v);
            odd[v] += p1 * load16(k + row_stride + 16 * v);
        }
    }
    if (j < nb)
        for (int64_t v = 0; v < nv; v++) even[v] += p[j] * load16(blk + j * row_stride + 16 * v);
    for (int64_t v = 0; v < nv; v++) store16(oh + 16 * v, load16(oh + 16 * v) + even[v] + odd[v]);
}

static inline __attribute__((always_inline)) void attend_row(
    const float *restrict q, const void *keys, int key_bits, int64_t row_stride, int64_t n, int64_t H, int64_t C,
    int64_t r, float scale, float *restrict out, float *restrict qs, float *restrict s, float *restrict m,
    float *restrict l, float *restrict tmp) {
    const int vec = C % 16 == 0 && r % 16 == 0 && r <= 64;
    for (int64_t i = 0; i < H * C; i++) qs[i] = q[i] * scale;
    for (int64_t h = 0; h < H; h++) { m[h] = -INFINITY; l[h] = 0.0f; }
    for (int64_t i = 0; i < H * r; i++) out[i] = 0.0f;
    for (int64_t j0 = 0; j0 < n; j0 += BLOCK) {
        const int64_t nb = n - j0 < BLOCK ? n - j0 : BLOCK;
        int64_t rs;
        const float *blk = key_block(keys, key_bits, j0, nb, row_stride, C, tmp, &rs);
        prefetch_ahead(keys, key_bits, j0, n, row_stride, C);
        if (vec) block_scores16(qs, blk, rs, nb, H, C, s);
        else block_scores(qs, blk, rs, nb, H, C, s);
        for (int64_t h = 0; h < H; h++) {
            float *sh = s + h * BLOCK;
            float mx = m[h];
            for (int64_t j = 0; j < nb; j++) mx = sh[j] > mx ? sh[j] : mx;
            const float corr = exp_nonpositive(m[h] - mx); /* m = -inf on the first block: corr = 0 */
            float sum = 0.0f;
            for (int64_t j = 0; j < nb; j++) {
                sh[j] = exp_nonpositive(sh[j] - mx);
                sum += sh[j];
            }
            l[h] = l[h] * corr + sum;
            m[h] = mx;
            float *oh = out + h * r;
            for (int64_t v = 0; v < r; v++) oh[v] *= corr;
            if (vec) block_values16(sh, blk, rs, nb, r, oh);
            else
                for (int64_t j = 0; j < nb; j++)
                    for (int64_t v = 0; v < r; v++) oh[v] += sh[j] * blk[j * rs + v];
        }
    }
    for (int64_t h = 0; h < H; h++) {
        const float inv = l[h] > 0.0f ? 1.0f / l[h] : 0.0f;
        for (int64_t v = 0; v < r; v++) out[h * r + v] *= inv;
    }
}

typedef int32_t v16i __attribute__((vector_size(64), aligned(4)));
typedef uint16_t v16h __attribute__((vector_size(32), aligned(2)));
typedef uint32_t v16u __attribute__((vector_size(64), aligned(4)));
typedef double v8d __attribute__((vector_size(64), aligned(8)));

static inline v16 splat16(float x) { return (v16){x, x, x, x, x, x, x, x, x, x, x, x, x, x, x, x}; }
static inline v16 select16(v16i mask, v16 a, v16 b) { return (v16)(((v16i)a & mask) | ((v16i)b & ~mask)); }
static inline v16 max16(v16 a, v16 b) { return select16(a > b, a, b); }

/* Lane permutations of one or two vectors, for GCC and Clang. */
#ifdef __clang__
#define EVEN_LANES(a, b) __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30)
#define ODD_LANES(a, b) __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31)
#define SWAP_HALVES(a) __builtin_shufflevector(a, a, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7)
#else
#define EVEN_LANES(a, b) __builtin_shuffle(a, b, (v16i){0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30})
#define ODD_LANES(a, b) __builtin_shuffle(a, b, (v16i){1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31})
#define SWAP_HALVES(a) __builtin_shuffle(a, (v16i){8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7})
#endif

/* exp_nonpositive on 16 lanes with vector operations only (round to nearest by the 1.5 * 2^23 trick). */
static inline v16 exp16(v16 x) {
    const float log2e = 1.44269504088896341f, ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f, magic = 12582912.0f;
    x = select16(x < -87.0f, splat16(-87.0f), x);
    const v16 n = (x * log2e + magic) - magic;
    const v16 f = x - n * ln2_hi - n * ln2_lo;
    v16 p = splat16(1.9875691500e-4f);
    EXP_POLY(p, f);
    const v16i bits = (__builtin_convertvector(n, v16i) + 127) << 23;
    return p * (v16)bits;
}

/* The pair k[0], k[1] in every pair of lanes (one 64-bit broadcast load). */
static inline v16 bcast_pair(const float *k) {
    double d;
    memcpy(&d, k, sizeof d);
    return (v16)(v8d){d, d, d, d, d, d, d, d}; /* bit-exact: no arithmetic on the pair as a double */
}

/* Keys j .. j+KG-1 of a block: sc[j / 2 + i] = [scores of key j + 2i (8 heads) | of key j + 2i + 1]. Lanes 2h, 2h+1
 * of an accumulator hold head h's partial sums over the even and odd components, qd[c2] the matching query pair, so
 * each FMA does 16 useful lanes with a 64-bit broadcast of two key components; an even/odd shuffle adds them.
 * KG = 1 (a block's odd last key) duplicates the key into both halves. */
#define PAIR_SCORES(KG)                                                                                            \
    do {                                                                                                           \
        v16 a[KG < 2 ? 2 : KG];                                                                                    \
        for (int g = 0; g < KG; g++) a[g] = (v16){0};                                                              \
        for (int64_t c2 = 0; c2 < C / 2; c2++) {                                                                   \
            const v16 qv = load16(qd + 16 * c2);                                                                   \
            for (int g = 0; g < KG; g++) a[g] += qv * bcast_pair(k + g * rs + 2 * c2);                              \
        }                                                                                                          \
        if (C & 1) {                                                                                               \
            const v16 qv = load16(qd + 16 * (C / 2));                                                              \
            for (int g = 0; g < KG; g++) a[g] += qv * k[g * rs + C - 1];                                           \
        }                                                                                                          \
        if (KG == 1) a[1] = a[0];                                                                                  \
        for (int g = 0; g < KG; g += 2) sc[(j + g) / 2] = EVEN_LANES(a[g], a[g + 1]) + ODD_LANES(a[g], a[g + 1]);  \
    } while (0)

/* Eight heads: scores are computed two keys x eight heads per 16-lane vector, so running max, sum and the
 * probabilities are 16-lane vectors too ([key j | key j+1], each 8 heads), with no horizontal sums. */
static inline __attribute__((always_inline)) void attend_row_8heads(
    const float *restrict q, const void *keys, int key_bits, int64_t row_stride, int64_t n, int64_t C, int64_t r,
    float scale, float *restrict out, float *restrict work, float *restrict tmp) {
    float *qd = work; /* qd[16 * c2 + 2h + t] = head h's component 2 c2 + t, pre-scaled (0 past C) */
    for (int64_t c2 = 0; c2 < (C + 1) / 2; c2++)
        for (int h = 0; h < 8; h++)
            for (int t = 0; t < 2; t++)
                qd[16 * c2 + 2 * h + t] = 2 * c2 + t < C ? q[h * C + 2 * c2 + t] * scale : 0.0f;
    float p[8 * BLOCK]; /* p[j * 8 + h] for one block */
    v16 m = splat16(-INFINITY), l = {0}; /* per head, both halves alike */
    for (int64_t i = 0; i < 8 * r; i++) out[i] = 0.0f;
    for (int64_t j0 = 0; j0 < n; j0 += BLOCK) {
        const int64_t nb = n - j0 < BLOCK ? n - j0 : BLOCK;
        int64_t rs;
        const float *blk = key_block(keys, key_bits, j0, nb, row_stride, C, tmp, &rs);
        prefetch_ahead(keys, key_bits, j0, n, row_stride, C);
        v16 sc[BLOCK / 2];
        int64_t j = 0;
        for (; j + 8 <= nb; j += 8) {
            const float *k = blk + j * rs;
            PAIR_SCORES(8);
        }
        for (; j + 2 <= nb; j += 2) {
            const float *k = blk + j * rs;
            PAIR_SCORES(2);
        }
        if (j < nb) { /* the last key alone, in both halves: the max is right, its copy's probabilities are zeroed */
            const float *k = blk + j * rs;
            PAIR_SCORES(1);
        }
        const int64_t np = (nb + 1) / 2;
        v16 mx = m;
        for (int64_t i = 0; i < np; i++) mx = max16(mx, sc[i]);
        mx = max16(mx, SWAP_HALVES(mx));
        const v16 corr = exp16(m - mx); /* m = -inf on the first block: corr ~ 0 */
        v16 sum = {0};
        for (int64_t i = 0; i < np; i++) {
            v16 e = exp16(sc[i] - mx);
            if (2 * i + 1 == nb) e = select16((v16i){-1, -1, -1, -1, -1, -1, -1, -1}, e, (v16){0});
            sum += e;
            store16(p + 16 * i, e);
        }
        l = l * corr + sum + SWAP_HALVES(sum);
        m = mx;
        int64_t v0 = 0;
        for (; v0 + 32 <= r; v0 += 32) { /* all eight heads at once, 32 value columns per pass: 16 chains */
            v16 acc[8][2];
            for (int h = 0; h < 8; h++) {
                acc[h][0] = load16(out + h * r + v0) * corr[h];
                acc[h][1] = load16(out + h * r + v0 + 16) * corr[h];
            }
            for (j = 0; j < nb; j++) {
                const float *k = blk + j * rs + v0;
                const v16 k0 = load16(k), k1 = load16(k + 16);
                for (int h = 0; h < 8; h++) {
                    acc[h][0] += p[8 * j + h] * k0;
                    acc[h][1] += p[8 * j + h] * k1;
                }
            }
            for (int h = 0; h < 8; h++) {
                store16(out + h * r + v0, acc[h][0]);
                store16(out + h * r + v0 + 16, acc[h][1]);
            }
        }
        for (; v0 + 16 <= r; v0 += 16) {
            v16 acc[8];
            for (int h = 0; h < 8; h++) acc[h] = load16(out + h * r + v0) * corr[h];
            for (j = 0; j < nb; j++) {
                const v16 k0 = load16(blk + j * rs + v0);
                for (int h = 0; h < 8; h++) acc[h] += p[8 * j + h] * k0;
            }
            for (int h = 0; h < 8; h++) store16(out + h * r + v0, acc[h]);
        }
        if (v0 < r)
            for (int h = 0; h < 8; h++) {
                float *oh = out + h * r;
                for (int64_t v = v0; v < r; v++) oh[v] *= corr[h];
                for (j = 0; j < nb; j++)
                    for (int64_t v = v0; v < r; v++) oh[v] += p[8 * j + h] * blk[j * rs + v];
            }
    }
    for (int h = 0; h < 8; h++) {
        const float inv = l[h] > 0.0f ? 1.0f / l[h] : 0.0f;
        for (int64_t v = 0; v < r; v++) out[h * r + v] *= inv;
    }
}

/* q: (rows, H, C) contiguous; row i belongs to batch i / rows_per_batch. cache: batch b's key j at element
 * b * batch_stride + j * row_stride, fp32 (key_bits 32) or bf16 (16). n_keys: (rows,) visible keys per row.
 * out: (rows, H, r). work: at least H * (C + BLOCK + 2) + BLOCK * C floats, 32-byte aligned.
 * Returns 0, or -1 for an unsupported head count or key width. */
int latent_attention(const float *q, int64_t rows, int64_t rows_per_batch, int64_t H, int64_t C, const void *cache,
                     int key_bits, int64_t batch_stride, int64_t row_stride, const int64_t *n_keys, int64_t r,
                     float scale, float *out, float *work) {
    if (H > MAX_HEADS || (key_bits != 32 && key_bits != 16)) return -1;
    const int64_t esize = key_bits / 8;
    float *qs = work, *s = qs + H * C, *m = s + H * BLOCK, *l = m + H;
    float *tmp = work + H * (C + BLOCK + 2) + 8; /* widened bf16 rows; 32-byte aligned */
    tmp = (float *)(((uintptr_t)tmp + 31) & ~(uintptr_t)31);
    for (int64_t i = 0; i < rows; i++) {
        const void *keys = (const char *)cache + (i / rows_per_batch) * batch_stride * esize;
        const float *qi = q + i * H * C;
        float *oi = out + i * H * r;
        /* the common MLA shape, with constant trip counts; contiguous rows also give constant row offsets,
         * which frees the registers that eight row pointers take */
        if (H == 8 && C == 80 && r == 64 && row_stride == 80)
            attend_row_8heads(qi, keys, key_bits, 80, n_keys[i], 80, 64, scale, oi, work, tmp);
        else if (H == 8 && C == 80 && r == 64)
            attend_row_8heads(qi, keys, key_bits, row_stride, n_keys[i], 80, 64, scale, oi, work, tmp);
        else if (H == 8)
            attend_row_8heads(qi, keys, key_bits, row_stride, n_keys[i], C, r, scale, oi, work, tmp);
        else
            attend_row(qi, keys, key_bits, row_stride, n_keys[i], H, C, r, scale, oi, qs, s, m, l, tmp);
    }
    return 0;
}
