/* ds-test-sd21.h: SD 2.1-base's UNet configuration (models-spec §1.1), for the
 * tests and benchmarks that need the real topology without a model folder. */
#pragma once

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
