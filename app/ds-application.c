/* ds-application.c: see ds-application.h.
 *
 *   diffscope [--demo | --model DIR] [--device auto|cpu|cuda] [--prompt TEXT]
 *             [--mismatched TEXT] [IMAGE [IMAGE2]]
 *
 * --demo is the built-in model (a toy shapes model, trained on synthetic
 * scenes). With neither --demo nor --model, the last model folder opened is
 * used; with none remembered, the built-in model. When a model cannot be
 * opened, the window says why and how to get SD 2.1-base, and offers the
 * built-in model. --prompt, --t, --word and --screenshot
 * script a run (the end-to-end test and the README's screenshot use them).
 */
#include "ds-application.h"

#include "ds-prefs.h"
#include "ds-window.h"

#ifndef DS_APP_ID
#define DS_APP_ID "org.diffscope.Diffscope"
#endif
#ifndef DS_VERSION
#define DS_VERSION "0"
#endif

struct _DsApplication {
  GtkApplication parent_instance;
  gboolean demo;
  char *model, *device, *prompt, *mismatched, *screenshot, *llava, *fusion;
  int t, word;
};

G_DEFINE_FINAL_TYPE (DsApplication, ds_application, GTK_TYPE_APPLICATION)

static DsWindow *
new_window (DsApplication *self)
{
  DsWindow *win = ds_window_new (GTK_APPLICATION (self));
  if (self->prompt)
    ds_window_set_prompt (win, self->prompt);
  if (self->llava)
    ds_window_set_llava (win, self->llava);
  if (self->fusion)
    ds_window_set_fusion (win, self->fusion);
  if (self->mismatched)
    gtk_editable_set_text (GTK_EDITABLE (ds_window_get_child (win, "prompt2_entry")),
                           self->mismatched);
  if (self->t >= 0)
    gtk_range_set_value (GTK_RANGE (ds_window_get_child (win, "t_scale")), self->t);
  if (self->word >= 0)
    ds_window_select_word_when_ready (win, self->word);
  if (self->screenshot)
    ds_window_screenshot_when_ready (win, self->screenshot);
  g_autoptr (DsPrefs) prefs = ds_prefs_load ();
  if (self->demo)
    ds_window_open_model (win, NULL);
  else if (self->model)
    ds_window_open_model (win, self->model);
  else if (prefs->last_model && g_file_test (prefs->last_model, G_FILE_TEST_IS_DIR))
    ds_window_open_model (win, prefs->last_model);
  else
    ds_window_open_model (win, NULL);
  gtk_window_present (GTK_WINDOW (win));
  return win;
}

static void
ds_application_activate (GApplication *app)
{
  new_window (DS_APPLICATION (app));
}

static void
ds_application_open (GApplication *app, GFile **files, int n_files, const char *hint)
{
  DsWindow *win = new_window (DS_APPLICATION (app));
  for (int i = 0; i < n_files && i < 2; i++)
    ds_window_open_image (win, files[i], i == 1);
}

static int
ds_application_handle_local_options (GApplication *app, GVariantDict *opts)
{
  DsApplication *self = DS_APPLICATION (app);
  if (g_variant_dict_contains (opts, "version"))
    {
      g_print ("diffscope %s\n", DS_VERSION);
      return 0;
    }
  g_variant_dict_lookup (opts, "demo", "b", &self->demo);
  g_variant_dict_lookup (opts, "model", "^ay", &self->model);
  g_variant_dict_lookup (opts, "device", "s", &self->device);
  g_variant_dict_lookup (opts, "prompt", "s", &self->prompt);
  g_variant_dict_lookup (opts, "mismatched", "s", &self->mismatched);
  g_variant_dict_lookup (opts, "llava", "^ay", &self->llava);
  g_variant_dict_lookup (opts, "fusion", "^ay", &self->fusion);
  g_variant_dict_lookup (opts, "screenshot", "^ay", &self->screenshot);
  g_variant_dict_lookup (opts, "t", "i", &self->t);
  g_variant_dict_lookup (opts, "word", "i", &self->word);
  if (self->demo && self->model)
    {
      g_printerr ("diffscope: --demo and --model exclude each other\n");
      return 2;
    }
  if (self->t < -1 || self->t > 999)
    {
      g_printerr ("diffscope: --t must be in 0..999\n");
      return 2;
    }
  if (self->device && g_strcmp0 (self->device, "auto") && g_strcmp0 (self->device, "cpu")
      && g_strcmp0 (self->device, "cuda"))
    {
      g_printerr ("diffscope: --device must be auto, cpu or cuda\n");
      return 2;
    }
  if (self->device)
    {
      /* The device is a preference: --device sets it for this run and later ones. */
      g_autoptr (DsPrefs) prefs = ds_prefs_load ();
      g_free (prefs->device);
      prefs->device = g_strdup (self->device);
      ds_prefs_save (prefs, NULL);
    }
  return -1;
}

/* ---- preferences ------------------------------------------------------------------ */

static const char *const devices[] = { "auto", "cpu", "cuda", NULL };

static void
prefs_closed (GtkWindow *win, gpointer data)
{
  GtkDropDown *dev = g_object_get_data (G_OBJECT (win), "device");
  GtkSpinButton *size = g_object_get_data (G_OBJECT (win), "size");
  GtkEditable *blocks = g_object_get_data (G_OBJECT (win), "blocks");
  g_autoptr (DsPrefs) p = ds_prefs_load ();
  g_free (p->device);
  p->device = g_strdup (devices[MIN (gtk_drop_down_get_selected (dev), 2)]);
  p->size = gtk_spin_button_get_value_as_int (size) / 64 * 64;
  g_auto (GStrv) list = g_strsplit_set (gtk_editable_get_text (blocks), ", ", -1);
  GPtrArray *a = g_ptr_array_new ();
  for (int i = 0; list[i]; i++)
    if (*list[i])
      g_ptr_array_add (a, g_strdup (list[i]));
  g_ptr_array_add (a, NULL);
  g_strfreev (p->blocks);
  p->blocks = (char **) g_ptr_array_free (a, FALSE);
  g_autoptr (GError) error = NULL;
  if (!ds_prefs_save (p, &error))
    g_warning ("preferences not saved: %s", error->message);
}

static GtkWidget *
prefs_row (GtkGrid *grid, int row, const char *label, GtkWidget *w)
{
  GtkWidget *l = gtk_label_new_with_mnemonic (label);
  gtk_label_set_xalign (GTK_LABEL (l), 1);
  gtk_label_set_mnemonic_widget (GTK_LABEL (l), w);
  gtk_accessible_update_relation (GTK_ACCESSIBLE (w), GTK_ACCESSIBLE_RELATION_LABELLED_BY, l,
                                  NULL, -1);
  gtk_grid_attach (grid, l, 0, row, 1, 1);
  gtk_grid_attach (grid, w, 1, row, 1, 1);
  return w;
}

static void
action_preferences (GSimpleAction *action, GVariant *param, gpointer data)
{
  GtkApplication *app = data;
  g_autoptr (DsPrefs) p = ds_prefs_load ();
  GtkWidget *win = gtk_window_new ();
  gtk_window_set_title (GTK_WINDOW (win), "Preferences");
  gtk_window_set_transient_for (GTK_WINDOW (win), gtk_application_get_active_window (app));
  gtk_window_set_modal (GTK_WINDOW (win), TRUE);
  gtk_window_set_default_size (GTK_WINDOW (win), 460, -1);
  GtkGrid *grid = GTK_GRID (gtk_grid_new ());
  gtk_grid_set_row_spacing (grid, 8);
  gtk_grid_set_column_spacing (grid, 12);
  g_object_set (grid, "margin-start", 18, "margin-end", 18, "margin-top", 18, "margin-bottom",
                18, NULL);
  GtkWidget *dev = gtk_drop_down_new_from_strings (devices);
  for (guint i = 0; devices[i]; i++)
    if (!g_strcmp0 (devices[i], p->device))
      gtk_drop_down_set_selected (GTK_DROP_DOWN (dev), i);
  prefs_row (grid, 0, "_Device", dev);
  GtkWidget *size = gtk_spin_button_new_with_range (0, 2048, 64);
  gtk_spin_button_set_value (GTK_SPIN_BUTTON (size), p->size);
  prefs_row (grid, 1, "_Input size (0: the model's own)", size);
  GtkWidget *blocks = gtk_entry_new ();
  g_autofree char *joined = g_strjoinv (", ", p->blocks);
  gtk_editable_set_text (GTK_EDITABLE (blocks), joined);
  gtk_widget_set_hexpand (blocks, TRUE);
  prefs_row (grid, 2, "Default _blocks", blocks);
  GtkWidget *note = gtk_label_new ("The device and input size apply when a model is opened; "
                                   "default blocks when a model is opened.");
  gtk_label_set_wrap (GTK_LABEL (note), TRUE);
  gtk_label_set_xalign (GTK_LABEL (note), 0);
  gtk_widget_add_css_class (note, "dim-label");
  gtk_grid_attach (grid, note, 0, 3, 2, 1);
  g_object_set_data (G_OBJECT (win), "device", dev);
  g_object_set_data (G_OBJECT (win), "size", size);
  g_object_set_data (G_OBJECT (win), "blocks", blocks);
  g_signal_connect (win, "destroy", G_CALLBACK (prefs_closed), NULL);
  gtk_window_set_child (GTK_WINDOW (win), GTK_WIDGET (grid));
  gtk_window_present (GTK_WINDOW (win));
}

static void
action_about (GSimpleAction *action, GVariant *param, gpointer data)
{
  GtkApplication *app = data;
  const char *authors[] = { "The Diffscope developers", NULL };
  gtk_show_about_dialog (gtk_application_get_active_window (app),
                         "program-name", "Diffscope",
                         "logo-icon-name", DS_APP_ID,
                         "version", DS_VERSION,
                         "comments", "See what Stable Diffusion's UNet features and "
                                     "cross-attention attend to in a real image, for a "
                                     "question or a caption.",
                         "license-type", GTK_LICENSE_MIT_X11,
                         "authors", authors,
                         NULL);
}

static void
action_quit (GSimpleAction *action, GVariant *param, gpointer data)
{
  GtkApplication *app = data;
  GList *wins = gtk_application_get_windows (app);
  for (GList *l = g_list_copy (wins), *it = l; it; it = it->next)
    gtk_window_destroy (it->data);
  g_application_quit (G_APPLICATION (app));
}

static void
ds_application_startup (GApplication *app)
{
  G_APPLICATION_CLASS (ds_application_parent_class)->startup (app);
  const GActionEntry entries[] = {
    { .name = "preferences", .activate = action_preferences },
    { .name = "about", .activate = action_about },
    { .name = "quit", .activate = action_quit },
  };
  g_action_map_add_action_entries (G_ACTION_MAP (app), entries, G_N_ELEMENTS (entries), app);
  struct {
    const char *action;
    const char *accels[3];
  } accels[] = {
    { "app.quit", { "<Control>q", NULL } },
    { "app.preferences", { "<Control>comma", NULL } },
    { "win.open", { "<Control>o", NULL } },
    { "win.open-second", { "<Control><Shift>o", NULL } },
    { "win.open-model", { "<Control><Shift>m", NULL } },
    { "win.paste", { "<Control><Shift>v", NULL } },
    { "win.export-png", { "<Control>e", NULL } },
    { "win.export-features", { "<Control><Shift>e", NULL } },
    { "win.show-help-overlay", { "<Control>question", NULL } },
    { "win.focus-prompt", { "<Control>l", NULL } },
    { "win.ask", { "<Control>Return", NULL } },
    { "win.ensemble", { "<Control>t", NULL } },
    { "win.show-special", { "<Control><Shift>t", NULL } },
    { "win.zoom-in", { "<Control>plus", "<Control>equal", NULL } },
    { "win.zoom-out", { "<Control>minus", NULL } },
    { "win.zoom-reset", { "<Control>0", NULL } },
  };
  for (guint i = 0; i < G_N_ELEMENTS (accels); i++)
    gtk_application_set_accels_for_action (GTK_APPLICATION (app), accels[i].action,
                                           accels[i].accels);
  GtkCssProvider *css = gtk_css_provider_new ();
  gtk_css_provider_load_from_resource (css, "/org/diffscope/Diffscope/style.css");
  gtk_style_context_add_provider_for_display (gdk_display_get_default (),
                                              GTK_STYLE_PROVIDER (css),
                                              GTK_STYLE_PROVIDER_PRIORITY_APPLICATION);
  g_object_unref (css);
  gtk_window_set_default_icon_name (DS_APP_ID);
}

static void
ds_application_finalize (GObject *object)
{
  DsApplication *self = DS_APPLICATION (object);
  g_free (self->model);
  g_free (self->device);
  g_free (self->prompt);
  g_free (self->mismatched);
  g_free (self->llava);
  g_free (self->fusion);
  g_free (self->screenshot);
  G_OBJECT_CLASS (ds_application_parent_class)->finalize (object);
}

static void
ds_application_class_init (DsApplicationClass *klass)
{
  GApplicationClass *ac = G_APPLICATION_CLASS (klass);
  ac->activate = ds_application_activate;
  ac->open = ds_application_open;
  ac->startup = ds_application_startup;
  ac->handle_local_options = ds_application_handle_local_options;
  G_OBJECT_CLASS (klass)->finalize = ds_application_finalize;
}

static void
ds_application_init (DsApplication *self)
{
  self->t = -1;
  self->word = -1;
  const GOptionEntry options[] = {
    { "demo", 0, 0, G_OPTION_ARG_NONE, NULL, "Use the built-in toy shapes model (the default without a model folder)", NULL },
    { "model", 0, 0, G_OPTION_ARG_FILENAME, NULL,
      "A Stable Diffusion 2.x folder in the diffusers layout", "DIR" },
    { "device", 0, 0, G_OPTION_ARG_STRING, NULL, "auto (default), cpu or cuda", "DEVICE" },
    { "prompt", 0, 0, G_OPTION_ARG_STRING, NULL, "The question or caption", "TEXT" },
    { "llava", 0, 0, G_OPTION_ARG_FILENAME, NULL,
      "A LLaVA-1.5 folder (llava-hf layout) that answers the prompt (press Enter)", "DIR" },
    { "fusion", 0, 0, G_OPTION_ARG_FILENAME, NULL,
      "A fusion checkpoint (CLIP + the model's diffusion features): a trained one adds the "
      "fused answer", "CKPT" },
    { "mismatched", 0, 0, G_OPTION_ARG_STRING, NULL,
      "A second, mismatched prompt shown beside the first (leakage checks)", "TEXT" },
    { "t", 0, 0, G_OPTION_ARG_INT, NULL, "The timestep (0-999)", "T" },
    { "word", 0, 0, G_OPTION_ARG_INT, NULL,
      "Show the heat map of the token strip's item N once words are shown", "N" },
    { "screenshot", 0, 0, G_OPTION_ARG_FILENAME, NULL,
      "Save the window as PNG once the maps are shown, then quit", "FILE" },
    { "version", 0, 0, G_OPTION_ARG_NONE, NULL, "Print the version", NULL },
    { NULL },
  };
  g_application_add_main_option_entries (G_APPLICATION (self), options);
  g_application_set_option_context_parameter_string (G_APPLICATION (self), "[IMAGE [IMAGE2]]");
}

DsApplication *
ds_application_new (void)
{
  return g_object_new (DS_TYPE_APPLICATION, "application-id", DS_APP_ID, "flags",
                       G_APPLICATION_HANDLES_OPEN | G_APPLICATION_NON_UNIQUE,
                       "resource-base-path", "/org/diffscope/Diffscope", NULL);
}
