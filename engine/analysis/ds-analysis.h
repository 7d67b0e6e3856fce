/* ds-analysis.h: the paper's measurements on probe maps, on the host.
 *
 * Everything here reads host f32 arrays and writes host f32 (maps) or f64
 * (scalars); nothing touches a device and nothing keeps state. Maps are
 * channels-first, as the probes deliver them (ds-probes.h): a feature map
 * [C, H, W] is C channels over N = H·W positions, position n = y·W + x.
 *
 *   guidance   x_s = x_u + s·(x_c − x_u), the conditioning delta and its size
 *   CKA        linear CKA (docs/models.md §8.1), on matrices, on two maps of one
 *              image (positions as examples) and across guidance strengths
 *   cosine     two images' maps at one probe, per position and flattened
 *   resize     maps resized exactly as PyTorch's F.interpolate does it
 *              (bilinear and bicubic, align_corners=False, no antialias)
 *   scores     the Discffusion image–text score (§6.5) and Winoground's
 *              text / image / group scores
 *
 * PCA → RGB is in ds-pca.h, cross-attention heat maps in ds-heatmap.h.
 * Inputs that come from users or files (shapes, degenerate data) fail with a
 * DsStatus and a DsError; sizes that only the program chooses are asserted.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "ds-error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One image's feature map at one probe: host f32, contiguous [c, h, w]. */
typedef struct {
  const float *data;
  int64_t c, h, w;
} DsFeatureMap;

/* ---- guidance ---------------------------------------------------------- */

/* out[i] = xu[i] + s·(xc[i] − xu[i]) in f32, evaluated in exactly that form
 * (one subtraction, one product, one sum, each rounded to f32, as the same
 * expression on torch f32 tensors). s = 0 gives xu exactly; s = 1 gives xc up
 * to the rounding of xu + (xc − xu). out may alias xu or xc. All arrays [n]. */
void ds_guidance_amplify (const float *xu, const float *xc, float s, float *out, int64_t n);

/* out = xc − xu, [n]; out may alias either input. */
void ds_delta_cond (const float *xu, const float *xc, float *out, int64_t n);

/* delta [c, n] -> out [n]: the L2 norm over channels at each position
 * (accumulated in f64). */
void ds_delta_magnitude (const float *delta, int64_t c, int64_t n, float *out);

/* ---- linear CKA (docs/models.md §8.1) -------------------------------------- */

/* x [n, p], y [n, q]: two representations of the same n examples, one per row.
 * Columns are centred, then
 *   CKA = ‖Ỹᵀ X̃‖_F² / (‖X̃ᵀ X̃‖_F · ‖Ỹᵀ Ỹ‖_F),
 * computed in f64 in the feature-space form, or in the equal Gram form
 * tr(KL) / (‖K‖_F ‖L‖_F) with K = X̃X̃ᵀ, L = ỸỸᵀ when n < p + q (the cheaper
 * one). The result is in [0, 1]. DS_ERR_INVALID when n < 2, when x or y has
 * zero variance (every column constant) or holds a non-finite value. */
DsStatus ds_cka_linear (const float *x, const float *y, int64_t n, int64_t p, int64_t q,
                        double *out, DsError *err);

/* CKA between two maps of the same image, positions as examples: a [ca, H, W]
 * and b [cb, H, W] are read as [N, ca] and [N, cb] matrices (N = H·W). The
 * maps must have the same H and W, else DS_ERR_INVALID naming both shapes; to
 * compare maps of different sizes, bring one to the other's size first with
 * ds_map_resize_bilinear. */
DsStatus ds_cka_maps (DsFeatureMap a, DsFeatureMap b, double *out, DsError *err);

/* The "CKA between conditional and unconditional across s" curve (the paper's
 * Fig. 5c / 9 style): xu, xc [c, n] maps of one probe, s [n_s] strengths;
 * out[i] = CKA(X_s, X_u) with X_s = ds_guidance_amplify (xu, xc, s[i]), positions
 * as examples. Fails as ds_cka_linear (n < 2, zero variance of X_u or an X_s). */
DsStatus ds_cka_guidance_sweep (const float *xu, const float *xc, int64_t c, int64_t n,
                                const float *s, int n_s, double *out, DsError *err);

/* ---- cosine similarity between two images' maps ------------------------- */

typedef struct {
  /* Mean over positions n of cos(a[:, n], b[:, n]): do the two images carry
   * the same channel pattern at the same place. A position where either
   * vector is zero counts as cosine 0 (what torch's eps-clamped
   * F.cosine_similarity gives there) and still counts in the mean. */
  double mean_position;
  /* cos(vec(a), vec(b)) over all c·h·w values: one number for the whole map. */
  double flat;
} DsCosine;

/* a and b: the same probe in two images; shapes must be equal (else
 * DS_ERR_INVALID naming both). An all-zero map is DS_ERR_INVALID (its
 * flattened cosine has no direction). Accumulated in f64. */
DsStatus ds_cosine_maps (DsFeatureMap a, DsFeatureMap b, DsCosine *out, DsError *err);

/* ---- resizing maps like torch.nn.functional.interpolate ----------------- */

/* x [c, h, w] -> out [c, h2, w2] as F.interpolate(x[None], size=(h2, w2),
 * mode='bilinear', align_corners=False, antialias=False): source coordinate
 * (i + 0.5)·(h/h2) − 0.5 clamped at 0, computed in f32 as torch does, so the
 * taps and weights are torch's. All sizes >= 1; out must not alias x.
 * DS_ERR_NOMEM is the only failure. */
DsStatus ds_map_resize_bilinear (const float *x, int64_t c, int64_t h, int64_t w, float *out,
                                 int64_t h2, int64_t w2, DsError *err);

/* The same for mode='bicubic' (Keys' cubic convolution, A = −0.75, border
 * taps clamped to the edge, source coordinate not clamped), torch's CPU kernel. */
DsStatus ds_map_resize_bicubic (const float *x, int64_t c, int64_t h, int64_t w, float *out,
                                int64_t h2, int64_t w2, DsError *err);

/* ---- image–text scores --------------------------------------------------- */

/* Discffusion's per-layer score (§6.5.1–2): logits [bh, n, k] are one cross-
 * attention layer's pre-softmax logits (batch·heads, pixels, text keys); the
 * result is the mean over all (bh, n) of logsumexp_k logits (stable form, f64).
 * A row containing +inf gives +inf, a row of all −inf gives −inf. */
double ds_lse_score (const float *logits, int64_t bh, int64_t n, int64_t k);

/* The noise-residual bias of one timestep (§6.5.3): ‖ε − ε̂_uncond‖₂ −
 * ‖ε − ε̂_cond‖₂ over the n values of the latent (4·64·64 for SD 2.1-base). */
double ds_discffusion_bias (const float *eps, const float *eps_uncond, const float *eps_cond,
                            int64_t n);

/* One timestep's per-layer values from the UNet's DsProbeSink.cross_lse
 * ([n_cross_layers, batch]: per layer and batch item, the mean over heads and
 * positions of the logsumexp): out[j] = mean over the batch (both CFG halves)
 * of cross_lse[layers[j]·batch + b], j < n_layers. `layers` are positions among
 * the cross-attention layers in forward order (ds_discffusion_layers in
 * ds-heatmap.h gives those of §6.5.2). Equal to ds_lse_score of the layer's
 * [batch·heads, N, K] logits. */
void ds_discffusion_step_lse (const double *cross_lse, int batch, const int *layers,
                              int n_layers, double *out);

/* The final Discffusion score (§6.5.2–5): layer_lse [n_steps, n_layers] holds
 * ds_lse_score of each layer (those of §6.5.2) at each sampled timestep and
 * bias [n_steps] the ds_discffusion_bias of each step;
 *   out = mean_t ( mean_l layer_lse[t, l] + bias[t] ).
 * (The released demo wrapper multiplies this by 0.1; rankings do not change.)
 * DS_ERR_INVALID when n_steps or n_layers is < 1. */
DsStatus ds_discffusion_score (const double *layer_lse, int n_steps, int n_layers,
                               const double *bias, double *out, DsError *err);

/* Winoground (Thrush et al., 2022). s [2, 2] row-major, s[2·c + i] = score of
 * caption c with image i (higher = better match):
 *   text:  s(c0,i0) > s(c1,i0) and s(c1,i1) > s(c0,i1)   (right caption per image)
 *   image: s(c0,i0) > s(c0,i1) and s(c1,i1) > s(c1,i0)   (right image per caption)
 *   group: text and image.
 * Comparisons are strict: a tie (or a NaN) fails. */
typedef struct {
  bool text, image, group;
} DsWinoground;

DsWinoground ds_winoground_item (const double s[4]);

typedef struct {
  int n;                      /* items */
  int text, image, group;     /* items passing each */
  double text_score, image_score, group_score; /* the fractions, in [0, 1] */
} DsWinogroundTotals;

/* s [n, 2, 2]: the items' score matrices. DS_ERR_INVALID when n < 1. */
DsStatus ds_winoground_aggregate (const double *s, int n, DsWinogroundTotals *out,
                                  DsError *err);

#ifdef __cplusplus
}
#endif
