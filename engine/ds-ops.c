/* ds-ops.c: placeholder until implemented. */
typedef int ds_placeholder_ds_ops;
