/* ds-text-encoder.h: the CLIP text transformer (docs/models.md §5.1-5.3): token ids
 * -> the [B, 77, hidden] conditioning the UNet's cross-attention reads.
 *
 * This is transformers' CLIPTextModel(ids).last_hidden_state with no attention
 * mask beyond the causal one (as the SD pipelines call it): token + position
 * embedding, num_hidden_layers pre-LayerNorm blocks (causal multi-head
 * self-attention, then an MLP with exact GELU or quick_gelu per the config's
 * hidden_act), then final_layer_norm. For SD 2.x the stored layers already stop
 * at OpenCLIP's penultimate block, so no layer skipping happens here. The pooled
 * output and text projection are not computed.
 *
 * Usage:
 *   DsTextEncoder *te;
 *   ds_text_encoder_load (&md.text, md.text_encoder_weights, be, &te, err);
 *   DsArena a;
 *   ds_arena_init (&a, ds_text_encoder_arena_bytes (te, B), err);
 *   ds_text_encoder_forward (te, be, &a, ids, B, &out, err);
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "ds-model-dir.h"
#include "ds-nn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The sequence length every prompt is padded or truncated to. */
#define DS_TEXT_LEN 77

typedef struct DsTextEncoder DsTextEncoder;

/* Opens the safetensors file (f32, f16 or bf16), loads every parameter onto
 * `be` shape-checked against cfg, and closes the file. Names are taken with the
 * "text_model." prefix (transformers 4.x, the SD releases) or without it
 * (transformers 5.x), whichever the file uses. Extra tensors (e.g. the
 * text_model.embeddings.position_ids buffer of older files) are ignored.
 * Errors name the file and tensor, prefixed with "text encoder".
 * transfer full: *out must be freed with ds_text_encoder_free. */
DsStatus ds_text_encoder_load (const DsTextEncoderConfig *cfg, const char *weights_path,
                               DsBackend *be, DsTextEncoder **out, DsError *err);
/* The same encoder with seeded random parameters (the built-in demo model). */
DsStatus ds_text_encoder_new_random (const DsTextEncoderConfig *cfg, uint64_t seed,
                                     DsBackend *be, DsTextEncoder **out, DsError *err);
void ds_text_encoder_free (DsTextEncoder *te);

int ds_text_encoder_hidden_size (const DsTextEncoder *te);

/* The exact arena size ds_text_encoder_forward needs for a batch of B prompts
 * (measured on the null backend); 0 when B < 1. */
size_t ds_text_encoder_arena_bytes (DsTextEncoder *te, int64_t B);

/* ids: host [B, 77] token ids, each in [0, vocab_size) (else DS_ERR_INVALID);
 * out: [B, 77, hidden] f32, preallocated on be's device.
 * `a` must hold ds_text_encoder_arena_bytes (B) free bytes; it is returned to
 * its entry mark. */
DsStatus ds_text_encoder_forward (DsTextEncoder *te, DsBackend *be, DsArena *a,
                                  const int32_t *ids, int64_t B, DsTensor *out,
                                  DsError *err);

#ifdef __cplusplus
}
#endif
