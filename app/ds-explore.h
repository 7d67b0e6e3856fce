/* ds-explore.h: what the explorer computes on its worker thread.
 *
 * The window keeps its inputs in a DsExploreParams (image, prompts, t, s,
 * seed, blocks, chosen words, point, colormap …) and posts a copy as a job;
 * ds_explore_update runs on the worker: it asks the session for the features
 * (a cache hit unless the image, a prompt, t, seed, ensemble or the block set
 * changed — so s, words, colormap and the point query run no network) and
 * turns them into pixels: per block the PCA of X_uncond, X_s and Δcond and
 * |Δcond|; per prompt the chosen word's cross-attention heat map; the joint
 * PCA of an image pair; the point query's cosine-similarity map; the CKA-vs-s
 * curves. The result is plain memory (RGBA8 buffers, floats), which the main
 * thread turns into textures.
 *
 * Everything here runs on the worker thread, which owns the DsExplorer (the
 * session and the model); the main thread never touches a DsExplorer while
 * the worker runs.
 */
#pragma once

#include <glib.h>
#include <stdatomic.h>

#include "ds-render.h"
#include "ds-session.h"

G_BEGIN_DECLS

/* An image shared between threads: immutable once made (refcounted). */
typedef struct {
  DsImage image;
  char *name;            /* file name or "pasted image" */
} DsSharedImage;

DsSharedImage *ds_shared_image_load (const char *path, GError **error);
DsSharedImage *ds_shared_image_decode (const void *data, gsize size, const char *name,
                                       GError **error);
DsSharedImage *ds_shared_image_ref (DsSharedImage *im);
void ds_shared_image_unref (DsSharedImage *im);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (DsSharedImage, ds_shared_image_unref)

#define DS_EXPLORE_TILES 4   /* PCA X_uncond, PCA X_s, PCA Δcond, |Δcond| */

typedef enum {
  DS_OVERLAY_NONE,
  DS_OVERLAY_WORD,       /* the chosen word's heat map */
  DS_OVERLAY_TILE,       /* a map tile (block, column) */
  DS_OVERLAY_POINT,      /* the point query's similarity */
} DsOverlayKind;

typedef struct {
  DsSharedImage *image;   /* NULL: nothing to compute */
  DsSharedImage *image2;  /* pair view (joint PCA, correspondence); nullable */
  char *prompt;           /* the question or caption */
  char *prompt2;          /* mismatched prompt; NULL or "" for none */
  int t;
  double s;
  guint64 seed;
  gboolean ensemble;      /* heat maps over {189,389,589,789,989} × trials */
  int trials;
  int size;               /* model input side; 0: the model's native one */
  char **blocks;          /* NULL-terminated paper names */
  int word[2];            /* token-strip item per prompt: first token position, or -1 */
  int word_count[2];
  DsColormap cmap;
  DsOverlayKind overlay;
  int tile_row, tile_col; /* DS_OVERLAY_TILE: block row and column */
  gboolean point;         /* a point query is set */
  double point_u, point_v;/* in [0,1] of the picture */
  int tile_px;            /* map tiles' side in pixels (e.g. 160) */
} DsExploreParams;

DsExploreParams *ds_explore_params_copy (const DsExploreParams *p);
void ds_explore_params_free (DsExploreParams *p);
void ds_explore_params_clear (DsExploreParams *p); /* frees the members */

typedef struct {
  int w, h;
  guint8 *rgba;           /* [h, w, 4], owned */
} DsPixels;

typedef struct {
  char name[64];
  DsPixels tile[DS_EXPLORE_TILES];
  char caption[DS_EXPLORE_TILES][96];
  float *delta_mag;       /* [gh, gw] |Δcond| for hover, owned */
  int gw, gh;
} DsExploreBlock;

typedef struct {
  /* per prompt (0: the prompt, 1: the mismatched one, when given) */
  int n_prompts;
  int n_blocks;
  DsExploreBlock *blocks[2];      /* [n_blocks] each */
  DsTokens tokens[2];
  DsPixels overlay[2];            /* over the image (0) and, for prompt 2 or the
                                   * pair view, over the right-hand picture (1) */
  float *values[2];               /* [vh, vw] what the overlay shows, for hover */
  int vw[2], vh[2];
  char overlay_label[2][128];
  /* the pair view: joint PCA of X_s of the first block over both images */
  gboolean pair;
  DsPixels pair_tile[2];
  char pair_caption[128];
  /* CKA(X_s, X_uncond) over s for each block of prompt 0 */
  int n_s;
  double cka_s[21];               /* s = 0, 0.5, … 10 */
  double *cka;                    /* [n_blocks, n_s]; NaN where undefined */
  /* the inputs this view belongs to */
  int t;
  double s;
  guint64 seed;
  /* where the time went */
  double ms_network, ms_analysis;
  double ms_image, ms_vae, ms_text, ms_unet; /* per stage, summed over the queries */
  int unet_forwards;              /* run for this update */
  guint64 unet_forwards_total;    /* since the model was opened */
  gboolean truncated[2];          /* a prompt was cut at 77 tokens */
  char device[512];
} DsExploreView;

void ds_explore_view_free (DsExploreView *v);

/* The worker's state: the session on its device. */
typedef struct DsExplorer DsExplorer;

/* model_dir NULL: the built-in model (a toy shapes model, ds-pipeline.h). device: "auto", "cpu" or "cuda". */
DsExplorer *ds_explorer_open (const char *model_dir, const char *device, GError **error);
/* Takes the backend and the pipeline (transfer full, also on failure); note:
 * shown after the device name (e.g. why auto fell back to the CPU), or NULL. */
DsExplorer *ds_explorer_new (DsBackend *be, DsPipeline *p, const char *note, GError **error);
void ds_explorer_free (DsExplorer *x);
const char *ds_explorer_label (DsExplorer *x);   /* e.g. "toy shapes model, trained on synthetic scenes" */
const char *ds_explorer_device (DsExplorer *x);  /* "CPU" or "CUDA · <name>" */
gboolean ds_explorer_is_builtin (DsExplorer *x);
/* The probe names (paper grammar) of feature maps at the native size;
 * transfer full, NULL-terminated. */
char **ds_explorer_block_names (DsExplorer *x);
int ds_explorer_native_size (DsExplorer *x);
DsSession *ds_explorer_session (DsExplorer *x);

/* The work of one update (worker thread). progress may be NULL. */
DsExploreView *ds_explore_update (DsExplorer *x, const DsExploreParams *p,
                                   const atomic_int *cancel, DsProgressFn progress,
                                   gpointer progress_data, GError **error);

/* Writes the current features (both halves of every block of p, for each
 * prompt) to a safetensors file atomically, with the inputs in its metadata. */
gboolean ds_explore_export_features (DsExplorer *x, const DsExploreParams *p, const char *path,
                                     const atomic_int *cancel, GError **error);

/* DsError -> GError in the DS_EXPLORE_ERROR domain (code = DsStatus). */
#define DS_EXPLORE_ERROR (ds_explore_error_quark ())
GQuark ds_explore_error_quark (void);
void ds_explore_set_error (GError **error, const DsError *err);

G_END_DECLS
