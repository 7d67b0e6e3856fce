/* ds-tokenizer.c: placeholder until implemented. */
typedef int ds_placeholder_ds_tokenizer;
