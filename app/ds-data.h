/* ds-data.h: where the CLI and the explorer find their data (the built-in
 * model under models/shapes, CLIP's tokenizer under clip-tokenizer).
 *
 * DIFFSCOPE_DATA_DIR when set; else the source tree's resources/ when it has
 * the built-in model (a build run in place); else the installed
 * DATADIR/diffscope that `meson install` fills.
 */
#pragma once

const char *ds_data_dir (void);
