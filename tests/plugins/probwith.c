/*
 * Test plugin for the problem_with service (ABI 1.3): GET
 * /t/probwith/{case} answers a Problem with extension members built with
 * the writer, or members the core must refuse.
 */
#include <bulkhead/plugin.h>
#include <string.h>

/* The members of each case, built with the writer. */
static void build(bh_json *j, const char *c) {
  bh_json_obj(j);
  if (strcmp(c, "core") == 0) {
    bh_json_kstr(j, "code", "evil.code");
  } else if (strcmp(c, "dup") == 0) {
    bh_json_kint(j, "a", 1);
    bh_json_kint(j, "a", 2);
  } else {
    bh_json_kstr(j, "hint", "<b>try & see</b>");
    bh_json_kint(j, "count", 3);
    bh_json_kbool(j, "flag", 1);
    bh_json_karr(j, "list");
    bh_json_obj(j);
    bh_json_kstr(j, "provider", "p1");
    bh_json_end(j);
    bh_json_end(j);
  }
  bh_json_end(j);
}

static void problem_get(bh_req *req, void *data) {
  (void)data;
  const char *c = bh_req_param(req, "case");
  if (strcmp(c, "notobj") == 0) {
    bh_problem_with(req, "request.bad_request", NULL, NULL, "[1]", -1);
    return;
  }
  if (strcmp(c, "none") == 0) {
    bh_problem_with(req, "request.bad_request", NULL, NULL, NULL, -1);
    return;
  }
  bh_json j;
  bh_json_init(&j, 0);
  build(&j, c);
  const char *members = bh_json_done(&j, NULL);
  if (strcmp(c, "retry") == 0)
    bh_problem_with(req, "plugin.unavailable", "Try later.", NULL, members, 7);
  else
    bh_problem_with(req, "request.bad_request", NULL, NULL, members, -1);
  bh_json_free(&j);
}

static const bh_route routes[] = {
    BH_ROUTE("GET", "/t/probwith/{case}", problem_get),
};

static int probwith_init(bh_ctx *ctx, const bh_services *svc) {
  if (!BH_SVC_HAS(svc, problem_with)) return -ENOTSUP;
  return bh_routes_add(ctx, routes, BH_COUNT(routes));
}

BH_PLUGIN("probwith", "0.1.0", probwith_init)
