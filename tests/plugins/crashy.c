/*
 * crashy: test plugin that crashes or hangs its worker on demand, for the
 * crash and hang quarantine tests. Mounted at /t/crashy.
 *
 *   GET /t/crashy/ok     200
 *   GET /t/crashy/segv   writes through a NULL pointer (SIGSEGV)
 *   GET /t/crashy/abort  abort() (SIGABRT)
 *   GET /t/crashy/spin   loops forever on the loop thread (no heartbeat)
 */
#include <bulkhead/plugin.h>

#include <stdlib.h>
#include <sys/mman.h>

static void ok_get(bh_req *req, void *data) {
  (void)data;
  bh_respond_json(req, 200, "{\"plugin\":\"crashy\",\"status\":\"ok\"}");
}

static void segv_get(bh_req *req, void *data) {
  (void)req;
  (void)data;
  /* A store to a page mapped with no access: a genuine SIGSEGV, at an
   * address no sanitizer flags beforehand (a NULL store would be caught
   * by UBSan as undefined behaviour, and a compiler may turn it into a
   * trap instruction). */
  volatile int *p =
      mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) abort();
  *p = 1;
}

static void abort_get(bh_req *req, void *data) {
  (void)req;
  (void)data;
  abort();
}

static void spin_get(bh_req *req, void *data) {
  (void)req;
  (void)data;
  /* The volatile read keeps the loop from being optimised away. */
  volatile int spin = 1;
  while (spin) {
  }
}

#define ROUTE(p, h)                                                            \
  { .size = sizeof(bh_route), .method = "GET", .pattern = p, .handler = h }

static const bh_route routes[] = {
    ROUTE("/t/crashy/ok", ok_get),
    ROUTE("/t/crashy/segv", segv_get),
    ROUTE("/t/crashy/abort", abort_get),
    ROUTE("/t/crashy/spin", spin_get),
};

static int crashy_init(bh_ctx *ctx, const bh_services *svc) {
  (void)svc;
  for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
    int rc = bh_route_add(ctx, &routes[i]);
    if (rc < 0) return rc;
  }
  bh_log(ctx, BH_LOG_INFO, "crashy ready");
  return 0;
}

static void crashy_fini(bh_ctx *ctx) {
  (void)ctx;
}

static const bh_plugin_desc crashy_desc = {
    .size = sizeof(bh_plugin_desc),
    .abi_major = BH_ABI_MAJOR,
    .abi_minor = BH_ABI_MINOR,
    .name = "crashy",
    .version = "0.1.0",
    .init = crashy_init,
    .fini = crashy_fini,
};

BH_PLUGIN_ENTRY(crashy_desc)
