/* ds-clip-image.h: the CLIP image processor as LLaVA-1.5 uses it
 * (docs/models.md §7.3): an 8-bit RGB image -> pixels [1, 3, crop_h, crop_w] f32
 * for the vision tower (ds-clip-vision.h).
 *
 * Steps, each exactly as transformers' PIL-backed CLIPImageProcessor (the
 * "slow" one that LLaVA was trained with) computes them:
 *   1. optional pad to a square of side max(w, h) filled with the mean as bytes
 *      (int(mean·255): (122, 116, 104) for CLIP), the image pasted at
 *      ((side − w) / 2, (side − h) / 2) rounded down: the original LLaVA's
 *      expand2square (image_aspect_ratio "pad"); the HF processor does not pad;
 *   2. resize with Pillow's bicubic on 8-bit data (ds_image_resize_bicubic):
 *      the short side to size.shortest_edge, the long side to
 *      int(shortest_edge · long / short), truncated; or to size.height ×
 *      size.width;
 *   3. centre crop: top (H − crop_h) // 2, left (W − crop_w) // 2 (floor); a
 *      side shorter than the crop is padded with zero bytes, ceil((crop − side)
 *      / 2) before it, as transformers' numpy center_crop does;
 *   4. × rescale_factor in double, rounded to f32, then (x − mean) / std in f32.
 * The result equals transformers' pixel_values bit for bit.
 *
 * Usage:
 *   DsClipImageConfig pc;
 *   ds_clip_image_config_l14_336 (&pc);  // or parse preprocessor_config.json
 *   pc.pad_to_square = true;             // the original LLaVA-1.5
 *   DsTensor px;
 *   ds_clip_image_preprocess (&img, &pc, &px, err);  // [1, 3, 336, 336], owned
 *
 * Not supported: other resampling filters than bicubic (resample 3),
 * size.longest_edge, the torchvision ("fast") processor's arithmetic.
 */
#pragma once

#include <stdbool.h>

#include "ds-image.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  bool do_resize;
  int shortest_edge;          /* > 0: resize the short side to this ... */
  int resize_h, resize_w;     /* ... else (shortest_edge 0) to exactly this */
  bool do_center_crop;
  int crop_h, crop_w;
  bool do_rescale;
  double rescale_factor;      /* 1/255 */
  bool do_normalize;
  double mean[3], std[3];     /* per RGB channel; used in f32, as numpy does */
  /* Not from preprocessor_config.json: the original LLaVA's
   * image_aspect_ratio "pad" (step 1). false after parsing. */
  bool pad_to_square;
} DsClipImageConfig;

/* openai/clip-vit-large-patch14-336's processor: shortest edge 336, crop
 * 336×336, 1/255, CLIP mean (0.48145466, 0.4578275, 0.40821073) and std
 * (0.26862954, 0.26130258, 0.27577711); no padding. */
void ds_clip_image_config_l14_336 (DsClipImageConfig *out);

/* Parses preprocessor_config.json text. Keys absent take CLIPImageProcessor's
 * defaults (shortest edge 224, crop 224×224, CLIP mean and std); "size" and
 * "crop_size" may be an integer (older files) or an object ({"shortest_edge"}
 * or {"height", "width"}); "resample" must be 3 (bicubic). Errors name `path`
 * and the key. */
DsStatus ds_clip_image_config_parse (const char *json_text, const char *path,
                                     DsClipImageConfig *out, DsError *err);

/* img: 8-bit RGB; out: a new host tensor [1, 3, H, W] f32 (crop_h × crop_w, or
 * the resized size without the crop). transfer full: free with ds_tensor_free. */
DsStatus ds_clip_image_preprocess (const DsImage *img, const DsClipImageConfig *cfg,
                                   DsTensor *out, DsError *err);

#ifdef __cplusplus
}
#endif
