/* ds-pca.h: probe maps shown as colour by PCA (docs/models.md §8.2).
 *
 * A map X [C, N] (channels-first, N = H·W positions, as the probes give it) is
 * read with positions as samples and channels as features: each channel is
 * centred by its mean over the positions, the top three principal components
 * are found with an exact eigensolver, and the positions' scores on them become
 * R, G and B after a min–max over that image's positions. This is Meng et al.'s
 * plot_pca (sklearn PCA(3), transform, per-component min–max) with two
 * differences that make it deterministic:
 *
 *  - Solver: LAPACK dsyevr on the C×C scatter matrix X̃X̃ᵀ when C <= N, else on
 *    the N×N Gram matrix X̃ᵀX̃ (then component = X̃u/√λ), asking for the top 3
 *    eigenpairs only; accumulated in f64. Both give the same components.
 *  - Sign rule: each component's largest-magnitude loading (over channels) is
 *    made positive; on a tie of magnitudes the first such channel decides.
 *    (sklearn's newer svd_flip does the same; colours from other tools agree up
 *    to a per-channel flip c -> 1 − c.)
 *
 * Components whose eigenvalue is zero or at most 1e-10 of the first one (C < 3,
 * rank < 3, a constant map) are left out: their colour channel is 0.5. A kept
 * component that is constant over an image's positions is 0.5 there too.
 *
 * Joint PCA (sd-dino's vis_pca): one fit over the concatenated positions of K
 * images of the same C (sizes may differ), then each image's scores are
 * min–max scaled on that image alone.
 *
 * Usage (the UI's path):
 *   float rgb[N * 3]; double ratio[3];
 *   if (ds_pca_rgb (map, C, N, rgb, ratio, err) != DS_OK) ...
 */
#pragma once

#include <stdint.h>

#include "ds-error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DS_PCA_COMPONENTS 3

typedef enum {
  DS_PCA_SOLVER_AUTO,       /* covariance when C <= N, else Gram */
  DS_PCA_SOLVER_COVARIANCE, /* eigendecompose the C×C scatter matrix */
  DS_PCA_SOLVER_GRAM,       /* eigendecompose the N×N Gram matrix */
} DsPcaSolver;

typedef struct {
  int64_t c;            /* channels */
  int64_t n;            /* positions fitted (all images together) */
  int n_components;     /* components kept, 0..3 */
  double *mean;         /* [c] per-channel mean over the fitted positions; owned */
  double *components;   /* [3, c] unit loadings, sign rule applied; rows past
                         * n_components are zero; owned */
  double variance[DS_PCA_COMPONENTS];       /* eigenvalue / (n − 1): sklearn's explained_variance_ */
  double variance_ratio[DS_PCA_COMPONENTS]; /* share of the total variance, 0 for a
                                             * missing component: explained_variance_ratio_ */
} DsPca;

/* Fits one PCA on k images: x[i] is [c, n[i]] host f32. DS_ERR_INVALID when
 * k < 1, c < 1, an image has no positions or a value is not finite;
 * DS_ERR_NOMEM; DS_ERR_INVALID naming dsyevr if LAPACK reports a failure.
 * On success *out owns its arrays (ds_pca_free). */
DsStatus ds_pca_fit (const float *const *x, const int64_t *n, int k, int64_t c,
                     DsPcaSolver solver, DsPca *out, DsError *err);
void ds_pca_free (DsPca *pca);

/* x [pca->c, n] -> scores [n, 3]: the centred positions projected on the
 * components (sklearn's transform); columns past n_components are 0. */
void ds_pca_project (const DsPca *pca, const float *x, int64_t n, float *scores);

/* scores [n, 3] -> rgb [n, 3] in [0, 1]: per component, min–max over the n
 * positions; a constant component and components >= n_components give 0.5.
 * rgb may be the scores array itself. */
void ds_pca_scores_to_rgb (const float *scores, int64_t n, int n_components, float *rgb);

/* One map x [c, n] -> rgb [n, 3]; ratio [3] (may be NULL) receives the
 * explained-variance ratios of the three components. */
DsStatus ds_pca_rgb (const float *x, int64_t c, int64_t n, float *rgb, double *ratio,
                     DsError *err);

/* K maps x[i] [c, n[i]] -> rgb[i] [n[i], 3]: one joint fit, per-image min–max. */
DsStatus ds_pca_rgb_joint (const float *const *x, const int64_t *n, int k, int64_t c,
                           float *const *rgb, double *ratio, DsError *err);

#ifdef __cplusplus
}
#endif
