"""An https test origin: a TLS front for a simulator (Python's ssl module)
with certificates made at test time by the openssl CLI.

    certs = make_certs(tmpdir)          # a CA, a server cert it signed for
                                        # 127.0.0.1/localhost, a stranger
    front = TlsFront(sim, certs.server_cert, certs.server_key)
    ... [upstream.x] url = front.url, ca_file = certs.ca_cert ...
    front.stop()

Each accepted connection is relayed byte for byte to the simulator over a
connection of its own, so what the simulator does on plain http (answers,
malformed heads, slow or closed connections, keep-alive) reaches the
gateway unchanged over real TLS, and the simulator's connection counts
still count the gateway's connections. Standard library only.
"""

import collections
import os
import select
import socket
import ssl
import subprocess
import threading

Certs = collections.namedtuple(
    "Certs", "ca_cert server_cert server_key other_cert other_key")


def _openssl(*args):
    subprocess.run(("openssl",) + args, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE)


def make_certs(directory):
    """A CA, a server certificate it signed (SAN 127.0.0.1 and localhost),
    and a self-signed stranger for the same names that no CA vouches
    for."""
    p = lambda n: os.path.join(directory, n)  # noqa: E731
    san = "subjectAltName=IP:127.0.0.1,DNS:localhost"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=bulkhead test CA", "-keyout", p("ca.key"),
             "-out", p("ca.pem"))
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", p("server.key"), "-out", p("server.csr"))
    with open(p("server.ext"), "w") as f:
        f.write(san + "\n")
    _openssl("x509", "-req", "-in", p("server.csr"), "-CA", p("ca.pem"),
             "-CAkey", p("ca.key"), "-CAcreateserial", "-days", "2",
             "-extfile", p("server.ext"), "-out", p("server.pem"))
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", "/CN=127.0.0.1", "-addext", san,
             "-keyout", p("other.key"), "-out", p("other.pem"))
    return Certs(p("ca.pem"), p("server.pem"), p("server.key"),
                 p("other.pem"), p("other.key"))


class TlsFront(object):
    """Listens on a free loopback port with TLS; relays to sim."""

    def __init__(self, sim, certfile, keyfile):
        self.sim = sim
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(certfile, keyfile)
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind(("127.0.0.1", 0))
        self.ls.listen(128)
        self.port = self.ls.getsockname()[1]
        self.url = "https://127.0.0.1:%d" % self.port
        self.handshake_failures = 0
        self.stopping = False
        self.t = threading.Thread(target=self._accept, daemon=True)
        self.t.start()

    def _accept(self):
        while not self.stopping:
            try:
                raw, _ = self.ls.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(raw,),
                             daemon=True).start()

    def _serve(self, raw):
        raw.settimeout(10)
        try:
            tls = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            self.handshake_failures += 1
            raw.close()
            return
        tls.settimeout(30)
        try:
            up = socket.create_connection((self.sim.host, self.sim.port))
        except OSError:
            tls.close()
            return
        # one thread per connection: an SSL object is not for two threads
        client_open = True
        try:
            while True:
                watch = [up, tls] if client_open else [up]
                if client_open and tls.pending():
                    readable = [tls]
                else:
                    readable, _, _ = select.select(watch, [], [], 30)
                    if not readable:
                        break
                if tls in readable:
                    b = tls.recv(65536)
                    if b:
                        up.sendall(b)
                    else:
                        client_open = False
                        up.shutdown(socket.SHUT_WR)
                if up in readable:
                    b = up.recv(65536)
                    if not b:
                        break
                    tls.sendall(b)
        except (OSError, ValueError):
            pass
        for s in (tls, up):
            try:
                s.close()
            except OSError:
                pass

    def stop(self):
        self.stopping = True
        try:
            self.ls.close()
        except OSError:
            pass
