/*
 * Who the client is, and the request's ids. The peer of the connection is
 * the client unless it is one of [server] trusted_proxies: then its
 * X-Forwarded-For is read right to left, each trusted hop skipped, and the
 * first address that is not trusted is the client (a hop that is no
 * address ends the walk at the hop before it). A client can prepend
 * anything to X-Forwarded-For; only what trusted hops appended counts.
 */
#include <string.h>

#include "base/cidr.h"
#include "base/reqid.h"
#include "base/trace.h"
#include "config/config.h"
#include "http/http.h"
#include "proc/daemon-t.h"

void bh__req_ids(bh_req *req) {
  if (req->id[0] == '\0')
    bh__reqid(bh__req_header(req, "x-request-id"), req->id, sizeof(req->id));
  if (req->trace.trace_id[0]) return;
  /* a tracestate means nothing without the traceparent it came with */
  if (bh__trace_start(&req->trace, bh__req_header(req, "traceparent"))) {
    const char *ts = bh__req_header(req, "tracestate");
    req->tracestate = ts && bh__tracestate_ok(ts) ? ts : NULL;
  }
}

/* Right to left over one header value: the next hop to the left of
 * `end` (exclusive), trimmed, as [*s, *s + *n); 0 when none is left. */
static int bh__hop_left(const char *v, const char **end, const char **s,
                        size_t *n) {
  const char *e = *end;
  while (e > v && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == ','))
    e--;
  if (e == v) return 0;
  const char *b = e;
  while (b > v && b[-1] != ',')
    b--;
  *end = b;
  while (b < e && (*b == ' ' || *b == '\t'))
    b++;
  *s = b;
  *n = (size_t)(e - b);
  return 1;
}

void bh__req_client(bh_req *req) {
  const bh__config *cfg = req->d->cfg;
  const bh__cidr *tp = cfg->trusted_proxies;
  size_t ntp = cfg->ntrusted_proxies;
  req->via_trusted = 0;
  if (ntp == 0 || req->headers == NULL ||
      !bh__cidr_match(tp, ntp, req->peer_addr, strlen(req->peer_addr)))
    return;
  req->via_trusted = 1;
  for (size_t i = req->nheaders; i-- > 0;) {
    if (strcmp(req->headers[i].name, "x-forwarded-for") != 0) continue;
    const char *v = req->headers[i].value;
    const char *end = v + strlen(v), *s;
    size_t n;
    while (bh__hop_left(v, &end, &s, &n)) {
      char ip[64];
      /* a hop that is no address: the last good one is the client */
      if (bh__ip_canon(s, n, ip, sizeof(ip)) != 0) return;
      memcpy(req->client_addr, ip, sizeof(req->client_addr));
      if (!bh__cidr_match(tp, ntp, ip, strlen(ip))) return;
    }
  }
}
