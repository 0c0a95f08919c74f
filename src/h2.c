/* h2.c - an HTTP/2 client connection: the nghttp2 session, its socket, its
 * limits and floods. See h2.h; the streams are h2stream.c.
 *
 * nghttp2 does the framing, HPACK and flow-control bookkeeping; sluice
 * feeds it what the socket gave (nghttp2_session_mem_recv) and writes what
 * it has to send (nghttp2_session_mem_send, gathered into one buffer so a
 * burst of small frames is one write). Callbacks only record: a stream's
 * exchange runs from h2_conn_step, after the input is parsed, never inside
 * the library.
 */
#include "h2.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "h2conn.h"

/* Frames of one header block (HEADERS and its CONTINUATIONs): a real
 * client needs a few; CVE-2024-27316 sent endless ones. The library's own
 * bound is set above ours so that ours, with its log line, is the one
 * met. */
#define H2_BLOCK_FRAMES_MAX 16
#define H2_LIBRARY_CONTINUATIONS_MAX 32
/* PING and SETTINGS frames a client may send per second before it is
 * deemed to flood (each costs an ACK). */
#define H2_CONTROL_FRAMES_PER_SECOND 100
/* ACKs nghttp2 may queue for a client that does not read: above our own
 * rate, so that the rate, with its log line and GOAWAY, is met first. */
#define H2_OUTBOUND_ACK_MAX 1000
/* Request body bytes a connection may have sent that no application has
 * taken yet, over all its streams. */
#define H2_CONN_WINDOW_MAX (512 * 1024)
/* How long a connection cut off for a broken limit may take to write its
 * GOAWAY before it is closed anyway (a client that does not read). */
#define H2_REFUSE_LINGER_MS 2000
/* Streams a client may reset per second, in multiples of
 * max_concurrent_streams (CVE-2023-44487, rapid reset). */
#define H2_RESETS_PER_STREAM_LIMIT 2

int h2_preface_match(const char *buf, size_t len)
{
    size_t n = len < H2_PREFACE_LEN ? len : H2_PREFACE_LEN;
    if (memcmp(buf, H2_PREFACE, n) != 0)
        return -1;
    return len >= H2_PREFACE_LEN ? 1 : 0;
}

/* ------------------------------------------------------------------ */
/* ending the connection                                               */

/* A client that broke a limit: GOAWAY, and the connection ends once it is
 * written. Everything it sends after is ignored. */
void h2_conn_refuse(struct h2_conn *h, uint32_t error, const char *fmt, ...)
{
    if (h->terminating)
        return;
    char why[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    log_warn("client %s: HTTP/2 %s: GOAWAY %s", h->ip, why, nghttp2_http2_strerror(error));
    h->terminating = true;
    nghttp2_session_terminate_session(h->session, error);
    loop_timer_arm(h->p->loop, &h->end_timer, H2_REFUSE_LINGER_MS);
}

static void goaway_gracefully(struct h2_conn *h, const char *why, int64_t grace_ms)
{
    if (h->goaway || h->terminating)
        return;
    h->goaway = true;
    loop_timer_arm(h->p->loop, &h->end_timer, grace_ms);
    log_info("client %s: HTTP/2 %s: GOAWAY after stream %d", h->ip, why,
             nghttp2_session_get_last_proc_stream_id(h->session));
    nghttp2_submit_goaway(h->session, NGHTTP2_FLAG_NONE, nghttp2_session_get_last_proc_stream_id(h->session),
                          NGHTTP2_NO_ERROR, NULL, 0);
}

void h2_conn_shutdown(struct h2_conn *h)
{
    goaway_gracefully(h, "stopping", h->p->cfg->shutdown_grace_ms);
    h->wake(h->wake_arg);
}

void h2_conn_reload(struct h2_conn *h)
{
    goaway_gracefully(h, "configuration reloaded", h->p->cfg->shutdown_grace_ms);
    h->wake(h->wake_arg);
}

static void on_end_timer(struct loop *loop, struct loop_timer *timer)
{
    (void)loop;
    struct h2_conn *h = container_of(timer, struct h2_conn, end_timer);
    if (h->open_streams)
        log_info("client %s: HTTP/2 %u streams still open after GOAWAY: closing", h->ip, h->open_streams);
    h->expired = true;
    h->wake(h->wake_arg);
}

/* ------------------------------------------------------------------ */
/* rates                                                               */

/* Counts one event of a per-second budget; true when over it. */
static bool over_rate(struct h2_conn *h, uint32_t *count, uint32_t limit)
{
    int64_t now = h->p->loop->now;
    if (now - h->rate_start >= 1000) {
        h->rate_start = now;
        h->resets = h->control_frames = 0;
    }
    return ++*count > limit;
}

void h2_conn_count_reset(struct h2_conn *h)
{
    if (!h->terminating && over_rate(h, &h->resets, H2_RESETS_PER_STREAM_LIMIT * h->max_streams))
        h2_conn_refuse(h, NGHTTP2_ENHANCE_YOUR_CALM, "more than %" PRIu32 " stream resets in a second (rapid reset)",
                       H2_RESETS_PER_STREAM_LIMIT * h->max_streams);
}

/* ------------------------------------------------------------------ */
/* callbacks: frames                                                   */

static int on_begin_frame(nghttp2_session *session, const nghttp2_frame_hd *hd, void *user)
{
    (void)session;
    struct h2_conn *h = user;
    if (hd->type == NGHTTP2_HEADERS) {
        h->block_frames = 1;
        h->block_bytes = hd->length;
    } else if (hd->type == NGHTTP2_CONTINUATION) {
        h->block_frames++;
        h->block_bytes += hd->length;
    } else {
        return 0;
    }
    const struct config *cfg = h->p->cfg;
    /* Bounded in frames and in bytes before HPACK decodes anything, so an
     * endless block of empty or undecodable frames is caught too. */
    if (h->block_frames > H2_BLOCK_FRAMES_MAX)
        h2_conn_refuse(h, NGHTTP2_ENHANCE_YOUR_CALM, "header block of more than %d frames (CONTINUATION flood)",
                       H2_BLOCK_FRAMES_MAX);
    else if (h->block_bytes > cfg->header_bytes + 1024)
        h2_conn_refuse(h, NGHTTP2_ENHANCE_YOUR_CALM, "header block of more than %" PRIu32 " bytes",
                       cfg->header_bytes);
    return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
    (void)session;
    struct h2_conn *h = user;
    if (h->terminating)
        return 0;
    uint32_t rate = H2_CONTROL_FRAMES_PER_SECOND;
    switch (frame->hd.type) {
    case NGHTTP2_RST_STREAM:
        h2_conn_count_reset(h);
        return h2_stream_frame_recv(h, frame);
    case NGHTTP2_PING:
    case NGHTTP2_SETTINGS:
        if (!(frame->hd.flags & NGHTTP2_FLAG_ACK) && over_rate(h, &h->control_frames, rate))
            h2_conn_refuse(h, NGHTTP2_ENHANCE_YOUR_CALM, "more than %" PRIu32 " PING and SETTINGS frames in a second",
                           rate);
        return 0;
    default:
        return h2_stream_frame_recv(h, frame);
    }
}

/* nghttp2 refused a frame as a stream error; one kind means the client
 * ignored a setting of ours. */
static int on_invalid_frame(nghttp2_session *session, const nghttp2_frame *frame, int lib_error, void *user)
{
    (void)session;
    struct h2_conn *h = user;
    if (frame->hd.type == NGHTTP2_HEADERS && h->open_streams >= h->max_streams)
        h2_conn_refuse(h, NGHTTP2_ENHANCE_YOUR_CALM, "more than %" PRIu32 " concurrent streams", h->max_streams);
    else
        log_info("client %s: HTTP/2 frame on stream %d refused: %s", h->ip, frame->hd.stream_id,
                 nghttp2_strerror(lib_error));
    return 0;
}

/* ------------------------------------------------------------------ */
/* the session                                                         */

static nghttp2_session_callbacks *make_callbacks(void)
{
    nghttp2_session_callbacks *cb;
    if (nghttp2_session_callbacks_new(&cb) != 0)
        return NULL;
    nghttp2_session_callbacks_set_on_begin_frame_callback(cb, on_begin_frame);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
    nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(cb, on_invalid_frame);
    h2_stream_set_callbacks(cb);
    return cb;
}

static nghttp2_option *make_options(void)
{
    nghttp2_option *opt;
    if (nghttp2_option_new(&opt) != 0)
        return NULL;
    /* The window is given back as the application takes the bytes
     * (h2stream.c), not as nghttp2 hands them over. */
    nghttp2_option_set_no_auto_window_update(opt, 1);
    nghttp2_option_set_max_outbound_ack(opt, H2_OUTBOUND_ACK_MAX);
    nghttp2_option_set_max_continuations(opt, H2_LIBRARY_CONTINUATIONS_MAX);
    return opt;
}

static int start_session(struct h2_conn *h)
{
    nghttp2_session_callbacks *cb = make_callbacks();
    nghttp2_option *opt = make_options();
    int rv = cb && opt ? nghttp2_session_server_new2(&h->session, cb, h, opt) : NGHTTP2_ERR_NOMEM;
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    if (rv != 0)
        return -1;
    const struct config *cfg = h->p->cfg;
    nghttp2_settings_entry settings[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, h->max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, h->window},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, cfg->header_bytes},
    };
    if (nghttp2_submit_settings(h->session, NGHTTP2_FLAG_NONE, settings, sizeof(settings) / sizeof(settings[0])))
        return -1;
    /* Room on the connection for several streams' windows, so that one
     * upload whose application is slow to read does not stall the others;
     * but not for all of them: what a client may send before an
     * application takes it is held by sluice, and max_streams full
     * windows would let one connection hold 6 MB. */
    uint64_t wanted = (uint64_t)h->max_streams * h->window;
    int32_t conn_window = wanted > H2_CONN_WINDOW_MAX ? H2_CONN_WINDOW_MAX : (int32_t)wanted;
    nghttp2_session_set_local_window_size(h->session, NGHTTP2_FLAG_NONE, 0, conn_window);
    return 0;
}

static void on_idle_timer(struct loop *loop, struct loop_timer *timer);

/* Until its first request a connection is held to client_header, as an
 * HTTP/1.1 one is from its accept (the TLS handshake included): a client
 * that only opens connections - a preface, SETTINGS, then silence - must
 * not hold each for client_idle. */
static int64_t idle_limit(const struct h2_conn *h)
{
    const struct config *cfg = h->p->cfg;
    return nghttp2_session_get_last_proc_stream_id(h->session) > 0 ? cfg->client_idle_timeout_ms
                                                                  : cfg->client_header_timeout_ms;
}

struct h2_conn *h2_conn_new(struct proxy *p, struct stream *s, const char *ip, void (*wake)(void *arg),
                            void *arg)
{
    struct h2_conn *h = calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->p = p;
    h->s = s;
    h->ip = ip;
    h->wake = wake;
    h->wake_arg = arg;
    h->max_streams = p->cfg->h2_max_streams;
    h->window = h2_stream_window(p);
    h->field_max = p->cfg->header_count;
    h->fields = calloc(h->field_max, sizeof(*h->fields));
    h->rcbufs = calloc(2 * (size_t)h->field_max, sizeof(*h->rcbufs));
    h->nv = calloc((size_t)h->field_max + 1, sizeof(*h->nv));
    h->rate_start = h->last_stream_end = h->last_write = p->loop->now;
    loop_timer_init(&h->idle_timer, on_idle_timer);
    loop_timer_init(&h->end_timer, on_end_timer);
    if (!h->fields || !h->rcbufs || !h->nv || start_session(h) < 0) {
        h2_conn_free(h);
        return NULL;
    }
    /* the first look comes by the sooner of the two limits that may apply */
    int64_t header = p->cfg->client_header_timeout_ms, idle = p->cfg->client_idle_timeout_ms;
    loop_timer_arm(p->loop, &h->idle_timer, header < idle ? header : idle);
    return h;
}

void h2_conn_free(struct h2_conn *h)
{
    h2_streams_end(h);
    buf_release(h->p->buffers, &h->s->in);
    h2_fields_drop(h);
    loop_timer_cancel(h->p->loop, &h->idle_timer);
    loop_timer_cancel(h->p->loop, &h->end_timer);
    buf_release(h->p->buffers, &h->wbuf);
    nghttp2_session_del(h->session);
    free(h->fields);
    free(h->rcbufs);
    free(h->nv);
    free(h);
}

bool h2_conn_uses_pool(const struct h2_conn *h, const struct pool *pool)
{
    return h2_streams_use_pool(h, pool);
}

/* ------------------------------------------------------------------ */
/* idle                                                                */

/* A client that does not read: frames wait to be written and none was
 * taken for client_idle. Its streams time out by then, but their resets
 * are frames too, and GOAWAY as well: only closing ends it. Returns the ms
 * until it would be so, or 0 when it is. */
static int64_t write_stall_left(struct h2_conn *h, int64_t now)
{
    int64_t idle = h->p->cfg->client_idle_timeout_ms;
    if (!buf_len(&h->wbuf))
        return idle;
    int64_t left = idle - (now - h->last_write);
    if (left > 0)
        return left;
    log_info("client %s: HTTP/2 output not read for %" PRId64 " ms: closing", h->ip, now - h->last_write);
    h->expired = true;
    h->wake(h->wake_arg);
    return 0;
}

/* While no stream is open, client_idle runs from the last one's end
 * (client_header before the first); while output waits, from the
 * client's last read. */
static void on_idle_timer(struct loop *loop, struct loop_timer *timer)
{
    struct h2_conn *h = container_of(timer, struct h2_conn, idle_timer);
    int64_t stall = write_stall_left(h, loop->now);
    if (stall == 0)
        return;
    if (h->open_streams) {
        loop_timer_arm(loop, timer, stall);
        return;
    }
    int64_t left = idle_limit(h) - (loop->now - h->last_stream_end);
    if (left > 0) {
        loop_timer_arm(loop, timer, left < stall ? left : stall);
        return;
    }
    goaway_gracefully(h, "idle", H2_REFUSE_LINGER_MS);
    h->wake(h->wake_arg);
}

/* ------------------------------------------------------------------ */
/* input and output                                                    */

/* The session failed (nghttp2 may have queued a GOAWAY): the connection
 * ends once that is written, or in a while if the client does not read. */
static void fail(struct h2_conn *h)
{
    h->failed = true;
    loop_timer_arm(h->p->loop, &h->end_timer, H2_REFUSE_LINGER_MS);
}

/* Feeds the session what the socket gave. -1 when the session failed
 * (nghttp2 has queued a GOAWAY if the client broke the protocol). While
 * the session is paused on DATA, s->in stays as it is: the paused bytes
 * are in it. */
static int take_input(struct h2_conn *h)
{
    struct buf *in = &h->s->in;
    if (h->paused && !h2_stream_resume_input(h))
        return 0;
    if (buf_len(in)) {
        ssize_t n = nghttp2_session_mem_recv(h->session, (const uint8_t *)buf_start(in), buf_len(in));
        if (n < 0) {
            log_info("client %s: HTTP/2 connection error: %s", h->ip, nghttp2_strerror((int)n));
            return -1;
        }
        buf_consume(in, (uint32_t)n);
    }
    if (!h->paused && !buf_len(in))
        buf_release(h->p->buffers, in);
    return 0;
}

static enum step read_input(struct h2_conn *h)
{
    struct stream *s = h->s;
    if (h->paused || buf_len(&s->in) || !s->can_read || !nghttp2_session_want_read(h->session))
        return STEP_WAIT;
    if (buf_acquire(h->p->buffers, &s->in) < 0)
        return STEP_CLOSE;
    ssize_t n = stream_read(s);
    if (n < 0)
        return STEP_CLOSE;   /* the client left: its streams end with it */
    if (n == 0) {
        buf_release(h->p->buffers, &s->in);
        return STEP_WAIT;
    }
    s->last_activity = h->p->loop->now;
    if (take_input(h) < 0)
        fail(h);
    return STEP_MOVED;
}

/* Gathers frames into wbuf: one write for many of them. */
static int gather_output(struct h2_conn *h)
{
    struct buf *w = &h->wbuf;
    while (buf_room(w)) {
        if (!h->pending_len) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(h->session, &data);
            if (n < 0)
                return -1;
            if (n == 0)
                break;
            h->pending = data;
            h->pending_len = (size_t)n;
        }
        size_t take = h->pending_len < buf_room(w) ? h->pending_len : buf_room(w);
        memcpy(buf_end(w), h->pending, take);
        w->tail += (uint32_t)take;
        h->pending += take;
        h->pending_len -= take;
    }
    return 0;
}

static enum step write_output(struct h2_conn *h)
{
    struct stream *s = h->s;
    enum step progress = STEP_WAIT;
    while (s->can_write) {
        if (buf_acquire(h->p->buffers, &h->wbuf) < 0)
            return STEP_CLOSE;
        if (buf_len(&h->wbuf) == 0 && gather_output(h) < 0)
            return STEP_CLOSE;
        if (buf_len(&h->wbuf) == 0)
            break;
        ssize_t n = stream_write(s, buf_start(&h->wbuf), buf_len(&h->wbuf), NULL, 0);
        if (n < 0)
            return STEP_CLOSE;
        if (n == 0)
            break;
        buf_consume(&h->wbuf, (uint32_t)n);
        s->last_activity = h->last_write = h->p->loop->now;
        progress = STEP_MOVED;
    }
    if (buf_len(&h->wbuf) == 0)
        buf_release(h->p->buffers, &h->wbuf);
    return progress;
}

static bool output_done(const struct h2_conn *h)
{
    return buf_len(&h->wbuf) == 0 && h->pending_len == 0 && !nghttp2_session_want_write(h->session);
}

/* Whether the connection has nothing left to do. */
static bool finished(struct h2_conn *h)
{
    if (h->expired)
        return true;
    if (!output_done(h))
        return false;
    if (h->failed || h->terminating)
        return true;
    if (h->goaway && h->open_streams == 0)
        return true;
    return !nghttp2_session_want_read(h->session) && !nghttp2_session_want_write(h->session);
}

static enum step step_once(struct h2_conn *h)
{
    if (h->expired)
        return STEP_CLOSE;
    enum step moved = STEP_WAIT;
    if (!h->failed && !h->terminating && (h->paused || buf_len(&h->s->in))) {
        /* Input left from a pause, or the client's first bytes, read
         * before the connection was ours. */
        const struct h2_stream *paused = h->paused;
        uint32_t before = buf_len(&h->s->in);
        if (take_input(h) < 0)
            fail(h);
        if (h->paused != paused || buf_len(&h->s->in) != before)
            moved = STEP_MOVED;
    }
    if (!h->failed && !h->terminating) {
        enum step r = read_input(h);
        if (r == STEP_CLOSE)
            return STEP_CLOSE;
        moved |= r;
    }
    moved |= h2_streams_run(h);
    enum step w = write_output(h);
    if (w == STEP_CLOSE)
        return STEP_CLOSE;
    h2_streams_recycle(h);
    if (finished(h))
        return STEP_CLOSE;
    return moved || w || h->run ? STEP_MOVED : STEP_WAIT;
}

enum step h2_conn_step(struct h2_conn *h)
{
    h->stepping = true;
    enum step r = step_once(h);
    h->stepping = false;
    return r;
}
