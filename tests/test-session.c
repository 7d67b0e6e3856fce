/* test-session.c: DsSession on the demo model at 128²: its results are the
 * pipeline's bit for bit; the caches (a repeated query, a probe subset, a new
 * timestep, a new prompt, LRU eviction by bytes) run exactly the networks
 * they must (counted by ds_session_stats); cancellation from the progress
 * callback stops the UNet between blocks and caches nothing; progress is
 * monotone and complete; an ensemble's heat map is the mean of its runs';
 * the CKA matrix; bad queries name what is wrong. */
#include "ds-test.h"

#include <stdlib.h>

#include "ds-heatmap.h"
#include "ds-session.h"

#define SIZE 128

static const char *const PROBES[] = { "U-L1-R1-B0-Cross-Q", "D-L1-R0-Res-Out" };

typedef struct {
  atomic_int *cancel;
  int cancel_at;              /* UNet block at which to set *cancel; 0: never */
  int last_done, max_done, total, calls;
  bool monotone;
  int stages[DS_SESSION_STAGE_COUNT];
} Watch;

static void
on_progress (void *user, DsSessionStage stage, int done, int total, int run, int runs)
{
  Watch *w = user;
  w->stages[stage]++;
  if (stage != DS_SESSION_STAGE_UNET)
    return;
  (void) run;
  (void) runs;
  if (done != w->last_done + 1)
    w->monotone = false;
  w->last_done = done;
  w->max_done = done > w->max_done ? done : w->max_done;
  w->total = total;
  w->calls++;
  if (w->cancel_at && done == w->cancel_at)
    atomic_store (w->cancel, 1);
}

static DsPipeline *
open_demo (DsBackend *be)
{
  DsPipeline *p = NULL;
  DsError err = { 0 };
  DS_CHECK_OK (ds_pipeline_open_untrained (7, DS_RESOURCES_DIR, be, &p, &err), &err);
  return p;
}

/* The probe `name` straight from the pipeline (same image, prompts, t, seed). */
static void
check_direct (DsPipeline *direct, const DsQuery *q, const DsSessionResult *r, const char *what)
{
  DsError err = { 0 };
  const DsProbeList *list;
  DS_CHECK_OK (ds_pipeline_probes (direct, q->size, &list, &err), &err);
  bool *want = calloc ((size_t) list->n, 1);
  for (int k = 0; k < q->n_probes; k++)
    want[ds_probe_list_find (list, q->probes[k])] = true;
  DsFeatureRequest req = { .image = q->image, .size = q->size, .fit = q->fit,
                           .prompt = q->prompt, .uncond_prompt = q->uncond_prompt, .t = q->t,
                           .convention = q->convention, .seed = q->seed, .want = want };
  DsFeatures f;
  DS_CHECK_OK (ds_pipeline_features (direct, &req, &f, &err), &err);
  DS_CHECK (r->n_probes == q->n_probes, "%s: %d probes", what, r->n_probes);
  for (int k = 0; k < q->n_probes && k < r->n_probes; k++)
    {
      const DsSessionProbe *sp = &r->probes[k];
      const DsTensor *v = &f.values[ds_probe_list_find (list, q->probes[k])];
      const size_t half = (size_t) (sp->c * sp->h * sp->w) * sizeof (float);
      DS_CHECK (ds_tensor_nbytes (v) == 2 * half, "%s: %s has the pipeline's shape", what,
                sp->name);
      DS_CHECK (ds_tensor_nbytes (v) == 2 * half && !memcmp (sp->uncond, v->data, half)
                  && !memcmp (sp->cond, (const char *) v->data + half, half),
                "%s: %s equals ds_pipeline_features bit for bit", what, sp->name);
    }
  ds_features_free (&f);
  free (want);
}

int
main (void)
{
  DsError err = { 0 };
  DsBackend *be = ds_backend_cpu_new (&err);
  DsImage img, img2;
  if (ds_image_load (DS_TEST_DATA_DIR "/sd-input.png", &img, &err))
    {
      DS_CHECK_OK (err.code, &err);
      return ds_test_finish ();
    }
  /* a second picture: the first mirrored */
  img2 = img;
  img2.rgb = malloc ((size_t) img.width * img.height * 3);
  for (int y = 0; y < img.height; y++)
    for (int x = 0; x < img.width; x++)
      memcpy (img2.rgb + 3 * ((size_t) y * img.width + x),
              img.rgb + 3 * ((size_t) y * img.width + (img.width - 1 - x)), 3);

  DsPipeline *direct = open_demo (be);
  DsSession *s;
  DS_CHECK_OK (ds_session_new (open_demo (be), NULL, &s, &err), &err);
  DsSessionStats st0, st;

  /* 1. a first query computes everything and equals the pipeline */
  DsQuery q = ds_query_default (s);
  DS_CHECK (q.size == 512 && q.t == 100 && q.heat_nq == 0 && q.trials == 1, "defaults");
  q.image = &img;
  q.size = SIZE;
  q.prompt = "a red cube on a table";
  q.t = 50;
  q.seed = 3;
  q.probes = PROBES;
  q.n_probes = 2;
  q.heat_nq = -1;
  DsSessionResult *r1 = NULL, *r2 = NULL, *r3 = NULL;
  DS_CHECK_OK (ds_session_run (s, &q, NULL, &r1, &err), &err);
  ds_session_stats (s, &st);
  DS_CHECK (st.unet_forwards == 1 && st.vae_forwards == 1 && st.text_forwards == 1
              && st.result_misses == 1 && st.results == 1 && st.latents == 1 && st.contexts == 1,
            "first query: unet %llu vae %llu text %llu", (unsigned long long) st.unet_forwards,
            (unsigned long long) st.vae_forwards, (unsigned long long) st.text_forwards);
  DS_CHECK (!r1->from_cache && r1->unet_forwards == 1 && !r1->cached_latent && !r1->cached_text,
            "first query ran the networks");
  DS_CHECK (st.result_bytes > 0, "bytes counted");
  check_direct (direct, &q, r1, "first query");
  DS_CHECK (ds_session_result_probe (r1, "down-level1-repeat0-res-out") == &r1->probes[1],
            "a probe by long id");

  /* 2. the same query again: no network; a new s is no query at all */
  DS_CHECK_OK (ds_session_run (s, &q, NULL, &r2, &err), &err);
  ds_session_stats (s, &st0);
  DS_CHECK (st0.unet_forwards == 1 && st0.vae_forwards == 1 && st0.text_forwards == 1
              && st0.result_hits == 1,
            "repeat: %llu UNet forwards", (unsigned long long) st0.unet_forwards);
  DS_CHECK (r2->from_cache && r2->unet_forwards == 0, "repeat from the cache");
  DS_CHECK (r2->probes[0].uncond == r1->probes[0].uncond, "the cached data, not a copy");
  double m1[4], m2[4];
  DS_CHECK_OK (ds_session_cka_matrix (r2, 0.0f, m1, &err), &err);
  DS_CHECK_OK (ds_session_cka_matrix (r2, 7.5f, m2, &err), &err);
  ds_session_stats (s, &st);
  DS_CHECK (st.unet_forwards == st0.unet_forwards && st.result_hits == st0.result_hits,
            "a new s runs nothing");
  for (int i = 0; i < 2; i++)
    DS_CHECK_CLOSE (m2[i * 2 + i], 1.0, 1e-5);
  /* CKA is symmetric in its arguments; the two orders sum in other orders */
  DS_CHECK_CLOSE (m2[1], m2[2], 1e-6);
  DS_CHECK (m2[1] > 0 && m2[1] < 1, "CKA between the probes %g in (0, 1)", m2[1]);
  DS_CHECK (m1[1] != m2[1], "another s gives another CKA");
  ds_session_result_unref (r2);

  /* 3. a subset of the probes hits */
  DsQuery qs = q;
  qs.probes = PROBES + 1;
  qs.n_probes = 1;
  DS_CHECK_OK (ds_session_run (s, &qs, NULL, &r2, &err), &err);
  ds_session_stats (s, &st);
  DS_CHECK (st.unet_forwards == 1 && st.result_hits == 2 && r2->n_probes == 1
              && r2->probes[0].uncond == r1->probes[1].uncond,
            "subset hit (%llu forwards)", (unsigned long long) st.unet_forwards);
  ds_session_result_unref (r2);
  ds_session_result_unref (r1);
  /* a superset misses */
  const char *more[] = { "U-L1-R1-B0-Cross-Q", "D-L1-R0-Res-Out", "M-B0-Out" };
  qs.probes = more;
  qs.n_probes = 3;
  DS_CHECK_OK (ds_session_run (s, &qs, NULL, &r2, &err), &err);
  ds_session_stats (s, &st);
  DS_CHECK (st.unet_forwards == 2 && st.vae_forwards == 1 && st.text_forwards == 1,
            "superset: one UNet forward");
  ds_session_result_unref (r2);

  /* 4. a new t: exactly one UNet forward, latent and context reused */
  DsQuery qt = q;
  qt.t = 500;
  DS_CHECK_OK (ds_session_run (s, &qt, NULL, &r2, &err), &err);
  ds_session_stats (s, &st);
  DS_CHECK (st.unet_forwards == 3 && st.vae_forwards == 1 && st.text_forwards == 1,
            "new t: unet %llu vae %llu text %llu", (unsigned long long) st.unet_forwards,
            (unsigned long long) st.vae_forwards, (unsigned long long) st.text_forwards);
  DS_CHECK (r2->cached_latent && r2->cached_text && r2->unet_forwards == 1, "new t flags");
  check_direct (direct, &qt, r2, "new t");
  ds_session_result_unref (r2);

  /* 5. a new prompt: the text encoder again, not the VAE */
  DsQuery qp = q;
  qp.prompt = "a blue sphere";
  DS_CHECK_OK (ds_session_run (s, &qp, NULL, &r2, &err), &err);
  ds_session_stats (s, &st);
  DS_CHECK (st.unet_forwards == 4 && st.vae_forwards == 1 && st.text_forwards == 2
              && st.contexts == 2,
            "new prompt: text %llu vae %llu", (unsigned long long) st.text_forwards,
            (unsigned long long) st.vae_forwards);
  DS_CHECK (r2->cached_latent && !r2->cached_text, "new prompt flags");
  check_direct (direct, &qp, r2, "new prompt");
  ds_session_result_unref (r2);

  /* 6. progress on a full forward (want_eps): every block once, in order, to total */
  atomic_int cancel = 0;
  Watch w = { .cancel = &cancel, .monotone = true };
  DsRunControl ctl = { .cancel = &cancel, .progress = on_progress, .user = &w };
  DsQuery qe = q;
  qe.t = 300;
  qe.want_eps = true;
  DS_CHECK_OK (ds_session_run (s, &qe, &ctl, &r2, &err), &err);
  DS_CHECK (w.monotone && w.total > 10 && w.last_done == w.total && w.calls == w.total,
            "progress %d calls, last %d of %d, monotone %d", w.calls, w.last_done, w.total,
            w.monotone);
  DS_CHECK (w.stages[DS_SESSION_STAGE_VAE] == 0 && w.stages[DS_SESSION_STAGE_TEXT] == 0,
            "cached stages report nothing");
  DS_CHECK (r2->runs == 1 && r2->eps && r2->eps_hat && r2->cross_lse && r2->n_cross_layers > 0,
            "want_eps outputs");
  {
    /* ε̂ and ε as the pipeline gives them */
    DsFeatureRequest req = { .image = &img, .size = SIZE, .prompt = q.prompt, .uncond_prompt = "",
                             .t = 300, .seed = 3, .want_eps = true };
    DsFeatures f;
    DS_CHECK_OK (ds_pipeline_features (direct, &req, &f, &err), &err);
    DS_CHECK (!memcmp (f.eps.data, r2->eps_hat[0], ds_tensor_nbytes (&f.eps))
                && !memcmp (f.noise, r2->eps[0], ds_tensor_nbytes (&f.eps) / 2),
              "ε̂ and ε equal the pipeline's");
    ds_features_free (&f);
  }
  ds_session_result_unref (r2);

  /* 7. cancel from the progress callback at block k, on a new image: the
   * forward stops with DS_ERR_CANCELLED having reported no block past k + 1;
   * no result is cached, but the latent it finished is kept */
  const int k = 5;
  ds_session_stats (s, &st0);
  w = (Watch){ .cancel = &cancel, .cancel_at = k, .monotone = true };
  DsQuery qc = q;
  qc.image = &img2;
  qc.want_eps = true;
  DS_CHECK_STATUS (ds_session_run (s, &qc, &ctl, &r2, &err), DS_ERR_CANCELLED, &err);
  DS_CHECK (r2 == NULL, "no result");
  printf ("  cancelled at block %d: last reported %d of %d\n", k, w.max_done, w.total);
  DS_CHECK (w.max_done >= k && w.max_done <= k + 1, "stopped at block %d (cancelled at %d)",
            w.max_done, k);
  DS_CHECK (w.stages[DS_SESSION_STAGE_VAE] == 1, "the VAE ran for the new image");
  ds_session_stats (s, &st);
  DS_CHECK (st.results == st0.results && st.contexts == st0.contexts
              && st.result_bytes == st0.result_bytes,
            "a cancelled run caches no result");
  DS_CHECK (st.latents == st0.latents + 1, "the finished latent is kept (%d, was %d)",
            st.latents, st0.latents);
  /* the next query works, equals the pipeline, and is cached */
  atomic_store (&cancel, 0);
  w = (Watch){ .cancel = &cancel, .monotone = true };
  qc.want_eps = false;
  DS_CHECK_OK (ds_session_run (s, &qc, &ctl, &r2, &err), &err);
  check_direct (direct, &qc, r2, "after a cancel");
  DS_CHECK (w.stages[DS_SESSION_STAGE_IMAGE] == 0 && w.stages[DS_SESSION_STAGE_VAE] == 0
              && r2->cached_latent,
            "the cancelled run's latent serves: no VAE run");
  DS_CHECK (w.monotone && w.last_done < w.total, "an early exit stops short of total (%d of %d)",
            w.last_done, w.total);
  ds_session_result_unref (r2);
  ds_session_stats (s, &st0);
  DS_CHECK_OK (ds_session_run (s, &qc, NULL, &r2, &err), &err);
  ds_session_stats (s, &st);
  DS_CHECK (r2->from_cache && st.unet_forwards == st0.unet_forwards, "and cached");
  ds_session_result_unref (r2);

  /* 8. an ensemble's heat map is the mean of its runs' */
  const int ts[2] = { 50, 700 };
  DsQuery qh = q;
  qh.heat_nq = 0; /* latent 16: the 4x4 layers */
  qh.timesteps = ts;
  qh.n_timesteps = 2;
  qh.trials = 2;
  ds_session_stats (s, &st0);
  DS_CHECK_OK (ds_session_run (s, &qh, NULL, &r3, &err), &err);
  ds_session_stats (s, &st);
  DS_CHECK (r3->runs == 4 && r3->unet_forwards == 4 && st.unet_forwards == st0.unet_forwards + 4,
            "2 timesteps x 2 trials: %d runs, %d forwards", r3->runs, r3->unet_forwards);
  DS_CHECK (r3->heat && r3->heat_h == 4 && r3->heat_w == 4 && r3->heat_k == DS_CLIP_CONTEXT
              && r3->heat_layers > 0,
            "heat [%lldx%lld, %lld] over %d layers", (long long) r3->heat_h,
            (long long) r3->heat_w, (long long) r3->heat_k, r3->heat_layers);
  check_direct (direct, &q, r3, "ensemble features (t, seed)");
  const int64_t hn = r3->heat_h * r3->heat_w * r3->heat_k;
  double *mean = calloc ((size_t) hn, sizeof *mean);
  for (int run = 0; run < 4; run++)
    {
      DsQuery q1 = q;
      q1.n_probes = 0;
      q1.heat_nq = 0;
      q1.t = ts[run / 2];
      q1.seed = q.seed + (uint64_t) (run % 2);
      DsSessionResult *one;
      DS_CHECK_OK (ds_session_run (s, &q1, NULL, &one, &err), &err);
      if (one && one->heat)
        for (int64_t i = 0; i < hn; i++)
          mean[i] += one->heat[i] / 4.0;
      ds_session_result_unref (one);
    }
  /* The single runs are the same forwards as the ensemble's (bit for bit);
   * DsHeatmapAccum sums them in double too and rounds the quotient to f32
   * once, so only that last rounding (half an ulp, 6e-8 relative) and the
   * order of the double sums may differ. */
  double worst = 0;
  for (int64_t i = 0; r3->heat && i < hn; i++)
    {
      double d = fabs (r3->heat[i] - mean[i]) / fmax (1e-30, fabs (mean[i]));
      worst = d > worst ? d : worst;
    }
  printf ("  ensemble heat vs the mean of its 4 runs: worst relative difference %.3g\n", worst);
  DS_CHECK (worst <= 1.2e-7, "ensemble heat vs mean of runs: worst relative %.3g", worst);
  free (mean);
  ds_session_result_unref (r3);

  /* 9. bad queries name what is wrong and leave the session working */
  DsQuery qb = q;
  const char *bad[] = { "U-L9-R9-Nope" };
  qb.probes = bad;
  qb.n_probes = 1;
  DS_CHECK_STATUS (ds_session_run (s, &qb, NULL, &r2, &err), DS_ERR_NOT_FOUND, &err);
  DS_CHECK_CONTAINS (err.message, "U-L9-R9-Nope");
  DS_CHECK_CONTAINS (err.message, "U-L1-R1-B0-Cross-Q");
  qb = q;
  qb.size = 100;
  DS_CHECK_STATUS (ds_session_run (s, &qb, NULL, &r2, &err), DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "100");
  qb = q;
  qb.t = 1000;
  DS_CHECK_STATUS (ds_session_run (s, &qb, NULL, &r2, &err), DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "1000");
  qb = q;
  qb.heat_nq = 49; /* no 7x7 layer */
  DS_CHECK_STATUS (ds_session_run (s, &qb, NULL, &r2, &err), DS_ERR_INVALID, &err);
  DS_CHECK_CONTAINS (err.message, "heat_nq");
  DS_CHECK_OK (ds_session_run (s, &q, NULL, &r2, &err), &err);
  ds_session_result_unref (r2);
  ds_session_free (s);

  /* 10. LRU eviction by bytes: room for one result and a half */
  DS_CHECK_OK (ds_session_new (open_demo (be), NULL, &s, &err), &err);
  DS_CHECK_OK (ds_session_run (s, &q, NULL, &r1, &err), &err);
  ds_session_stats (s, &st);
  const size_t one_result = st.result_bytes;
  ds_session_result_unref (r1);
  ds_session_free (s);
  DsSessionLimits lim = { .result_bytes = one_result + one_result / 2 };
  DS_CHECK_OK (ds_session_new (open_demo (be), &lim, &s, &err), &err);
  DS_CHECK_OK (ds_session_run (s, &q, NULL, &r1, &err), &err);   /* A */
  DS_CHECK_OK (ds_session_run (s, &qt, NULL, &r2, &err), &err);  /* B evicts A */
  ds_session_stats (s, &st);
  DS_CHECK (st.results == 1 && st.result_bytes == one_result, "one result kept (%d, %zu bytes)",
            st.results, st.result_bytes);
  ds_session_result_unref (r2);
  DS_CHECK_OK (ds_session_run (s, &qt, NULL, &r2, &err), &err);  /* B: a hit */
  DS_CHECK (r2->from_cache, "the newest stays");
  ds_session_result_unref (r2);
  DS_CHECK_OK (ds_session_run (s, &q, NULL, &r2, &err), &err);   /* A: evicted, runs again */
  ds_session_stats (s, &st);
  DS_CHECK (!r2->from_cache && st.unet_forwards == 3 && st.vae_forwards == 1,
            "the evicted one runs again (%llu forwards)", (unsigned long long) st.unet_forwards);
  /* a result handed out outlives its eviction */
  DS_CHECK (!memcmp (r1->probes[0].uncond, r2->probes[0].uncond,
                     (size_t) (r1->probes[0].c * r1->probes[0].h * r1->probes[0].w) * 4),
            "an evicted result stays readable and equal");
  ds_session_result_unref (r1);
  ds_session_result_unref (r2);
  ds_session_clear (s);
  ds_session_stats (s, &st);
  DS_CHECK (st.results == 0 && st.latents == 0 && st.contexts == 0 && st.result_bytes == 0,
            "cleared");
  DS_CHECK_OK (ds_session_run (s, &q, NULL, &r2, &err), &err);
  ds_session_result_unref (r2);
  ds_session_free (s);

  ds_pipeline_free (direct);
  free (img2.rgb);
  ds_image_free (&img);
  ds_backend_free (be);
  return ds_test_finish ();
}
