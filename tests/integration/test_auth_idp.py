"""Login against the identity provider, and the error map: wrong password
401 auth.invalid_credentials, disabled user 403 auth.user_disabled, the IdP
down / 5xx / timeout 503 auth.idp_unavailable (while already logged-in
users keep working and silent refresh still works), too many failures for
an account or an address 429 auth.too_many_attempts with Retry-After,
malformed bodies 400 request.invalid_body. Then the embedded identity
provider (`bulkhead user add EMAIL`)."""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from auth_env import (ACCOUNTS, LOOKUP, SIGNIN, Jar, auth_config,  # noqa
                      bearer, browser_login, login, parse_set_cookies,
                      start_sim)
from harness import BIN, Daemon, render_config  # noqa: E402
from upstream_env import closed_port  # noqa: E402


class IdpTestBase(unittest.TestCase):
    AUTH = {"login_max_failures_per_address": 1000}
    UPSTREAM = None
    PLUGIN = None

    @classmethod
    def setUpClass(cls):
        cls.sim = start_sim()
        try:
            cls.d = Daemon(auth_config(cls.sim.url, auth=cls.AUTH,
                                       upstream=cls.UPSTREAM,
                                       plugin_auth=cls.PLUGIN))
        except BaseException:
            cls.sim.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.d.stop()
        finally:
            cls.sim.stop()

    def setUp(self):
        self.sim.clear()
        self.sim.reset_stats()

    def assertProblem(self, r, status, code, retryable=None):
        where = "%r%s" % (r, self.d.diag(10) if r.status != status else "")
        self.assertEqual(r.status, status, where)
        self.assertEqual(r.headers.get("content-type"),
                         "application/problem+json", where)
        self.assertEqual(r.code, code, where)
        if retryable is not None:
            self.assertIs(r.ext.get("retryable"), retryable, where)


class LoginErrorsTest(IdpTestBase):
    AUTH = {"login_max_failures": 100,
            "login_max_failures_per_address": 1000}

    def test_success_and_what_the_idp_saw(self):
        r = login(self.d, "alice", include_refresh=True)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json()["user"]["id"], "sim_user_alice")
        self.assertTrue(r.json()["refreshToken"].startswith("rt_"))
        self.assertEqual(self.sim.count(SIGNIN), 1)
        self.assertEqual(self.sim.count(LOOKUP), 1)
        req = self.sim.requests(SIGNIN)[-1]
        self.assertEqual(req["query"], "key=sim-api-key")
        self.assertIn('"returnSecureToken":true', req["body"])
        # no password, email or token in the daemon's log
        for line in self.d.lines:
            for secret in (ACCOUNTS["alice"][0], ACCOUNTS["alice"][1],
                           r.json()["accessToken"], r.json()["refreshToken"]):
                self.assertNotIn(secret, line)

    def test_wrong_password_and_unknown_email(self):
        r = login(self.d, "alice", password="wrong-password")
        self.assertProblem(r, 401, "auth.invalid_credentials", False)
        self.assertEqual(r.header_count("set-cookie"), 0)
        r = login(self.d, "nobody@example.com", password="whatever-1")
        self.assertProblem(r, 401, "auth.invalid_credentials", False)
        # the same detail either way: nothing tells which accounts exist
        self.assertEqual(r.json()["detail"], "The email or password is "
                         "incorrect.")
        self.assertEqual(self.sim.count(LOOKUP), 0)

    def test_disabled_user(self):
        r = login(self.d, "disabled")
        self.assertProblem(r, 403, "auth.user_disabled", False)
        # disabled at lookup time (the toolkit's account record)
        self.sim.set_behavior(path=LOOKUP, status=200, body={
            "users": [{"localId": "sim_user_bob", "disabled": True}]})
        r = login(self.d, "bob")
        self.assertProblem(r, 403, "auth.user_disabled", False)

    def test_malformed_bodies(self):
        for body in ({"email": "a@b.c"}, {"password": "x"},
                     {"email": "alice@example.com", "password": "p",
                      "extra": 1},
                     {"email": 5, "password": "p"}, "not json", ""):
            r = self.d.post("/v1/auth/login", body=body, headers={
                "Content-Type": "application/json"})
            self.assertProblem(r, 400, "request.invalid_body")
        self.assertEqual(self.sim.count(SIGNIN), 0)

    def test_idp_says_too_many_attempts(self):
        self.sim.set_behavior(path=SIGNIN, preset="idp_too_many_attempts")
        r = login(self.d, "carol")
        self.assertProblem(r, 429, "auth.too_many_attempts", True)
        self.assertEqual(r.headers.get("retry-after"), "60")
        self.assertEqual(r.ext.get("retryAfterSeconds"), 60)

    def test_idp_rejects_our_request(self):
        # the provider refuses the API key: an ops problem, not the user's
        self.sim.set_behavior(path=SIGNIN, status=403, body={
            "error": {"code": 403, "message": "PERMISSION_DENIED"}})
        r = login(self.d, "carol")
        self.assertProblem(r, 503, "auth.idp_misconfigured", False)


class IdpDownTest(IdpTestBase):
    UPSTREAM = {"timeout_ms": 700}

    def test_idp_down_only_login_fails(self):
        d = self.d
        jar = browser_login(d, "alice")
        api = login(d, "bob", include_refresh=True).json()
        for rule in ({"status": 503, "headers": {"Retry-After": "9"}},
                     {"preset": "idp_500"},
                     {"action": "reset"},
                     {"action": "close"},
                     {"delay_ms": 2500}):
            self.sim.clear()
            self.sim.set_behavior(path=SIGNIN, **rule)
            t0 = time.monotonic()
            r = login(d, "carol")
            self.assertProblem(r, 503, "auth.idp_unavailable", True)
            self.assertEqual(r.json()["detail"],
                             "Authentication service unavailable.")
            if "headers" in rule:
                self.assertEqual(r.headers.get("retry-after"), "9")
            self.assertLess(time.monotonic() - t0, 2.4 * harness.SLACK)
            # logged-in users keep working meanwhile...
            w = d.get("/t/whoami", headers=jar.headers())
            self.assertEqual(w.status, 200, (rule, w))
            w = d.get("/v1/auth/me", headers=bearer(api["accessToken"]))
            self.assertEqual(w.status, 200, (rule, w))
            # ...and silent refresh still works (no IdP involved)
            w = jar.update(d.get("/t/whoami", headers={
                "Cookie": "__refresh=" + jar.get("__refresh")}))
            self.assertEqual(w.status, 200, (rule, w))
            self.assertIn("__refresh", parse_set_cookies(w))
            # so does an API client's explicit refresh
            w = d.post("/v1/auth/refresh",
                       body={"refreshToken": api["refreshToken"]})
            self.assertEqual(w.status, 200, (rule, w))
            api["refreshToken"] = w.json()["refreshToken"]
            api["accessToken"] = w.json()["accessToken"]
        # a failing account lookup is the IdP failing too
        self.sim.clear()
        self.sim.set_behavior(path=LOOKUP, status=500)
        self.assertProblem(login(d, "carol"), 503, "auth.idp_unavailable")
        self.sim.clear()
        self.assertEqual(login(d, "carol").status, 200)


class IdpUnreachableTest(unittest.TestCase):
    def test_connection_refused(self):
        url = "http://127.0.0.1:%d" % closed_port()
        with Daemon(auth_config(url)) as d:
            r = d.post("/v1/auth/login", body={"email": "a@example.com",
                                               "password": "x"})
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.code, "auth.idp_unavailable")
            self.assertIs(r.ext["retryable"], True)


class ThrottleAccountTest(IdpTestBase):
    # the lock lasts between lockout - 1 and lockout seconds (unix seconds)
    AUTH = {"login_max_failures": 3, "login_lockout_s": 3,
            "login_max_failures_per_address": 1000}

    def test_account_lockout(self):
        d = self.d
        for _ in range(3):
            r = login(d, "carol", password="wrong-password")
            self.assertProblem(r, 401, "auth.invalid_credentials")
        t_locked = time.time()
        # locked: even the right password is refused, without asking the IdP
        r = login(d, "carol")
        self.assertProblem(r, 429, "auth.too_many_attempts", True)
        ra = int(r.headers["retry-after"])
        self.assertEqual(r.ext["retryAfterSeconds"], ra)
        self.assertTrue(1 <= ra <= 3, ra)
        self.assertEqual(self.sim.count(SIGNIN), 3)
        # the account is what is locked: another one logs in
        self.assertEqual(login(d, "bob").status, 200)
        # email case does not dodge the lock
        r = login(d, "CAROL@example.com", password="carol-password-3")
        self.assertProblem(r, 429, "auth.too_many_attempts")
        time.sleep(max(0, t_locked + 3.1 - time.time()))
        r = login(d, "carol")
        self.assertEqual(r.status, 200, r)
        # a success forgets the failures
        for _ in range(2):
            login(d, "carol", password="wrong-password")
        self.assertEqual(login(d, "carol").status, 200)


class ThrottleAddressTest(IdpTestBase):
    AUTH = {"login_max_failures": 100, "login_lockout_s": 3,
            "login_max_failures_per_address": 4}

    def test_address_lockout(self):
        for i in range(4):
            r = login(self.d, "nobody%d@example.com" % i, password="nope-1")
            self.assertProblem(r, 401, "auth.invalid_credentials")
        r = login(self.d, "alice")
        self.assertProblem(r, 429, "auth.too_many_attempts", True)
        self.assertTrue(r.headers.get("retry-after"))


def concurrent_logins(d, emails, password, n=40):
    """n logins at once (each on its own connection, released together by
    a barrier); their (status, code) pairs."""
    barrier = threading.Barrier(n)
    out = [None] * n

    def one(i):
        c = d.connection(timeout=20)
        c.connect()  # connected before the barrier: the requests race
        barrier.wait(10)
        try:
            r = d.request("POST", "/v1/auth/login", conn=c, body={
                "email": emails[i % len(emails)], "password": password})
            out[i] = (r.status, r.code)
        finally:
            c.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


class LockoutRaceTest(IdpTestBase):
    """40 concurrent wrong passwords against one account, over two worker
    processes: the attempt is reserved in the store before the password
    is checked, so exactly login_max_failures reach the IdP."""
    AUTH = {"login_max_failures": 5, "login_lockout_s": 60,
            "login_max_failures_per_address": 1000}

    @classmethod
    def setUpClass(cls):
        cls.sim = start_sim()
        try:
            cls.d = Daemon(auth_config(cls.sim.url, auth=cls.AUTH,
                                       server={"workers": 2}))
        except BaseException:
            cls.sim.stop()
            raise

    def test_concurrent_wrong_passwords_one_account(self):
        out = concurrent_logins(self.d, ["carol@example.com"], "wrong-pw-1")
        verified = out.count((401, "auth.invalid_credentials"))
        locked = out.count((429, "auth.too_many_attempts"))
        self.assertEqual((verified, locked), (5, 35), out)
        self.assertEqual(self.sim.count(SIGNIN), 5)
        # still locked, the right password included, and the IdP unasked
        self.assertProblem(login(self.d, "carol"), 429,
                           "auth.too_many_attempts")
        self.assertEqual(self.sim.count(SIGNIN), 5)


class AddressLockoutRaceTest(LockoutRaceTest):
    AUTH = {"login_max_failures": 100, "login_lockout_s": 60,
            "login_max_failures_per_address": 5}

    def test_concurrent_wrong_passwords_one_account(self):
        pass

    def test_concurrent_wrong_passwords_one_address(self):
        emails = ["nobody%d@example.com" % i for i in range(40)]
        out = concurrent_logins(self.d, emails, "wrong-pw-2")
        verified = out.count((401, "auth.invalid_credentials"))
        locked = out.count((429, "auth.too_many_attempts"))
        self.assertEqual((verified, locked), (5, 35), out)
        self.assertEqual(self.sim.count(SIGNIN), 5)


class IdpOutageTest(IdpTestBase):
    """An attempt the IdP could not judge gives its reservation back."""
    AUTH = {"login_max_failures": 2, "login_lockout_s": 60,
            "login_max_failures_per_address": 2}
    UPSTREAM = {"timeout_ms": 700}

    def test_outages_do_not_lock(self):
        self.sim.set_behavior(path=SIGNIN, status=503)
        for _ in range(4):
            self.assertProblem(login(self.d, "carol"), 503,
                               "auth.idp_unavailable")
        self.sim.clear()
        self.assertProblem(login(self.d, "disabled"), 403,
                           "auth.user_disabled")
        self.assertEqual(login(self.d, "carol").status, 200)
        # a success gave back its attempt on the address: two wrong ones
        # there still fit
        for _ in range(2):
            self.assertProblem(login(self.d, "bob", password="wrong-pw-3"),
                               401, "auth.invalid_credentials")
        self.assertProblem(login(self.d, "alice"), 429,
                           "auth.too_many_attempts")


class LocalIdpTest(unittest.TestCase):
    """idp = local: accounts in the core's store, created with the CLI."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="bulkhead-auth-local-")
        self.cfg = auth_config(idp="local", server={
            "data_dir": os.path.join(self.tmp, "data")})
        self.path = os.path.join(self.tmp, "cli.ini")
        sections = dict(self.cfg)
        sections["server"] = dict(sections["server"],
                                  listen="127.0.0.1:0",
                                  admin_listen="127.0.0.1:0")
        with open(self.path, "w") as f:
            f.write(render_config(sections))

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def user(self, *args, password=None):
        env = dict((k, v) for k, v in os.environ.items()
                   if not k.startswith("BULKHEAD_"))
        return subprocess.run([BIN, "user"] + list(args) + ["-c", self.path],
                              input=(password + "\n") if password else "",
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, env=env, timeout=30)

    def test_local_accounts(self):
        p = self.user("add", "dave@example.com", password="dave-password-4")
        self.assertEqual(p.returncode, 0, p.stderr)
        uid = p.stdout.strip()
        self.assertTrue(uid.startswith("usr_"), p.stdout)
        p = self.user("add", "Dave@Example.com", password="other-password")
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("exists already", p.stderr)
        p = self.user("add", "erin@example.com", password="short")
        self.assertNotEqual(p.returncode, 0)
        p = self.user("add", "not-an-email", password="long-enough-1")
        self.assertEqual(p.returncode, 2, p.stderr)
        with Daemon(self.cfg) as d:
            r = login(d, "dave@example.com", password="dave-password-4")
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json()["user"]["id"], uid)
            w = d.get("/t/whoami", headers=bearer(r.json()["accessToken"]))
            self.assertEqual(w.json()["userId"], uid)
            r = login(d, "dave@example.com", password="dave-password-5")
            self.assertEqual((r.status, r.code),
                             (401, "auth.invalid_credentials"))
            r = login(d, "nobody@example.com", password="dave-password-4")
            self.assertEqual((r.status, r.code),
                             (401, "auth.invalid_credentials"))
            # while the daemon runs
            self.assertEqual(self.user("disable", "dave@example.com")
                             .returncode, 0)
            r = login(d, "dave@example.com", password="dave-password-4")
            self.assertEqual((r.status, r.code), (403, "auth.user_disabled"))
            self.assertEqual(self.user("enable", "dave@example.com")
                             .returncode, 0)
            r = login(d, "dave@example.com", password="dave-password-4")
            self.assertEqual(r.status, 200, r)
            for line in d.lines:
                self.assertNotIn("dave-password-4", line)
                self.assertNotIn("dave@example.com", line)
        p = self.user("disable", "nobody@example.com")
        self.assertEqual(p.returncode, 1)
        self.assertIn("no user", p.stderr)

    def run_bin(self, args, password=None):
        env = dict((k, v) for k, v in os.environ.items()
                   if not k.startswith("BULKHEAD_"))
        return subprocess.run([BIN] + list(args),
                              input=(password + "\n") if password else "",
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              universal_newlines=True, env=env, timeout=30)

    def test_options_before_the_subcommand_and_help(self):
        # -c before the subcommand, as after it
        p = self.run_bin(["-c", self.path, "user", "add", "fay@example.com"],
                         password="fay-password-1")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(p.stdout.strip().startswith("usr_"), p.stdout)
        p = self.run_bin(["--config", self.path, "user", "disable",
                          "fay@example.com"])
        self.assertEqual(p.returncode, 0, p.stderr)
        p = self.run_bin(["user", "add", "fay@example.com", "-c", self.path],
                         password="fay-password-1")
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("exists already", p.stderr)
        # help: exit 0, usage on stdout, before or after the verb
        for args in (["user", "--help"], ["user", "-h"],
                     ["user", "add", "--help"],
                     ["-c", self.path, "user", "--help"]):
            with self.subTest(args=args):
                p = self.run_bin(args)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertIn("bulkhead [-c FILE] user add EMAIL", p.stdout)
        p = self.run_bin(["user"])
        self.assertEqual(p.returncode, 2)
        self.assertIn("usage:", p.stderr)
        # options of the daemon do not mean anything to the subcommand
        p = self.run_bin(["-t", "user", "add", "x@example.com"])
        self.assertEqual(p.returncode, 2)
        self.assertIn("only -c FILE", p.stderr)


if __name__ == "__main__":
    harness.main()
