/* h2head.h - HTTP/2 header lists and HTTP/1.1 heads, one into the other,
 * as pure functions.
 *
 * An HTTP/2 stream (h2.c) is proxied to an application over HTTP/1.1: its
 * request's field list becomes the HTTP/1.1 head the exchange layer parses
 * and rewrites as for any client, and the application's response head,
 * parsed by http1.c, becomes the field list of a HEADERS frame. Nothing
 * here touches a socket or a session; tests/unit/test_h2head.c checks it
 * alone.
 */
#ifndef SLUICE_H2HEAD_H
#define SLUICE_H2HEAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>

#include "buf.h"
#include "http1.h"

/* One field as HPACK decoded it (a view; pseudo-header names keep their
 * colon). */
struct h2head_field {
    const char *name, *value;
    uint32_t name_len, value_len;
};

enum h2head_result {
    H2HEAD_OK = 0,
    H2HEAD_MALFORMED,      /* RFC 9113 section 8.1.1: a stream error, never forwarded */
    H2HEAD_TOO_LARGE,      /* the HTTP/1.1 head does not fit the buffer */
};

/* What the stream must know about the request it wrote. */
struct h2head_request {
    bool head_method;      /* HEAD: the response has no body whatever it says */
    bool has_length;       /* content-length given ... */
    uint64_t content_length;
    bool chunked;          /* a body of unknown length: sent chunked */
};

/* Validates a request's field list (RFC 9113 sections 8.2 and 8.3: lower
 * case token names, no connection-specific field, te only "trailers", no
 * NUL, CR or LF and no surrounding whitespace in values, each required
 * pseudo-header once and before the regular fields, :scheme http or
 * https, :path in origin-form (or "*" for OPTIONS) and an authority that
 * is uri-host [ ":" port ] as http1.c checks them, a Host that agrees
 * with :authority, content-length digits below 2^63 that agree with each
 * other and with has_body) and writes the HTTP/1.1 head an application reads into
 * out: the request line, Host from :authority, the regular fields (cookie
 * crumbs joined with "; " as section 8.2.3 asks), and Transfer-Encoding:
 * chunked for a body without a length. has_body is false when the HEADERS
 * frame ended the stream. */
enum h2head_result h2head_request(struct buf *out, const struct h2head_field *f, uint32_t n, bool has_body,
                                  struct h2head_request *info);

/* Fills nv with a response head's fields for HTTP/2: ":status" (its digits
 * written into status[4]), then every field but the connection-specific
 * ones (those http1.c flags hop-by-hop), their names lower-cased where
 * they are: res's views must point into memory the caller may write.
 * Returns how many, or -1 when nv_max is too small. The entries point into
 * res's views and status. */
int h2head_response(const struct http1_response *res, nghttp2_nv *nv, size_t nv_max, char status[4]);

/* Trailer field lines ("Name: value\r\n" each, as the application wrote
 * them after its last chunk) as HTTP/2 fields, names lower-cased in place.
 * Fields that frame or route a message are left out. Returns how many, or
 * -1 when a line is not a field or nv_max is too small. */
int h2head_trailers(char *lines, size_t len, nghttp2_nv *nv, size_t nv_max);

/* Undoes the chunked framing of a response body the exchange validated
 * already (http1.c), for DATA frames. Zero-initialise per body. */
struct h2head_dechunk {
    int state;
    uint64_t remaining;        /* data bytes left in the current chunk */
    bool in_trailers;          /* the last chunk was seen: trailer lines follow */
    bool done;                 /* the blank line after the trailers was seen */
};

/* Decodes in[0..len) into dst (room bytes; dst may be in itself, before the
 * bytes still to read); trailer field lines go to trailers when they fit.
 * Stops when dst is full, when the last chunk's line ends (so that the
 * caller can find room for trailers) and when the body is done. Returns
 * the input bytes
 * used; *produced says how many data bytes went to dst. */
size_t h2head_dechunk(struct h2head_dechunk *d, const char *in, size_t len, char *dst, size_t room,
                      size_t *produced, struct buf *trailers);

#endif
