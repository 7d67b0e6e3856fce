/* ds-clip-vision.h: the CLIP vision transformer up to the hidden state LLaVA-1.5
 * reads (docs/models.md §7.1-7.2, §7.8): pixels [B,3,S,S] -> [B, (S/P)², width].
 *
 * This is transformers' CLIPVisionModel(pixels, output_hidden_states=True)
 * .hidden_states[feature_layer] with the class token dropped (LLaVA's
 * vision_feature_select_strategy "default", the original's "patch"): patch
 * convolution (no bias), class token and position embeddings, pre_layrnorm,
 * then pre-LayerNorm encoder layers (bidirectional multi-head attention with
 * biases, an MLP with quick_gelu or exact GELU per hidden_act). Only the layers
 * the feature layer needs are loaded and run: for LLaVA's -2, the last layer
 * and post_layernorm are never read, so a checkpoint without them loads. The
 * pooled output and the projection are not computed.
 *
 * Usage:
 *   DsClipVisionConfig cfg;
 *   ds_clip_vision_config_parse (json_text, "config.json", &cfg, err);  // CLIP or llava-hf
 *   DsClipVision *vt;
 *   ds_clip_vision_load (&cfg, "model.safetensors", NULL, be, &vt, err);  // prefix detected
 *   DsArena a;
 *   ds_backend_arena_init (be, &a, ds_clip_vision_arena_bytes (vt, B), err);
 *   // pixels: host [B,3,S,S] f32 from ds_clip_image_preprocess (ds-clip-image.h)
 *   ds_clip_vision_forward (vt, be, &a, &pixels, &out, err);  // out [B, 576, 1024]
 *
 * Not here: position-embedding interpolation for other image sizes, several
 * feature layers at once (newer llava-hf configs allow a list), the projector.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "ds-model-dir.h"
#include "ds-nn.h"
#include "ds-safetensors-index.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  int hidden_size, intermediate_size;
  int num_attention_heads, num_hidden_layers;
  int image_size, patch_size, num_channels;
  DsActivation hidden_act;  /* "quick_gelu" (CLIP) or "gelu" */
  float layer_norm_eps;
  /* Which hidden state is the output, Python-style: hidden_states has
   * num_hidden_layers + 1 entries (the embeddings after pre_layrnorm, then each
   * layer's output), so -2 (LLaVA-1.5) is the output of layer index
   * num_hidden_layers - 2. From the LLaVA config's vision_feature_layer or
   * mm_vision_select_layer; -2 when absent. */
  int feature_layer;
  /* vision_feature_select_strategy "full" / mm_vision_select_feature
   * "cls_patch": keep the class token (N = (S/P)² + 1 rows); false for LLaVA-1.5. */
  bool keep_class_token;
} DsClipVisionConfig;

/* CLIP ViT-L/14 at 336 pixels, LLaVA-1.5's tower (docs/models.md §7.1):
 * 1024 wide, 24 layers, 16 heads, MLP 4096, patch 14, quick_gelu, eps 1e-5,
 * feature layer -2, class token dropped. */
void ds_clip_vision_config_l14_336 (DsClipVisionConfig *out);

/* Parses config.json text: a standalone CLIPVisionConfig (model_type
 * "clip_vision_model" or none), a full CLIPConfig ("clip": its vision_config),
 * or a llava-hf LlavaConfig ("llava": its vision_config, or CLIP ViT-L/14-336
 * when it has none, and vision_feature_layer / vision_feature_select_strategy
 * from the top level; the original LLaVA's mm_vision_select_layer /
 * mm_vision_select_feature are read too). Keys absent from the vision object
 * take CLIPVisionConfig's defaults, as transformers does. Errors name `path`,
 * the object and the key. */
DsStatus ds_clip_vision_config_parse (const char *json_text, const char *path,
                                      DsClipVisionConfig *out, DsError *err);
/* The same from a parsed CLIPVisionConfig object (e.g. a LLaVA config's
 * "vision_config", for a loader that reads the rest of that file itself);
 * `what` names it in messages ("config.json: vision_config"). feature_layer
 * and keep_class_token are set to LLaVA-1.5's (-2, false): the caller sets
 * them from its own keys. */
DsStatus ds_clip_vision_config_from_json (const json_t *vision, const char *what,
                                          DsClipVisionConfig *out, DsError *err);

typedef struct DsClipVision DsClipVision;

/* Loads the parameters (f32, f16 or bf16) the configured feature layer needs
 * from an open safetensors file onto `be`, shape-checked against cfg. `prefix`
 * is what every name starts with, e.g. "vision_model." (a CLIP checkpoint),
 * "vision_tower.vision_model." (llava-hf) or "model.vision_tower.vision_model."
 * (llava-hf re-saved by transformers 5) or "" (a CLIPVisionModel saved by
 * transformers 5), then "vision_tower." and "model.vision_tower." (llava-hf
 * re-saved by transformers 5.2x, without the vision_model level); NULL tries
 * those six in order and takes the first the file has, by its patch_embedding. Errors name the file and tensor, prefixed with
 * "vision tower". `st` may be closed after the call.
 * transfer full: *out must be freed with ds_clip_vision_free. */
DsStatus ds_clip_vision_load_from (const DsClipVisionConfig *cfg, const DsSafetensors *st,
                                   const char *prefix, DsBackend *be, DsClipVision **out,
                                   DsError *err);
/* The same from a sharded checkpoint (ds-safetensors-index.h), each tensor
 * from the shard holding it; a NULL prefix is detected through the index. */
DsStatus ds_clip_vision_load_index (const DsClipVisionConfig *cfg,
                                    const DsSafetensorsIndex *idx, const char *prefix,
                                    DsBackend *be, DsClipVision **out, DsError *err);
/* The same, opening and closing the file at `weights_path`. */
DsStatus ds_clip_vision_load (const DsClipVisionConfig *cfg, const char *weights_path,
                              const char *prefix, DsBackend *be, DsClipVision **out,
                              DsError *err);
/* The same tower with seeded random parameters (ds_weights_init_random), for
 * tests and benchmarks. */
DsStatus ds_clip_vision_new_random (const DsClipVisionConfig *cfg, uint64_t seed,
                                    DsBackend *be, DsClipVision **out, DsError *err);
void ds_clip_vision_free (DsClipVision *vt);

/* transfer none: valid while vt lives. */
const DsClipVisionConfig *ds_clip_vision_config (const DsClipVision *vt);
/* Rows per image in the output: (S/P)², plus one with keep_class_token. */
int64_t ds_clip_vision_n_tokens (const DsClipVision *vt);
/* Encoder layers a forward runs (and that were loaded). */
int ds_clip_vision_n_layers_run (const DsClipVision *vt);

/* The exact arena size ds_clip_vision_forward needs for a batch of B images
 * (measured on the null backend); 0 when B < 1. */
size_t ds_clip_vision_arena_bytes (DsClipVision *vt, int64_t B);

/* pixels: host [B, num_channels, S, S] f32 (S = image_size), normalised as the
 * CLIP processor does; out: [B, n_tokens, hidden] in be's act_dtype,
 * preallocated on be's device. `a` must hold ds_clip_vision_arena_bytes (B)
 * free bytes; it is returned to its entry mark. */
DsStatus ds_clip_vision_forward (DsClipVision *vt, DsBackend *be, DsArena *a,
                                 const DsTensor *pixels, DsTensor *out, DsError *err);

#ifdef __cplusplus
}
#endif
