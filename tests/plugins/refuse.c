/*
 * refuse: test plugin whose entry refuses every core by returning NULL. The
 * core logs the refusal and loads the other plugins.
 */
#include <bulkhead/plugin.h>

BH_EXPORT const bh_plugin_desc *bulkhead_plugin_entry(uint16_t maj,
                                                      uint16_t min) {
  (void)maj;
  (void)min;
  return NULL;
}
