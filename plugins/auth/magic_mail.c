/*
 * The magic link's mail (magic.c): one SMTP message through libcurl,
 * blocking with the configured timeouts, on the job queue's thread.
 * STARTTLS is required whenever credentials are configured.
 */
#include <curl/curl.h>
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "auth_plugin.h"

typedef struct mail_src {
  const char *p;
  size_t left;
} mail_src;

static size_t mail_read(char *buf, size_t size, size_t n, void *arg) {
  mail_src *s = arg;
  size_t k = size * n < s->left ? size * n : s->left;
  memcpy(buf, s->p, k);
  s->p += k;
  s->left -= k;
  return k;
}

static void smtp_common(CURL *c) {
  const auth_magic *m = &auth_g.magic;
  curl_easy_setopt(c, CURLOPT_URL, m->smtp_url);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(
      c, CURLOPT_CONNECTTIMEOUT_MS,
      (long)(m->smtp_timeout_ms < 5000 ? m->smtp_timeout_ms : 5000));
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)m->smtp_timeout_ms);
  if (m->smtp_user) {
    curl_easy_setopt(c, CURLOPT_USERNAME, m->smtp_user);
    curl_easy_setopt(c, CURLOPT_PASSWORD, m->smtp_password);
    /* credentials never travel in clear: STARTTLS is required */
    curl_easy_setopt(c, CURLOPT_USE_SSL, (long)CURLUSESSL_ALL);
  } else {
    curl_easy_setopt(c, CURLOPT_USE_SSL, (long)CURLUSESSL_TRY);
  }
}

/* The server answers: what an unknown email costs too, so that an SMTP
 * outage answers 503 whether or not the account exists. */
int auth_magic_smtp_probe(void) {
  CURL *c = curl_easy_init();
  if (c == NULL) return -ENOMEM;
  smtp_common(c);
  curl_easy_setopt(c, CURLOPT_CONNECT_ONLY, 1L);
  CURLcode cc = curl_easy_perform(c);
  curl_easy_cleanup(c);
  return cc == CURLE_OK ? 0 : -EIO;
}

int auth_magic_smtp_send(const char *to, const char *token, const char **why) {
  const auth_magic *m = &auth_g.magic;
  char date[64], msgid[40];
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
  unsigned char rnd[12];
  randombytes_buf(rnd, sizeof(rnd));
  sodium_bin2hex(msgid, sizeof(msgid), rnd, sizeof(rnd));
  const char *dom = strchr(m->smtp_from, '@');
  size_t cap = 2048 + strlen(m->link_base);
  char *msg = malloc(cap);
  if (msg == NULL) return -ENOMEM;
  int n = snprintf(
      msg, cap,
      "Date: %s\r\nFrom: <%s>\r\nTo: <%s>\r\nMessage-ID: <%s%s>\r\n"
      "Subject: Your sign-in link\r\nMIME-Version: 1.0\r\n"
      "Content-Type: text/plain; charset=us-ascii\r\n"
      "Content-Transfer-Encoding: 7bit\r\nAuto-Submitted: auto-generated\r\n"
      "\r\n"
      "Use this link to sign in. It works once, for %ld minutes:\r\n\r\n"
      "%s/v1/auth/magic-link/verify?token=%s\r\n\r\n"
      "If you did not ask to sign in, ignore this email.\r\n",
      date, m->smtp_from, to, msgid, dom ? dom : "@bulkhead",
      (long)((m->ttl_s + 59) / 60), m->link_base, token);
  if (n < 0 || (size_t)n >= cap) {
    free(msg);
    return -ENOSPC;
  }
  CURL *c = curl_easy_init();
  struct curl_slist *rcpt = NULL;
  char angle[300];
  snprintf(angle, sizeof(angle), "<%s>", to);
  rcpt = curl_slist_append(rcpt, angle);
  char from[300];
  snprintf(from, sizeof(from), "<%s>", m->smtp_from);
  int rc = -ENOMEM;
  if (c && rcpt) {
    mail_src src = {msg, (size_t)n};
    smtp_common(c);
    curl_easy_setopt(c, CURLOPT_MAIL_FROM, from);
    curl_easy_setopt(c, CURLOPT_MAIL_RCPT, rcpt);
    curl_easy_setopt(c, CURLOPT_READFUNCTION, mail_read);
    curl_easy_setopt(c, CURLOPT_READDATA, &src);
    curl_easy_setopt(c, CURLOPT_UPLOAD, 1L);
    CURLcode cc = curl_easy_perform(c);
    rc = cc == CURLE_OK ? 0 : -EIO;
    if (cc != CURLE_OK) *why = curl_easy_strerror(cc);
  }
  curl_slist_free_all(rcpt);
  curl_easy_cleanup(c);
  sodium_memzero(msg, cap);
  free(msg);
  return rc;
}
