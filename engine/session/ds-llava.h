/* ds-llava.h: LLaVA-1.5 from a llava-hf folder (docs/models.md §7): ask a
 * question about an image and stream the answer.
 *
 * One DsLlava holds the CLIP vision tower (ds-clip-vision.h), the mlp2x_gelu
 * projector (Linear, exact GELU, Linear, §7.1), the LLaMA decoder
 * (ds-llama.h), the tokenizer (ds-llama-tokenizer.h) and the image processor
 * (ds-clip-image.h), read from the folder's config.json,
 * preprocessor_config.json, tokenizer.json / tokenizer_config.json and
 * model.safetensors.index.json with its shards (or one model.safetensors;
 * ds-safetensors-index.h). Weight names may be llava-hf's
 * (vision_tower.*, multi_modal_projector.*, language_model.model.*,
 * language_model.lm_head.*) or current transformers' (model.vision_tower.*,
 * model.multi_modal_projector.*, model.language_model.*, lm_head.*).
 *
 * A question runs as transformers' LlavaProcessor + LlavaForConditionalGeneration
 * do (§7.5): the prompt "USER: <image>\n{question} ASSISTANT:" (ds_llava_prompt,
 * HF form) has its "<image>" replaced by N copies of itself (N = the image
 * rows: 576 for LLaVA-1.5, the processor's (crop/patch)² + 1 - 1) before it is
 * tokenised; the prefill takes the projected image features as the input
 * embeddings at those N positions (ds_llama_forward's embed_rows); then one
 * token per step, greedy or seeded temperature/top-p (ds_llama_sample), until
 * </s>, the token cap, the context length or a cancel. Each new token's text
 * goes to a callback as soon as it is complete (ds_llama_decode_stream_*:
 * special tokens skipped, byte pieces held until their UTF-8 character ends).
 *
 * Usage:
 *   DsLlava *lv;
 *   ds_llava_open ("llava-1.5-7b-hf", be, &lv, err);
 *   DsLlavaParams p;
 *   ds_llava_params_default (&p);       // greedy, 256 tokens, stop at </s>
 *   p.on_text = print_piece; p.user = stdout; p.cancel = &flag;
 *   DsLlavaAnswer ans;
 *   ds_llava_ask (lv, &image, "What is on the table?", &p, &ans, err);
 *   ... ans.ids, ans.n_ids, ans.text ...
 *   ds_llava_answer_clear (&ans);
 *   ds_llava_free (lv);
 *
 * The fusion hook: ds_llava_generate takes the prompt ids and a block of
 * embedding rows that fill the prompt's image-token positions in order. The
 * image's rows come from ds_llava_image_features (= ds_llava_vision_features,
 * the CLIP tokens before the projector, then ds_llava_project). Diffscope's
 * fusion of diffusion features (issue #13, ds-fusion.h, docs/models.md §7.9)
 * sits between the two: ds_llava_fused_features runs the checkpoint's UNet
 * probe through a DsSession (cond = the question, uncond = "", its t, seed
 * 0), guides and pools it into diffusion tokens, fuses them with the CLIP
 * tokens (concat: N + g² rows; cross_attention: N rows) and projects the
 * result; ds_llava_ask_fused asks for as many image tokens
 * (ds_llava_encode_prompt) and generates. No trained fusion weights exist
 * publicly: a checkpoint with "trained": false is refused unless the caller
 * sets DsLlavaParams.allow_untrained_fusion, and the answer then carries
 * untrained_fusion = true so that it is never shown as an answer.
 *
 * Not done: the original liuhaotian checkpoints (pickle, and no llava-hf
 * config), the original's pad-to-square (the HF processor does not pad; set
 * the image config's pad_to_square by hand), several images per prompt,
 * batches, a vision_feature_layer list, other projectors than mlp2x_gelu,
 * chat templates (the single-turn HF prompt is built in), the decode step as
 * a CUDA graph (each step runs eagerly, ds-llama.h). On CUDA everything runs
 * on the device (test-llava-cuda: the fixture in strict f32 on the emulator).
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "ds-clip-image.h"
#include "ds-clip-vision.h"
#include "ds-fusion.h"
#include "ds-llama-tokenizer.h"
#include "ds-llama.h"
#include "ds-session.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  DsClipVisionConfig vision; /* vision_config, vision_feature_layer / _select_strategy */
  DsLlamaConfig text;        /* text_config */
  int32_t image_token_id;    /* image_token_index (or image_token_id): 32000 for llava-hf */
  bool projector_bias;       /* multimodal_projector_bias (true when absent) */
} DsLlavaConfig;

/* Parses config.json text: model_type "llava", "text_config" and
 * "image_token_index" (or "image_token_id") required, projector_hidden_act
 * "gelu" (exact; absent means gelu), vision_config as ds-clip-vision.h reads it
 * (CLIP ViT-L/14-336 when absent), a single vision_feature_layer. Errors name
 * `path` and the key. */
DsStatus ds_llava_config_parse (const char *json_text, const char *path, DsLlavaConfig *out,
                                DsError *err);

typedef struct DsLlava DsLlava;

/* Opens the folder (every file above; tokenizer_config.json and
 * processor_config.json optional), loads the weights onto `be`, checks that
 * the tokenizer knows the image token, that the crop size is the tower's
 * image size and that the vocabulary covers the tokenizer's ids. Errors name
 * the file and the key or tensor. transfer full: free *out with ds_llava_free. */
DsStatus ds_llava_open (const char *dir, DsBackend *be, DsLlava **out, DsError *err);
void ds_llava_free (DsLlava *lv);

/* transfer none: valid while lv lives. */
const DsLlavaConfig *ds_llava_config (const DsLlava *lv);
const DsClipImageConfig *ds_llava_image_config (const DsLlava *lv);
const DsLlamaTokenizer *ds_llava_tokenizer (const DsLlava *lv);
DsLlama *ds_llava_decoder (DsLlava *lv);
/* Image rows per image (576 for LLaVA-1.5). */
int64_t ds_llava_n_image_tokens (const DsLlava *lv);

/* The image through the processor, the vision tower and the projector:
 * *features a new host tensor [n_image_tokens, text hidden] f32 (transfer
 * full: ds_tensor_free). ds_llava_vision_features + ds_llava_project. */
DsStatus ds_llava_image_features (DsLlava *lv, const DsImage *img, DsTensor *features,
                                  DsError *err);
/* The image through the processor and the vision tower only: *clip a new
 * host tensor [n_image_tokens, vision hidden] f32, the CLIP tokens before
 * the projector (transfer full). */
DsStatus ds_llava_vision_features (DsLlava *lv, const DsImage *img, DsTensor *clip,
                                   DsError *err);
/* The projector (mlp2x_gelu) on rows host [E, vision hidden] f32 (E >= 1;
 * DS_ERR_INVALID naming the shape otherwise): *out a new host tensor [E, text
 * hidden] f32 (transfer full). */
DsStatus ds_llava_project (DsLlava *lv, const DsTensor *rows, DsTensor *out, DsError *err);

/* Tokenises `prompt` after replacing each "<image>" in it with n_image_tokens
 * copies (the processor's expansion), BOS first. *ids transfer full (free ()). */
DsStatus ds_llava_encode_prompt (const DsLlava *lv, const char *prompt, int64_t n_image_tokens,
                                 int32_t **ids, int64_t *n_ids, DsError *err);

/* Called with each new piece of answer text (never a partial UTF-8
 * character; "" is not passed) and the id that completed it. */
typedef void (*DsLlavaTextFn) (const char *text, int32_t id, void *user);

#define DS_LLAVA_EOS_DEFAULT (-1) /* stop after the tokenizer's </s> */
#define DS_LLAVA_EOS_NONE (-2)    /* never stop early */

typedef struct {
  int64_t max_new_tokens;   /* >= 1; also capped by max_position_embeddings */
  DsLlamaSampling sampling; /* temperature <= 0: greedy; else seeded top-p */
  int32_t eos_id;           /* DS_LLAVA_EOS_DEFAULT, _NONE, or an id to stop after */
  DsLlavaTextFn on_text;    /* may be NULL */
  void *user;
  const atomic_int *cancel; /* non-zero: stop before the next token; may be NULL */
  /* ds_llava_ask_fused only: run a fusion checkpoint whose config says
   * "trained": false (its output is then no answer: ans->untrained_fusion). */
  bool allow_untrained_fusion;
} DsLlavaParams;

/* 256 new tokens, greedy (temperature 0, top_p 1, seed 0), stop at </s>, no
 * callback, no cancel flag, untrained fusions refused. */
void ds_llava_params_default (DsLlavaParams *p);

typedef struct {
  int32_t *ids;      /* host [n_ids]: the new tokens, </s> included when it came */
  int64_t n_ids;
  char *text;        /* their decode, special tokens skipped (what on_text got) */
  int64_t n_prompt;  /* prompt length with the image rows */
  bool stopped_at_eos;
  /* ds_llava_ask_fused on a checkpoint with "trained": false: the text is the
   * output of untrained fusion weights, NOT an answer; show it only as such. */
  bool untrained_fusion;
} DsLlavaAnswer;

void ds_llava_answer_clear (DsLlavaAnswer *ans);

/* Generates from prompt ids (host [n_ids], as ds_llava_encode_prompt gives)
 * whose image-token positions take the rows of `embeds` (host [E, text
 * hidden] f32) in order; the number of image tokens must be E (DS_ERR_INVALID
 * naming both). A cancel returns DS_ERR_CANCELLED with *ans holding the
 * tokens so far; on any return *ans must be cleared. */
DsStatus ds_llava_generate (DsLlava *lv, const int32_t *ids, int64_t n_ids,
                            const DsTensor *embeds, const DsLlavaParams *p, DsLlavaAnswer *ans,
                            DsError *err);

/* ds_llava_prompt (NULL, question, true) + ds_llava_image_features +
 * ds_llava_encode_prompt + ds_llava_generate. */
DsStatus ds_llava_ask (DsLlava *lv, const DsImage *img, const char *question,
                       const DsLlavaParams *p, DsLlavaAnswer *ans, DsError *err);

/* ---- fusion with diffusion features (ds-fusion.h, docs/models.md §7.9) ---- */

/* Whether fusion checkpoint f fits lv and the session's SD model: its
 * vision_hidden is the tower's width; its probe exists at the model's native
 * size (the size ds_llava_fused_features runs at), is a feature map of
 * diffusion_channels channels whose sides grid divides; its t is in the
 * model's schedule. Errors name the checkpoint's config.json and the field. */
DsStatus ds_llava_fusion_check (DsLlava *lv, DsSession *s, const DsFusion *f, DsError *err);

/* The image rows of a fused prompt: *features a new host tensor
 * [ds_fusion_n_rows (f, n_image_tokens), text hidden] f32 (transfer full).
 * Runs ds_llava_fusion_check, then one session query (the image at the SD
 * model's native size, DS_FIT_STRETCH; cond prompt = question, uncond = "";
 * t from the checkpoint, DS_TIMESTEP_DIRECT; noise seed 0; the one probe; no
 * heat maps), ds_fusion_tokens on its two halves, ds_llava_vision_features,
 * ds_fusion_forward and ds_llava_project. cancel (may be NULL) stops the UNet
 * between blocks (DS_ERR_CANCELLED). Does not look at "trained". */
DsStatus ds_llava_fused_features (DsLlava *lv, DsSession *s, DsFusion *f, const DsImage *img,
                                  const char *question, const atomic_int *cancel,
                                  DsTensor *features, DsError *err);

/* ds_llava_ask with the image rows of ds_llava_fused_features: the prompt
 * gets one image token per row (N + g² for concat). A checkpoint with
 * "trained": false is DS_ERR_UNSUPPORTED naming its config.json unless
 * p->allow_untrained_fusion, and then ans->untrained_fusion is set. */
DsStatus ds_llava_ask_fused (DsLlava *lv, DsSession *s, DsFusion *f, const DsImage *img,
                             const char *question, const DsLlavaParams *p, DsLlavaAnswer *ans,
                             DsError *err);

/* The prefill alone on an empty cache: *logits a new host tensor [n_ids,
 * vocab] f32 of every position (transfer full), for checks and scoring. */
DsStatus ds_llava_prompt_logits (DsLlava *lv, const int32_t *ids, int64_t n_ids,
                                 const DsTensor *embeds, DsTensor *logits, DsError *err);

#ifdef __cplusplus
}
#endif
