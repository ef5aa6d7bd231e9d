#define UP_NAME up_one
#include "upstream_plugin.inc"
