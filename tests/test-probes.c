/* test-probes.c: the probe registry names every feature of the paper's grammar
 * with the right shape, in forward order (docs/models.md §2, Appendix C). */
#include "ds-test.h"
#include "ds-test-sd21.h"

#include <stdlib.h>

#include "ds-probes.h"


/* The inventory file: "id<TAB>[d0,d1,d2]..." one per line, batch dim omitted. */
static void
test_matches_inventory (void)
{
  DsUnetConfig cfg = ds_test_sd21_unet_config ();
  DsProbeList list;
  DsError err = { 0 };
  DS_CHECK_OK (ds_probe_list_build (&cfg, 64, 64, 77, &list, &err), &err);
  DS_CHECK (list.n == 197, "%d probes, expected 197", list.n);

  FILE *f = fopen (DS_TEST_DATA_DIR "/sd21-feature-inventory.txt", "r");
  DS_CHECK (f != NULL, "inventory file");
  if (!f)
    return;
  char line[256];
  int i = 0;
  while (fgets (line, sizeof line, f))
    {
      char id[128];
      long long d[3] = { 0, 0, 0 };
      int n = sscanf (line, "%127s [%lld,%lld,%lld]", id, &d[0], &d[1], &d[2]);
      if (n < 1)
        continue;
      if (i >= list.n)
        {
          DS_CHECK (0, "inventory has more ids than the registry: %s", id);
          break;
        }
      const DsProbeInfo *p = &list.probes[i];
      DS_CHECK (strcmp (p->id, id) == 0, "probe %d is %s, inventory says %s", i, p->id, id);
      DS_CHECK (n == 4 && p->shape[0] == d[0] && p->shape[1] == d[1] && p->shape[2] == d[2],
                "%s shape [%lld,%lld,%lld], inventory [%lld,%lld,%lld]", id,
                (long long) p->shape[0], (long long) p->shape[1], (long long) p->shape[2], d[0],
                d[1], d[2]);
      i++;
    }
  fclose (f);
  DS_CHECK (i == list.n, "inventory lists %d ids, registry %d", i, list.n);
  ds_probe_list_free (&list);
}

static void
test_paper_names (void)
{
  DsUnetConfig cfg = ds_test_sd21_unet_config ();
  DsProbeList list;
  DsError err = { 0 };
  DS_CHECK_OK (ds_probe_list_build (&cfg, 64, 64, 77, &list, &err), &err);
  /* Paper Table 3 names and their long ids (docs/models.md §2.3). */
  static const char *const pairs[][2] = {
    { "D-L2-R0-B0-Cross-Q", "down-level2-repeat0-vit-block0-cross-q" },
    { "U-L1-R1-B0-Cross-Q", "up-level1-repeat1-vit-block0-cross-q" },
    { "U-L1-R1-B0-Out", "up-level1-repeat1-vit-block0-out" },
    { "U-L1-R2-B0-Cross-Q", "up-level1-repeat2-vit-block0-cross-q" },
    { "U-L2-R1-B0-Cross-Q", "up-level2-repeat1-vit-block0-cross-q" },
    { "U-L2-R2-Res-Out", "up-level2-repeat2-res-out" },
    { "U-L3-R2-Out", "up-level3-repeat2-vit-out" },
    { "M-B0-Cross-Map", "mid-vit-block0-cross-map" },
    { "M-R1-Res-Increment", "mid-repeat1-res-increment" },
    { "U-L0-Upsampler-Out", "up-level0-upsampler-out" },
    { "D-L1-Downsampler-Out", "down-level1-downsampler-out" },
    { "UNet-Out", "unet-out" },
  };
  for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++)
    {
      int a = ds_probe_list_find (&list, pairs[k][0]);
      int b = ds_probe_list_find (&list, pairs[k][1]);
      DS_CHECK (a >= 0 && a == b, "%s -> %d, %s -> %d", pairs[k][0], a, pairs[k][1], b);
    }
  DS_CHECK (ds_probe_list_find (&list, "u-l1-r1-b0-cross-q")
              == ds_probe_list_find (&list, "U-L1-R1-B0-Cross-Q"),
            "case-insensitive");
  DS_CHECK (ds_probe_list_find (&list, "U-L9-R1-B0-Cross-Q") == -1, "unknown name");
  int q = ds_probe_list_find (&list, "U-L1-R1-B0-Cross-Q");
  DS_CHECK (q >= 0 && list.probes[q].shape[0] == 1280 && list.probes[q].shape[1] == 16,
            "U-L1-R1-B0-Cross-Q is 1280x16x16");
  /* every name is unique */
  int dup = 0;
  for (int i = 0; i < list.n; i++)
    for (int j = i + 1; j < list.n; j++)
      dup += strcasecmp (list.probes[i].name, list.probes[j].name) == 0;
  DS_CHECK (dup == 0, "%d duplicate paper names", dup);
  ds_probe_list_free (&list);
}

static void
test_other_sizes (void)
{
  DsUnetConfig cfg = ds_test_sd21_unet_config ();
  DsProbeList list;
  DsError err = { 0 };
  /* 768x512 image -> 96x64 latent: maps follow the aspect. */
  DS_CHECK_OK (ds_probe_list_build (&cfg, 96, 64, 77, &list, &err), &err);
  int i = ds_probe_list_find (&list, "U-L1-R1-B0-Cross-Map");
  DS_CHECK (i >= 0 && list.probes[i].shape[0] == 20 && list.probes[i].shape[1] == 24 * 16
              && list.probes[i].shape[2] == 77,
            "cross map at 96x64");
  ds_probe_list_free (&list);
  DS_CHECK_STATUS (ds_probe_list_build (&cfg, 60, 64, 77, &list, &err), DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "multiple of 8");
  /* SD 1.x: 8 heads everywhere. */
  for (int l = 0; l < 4; l++)
    cfg.heads[l] = 8;
  DS_CHECK_OK (ds_probe_list_build (&cfg, 64, 64, 77, &list, &err), &err);
  i = ds_probe_list_find (&list, "D-L0-R0-B0-Self-Map");
  DS_CHECK (i >= 0 && list.probes[i].shape[0] == 8 && list.probes[i].shape[1] == 4096,
            "SD 1.x self map");
  ds_probe_list_free (&list);
}

int
main (void)
{
  test_matches_inventory ();
  test_paper_names ();
  test_other_sizes ();
  return ds_test_finish ();
}
