#define UP_NAME up_two
#include "upstream_plugin.inc"
