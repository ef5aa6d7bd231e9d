/* bh__redis_url_parse: the [redis] url forms (redis:// with user,
 * password, port, database, IPv6; unix:// with ?db=), the refusals, and
 * the shown form, which never carries the password. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "upstream/redis.h"

static bh__redis_conf parse(const char *url, int want_rc) {
  bh__redis_conf c;
  memset(&c, 0, sizeof(c));
  char why[256] = "";
  CHECK_INT(bh__redis_url_parse(url, &c, why, sizeof(why)), want_rc);
  if (want_rc) CHECK(why[0] != '\0');
  return c;
}

static void drop(bh__redis_conf *c) {
  free(c->host);
  free(c->unix_path);
  free(c->user);
  free(c->password);
}

static void test_tcp(void) {
  bh__redis_conf c = parse("redis://127.0.0.1:6380", 0);
  CHECK_STR(c.host, "127.0.0.1");
  CHECK_INT(c.port, 6380);
  CHECK(c.password == NULL && c.user == NULL);
  CHECK_INT(c.db, 0);
  CHECK_STR(c.shown, "redis://127.0.0.1:6380/0");
  drop(&c);

  c = parse("redis://cache.internal", 0);
  CHECK_STR(c.host, "cache.internal");
  CHECK_INT(c.port, 6379);
  drop(&c);

  c = parse("redis://:s3cret@10.0.0.5:7000/2", 0);
  CHECK_STR(c.password, "s3cret");
  CHECK(c.user == NULL);
  CHECK_INT(c.db, 2);
  CHECK_STR(c.shown, "redis://:***@10.0.0.5:7000/2");
  CHECK(strstr(c.shown, "s3cret") == NULL);
  drop(&c);

  c = parse("redis://gateway:p@ss:word@host/1", 0);
  CHECK_STR(c.user, "gateway");
  CHECK_STR(c.password, "p@ss:word"); /* the last @ ends the userinfo */
  CHECK_STR(c.host, "host");
  CHECK_STR(c.shown, "redis://gateway:***@host:6379/1");
  drop(&c);

  c = parse("redis://[::1]:6390", 0);
  CHECK_STR(c.host, "::1");
  CHECK_INT(c.port, 6390);
  drop(&c);
}

static void test_unix(void) {
  bh__redis_conf c = parse("unix:///run/redis/redis.sock", 0);
  CHECK_STR(c.unix_path, "/run/redis/redis.sock");
  CHECK(c.host == NULL);
  CHECK_STR(c.shown, "unix:///run/redis/redis.sock");
  drop(&c);
  c = parse("unix:///tmp/r.sock?db=3", 0);
  CHECK_STR(c.unix_path, "/tmp/r.sock");
  CHECK_INT(c.db, 3);
  drop(&c);
}

static void test_refusals(void) {
  const char *bad[] = {"http://127.0.0.1",     "redis://",
                       "redis://host:0",       "redis://host:65536",
                       "redis://host:12x",     "redis://host/abc",
                       "redis://[::1",         "redis://[::1]x",
                       "unix://relative.sock", "unix:///s.sock?x=1",
                       "unix:///s.sock?db=",   "redis://:pw@",
                       "redis://host/99999",   ""};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    bh__redis_conf c = parse(bad[i], -EINVAL);
    drop(&c);
  }
}

int main(void) {
  test_tcp();
  test_unix();
  test_refusals();
  return check_finish("test_redis_conf");
}
