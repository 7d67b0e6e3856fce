/* ds-token-strip.h: the prompt's tokens as a wrapping row of toggle buttons,
 * at most one of them active, so the window can show one word's
 * cross-attention map at a time. */
#pragma once

#include <gtk/gtk.h>

G_BEGIN_DECLS

typedef enum {
  DS_TOKEN_ITEM_WORD,
  DS_TOKEN_ITEM_START,
  DS_TOKEN_ITEM_END,
  DS_TOKEN_ITEM_PAD,
} DsTokenItemKind;

/* One button of the strip. first/count: the item's positions in the 77
 * token ids of the prompt (a word may span several tokens). */
typedef struct {
  const char      *label;
  DsTokenItemKind  kind;
  int              first, count;
} DsTokenItem;

#define DS_TYPE_TOKEN_STRIP (ds_token_strip_get_type ())

G_DECLARE_FINAL_TYPE (DsTokenStrip, ds_token_strip, DS, TOKEN_STRIP, GtkWidget)

GtkWidget         *ds_token_strip_new              (void);
void               ds_token_strip_set_items        (DsTokenStrip      *self,
                                                    const DsTokenItem *items,
                                                    int                n);
void               ds_token_strip_set_show_special (DsTokenStrip      *self,
                                                    gboolean           show);
gboolean           ds_token_strip_get_show_special (DsTokenStrip      *self);
int                ds_token_strip_get_selected     (DsTokenStrip      *self);
void               ds_token_strip_select           (DsTokenStrip      *self,
                                                    int                index);
const DsTokenItem *ds_token_strip_get_item         (DsTokenStrip      *self,
                                                    int                index);
int                ds_token_strip_get_n_items      (DsTokenStrip      *self);

G_END_DECLS
