/* ds-fusion.h: Diffscope's fusion of Stable Diffusion UNet features with
 * LLaVA-1.5's CLIP tokens (issue #13; the checkpoint format and the formulas
 * are docs/models.md §7.9; the PyTorch reference that defines them is
 * tests/reference/gen_fusion_fixtures.py).
 *
 * A fusion checkpoint is a folder: config.json (DsFusionConfig) and
 * fusion.safetensors (f32, f16 or bf16). It names one UNet probe, a
 * timestep t and a guidance scale s: the probe X [C, h, w] of both CFG halves
 * (cond = the question, uncond = "") is guided, X = X_u + s·(X_c − X_u), and
 * average-pooled to a g×g grid, row-major, giving the diffusion tokens
 * F [g², C] (ds_fusion_tokens). With the CLIP tokens V [N, Cv] (the vision
 * tower's output BEFORE LLaVA's projector) the forward gives
 *
 *   D = F·W_dᵀ + b_d                                        [g², Cv]
 *   concat:          fused = [V; D]                         [N + g², Cv]
 *   cross_attention: Q = LN_q(V)·W_qᵀ + b_q,  K = LN_kv(D)·W_kᵀ + b_k,
 *                    W = LN_kv(D)·W_vᵀ + b_v, H heads of Cv/H,
 *                    A = softmax(Q·Kᵀ / √(Cv/H))·W  (per head),
 *                    fused = V + A·W_oᵀ + b_o                [N, Cv]
 *
 * and LLaVA's projector then turns every fused row into an image row of the
 * prompt (ds-llava.h). No trained fusion weights exist publicly: a checkpoint
 * says whether it was trained ("trained"), and callers must not present the
 * output of one that was not as an answer (ds_llava_ask_fused refuses unless
 * asked, the CLI labels it).
 *
 * The forward runs on the backend with the op set's layer_norm, linear,
 * attention and concat (so on CUDA too where those run); inputs and output
 * are host f32.
 *
 * Usage:
 *   DsFusion *f;
 *   ds_fusion_open ("my-fusion", be, &f, err);
 *   ds_fusion_check_probe (f, &probe_info, err);      // against the SD model
 *   DsTensor F, fused;
 *   ds_fusion_tokens (ds_fusion_config (f), xu, xc, c, h, w, &F, err);
 *   ds_fusion_forward (f, &clip_tokens, &F, &fused, err);
 *   ds_fusion_free (f);
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "ds-ops.h"
#include "ds-probes.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DS_FUSION_FORMAT "diffscope-fusion" /* config.json "format" */
#define DS_FUSION_VERSION 1                 /* config.json "version" */
#define DS_FUSION_CONFIG "config.json"
#define DS_FUSION_WEIGHTS "fusion.safetensors"

typedef enum {
  DS_FUSION_CONCAT,          /* "concat": the diffusion rows after the CLIP rows */
  DS_FUSION_CROSS_ATTENTION, /* "cross_attention": CLIP queries, diffusion keys/values */
} DsFusionMode;

/* "concat", "cross_attention". */
const char *ds_fusion_mode_name (DsFusionMode mode);

typedef struct {
  DsFusionMode mode;
  char probe[80];        /* the UNet probe: paper name or long id */
  int t;                 /* UNet timestep (DS_TIMESTEP_DIRECT), >= 0 */
  float s;               /* guidance scale */
  int grid;              /* g: g×g diffusion tokens, 1..256 */
  int64_t channels;      /* "diffusion_channels": C, the probe's channels */
  int64_t vision_hidden; /* Cv: the CLIP tower's width (1024 for LLaVA-1.5) */
  int heads;             /* cross_attention: H, divides Cv; 0 for concat */
  bool trained;          /* false: random or unfinished weights, not for answers */
  char description[512]; /* "" when absent (longer ones are cut) */
} DsFusionConfig;

/* Parses config.json's text. Every key of §7.9 is checked: "format"
 * DS_FUSION_FORMAT, "version" 1, "mode", "probe", "t", "s", "grid",
 * "diffusion_channels", "vision_hidden", "heads" (cross_attention only; it
 * must divide vision_hidden), "trained" (required: a checkpoint must say), an
 * optional "description" string; an unknown key is an error. Errors name
 * `path` and the key. */
DsStatus ds_fusion_config_parse (const char *json_text, const char *path, DsFusionConfig *out,
                                 DsError *err);

typedef struct DsFusion DsFusion;

/* Opens the checkpoint folder: config.json, then fusion.safetensors, whose
 * tensors must be exactly the mode's (§7.9: no missing, no extra, float
 * dtypes, the shapes the config implies, finite values), loaded onto `be` in
 * its act_dtype. Errors name the file and the key or tensor. transfer full:
 * free *out with ds_fusion_free. */
DsStatus ds_fusion_open (const char *dir, DsBackend *be, DsFusion **out, DsError *err);
void ds_fusion_free (DsFusion *f);

/* transfer none. */
const DsFusionConfig *ds_fusion_config (const DsFusion *f);
/* The checkpoint's config.json path, for messages (transfer none). */
const char *ds_fusion_config_path (const DsFusion *f);
/* g²: the diffusion tokens. */
int64_t ds_fusion_n_tokens (const DsFusion *f);
/* Rows of the fused block for n_clip CLIP tokens: n_clip + g² (concat) or
 * n_clip (cross_attention). */
int64_t ds_fusion_n_rows (const DsFusion *f, int64_t n_clip);

/* Whether `probe` (of the SD model, at the size it will run) can feed this
 * fusion: a feature map, not an attention map; C channels; h and w multiples
 * of the grid. Errors name config.json, the probe and the field. */
DsStatus ds_fusion_check_probe (const DsFusion *f, const DsProbeInfo *probe, DsError *err);
/* Whether the vision tower's width is vision_hidden; `what` names the tower
 * in the message (e.g. the LLaVA folder). */
DsStatus ds_fusion_check_vision (const DsFusion *f, int64_t vision_hidden, const char *what,
                                 DsError *err);

/* The diffusion tokens of one probe: xu, xc host [c, h, w] (uncond and cond
 * halves) -> *tokens a new host tensor [g², c] f32 (transfer full):
 * X = xu + s·(xc − xu) element by element (ds_guidance_amplify's rounding),
 * then the mean of each (h/g)×(w/g) cell, cells row-major. DS_ERR_INVALID
 * when g does not divide h or w, or X holds a NaN or infinity. */
DsStatus ds_fusion_tokens (const DsFusionConfig *cfg, const float *xu, const float *xc,
                           int64_t c, int64_t h, int64_t w, DsTensor *tokens, DsError *err);

/* clip host [N, Cv] f32 (N >= 1), tokens host [g², C] f32 -> *fused a new
 * host tensor [ds_fusion_n_rows (f, N), Cv] f32 (transfer full). Shapes that
 * do not fit the config are DS_ERR_INVALID naming both. */
DsStatus ds_fusion_forward (DsFusion *f, const DsTensor *clip, const DsTensor *tokens,
                            DsTensor *fused, DsError *err);

#ifdef __cplusplus
}
#endif
