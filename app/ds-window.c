/* ds-window.c: see ds-window.h.
 *
 * Job kinds on the worker: a newer job of a kind replaces an older one (and
 * stops it if it runs), so each kind is one "latest wins" channel.
 */
#include "ds-window.h"

#include <math.h>
#include <string.h>

#include "ds-answer-view.h"
#include "ds-block-picker.h"
#include "ds-cka-plot.h"
#include "ds-data.h"
#include "ds-device.h"
#include "ds-image-view.h"
#include "ds-llava.h"
#include "ds-map-grid.h"
#include "ds-prefs.h"
#include "ds-token-strip.h"

enum { JOB_MODEL, JOB_UPDATE, JOB_IMAGE, JOB_IMAGE2, JOB_EXPORT };

/* The worker's state; touched only by jobs (one at a time, on the worker). */
typedef struct {
  DsExplorer *x;
} Slot;

/* The answer worker's state, each part opened on first use and kept while
 * its folder stays: the LLaVA model; for fused answers the fusion checkpoint
 * and a session of its own on the SD model (the explorer's worker owns the
 * other one). */
typedef struct {
  DsBackend *be;
  char *device; /* what be was opened for: "auto", "cpu" or "cuda" */
  DsLlava *lv;
  char *dir;
  DsFusion *fusion;
  char *fusion_dir;
  DsSession *sd;
  char *sd_dir; /* "" for the built-in model */
  gboolean gpu_lost; /* a fault ended the CUDA context: the CPU from then on */
} AnswerSlot;

enum { ANSWER_JOB };

struct _DsWindow {
  GtkApplicationWindow parent_instance;

  /* template children */
  GtkLabel *model_label;
  GtkMenuButton *blocks_button;
  DsBlockPicker *block_picker;
  GtkInfoBar *info_bar;
  GtkLabel *info_label;
  GtkStack *stack;
  GtkLabel *empty_label;
  GtkWidget *builtin_button;
  DsImageView *image_view, *image_view2;
  GtkWidget *image2_scroll;      /* the right-hand picture with its caption */
  GtkLabel *image2_label;
  GtkScale *opacity_scale;
  GtkDropDown *cmap_dropdown;
  GtkLabel *overlay_label;
  DsTokenStrip *token_strip, *token_strip2;
  GtkWidget *token_label2;
  DsMapGrid *map_grid, *map_grid2;
  GtkWidget *grid2_label, *pair_box;
  GtkPicture *pair_a, *pair_b;
  GtkLabel *pair_label;
  GtkEntry *prompt_entry, *prompt2_entry;
  GtkLabel *prompt_notice;
  GtkScale *t_scale, *s_scale;
  GtkSpinButton *seed_spin, *trials_spin;
  GtkCheckButton *ensemble_check, *special_check;
  DsCkaPlot *cka_plot;
  DsAnswerView *answer_view;
  GtkLabel *status_label, *hover_label;
  GtkProgressBar *progress_bar;

  DsWorker *worker;
  Slot *slot;
  /* Answers run on a worker of their own, so a long generation never holds
   * up the maps (LLaVA on a backend of its own, on the preferences' device). */
  DsWorker *answer_worker;
  AnswerSlot *answer_slot;
  guint n_answers;            /* answers finished (or stopped) */
  DsPrefs *prefs;
  DsFusionConfig fusion;      /* prefs->fusion's config.json, when prefs->fusion is set */
  DsExploreParams params;     /* what the person set */
  gboolean has_model, is_builtin;
  char *model_text;           /* "toy shapes model, … · CPU" */
  DsExploreView *view;        /* on screen */
  DsTokens strip_tokens[2];   /* what the token strips show (rebuilt only on a change) */
  gboolean strip_set[2];
  guint n_views;
  guint64 forwards;
  char *error;
  guint prompt_timeout;
  gboolean applying;          /* widgets being set from a view: no new jobs */
  int word_when_ready;
  char *screenshot_path;
  guint screenshot_idle;      /* closes the window once the screenshot is saved */
  gulong after_paint;
  GdkFrameClock *clock;       /* whose after_paint handler is connected */
};

G_DEFINE_FINAL_TYPE (DsWindow, ds_window, GTK_TYPE_APPLICATION_WINDOW)

static const char *const colormaps[] = { "inferno", "viridis", "jet", "grey", "greys" };

/* ---- errors and status --------------------------------------------------------- */

static void
show_error (DsWindow *self, const char *what, const GError *error)
{
  g_free (self->error);
  self->error = g_strdup_printf ("%s: %s", what, error ? error->message : "failed");
  gtk_label_set_text (self->info_label, self->error);
  gtk_info_bar_set_revealed (self->info_bar, TRUE);
}

static void
hide_error (DsWindow *self)
{
  g_clear_pointer (&self->error, g_free);
  gtk_info_bar_set_revealed (self->info_bar, FALSE);
}

static void
on_info_response (GtkInfoBar *bar, int response, DsWindow *self)
{
  hide_error (self);
}

static void
update_status (DsWindow *self)
{
  GString *s = g_string_new (NULL);
  if (!self->has_model)
    g_string_append (s, "No model");
  else if (self->view)
    {
      const DsExploreView *v = self->view;
      g_string_append (s, v->device);
      if (v->unet_forwards)
        {
          g_string_append (s, " ·");
          if (v->ms_vae > 0)
            g_string_append_printf (s, " image %.0f ms, VAE %.0f ms,", v->ms_image, v->ms_vae);
          if (v->ms_text > 0)
            g_string_append_printf (s, " text %.0f ms,", v->ms_text);
          g_string_append_printf (s, " UNet %.0f ms (%d forward%s)", v->ms_unet,
                                  v->unet_forwards, v->unet_forwards == 1 ? "" : "s");
        }
      else
        g_string_append (s, " · features from the cache");
      g_string_append_printf (s, " · maps %.0f ms · t %d, s %.1f, seed %" G_GUINT64_FORMAT,
                              v->ms_analysis, v->t, v->s, v->seed);
    }
  else
    g_string_append (s, self->model_text ? self->model_text : "");
  int pending = ds_worker_pending (self->worker);
  if (pending > 1)
    g_string_append_printf (s, " · %d jobs queued", pending - 1);
  else if (pending == 1)
    g_string_append (s, " · working");
  gtk_label_set_text (self->status_label, s->str);
  g_string_free (s, TRUE);
  gtk_widget_set_visible (GTK_WIDGET (self->progress_bar), pending > 0);
}

static void
on_worker_notify (const char *stage, int done, int total, gpointer user_data)
{
  DsWindow *self = user_data;
  if (stage && total > 0)
    {
      g_autofree char *text = g_strdup_printf ("%s %d/%d", stage, done, total);
      gtk_progress_bar_set_fraction (self->progress_bar, (double) done / total);
      gtk_progress_bar_set_text (self->progress_bar, text);
      gtk_widget_set_visible (GTK_WIDGET (self->progress_bar), TRUE);
    }
  else
    update_status (self);
}

/* From a job (worker thread) to the worker's coalesced progress. */
static void
job_progress (void *user, DsSessionStage stage, int done, int total, int run, int runs)
{
  DsWorker *w = user;
  char name[32];
  if (runs > 1)
    g_snprintf (name, sizeof name, "%s (run %d/%d)", ds_session_stage_name (stage), run, runs);
  else
    g_strlcpy (name, ds_session_stage_name (stage), sizeof name);
  ds_worker_progress (w, name, done, total);
}

/* ---- textures -------------------------------------------------------------------- */

static GdkTexture *
texture_from_pixels (const DsPixels *px)
{
  if (!px->rgba)
    return NULL;
  g_autoptr (GBytes) bytes = g_bytes_new (px->rgba, (gsize) px->w * px->h * 4);
  return gdk_memory_texture_new (px->w, px->h, GDK_MEMORY_R8G8B8A8, bytes, (gsize) px->w * 4);
}

static void
image_bytes_free (gpointer data)
{
  ds_shared_image_unref (data);
}

static GdkTexture *
texture_from_image (DsSharedImage *im)
{
  const DsImage *i = &im->image;
  g_autoptr (GBytes) bytes = g_bytes_new_with_free_func (i->rgb, (gsize) i->width * i->height * 3,
                                                         image_bytes_free,
                                                         ds_shared_image_ref (im));
  return gdk_memory_texture_new (i->width, i->height, GDK_MEMORY_R8G8B8, bytes,
                                 (gsize) i->width * 3);
}

/* ---- the update job ------------------------------------------------------------------- */

typedef struct {
  Slot *slot;
  DsExploreParams *p;
  DsWorker *worker;
} UpdateData;

static void
update_data_free (gpointer data)
{
  UpdateData *d = data;
  ds_explore_params_free (d->p);
  g_free (d);
}

static gpointer
update_func (gpointer data, const atomic_int *cancel, DsWorker *worker, GError **error)
{
  UpdateData *d = data;
  if (!d->slot->x)
    {
      g_set_error_literal (error, DS_EXPLORE_ERROR, DS_ERR_INVALID, "no model is open");
      return NULL;
    }
  return ds_explore_update (d->slot->x, d->p, cancel, job_progress, worker, error);
}

static void
tokens_to_strip (DsTokenStrip *strip, const DsTokens *t)
{
  GArray *items = g_array_new (FALSE, TRUE, sizeof (DsTokenItem));
  DsTokenItem start = { "<start>", DS_TOKEN_ITEM_START, 0, 1 };
  g_array_append_val (items, start);
  for (int i = 0; i < t->n_words; i++)
    {
      DsTokenItem it = { t->words[i].text, DS_TOKEN_ITEM_WORD, t->words[i].first,
                         t->words[i].count };
      g_array_append_val (items, it);
    }
  DsTokenItem end = { "<end>", DS_TOKEN_ITEM_END, t->n_tokens - 1, 1 };
  g_array_append_val (items, end);
  for (int i = t->n_tokens; i < DS_CLIP_CONTEXT; i++)
    {
      DsTokenItem pad = { "<pad>", DS_TOKEN_ITEM_PAD, i, 1 };
      g_array_append_val (items, pad);
    }
  ds_token_strip_set_items (strip, (const DsTokenItem *) items->data, (int) items->len);
  g_array_free (items, TRUE);
}

/* The strip k shows t's words; rebuilt only when the prompt's tokens changed
 * (a slider or a word pick leaves the buttons as they are). */
static void
show_tokens (DsWindow *self, int k, DsTokenStrip *strip, const DsTokens *t)
{
  if (self->strip_set[k] && !memcmp (self->strip_tokens[k].ids, t->ids, sizeof t->ids))
    return;
  tokens_to_strip (strip, t);
  self->strip_tokens[k] = *t;
  self->strip_set[k] = TRUE;
}

static void
set_grid (DsMapGrid *grid, DsExploreBlock *blocks, int n)
{
  ds_map_grid_set_rows (grid, n);
  for (int i = 0; i < n; i++)
    {
      GdkTexture *tex[DS_EXPLORE_TILES];
      const char *caps[DS_EXPLORE_TILES];
      for (int j = 0; j < DS_EXPLORE_TILES; j++)
        {
          tex[j] = texture_from_pixels (&blocks[i].tile[j]);
          caps[j] = blocks[i].caption[j];
        }
      ds_map_grid_set_row (grid, i, blocks[i].name, tex, caps, DS_EXPLORE_TILES);
      for (int j = 0; j < DS_EXPLORE_TILES; j++)
        g_clear_object (&tex[j]);
    }
}

static void
set_overlay (DsImageView *view, const DsExploreView *v, int slot)
{
  g_autoptr (GdkTexture) tex = texture_from_pixels (&v->overlay[slot]);
  ds_image_view_set_overlay (view, tex);
  ds_image_view_set_values (view, v->values[slot], v->vw[slot], v->vh[slot],
                            v->overlay_label[slot]);
}

static void schedule_update (DsWindow *self);

static gboolean
close_idle (gpointer data)
{
  DsWindow *self = data;
  self->screenshot_idle = 0;
  gtk_window_close (GTK_WINDOW (self));
  return G_SOURCE_REMOVE;
}

static void
disconnect_after_paint (DsWindow *self)
{
  if (self->clock && self->after_paint
      && g_signal_handler_is_connected (self->clock, self->after_paint))
    g_signal_handler_disconnect (self->clock, self->after_paint);
  self->after_paint = 0;
  g_clear_object (&self->clock);
}

/* --screenshot: at the end of a frame (layout and paint done, so what is
 * saved is what was painted) once the maps of the latest inputs are shown and
 * nothing is queued; then the window closes. */
static void
on_after_paint (GdkFrameClock *clock, DsWindow *self)
{
  if (!self->screenshot_path || !self->view || self->view->n_blocks == 0
      || self->word_when_ready >= 0 || ds_worker_busy (self->worker) || self->prompt_timeout)
    return; /* the next view's frame asks again */
  disconnect_after_paint (self);
  g_autoptr (GError) error = NULL;
  g_autofree char *path = g_steal_pointer (&self->screenshot_path);
  if (!ds_window_save_screenshot (self, path, &error))
    g_printerr ("diffscope: %s\n", error->message);
  if (!self->screenshot_idle)
    self->screenshot_idle = g_idle_add (close_idle, self);
}

static void
update_done (gpointer result, const GError *error, gpointer user_data)
{
  DsWindow *self = user_data;
  if (error)
    {
      if (!g_error_matches (error, DS_EXPLORE_ERROR, DS_ERR_CANCELLED))
        show_error (self, "Could not compute the maps", error);
      update_status (self);
      return;
    }
  DsExploreView *v = result;
  /* The window keeps the view: take it from the worker (it frees what it
   * delivers), by swapping in an empty one. */
  DsExploreView *mine = g_new (DsExploreView, 1);
  *mine = *v;
  memset (v, 0, sizeof *v);
  ds_explore_view_free (self->view);
  self->view = v = mine;
  self->n_views++;
  self->forwards = v->unet_forwards_total;
  hide_error (self);

  const gint64 t_apply = g_get_monotonic_time ();
  self->applying = TRUE;
  set_grid (self->map_grid, v->blocks[0], v->n_blocks);
  gboolean two = v->n_prompts > 1;
  gtk_widget_set_visible (GTK_WIDGET (self->map_grid2), two);
  gtk_widget_set_visible (self->grid2_label, two);
  if (two)
    set_grid (self->map_grid2, v->blocks[1], v->n_blocks);
  show_tokens (self, 0, self->token_strip, &v->tokens[0]);
  gtk_widget_set_visible (GTK_WIDGET (self->token_strip2), two);
  gtk_widget_set_visible (self->token_label2, two);
  if (two)
    show_tokens (self, 1, self->token_strip2, &v->tokens[1]);
  set_overlay (self->image_view, v, 0);
  gboolean right = self->params.image2 || two;
  gtk_widget_set_visible (self->image2_scroll, right);
  if (right)
    {
      g_autoptr (GdkTexture) img = texture_from_image (self->params.image2 ? self->params.image2
                                                                            : self->params.image);
      ds_image_view_set_image (self->image_view2, img);
      set_overlay (self->image_view2, v, 1);
      g_autofree char *cap = NULL;
      if (self->params.image2)
        cap = g_strdup_printf ("Second image (%s)%s%s", self->params.image2->name,
                               v->overlay_label[1][0] ? ": " : "", v->overlay_label[1]);
      else
        cap = g_strdup_printf ("Mismatched prompt%s%s", v->overlay_label[1][0] ? ": " : "",
                               v->overlay_label[1][0] ? v->overlay_label[1]
                                                      : " (pick one of its words)");
      gtk_label_set_text (self->image2_label, cap);
    }
  gtk_label_set_text (self->overlay_label, v->overlay_label[0][0]
                                             ? v->overlay_label[0]
                                             : "Pick a word, a map tile or a point on the image");
  gtk_widget_set_visible (self->pair_box, v->pair);
  if (v->pair)
    {
      g_autoptr (GdkTexture) a = texture_from_pixels (&v->pair_tile[0]);
      g_autoptr (GdkTexture) b = texture_from_pixels (&v->pair_tile[1]);
      gtk_picture_set_paintable (self->pair_a, GDK_PAINTABLE (a));
      gtk_picture_set_paintable (self->pair_b, GDK_PAINTABLE (b));
      gtk_label_set_text (self->pair_label, v->pair_caption);
    }
  if (v->cka && v->n_blocks > 0)
    {
      const char **labels = g_new0 (const char *, v->n_blocks);
      for (int i = 0; i < v->n_blocks; i++)
        labels[i] = v->blocks[0][i].name;
      ds_cka_plot_set_curves (self->cka_plot, v->cka_s, v->n_s, v->cka, labels, v->n_blocks);
      g_free (labels);
    }
  ds_cka_plot_set_marker (self->cka_plot, self->params.s);
  gboolean trunc = v->truncated[0] || v->truncated[1];
  gtk_widget_set_visible (GTK_WIDGET (self->prompt_notice), trunc);
  if (trunc)
    gtk_label_set_text (self->prompt_notice,
                        "A prompt is longer than 77 tokens: the words after the 75th "
                        "piece are cut, as Stable Diffusion does.");
  self->applying = FALSE;
  if (g_getenv ("DIFFSCOPE_PROFILE"))
    g_printerr ("diffscope: view: network %.1f ms, maps %.1f ms (worker); widgets %.1f ms\n",
                v->ms_network, v->ms_analysis, (g_get_monotonic_time () - t_apply) / 1e3);

  if (self->word_when_ready >= 0 && ds_token_strip_get_n_items (self->token_strip) > 0)
    {
      int i = self->word_when_ready;
      self->word_when_ready = -1;
      ds_token_strip_select (self->token_strip, i); /* posts an update */
    }
  update_status (self);
  if (self->screenshot_path)
    {
      /* After the frame that shows this view has been painted. */
      GdkFrameClock *clock = gtk_widget_get_frame_clock (GTK_WIDGET (self));
      if (clock && !self->after_paint)
        {
          self->clock = g_object_ref (clock);
          self->after_paint = g_signal_connect (clock, "after-paint",
                                                G_CALLBACK (on_after_paint), self);
        }
      gtk_widget_queue_draw (GTK_WIDGET (self));
    }
}

static void
read_params (DsWindow *self)
{
  DsExploreParams *p = &self->params;
  g_free (p->prompt);
  p->prompt = g_strdup (gtk_editable_get_text (GTK_EDITABLE (self->prompt_entry)));
  g_free (p->prompt2);
  p->prompt2 = g_strdup (gtk_editable_get_text (GTK_EDITABLE (self->prompt2_entry)));
  p->t = (int) lround (gtk_range_get_value (GTK_RANGE (self->t_scale)));
  p->s = gtk_range_get_value (GTK_RANGE (self->s_scale));
  p->seed = (guint64) gtk_spin_button_get_value (self->seed_spin);
  p->ensemble = gtk_check_button_get_active (self->ensemble_check);
  p->trials = gtk_spin_button_get_value_as_int (self->trials_spin);
  guint c = gtk_drop_down_get_selected (self->cmap_dropdown);
  p->cmap = DS_COLORMAP_INFERNO;
  if (c < G_N_ELEMENTS (colormaps))
    {
      DsError err = { 0 };
      ds_colormap_from_name (colormaps[c], &p->cmap, &err);
    }
  p->size = self->prefs->size;
  p->tile_px = 160;
}

static void
schedule_update (DsWindow *self)
{
  if (self->applying || !self->has_model || !self->params.image)
    return;
  read_params (self);
  UpdateData *d = g_new0 (UpdateData, 1);
  d->slot = self->slot;
  d->p = ds_explore_params_copy (&self->params);
  d->worker = self->worker;
  DsJob job = { .kind = JOB_UPDATE, .func = update_func, .data = d,
                .data_free = update_data_free, .done = update_done, .user_data = self,
                .result_free = (GDestroyNotify) ds_explore_view_free };
  ds_worker_post (self->worker, &job);
}

/* ---- models ------------------------------------------------------------------------ */

typedef struct {
  Slot *slot;
  char *dir;
  char *device;
} ModelData;

typedef struct {
  char *label, *device;
  gboolean builtin;
  char **blocks;
} ModelInfo;

static void
model_data_free (gpointer data)
{
  ModelData *d = data;
  g_free (d->dir);
  g_free (d->device);
  g_free (d);
}

static void
model_info_free (gpointer data)
{
  ModelInfo *m = data;
  g_free (m->label);
  g_free (m->device);
  g_strfreev (m->blocks);
  g_free (m);
}

static gpointer
model_func (gpointer data, const atomic_int *cancel, DsWorker *worker, GError **error)
{
  ModelData *d = data;
  ds_worker_progress (worker, "loading model", 0, 1);
  DsExplorer *x = ds_explorer_open (d->dir, d->device, error);
  if (!x)
    return NULL;
  ds_explorer_free (d->slot->x); /* the old model goes only once the new one is there */
  d->slot->x = x;
  ModelInfo *m = g_new0 (ModelInfo, 1);
  m->label = g_strdup (ds_explorer_label (x));
  m->device = g_strdup (ds_explorer_device (x));
  m->builtin = ds_explorer_is_builtin (x);
  m->blocks = ds_explorer_block_names (x);
  return m;
}

static void
model_done (gpointer result, const GError *error, gpointer user_data)
{
  DsWindow *self = user_data;
  if (error)
    {
      show_error (self, "Could not open the model", error);
      update_status (self);
      return;
    }
  ModelInfo *m = result;
  self->has_model = TRUE;
  self->is_builtin = m->builtin;
  g_free (self->model_text);
  self->model_text = g_strdup_printf ("%s · %s", m->label, m->device);
  gtk_label_set_text (self->model_label, self->model_text);
  gtk_widget_set_tooltip_text (GTK_WIDGET (self->model_label), self->model_text);
  self->applying = TRUE;
  ds_block_picker_set_blocks (self->block_picker, (const char *const *) m->blocks,
                              (int) g_strv_length (m->blocks));
  ds_block_picker_set_selected (self->block_picker, (const char *const *) self->prefs->blocks);
  g_strfreev (self->params.blocks);
  self->params.blocks = ds_block_picker_get_selected (self->block_picker);
  if (!self->params.blocks || !self->params.blocks[0])
    {
      g_strfreev (self->params.blocks);
      self->params.blocks = g_new0 (char *, 2);
      self->params.blocks[0] = g_strdup (m->blocks[0]);
    }
  self->applying = FALSE;
  gtk_stack_set_visible_child_name (self->stack, "main");
  gtk_widget_set_sensitive (GTK_WIDGET (self->blocks_button), TRUE);
  hide_error (self);
  update_status (self);
  schedule_update (self);
}

void
ds_window_open_model (DsWindow *self, const char *model_dir)
{
  ModelData *d = g_new0 (ModelData, 1);
  d->slot = self->slot;
  d->dir = g_strdup (model_dir);
  d->device = g_strdup (self->prefs->device);
  if (g_strcmp0 (self->prefs->last_model, model_dir) != 0)
    {
      /* the last model opened, NULL for the built-in one, is the next start's */
      g_free (self->prefs->last_model);
      self->prefs->last_model = g_strdup (model_dir);
      ds_prefs_save (self->prefs, NULL);
    }
  DsJob job = { .kind = JOB_MODEL, .func = model_func, .data = d, .data_free = model_data_free,
                .done = model_done, .user_data = self, .result_free = model_info_free };
  ds_worker_post (self->worker, &job);
  update_status (self);
}

/* ---- images -------------------------------------------------------------------------- */

typedef struct {
  GFile *file;
  GBytes *bytes;
  char *name;
  gboolean second;
} ImageData;

static void
image_data_free (gpointer data)
{
  ImageData *d = data;
  g_clear_object (&d->file);
  g_clear_pointer (&d->bytes, g_bytes_unref);
  g_free (d->name);
  g_free (d);
}

static gpointer
image_func (gpointer data, const atomic_int *cancel, DsWorker *worker, GError **error)
{
  ImageData *d = data;
  if (d->bytes)
    {
      gsize n;
      const void *p = g_bytes_get_data (d->bytes, &n);
      return ds_shared_image_decode (p, n, d->name, error);
    }
  g_autofree char *path = g_file_get_path (d->file);
  if (!path)
    {
      g_autofree char *uri = g_file_get_uri (d->file);
      g_set_error (error, DS_EXPLORE_ERROR, DS_ERR_IO, "%s is not a local file", uri);
      return NULL;
    }
  return ds_shared_image_load (path, error);
}

typedef struct {
  DsWindow *self;
  gboolean second;
} ImageTarget;

static void
set_image (DsWindow *self, DsSharedImage *im, gboolean second)
{
  DsSharedImage **slot = second ? &self->params.image2 : &self->params.image;
  ds_shared_image_unref (*slot);
  *slot = ds_shared_image_ref (im);
  if (!second)
    {
      g_autoptr (GdkTexture) tex = im ? texture_from_image (im) : NULL;
      ds_image_view_set_image (self->image_view, tex);
      ds_image_view_set_overlay (self->image_view, NULL);
      g_autofree char *title = im ? g_strdup_printf ("%s — Diffscope", im->name)
                                  : g_strdup ("Diffscope");
      gtk_window_set_title (GTK_WINDOW (self), title);
    }
  else if (!im)
    gtk_widget_set_visible (self->image2_scroll, FALSE);
  schedule_update (self);
}

static void
image_done_first (gpointer result, const GError *error, gpointer user_data)
{
  DsWindow *self = user_data;
  if (error)
    show_error (self, "Could not open the image", error);
  else
    set_image (self, result, FALSE);
  update_status (self);
}

static void
image_done_second (gpointer result, const GError *error, gpointer user_data)
{
  DsWindow *self = user_data;
  if (error)
    show_error (self, "Could not open the second image", error);
  else
    set_image (self, result, TRUE);
  update_status (self);
}

static void
post_image (DsWindow *self, ImageData *d)
{
  /* One job kind per side, so a newer pick replaces a queued one of its side
   * only (a drop of two files loads both). */
  DsJob job = { .kind = d->second ? JOB_IMAGE2 : JOB_IMAGE, .func = image_func, .data = d, .data_free = image_data_free,
                .done = d->second ? image_done_second : image_done_first, .user_data = self,
                .result_free = (GDestroyNotify) ds_shared_image_unref };
  ds_worker_post (self->worker, &job);
  update_status (self);
}

void
ds_window_open_image (DsWindow *self, GFile *file, gboolean second)
{
  ImageData *d = g_new0 (ImageData, 1);
  d->file = g_object_ref (file);
  d->second = second;
  post_image (self, d);
}

void
ds_window_set_prompt (DsWindow *self, const char *prompt)
{
  gtk_editable_set_text (GTK_EDITABLE (self->prompt_entry), prompt ? prompt : "");
}

void
ds_window_select_word_when_ready (DsWindow *self, int index)
{
  self->word_when_ready = index;
}

void
ds_window_screenshot_when_ready (DsWindow *self, const char *path)
{
  g_free (self->screenshot_path);
  self->screenshot_path = g_strdup (path);
}

/* ---- file choosers --------------------------------------------------------------------- */

static void
on_open_response (GtkNativeDialog *dialog, int response, gpointer user_data)
{
  ImageTarget *t = user_data;
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr (GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
      if (file)
        ds_window_open_image (t->self, file, t->second);
    }
  g_object_unref (dialog);
  g_free (t);
}

static void
choose_image (DsWindow *self, gboolean second)
{
  GtkFileChooserNative *fc = gtk_file_chooser_native_new (
      second ? "Open a Second Image" : "Open an Image", GTK_WINDOW (self),
      GTK_FILE_CHOOSER_ACTION_OPEN, "_Open", "_Cancel");
  GtkFileFilter *f = gtk_file_filter_new ();
  gtk_file_filter_set_name (f, "PNG and JPEG images");
  gtk_file_filter_add_mime_type (f, "image/png");
  gtk_file_filter_add_mime_type (f, "image/jpeg");
  gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (fc), f);
  g_object_unref (f);
  ImageTarget *t = g_new0 (ImageTarget, 1);
  t->self = self;
  t->second = second;
  g_signal_connect (fc, "response", G_CALLBACK (on_open_response), t);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (fc));
}

static void
action_open (GtkWidget *w, const char *name, GVariant *param)
{
  choose_image (DS_WINDOW (w), FALSE);
}

static void
action_open_second (GtkWidget *w, const char *name, GVariant *param)
{
  choose_image (DS_WINDOW (w), TRUE);
}

static void
action_close_second (GtkWidget *w, const char *name, GVariant *param)
{
  set_image (DS_WINDOW (w), NULL, TRUE);
}

static void
on_model_response (GtkNativeDialog *dialog, int response, gpointer user_data)
{
  DsWindow *self = user_data;
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr (GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
      g_autofree char *path = file ? g_file_get_path (file) : NULL;
      if (path)
        ds_window_open_model (self, path);
    }
  g_object_unref (dialog);
}

static void
action_open_model (GtkWidget *w, const char *name, GVariant *param)
{
  DsWindow *self = DS_WINDOW (w);
  GtkFileChooserNative *fc = gtk_file_chooser_native_new (
      "Open a Stable Diffusion Model Folder", GTK_WINDOW (self),
      GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER, "_Open", "_Cancel");
  if (self->prefs->last_model)
    {
      g_autoptr (GFile) last = g_file_new_for_path (self->prefs->last_model);
      g_autoptr (GFile) parent = g_file_get_parent (last);
      if (parent)
        gtk_file_chooser_set_current_folder (GTK_FILE_CHOOSER (fc), parent, NULL);
    }
  g_signal_connect (fc, "response", G_CALLBACK (on_model_response), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (fc));
}

static void
action_use_builtin (GtkWidget *w, const char *name, GVariant *param)
{
  ds_window_open_model (DS_WINDOW (w), NULL);
}

/* ---- paste and drop ------------------------------------------------------------------------ */

static void
take_texture (DsWindow *self, GdkTexture *tex, const char *name)
{
  /* Through PNG bytes, so a pasted picture takes the same decoder as a file. */
  ImageData *d = g_new0 (ImageData, 1);
  d->bytes = gdk_texture_save_to_png_bytes (tex);
  d->name = g_strdup (name);
  post_image (self, d);
}

static void
on_paste_texture (GObject *src, GAsyncResult *res, gpointer user_data)
{
  DsWindow *self = user_data;
  g_autoptr (GError) error = NULL;
  g_autoptr (GdkTexture) tex = gdk_clipboard_read_texture_finish (GDK_CLIPBOARD (src), res,
                                                                 &error);
  if (!tex)
    show_error (self, "Could not paste an image", error);
  else
    take_texture (self, tex, "pasted image");
  g_object_unref (self);
}

static void
action_paste (GtkWidget *w, const char *name, GVariant *param)
{
  GdkClipboard *cb = gtk_widget_get_clipboard (w);
  gdk_clipboard_read_texture_async (cb, NULL, on_paste_texture, g_object_ref (w));
}

static gboolean
on_drop (GtkDropTarget *target, const GValue *value, double x, double y, DsWindow *self)
{
  if (G_VALUE_HOLDS (value, GDK_TYPE_FILE_LIST))
    {
      GSList *files = g_value_get_boxed (value);
      for (int i = 0; files && i < 2; files = files->next, i++)
        ds_window_open_image (self, files->data, i == 1);
      return TRUE;
    }
  if (G_VALUE_HOLDS (value, G_TYPE_FILE))
    {
      ds_window_open_image (self, g_value_get_object (value), FALSE);
      return TRUE;
    }
  if (G_VALUE_HOLDS (value, GDK_TYPE_TEXTURE))
    {
      take_texture (self, g_value_get_object (value), "dropped image");
      return TRUE;
    }
  return FALSE;
}

/* ---- exports ----------------------------------------------------------------------------- */

gboolean
ds_window_save_screenshot (DsWindow *self, const char *path, GError **error)
{
  GtkWidget *w = GTK_WIDGET (self);
  int width = gtk_widget_get_width (w), height = gtk_widget_get_height (w);
  GskRenderer *r = gtk_native_get_renderer (GTK_NATIVE (self));
  if (!r || width <= 0 || height <= 0)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED, "the window is not shown");
      return FALSE;
    }
  /* The window's own snapshot, now (a GtkWidgetPaintable would give the last
   * frame's render node, which may be missing or older than the view). */
  GtkSnapshot *snap = gtk_snapshot_new ();
  GTK_WIDGET_GET_CLASS (w)->snapshot (w, snap);
  g_autoptr (GskRenderNode) node = gtk_snapshot_free_to_node (snap);
  if (!node)
    {
      g_set_error_literal (error, G_IO_ERROR, G_IO_ERROR_FAILED, "the window drew nothing");
      return FALSE;
    }
  g_autoptr (GdkTexture) tex = gsk_renderer_render_texture (
      r, node, &GRAPHENE_RECT_INIT (0, 0, width, height));
  g_autoptr (GBytes) png = gdk_texture_save_to_png_bytes (tex);
  if (!g_file_set_contents (path, g_bytes_get_data (png, NULL), (gssize) g_bytes_get_size (png),
                            error)) /* temporary file + rename */
    return FALSE;
  /* Beside it, where the picture and the maps are (window pixels), so a test
   * can check what each region shows. */
  graphene_rect_t pic = GRAPHENE_RECT_INIT (0, 0, 0, 0), grid = pic;
  if (ds_image_view_get_picture_rect (self->image_view, &pic))
    {
      graphene_point_t o;
      if (gtk_widget_compute_point (GTK_WIDGET (self->image_view), w,
                                    &GRAPHENE_POINT_INIT (pic.origin.x, pic.origin.y), &o))
        pic.origin = o;
    }
  if (!gtk_widget_compute_bounds (GTK_WIDGET (self->map_grid), w, &grid))
    grid = GRAPHENE_RECT_INIT (0, 0, 0, 0);
  g_autofree char *json = g_strdup_printf (
      "{\"width\": %d, \"height\": %d,\n \"picture\": [%.0f, %.0f, %.0f, %.0f],\n"
      " \"maps\": [%.0f, %.0f, %.0f, %.0f],\n \"overlay\": %s, \"blocks\": %d}\n",
      width, height, pic.origin.x, pic.origin.y, pic.size.width, pic.size.height,
      grid.origin.x, grid.origin.y, grid.size.width, grid.size.height,
      ds_image_view_get_overlay (self->image_view) ? "true" : "false",
      self->view ? self->view->n_blocks : 0);
  g_autofree char *json_path = g_strconcat (path, ".json", NULL);
  return g_file_set_contents (json_path, json, -1, error);
}

/* The picture with its overlay as the model sees it (stretched to the input
 * size's aspect is not applied: the original image size is kept). */
gboolean
ds_window_export_png (DsWindow *self, const char *path, GError **error)
{
  DsSharedImage *im = self->params.image;
  if (!im)
    {
      g_set_error_literal (error, DS_EXPLORE_ERROR, DS_ERR_INVALID, "no image is open");
      return FALSE;
    }
  const int w = im->image.width, h = im->image.height;
  g_autofree guint8 *out = g_memdup2 (im->image.rgb, (gsize) w * h * 3);
  DsError err = { 0 };
  const DsPixels *ov = self->view ? &self->view->overlay[0] : NULL;
  if (ov && ov->rgba)
    {
      g_autofree guint8 *big = g_malloc ((gsize) w * h * 4);
      double opacity = gtk_range_get_value (GTK_RANGE (self->opacity_scale));
      if (ds_render_resize_nearest (ov->rgba, ov->w, ov->h, 4, w, h, big, &err)
          || ds_render_overlay (out, big, w, h, (float) opacity, out, &err))
        {
          ds_explore_set_error (error, &err);
          return FALSE;
        }
    }
  if (ds_png_write (path, out, w, h, 3, &err))
    {
      ds_explore_set_error (error, &err);
      return FALSE;
    }
  return TRUE;
}

typedef struct {
  Slot *slot;
  DsExploreParams *p;
  char *path;
} ExportData;

static void
export_data_free (gpointer data)
{
  ExportData *d = data;
  ds_explore_params_free (d->p);
  g_free (d->path);
  g_free (d);
}

static gpointer
export_func (gpointer data, const atomic_int *cancel, DsWorker *worker, GError **error)
{
  ExportData *d = data;
  if (!d->slot->x)
    {
      g_set_error_literal (error, DS_EXPLORE_ERROR, DS_ERR_INVALID, "no model is open");
      return NULL;
    }
  if (!ds_explore_export_features (d->slot->x, d->p, d->path, cancel, error))
    return NULL;
  return g_strdup (d->path);
}

static void
export_done (gpointer result, const GError *error, gpointer user_data)
{
  DsWindow *self = user_data;
  if (error)
    show_error (self, "Could not export the features", error);
  else
    {
      g_autofree char *msg = g_strdup_printf ("Wrote %s", (const char *) result);
      gtk_label_set_text (self->status_label, msg);
    }
}

void
ds_window_export_features (DsWindow *self, const char *path)
{
  read_params (self);
  ExportData *d = g_new0 (ExportData, 1);
  d->slot = self->slot;
  d->p = ds_explore_params_copy (&self->params);
  d->path = g_strdup (path);
  DsJob job = { .kind = JOB_EXPORT, .func = export_func, .data = d,
                .data_free = export_data_free, .done = export_done, .user_data = self,
                .result_free = g_free };
  ds_worker_post (self->worker, &job);
}

typedef struct {
  DsWindow *self;
  gboolean features;
} SaveTarget;

static void
on_save_response (GtkNativeDialog *dialog, int response, gpointer user_data)
{
  SaveTarget *t = user_data;
  DsWindow *self = t->self;
  g_autoptr (GFile) file = response == GTK_RESPONSE_ACCEPT
                               ? gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog))
                               : NULL;
  g_autofree char *path = file ? g_file_get_path (file) : NULL;
  if (path && t->features)
    ds_window_export_features (self, path);
  else if (path)
    {
      g_autoptr (GError) error = NULL;
      if (!ds_window_export_png (self, path, &error))
        show_error (self, "Could not export the view", error);
      else
        {
          g_autofree char *msg = g_strdup_printf ("Wrote %s", path);
          gtk_label_set_text (self->status_label, msg);
        }
    }
  g_object_unref (dialog);
  g_free (t);
}

static void
choose_save (DsWindow *self, gboolean features)
{
  GtkFileChooserNative *fc = gtk_file_chooser_native_new (
      features ? "Export Features" : "Export View as PNG", GTK_WINDOW (self),
      GTK_FILE_CHOOSER_ACTION_SAVE, "_Save", "_Cancel");
  gtk_file_chooser_set_current_name (GTK_FILE_CHOOSER (fc),
                                     features ? "features.safetensors" : "view.png");
  SaveTarget *t = g_new0 (SaveTarget, 1);
  t->self = self;
  t->features = features;
  g_signal_connect (fc, "response", G_CALLBACK (on_save_response), t);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (fc));
}

static void
action_export_png (GtkWidget *w, const char *name, GVariant *param)
{
  choose_save (DS_WINDOW (w), FALSE);
}

static void
action_export_features (GtkWidget *w, const char *name, GVariant *param)
{
  choose_save (DS_WINDOW (w), TRUE);
}

/* ---- answers (LLaVA) ------------------------------------------------------------- */

#define ANSWER_PLACEHOLDER_NO_MODEL                                                            \
  "Answers come from LLaVA-1.5: give a llava-hf folder (llava-1.5-7b-hf) with --llava DIR "  \
  "or Open LLaVA Folder… in the menu, type a question and press Enter. The fused answer "     \
  "(CLIP and diffusion features) needs a trained fusion checkpoint (--fusion CKPT); none "    \
  "is published yet."

/* What a column of the pane answers: a question, CLIP-only or fused. */
typedef struct {
  char *question; /* NULL: the column stays empty */
  gboolean fused;
} AnswerColumn;

typedef struct {
  AnswerSlot *slot;
  char *dir;
  char *device; /* the preferences' device */
  DsSharedImage *image;
  AnswerColumn col[2];
  char *fusion_dir; /* with a fused column: the checkpoint, and the SD model (NULL: built-in) */
  char *sd_dir;
} AnswerData;

static void
answer_data_free (gpointer data)
{
  AnswerData *d = data;
  g_free (d->dir);
  g_free (d->device);
  ds_shared_image_unref (d->image);
  g_free (d->col[0].question);
  g_free (d->col[1].question);
  g_free (d->fusion_dir);
  g_free (d->sd_dir);
  g_free (d);
}

/* Everything the slot holds, the backend last (not what it learnt: gpu_lost). */
static void
answer_slot_clear (AnswerSlot *a)
{
  g_clear_pointer (&a->sd, ds_session_free);
  g_clear_pointer (&a->fusion, ds_fusion_free);
  g_clear_pointer (&a->lv, ds_llava_free);
  g_clear_pointer (&a->be, ds_backend_free);
  g_clear_pointer (&a->device, g_free);
  g_clear_pointer (&a->dir, g_free);
  g_clear_pointer (&a->fusion_dir, g_free);
  g_clear_pointer (&a->sd_dir, g_free);
}

static void
answer_slot_free (AnswerSlot *a)
{
  if (!a)
    return;
  answer_slot_clear (a);
  g_free (a);
}

/* The fusion checkpoint and the SD session of a fused answer, (re)opened when
 * their folders changed. */
static DsStatus
answer_open_fusion (AnswerSlot *a, const AnswerData *d, DsWorker *worker, DsError *err)
{
  if (!a->fusion || g_strcmp0 (a->fusion_dir, d->fusion_dir))
    {
      ds_fusion_free (a->fusion);
      a->fusion = NULL;
      g_clear_pointer (&a->fusion_dir, g_free);
      DsStatus st = ds_fusion_open (d->fusion_dir, a->be, &a->fusion, err);
      if (st)
        return st;
      a->fusion_dir = g_strdup (d->fusion_dir);
    }
  const char *sd_dir = d->sd_dir ? d->sd_dir : "";
  if (!a->sd || g_strcmp0 (a->sd_dir, sd_dir))
    {
      ds_session_free (a->sd);
      a->sd = NULL;
      g_clear_pointer (&a->sd_dir, g_free);
      ds_worker_progress (worker, "loading the SD model for the fused answer", 0, 1);
      DsPipeline *p = NULL;
      DsStatus st = d->sd_dir ? ds_pipeline_open (d->sd_dir, a->be, &p, err)
                              : ds_pipeline_open_builtin (ds_data_dir (), a->be, &p, err);
      if (st == DS_OK)
        st = ds_session_new (p, NULL, &a->sd, err); /* takes p, also on failure */
      if (st)
        return st;
      a->sd_dir = g_strdup (sd_dir);
    }
  return ds_llava_fusion_check (a->lv, a->sd, a->fusion, err);
}

/* A piece of an answer on its way to the main thread: text[0] is the column. */
static void
answer_piece (gpointer data, gpointer user_data)
{
  DsWindow *self = user_data;
  const char *piece = data;
  ds_answer_view_append (self->answer_view, piece[0], piece + 1);
}

typedef struct {
  DsWorker *worker;
  char column;
} AnswerStream;

static void
on_answer_text (const char *text, int32_t id, void *user)
{
  AnswerStream *as = user;
  ds_worker_emit (as->worker, answer_piece, g_strdup_printf ("%c%s", as->column, text), g_free);
}

static gpointer
answer_func (gpointer data, const atomic_int *cancel, DsWorker *worker, GError **error)
{
  AnswerData *d = data;
  AnswerSlot *a = d->slot;
  DsError err = { 0 };
  /* The device the preferences name (LLaVA in f16 on a GPU); a GPU lost to a
   * fault (be->lost) gives way to the CPU, as the explorer's does. */
  if (a->be && a->be->lost)
    {
      answer_slot_clear (a);
      a->gpu_lost = TRUE;
    }
  const char *device = a->gpu_lost ? "cpu" : d->device;
  if (a->be && g_strcmp0 (a->device, device))
    answer_slot_clear (a);
  if (!a->be)
    {
      char note[256];
      if (!(a->be = ds_device_open (device, NULL, note, sizeof note, &err)))
        {
          ds_explore_set_error (error, &err);
          return NULL;
        }
      a->device = g_strdup (device);
    }
  if (!a->lv || g_strcmp0 (a->dir, d->dir))
    {
      ds_llava_free (a->lv);
      a->lv = NULL;
      g_clear_pointer (&a->dir, g_free);
      ds_worker_progress (worker, "loading LLaVA", 0, 1);
      if (ds_llava_open (d->dir, a->be, &a->lv, &err))
        {
          ds_explore_set_error (error, &err);
          return NULL;
        }
      a->dir = g_strdup (d->dir);
    }
  DsStatus st = DS_OK;
  if ((d->col[0].fused || d->col[1].fused) && (st = answer_open_fusion (a, d, worker, &err)))
    {
      ds_explore_set_error (error, &err);
      return NULL;
    }
  /* column 0, then column 1 beside it (ds_window_ask chose what each answers) */
  for (int i = 0; i < 2 && d->col[i].question && !st; i++)
    {
      AnswerStream as = { worker, (char) i };
      DsLlavaParams p;
      ds_llava_params_default (&p);
      p.on_text = on_answer_text;
      p.user = &as;
      p.cancel = cancel;
      DsLlavaAnswer ans = { 0 };
      st = d->col[i].fused ? ds_llava_ask_fused (a->lv, a->sd, a->fusion, &d->image->image,
                                                 d->col[i].question, &p, &ans, &err)
                           : ds_llava_ask (a->lv, &d->image->image, d->col[i].question, &p,
                                           &ans, &err);
      ds_llava_answer_clear (&ans);
    }
  if (st)
    {
      ds_explore_set_error (error, &err);
      return NULL;
    }
  return g_strdup ("done");
}

static void
answer_done (gpointer result, const GError *error, gpointer user_data)
{
  DsWindow *self = user_data;
  ds_answer_view_set_streaming (self->answer_view, FALSE);
  self->n_answers++;
  if (error && !g_error_matches (error, DS_EXPLORE_ERROR, DS_ERR_CANCELLED))
    show_error (self, "Could not answer", error);
}

static void
on_answer_notify (const char *stage, int done, int total, gpointer user_data)
{
  on_worker_notify (stage, done, total, user_data);
}

/* Asks LLaVA the prompt about the image (when a LLaVA folder is set); the
 * answer streams into the answer pane, the Stop button ends it. */
void
ds_window_ask (DsWindow *self)
{
  const char *q = gtk_editable_get_text (GTK_EDITABLE (self->prompt_entry));
  if (!self->prefs->llava)
    {
      ds_answer_view_clear (self->answer_view);
      ds_answer_view_set_placeholder (self->answer_view, ANSWER_PLACEHOLDER_NO_MODEL);
      return;
    }
  if (!self->params.image || !q || !*q)
    return;
  AnswerData *d = g_new0 (AnswerData, 1);
  d->slot = self->answer_slot;
  d->dir = g_strdup (self->prefs->llava);
  d->device = g_strdup (self->prefs->device);
  d->image = ds_shared_image_ref (self->params.image);
  const gboolean fused = self->prefs->fusion && self->fusion.trained;
  if (fused)
    {
      d->fusion_dir = g_strdup (self->prefs->fusion);
      d->sd_dir = g_strdup (self->prefs->last_model);
    }
  const char *q2 = gtk_editable_get_text (GTK_EDITABLE (self->prompt2_entry));
  g_autofree char *how = fused ? g_strdup_printf ("fused: %s, t %d, s %g", self->fusion.probe,
                                                  self->fusion.t, self->fusion.s)
                               : g_strdup ("CLIP only");
  if (q2 && *q2)
    {
      /* side by side: the prompt's answer and the mismatched prompt's (both
       * fused when a trained checkpoint is set: the diffusion features are
       * conditioned on each prompt, which is what a leakage check compares) */
      d->col[0] = (AnswerColumn){ g_strdup (q), fused };
      d->col[1] = (AnswerColumn){ g_strdup (q2), fused };
      g_autofree char *c0 = g_strdup_printf ("“%s” · %s", q, how);
      g_autofree char *c1 = g_strdup_printf ("“%s” (mismatched) · %s", q2, how);
      ds_answer_view_set_captions (self->answer_view, c0, c1);
    }
  else if (fused)
    {
      /* the same question, CLIP only and fused */
      d->col[0] = (AnswerColumn){ g_strdup (q), FALSE };
      d->col[1] = (AnswerColumn){ g_strdup (q), TRUE };
      ds_answer_view_set_captions (self->answer_view, "CLIP only", how);
    }
  else
    d->col[0] = (AnswerColumn){ g_strdup (q), FALSE };
  ds_answer_view_clear (self->answer_view);
  ds_answer_view_set_streaming (self->answer_view, TRUE);
  DsJob job = { .kind = ANSWER_JOB, .func = answer_func, .data = d,
                .data_free = answer_data_free, .done = answer_done, .user_data = self,
                .result_free = g_free };
  ds_worker_post (self->answer_worker, &job);
}

static void
update_answer_placeholder (DsWindow *self)
{
  g_autofree char *text = NULL;
  if (!self->prefs->llava)
    text = g_strdup (ANSWER_PLACEHOLDER_NO_MODEL);
  else if (!self->prefs->fusion)
    text = g_strdup ("Press Enter in the question to ask LLaVA-1.5 (CLIP only: a fused answer "
                     "needs a trained fusion checkpoint, --fusion CKPT; none is published "
                     "yet).");
  else if (!self->fusion.trained)
    text = g_strdup_printf ("Press Enter in the question to ask LLaVA-1.5. CLIP only: the "
                            "fusion checkpoint %s says \"trained\": false, so what it would "
                            "say is no answer and is not shown.",
                            self->prefs->fusion);
  else
    text = g_strdup_printf ("Press Enter in the question to ask LLaVA-1.5: the CLIP-only "
                            "answer and, beside it, the one fused with %s of the open model "
                            "(t %d, s %g).",
                            self->fusion.probe, self->fusion.t, self->fusion.s);
  ds_answer_view_set_placeholder (self->answer_view, text);
}

/* prefs->fusion's config.json into self->fusion; FALSE with error set when it
 * cannot be read or parsed. */
static gboolean
load_fusion_config (DsWindow *self, GError **error)
{
  memset (&self->fusion, 0, sizeof self->fusion);
  if (!self->prefs->fusion)
    return TRUE;
  g_autofree char *path = g_build_filename (self->prefs->fusion, "config.json", NULL);
  g_autofree char *text = NULL;
  if (!g_file_get_contents (path, &text, NULL, error))
    return FALSE;
  DsError err = { 0 };
  if (ds_fusion_config_parse (text, path, &self->fusion, &err))
    {
      ds_explore_set_error (error, &err);
      memset (&self->fusion, 0, sizeof self->fusion);
      return FALSE;
    }
  return TRUE;
}

void
ds_window_set_fusion (DsWindow *self, const char *dir)
{
  g_free (self->prefs->fusion);
  self->prefs->fusion = dir && *dir ? g_strdup (dir) : NULL;
  GError *error = NULL;
  if (!load_fusion_config (self, &error))
    {
      show_error (self, "Could not read the fusion checkpoint", error);
      g_error_free (error);
      g_clear_pointer (&self->prefs->fusion, g_free);
    }
  ds_prefs_save (self->prefs, NULL);
  update_answer_placeholder (self);
}

void
ds_window_set_llava (DsWindow *self, const char *dir)
{
  g_free (self->prefs->llava);
  self->prefs->llava = dir && *dir ? g_strdup (dir) : NULL;
  ds_prefs_save (self->prefs, NULL);
  update_answer_placeholder (self);
}

guint
ds_window_get_n_answers (DsWindow *self)
{
  return self->n_answers;
}

static void
on_answer_stop (DsAnswerView *view, DsWindow *self)
{
  ds_worker_cancel (self->answer_worker, ANSWER_JOB);
  if (!ds_worker_busy (self->answer_worker))
    ds_answer_view_set_streaming (view, FALSE); /* it was only queued: no done comes */
}

/* The folders the answer pane reads, chosen in a dialog: the LLaVA model or
 * the fusion checkpoint ("fusion" set on the dialog). */
static void
on_answer_folder_response (GtkNativeDialog *dialog, int response, gpointer user_data)
{
  DsWindow *self = user_data;
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr (GFile) file = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
      g_autofree char *path = file ? g_file_get_path (file) : NULL;
      if (path && g_object_get_data (G_OBJECT (dialog), "fusion"))
        ds_window_set_fusion (self, path);
      else if (path)
        ds_window_set_llava (self, path);
    }
  g_object_unref (dialog);
}

static void
choose_answer_folder (GtkWidget *w, gboolean fusion)
{
  GtkFileChooserNative *fc = gtk_file_chooser_native_new (
      fusion ? "Open a Fusion Checkpoint (config.json, fusion.safetensors)"
             : "Open a LLaVA-1.5 Folder (llava-hf layout)",
      GTK_WINDOW (w), GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER, "_Open", "_Cancel");
  g_object_set_data (G_OBJECT (fc), "fusion", GINT_TO_POINTER (fusion));
  g_signal_connect (fc, "response", G_CALLBACK (on_answer_folder_response), w);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (fc));
}

static void
action_open_llava (GtkWidget *w, const char *name, GVariant *param)
{
  choose_answer_folder (w, FALSE);
}

static void
action_open_fusion (GtkWidget *w, const char *name, GVariant *param)
{
  choose_answer_folder (w, TRUE);
}

static void
action_ask (GtkWidget *w, const char *name, GVariant *param)
{
  ds_window_ask (DS_WINDOW (w));
}

/* ---- small actions ------------------------------------------------------------------------- */

static void
action_focus_prompt (GtkWidget *w, const char *name, GVariant *param)
{
  gtk_widget_grab_focus (GTK_WIDGET (DS_WINDOW (w)->prompt_entry));
}

static void
action_zoom (GtkWidget *w, const char *name, GVariant *param)
{
  DsWindow *self = DS_WINDOW (w);
  DsImageView *views[2] = { self->image_view, self->image_view2 };
  for (int i = 0; i < 2; i++)
    {
      if (!g_strcmp0 (name, "win.zoom-in"))
        ds_image_view_zoom_in (views[i]);
      else if (!g_strcmp0 (name, "win.zoom-out"))
        ds_image_view_zoom_out (views[i]);
      else
        ds_image_view_set_zoom (views[i], 1.0);
    }
}

static void
action_toggle (GtkWidget *w, const char *name, GVariant *param)
{
  DsWindow *self = DS_WINDOW (w);
  GtkCheckButton *b = !g_strcmp0 (name, "win.ensemble") ? self->ensemble_check
                                                        : self->special_check;
  gtk_check_button_set_active (b, !gtk_check_button_get_active (b));
}

/* ---- control signals --------------------------------------------------------------------- */

static void
on_control_changed (DsWindow *self)
{
  schedule_update (self);
}

static void
on_s_changed (DsWindow *self)
{
  ds_cka_plot_set_marker (self->cka_plot, gtk_range_get_value (GTK_RANGE (self->s_scale)));
  schedule_update (self);
}

static gboolean
prompt_timeout (gpointer data)
{
  DsWindow *self = data;
  self->prompt_timeout = 0;
  schedule_update (self);
  return G_SOURCE_REMOVE;
}

/* Typing waits for a pause (250 ms) before the text encoder and UNet run;
 * Enter runs at once. */
static void
on_prompt_changed (DsWindow *self)
{
  if (self->applying)
    return;
  g_clear_handle_id (&self->prompt_timeout, g_source_remove);
  self->prompt_timeout = g_timeout_add (250, prompt_timeout, self);
}

static void
on_prompt_activate (DsWindow *self)
{
  g_clear_handle_id (&self->prompt_timeout, g_source_remove);
  schedule_update (self);
  if (self->prefs->llava)
    ds_window_ask (self);
}

static void
on_word_selected (DsWindow *self, int index, DsTokenStrip *strip)
{
  if (self->applying)
    return;
  int k = strip == self->token_strip ? 0 : 1;
  const DsTokenItem *it = index >= 0 ? ds_token_strip_get_item (strip, index) : NULL;
  self->params.word[k] = it ? it->first : -1;
  self->params.word_count[k] = it ? it->count : 0;
  if (it)
    self->params.overlay = DS_OVERLAY_WORD;
  else if (self->params.overlay == DS_OVERLAY_WORD && self->params.word[1 - k] < 0)
    self->params.overlay = DS_OVERLAY_NONE;
  schedule_update (self);
}

static void
on_word_selected0 (DsTokenStrip *strip, int index, DsWindow *self)
{
  on_word_selected (self, index, strip);
}

static void
on_special_toggled (DsWindow *self)
{
  gboolean show = gtk_check_button_get_active (self->special_check);
  ds_token_strip_set_show_special (self->token_strip, show);
  ds_token_strip_set_show_special (self->token_strip2, show);
}

static void
on_tile_activated (DsMapGrid *grid, int row, int col, DsWindow *self)
{
  if (grid != self->map_grid)
    return;
  self->params.overlay = DS_OVERLAY_TILE;
  self->params.tile_row = row;
  self->params.tile_col = col;
  schedule_update (self);
}

static void
on_point_picked (DsImageView *view, double u, double v, DsWindow *self)
{
  self->params.point = TRUE;
  self->params.point_u = u;
  self->params.point_v = v;
  self->params.overlay = DS_OVERLAY_POINT;
  ds_image_view_set_marker (view, TRUE, u, v);
  schedule_update (self);
}

static void
on_hover (DsImageView *view, double u, double v, double value, gboolean inside, DsWindow *self)
{
  if (!inside)
    {
      gtk_label_set_text (self->hover_label, "");
      return;
    }
  g_autofree char *text = isnan (value)
                              ? g_strdup_printf ("x %.2f  y %.2f", u, v)
                              : g_strdup_printf ("x %.2f  y %.2f  value %.3g", u, v, value);
  gtk_label_set_text (self->hover_label, text);
}

static void
on_opacity_changed (DsWindow *self)
{
  double o = gtk_range_get_value (GTK_RANGE (self->opacity_scale));
  ds_image_view_set_overlay_opacity (self->image_view, o);
  ds_image_view_set_overlay_opacity (self->image_view2, o);
  self->prefs->opacity = o;
}

static void
on_cmap_changed (DsWindow *self)
{
  guint c = gtk_drop_down_get_selected (self->cmap_dropdown);
  if (c < G_N_ELEMENTS (colormaps))
    {
      g_free (self->prefs->colormap);
      self->prefs->colormap = g_strdup (colormaps[c]);
    }
  schedule_update (self);
}

static void
on_blocks_changed (DsBlockPicker *picker, DsWindow *self)
{
  if (self->applying)
    return;
  char **sel = ds_block_picker_get_selected (picker);
  if (!sel || !sel[0])
    {
      g_strfreev (sel);
      return; /* keep at least one block */
    }
  g_strfreev (self->params.blocks);
  self->params.blocks = sel;
  if (self->params.overlay == DS_OVERLAY_TILE)
    self->params.overlay = DS_OVERLAY_NONE;
  schedule_update (self);
}

/* ---- lifecycle ------------------------------------------------------------------------------ */

static void
ds_window_dispose (GObject *object)
{
  DsWindow *self = DS_WINDOW (object);
  g_clear_handle_id (&self->prompt_timeout, g_source_remove);
  g_clear_handle_id (&self->screenshot_idle, g_source_remove);
  disconnect_after_paint (self);
  g_clear_pointer (&self->worker, ds_worker_free);
  g_clear_pointer (&self->answer_worker, ds_worker_free);
  g_clear_pointer (&self->answer_slot, answer_slot_free);
  if (self->slot)
    {
      ds_explorer_free (self->slot->x);
      g_clear_pointer (&self->slot, g_free);
    }
  if (self->prefs)
    ds_prefs_save (self->prefs, NULL);
  g_clear_pointer (&self->prefs, ds_prefs_free);
  g_clear_pointer (&self->view, ds_explore_view_free);
  ds_explore_params_clear (&self->params);
  g_clear_pointer (&self->model_text, g_free);
  g_clear_pointer (&self->error, g_free);
  g_clear_pointer (&self->screenshot_path, g_free);
  gtk_widget_dispose_template (GTK_WIDGET (self), DS_TYPE_WINDOW);
  G_OBJECT_CLASS (ds_window_parent_class)->dispose (object);
}

#define CHILD(name) gtk_widget_class_bind_template_child (wc, DsWindow, name)

static void
ds_window_class_init (DsWindowClass *klass)
{
  GObjectClass *oc = G_OBJECT_CLASS (klass);
  GtkWidgetClass *wc = GTK_WIDGET_CLASS (klass);
  oc->dispose = ds_window_dispose;
  g_type_ensure (DS_TYPE_IMAGE_VIEW);
  g_type_ensure (DS_TYPE_MAP_GRID);
  g_type_ensure (DS_TYPE_TOKEN_STRIP);
  g_type_ensure (DS_TYPE_BLOCK_PICKER);
  g_type_ensure (DS_TYPE_CKA_PLOT);
  g_type_ensure (DS_TYPE_ANSWER_VIEW);
  gtk_widget_class_set_template_from_resource (wc, "/org/diffscope/Diffscope/ds-window.ui");
  CHILD (model_label);
  CHILD (blocks_button);
  CHILD (block_picker);
  CHILD (info_bar);
  CHILD (info_label);
  CHILD (stack);
  CHILD (empty_label);
  CHILD (builtin_button);
  CHILD (image_view);
  CHILD (image_view2);
  CHILD (image2_scroll);
  CHILD (image2_label);
  CHILD (opacity_scale);
  CHILD (cmap_dropdown);
  CHILD (overlay_label);
  CHILD (token_strip);
  CHILD (token_strip2);
  CHILD (token_label2);
  CHILD (map_grid);
  CHILD (map_grid2);
  CHILD (grid2_label);
  CHILD (pair_box);
  CHILD (pair_a);
  CHILD (pair_b);
  CHILD (pair_label);
  CHILD (prompt_entry);
  CHILD (prompt2_entry);
  CHILD (prompt_notice);
  CHILD (t_scale);
  CHILD (s_scale);
  CHILD (seed_spin);
  CHILD (trials_spin);
  CHILD (ensemble_check);
  CHILD (special_check);
  CHILD (cka_plot);
  CHILD (answer_view);
  CHILD (status_label);
  CHILD (hover_label);
  CHILD (progress_bar);

  gtk_widget_class_install_action (wc, "win.open", NULL, action_open);
  gtk_widget_class_install_action (wc, "win.open-second", NULL, action_open_second);
  gtk_widget_class_install_action (wc, "win.close-second", NULL, action_close_second);
  gtk_widget_class_install_action (wc, "win.open-model", NULL, action_open_model);
  gtk_widget_class_install_action (wc, "win.use-builtin", NULL, action_use_builtin);
  gtk_widget_class_install_action (wc, "win.paste", NULL, action_paste);
  gtk_widget_class_install_action (wc, "win.export-png", NULL, action_export_png);
  gtk_widget_class_install_action (wc, "win.export-features", NULL, action_export_features);
  gtk_widget_class_install_action (wc, "win.focus-prompt", NULL, action_focus_prompt);
  gtk_widget_class_install_action (wc, "win.zoom-in", NULL, action_zoom);
  gtk_widget_class_install_action (wc, "win.zoom-out", NULL, action_zoom);
  gtk_widget_class_install_action (wc, "win.zoom-reset", NULL, action_zoom);
  gtk_widget_class_install_action (wc, "win.ensemble", NULL, action_toggle);
  gtk_widget_class_install_action (wc, "win.show-special", NULL, action_toggle);
  gtk_widget_class_install_action (wc, "win.ask", NULL, action_ask);
  gtk_widget_class_install_action (wc, "win.open-llava", NULL, action_open_llava);
  gtk_widget_class_install_action (wc, "win.open-fusion", NULL, action_open_fusion);
}

static void
ds_window_init (DsWindow *self)
{
  gtk_widget_init_template (GTK_WIDGET (self));
  self->prefs = ds_prefs_load ();
  self->slot = g_new0 (Slot, 1);
  self->worker = ds_worker_new (on_worker_notify, self);
  self->answer_slot = g_new0 (AnswerSlot, 1);
  self->answer_worker = ds_worker_new (on_answer_notify, self);
  self->params.word[0] = self->params.word[1] = -1;
  self->params.tile_row = self->params.tile_col = -1;
  self->params.t = 100;
  self->params.s = 7.5;
  self->params.trials = 1;
  self->word_when_ready = -1;

  gtk_label_set_markup (
      self->empty_label,
      "Diffscope needs Stable Diffusion 2.1-base in the diffusers layout: a folder with "
      "<tt>model_index.json</tt>, <tt>unet/</tt>, <tt>vae/</tt>, <tt>text_encoder/</tt>, "
      "<tt>tokenizer/</tt> and <tt>scheduler/</tt>, weights as <tt>.safetensors</tt>. "
      "For example:\n\n<tt>huggingface-cli download stabilityai/stable-diffusion-2-1-base "
      "--include \"*.json\" \"*.txt\" \"*.safetensors\" --local-dir sd21</tt>\n\n"
      "then open that folder, or start with <tt>diffscope --model sd21</tt>. "
      "The built-in model runs anywhere: a toy shapes model, trained on synthetic scenes of "
      "red, green, blue and yellow circles, squares and triangles, so it knows only those "
      "words.");

  for (guint i = 0; i < G_N_ELEMENTS (colormaps); i++)
    if (!g_strcmp0 (colormaps[i], self->prefs->colormap))
      gtk_drop_down_set_selected (self->cmap_dropdown, i);
  gtk_range_set_value (GTK_RANGE (self->opacity_scale), self->prefs->opacity);
  ds_image_view_set_overlay_opacity (self->image_view, self->prefs->opacity);
  ds_image_view_set_overlay_opacity (self->image_view2, self->prefs->opacity);
  GtkScale *t = self->t_scale;
  const int marks[] = { 10, 50, 100, 250, 500 };
  for (guint i = 0; i < G_N_ELEMENTS (marks); i++)
    {
      g_autofree char *m = g_strdup_printf ("%d", marks[i]);
      gtk_scale_add_mark (t, marks[i], GTK_POS_BOTTOM, i % 2 ? NULL : m);
    }
  GError *fusion_error = NULL;
  if (!load_fusion_config (self, &fusion_error))
    {
      /* a remembered checkpoint that is gone or broken is forgotten */
      g_message ("forgetting the fusion checkpoint %s: %s", self->prefs->fusion,
                 fusion_error->message);
      g_clear_error (&fusion_error);
      g_clear_pointer (&self->prefs->fusion, g_free);
    }
  update_answer_placeholder (self);
  g_signal_connect (self->answer_view, "stop", G_CALLBACK (on_answer_stop), self);
  gtk_stack_set_visible_child_name (self->stack, "empty");
  gtk_window_set_focus (GTK_WINDOW (self), self->builtin_button);
  gtk_widget_set_sensitive (GTK_WIDGET (self->blocks_button), FALSE);

  g_signal_connect (self->info_bar, "response", G_CALLBACK (on_info_response), self);
  g_signal_connect_swapped (self->t_scale, "value-changed", G_CALLBACK (on_control_changed), self);
  g_signal_connect_swapped (self->s_scale, "value-changed", G_CALLBACK (on_s_changed), self);
  g_signal_connect_swapped (self->seed_spin, "value-changed", G_CALLBACK (on_control_changed),
                            self);
  g_signal_connect_swapped (self->trials_spin, "value-changed",
                            G_CALLBACK (on_control_changed), self);
  g_signal_connect_swapped (self->ensemble_check, "toggled", G_CALLBACK (on_control_changed),
                            self);
  g_signal_connect_swapped (self->special_check, "toggled", G_CALLBACK (on_special_toggled),
                            self);
  g_signal_connect_swapped (self->prompt_entry, "changed", G_CALLBACK (on_prompt_changed), self);
  g_signal_connect_swapped (self->prompt2_entry, "changed", G_CALLBACK (on_prompt_changed),
                            self);
  g_signal_connect_swapped (self->prompt_entry, "activate", G_CALLBACK (on_prompt_activate),
                            self);
  g_signal_connect_swapped (self->prompt2_entry, "activate", G_CALLBACK (on_prompt_activate),
                            self);
  g_signal_connect (self->token_strip, "selection-changed", G_CALLBACK (on_word_selected0), self);
  g_signal_connect (self->token_strip2, "selection-changed", G_CALLBACK (on_word_selected0),
                    self);
  g_signal_connect (self->map_grid, "tile-activated", G_CALLBACK (on_tile_activated), self);
  g_signal_connect (self->image_view, "point-picked", G_CALLBACK (on_point_picked), self);
  g_signal_connect (self->image_view, "hover", G_CALLBACK (on_hover), self);
  g_signal_connect (self->image_view2, "hover", G_CALLBACK (on_hover), self);
  g_signal_connect_swapped (self->opacity_scale, "value-changed",
                            G_CALLBACK (on_opacity_changed), self);
  g_signal_connect_swapped (self->cmap_dropdown, "notify::selected", G_CALLBACK (on_cmap_changed),
                            self);
  g_signal_connect (self->block_picker, "changed", G_CALLBACK (on_blocks_changed), self);

  GtkDropTarget *drop = gtk_drop_target_new (G_TYPE_INVALID, GDK_ACTION_COPY);
  GType types[] = { GDK_TYPE_FILE_LIST, G_TYPE_FILE, GDK_TYPE_TEXTURE };
  gtk_drop_target_set_gtypes (drop, types, G_N_ELEMENTS (types));
  g_signal_connect (drop, "drop", G_CALLBACK (on_drop), self);
  gtk_widget_add_controller (GTK_WIDGET (self), GTK_EVENT_CONTROLLER (drop));
  update_status (self);
}

DsWindow *
ds_window_new (GtkApplication *app)
{
  return g_object_new (DS_TYPE_WINDOW, "application", app, NULL);
}

/* ---- for tests ---------------------------------------------------------------------------------- */

GtkWidget *
ds_window_get_child (DsWindow *self, const char *name)
{
  return GTK_WIDGET (gtk_widget_get_template_child (GTK_WIDGET (self), DS_TYPE_WINDOW, name));
}

DsWorker *
ds_window_get_worker (DsWindow *self)
{
  return self->worker;
}

const DsExploreView *
ds_window_get_view (DsWindow *self)
{
  return self->view;
}

guint
ds_window_get_n_views (DsWindow *self)
{
  return self->n_views;
}

guint64
ds_window_get_forwards (DsWindow *self)
{
  return self->forwards;
}

const char *
ds_window_get_error (DsWindow *self)
{
  return self->error;
}

gboolean
ds_window_has_model (DsWindow *self)
{
  return self->has_model;
}

void
ds_window_wait_idle (DsWindow *self)
{
  if (self->prompt_timeout)
    {
      g_clear_handle_id (&self->prompt_timeout, g_source_remove);
      schedule_update (self);
    }
  ds_worker_wait_idle (self->worker);
  ds_worker_wait_idle (self->answer_worker);
}
