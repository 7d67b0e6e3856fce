/* ds-model-dir.c: placeholder until implemented. */
typedef int ds_placeholder_ds_model_dir;
