/* ds-json.h: small helpers around jansson shared by the engine's readers. */
#pragma once

#include <jansson.h>

/* "an object", "an array", "a string", "an integer", "a real number",
 * "a boolean", "null": for messages like "expected an integer, got a string". */
const char *ds_json_type_name (const json_t *v);
