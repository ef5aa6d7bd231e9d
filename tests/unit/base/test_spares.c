/* core/base/spares.h: blocks kept for reuse, at most BH__SPARES_MAX. */
#include <stdlib.h>

#include "base/spares.h"
#include "check.h"

int main(void) {
  bh__spares s = {.size = 48};
  CHECK(bh__spares_take(&s) == NULL); /* nothing kept yet */
  void *a = malloc(48), *b = malloc(48);
  bh__spares_put(&s, a);
  bh__spares_put(&s, b);
  CHECK(bh__spares_take(&s) == b); /* the last one put, warm in cache */
  CHECK(bh__spares_take(&s) == a);
  CHECK(bh__spares_take(&s) == NULL);
  /* past the bound, blocks are freed, not kept */
  for (int i = 0; i < BH__SPARES_MAX + 10; i++)
    bh__spares_put(&s, malloc(48));
  CHECK_INT(s.n, BH__SPARES_MAX);
  bh__spares_drain(&s);
  CHECK_INT(s.n, 0);
  CHECK(bh__spares_take(&s) == NULL);
  free(a);
  free(b);
  return check_finish("base/spares");
}
