/*
 * The configuration, loaded whole. config/ parses the file and checks
 * [server] and [plugin.NAME]; the sections owned by higher layers are
 * checked here, by their owners, right after: [upstream.NAME]
 * (upstream_config.c), [rate_limit.NAME] (limits.c) and [auth]
 * (auth_conf.c, whose secrets and key files are resolved now) and [redis]
 * (upstream/redis_conf.c, whose URL may be a secret).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "gateway/composite.h"
#include "gateway/cors.h"
#include "identity/auth.h"
#include "policy/ratelimit.h"
#include "proc/load.h"
#include "upstream/limits.h"
#include "upstream/redis.h"
#include "upstream/upstream.h"

static int bh__sections_check(bh__config *cfg, char *err, size_t errlen) {
  for (size_t i = 0; i < cfg->nsections; i++) {
    const bh__section *s = &cfg->sections[i];
    char why[512];
    int rc = 0;
    if (strncmp(s->name, "upstream.", 9) == 0) {
      rc = bh__upstream_config_check(cfg, s, why, sizeof why);
    } else if (strncmp(s->name, "rate_limit.", 11) == 0) {
      bh__rl_policy pol;
      rc = bh__limit_policy_parse(cfg, s->name + 11, &pol, why, sizeof why);
    }
    if (rc) {
      if (err && errlen) snprintf(err, errlen, "%s", why);
      return rc;
    }
  }
  /* the policies a plugin's mount or routes name from the config */
  for (size_t i = 0; i < cfg->nplugins; i++) {
    const bh__plugin_conf *p = &cfg->plugins[i];
    for (size_t j = 0; j <= p->nroutes; j++) {
      const char *name =
          j < p->nroutes ? p->routes[j].rate_limit : p->rate_limit;
      bh__rl_policy pol;
      char why[512];
      int bad =
          name && bh__limit_policy_parse(cfg, name, &pol, why, sizeof why) != 0;
      if (name && !bad && pol.unit == BH__RL_UNIT_TOKENS) {
        /* a route takes one per request: a token budget is a plugin's */
        snprintf(why, sizeof why,
                 "[rate_limit.%s] counts tokens (unit = tokens), not "
                 "requests",
                 name);
        bad = 1;
      }
      if (bad) {
        if (err && errlen)
          snprintf(err, errlen, "%s:%d: [plugin.%s] %s: %s", cfg->source,
                   j < p->nroutes ? p->routes[j].line : p->line, p->name,
                   j < p->nroutes ? "routes" : "rate_limit", why);
        return -EINVAL;
      }
    }
  }
  return 0;
}

int bh__load(const char *path, bh__config *cfg, char *err, size_t errlen) {
  int rc = bh__config_load(path, cfg, err, errlen);
  if (rc) return rc;
  rc = bh__sections_check(cfg, err, errlen);
  /* [auth]: secrets and key files resolved now, so -t and a reload refuse
   * what a worker would */
  if (rc == 0) rc = bh__auth_conf_load(cfg, &cfg->auth, err, errlen);
  if (rc == 0) rc = bh__cors_conf_load(cfg, &cfg->cors, err, errlen);
  if (rc == 0) rc = bh__redis_conf_load(cfg, &cfg->redis, err, errlen);
  if (rc == 0) rc = bh__composite_conf_check(cfg, err, errlen);
  if (rc) bh__unload(cfg);
  return rc;
}

void bh__unload(bh__config *cfg) {
  if (!cfg) return;
  bh__auth_conf_free(cfg->auth);
  cfg->auth = NULL;
  bh__cors_conf_free(cfg->cors);
  cfg->cors = NULL;
  bh__redis_conf_free(cfg->redis);
  cfg->redis = NULL;
  bh__config_free(cfg);
}
