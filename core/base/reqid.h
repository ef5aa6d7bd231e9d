/*
 * Request ids (reqid.c): an incoming X-Request-ID when it is sane, else a
 * fresh ULID.
 */
#ifndef BH_CORE_BASE_REQID_H
#define BH_CORE_BASE_REQID_H

#include <stddef.h>
#include <stdint.h>

/* After fork: a fresh random stream, so workers never share ids. */
void bh__reqid_reseed(void);
/* 64 bits from the per-process generator ids come from (unique, not
 * secret: never for keys or tokens). */
uint64_t bh__rng_next(void);
/* Accepts a sane incoming id or generates a ULID into out (>= 80 bytes). */
void bh__reqid(const char *incoming, char *out, size_t outlen);

#endif
