/*
 * core/auth_revoked.c on a process-local table (no shared mapping):
 * revocations found at once and forgotten when they expire, slots reused,
 * and a full neighbourhood failing closed (tokens issued until then are
 * refused, later ones are not) rather than evicting anyone.
 */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "identity/auth.h"

static void test_add_check_expire(void) {
  bh__revoked_reset();
  CHECK_INT(bh__revoked_check("ses_a", 100, 100), 0); /* no set: nothing */
  CHECK_INT(bh__revoked_init(1024), 0);
  CHECK_INT(bh__revoked_add("ses_a", 200, 100), 0);
  CHECK_INT(bh__revoked_check("ses_a", 90, 150), BH__REVOKED);
  CHECK_INT(bh__revoked_check("ses_b", 90, 150), 0);
  /* with the key computed before (the token cache keeps it) */
  uint64_t ka[2], kb[2];
  bh__revoked_key("ses_a", ka);
  bh__revoked_key("ses_b", kb);
  CHECK_INT(bh__revoked_check_key(ka, 90, 150), BH__REVOKED);
  CHECK_INT(bh__revoked_check_key(kb, 90, 150), 0);
  CHECK_INT(bh__revoked_check_key(NULL, 90, 150), 0);
  CHECK_INT(bh__revoked_check("", 90, 150), 0);
  CHECK_INT(bh__revoked_check(NULL, 90, 150), 0);
  /* again: the later end wins, the entry is not doubled */
  CHECK_INT(bh__revoked_add("ses_a", 300, 150), 0);
  CHECK_INT(bh__revoked_add("ses_a", 250, 150), 0);
  CHECK_INT(bh__revoked_check("ses_a", 90, 299), BH__REVOKED);
  CHECK_INT(bh__revoked_check("ses_a", 90, 300), 0); /* expired */
  bh__revoked_reset();
}

static void test_full_fails_closed(void) {
  bh__revoked_reset();
  CHECK_INT(bh__revoked_init(64), 0); /* one neighbourhood: every slot */
  char sid[32];
  for (int i = 0; i < 64; i++) {
    snprintf(sid, sizeof(sid), "ses_%d", i);
    CHECK_INT(bh__revoked_add(sid, 1000, 100), 0);
  }
  CHECK_INT(bh__revoked_check("ses_live", 100, 100), 0);
  CHECK_INT(bh__revoked_add("ses_64", 1000, 110), -ENOSPC);
  /* no eviction: every recorded one still refused */
  for (int i = 0; i < 64; i++) {
    snprintf(sid, sizeof(sid), "ses_%d", i);
    CHECK(bh__revoked_check(sid, 100, 120) != 0);
  }
  /* the one without a slot, and every token issued until the overflow,
   * are refused as unsure; a token issued later passes */
  CHECK_INT(bh__revoked_check("ses_64", 105, 120), BH__REVOKED_UNSURE);
  CHECK_INT(bh__revoked_check("ses_live", 110, 120), BH__REVOKED_UNSURE);
  CHECK_INT(bh__revoked_check("ses_live", 0, 120), BH__REVOKED_UNSURE);
  CHECK_INT(bh__revoked_check("ses_live", 111, 120), 0);
  /* until the longest token lifetime has passed */
  CHECK_INT(bh__revoked_check("ses_live", 100, 1000), 0);
  /* expired slots are reused */
  CHECK_INT(bh__revoked_add("ses_65", 2000, 1000), 0);
  CHECK_INT(bh__revoked_check("ses_65", 999, 1001), BH__REVOKED);
  CHECK_INT(bh__revoked_check("ses_1", 900, 1001), 0);
  bh__revoked_reset();
}

int main(void) {
  if (sodium_init() < 0) return 1;
  test_add_check_expire();
  test_full_fails_closed();
  return check_finish("test_auth_revoked");
}
