/* h2stream.c - one HTTP/2 stream as the client side of one exchange.
 *
 * The exchange (exchange.c) reads its client's request from a struct
 * stream's input buffer and writes the answer with stream_write. A stream
 * here is a struct stream_sink (stream.h): such a stream with no socket
 * behind it.
 *
 *   request   the HEADERS block becomes an HTTP/1.1 head (h2head.c) in the
 *             sink's input, which exchange_begin parses as any head; DATA
 *             bytes are appended there as they come (in chunked framing
 *             when the request gave no length), and the stream's receive
 *             window is given back only as the exchange takes them away, so
 *             a slow application slows its own stream's upload and nothing
 *             else.
 *   response  stream_write lands in accept_response: the HTTP/1.1 head the
 *             exchange wrote is parsed back and submitted as HEADERS, the
 *             body (its chunked framing undone) waits in `out` until the
 *             session's data source takes it within the send window. A
 *             full `out` clears the sink's can_write, which stops the
 *             exchange reading the application: a client that does not
 *             read stalls only its own stream.
 *
 * Streams come from the worker's free list (struct proxy) and go back once
 * the session closed them and the connection's step is over.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2conn.h"

/* Exchange steps per stream per run before the others get a turn. */
#define H2_STREAM_BUDGET 16
/* Room kept in a stream's input for the chunked framing of DATA frames
 * (at most 8 bytes each) and the last chunk. */
#define H2_FRAMING_ROOM 16

/* Owned by its connection: on h->streams while open, then h->closed, then
 * the worker's free list. x, when set, is owned by the stream. */
struct h2_stream {
    struct stream_sink sink;          /* the exchange's client (sink.s): requests in its `in`, no socket */
    struct h2_conn *h;
    struct exchange *x;               /* from the whole head until the answer is written */
    struct h2_stream *next, *prev;
    struct h2_stream *run_next;
    struct loop_timer timer;          /* the exchange's client-side limits */
    int32_t id;
    int64_t start_us;
    bool in_run, closed;
    bool reset_here;                  /* sluice reset it (its own answer failed, a timeout) */
    bool peer_reset;                  /* the client's RST_STREAM closed it */

    /* the request */
    bool chunked;                     /* its body goes to the application chunked */
    bool head_method;
    bool body_ended;                  /* END_STREAM seen */
    uint32_t unconsumed;              /* DATA bytes received whose window is not given back */

    /* the response */
    bool head_sent;
    bool deferred;                    /* the data source waits for bytes */
    bool eof;                         /* the exchange wrote its last byte */
    enum http1_body body;
    struct h2head_dechunk dechunk;
    struct buf out;                   /* the head until parsed, then DATA bytes */
    struct buf trailers;              /* trailer lines of a chunked body */
};

/* A stream's input holds the request head, then a whole window of DATA
 * and its chunked framing. */
#define H2_INPUT_BLOCK (NGHTTP2_INITIAL_WINDOW_SIZE + 8192)
#define H2_INPUT_FREE_MAX 64

uint32_t h2_stream_window(struct proxy *p)
{
    /* The protocol's default: a client may send that much on a new stream
     * before it has read our SETTINGS, so a smaller one would only make
     * its view of the window and ours differ for a while. */
    if (!p->h2_inputs.block_size)
        buf_pool_init(&p->h2_inputs, H2_INPUT_BLOCK, H2_INPUT_FREE_MAX);
    return NGHTTP2_INITIAL_WINDOW_SIZE;
}

/* ------------------------------------------------------------------ */
/* running                                                             */

static void schedule(struct h2_stream *st)
{
    if (st->in_run || st->closed)
        return;
    st->in_run = true;
    st->run_next = st->h->run;
    st->h->run = st;
}

/* The exchange's wake: an application's event or timer moved it. */
static void stream_wake(void *arg)
{
    struct h2_stream *st = arg;
    struct h2_conn *h = st->h;
    schedule(st);
    if (!h->stepping)
        h->wake(h->wake_arg);
}

/* The answer is written, all of it with the stream, but the client's
 * window keeps it there (a window of 0, a client that stopped sending
 * WINDOW_UPDATE): client_idle without the client taking a byte of it ends
 * the stream, which would otherwise stay open, holding its buffer and the
 * connection, for as long as the client likes. */
static void check_unread_answer(struct h2_stream *st, int64_t now)
{
    struct h2_conn *h = st->h;
    int64_t left = h->p->cfg->client_idle_timeout_ms - (now - st->sink.s.last_activity);
    if (left > 0) {
        loop_timer_arm(h->p->loop, &st->timer, left);
        return;
    }
    log_info("client %s: HTTP/2 stream %d: answer not read for %" PRId64 " ms, reset", h->ip, st->id,
             now - st->sink.s.last_activity);
    st->reset_here = true;
    nghttp2_submit_rst_stream(h->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
    h->wake(h->wake_arg);
}

static void on_stream_timer(struct loop *loop, struct loop_timer *timer)
{
    struct h2_stream *st = container_of(timer, struct h2_stream, timer);
    if (!st->x) {
        check_unread_answer(st, loop->now);
        return;
    }
    int64_t next = exchange_client_timeout(st->x, loop->now);
    if (next > 0)
        loop_timer_arm(loop, timer, next);
    else
        stream_wake(st);   /* a 408 to send, or an abort */
}

/* Gives the client back as much window as the stream's input has room
 * for, keeping room for the chunked framing of what it may send: the bytes
 * it may still send always fit. When it may send nothing more, the input
 * is as full as it will get (stream.h's input_full). */
static void give_back_window(struct h2_stream *st)
{
    struct h2_conn *h = st->h;
    int64_t cap = st->sink.s.in.data ? st->sink.s.in.cap : h->p->h2_inputs.block_size;
    int64_t room = cap - buf_len(&st->sink.s.in);
    if (st->chunked)
        room -= H2_FRAMING_ROOM + room / 16;
    int64_t may_send = (int64_t)h->window - st->unconsumed;
    int64_t give = room - may_send;
    if (give > st->unconsumed)
        give = st->unconsumed;
    if (give > 0) {
        nghttp2_session_consume(h->session, st->id, (size_t)give);
        st->unconsumed -= (uint32_t)give;
    }
    /* The window the client knows of: what nghttp2 announced. */
    bool full = !st->body_ended &&
                (h->paused == st || nghttp2_session_get_stream_local_window_size(h->session, st->id) <= 0);
    if (full != st->sink.s.input_full) {
        st->sink.s.input_full = full;
        schedule(st);
    }
}

/* The exchange is over: what it left unread is dropped, its window given
 * back. */
static void drop_exchange(struct h2_stream *st)
{
    struct h2_conn *h = st->h;
    if (st->x) {
        exchange_end(st->x);
        exchange_free(st->x);
        st->x = NULL;
    }
    loop_timer_cancel(h->p->loop, &st->timer);
    buf_release(&h->p->h2_inputs, &st->sink.s.in);
    if (st->unconsumed && !st->closed)
        nghttp2_session_consume(h->session, st->id, st->unconsumed);
    st->unconsumed = 0;
}

static void reset_stream(struct h2_stream *st, uint32_t error)
{
    drop_exchange(st);
    st->reset_here = true;
    nghttp2_submit_rst_stream(st->h->session, NGHTTP2_FLAG_NONE, st->id, error);
}

/* The answer is written: the data source ends the stream once `out` is
 * sent, within client_idle of the client's last read. */
static void finish_exchange(struct h2_stream *st)
{
    drop_exchange(st);
    if (!st->head_sent) {
        reset_stream(st, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    loop_timer_arm(st->h->p->loop, &st->timer, st->h->p->cfg->client_idle_timeout_ms);
    st->eof = true;
    if (st->deferred) {
        st->deferred = false;
        nghttp2_session_resume_data(st->h->session, st->id);
    }
}

static enum step run_stream(struct h2_stream *st)
{
    enum step moved = STEP_WAIT;
    for (int budget = H2_STREAM_BUDGET; st->x; budget--) {
        if (budget == 0) {
            schedule(st);
            break;
        }
        enum step r = exchange_step(st->x);
        enum exchange_state state = exchange_state(st->x);
        if (r == STEP_CLOSE || state == EXCHANGE_ABORT) {
            reset_stream(st, NGHTTP2_INTERNAL_ERROR);
            return STEP_MOVED;
        }
        if (state == EXCHANGE_DONE) {
            finish_exchange(st);
            return STEP_MOVED;
        }
        if (r != STEP_MOVED)
            break;
        moved = STEP_MOVED;
    }
    give_back_window(st);
    return moved;
}

enum step h2_streams_run(struct h2_conn *h)
{
    enum step moved = STEP_WAIT;
    struct h2_stream *list = h->run;
    h->run = NULL;
    while (list) {
        struct h2_stream *st = list;
        list = st->run_next;
        st->in_run = false;
        if (!st->closed)
            moved |= run_stream(st);
    }
    return moved;
}

/* ------------------------------------------------------------------ */
/* the response: from the exchange to the session                      */

static ssize_t read_body(nghttp2_session *session, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                         nghttp2_data_source *source, void *user);

static int submit_trailers(struct h2_stream *st)
{
    struct h2_conn *h = st->h;
    int n = h2head_trailers(buf_start(&st->trailers), buf_len(&st->trailers), h->nv, h->field_max + 1);
    if (n <= 0)
        return -1;
    return nghttp2_submit_trailer(h->session, st->id, h->nv, (size_t)n);
}

static ssize_t read_body(nghttp2_session *session, int32_t id, uint8_t *buf, size_t length, uint32_t *flags,
                         nghttp2_data_source *source, void *user)
{
    (void)session;
    (void)id;
    (void)user;
    struct h2_stream *st = source->ptr;
    struct buf *out = &st->out;
    size_t n = buf_len(out) < length ? buf_len(out) : length;
    if (n) {
        memcpy(buf, buf_start(out), n);
        buf_consume(out, (uint32_t)n);
        st->sink.s.last_activity = st->h->p->loop->now;
        if (!st->sink.s.can_write) {
            st->sink.s.can_write = true;   /* room again: the exchange may read on */
            schedule(st);
        }
    }
    if (buf_len(out))
        return (ssize_t)n;
    if (st->eof) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (buf_len(&st->trailers) && submit_trailers(st) == 0)
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        buf_release(st->h->p->buffers, &st->trailers);
        buf_release(st->h->p->buffers, out);
        return (ssize_t)n;
    }
    if (n)
        return (ssize_t)n;
    st->deferred = true;   /* resumed when the exchange writes more */
    return NGHTTP2_ERR_DEFERRED;
}

/* Body bytes as the exchange writes them: chunked framing undone. Returns
 * how many it took. data may lie in `out` itself, after its bytes. */
static size_t take_body(struct h2_stream *st, const char *data, size_t len)
{
    struct proxy *p = st->h->p;
    struct buf *out = &st->out;
    buf_compact(out);
    if (st->body == HTTP1_BODY_NONE)
        return len;   /* nothing is expected: nothing to send */
    if (st->body != HTTP1_BODY_CHUNKED) {
        size_t take = len < buf_room(out) ? len : buf_room(out);
        memmove(buf_end(out), data, take);   /* data may be in out itself (take_head) */
        out->tail += (uint32_t)take;
        return take;
    }
    size_t used = 0;
    while (used < len && !st->dechunk.done) {
        if (st->dechunk.in_trailers && !st->trailers.data && buf_acquire(p->buffers, &st->trailers) == 0)
            st->trailers.head = st->trailers.tail = 0;
        size_t produced;
        size_t n = h2head_dechunk(&st->dechunk, data + used, len - used, buf_end(out), buf_room(out), &produced,
                                  &st->trailers);
        out->tail += (uint32_t)produced;
        used += n;
        if (n == 0)
            break;   /* out is full */
    }
    return st->dechunk.done ? len : used;
}

static int submit_head(struct h2_stream *st, const struct http1_response *res)
{
    struct h2_conn *h = st->h;
    char status[4];
    int n = h2head_response(res, h->nv, h->field_max + 1, status);
    if (n < 0)
        return -1;
    st->body = res->body;
    nghttp2_data_provider body = {.source.ptr = st, .read_callback = read_body};
    st->head_sent = true;
    return nghttp2_submit_response(h->session, st->id, h->nv, (size_t)n,
                                   res->body == HTTP1_BODY_NONE ? NULL : &body);
}

/* Parses the head gathered in out; once whole, submits it and keeps the
 * body bytes that came after it. 1xx heads are not passed on. */
static int take_head(struct h2_stream *st)
{
    struct proxy *p = st->h->p;
    struct buf *out = &st->out;
    for (;;) {
        struct http1_response res = {.headers = p->headers};
        enum http1_result rc = http1_parse_response(buf_start(out), buf_len(out), &p->limits,
                                                    st->head_method ? HTTP1_METHOD_HEAD : HTTP1_METHOD_GET, &res);
        if (rc == HTTP1_INCOMPLETE)
            return buf_room(out) ? 0 : -1;
        if (rc == HTTP1_ERROR)
            return -1;
        if (res.status >= 200) {
            if (submit_head(st, &res) != 0)
                return -1;
            buf_consume(out, res.head_len);
            break;
        }
        buf_consume(out, res.head_len);
        if (!buf_len(out))
            return 0;
    }
    /* Body bytes that followed the head in the same write. */
    uint32_t rest = buf_len(out);
    char *raw = buf_start(out);
    out->head = out->tail = 0;
    if (rest)
        take_body(st, raw, rest);
    return 0;
}

/* Returns how many bytes it took, or -1. */
static ssize_t take_response(struct h2_stream *st, const char *data, size_t len)
{
    struct buf *out = &st->out;
    if (!len)
        return 0;
    if (buf_acquire(st->h->p->buffers, out) < 0)
        return -1;
    if (st->head_sent)
        return (ssize_t)take_body(st, data, len);
    size_t take = len < buf_room(out) ? len : buf_room(out);
    memcpy(buf_end(out), data, take);
    out->tail += (uint32_t)take;
    return take_head(st) < 0 ? -1 : (ssize_t)take;
}

/* The stream sink's write: what the exchange sends its client. */
static ssize_t accept_response(struct stream_sink *sink, const char *a, size_t alen, const char *b, size_t blen)
{
    struct h2_stream *st = container_of(sink, struct h2_stream, sink);
    struct stream *vs = &sink->s;
    ssize_t n = take_response(st, a, alen);
    if (n < 0)
        return -1;
    ssize_t m = (size_t)n == alen ? take_response(st, b, blen) : 0;
    if (m < 0)
        return -1;
    if ((size_t)(n + m) < alen + blen)
        vs->can_write = false;   /* out is full: read_body makes room */
    if (st->deferred && buf_len(&st->out)) {
        st->deferred = false;
        nghttp2_session_resume_data(st->h->session, st->id);
    }
    return n + m;
}

/* ------------------------------------------------------------------ */
/* the request: from the session to the exchange                       */

void h2_fields_drop(struct h2_conn *h)
{
    for (uint32_t i = 0; i < 2 * h->field_count; i++)
        nghttp2_rcbuf_decref(h->rcbufs[i]);
    h->field_count = h->field_bytes = 0;
}

static void begin_request(struct h2_stream *st, bool has_body)
{
    struct h2_conn *h = st->h;
    struct proxy *p = h->p;
    struct h2head_request info;
    enum h2head_result r = H2HEAD_TOO_LARGE;
    if (buf_acquire(&p->h2_inputs, &st->sink.s.in) == 0)
        r = h2head_request(&st->sink.s.in, h->fields, h->field_count, has_body, &info);
    h2_fields_drop(h);
    if (r == H2HEAD_MALFORMED) {
        log_info("client %s: malformed HTTP/2 request on stream %d, reset", h->ip, st->id);
        reset_stream(st, NGHTTP2_PROTOCOL_ERROR);
        h2_conn_count_reset(h);
        return;
    }
    st->x = exchange_new(p, &st->sink.s, h->ip, stream_wake, st);
    if (!st->x) {
        log_error("out of memory: refusing stream %d of client %s", st->id, h->ip);
        reset_stream(st, NGHTTP2_REFUSED_STREAM);
        return;
    }
    exchange_mark_http2(st->x);
    if (r == H2HEAD_TOO_LARGE) {
        exchange_refuse(st->x, 431, st->start_us);
    } else {
        st->chunked = info.chunked;
        st->head_method = info.head_method;
        exchange_begin(st->x, st->start_us);
    }
    int64_t next = exchange_client_timeout(st->x, p->loop->now);
    loop_timer_arm(p->loop, &st->timer, next > 0 ? next : 1);
    schedule(st);
}

static void end_request_body(struct h2_stream *st)
{
    st->body_ended = true;
    if (!st->x || !st->chunked)
        return;
    struct buf *in = &st->sink.s.in;
    buf_compact(in);
    static const char last_chunk[] = "0\r\n\r\n";
    if (buf_room(in) >= sizeof(last_chunk) - 1) {   /* H2_FRAMING_ROOM kept it */
        memcpy(buf_end(in), last_chunk, sizeof(last_chunk) - 1);
        in->tail += sizeof(last_chunk) - 1;
    }
    schedule(st);
}

int h2_stream_frame_recv(struct h2_conn *h, const nghttp2_frame *frame)
{
    if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA &&
        frame->hd.type != NGHTTP2_RST_STREAM)
        return 0;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(h->session, frame->hd.stream_id);
    if (!st)
        return 0;
    if (frame->hd.type == NGHTTP2_RST_STREAM) {
        st->peer_reset = true;   /* counted by the connection already */
        return 0;
    }
    bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
        begin_request(st, !end);
    else if (end)
        end_request_body(st);   /* after DATA, or trailers (which are not passed on) */
    return 0;
}

static struct h2_stream *stream_alloc(struct proxy *p)
{
    struct h2_stream *st = p->free_h2_streams;
    if (st) {
        p->free_h2_streams = st->next;
        memset(st, 0, sizeof(*st));
        return st;
    }
    return calloc(1, sizeof(*st));
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
    struct h2_conn *h = user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST || h->terminating)
        return 0;
    struct h2_stream *st = stream_alloc(h->p);
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;   /* the stream is reset */
    st->h = h;
    st->id = frame->hd.stream_id;
    st->start_us = loop_monotonic_us();
    st->sink.s.io.fd = -1;
    /* The connection's TLS session, so that the exchange knows the request
     * came over HTTPS (X-Forwarded-Proto, redirect_https, the log's
     * scheme); nothing reads or writes through it here (a sink). */
    st->sink.s.ssl = h->s->ssl;
    st->sink.write = accept_response;
    st->sink.s.can_write = true;
    st->sink.s.last_activity = h->p->loop->now;
    loop_timer_init(&st->timer, on_stream_timer);
    st->next = h->streams;
    if (st->next)
        st->next->prev = st;
    h->streams = st;
    h->open_streams++;
    h2_fields_drop(h);
    nghttp2_session_set_stream_user_data(session, st->id, st);
    return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, nghttp2_rcbuf *name,
                     nghttp2_rcbuf *value, uint8_t flags, void *user)
{
    (void)flags;
    struct h2_conn *h = user;
    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST || h->terminating ||
        !nghttp2_session_get_stream_user_data(session, frame->hd.stream_id))
        return 0;
    nghttp2_vec n = nghttp2_rcbuf_get_buf(name), v = nghttp2_rcbuf_get_buf(value);
    /* RFC 9113 section 6.5.2: a field's size is its name, its value and 32. */
    h->field_bytes += (uint32_t)(n.len + v.len + 32);
    if (h->field_bytes > h->p->cfg->header_bytes) {
        h2_conn_refuse(h, NGHTTP2_ENHANCE_YOUR_CALM, "header list over %" PRIu32 " bytes", h->p->cfg->header_bytes);
        return 0;
    }
    if (h->field_count == h->field_max) {
        h2_conn_refuse(h, NGHTTP2_ENHANCE_YOUR_CALM, "more than %" PRIu32 " header fields", h->field_max);
        return 0;
    }
    nghttp2_rcbuf_incref(name);
    nghttp2_rcbuf_incref(value);
    h->rcbufs[2 * h->field_count] = name;
    h->rcbufs[2 * h->field_count + 1] = value;
    h->fields[h->field_count++] = (struct h2head_field){
        .name = (const char *)n.base, .name_len = (uint32_t)n.len,
        .value = (const char *)v.base, .value_len = (uint32_t)v.len};
    return 0;
}

/* nghttp2 found a field RFC 9113 forbids (an upper-case name, say): the
 * request is malformed, never merely trimmed. */
static int on_invalid_header(nghttp2_session *session, const nghttp2_frame *frame, nghttp2_rcbuf *name,
                             nghttp2_rcbuf *value, uint8_t flags, void *user)
{
    (void)session;
    (void)value;
    (void)flags;
    struct h2_conn *h = user;
    nghttp2_vec n = nghttp2_rcbuf_get_buf(name);
    log_info("client %s: HTTP/2 stream %d: invalid header field \"%.*s\", reset", h->ip, frame->hd.stream_id,
             (int)(n.len > 64 ? 64 : n.len), (const char *)n.base);
    return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
}

/* Appends DATA to the stream's input, in chunked framing when the request
 * gave no length. False when it does not fit now. */
static bool append_data(struct h2_stream *st, const uint8_t *data, size_t len)
{
    struct buf *in = &st->sink.s.in;
    if (buf_acquire(&st->h->p->h2_inputs, in) < 0)
        return false;
    size_t need = len + (st->chunked ? H2_FRAMING_ROOM : 0);
    if (buf_room(in) < need)
        buf_compact(in);
    if (buf_room(in) < need)
        return false;
    if (st->chunked && len) {
        int k = snprintf(buf_end(in), buf_room(in), "%zx\r\n", len);
        in->tail += (uint32_t)k;
    }
    memcpy(buf_end(in), data, len);
    in->tail += (uint32_t)len;
    if (st->chunked && len) {
        memcpy(buf_end(in), "\r\n", 2);
        in->tail += 2;
    }
    st->unconsumed += (uint32_t)len;
    st->sink.s.last_activity = st->h->p->loop->now;
    schedule(st);
    return true;
}

static int on_data(nghttp2_session *session, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
                   void *user)
{
    (void)flags;
    struct h2_conn *h = user;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(session, id);
    if (!st || !st->x) {
        nghttp2_session_consume(session, id, len);   /* nobody wants it any more */
        return 0;
    }
    if (append_data(st, data, len))
        return 0;
    /* No room until the exchange takes some: the session waits, and with
     * it this connection's other streams - which only a client that sent
     * more than its window allows, or in tiny frames, brings about. */
    h->paused = st;
    h->paused_data = data;
    h->paused_len = len;
    st->sink.s.input_full = true;
    schedule(st);
    return NGHTTP2_ERR_PAUSE;
}

/* The paused DATA's stream is gone: its bytes only count for the
 * connection's window. */
static void drop_paused(struct h2_conn *h)
{
    nghttp2_session_consume_connection(h->session, h->paused_len);
    h->paused = NULL;
}

bool h2_stream_resume_input(struct h2_conn *h)
{
    struct h2_stream *st = h->paused;
    if (st->closed || !st->x) {
        if (!st->closed)
            nghttp2_session_consume_stream(h->session, st->id, h->paused_len);
        drop_paused(h);
        return true;
    }
    if (!append_data(st, h->paused_data, h->paused_len))
        return false;
    h->paused = NULL;
    return true;
}

static void unlink_stream(struct h2_conn *h, struct h2_stream *st)
{
    if (st->prev)
        st->prev->next = st->next;
    else
        h->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    st->prev = NULL;
}

/* Off the open list, on the closed one, holding nothing. */
static void close_stream(struct h2_conn *h, struct h2_stream *st)
{
    st->closed = true;
    drop_exchange(st);
    buf_release(h->p->buffers, &st->out);
    buf_release(h->p->buffers, &st->trailers);
    unlink_stream(h, st);
    st->next = h->closed;
    h->closed = st;
}

static int on_stream_close(nghttp2_session *session, int32_t id, uint32_t error, void *user)
{
    struct h2_conn *h = user;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(session, id);
    if (!st)
        return 0;
    if (st->x && error != NGHTTP2_NO_ERROR)
        log_info("client %s: HTTP/2 stream %d reset before its answer was sent (%s)", h->ip, id,
                 nghttp2_http2_strerror(error));
    /* The library reset it for something the client sent (DATA past its
     * content-length, trailers without END_STREAM): a reset the
     * client chose as surely as its own RST_STREAM, and one that leaves the
     * request with the application just the same ("MadeYouReset"), so it
     * counts toward the same rate. */
    if (error != NGHTTP2_NO_ERROR && !st->peer_reset && !st->reset_here)
        h2_conn_count_reset(h);
    if (st->unconsumed)
        nghttp2_session_consume_connection(session, st->unconsumed);
    st->unconsumed = 0;
    if (h->paused == st)
        drop_paused(h);
    close_stream(h, st);
    if (--h->open_streams == 0)
        h->last_stream_end = h->p->loop->now;
    return 0;
}

/* RFC 9113 section 8.1: a response complete before its request (an early
 * 413, a 408 for a body that stopped coming) is followed by RST_STREAM
 * NO_ERROR, so that the client stops sending and the stream does not stay
 * half-open, counted as open and keeping the connection from its idle
 * limit, for as long as the client likes. */
static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
    (void)user;
    if ((frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA) ||
        !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        return 0;
    struct h2_stream *st = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);
    if (st && nghttp2_session_get_stream_remote_close(session, st->id) == 0) {
        st->reset_here = true;
        nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    }
    return 0;
}

void h2_stream_set_callbacks(nghttp2_session_callbacks *cb)
{
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback2(cb, on_header);
    nghttp2_session_callbacks_set_on_invalid_header_callback2(cb, on_invalid_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_stream_close);
}

/* ------------------------------------------------------------------ */
/* recycling                                                           */

void h2_streams_recycle(struct h2_conn *h)
{
    /* A stream closed while on the run list leaves it first. */
    struct h2_stream **at = &h->run;
    while (*at) {
        if ((*at)->closed) {
            (*at)->in_run = false;
            *at = (*at)->run_next;
        } else {
            at = &(*at)->run_next;
        }
    }
    struct proxy *p = h->p;
    while (h->closed) {
        struct h2_stream *st = h->closed;
        h->closed = st->next;
        st->next = p->free_h2_streams;
        p->free_h2_streams = st;
    }
}

void h2_streams_end(struct h2_conn *h)
{
    while (h->streams) {
        close_stream(h, h->streams);
    }
    h->open_streams = 0;
    h2_streams_recycle(h);
}

bool h2_streams_use_pool(const struct h2_conn *h, const struct pool *pool)
{
    for (const struct h2_stream *st = h->streams; st; st = st->next)
        if (st->x && exchange_uses_pool(st->x, pool))
            return true;
    return false;
}

void h2_streams_free(struct proxy *p)
{
    buf_pool_free(&p->h2_inputs);
    while (p->free_h2_streams) {
        struct h2_stream *st = p->free_h2_streams;
        p->free_h2_streams = st->next;
        free(st);
    }
}
