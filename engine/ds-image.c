/* ds-image.c: placeholder until implemented. */
typedef int ds_placeholder_ds_image;
