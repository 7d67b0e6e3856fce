/* fuzz-configs.c: every config.json parser, chosen by the input's first byte
 * (mod 9); the rest of the input is the file's text:
 *   0 unet/config.json          ds_unet_config_parse
 *   1 vae/config.json           ds_vae_config_parse
 *   2 text_encoder/config.json  ds_text_encoder_config_parse
 *   3 scheduler_config.json     ds_scheduler_config_parse
 *   4 preprocessor_config.json  ds_clip_image_config_parse (+ preprocessing a
 *                               small image when the sizes are small)
 *   5 CLIP vision config        ds_clip_vision_config_parse
 *   6 LLaMA config              ds_llama_config_parse
 *   7 LLaVA config.json         ds_llava_config_parse
 *   8 fusion config.json        ds_fusion_config_parse
 * The text is NUL-terminated (the parsers take C strings), so bytes after a
 * NUL are ignored. */
#include "fuzz-common.h"

#include "ds-clip-image.h"
#include "ds-clip-vision.h"
#include "ds-fusion.h"
#include "ds-llama.h"
#include "ds-llava.h"
#include "ds-model-dir.h"

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

/* A 7×5 gradient for the image processor. */
static void
preprocess_small (DsClipImageConfig *c, bool pad)
{
  bool small = c->crop_h <= 64 && c->crop_w <= 64
               && (c->shortest_edge > 0 ? c->shortest_edge <= 64
                                        : c->resize_h <= 64 && c->resize_w <= 64);
  if (!small)
    return;
  uint8_t rgb[7 * 5 * 3];
  for (size_t i = 0; i < sizeof rgb; i++)
    rgb[i] = (uint8_t) (i * 37);
  DsImage img = { .width = 7, .height = 5, .rgb = rgb };
  c->pad_to_square = pad;
  DsTensor px;
  DsError err = { 0 };
  if (ds_clip_image_preprocess (&img, c, &px, &err) == DS_OK)
    ds_tensor_free (&px);
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  if (size < 1)
    return 0;
  char *text = malloc (size);
  if (!text)
    abort ();
  memcpy (text, data + 1, size - 1);
  text[size - 1] = '\0';
  DsError err = { 0 };
  switch (data[0] % 9)
    {
    case 0:
      {
        DsUnetConfig c;
        (void) ds_unet_config_parse (text, "unet/config.json", &c, &err);
        break;
      }
    case 1:
      {
        DsVaeConfig c;
        (void) ds_vae_config_parse (text, "vae/config.json", &c, &err);
        break;
      }
    case 2:
      {
        DsTextEncoderConfig c;
        (void) ds_text_encoder_config_parse (text, "text_encoder/config.json", &c, &err);
        break;
      }
    case 3:
      {
        DsSchedulerConfig c;
        (void) ds_scheduler_config_parse (text, "scheduler/scheduler_config.json", &c, &err);
        break;
      }
    case 4:
      {
        DsClipImageConfig c;
        if (ds_clip_image_config_parse (text, "preprocessor_config.json", &c, &err) == DS_OK)
          preprocess_small (&c, data[0] & 0x80);
        break;
      }
    case 5:
      {
        DsClipVisionConfig c;
        (void) ds_clip_vision_config_parse (text, "config.json", &c, &err);
        break;
      }
    case 6:
      {
        DsLlamaConfig c;
        (void) ds_llama_config_parse (text, "config.json", &c, &err);
        break;
      }
    case 7:
      {
        DsLlavaConfig c;
        (void) ds_llava_config_parse (text, "config.json", &c, &err);
        break;
      }
    case 8:
      {
        DsFusionConfig c;
        (void) ds_fusion_config_parse (text, "fusion/config.json", &c, &err);
        break;
      }
    }
  free (text);
  return 0;
}
