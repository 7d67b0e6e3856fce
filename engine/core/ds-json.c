/* ds-json.c: see ds-json.h. */
#include "ds-json.h"

const char *
ds_json_type_name (const json_t *v)
{
  switch (json_typeof (v))
    {
    case JSON_OBJECT:
      return "an object";
    case JSON_ARRAY:
      return "an array";
    case JSON_STRING:
      return "a string";
    case JSON_INTEGER:
      return "an integer";
    case JSON_REAL:
      return "a real number";
    case JSON_TRUE:
    case JSON_FALSE:
      return "a boolean";
    case JSON_NULL:
      return "null";
    }
  return "?";
}
