/* ds-heatmap.h: cross-attention heat maps: where in the image each prompt token
 * is looked at (docs/models.md §6.1–6.4).
 *
 * Input is the conditional half of a cross-map probe: one layer's attention
 * probabilities [heads, Nq, K] (softmax over the K = 77 text keys) with the
 * layer's spatial size Nq = H·W (query n = y·W + x). A heat map is [H·W, K],
 * position-major like the probe; a token's or word's map is one [H·W] column.
 *
 * Two aggregations:
 *  - ds_heatmap_mean: the Prompt-to-Prompt / Attend-and-Excite "default"
 *    (§6.3): the arithmetic mean over every (layer, head) map of layers that
 *    share one resolution; for SD 2.1-base at 512² the five 16×16 layers
 *    (ds_heatmap_cross_layers with nq = 256). Several timesteps or noise trials
 *    are averaged with DsHeatmapAccum (P2P's sum / step count).
 *  - DAAM (§6.2): per (layer, head), the maps summed over timesteps, each
 *    upsampled to S×S (64 for 512² images) with PyTorch's bicubic, clamped at 0,
 *    then the mean over all (layer, head) maps; optionally normalised by the sum
 *    over the prompt's word tokens. DAAM hooks every down and up cross-attention
 *    layer except 8×8 ones (ds_heatmap_cross_layers with nq = 0).
 *
 * Word maps are the mean of the maps of the word's BPE pieces (DsTokenWord:
 * positions in the token ids, SOT at 0), as DAAM's compute_token_merge_indices.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "ds-error.h"
#include "ds-probes.h"
#include "ds-tokenizer.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One layer's cross-attention, one batch item, host f32. */
typedef struct {
  const float *data;  /* [heads, h·w, k] */
  int64_t heads, h, w, k;
} DsAttnMaps;

/* Indices into `list` of the cross-attention map probes of the down and up
 * blocks (the mid block is left out, as both P2P and DAAM do at 512²) whose
 * query count is nq, in forward order; nq = 0 takes every size. Writes at most
 * max indices and returns how many there are. */
int ds_heatmap_cross_layers (const DsProbeList *list, int64_t nq, int *out, int max);

/* The layers of the Discffusion score (docs/models.md §6.5.2): the last
 * cross-attention level of the down stage (each of its transformers), the mid
 * block, and the last up level (each of its transformers), given as positions
 * among all cross-attention layers in forward order, the index space of
 * DsProbeSink.cross_lse. For SD 2.1-base: 4, 5 (D-L2-R0/R1), 6 (mid), 13, 14,
 * 15 (U-L3-R0/R1/R2), six; for the built-in shapes model (one transformer a
 * down level) four. Writes at most max and returns how many there are. */
int ds_discffusion_layers (const DsProbeList *list, int *out, int max);

/* out [h·w, k] = mean over all (layer, head) maps of `layers` (each head of each
 * layer weighs the same). DS_ERR_INVALID when n_layers < 1, a layer has no
 * heads, or the layers differ in h×w or k (the mean is taken at one
 * resolution: pass layers of one size). */
DsStatus ds_heatmap_mean (const DsAttnMaps *layers, int n_layers, float *out, DsError *err);

/* m [hw, k] -> out [hw]: column `token`. DS_ERR_INVALID when token is not in [0, k). */
DsStatus ds_heatmap_token (const float *m, int64_t hw, int64_t k, int token, float *out,
                           DsError *err);

/* m [hw, k] -> out [hw]: the mean of the columns word->first … first+count−1.
 * DS_ERR_INVALID, naming the word, when they are not inside [0, k) or count < 1. */
DsStatus ds_heatmap_word (const float *m, int64_t hw, int64_t k, const DsTokenWord *word,
                          float *out, DsError *err);

typedef enum {
  DS_HEATMAP_NORM_MAX,    /* x / max(x) (P2P's 255·m/max(m) before the 255); all zero
                           * when max <= 0 */
  DS_HEATMAP_NORM_MINMAX, /* (x − min) / (max − min) (DAAM's display); 0 when constant */
} DsHeatmapNorm;

/* In place over x [n]. */
void ds_heatmap_normalize (float *x, int64_t n, DsHeatmapNorm mode);

/* Arithmetic mean of several heat maps of one size (timesteps × trials), so the
 * caller can run the UNet once per (t, trial) and add each result. */
typedef struct {
  int64_t hw, k;
  int count;    /* maps added */
  double *sum;  /* [hw, k] owned */
} DsHeatmapAccum;

DsStatus ds_heatmap_accum_init (DsHeatmapAccum *acc, int64_t hw, int64_t k, DsError *err);
/* m [hw, k]; DS_ERR_INVALID when the size differs from the accumulator's. */
DsStatus ds_heatmap_accum_add (DsHeatmapAccum *acc, const float *m, int64_t hw, int64_t k,
                               DsError *err);
/* out [hw, k] = sum / count; DS_ERR_INVALID when nothing was added. */
DsStatus ds_heatmap_accum_finish (const DsHeatmapAccum *acc, float *out, DsError *err);
void ds_heatmap_accum_free (DsHeatmapAccum *acc);

/* DAAM's accumulator: per layer id, the head maps summed over the timesteps
 * added. Memory: every added layer's heads·h·w·k floats. */
typedef struct DsDaam DsDaam;

/* out_size: the side S of the common grid (64 = the latent side for 512² images). */
DsStatus ds_daam_new (int64_t out_size, DsDaam **out, DsError *err);
void ds_daam_free (DsDaam *daam);

/* Adds one layer's maps at one timestep. `layer` names the layer across
 * timesteps (the probe index serves); a layer seen before must come with the
 * same heads, h, w, and every layer with the same k, else DS_ERR_INVALID. */
DsStatus ds_daam_add (DsDaam *daam, int layer, const DsAttnMaps *maps, DsError *err);

/* out [S·S, k]: for every (layer, head), each token's summed map bicubic-
 * upsampled to S×S (ds_map_resize_bicubic) and clamped at 0; then the mean over
 * all (layer, head) maps. With normalize, every column is divided by
 * (Σ_{t=1}^{n_tokens−2} column t) + 1e-6, the sum over the prompt's pieces
 * between SOT and EOT (DAAM keeps only columns 0 … n_tokens−1; the others are
 * left in out, divided alike). n_tokens is DsTokens.n_tokens, in [2, k].
 * DS_ERR_INVALID when nothing was added or n_tokens is out of range. */
DsStatus ds_daam_finish (const DsDaam *daam, int n_tokens, bool normalize, float *out,
                         DsError *err);
int64_t ds_daam_k (const DsDaam *daam);  /* 0 before the first add */

#ifdef __cplusplus
}
#endif
