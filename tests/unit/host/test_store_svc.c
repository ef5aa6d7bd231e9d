/* core/host/store_svc.c: the rule a plugin's store schema must pass, the
 * same for a descriptor's store_schema (checked at load) and for
 * store_connect's arguments; and the descriptor member read only when the
 * descriptor is large enough to hold it. */
#include <bulkhead/plugin.h>
#include <string.h>

#include "check.h"
#include "host/host.h"

static const bh_migration good[] = {{1, "001_a.sql", "SELECT 1"},
                                    {3, "003_b.sql", "SELECT 1"}};
static const bh_migration twice[] = {{1, "001_a.sql", "SELECT 1"},
                                     {1, "001_b.sql", "SELECT 1"}};
static const bh_migration zero[] = {{0, "000_a.sql", "SELECT 1"}};
static const bh_migration nosql[] = {{1, "001_a.sql", NULL}};

static const char *why(const char *name, const bh_migration *m, size_t n) {
  static char buf[256];
  return bh__store_schema_why(name, m, n, buf, sizeof(buf));
}

static void test_rule(void) {
  CHECK(why("bh_mine", good, 2) == NULL);
  CHECK(why("b", good, 1) == NULL);
  /* the name */
  CHECK(why(NULL, good, 2) != NULL);
  CHECK(why("", good, 2) != NULL);
  CHECK(why("Bh_mine", good, 2) != NULL);
  CHECK(why("1bh", good, 2) != NULL);
  CHECK(why("bh-mine", good, 2) != NULL);
  CHECK(why("bh_mine; DROP", good, 2) != NULL);
  CHECK(why("bh_identity", good, 2) != NULL);
  char longname[65];
  memset(longname, 'a', 64);
  longname[64] = '\0';
  CHECK(why(longname, good, 2) != NULL);
  longname[63] = '\0';
  CHECK(why(longname, good, 2) == NULL);
  /* the migrations */
  CHECK(why("bh_mine", NULL, 0) != NULL);
  CHECK(why("bh_mine", good, 0) != NULL);
  CHECK(why("bh_mine", twice, 2) != NULL);
  CHECK(why("bh_mine", zero, 1) != NULL);
  CHECK(why("bh_mine", nosql, 1) != NULL);
  const char *w = why("bh_mine", twice, 2);
  CHECK(w && strstr(w, "001_b.sql") && strstr(w, "ascend"));
}

static int init(bh_ctx *ctx, const bh_services *svc) {
  (void)ctx;
  (void)svc;
  return 0;
}

static void test_descriptor(void) {
  static const bh_store_schema s = {sizeof(bh_store_schema), "bh_mine", good,
                                    2};
  static const bh_store_schema bad = {sizeof(bh_store_schema), "bh_identity",
                                      good, 2};
  static const bh_store_schema small = {8, "bh_mine", good, 2};
  bh_plugin_desc d = {.size = sizeof(d),
                      .abi_major = BH_ABI_MAJOR,
                      .abi_minor = BH_ABI_MINOR,
                      .name = "mine",
                      .init = init};
  char buf[256];
  CHECK(bh__desc_store_schema(&d) == NULL);
  CHECK(bh__desc_check("mine", &d, buf, sizeof(buf)) == NULL);
  d.store_schema = &s;
  CHECK(bh__desc_store_schema(&d) == &s);
  CHECK(bh__desc_check("mine", &d, buf, sizeof(buf)) == NULL);
  d.store_schema = &bad;
  const char *w = bh__desc_check("mine", &d, buf, sizeof(buf));
  CHECK(w && strstr(w, "bh_identity"));
  d.store_schema = &small;
  w = bh__desc_check("mine", &d, buf, sizeof(buf));
  CHECK(w && strstr(w, "store_schema is 8 bytes"));
  /* a descriptor that ends before the member (the 1.0 layout without
   * reserved slots): the member is not read */
  d.store_schema = &bad;
  d.size = (uint32_t)offsetof(bh_plugin_desc, store_schema);
  CHECK(bh__desc_store_schema(&d) == NULL);
  CHECK(bh__desc_check("mine", &d, buf, sizeof(buf)) == NULL);
}

int main(void) {
  test_rule();
  test_descriptor();
  return check_finish("test_store_svc");
}
