/* ds-probes.h: the named UNet features ("probes") and how a forward hands them out.
 *
 * Every activation the paper (Agarwal et al., 2025, after Meng et al., 2024) can
 * study has two names: the paper's short one, Stage-Level-Repeat-Block-Feature
 * ("U-L1-R1-B0-Cross-Q", "U-L2-R2-Res-Out", "M-B0-Out", "D-L0-Downsampler-Out",
 * "UNet-Out"), and Meng et al.'s long id ("up-level1-repeat1-vit-block0-cross-q").
 * The list is derived from the UNet config (levels, layers per block, which
 * levels have attention), in forward order; for SD 2.1-base it is the 197 ids of
 * docs/models.md Appendix C. Shapes are per batch item: feature maps [C, H, W]
 * (token tensors already turned back into maps), attention maps
 * [heads, Nq, Nk] (softmax probabilities, Nk = 77 for cross-attention).
 *
 * A forward is given a DsProbeSink: which probes are wanted and a callback that
 * copies each one out as soon as it exists. The forward stops right after the
 * deepest wanted probe, so unrequested probes cost nothing.
 */
#pragma once

#include <stdbool.h>
#ifdef __cplusplus
/* No C++ file includes this header today (the CUDA kernels and the emulator
 * see only ds-tensor.h and ds-ops.h); should one, std::atomic_int is the same
 * object as C's atomic_int on the compilers we use. */
#include <atomic>
using std::atomic_int;
#else
#include <stdatomic.h>
#endif

#include "ds-model-dir.h"
#include "ds-tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  DS_PROBE_UNET_IN,
  DS_PROBE_UNET_AFTER_CONV_IN,
  DS_PROBE_RES_INCREMENT,
  DS_PROBE_RES_OUT,
  DS_PROBE_SELF_Q,
  DS_PROBE_SELF_K,
  DS_PROBE_SELF_V,
  DS_PROBE_SELF_MAP,
  DS_PROBE_CROSS_Q,
  DS_PROBE_CROSS_MAP,
  DS_PROBE_FFN_INNER,
  DS_PROBE_BLOCK_OUT,
  DS_PROBE_VIT_OUT,
  DS_PROBE_DOWNSAMPLER_OUT,
  DS_PROBE_UPSAMPLER_OUT,
  DS_PROBE_UNET_OUT,
  DS_PROBE_KIND_COUNT
} DsProbeKind;

typedef enum { DS_STAGE_NONE, DS_STAGE_DOWN, DS_STAGE_MID, DS_STAGE_UP } DsStage;

typedef struct {
  char id[80];     /* Meng et al.: "up-level1-repeat1-vit-block0-cross-q" */
  char name[48];   /* paper: "U-L1-R1-B0-Cross-Q" */
  DsProbeKind kind;
  DsStage stage;
  int level, repeat; /* -1 where the name has none */
  int ndim;        /* 3 */
  int64_t shape[3]; /* per batch item: [C,H,W] or [heads,Nq,Nk] */
} DsProbeInfo;

typedef struct {
  DsProbeInfo *probes; /* forward order; owned */
  int n;
} DsProbeList;

/* Probes of a UNet with this config at a latent of latent_h x latent_w and a
 * text context of n_ctx tokens (77). */
DsStatus ds_probe_list_build (const DsUnetConfig *cfg, int latent_h, int latent_w, int n_ctx,
                              DsProbeList *out, DsError *err);
void ds_probe_list_free (DsProbeList *list);
/* Index of a probe by paper name or long id (case-insensitive), or -1. */
int ds_probe_list_find (const DsProbeList *list, const char *name);

typedef struct {
  /* want[i] for probe i of the list; NULL wants none. */
  const bool *want;
  /* The deepest wanted index; the forward stops after it. -1: run to the end. */
  int last;
  /* Called with probe i's tensor [B, ...per-item shape] (in the backend's
   * act_dtype, on its device, valid only during the call; ds_backend_download_f32
   * copies it out). Return non-OK to abort the forward. */
  DsStatus (*emit) (void *user, int index, const DsTensor *t, DsError *err);
  void *user;
  /* Optional: polled between blocks (atomic_load, so another thread may set
   * it); when it reads non-zero the forward returns DS_ERR_CANCELLED. */
  const atomic_int *cancel;
  /* Optional: called between blocks with the blocks done so far of `total`
   * (the time embedding with conv_in is block 1, then every down resnet,
   * transformer and downsampler, the mid block's three, every up resnet,
   * transformer and upsampler, and the output head, so a full forward ends
   * at done == total). A forward that stops after its deepest wanted probe
   * reports the block it stopped in last. Not called by measuring runs. On a
   * backend that replays recorded forwards, a replay reports only its end. */
  void (*progress) (void *user, int done, int total);
  void *progress_user;
  /* Optional, for image–text scores (Discffusion, docs/models.md §6.5): when set,
   * receives for every cross-attention layer l (forward order, as far as the
   * forward runs) and batch item b, at [l * B + b], the mean over heads and
   * query positions of logsumexp over the keys of the pre-softmax logits
   * q·k·scale. Sized n_cross_layers * B by the caller; the cross-attention
   * layers are the list's DS_PROBE_CROSS_MAP probes, in the same order. */
  double *cross_lse;
  /* Attention maps (self and cross) averaged over heads on the backend before
   * they go out: [B, 1, Nq, Nk] instead of [B, heads, Nq, Nk] — what a
   * heatmap needs, heads times fewer bytes to copy out. */
  bool head_mean_maps;
} DsProbeSink;

#ifdef __cplusplus
}
#endif
