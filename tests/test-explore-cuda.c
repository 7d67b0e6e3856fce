/* test-explore-cuda.c: the explorer's worker (ds-explore.c) when the GPU
 * fails under it (issue #14, Faults), on the CUDA emulator's injected faults.
 *
 *   1. A failed kernel launch (not sticky): the update fails with the CUDA
 *      error, and the next one works on the GPU.
 *   2. A fault inside a kernel (sticky: the CUDA context is lost for the
 *      process, as an illegal address loses it on a GPU): the same update
 *      succeeds anyway — the explorer reopens the model on the CPU and says
 *      so in the device label — and its maps equal, pixel for pixel, those of
 *      an explorer opened on the CPU from the start. Later updates run there.
 *
 * The built-in model at its native 128, the default f16 on CUDA, eager
 * (DS_CUDA_GRAPHS=0: the injected launch failure is met by an eager launch).
 * Exits 77 without a device, or on a GPU (no fault hooks there).
 */
#include "ds-test.h"
#include "ds-test-cuda.h"

#include <stdlib.h>
#include <string.h>

#include "ds-explore.h"
#ifdef DS_CUDA_EMU
#include <cuda_runtime.h> /* the emulator's: ds_emu_fail_launch, ds_emu_fault_kernel */
#endif

#ifdef DS_CUDA_EMU
static DsExploreParams
params (DsSharedImage *im, int t)
{
  static char *blocks[] = { "U-L1-R1-B0-Cross-Q", "D-L1-R0-Res-Out", NULL };
  return (DsExploreParams){
    .image = im, .prompt = "a red square", .t = t, .s = 7.5, .seed = 3, .blocks = blocks,
    .word = { -1, -1 }, .tile_px = 64,
  };
}

/* Every tile of every block of both views, byte for byte. */
static bool
same_tiles (const DsExploreView *a, const DsExploreView *b)
{
  if (a->n_blocks != b->n_blocks || a->n_blocks == 0)
    return false;
  for (int i = 0; i < a->n_blocks; i++)
    for (int j = 0; j < DS_EXPLORE_TILES; j++)
      {
        const DsPixels *x = &a->blocks[0][i].tile[j], *y = &b->blocks[0][i].tile[j];
        if (x->w != y->w || x->h != y->h || !x->rgba
            || memcmp (x->rgba, y->rgba, (size_t) x->w * x->h * 4))
          return false;
      }
  return true;
}
#endif

int
main (void)
{
  ds_test_cuda_begin ();
#ifndef DS_CUDA_EMU
  printf ("fault injection needs the CUDA emulator: skipping on a GPU\n");
  return DS_TEST_SKIP;
#else
  setenv ("DS_CUDA_GRAPHS", "0", 1);
  setenv ("DIFFSCOPE_DATA_DIR", DS_RESOURCES_DIR, 1);
  GError *error = NULL;
  DsImage img = { .width = 96, .height = 96 };
  img.rgb = malloc (96 * 96 * 3);
  for (int k = 0; k < 96 * 96; k++)
    {
      const int x = k % 96, y = k / 96;
      const bool in = x > 20 && x < 60 && y > 30 && y < 70;
      img.rgb[3 * k] = in ? 210 : 120;
      img.rgb[3 * k + 1] = in ? 40 : 120;
      img.rgb[3 * k + 2] = in ? 40 : 120;
    }
  DsSharedImage *im = g_atomic_rc_box_new0 (DsSharedImage);
  im->image = img;
  im->name = g_strdup ("square");

  DsExplorer *cpu = ds_explorer_open (NULL, "cpu", &error);
  DsExplorer *x = ds_explorer_open (NULL, "cuda", &error);
  DS_CHECK (cpu && x, "explorers open: %s", error ? error->message : "");
  if (!cpu || !x)
    return ds_test_finish ();
  printf ("device: %s\n", ds_explorer_device (x));
  DS_CHECK (g_str_has_prefix (ds_explorer_device (x), "CUDA"), "on the GPU");

  /* 1. a failed launch: an error, then the GPU again */
  printf ("1. a failed kernel launch\n");
  DsExploreParams p = params (im, 300);
  ds_emu_fail_launch (30, cudaErrorLaunchOutOfResources);
  DsExploreView *v = ds_explore_update (x, &p, NULL, NULL, NULL, &error);
  DS_CHECK (!v && error, "the update fails");
  if (error)
    {
      printf ("  %s\n", error->message);
      DS_CHECK (strstr (error->message, "too many resources requested for launch") != NULL,
                "the CUDA error is named");
      g_clear_error (&error);
    }
  ds_explore_view_free (v);
  v = ds_explore_update (x, &p, NULL, NULL, NULL, &error);
  DS_CHECK (v != NULL, "the next update works: %s", error ? error->message : "");
  DS_CHECK (v && g_str_has_prefix (v->device, "CUDA"), "still on the GPU");
  ds_explore_view_free (v);
  g_clear_error (&error);

  /* 2. a fault inside a kernel: the explorer moves to the CPU and answers */
  printf ("2. a fault inside a kernel\n");
  p = params (im, 600);
  ds_emu_fault_kernel (20, cudaErrorIllegalAddress);
  v = ds_explore_update (x, &p, NULL, NULL, NULL, &error);
  DS_CHECK (v != NULL, "the update is answered on the CPU: %s", error ? error->message : "");
  g_clear_error (&error);
  DsExploreView *ref = ds_explore_update (cpu, &p, NULL, NULL, NULL, &error);
  DS_CHECK (ref != NULL, "CPU reference: %s", error ? error->message : "");
  g_clear_error (&error);
  if (v && ref)
    {
      printf ("  device: %s\n", v->device);
      DS_CHECK (g_str_has_prefix (v->device, "CPU"), "the view says CPU");
      DS_CHECK (strstr (v->device, "the GPU failed") != NULL, "and why");
      DS_CHECK (same_tiles (v, ref), "its maps equal a CPU explorer's");
    }
  ds_explore_view_free (v);
  ds_explore_view_free (ref);
  p = params (im, 100);
  v = ds_explore_update (x, &p, NULL, NULL, NULL, &error);
  ref = ds_explore_update (cpu, &p, NULL, NULL, NULL, &error);
  DS_CHECK (v && ref && same_tiles (v, ref), "the next update runs on the CPU too");
  g_clear_error (&error);
  ds_explore_view_free (v);
  ds_explore_view_free (ref);

  ds_explorer_free (x);
  ds_explorer_free (cpu);
  ds_shared_image_unref (im);
  return ds_test_finish ();
#endif
}
