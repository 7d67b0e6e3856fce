/* ds-window.h: the explorer window (template app/ds-window.ui).
 *
 * The window keeps the inputs a person sets (image, prompts, t, s, seed,
 * blocks, word, point, colormap) and posts them to its worker as jobs
 * (ds-worker.h); results come back on the main loop and become textures.
 * Models and images load on the worker too, so nothing blocks the main loop.
 */
#pragma once

#include <gtk/gtk.h>

#include "ds-explore.h"
#include "ds-worker.h"

G_BEGIN_DECLS

#define DS_TYPE_WINDOW (ds_window_get_type ())
G_DECLARE_FINAL_TYPE (DsWindow, ds_window, DS, WINDOW, GtkApplicationWindow)

DsWindow *ds_window_new (GtkApplication *app);

/* model_dir NULL: the built-in demo model. device: "auto", "cpu", "cuda" or
 * NULL (the preference). */
void ds_window_open_model (DsWindow *self, const char *model_dir);
/* Loads an image file on the worker; second: the pair view's image. */
void ds_window_open_image (DsWindow *self, GFile *file, gboolean second);
void ds_window_set_prompt (DsWindow *self, const char *prompt);
/* Selects the token strip's item `index` of prompt 0 once words are shown
 * (-1: none); for scripted runs (--word). */
void ds_window_select_word_when_ready (DsWindow *self, int index);
/* Once the first maps with an overlay are on screen, saves the window as PNG
 * and closes it (--screenshot). */
void ds_window_screenshot_when_ready (DsWindow *self, const char *path);
/* Renders the window as it is now into a PNG file. */
gboolean ds_window_save_screenshot (DsWindow *self, const char *path, GError **error);

/* The picture with its overlay as PNG (atomic), as the menu's Export View. */
gboolean ds_window_export_png (DsWindow *self, const char *path, GError **error);
/* The current features as safetensors, written on the worker (atomic), as
 * the menu's Export Features; the result shows in the status line or the
 * error bar. */
void ds_window_export_features (DsWindow *self, const char *path);

/* The LLaVA-1.5 folder (llava-hf layout) whose answers fill the answer pane
 * (kept in the preferences; NULL: none). */
void ds_window_set_llava (DsWindow *self, const char *dir);
/* The fusion checkpoint (docs/models.md §7.9) whose fused answer stands
 * beside the CLIP-only one (with a mismatched prompt: both prompts' fused
 * answers), run on the open model's features; NULL: none. Its config.json is
 * read now: one that cannot be read is an error shown in the window, and one
 * that says "trained": false only gets the CLIP-only answer, with the pane
 * saying why. Remembered in the preferences. */
void ds_window_set_fusion (DsWindow *self, const char *dir);
/* Asks LLaVA the prompt about the image; the answer streams into the pane
 * (Enter in the prompt does the same when a LLaVA folder is set). */
void ds_window_ask (DsWindow *self);
/* Answers finished or stopped so far. */
guint ds_window_get_n_answers (DsWindow *self);

/* For tests and the benchmark: the named template child ("prompt_entry",
 * "t_scale", "s_scale", "token_strip", "image_view", "map_grid", …). */
GtkWidget *ds_window_get_child (DsWindow *self, const char *name);
DsWorker *ds_window_get_worker (DsWindow *self);
/* The view on screen (transfer none; NULL before the first). */
const DsExploreView *ds_window_get_view (DsWindow *self);
/* Views delivered so far, and the UNet forwards run since the model opened. */
guint ds_window_get_n_views (DsWindow *self);
guint64 ds_window_get_forwards (DsWindow *self);
/* The message of the error bar, or NULL when it is hidden. */
const char *ds_window_get_error (DsWindow *self);
gboolean ds_window_has_model (DsWindow *self);
/* Waits (iterating the main loop) until the worker is idle. */
void ds_window_wait_idle (DsWindow *self);

G_END_DECLS
