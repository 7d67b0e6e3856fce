/* ds-test-sd21.h: SD 2.1-base's UNet configuration (docs/models.md §1.1), for the
 * tests and benchmarks that need the real topology without a model folder. */
#pragma once

#include <stdio.h>
#include <string.h>

#include "ds-model-dir.h"

static inline DsUnetConfig
ds_test_sd21_unet_config (void)
{
  DsUnetConfig c = {
    .in_channels = 4, .out_channels = 4, .sample_size = 64, .n_levels = 4,
    .block_out_channels = { 320, 640, 1280, 1280 },
    .down_block_types = { DS_BLOCK_CROSS_ATTN_DOWN, DS_BLOCK_CROSS_ATTN_DOWN,
                          DS_BLOCK_CROSS_ATTN_DOWN, DS_BLOCK_DOWN },
    .up_block_types = { DS_BLOCK_UP, DS_BLOCK_CROSS_ATTN_UP, DS_BLOCK_CROSS_ATTN_UP,
                        DS_BLOCK_CROSS_ATTN_UP },
    .layers_per_block = 2, .heads = { 5, 10, 20, 20 }, .cross_attention_dim = 1024,
    .use_linear_projection = true, .norm_num_groups = 32, .norm_eps = 1e-5f,
    .flip_sin_to_cos = true, .downsample_padding = 1, .mid_block_scale_factor = 1,
    .transformer_layers_per_block = 1,
  };
  return c;
}

/* Every part of SD 2.1-base (unet, vae, text, scheduler, pad token) into d,
 * for ds_pipeline_open_random; the paths are left empty. */
static inline void
ds_test_sd21_configs (DsModelDir *d)
{
  memset (d, 0, sizeof *d);
  d->unet = ds_test_sd21_unet_config ();
  d->vae = (DsVaeConfig){
    .in_channels = 3, .latent_channels = 4, .n_levels = 4,
    .block_out_channels = { 128, 256, 512, 512 }, .layers_per_block = 2, .norm_num_groups = 32,
    .scaling_factor = 0.18215f, .use_quant_conv = true, .mid_block_add_attention = true,
  };
  d->text = (DsTextEncoderConfig){
    .vocab_size = 49408, .hidden_size = 1024, .intermediate_size = 4096,
    .num_attention_heads = 16, .num_hidden_layers = 23, .max_position_embeddings = 77,
    .hidden_act = DS_ACT_GELU, .layer_norm_eps = 1e-5f,
  };
  d->scheduler = (DsSchedulerConfig){ 1000, 0.00085f, 0.012f, true };
  snprintf (d->pad_token, sizeof d->pad_token, "!");
}
