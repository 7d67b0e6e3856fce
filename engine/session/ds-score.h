/* ds-score.h: Discffusion's image–text matching score over a session
 * (docs/models.md §6.5), the one the CLI's `score` prints and the built-in
 * model's Winoground test checks.
 *
 * For one (image, caption) pair every timestep t and trial r of the query is
 * one UNet run on [uncond, caption] at x_t, made from the image's latent and
 * the noise of seed + r. A run gives the score layers' mean cross-attention
 * logsumexp (both CFG halves) and the bias ‖ε − ε̂_uncond‖ − ‖ε − ε̂_cond‖; the
 * score is the mean over the runs of (mean over the layers) + bias. The score
 * layers (ds_discffusion_layers) are each cross-attention transformer of the
 * last down level that has them, the mid block's and each of the last up
 * level's: six for SD 2.x, four for the built-in model.
 */
#pragma once

#include "ds-session.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DS_SCORE_MAX_LAYERS 16

/* The score layers at input side `size`: their positions among the
 * cross-attention layers (forward order) into layers[DS_SCORE_MAX_LAYERS], and
 * optionally their paper names ("D-L2-R0", "M", "U-L3-R1") into names; *n their
 * count. DS_ERR_UNSUPPORTED when the model has none, or more than the maximum. */
DsStatus ds_score_layers (DsPipeline *p, int size, int *layers, char (*names)[48], int *n,
                          DsError *err);

/* The score of q->image with q->prompt, over q's timesteps (or q->t) × trials
 * (want_eps and the heat maps are set here; the other fields are the caller's). */
DsStatus ds_session_score (DsSession *s, const DsQuery *q, double *out, DsError *err);

#ifdef __cplusplus
}
#endif
