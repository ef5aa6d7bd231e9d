/*
 * Secret values of the configuration (secret.c): the one resolver of the
 * "@env:NAME" and "@file:PATH" indirections, for every section that takes
 * secrets ([auth], [upstream.NAME] header.* keys).
 */
#ifndef BH_CORE_CONFIG_SECRET_H
#define BH_CORE_CONFIG_SECRET_H

#include <stddef.h>

/* The largest secret or key file read (a PEM chain fits). */
#define BH__SECRET_FILE_MAX 65536

/* v resolved: a literal as is, "@env:NAME" the variable's value,
 * "@file:PATH" the file's content with one trailing line break (LF, CR or
 * CRLF) dropped and nothing else trimmed: the same rule in every section.
 * 0 with *out (malloc'd, NUL-terminated) and *outlen; -ENOMEM; or -ENOENT
 * / -errno with the reason in why ("environment variable X is not set",
 * "cannot read PATH: ..."). Free with bh__secret_free. */
int bh__secret_resolve(const char *v, char **out, size_t *outlen, char *why,
                       size_t whylen);
/* A whole file (at most BH__SECRET_FILE_MAX bytes, else -EFBIG) into *out,
 * NUL-terminated; 0 or -errno. Buffers that held part of it are wiped. */
int bh__secret_read_file(const char *path, char **out, size_t *outlen);
/* Wipes and frees a resolved value. NULL is fine. */
void bh__secret_free(char *s, size_t len);

#endif
