/* ds-answer-view.h: the answer pane: the model's streamed answer (one
 * column, or two side by side: "CLIP only" and "fused", or the answers to the
 * prompt and to the mismatched prompt), a Stop button and a status line. */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

#define DS_TYPE_ANSWER_VIEW (ds_answer_view_get_type ())

G_DECLARE_FINAL_TYPE (DsAnswerView, ds_answer_view, DS, ANSWER_VIEW, GtkWidget)

GtkWidget  *ds_answer_view_new             (void);
void        ds_answer_view_set_placeholder (DsAnswerView *self,
                                            const char   *text);
const char *ds_answer_view_get_placeholder (DsAnswerView *self);
void        ds_answer_view_clear           (DsAnswerView *self);
void        ds_answer_view_append          (DsAnswerView *self,
                                            int           column,
                                            const char   *text);
void        ds_answer_view_set_streaming   (DsAnswerView *self,
                                            gboolean      streaming);
gboolean    ds_answer_view_get_streaming   (DsAnswerView *self);
const char *ds_answer_view_get_text        (DsAnswerView *self,
                                            int           column);
void        ds_answer_view_set_captions    (DsAnswerView *self,
                                            const char   *c0,
                                            const char   *c1);

G_END_DECLS
