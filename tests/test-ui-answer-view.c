/* test-ui-answer-view.c: DsAnswerView: appending and clearing text in one
 * or two columns, the placeholder, the Stop button's sensitivity and
 * ::stop, the status line and accessible labels. Exits 77 without a
 * display. */

#include "ds-answer-view.h"
#include "ds-resources.h"
#include "ds-test-ui.h"

static GtkTextView *
text_view (GtkWidget *view,
           int        column)
{
  g_autoptr(GPtrArray) views = ds_test_ui_find_all (view, GTK_TYPE_TEXT_VIEW);

  g_assert_cmpuint (views->len, ==, 2);
  return g_ptr_array_index (views, column);
}

static char *
buffer_text (GtkTextView *text_view)
{
  GtkTextBuffer *buffer = gtk_text_view_get_buffer (text_view);
  GtkTextIter start, end;

  gtk_text_buffer_get_bounds (buffer, &start, &end);
  return gtk_text_buffer_get_text (buffer, &start, &end, FALSE);
}

/* the status line: the last label of the view */
static const char *
status_text (GtkWidget *view)
{
  g_autoptr(GPtrArray) labels = ds_test_ui_find_all (view, GTK_TYPE_LABEL);
  GtkWidget *status = g_ptr_array_index (labels, labels->len - 1);

  return gtk_widget_get_visible (status) ? gtk_label_get_text (GTK_LABEL (status)) : "";
}

/* A view in its own window (ds-test-ui.h), counting its ::stop signals. */
static GtkWidget *
new_view (int *stops)
{
  GtkWidget *view = ds_answer_view_new ();

  g_signal_connect_swapped (view, "stop", G_CALLBACK (g_atomic_int_inc), stops);
  return ds_test_ui_show (view, 600, 300);
}

static void
test_append_clear (void)
{
  int stops = 0;
  g_autoptr(DsTestUiWidget) view = new_view (&stops);
  DsAnswerView *answer = DS_ANSWER_VIEW (view);
  g_autofree char *text0 = NULL;
  g_autofree char *text1 = NULL;

  g_assert_nonnull (ds_test_ui_find_label (view, "Answer"));
  g_assert_cmpstr (ds_answer_view_get_text (answer, 0), ==, "");
  g_assert_cmpstr (ds_answer_view_get_text (answer, 1), ==, "");
  g_assert_false (gtk_widget_is_visible (GTK_WIDGET (text_view (view, 1))));

  ds_answer_view_append (answer, 0, "A red ");
  ds_answer_view_append (answer, 0, "");
  ds_answer_view_append (answer, 0, "cube — on a table.");
  g_assert_cmpstr (ds_answer_view_get_text (answer, 0), ==, "A red cube — on a table.");
  text0 = buffer_text (text_view (view, 0));
  g_assert_cmpstr (text0, ==, "A red cube — on a table.");
  g_assert_false (gtk_text_view_get_editable (text_view (view, 0)));
  g_assert_cmpint (gtk_text_view_get_wrap_mode (text_view (view, 0)), !=, GTK_WRAP_NONE);
  ds_test_ui_drain ();
  g_assert_true (gtk_widget_get_mapped (GTK_WIDGET (text_view (view, 0))));
  /* one column: no captions, no second view */
  g_assert_false (gtk_widget_is_visible (GTK_WIDGET (text_view (view, 1))));
  g_assert_false (gtk_widget_is_visible (ds_test_ui_find_label (view, "CLIP only")));

  ds_answer_view_append (answer, 1, "A cube.");
  g_assert_cmpstr (ds_answer_view_get_text (answer, 1), ==, "A cube.");
  g_assert_cmpstr (ds_answer_view_get_text (answer, 0), ==, "A red cube — on a table.");
  text1 = buffer_text (text_view (view, 1));
  g_assert_cmpstr (text1, ==, "A cube.");
  g_assert_true (gtk_widget_is_visible (GTK_WIDGET (text_view (view, 1))));
  g_assert_true (gtk_widget_is_visible (ds_test_ui_find_label (view, "CLIP only")));
  g_assert_true (gtk_widget_is_visible (ds_test_ui_find_label (view, "fused")));

  ds_answer_view_clear (answer);
  g_assert_cmpstr (ds_answer_view_get_text (answer, 0), ==, "");
  g_assert_cmpstr (ds_answer_view_get_text (answer, 1), ==, "");
  g_clear_pointer (&text0, g_free);
  text0 = buffer_text (text_view (view, 0));
  g_assert_cmpstr (text0, ==, "");
  g_assert_false (gtk_widget_is_visible (GTK_WIDGET (text_view (view, 1))));
  g_assert_cmpint (stops, ==, 0);
}

static void
test_placeholder (void)
{
  int stops = 0;
  g_autoptr(DsTestUiWidget) view = new_view (&stops);
  DsAnswerView *answer = DS_ANSWER_VIEW (view);
  const char *text = "Answers come with the LLaVA work: the features are ready.";
  GtkWidget *label;

  ds_answer_view_set_placeholder (answer, text);
  label = ds_test_ui_find_label (view, text);
  g_assert_nonnull (label);
  g_assert_true (gtk_widget_has_css_class (label, "dim-label"));
  ds_test_ui_drain ();
  g_assert_true (gtk_widget_get_mapped (label));
  g_assert_false (gtk_widget_get_mapped (GTK_WIDGET (text_view (view, 0))));
  /* the placeholder is not the answer */
  g_assert_cmpstr (ds_answer_view_get_text (answer, 0), ==, "");

  ds_answer_view_append (answer, 0, "Yes.");
  ds_test_ui_drain ();
  g_assert_false (gtk_widget_get_mapped (label));
  g_assert_true (gtk_widget_get_mapped (GTK_WIDGET (text_view (view, 0))));

  ds_answer_view_clear (answer);
  ds_test_ui_drain ();
  g_assert_true (gtk_widget_get_mapped (label));

  /* streaming with no text yet: the (empty) answer, not the placeholder */
  ds_answer_view_set_streaming (answer, TRUE);
  ds_test_ui_drain ();
  g_assert_false (gtk_widget_get_mapped (label));
  ds_answer_view_set_streaming (answer, FALSE);
  ds_test_ui_drain ();
  g_assert_true (gtk_widget_get_mapped (label));

  ds_answer_view_set_placeholder (answer, "Nothing yet");
  g_assert_true (ds_test_ui_find_label (view, "Nothing yet") == label);
}

static void
test_stop (void)
{
  int stops = 0;
  g_autoptr(DsTestUiWidget) view = new_view (&stops);
  DsAnswerView *answer = DS_ANSWER_VIEW (view);
  GtkWidget *stop = ds_test_ui_find_button (view, "_Stop");

  g_assert_true (gtk_button_get_use_underline (GTK_BUTTON (stop)));  /* Alt+S */
  g_assert_true (gtk_widget_get_focusable (stop));
  g_assert_false (gtk_widget_get_sensitive (stop));
  ds_test_ui_press (stop);  /* insensitive: nothing happens */
  g_assert_cmpint (stops, ==, 0);
  g_assert_cmpstr (status_text (view), ==, "");

  ds_answer_view_set_streaming (answer, TRUE);
  g_assert_true (ds_answer_view_get_streaming (answer));
  g_assert_true (gtk_widget_get_sensitive (stop));
  g_assert_cmpstr (status_text (view), ==, "Answering…");
  ds_answer_view_append (answer, 0, "The cube");

  g_assert_true (ds_test_ui_press (stop));
  g_assert_cmpint (stops, ==, 1);
  /* asked once: Stop turns insensitive until the next stream */
  g_assert_false (gtk_widget_get_sensitive (stop));
  g_assert_cmpstr (status_text (view), ==, "Stopping…");
  ds_test_ui_press (stop);
  g_assert_cmpint (stops, ==, 1);

  ds_answer_view_set_streaming (answer, FALSE);
  g_assert_false (gtk_widget_get_sensitive (stop));
  g_assert_cmpstr (status_text (view), ==, "Stopped");
  g_assert_cmpstr (ds_answer_view_get_text (answer, 0), ==, "The cube");

  /* a stream that ends by itself */
  ds_answer_view_clear (answer);
  g_assert_cmpstr (status_text (view), ==, "");
  ds_answer_view_set_streaming (answer, TRUE);
  g_assert_true (gtk_widget_get_sensitive (stop));
  ds_answer_view_set_streaming (answer, TRUE);  /* idempotent */
  g_assert_true (gtk_widget_get_sensitive (stop));
  ds_answer_view_set_streaming (answer, FALSE);
  g_assert_false (gtk_widget_get_sensitive (stop));
  g_assert_cmpstr (status_text (view), ==, "");
  g_assert_cmpint (stops, ==, 1);

  /* the signal itself, as a click sends it */
  ds_answer_view_set_streaming (answer, TRUE);
  g_signal_emit_by_name (stop, "clicked");
  g_assert_cmpint (stops, ==, 2);
}

static void
test_accessible (void)
{
  int stops = 0;
  g_autoptr(DsTestUiWidget) view = new_view (&stops);
  DsAnswerView *answer = DS_ANSWER_VIEW (view);

  gtk_test_accessible_assert_property (GTK_ACCESSIBLE (view),
                                       GTK_ACCESSIBLE_PROPERTY_LABEL, "Answer");
  gtk_test_accessible_assert_property (GTK_ACCESSIBLE (text_view (view, 0)),
                                       GTK_ACCESSIBLE_PROPERTY_LABEL, "Answer");
  gtk_test_accessible_assert_property (GTK_ACCESSIBLE (text_view (view, 1)),
                                       GTK_ACCESSIBLE_PROPERTY_LABEL, "Answer, fused");
  gtk_test_accessible_assert_property (GTK_ACCESSIBLE (ds_test_ui_find_button (view, "_Stop")),
                                       GTK_ACCESSIBLE_PROPERTY_DESCRIPTION,
                                       "Stop generating the answer");
  ds_answer_view_append (answer, 1, "x");
  gtk_test_accessible_assert_property (GTK_ACCESSIBLE (text_view (view, 0)),
                                       GTK_ACCESSIBLE_PROPERTY_LABEL, "Answer, CLIP only");
  ds_answer_view_set_streaming (answer, TRUE);
  gtk_test_accessible_assert_state (GTK_ACCESSIBLE (text_view (view, 0)),
                                    GTK_ACCESSIBLE_STATE_BUSY, TRUE);
  ds_answer_view_set_streaming (answer, FALSE);
  gtk_test_accessible_assert_state (GTK_ACCESSIBLE (text_view (view, 0)),
                                    GTK_ACCESSIBLE_STATE_BUSY, FALSE);
}

static void
test_long_stream (void)
{
  int stops = 0;
  g_autoptr(DsTestUiWidget) view = new_view (&stops);
  DsAnswerView *answer = DS_ANSWER_VIEW (view);
  g_autoptr(GString) expected = g_string_new (NULL);
  GtkAdjustment *vadj;

  ds_answer_view_set_streaming (answer, TRUE);
  for (int i = 0; i < 400; i++)
    {
      g_autofree char *piece = g_strdup_printf ("word%d ", i);

      ds_answer_view_append (answer, 0, piece);
      g_string_append (expected, piece);
      if (i % 100 == 0)
        ds_test_ui_wait_ms (100);  /* let it lay out and draw now and then */
    }
  ds_test_ui_wait_ms (200);
  g_assert_cmpstr (ds_answer_view_get_text (answer, 0), ==, expected->str);

  /* it followed the end ... */
  vadj = gtk_scrollable_get_vadjustment (GTK_SCROLLABLE (text_view (view, 0)));
  g_assert_cmpfloat (gtk_adjustment_get_upper (vadj), >, gtk_adjustment_get_page_size (vadj));
  g_assert_cmpfloat (gtk_adjustment_get_value (vadj) + gtk_adjustment_get_page_size (vadj), >=,
                     gtk_adjustment_get_upper (vadj) - 1.0);
  /* ... but not once the reader scrolled up */
  gtk_adjustment_set_value (vadj, 0);
  ds_answer_view_append (answer, 0, "more words");
  ds_test_ui_wait_ms (200);
  g_assert_cmpfloat (gtk_adjustment_get_value (vadj), ==, 0);
  /* back at the end, it follows again */
  gtk_adjustment_set_value (vadj, gtk_adjustment_get_upper (vadj) - gtk_adjustment_get_page_size (vadj));
  for (int i = 0; i < 100; i++)
    ds_answer_view_append (answer, 0, " and more words");
  ds_test_ui_wait_ms (200);
  g_assert_cmpfloat (gtk_adjustment_get_value (vadj) + gtk_adjustment_get_page_size (vadj), >=,
                     gtk_adjustment_get_upper (vadj) - 1.0);
  ds_answer_view_set_streaming (answer, FALSE);
}

int
main (int    argc,
      char **argv)
{
  ds_test_ui_init_a11y_or_skip (&argc, &argv);  /* GTK_A11Y=test: the labels can be checked */
  g_assert_nonnull (ds_get_resource ());  /* links the bundle in, registering it */

  g_test_add_func ("/ui/answer-view/append-clear", test_append_clear);
  g_test_add_func ("/ui/answer-view/placeholder", test_placeholder);
  g_test_add_func ("/ui/answer-view/stop", test_stop);
  g_test_add_func ("/ui/answer-view/accessible", test_accessible);
  g_test_add_func ("/ui/answer-view/long-stream", test_long_stream);
  return g_test_run ();
}
