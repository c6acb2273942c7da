// The Realtime relay over libwebsockets (see CRealtimeRelay.h). Nothing in libwebsockets is
// thread-safe but lws_cancel_service(): other threads queue requests (`struct op`) and wake the
// loop, which carries them out in LWS_CALLBACK_EVENT_WAIT_CANCELLED.
#include "CRealtimeRelay.h"
#include "message_queue.h"
#include <libwebsockets.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/// Seconds a client has to finish a message it began.
#define RT_PARTIAL_SECONDS 30

enum op_kind { OP_CONNECT, OP_ADOPT, OP_CLOSE };

struct op {
    struct op *next;
    enum op_kind kind;
    rt_session *session;
    int fd, code;
    char *bytes;  // the handshake (OP_ADOPT) or the text to send first (OP_CLOSE)
    size_t length;
};

struct rt_session {
    rt_loop *loop;
    void *owner;
    atomic_int references;
    struct rt_session *prev, *next;  // the loop's live sessions
    struct lws *client, *upstream;
    struct queue to_client, to_upstream;
    struct partial from_client, from_upstream;
    // The Azure side's address and headers, until it is dialled.
    char *host, *path, **headers;
    int port, tls;
    int ready_reported, adopted, no_client, in_loop_list, ended;
    // Azure's side completed its handshake; responses in progress on it; response.cancel events
    // went to it before its close.
    int upstream_open, response_open, cancel_sent;
    // The client has begun a message it has not finished (a deadline runs).
    int client_partial;
    // The first close, which the session ends with.
    int close_code, closed_by;
    // A close frame is due on that side once its queue is written.
    int close_client_code, close_upstream_code;
    int upstream_paused, client_paused;
};

struct rt_loop {
    rt_events events;
    struct lws_context *context;
    struct lws_vhost *vhost;
    pthread_mutex_t lock;
    struct op *ops, *ops_tail;  // under lock
    atomic_int stopping;
    rt_session *sessions;  // loop thread only
    rt_session *adopting;  // the session whose socket is being adopted right now
};

static void session_unref(rt_session *s) {
    if (atomic_fetch_sub(&s->references, 1) != 1) return;
    free(s->from_client.bytes);
    free(s->from_upstream.bytes);
    rtq_queue_free(&s->to_client);
    rtq_queue_free(&s->to_upstream);
    free(s->host);
    free(s->path);
    if (s->headers) {
        for (char **h = s->headers; *h; h++) free(*h);
        free(s->headers);
    }
    free(s);
}

/// Close codes that may not be sent in a close frame become 1011.
static int sendable(int code) {
    if (code == 1000 || (code >= 1001 && code <= 1003) || (code >= 1007 && code <= 1014 && code != 1010) || (code >= 3000 && code <= 4999))
        return code;
    return 1011;
}

static void first_close(rt_session *s, int code, int by) {
    if (s->closed_by) return;
    s->closed_by = by;
    s->close_code = code;
}

static void close_client(rt_session *s, int code) {
    if (s->close_client_code) return;
    s->close_client_code = sendable(code);
    if (s->client) {
        lws_callback_on_writable(s->client);
        lws_set_timeout(s->client, PENDING_TIMEOUT_CLOSE_SEND, 5);
    }
}

static void close_upstream(rt_session *s, int code) {
    if (s->close_upstream_code) return;
    s->close_upstream_code = sendable(code);
    if (!s->upstream) return;
    if (!s->upstream_open) {
        // Still dialling or in its handshake: nothing to say, the connection goes.
        lws_set_timeout(s->upstream, PENDING_TIMEOUT_KILLED_BY_PARENT, LWS_TO_KILL_ASYNC);
        return;
    }
    lws_set_timer_usecs(s->upstream, -1);
    lws_callback_on_writable(s->upstream);
    // Azure gets a second to answer the close frame, then the connection is cut.
    lws_set_timeout(s->upstream, PENDING_TIMEOUT_CLOSE_SEND, 1);
}

/// How long Azure gets to end a response in progress after the client left or the gateway
/// stopped the session, so the response's usage arrives and is billed.
#define RT_CANCEL_USECS 500000

/// The code Azure's side is closed with: 1001 when the gateway is going away, else 1000.
static int upstream_close_code(const rt_session *s) {
    return s->closed_by == RT_BY_GATEWAY && s->close_code == 1001 ? 1001 : 1000;
}

/// Ends Azure's side when the session ends: first a `response.cancel`, so a response in progress
/// ends with its usage (billed, as Azure bills it), then after RT_CANCEL_USECS the close.
static void finish_upstream(rt_session *s) {
    if (s->close_upstream_code) return;
    if (!s->upstream || !s->upstream_open || !s->response_open || s->cancel_sent) {
        if (!s->cancel_sent) close_upstream(s, upstream_close_code(s));
        return;
    }
    // One response.cancel per response in progress (by its id: a response outside the default
    // conversation is not cancelled without one).
    char cancels[16384];
    size_t length = s->loop->events.cancels(s->owner, cancels, sizeof cancels);
    s->cancel_sent = 1;
    for (size_t start = 0; start < length;) {
        const char *newline = memchr(cancels + start, '\n', length - start);
        size_t end = newline ? (size_t)(newline - cancels) : length;
        if (end > start && rtq_push(&s->to_upstream, (const unsigned char *)cancels + start, end - start, 0)) {
            close_upstream(s, 1000);
            return;
        }
        start = end + 1;
    }
    lws_callback_on_writable(s->upstream);
    lws_set_timer_usecs(s->upstream, RT_CANCEL_USECS);
}

static void unlist(rt_session *s) {
    rt_loop *loop = s->loop;
    if (!s->in_loop_list) return;
    if (s->prev) s->prev->next = s->next; else loop->sessions = s->next;
    if (s->next) s->next->prev = s->prev;
    s->in_loop_list = 0;
}

/// Once neither side is open: `ended` for a session that was adopted, and the loop's reference goes.
static void settle(rt_session *s) {
    if (s->ended || s->client || s->upstream) return;
    // Not adopted, and Azure's side was open: the gateway still adopts the client, or closes.
    if (!s->adopted && !s->no_client && s->ready_reported != 2) return;
    s->ended = 1;
    unlist(s);
    if (s->ready_reported == 1)
        s->loop->events.ended(s->owner, s->close_code ? s->close_code : 1000, s->closed_by ? s->closed_by : RT_BY_GATEWAY);
    session_unref(s);
}

static void report_ready(rt_session *s, int status) {
    if (s->ready_reported) return;
    s->ready_reported = status == 101 ? 1 : 2;
    s->loop->events.upstream_ready(s->owner, status);
}

/// Azure's side is gone, whichever callback says so first (a connection error, its close, or
/// its destruction, which libwebsockets may deliver to the first protocol when a timeout ends
/// a connection that never bound to its own): never touched again.
static void azure_gone(rt_session *s, struct lws *wsi, int status) {
    lws_set_opaque_user_data(wsi, NULL);
    if (s->upstream == wsi) s->upstream = NULL;
    s->upstream_open = 0;
    if (!s->ready_reported) {
        report_ready(s, status);
    } else {
        first_close(s, 1011, RT_BY_UPSTREAM);  // cut without a close frame
        close_client(s, s->close_code);
    }
    settle(s);
}

static void run_connect(rt_loop *loop, rt_session *s) {
    struct lws_client_connect_info info;
    memset(&info, 0, sizeof info);
    info.context = loop->context;
    info.vhost = loop->vhost;
    info.address = s->host;
    info.port = s->port;
    info.path = s->path;
    info.host = s->host;
    info.ssl_connection = s->tls ? LCCSCF_USE_SSL : 0;
    info.local_protocol_name = "azure";
    info.opaque_user_data = s;
    s->prev = NULL;
    s->next = loop->sessions;
    if (loop->sessions) loop->sessions->prev = s;
    loop->sessions = s;
    s->in_loop_list = 1;
    // Remembered only while it is ours: a failure inside the call reports through azure_gone.
    struct lws *wsi = lws_client_connect_via_info(&info);
    if (wsi && lws_get_opaque_user_data(wsi) == s && !s->ready_reported) {
        s->upstream = wsi;
        return;
    }
    report_ready(s, 0);
    settle(s);
}

static void run_adopt(rt_loop *loop, rt_session *s, int fd, const char *handshake, size_t length) {
    s->adopted = 1;
    if (!s->upstream) {
        // Azure went away between its 101 and the adoption: the client, who has no 101 yet,
        // gets an HTTP answer.
        static const char gone[] = "HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\nContent-Length: 130\r\n"
                                   "Connection: close\r\n\r\n"
                                   "{\"error\":{\"code\":\"upstream_error\",\"message\":\"Azure closed the Realtime session as it opened.\",\"param\":null,\"type\":\"server_error\"}}";
        ssize_t written = write(fd, gone, sizeof gone - 1);
        (void)written;
        first_close(s, 1011, RT_BY_UPSTREAM);
        close(fd);
        settle(s);
        return;
    }
    loop->adopting = s;
    struct lws *wsi = lws_adopt_socket_vhost_readbuf(loop->vhost, fd, handshake, length);
    loop->adopting = NULL;
    if (wsi && !s->client) {
        s->client = wsi;
        lws_set_opaque_user_data(wsi, s);
    }
    if (!wsi) {
        first_close(s, 1011, RT_BY_GATEWAY);
        close_upstream(s, 1001);
    }
}


static void run_close(rt_session *s, const char *text, size_t length, int code) {
    if (s->ended) return;
    if (!s->adopted) s->no_client = 1;
    if (text && s->client && !s->close_client_code) rtq_push(&s->to_client, (const unsigned char *)text, length, 0);
    first_close(s, code, RT_BY_GATEWAY);
    close_client(s, code);
    finish_upstream(s);
    settle(s);
}

static void run_ops(rt_loop *loop) {
    pthread_mutex_lock(&loop->lock);
    struct op *op = loop->ops;
    loop->ops = loop->ops_tail = NULL;
    pthread_mutex_unlock(&loop->lock);
    while (op) {
        struct op *next = op->next;
        rt_session *s = op->session;
        switch (op->kind) {
        case OP_CONNECT: run_connect(loop, s); break;
        case OP_ADOPT: run_adopt(loop, s, op->fd, op->bytes, op->length); break;
        case OP_CLOSE: run_close(s, op->bytes, op->length, op->code); break;
        }
        session_unref(s);
        free(op->bytes);
        free(op);
        op = next;
    }
}

static void enqueue(rt_session *s, enum op_kind kind, int fd, const char *bytes, size_t length, int code) {
    struct op *op = calloc(1, sizeof *op);
    if (!op) abort();
    op->kind = kind;
    op->session = s;
    op->fd = fd;
    op->code = code;
    if (bytes) {
        op->bytes = malloc(length + 1);
        if (!op->bytes) abort();
        memcpy(op->bytes, bytes, length);
        op->bytes[length] = 0;
        op->length = length;
    }
    atomic_fetch_add(&s->references, 1);
    rt_loop *loop = s->loop;
    pthread_mutex_lock(&loop->lock);
    if (loop->ops_tail) loop->ops_tail->next = op; else loop->ops = op;
    loop->ops_tail = op;
    pthread_mutex_unlock(&loop->lock);
    lws_cancel_service(loop->context);
}

static int peer_close_code(const void *in, size_t length) {
    const unsigned char *bytes = in;
    return length >= 2 ? (bytes[0] << 8 | bytes[1]) : 1005;
}

/// The client's side (the socket nginx connected, adopted once Azure's side is open).
static int on_client(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t length) {
    rt_loop *loop = lws_context_user(lws_get_context(wsi));
    rt_session *s = lws_get_opaque_user_data(wsi);
    (void)user;
    switch (reason) {
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        run_ops(loop);
        return 0;
    case LWS_CALLBACK_ESTABLISHED:
        if (!s && loop->adopting) {
            s = loop->adopting;
            s->client = wsi;
            lws_set_opaque_user_data(wsi, s);
        }
        if (!s) return -1;
        if (s->to_client.head || s->close_client_code) lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_RECEIVE: {
        if (!s) return -1;
        int whole = rtq_gather(wsi, &s->from_client, in, length, RT_MAX_CLIENT_MESSAGE);
        if (whole < 0) {
            first_close(s, 1009, RT_BY_GATEWAY);
            close_client(s, 1009);
            close_upstream(s, 1000);
            return 0;
        }
        if (!whole) {
            // A message begun must be finished within RT_PARTIAL_SECONDS: what a client holds
            // half-sent stays in the gateway's memory.
            if (!s->client_partial) lws_set_timeout(wsi, PENDING_TIMEOUT_USER_OK, RT_PARTIAL_SECONDS);
            s->client_partial = 1;
            return 0;
        }
        if (s->client_partial) {
            s->client_partial = 0;
            if (!s->close_client_code) lws_set_timeout(wsi, NO_PENDING_TIMEOUT, 0);
        }
        if (s->close_upstream_code) return 0;
        return rtq_forward(wsi, &s->from_client, &s->to_upstream, s->upstream, &s->client_paused);
    }
    case LWS_CALLBACK_SERVER_WRITEABLE:
        if (!s) return -1;
        return rtq_writable(wsi, &s->to_client, s->upstream, &s->upstream_paused, s->close_client_code);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (!s) return 0;
        first_close(s, peer_close_code(in, length), RT_BY_CLIENT);
        finish_upstream(s);
        return 0;
    case LWS_CALLBACK_CLOSED:
        if (!s || wsi != s->client) return 0;
        s->client = NULL;
        lws_set_opaque_user_data(wsi, NULL);
        first_close(s, 1005, RT_BY_CLIENT);  // gone without a close frame
        finish_upstream(s);
        settle(s);
        return 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
        // An Azure connection that never bound to its protocol ends here.
        if (s && wsi != s->client) azure_gone(s, wsi, reason == LWS_CALLBACK_CLIENT_CONNECTION_ERROR ? (int)lws_http_client_http_response(wsi) : 0);
        else if (s && reason == LWS_CALLBACK_WSI_DESTROY) {
            s->client = NULL;
            lws_set_opaque_user_data(wsi, NULL);
            first_close(s, 1005, RT_BY_CLIENT);
            finish_upstream(s);
            settle(s);
        }
        return 0;
    default:
        return 0;
    }
}

/// Azure's side.
static int on_azure(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in, size_t length) {
    rt_session *s = lws_get_opaque_user_data(wsi);
    (void)user;
    switch (reason) {
    case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER: {
        if (!s) return -1;
        unsigned char **p = in, *end = *p + length;
        for (char **h = s->headers; h && h[0] && h[1]; h += 2) {
            if (lws_add_http_header_by_name(wsi, (const unsigned char *)h[0], (const unsigned char *)h[1], (int)strlen(h[1]), p, end))
                return -1;
        }
        return 0;
    }
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        if (!s) return -1;
        s->upstream = wsi;
        s->upstream_open = 1;
        report_ready(s, 101);
        if (s->to_upstream.head || s->close_upstream_code) lws_callback_on_writable(wsi);
        return 0;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
        if (s) azure_gone(s, wsi, (int)lws_http_client_http_response(wsi));
        return 0;
    case LWS_CALLBACK_TIMER:
        // The time after a response.cancel is up.
        if (s) close_upstream(s, upstream_close_code(s));
        return 0;
    case LWS_CALLBACK_CLIENT_RECEIVE: {
        if (!s) return -1;
        int whole = rtq_gather(wsi, &s->from_upstream, in, length, RT_MAX_MESSAGE);
        if (whole < 0) {
            first_close(s, 1009, RT_BY_GATEWAY);
            close_client(s, 1011);
            close_upstream(s, 1009);
            return 0;
        }
        if (!whole) return 0;
        // Reported even when it no longer goes to the client: what Azure sends after a stop or
        // after the client left is billed all the same.
        int progress = s->loop->events.upstream_message(s->owner, s->from_upstream.bytes, s->from_upstream.length,
                                                        lws_frame_is_binary(wsi));
        if (progress >= 0) s->response_open = progress;
        // The response the gateway waited for ended: Azure's side may close now.
        if (s->cancel_sent && !s->response_open) close_upstream(s, upstream_close_code(s));
        if (s->close_client_code || (!s->client && s->adopted)) {
            rtq_shrink(&s->from_upstream);
            return 0;
        }
        return rtq_forward(wsi, &s->from_upstream, &s->to_client, s->client, &s->upstream_paused);
    }
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (!s) return -1;
        return rtq_writable(wsi, &s->to_upstream, s->client, &s->client_paused, s->close_upstream_code);
    case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
        if (!s) return 0;
        first_close(s, peer_close_code(in, length), RT_BY_UPSTREAM);
        close_client(s, s->close_code);
        return 0;
    case LWS_CALLBACK_CLIENT_CLOSED:
    case LWS_CALLBACK_WSI_DESTROY:
        if (s) azure_gone(s, wsi, 0);
        return 0;
    default:
        return 0;
    }
}

static const struct lws_protocols protocols[] = {
    // First: a client that offers no subprotocol gets this one, and no Sec-WebSocket-Protocol.
    {"realtime", on_client, 0, 0, 0, NULL, 0},
    {"azure", on_azure, 0, 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

rt_loop *rt_loop_create(const rt_events *events, const char *ca_file, int connect_timeout_s) {
    rt_loop *loop = calloc(1, sizeof *loop);
    if (!loop) return NULL;
    loop->events = *events;
    pthread_mutex_init(&loop->lock, NULL);
    // Only errors, and not lws 4.1's "adopt_socket_readbuf: calling service", which it logs as one.
    lws_set_log_level(0, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT | LWS_SERVER_OPTION_EXPLICIT_VHOSTS;
    info.port = CONTEXT_PORT_NO_LISTEN_SERVER;
    info.protocols = protocols;
    info.user = loop;
    info.timeout_secs = connect_timeout_s > 0 ? (unsigned)connect_timeout_s : 10;
    info.client_ssl_ca_filepath = ca_file;
    info.fd_limit_per_thread = 0;
    loop->context = lws_create_context(&info);
    if (!loop->context) {
        free(loop);
        return NULL;
    }
    info.vhost_name = "realtime";
    loop->vhost = lws_create_vhost(loop->context, &info);
    if (!loop->vhost) {
        lws_context_destroy(loop->context);
        free(loop);
        return NULL;
    }
    return loop;
}

void rt_loop_run(rt_loop *loop) {
    while (!atomic_load(&loop->stopping)) {
        if (lws_service(loop->context, 0) < 0) break;
    }
    run_ops(loop);
    for (rt_session *s = loop->sessions; s; s = s->next) {
        first_close(s, 1001, RT_BY_GATEWAY);
        close_client(s, 1001);
        // A response in progress is cancelled and billed, as when the client leaves.
        finish_upstream(s);
    }
    // The cancel's half second and a second for the close frames; then whatever is left is cut
    // by the context's end.
    for (int i = 0; i < 30 && loop->sessions; i++) lws_service(loop->context, 50);
    lws_context_destroy(loop->context);
    loop->context = NULL;
}

void rt_loop_stop(rt_loop *loop) {
    atomic_store(&loop->stopping, 1);
    if (loop->context) lws_cancel_service(loop->context);
}

rt_session *rt_session_new(rt_loop *loop) {
    rt_session *s = calloc(1, sizeof *s);
    if (!s) abort();
    s->loop = loop;
    atomic_init(&s->references, 2);
    return s;
}

void rt_session_release(rt_session *session) {
    session_unref(session);
}

static char *copy(const char *text) {
    char *copied = strdup(text ? text : "");
    if (!copied) abort();
    return copied;
}

void rt_session_connect(rt_session *s, void *owner, const char *host, int port, int tls, const char *path,
                        const char *const *headers) {
    s->owner = owner;
    s->host = copy(host);
    s->path = copy(path);
    s->port = port;
    s->tls = tls;
    size_t count = 0;
    while (headers && headers[count]) count++;
    s->headers = calloc(count + 1, sizeof *s->headers);
    if (!s->headers) abort();
    for (size_t i = 0; i < count; i++) s->headers[i] = copy(headers[i]);
    enqueue(s, OP_CONNECT, -1, NULL, 0, 0);
}

void rt_session_adopt(rt_session *s, int fd, const char *handshake, size_t length) {
    enqueue(s, OP_ADOPT, fd, handshake, length, 0);
}

void rt_session_close(rt_session *s, const char *text, int code) {
    enqueue(s, OP_CLOSE, -1, text, text ? strlen(text) : 0, code);
}
