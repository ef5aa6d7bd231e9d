/*
 * The plugin host: the loader (plugins.c), the services table handed to
 * plugins (services.c and services_*.c, sharing host/services.h), route
 * registration (routes.c) and proxy routes (proxy.c).
 */
#ifndef BH_CORE_HOST_HOST_H
#define BH_CORE_HOST_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "bulkhead/plugin.h"
#include "config/config.h"
#include "host/plugin-t.h"

struct bh_upstream;

/* plugins.c: loader */
/* Writes what ops see of every plugin (state, routes, catalogue) to the
 * shared mapping. */
void bh__plugins_publish(bh__daemon *d);
int bh__plugins_load(bh__daemon *d);
/* Where the plugins of cfg are ([server] plugin_dir, else found from the
 * executable's place), and one plugin's .so there; -ENAMETOOLONG. */
void bh__plugin_dir(const bh__config *cfg, char *out, size_t len);
int bh__plugin_path(const bh__plugin_conf *pc, const char *dir, char *out,
                    size_t len);
/* What is wrong with the descriptor the entry of [plugin.`name`] returned
 * (ABI, callbacks, name, declared store schema), or NULL; buf holds the
 * reason when one needs formatting. */
const char *bh__desc_check(const char *name, const bh_plugin_desc *desc,
                           char *buf, size_t buflen);
int bh__plugins_start(bh__daemon *d);
void bh__plugins_stop(bh__daemon *d);
void bh__plugins_unload(bh__daemon *d);
/* The plugin owning `path` by longest mount prefix, or NULL. */
bh__plugin *bh__plugin_for_path(bh__daemon *d, const char *path);
const char *bh__plugin_state_name(int state);
/* The code catalogue as JSON (for --list-codes and GET /admin/errors). */
int bh__catalogue_json(bh__daemon *d, bh__buf *out);

/* services.c */
const bh_services *bh__services(void);
/* store_svc.c: the store slots (ABI 1.3 (store)). */
int bh__svc_store_info(bh_ctx *ctx, bh_store_info *out);
int bh__svc_store_connect(bh_ctx *ctx, const char *schema,
                          const bh_migration *m, size_t n, void **conn,
                          char *err, size_t errlen);
void bh__svc_store_disconnect(bh_ctx *ctx, void *conn);
/* The rule store_connect applies to a schema and its migrations (name
 * [a-z][a-z0-9_]{0,62} and not the core's, at least one migration, each
 * with a name and SQL, versions ascending from 1): NULL, or the broken
 * rule in buf. */
const char *bh__store_schema_why(const char *name, const bh_migration *m,
                                 size_t n, char *buf, size_t buflen);
/* The descriptor's store_schema (NULL: none, or a descriptor too short to
 * hold one), and what is wrong with it (NULL when fine or absent). */
const bh_store_schema *bh__desc_store_schema(const bh_plugin_desc *desc);
const char *bh__desc_schema_why(const bh_plugin_desc *desc, char *buf,
                                size_t buflen);
/* plugin_schemas.c: the declared schemas of the enabled plugins on
 * [store] backend = postgres (nothing to do on sqlite). check: `bulkhead
 * -t`, d's initialized plugins, one log line each, every schema checked;
 * 0, or -EIO with the first failure in err. migrate: `bulkhead migrate`, each
 * plugin loaded only as far as its descriptor (dlopen, entry, checks:
 * none of its code runs), its schema migrated; 0, or a negative errno
 * at the first failure, with one line in err. */
int bh__plugin_schemas_check(bh__daemon *d, char *err, size_t errlen);
int bh__plugin_schemas_migrate(const bh__config *cfg, char *err, size_t errlen);
/* Percent-decodes the route's parameters into req->params before the
 * handler runs. 0; -EINVAL when one decodes to a NUL, '\', '?', '#', a
 * "." or ".." segment, or (a {name} capture) a '/'; -ENOMEM. */
int bh__params_decode(bh_req *req);

/* services_sdk.c: the slots of ABI 1.3 */
int bh__svc_secret_get(bh_ctx *ctx, const char *key, char **out,
                       size_t *outlen);
void bh__svc_secret_free(char *secret, size_t len);
int bh__svc_upstream_header_get(const bh_upstream_result *res, const char *name,
                                char *buf, size_t buflen);
int bh__svc_body_get(bh_req *req, const char *pointer, bh_body_value *out,
                     size_t out_size);
const char *bh__svc_body_key_at(bh_req *req, const char *pointer, size_t i);
int bh__svc_problem_with(bh_req *req, const char *code, const char *detail,
                         const bh_upstream_result *res,
                         const char *members_json, long retry_after_s);

/* routes.c */
/* Registers a route for p (init only); the one path for plugin routes and
 * proxy routes. */
int bh__route_register(bh__plugin *p, const bh_route *r);
/* Records the first registration failure of p's init (reported by the
 * loader). */
void bh__reg_fail(bh__plugin *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* limit_key.c */
/* The bucket key of req under a policy keyed by `kind` (enum bh__rl_key):
 * "k:<digest>" a verified API key, "p:<digest>" a principal, else
 * "a:<address>". */
void bh__limit_key(bh_req *req, int kind, char *out, size_t len);
/* The RateLimit fields' pk for a bucket key: a short digest, base64. */
void bh__limit_pk(const char *key, char *out, size_t len);

/* services_ai.c: the ABI 1.3 (ai) slots */
int bh__svc_upstream_fallback(bh_req *req, struct bh_upstream *from,
                              struct bh_upstream *to);
int bh__svc_budget_add(bh_ctx *ctx, const char *policy);
int bh__svc_budget_charge(bh_req *req, const char *policy, uint64_t tokens,
                          uint32_t flags, long *retry_after_s);
/* composites.c: the composite_add slot (ABI 1.3) and its copies */
int bh__svc_composite_add(bh_ctx *ctx, const bh_composite *c);
void bh__plugin_composites_free(bh__plugin *p);

/* proxy.c */
/* The lines of a head block (bh__call_headers form) a proxy route
 * relays, appended to out: hop-by-hop headers, those Connection names,
 * framing and Date stay behind. *length: the Content-Length to frame the
 * client's answer with, or -1 (chunked) when the upstream gave none, gave
 * several or a malformed one, or also gave Transfer-Encoding. 0 or
 * -ENOMEM. */
int bh__proxy_head_lines(const char *block, bh__buf *out, long long *length);
/* 1 when route is a proxy route whose upstream takes a streamed request
 * body (the core's own client): the gateway then streams it. */
int bh__proxy_streams_body(const struct bh__route *route);
int bh__proxy_add(bh__plugin *p, const char *prefix, struct bh_upstream *u,
                  uint32_t flags);

#endif
