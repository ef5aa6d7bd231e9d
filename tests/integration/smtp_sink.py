"""A local SMTP sink for the tests: a small RFC 5321 server (standard
library sockets and threads) on a free loopback port that accepts every
message and keeps it. No TLS, no authentication: it advertises neither, so
a client that only tries STARTTLS goes on in clear.

    sink = SmtpSink(); sink.url -> "smtp://127.0.0.1:<port>"
    sink.messages -> [{"from", "to": [...], "data": str}]
    sink.wait(n, timeout); sink.clear(); sink.stop()
"""

import socket
import threading
import time


class SmtpSink(object):
    def __init__(self):
        self.messages = []
        self.connections = 0
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = self._sock.getsockname()[1]
        self.url = "smtp://127.0.0.1:%d" % self.port
        self._stop = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self):
        while not self._stop:
            try:
                c, _ = self._sock.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(c,),
                             daemon=True).start()

    def _serve(self, c):
        c.settimeout(10)
        f = c.makefile("rb")

        def say(line):
            c.sendall((line + "\r\n").encode())

        try:
            say("220 sink.test ESMTP ready")
            mail_from, rcpts = None, []
            while True:
                raw = f.readline()
                if not raw:
                    return
                line = raw.decode("utf-8", "replace").rstrip("\r\n")
                verb = line.split(" ", 1)[0].upper()
                if verb == "EHLO":
                    say("250-sink.test")
                    say("250-8BITMIME")
                    say("250 SIZE 10485760")
                elif verb == "HELO":
                    say("250 sink.test")
                elif verb == "MAIL":
                    mail_from, rcpts = line[len("MAIL FROM:"):].strip(), []
                    say("250 OK")
                elif verb == "RCPT":
                    rcpts.append(line[len("RCPT TO:"):].strip())
                    say("250 OK")
                elif verb == "DATA":
                    say("354 end with <CRLF>.<CRLF>")
                    lines = []
                    while True:
                        d = f.readline()
                        if not d:
                            return
                        if d in (b".\r\n", b".\n"):
                            break
                        if d.startswith(b".."):
                            d = d[1:]  # dot-stuffing
                        lines.append(d.decode("utf-8", "replace"))
                    with self._cv:
                        self.messages.append({"from": mail_from,
                                              "to": list(rcpts),
                                              "data": "".join(lines)})
                        self._cv.notify_all()
                    say("250 OK queued")
                elif verb == "RSET":
                    mail_from, rcpts = None, []
                    say("250 OK")
                elif verb == "NOOP":
                    say("250 OK")
                elif verb == "QUIT":
                    say("221 bye")
                    return
                else:
                    say("502 not implemented")
        except OSError:
            pass
        finally:
            f.close()
            c.close()

    def wait(self, n, timeout=5.0):
        """True once n messages arrived."""
        deadline = time.monotonic() + timeout
        with self._cv:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cv.wait(left)
            return True

    def clear(self):
        with self._lock:
            self.messages = []

    def stop(self):
        self._stop = True
        try:
            self._sock.close()
        except OSError:
            pass
