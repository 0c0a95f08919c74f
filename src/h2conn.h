/* h2conn.h - what h2.c (the connection) and h2stream.c (its streams)
 * share; nothing outside them includes it.
 */
#ifndef SLUICE_H2CONN_H
#define SLUICE_H2CONN_H

#include <stdbool.h>
#include <stdint.h>

#include <nghttp2/nghttp2.h>

#include "h2.h"
#include "h2head.h"

/* Owned by its client connection (client.c); owns the session, its
 * streams (h2stream.c) and the header block being received. */
struct h2_conn {
    struct proxy *p;
    struct stream *s;                 /* the client's socket: client.c's */
    const char *ip;
    void (*wake)(void *arg);
    void *wake_arg;
    nghttp2_session *session;
    uint32_t max_streams;             /* as advertised */
    uint32_t window;                  /* each stream's initial receive window, as advertised */
    uint32_t open_streams;
    struct h2_stream *streams;        /* open */
    struct h2_stream *run;            /* have work for the next h2_conn_step */
    struct h2_stream *closed;         /* closed by the session; recycled after the step */
    int64_t last_stream_end;          /* loop ms */
    int64_t last_write;               /* loop ms of the last byte the client took */
    struct loop_timer idle_timer;
    struct loop_timer end_timer;      /* after a GOAWAY: how long the connection may still take */

    /* the request header block being received: views into rcbufs, held */
    struct h2head_field *fields;
    nghttp2_rcbuf **rcbufs;           /* two per field */
    nghttp2_nv *nv;                   /* for a response head: field_max + 1 */
    uint32_t field_max, field_count, field_bytes;
    uint32_t block_frames, block_bytes;

    /* floods, counted per second from rate_start */
    int64_t rate_start;
    uint32_t resets, control_frames;

    /* DATA that did not fit its stream's input (sent before our SETTINGS
     * made the window smaller, or in many tiny frames): the session is
     * paused on it, s->in kept as it is, until there is room */
    struct h2_stream *paused;
    const uint8_t *paused_data;
    size_t paused_len;

    struct buf wbuf;                  /* frames gathered for one write */
    const uint8_t *pending;           /* from nghttp2_session_mem_send, not yet in wbuf */
    size_t pending_len;

    bool goaway;                      /* graceful: no new streams, the others finish */
    bool terminating;                 /* a limit was broken: GOAWAY, then close */
    bool failed;                      /* the session failed: close once output is out */
    bool expired;                     /* end_timer fired: close now, whatever is left */
    bool stepping;                    /* inside h2_conn_step: wakes only schedule */
};

void h2_conn_refuse(struct h2_conn *h, uint32_t error, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Counts a stream reset of the client's making (rapid reset); past the
 * rate, GOAWAY. */
void h2_conn_count_reset(struct h2_conn *h);

/* h2stream.c */
void h2_stream_set_callbacks(nghttp2_session_callbacks *cb);
/* HEADERS, DATA and RST_STREAM frames: a request head is whole, a body
 * has ended, the client reset a stream. */
int h2_stream_frame_recv(struct h2_conn *h, const nghttp2_frame *frame);
/* The receive window each stream starts with. */
uint32_t h2_stream_window(struct proxy *p);
/* Runs the exchanges of the streams that have work. */
enum step h2_streams_run(struct h2_conn *h);
/* Recycles the streams the session closed. */
void h2_streams_recycle(struct h2_conn *h);
/* Ends every stream, open or closed (the connection goes). */
void h2_streams_end(struct h2_conn *h);
bool h2_streams_use_pool(const struct h2_conn *h, const struct pool *pool);
/* Puts the DATA the session paused on into its stream. False while it
 * still does not fit. */
bool h2_stream_resume_input(struct h2_conn *h);
/* Lets go of the header block's fields. */
void h2_fields_drop(struct h2_conn *h);

#endif
