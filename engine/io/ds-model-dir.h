/* ds-model-dir.h: a Stable Diffusion model folder in the diffusers layout.
 *
 *   DIR/model_index.json
 *   DIR/unet/config.json          + diffusion_pytorch_model[.fp16].safetensors
 *   DIR/vae/config.json           + diffusion_pytorch_model[.fp16].safetensors
 *   DIR/text_encoder/config.json  + model[.fp16].safetensors
 *   DIR/tokenizer/vocab.json, merges.txt
 *   DIR/scheduler/scheduler_config.json
 *
 * Every config.json is parsed into the structs below. Keys absent from a file
 * take diffusers' / transformers' defaults (docs/models.md §1.1, §3.1, §5.1, §4.1);
 * a present key of the wrong JSON type, a value out of range or an unsupported
 * choice (e.g. a block type the engine lacks) is a DsError naming the file and
 * key. The fp32 weights file is preferred; the .fp16 variant is used if it is the
 * only one. Pickle (.bin/.ckpt) files are never read: if only those exist the
 * error says so.
 */
#pragma once

#include <stdbool.h>

#include "ds-error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define DS_MAX_LEVELS 6
#define DS_PATH_MAX 4096

typedef enum {
  DS_BLOCK_DOWN,            /* DownBlock2D */
  DS_BLOCK_CROSS_ATTN_DOWN, /* CrossAttnDownBlock2D */
  DS_BLOCK_UP,              /* UpBlock2D */
  DS_BLOCK_CROSS_ATTN_UP,   /* CrossAttnUpBlock2D */
} DsBlockType;

typedef struct {
  int in_channels, out_channels, sample_size;
  int n_levels;
  int block_out_channels[DS_MAX_LEVELS];
  DsBlockType down_block_types[DS_MAX_LEVELS];
  DsBlockType up_block_types[DS_MAX_LEVELS];
  int layers_per_block;
  int heads[DS_MAX_LEVELS];   /* per level: num_attention_heads, else attention_head_dim
                                 (an int in the file applies to every level) */
  int cross_attention_dim;
  bool use_linear_projection;
  bool upcast_attention;
  int norm_num_groups;
  float norm_eps;
  bool flip_sin_to_cos;
  float freq_shift;
  int downsample_padding;
  float mid_block_scale_factor;
  int transformer_layers_per_block; /* only 1 is supported */
  /* Diffscope's own key "_diffscope_heat_divisor" (diffusers ignores keys that
   * start with "_"): the default word heat maps average the cross-attention
   * layers at latent side / heat_divisor. 4 when absent (SD 2.1-base's 16x16
   * layers at 512); a model can name the layers where its words were measured
   * to localize (the built-in shapes model: 2, docs/shapes.md). */
  int heat_divisor;
} DsUnetConfig;

#define DS_UNET_HEAT_DIVISOR_DEFAULT 4

typedef struct {
  int in_channels, latent_channels;
  int n_levels;
  int block_out_channels[DS_MAX_LEVELS];
  int layers_per_block;
  int norm_num_groups;
  float scaling_factor;     /* default 0.18215 */
  bool use_quant_conv;      /* default true */
  bool mid_block_add_attention; /* default true */
} DsVaeConfig;

typedef enum { DS_ACT_GELU, DS_ACT_QUICK_GELU } DsActivation;

typedef struct {
  int vocab_size, hidden_size, intermediate_size;
  int num_attention_heads, num_hidden_layers, max_position_embeddings;
  DsActivation hidden_act;  /* "gelu" or "quick_gelu" */
  float layer_norm_eps;
} DsTextEncoderConfig;

typedef struct {
  int num_train_timesteps;  /* 1000 */
  float beta_start, beta_end;
  bool scaled_linear;       /* beta_schedule "scaled_linear" (else "linear") */
} DsSchedulerConfig;

typedef struct {
  char root[DS_PATH_MAX];
  char unet_weights[DS_PATH_MAX];
  char vae_weights[DS_PATH_MAX];
  char text_encoder_weights[DS_PATH_MAX];
  char vocab_path[DS_PATH_MAX];
  char merges_path[DS_PATH_MAX];
  /* The id the tokenizer pads with: from tokenizer/special_tokens_map.json or
   * tokenizer_config.json "pad_token" when present ("!" -> 0 for SD 2.x), else
   * the <|endoftext|> id (SD 1.x). Resolved against vocab.json. */
  char pad_token[64];
  DsUnetConfig unet;
  DsVaeConfig vae;
  DsTextEncoderConfig text;
  DsSchedulerConfig scheduler;
} DsModelDir;

/* Reads and checks every part; a missing part is DS_ERR_NOT_FOUND naming it. */
DsStatus ds_model_dir_open (const char *root, DsModelDir *out, DsError *err);
/* The model's native input side: unet.sample_size x 2^(vae levels - 1)
 * (512 for SD 2.1-base: 64 x 8). */
int ds_model_dir_native_size (const DsModelDir *d);

/* Individual parsers, also for tests. `path` is used in messages. */
DsStatus ds_unet_config_parse (const char *json_text, const char *path,
                               DsUnetConfig *out, DsError *err);
DsStatus ds_vae_config_parse (const char *json_text, const char *path,
                              DsVaeConfig *out, DsError *err);
DsStatus ds_text_encoder_config_parse (const char *json_text, const char *path,
                                       DsTextEncoderConfig *out, DsError *err);
DsStatus ds_scheduler_config_parse (const char *json_text, const char *path,
                                    DsSchedulerConfig *out, DsError *err);

#ifdef __cplusplus
}
#endif
