/*
 * LD_PRELOAD name table for test_upstream_h1's address tests: a host name
 * listed in the file $BH_TEST_GAI_FILE resolves to the addresses given
 * there, in that order, each with its own port ("name 127.0.0.1:P1
 * 127.0.0.1:P2" per line; the file is read on every lookup, so a test can
 * change it). Every other name goes to the system's getaddrinfo. The
 * loopback machines the tests run on have no name with several
 * addresses; this gives one, so that trying every address on a connect
 * failure can be observed.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#define BH__EXPORT __attribute__((visibility("default")))

typedef int (*bh__gai_fn)(const char *, const char *, const struct addrinfo *,
                          struct addrinfo **);

/* One block per entry, as glibc's freeaddrinfo expects (it frees each
 * entry and its canonical name, nothing else). */
static struct addrinfo *bh__entry(const char *ip, int port) {
  struct {
    struct addrinfo ai;
    struct sockaddr_in sin;
  } *e = calloc(1, sizeof(*e));
  if (e == NULL) return NULL;
  if (inet_pton(AF_INET, ip, &e->sin.sin_addr) != 1) {
    free(e);
    return NULL;
  }
  e->sin.sin_family = AF_INET;
  e->sin.sin_port = htons((unsigned short)port);
  e->ai.ai_family = AF_INET;
  e->ai.ai_socktype = SOCK_STREAM;
  e->ai.ai_protocol = IPPROTO_TCP;
  e->ai.ai_addrlen = sizeof(e->sin);
  e->ai.ai_addr = (struct sockaddr *)&e->sin;
  return &e->ai;
}

/* 0 with *res set when the file names node, 1 when it does not. */
static int bh__lookup(const char *node, struct addrinfo **res) {
  const char *path = getenv("BH_TEST_GAI_FILE");
  FILE *f = path && node ? fopen(path, "r") : NULL;
  if (f == NULL) return 1;
  char line[512];
  int found = 1;
  struct addrinfo *head = NULL, **tail = &head;
  while (found && fgets(line, sizeof(line), f)) {
    char *save = NULL, *tok = strtok_r(line, " \t\r\n", &save);
    if (tok == NULL || strcmp(tok, node) != 0) continue;
    found = 0;
    while ((tok = strtok_r(NULL, " \t\r\n", &save)) != NULL) {
      char *colon = strrchr(tok, ':');
      if (colon == NULL) continue;
      *colon = '\0';
      struct addrinfo *ai = bh__entry(tok, atoi(colon + 1));
      if (ai == NULL) continue;
      *tail = ai;
      tail = &ai->ai_next;
    }
  }
  fclose(f);
  if (found) return 1;
  *res = head;
  return 0;
}

BH__EXPORT int getaddrinfo(const char *node, const char *service,
                           const struct addrinfo *hints,
                           struct addrinfo **res) {
  if (bh__lookup(node, res) == 0) return *res ? 0 : EAI_NONAME;
  bh__gai_fn next = (bh__gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
  if (next == NULL) return EAI_FAIL;
  return next(node, service, hints, res);
}
