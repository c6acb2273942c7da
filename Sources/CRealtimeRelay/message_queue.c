// See message_queue.h.
#include "message_queue.h"
#include <stdlib.h>
#include <string.h>

int rtq_push(struct queue *q, const unsigned char *bytes, size_t length, int binary) {
    struct msg *m = malloc(sizeof *m + LWS_PRE + length);
    if (!m) return -1;
    m->next = NULL;
    m->length = length;
    m->binary = binary;
    if (length) memcpy(m->bytes + LWS_PRE, bytes, length);
    if (q->tail) q->tail->next = m; else q->head = m;
    q->tail = m;
    q->bytes += length;
    return 0;
}

/// Writes what `q` holds while the socket takes it; -1 when a write failed.
int rtq_drain(struct lws *wsi, struct queue *q) {
    while (q->head) {
        struct msg *m = q->head;
        int flags = m->binary ? LWS_WRITE_BINARY : LWS_WRITE_TEXT;
        if (lws_write(wsi, m->bytes + LWS_PRE, m->length, flags) < (int)m->length) return -1;
        q->head = m->next;
        if (!q->head) q->tail = NULL;
        q->bytes -= m->length;
        free(m);
        if (q->head && lws_send_pipe_choked(wsi)) {
            lws_callback_on_writable(wsi);
            break;
        }
    }
    return 0;
}

/// Adds a fragment; 1 when `p` holds a whole message, -1 when it grew too large or memory ran out.
int rtq_gather(struct lws *wsi, struct partial *p, const void *in, size_t length, size_t limit) {
    if (lws_is_first_fragment(wsi)) p->length = 0;
    if (p->length + length > limit) return -1;
    if (p->length + length > p->capacity) {
        size_t capacity = p->capacity ? p->capacity : 4096;
        while (capacity < p->length + length) capacity *= 2;
        unsigned char *grown = realloc(p->bytes, capacity);
        if (!grown) return -1;
        p->bytes = grown;
        p->capacity = capacity;
    }
    if (length) memcpy(p->bytes + p->length, in, length);
    p->length += length;
    if (!lws_is_final_fragment(wsi)) return 0;
    // A message that was large once keeps no large buffer for the rest of the session.
    return 1;
}

void rtq_shrink(struct partial *p) {
    if (p->capacity > 65536) {
        free(p->bytes);
        p->bytes = NULL;
        p->capacity = 0;
    }
    p->length = 0;
}

void rtq_queue_free(struct queue *q) {
    while (q->head) {
        struct msg *m = q->head;
        q->head = m->next;
        free(m);
    }
    q->tail = NULL;
    q->bytes = 0;
}

/// Queues the whole message gathered in `from` for `to` (NULL: not there yet); `from_wsi` stops
/// being read while the queue is over the high-water mark.
int rtq_forward(struct lws *from_wsi, struct partial *from, struct queue *queue, struct lws *to, int *paused) {
    if (rtq_push(queue, from->bytes, from->length, lws_frame_is_binary(from_wsi))) return -1;
    rtq_shrink(from);
    if (to) lws_callback_on_writable(to);
    if (queue->bytes > RT_HIGH_WATER && !*paused) {
        *paused = 1;
        lws_rx_flow_control(from_wsi, 0);
    }
    return 0;
}

/// Writes what `queue` holds for `wsi`; lets `other` be read again once the queue has drained,
/// and closes `wsi` with `close_code` once nothing is left to write.
int rtq_writable(struct lws *wsi, struct queue *queue, struct lws *other, int *other_paused, int close_code) {
    if (rtq_drain(wsi, queue)) return -1;
    if (*other_paused && queue->bytes < RT_LOW_WATER && other) {
        *other_paused = 0;
        lws_rx_flow_control(other, 1);
    }
    if (close_code && !queue->head) {
        lws_close_reason(wsi, close_code, NULL, 0);
        return -1;
    }
    return 0;
}

