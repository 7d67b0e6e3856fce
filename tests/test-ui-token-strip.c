/* test-ui-token-strip.c: DsTokenStrip: one toggle button per item, at most
 * one active, special items shown only on request, the selection kept or
 * dropped by set_items(), accessible labels, keyboard focus and activation.
 * Exits 77 without a display. */

#include "ds-resources.h"
#include "ds-test-ui.h"
#include "ds-token-strip.h"

typedef struct {
  int count;
  int last;
} SignalLog;

static void
on_selection_changed (DsTokenStrip *strip,
                      int           index,
                      SignalLog    *log)
{
  log->count++;
  log->last = index;
}

/* The strip's buttons, one per item, in order. */
static GPtrArray *
toggles_of (GtkWidget *strip)
{
  return ds_test_ui_find_all (strip, GTK_TYPE_TOGGLE_BUTTON);
}

/* <start> a red cube(2 tokens) <end> 4×<pad> */
static const DsTokenItem items_a[] = {
  { "<|startoftext|>", DS_TOKEN_ITEM_START, 0, 1 },
  { "a",               DS_TOKEN_ITEM_WORD,  1, 1 },
  { "red",             DS_TOKEN_ITEM_WORD,  2, 1 },
  { "cube",            DS_TOKEN_ITEM_WORD,  3, 2 },
  { "<|endoftext|>",   DS_TOKEN_ITEM_END,   5, 1 },
  { "!",               DS_TOKEN_ITEM_PAD,   6, 1 },
  { "!",               DS_TOKEN_ITEM_PAD,   7, 1 },
  { "!",               DS_TOKEN_ITEM_PAD,   8, 1 },
  { "!",               DS_TOKEN_ITEM_PAD,   9, 1 },
};
#define N_A ((int) G_N_ELEMENTS (items_a))

/* A strip in its own window (ds-test-ui.h), logging ::selection-changed:
 * a GtkButton only reacts to activation (Enter/space, gtk_widget_activate)
 * once realized. */
static GtkWidget *
new_strip (SignalLog *log)
{
  GtkWidget *strip = ds_token_strip_new ();

  g_signal_connect (strip, "selection-changed", G_CALLBACK (on_selection_changed), log);
  return ds_test_ui_show (strip, 400, 200);
}

static void
test_empty_placeholder (void)
{
  SignalLog log = { 0, -2 };
  g_autoptr(DsTestUiWidget) strip = new_strip (&log);
  GtkWidget *placeholder = ds_test_ui_find_label (strip, "Type a prompt to see its words");
  g_autoptr(GPtrArray) toggles = toggles_of (strip);

  g_assert_cmpint (ds_token_strip_get_n_items (DS_TOKEN_STRIP (strip)), ==, 0);
  g_assert_cmpint (ds_token_strip_get_selected (DS_TOKEN_STRIP (strip)), ==, -1);
  g_assert_cmpuint (toggles->len, ==, 0);
  g_assert_nonnull (placeholder);
  g_assert_true (gtk_widget_is_visible (placeholder));

  ds_token_strip_set_items (DS_TOKEN_STRIP (strip), items_a, N_A);
  g_assert_false (gtk_widget_is_visible (placeholder));

  /* only special items and show-special off: nothing to show, placeholder */
  ds_token_strip_set_items (DS_TOKEN_STRIP (strip), items_a + 4, 5);
  g_assert_true (gtk_widget_is_visible (placeholder));
  ds_token_strip_set_show_special (DS_TOKEN_STRIP (strip), TRUE);
  g_assert_false (gtk_widget_is_visible (placeholder));

  ds_token_strip_set_items (DS_TOKEN_STRIP (strip), NULL, 0);
  g_assert_true (gtk_widget_is_visible (placeholder));
  g_assert_cmpint (log.count, ==, 0);
}

static void
test_items_copied (void)
{
  SignalLog log = { 0, -2 };
  g_autoptr(DsTestUiWidget) strip = new_strip (&log);
  char word[] = "dog";
  DsTokenItem items[] = { { word, DS_TOKEN_ITEM_WORD, 1, 3 } };
  const DsTokenItem *got;
  g_autoptr(GPtrArray) toggles = NULL;

  ds_token_strip_set_items (DS_TOKEN_STRIP (strip), items, 1);
  word[0] = 'f';  /* the strip must have its own copy */
  got = ds_token_strip_get_item (DS_TOKEN_STRIP (strip), 0);
  g_assert_cmpstr (got->label, ==, "dog");
  g_assert_cmpint (got->kind, ==, DS_TOKEN_ITEM_WORD);
  g_assert_cmpint (got->first, ==, 1);
  g_assert_cmpint (got->count, ==, 3);
  g_assert_cmpint (ds_token_strip_get_n_items (DS_TOKEN_STRIP (strip)), ==, 1);

  ds_token_strip_set_items (DS_TOKEN_STRIP (strip), items_a, N_A);
  toggles = toggles_of (strip);
  g_assert_cmpint (ds_token_strip_get_n_items (DS_TOKEN_STRIP (strip)), ==, N_A);
  g_assert_cmpuint (toggles->len, ==, N_A);  /* one button per item, old ones gone */
  for (int i = 0; i < N_A; i++)
    {
      got = ds_token_strip_get_item (DS_TOKEN_STRIP (strip), i);
      g_assert_cmpstr (got->label, ==, items_a[i].label);
      g_assert_cmpint (got->kind, ==, items_a[i].kind);
      g_assert_cmpint (got->first, ==, items_a[i].first);
    }
  /* the word buttons show their words */
  g_assert_nonnull (ds_test_ui_find_label (g_ptr_array_index (toggles, 2), "red"));
}

static void
test_show_special (void)
{
  SignalLog log = { 0, -2 };
  g_autoptr(DsTestUiWidget) strip = new_strip (&log);
  g_autoptr(GPtrArray) toggles = NULL;
  gboolean prop = TRUE;
  int notified = 0;

  g_signal_connect_swapped (strip, "notify::show-special", G_CALLBACK (g_atomic_int_inc), &notified);
  ds_token_strip_set_items (DS_TOKEN_STRIP (strip), items_a, N_A);
  toggles = toggles_of (strip);

  g_object_get (strip, "show-special", &prop, NULL);
  g_assert_false (prop);
  for (int i = 0; i < N_A; i++)
    g_assert_cmpint (gtk_widget_is_visible (g_ptr_array_index (toggles, i)), ==,
                     items_a[i].kind == DS_TOKEN_ITEM_WORD);

  g_object_set (strip, "show-special", TRUE, NULL);
  g_assert_cmpint (notified, ==, 1);
  g_assert_true (ds_token_strip_get_show_special (DS_TOKEN_STRIP (strip)));
  for (int i = 0; i < N_A; i++)
    g_assert_true (gtk_widget_is_visible (g_ptr_array_index (toggles, i)));

  ds_token_strip_set_show_special (DS_TOKEN_STRIP (strip), TRUE);
  g_assert_cmpint (notified, ==, 1);  /* no change, no notify */

  /* hiding the specials while one is selected drops the selection */
  ds_token_strip_select (DS_TOKEN_STRIP (strip), 4);
  g_assert_cmpint (log.count, ==, 1);
  g_assert_cmpint (log.last, ==, 4);
  ds_token_strip_set_show_special (DS_TOKEN_STRIP (strip), FALSE);
  g_assert_cmpint (notified, ==, 2);
  g_assert_cmpint (ds_token_strip_get_selected (DS_TOKEN_STRIP (strip)), ==, -1);
  g_assert_cmpint (log.count, ==, 2);
  g_assert_cmpint (log.last, ==, -1);
  g_assert_false (gtk_toggle_button_get_active (g_ptr_array_index (toggles, 4)));
  g_assert_false (gtk_widget_is_visible (g_ptr_array_index (toggles, 5)));

  /* a selected word survives hiding the specials */
  ds_token_strip_set_show_special (DS_TOKEN_STRIP (strip), TRUE);
  ds_token_strip_select (DS_TOKEN_STRIP (strip), 2);
  ds_token_strip_set_show_special (DS_TOKEN_STRIP (strip), FALSE);
  g_assert_cmpint (ds_token_strip_get_selected (DS_TOKEN_STRIP (strip)), ==, 2);
}

static int
n_active (GPtrArray *toggles)
{
  int n = 0;

  for (guint i = 0; i < toggles->len; i++)
    n += gtk_toggle_button_get_active (g_ptr_array_index (toggles, i));
  return n;
}

static void
test_exclusive_selection (void)
{
  SignalLog log = { 0, -2 };
  g_autoptr(DsTestUiWidget) strip = new_strip (&log);
  g_autoptr(GPtrArray) toggles = NULL;

  ds_token_strip_set_items (DS_TOKEN_STRIP (strip), items_a, N_A);
  toggles = toggles_of (strip);
  g_assert_cmpint (n_active (toggles), ==, 0);

  /* activation is what Enter/space on a focused button does */
  g_assert_true (ds_test_ui_press (g_ptr_array_index (toggles, 1)));
  g_assert_cmpint (ds_token_strip_get_selected (DS_TOKEN_STRIP (strip)), ==, 1);
  g_assert_cmpint (log.count, ==, 1);
  g_assert_cmpint (log.last, ==, 1);
  g_assert_true (gtk_toggle_button_get_active (g_ptr_array_index (toggles, 1)));

  g_assert_true (ds_test_ui_press (g_ptr_array_index (toggles, 3)));
  g_assert_cmpint (ds_token_strip_get_selected (DS_TOKEN_STRIP (strip)), ==, 3);
  g_assert_cmpint (log.count, ==, 2);
  g_assert_cmpint (log.last, ==, 3);
  g_assert_false (gtk_toggle_button_get_active (g_ptr_array_index (toggles, 1)));
  g_assert_true (gtk_toggle_button_get_active (g_ptr_array_index (toggles, 3)));
  g_assert_cmpint (n_active (toggles), ==, 1);

  /* clicking the active one again: none selected */
  g_assert_true (ds_test_ui_press (g_ptr_array_index (toggles, 3)));
  g_assert_cmpint (ds_token_strip_get_selected (DS_TOKEN_STRIP (strip)), ==, -1);
  g_assert_cmpint (log.count, ==, 3);
  g_assert_cmpint (log.last, ==, -1);
  g_assert_cmpint (n_active (toggles), ==, 0);

  /* select(): emits on change only, and moves the active button */
  ds_token_strip_select (DS_TOKEN_STRIP (strip), 2);
  g_assert_cmpint (log.count, ==, 4);
  g_assert_cmpint (log.last, ==, 2);
  g_assert_true (gtk_toggle_button_get_active (g_ptr_array_index (toggles, 2)));
  ds_token_strip_select (DS_TOKEN_STRIP (strip), 2);
  g_assert_cmpint (log.count, ==, 4);
  ds_token_strip_select (DS_TOKEN_STRIP (strip), 7);  /* a pad, hidden: allowed */
  g_assert_cmpint (log.last, ==, 7);
  g_assert_cmpint (n_active (toggles), ==, 1);
  ds_token_strip_select (DS_TOKEN_STRIP (strip), -1);
  g_assert_cmpint (log.count, ==, 6);
  g_assert_cmpint (log.last, ==, -1);
  g_assert_cmpint (n_active (toggles), ==, 0);

  /* set_active from outside (e.g. an assistive technology's press) */
  gtk_toggle_button_set_active (g_ptr_array_index (toggles, 1), TRUE);
  g_assert_cmpint (ds_token_strip_get_selected (DS_TOKEN_STRIP (strip)), ==, 1);
  g_assert_cmpint (log.last, ==, 1);
}

static void
test_set_items_keeps_selection (void)
{
  SignalLog log = { 0, -2 };
  g_autoptr(DsTestUiWidget) strip = new_strip (&log);
  DsTokenItem edited[N_A];
  g_autoptr(GPtrArray) toggles = NULL;

  ds_token_strip_set_items (DS_TOKEN_STRIP (strip), items_a, N_A);
  ds_token_strip_select (DS_TOKEN_STRIP (strip), 2);  /* "red" */
  g_assert_cmpint (log.count, ==, 1);

  /* same label at the same index: kept, silently, on the new button */
  memcpy (edited, items_a, sizeof edited);
  edited[3].label = "sphere";
  ds_token_strip_set_items (DS_TOKEN_STRIP (strip), edited, N_A);
  toggles = toggles_of (strip);
  g_assert_cmpint (ds_token_strip_get_selected (DS_TOKEN_STRIP (strip)), ==, 2);
  g_assert_cmpint (log.count, ==, 1);
  g_assert_true (gtk_toggle_button_get_active (g_ptr_array_index (toggles, 2)));
  g_assert_cmpint (n_active (toggles), ==, 1);

  /* another label there: dropped, with the signal */
  edited[2].label = "blue";
  ds_token_strip_set_items (DS_TOKEN_STRIP (strip), edited, N_A);
  g_clear_pointer (&toggles, g_ptr_array_unref);
  toggles = toggles_of (strip);
  g_assert_cmpint (ds_token_strip_get_selected (DS_TOKEN_STRIP (strip)), ==, -1);
  g_assert_cmpint (log.count, ==, 2);
  g_assert_cmpint (log.last, ==, -1);
  g_assert_cmpint (n_active (toggles), ==, 0);

  /* fewer items than the selected index: dropped */
  ds_token_strip_select (DS_TOKEN_STRIP (strip), 5);
  ds_token_strip_set_items (DS_TOKEN_STRIP (strip), items_a, 3);
  g_assert_cmpint (ds_token_strip_get_selected (DS_TOKEN_STRIP (strip)), ==, -1);
  g_assert_cmpint (log.last, ==, -1);
  g_assert_cmpint (log.count, ==, 4);

  /* no selection stays no selection, silently */
  ds_token_strip_set_items (DS_TOKEN_STRIP (strip), items_a, N_A);
  g_assert_cmpint (log.count, ==, 4);
}

static void
test_accessible_labels (void)
{
  SignalLog log = { 0, -2 };
  g_autoptr(DsTestUiWidget) strip = new_strip (&log);
  g_autoptr(GPtrArray) toggles = NULL;
  static const char *expected[N_A] = {
    "Start token", "Word: a", "Word: red", "Word: cube", "End token",
    "Padding token 6", "Padding token 7", "Padding token 8", "Padding token 9",
  };

  ds_token_strip_set_items (DS_TOKEN_STRIP (strip), items_a, N_A);
  toggles = toggles_of (strip);
  for (int i = 0; i < N_A; i++)
    {
      GtkWidget *button = g_ptr_array_index (toggles, i);
      const char *tooltip = gtk_widget_get_tooltip_text (button);

      gtk_test_accessible_assert_property (GTK_ACCESSIBLE (button),
                                           GTK_ACCESSIBLE_PROPERTY_LABEL, expected[i]);
      g_assert_true (g_str_has_prefix (tooltip, expected[i]));
      g_assert_true (gtk_test_accessible_has_role (GTK_ACCESSIBLE (button),
                                                   GTK_ACCESSIBLE_ROLE_BUTTON));
    }
  /* the pressed state follows the selection */
  ds_token_strip_select (DS_TOKEN_STRIP (strip), 3);
  gtk_test_accessible_assert_state (GTK_ACCESSIBLE (g_ptr_array_index (toggles, 3)),
                                    GTK_ACCESSIBLE_STATE_PRESSED, GTK_ACCESSIBLE_TRISTATE_TRUE);
  gtk_test_accessible_assert_state (GTK_ACCESSIBLE (g_ptr_array_index (toggles, 1)),
                                    GTK_ACCESSIBLE_STATE_PRESSED, GTK_ACCESSIBLE_TRISTATE_FALSE);
  /* the pad buttons stay one character wide */
  g_assert_nonnull (ds_test_ui_find_label (g_ptr_array_index (toggles, 5), "·"));
}

static void
test_keyboard (void)
{
  SignalLog log = { 0, -2 };
  GtkWidget *window = gtk_window_new ();
  GtkWidget *strip = ds_token_strip_new ();
  g_autoptr(GPtrArray) toggles = NULL;

  g_signal_connect (strip, "selection-changed", G_CALLBACK (on_selection_changed), &log);
  gtk_window_set_child (GTK_WINDOW (window), strip);
  gtk_window_set_default_size (GTK_WINDOW (window), 400, 200);
  ds_token_strip_set_items (DS_TOKEN_STRIP (strip), items_a, N_A);
  toggles = toggles_of (strip);
  gtk_window_present (GTK_WINDOW (window));
  ds_test_ui_wait_ms (200);  /* Tab order follows the layout: let the buttons be allocated */

  for (int i = 0; i < N_A; i++)
    {
      GtkWidget *button = g_ptr_array_index (toggles, i);

      g_assert_true (gtk_widget_get_focusable (button));
      /* one Tab stop per button: their container takes none */
      g_assert_false (gtk_widget_get_focusable (gtk_widget_get_parent (button)));
    }

  /* Tab from the window lands on the first visible button ("a"), then on
   * the next ones; the hidden start/end/pad buttons are skipped */
  if (!ds_test_ui_ensure_active (window))
    {
      g_test_skip ("the test window never became active: no keyboard focus to move");
      gtk_window_destroy (GTK_WINDOW (window));
      return;
    }
  gtk_window_set_focus (GTK_WINDOW (window), NULL);
  g_assert_true (gtk_widget_child_focus (window, GTK_DIR_TAB_FORWARD));
  g_assert_true (gtk_window_get_focus (GTK_WINDOW (window)) == g_ptr_array_index (toggles, 1));
  g_assert_true (gtk_widget_child_focus (window, GTK_DIR_TAB_FORWARD));
  g_assert_true (gtk_window_get_focus (GTK_WINDOW (window)) == g_ptr_array_index (toggles, 2));
  g_assert_true (gtk_widget_child_focus (window, GTK_DIR_TAB_FORWARD));
  g_assert_true (gtk_window_get_focus (GTK_WINDOW (window)) == g_ptr_array_index (toggles, 3));
  g_assert_true (gtk_widget_child_focus (window, GTK_DIR_TAB_BACKWARD));
  g_assert_true (gtk_window_get_focus (GTK_WINDOW (window)) == g_ptr_array_index (toggles, 2));
  g_assert_true (gtk_widget_child_focus (window, GTK_DIR_TAB_FORWARD));
  g_assert_true (gtk_window_get_focus (GTK_WINDOW (window)) == g_ptr_array_index (toggles, 3));

  /* the focused button activates (Enter/space) */
  g_assert_true (ds_test_ui_press (gtk_window_get_focus (GTK_WINDOW (window))));
  g_assert_cmpint (ds_token_strip_get_selected (DS_TOKEN_STRIP (strip)), ==, 3);
  g_assert_cmpint (log.last, ==, 3);

  /* shown on screen: the visible buttons are mapped, hidden ones are not */
  g_assert_true (gtk_widget_get_mapped (g_ptr_array_index (toggles, 2)));
  g_assert_false (gtk_widget_get_mapped (g_ptr_array_index (toggles, 6)));
  ds_token_strip_set_show_special (DS_TOKEN_STRIP (strip), TRUE);
  ds_test_ui_wait_ms (100);
  g_assert_true (gtk_widget_get_mapped (g_ptr_array_index (toggles, 6)));

  gtk_window_destroy (GTK_WINDOW (window));
  ds_test_ui_drain ();
}

static void
test_many_pads (void)
{
  SignalLog log = { 0, -2 };
  g_autoptr(DsTestUiWidget) strip = new_strip (&log);
  DsTokenItem items[77];
  g_autoptr(GPtrArray) toggles = NULL;

  items[0] = (DsTokenItem) { "<|startoftext|>", DS_TOKEN_ITEM_START, 0, 1 };
  items[1] = (DsTokenItem) { "cat", DS_TOKEN_ITEM_WORD, 1, 1 };
  items[2] = (DsTokenItem) { "<|endoftext|>", DS_TOKEN_ITEM_END, 2, 1 };
  for (int i = 3; i < 77; i++)
    items[i] = (DsTokenItem) { "!", DS_TOKEN_ITEM_PAD, i, 1 };
  ds_token_strip_set_items (DS_TOKEN_STRIP (strip), items, 77);
  ds_token_strip_set_show_special (DS_TOKEN_STRIP (strip), TRUE);
  toggles = toggles_of (strip);
  g_assert_cmpuint (toggles->len, ==, 77);
  gtk_test_accessible_assert_property (GTK_ACCESSIBLE (g_ptr_array_index (toggles, 76)),
                                       GTK_ACCESSIBLE_PROPERTY_LABEL, "Padding token 76");
  ds_token_strip_select (DS_TOKEN_STRIP (strip), 40);
  g_assert_cmpint (n_active (toggles), ==, 1);
  g_assert_true (gtk_toggle_button_get_active (g_ptr_array_index (toggles, 40)));
}

int
main (int    argc,
      char **argv)
{
  ds_test_ui_init_a11y_or_skip (&argc, &argv);  /* GTK_A11Y=test: the labels can be checked */
  g_assert_nonnull (ds_get_resource ());  /* links the bundle in, registering it */

  g_test_add_func ("/ui/token-strip/empty-placeholder", test_empty_placeholder);
  g_test_add_func ("/ui/token-strip/items-copied", test_items_copied);
  g_test_add_func ("/ui/token-strip/show-special", test_show_special);
  g_test_add_func ("/ui/token-strip/exclusive-selection", test_exclusive_selection);
  g_test_add_func ("/ui/token-strip/set-items-keeps-selection", test_set_items_keeps_selection);
  g_test_add_func ("/ui/token-strip/accessible-labels", test_accessible_labels);
  g_test_add_func ("/ui/token-strip/keyboard", test_keyboard);
  g_test_add_func ("/ui/token-strip/many-pads", test_many_pads);
  return g_test_run ();
}
