// The messages of one direction of a Realtime session: gathered from fragments as they arrive,
// queued whole for the other side, written out as its socket takes them (relay.c).
#ifndef MESSAGE_QUEUE_H
#define MESSAGE_QUEUE_H
#include <libwebsockets.h>
#include <stddef.h>

// A message larger than this from either side closes the session (1009): Realtime events are
// small, audio comes in chunks of at most a few hundred KB.
#define RT_MAX_MESSAGE (16u << 20)
// A client's: the API takes up to 15 MiB of audio in one input_audio_buffer.append, 20 MiB in
// base64. What a client holds half-sent stays in the gateway's memory, for 30 s at most.
#define RT_MAX_CLIENT_MESSAGE (21u << 20)
// A side whose queue holds more than this stops being read until the other side took it.
#define RT_HIGH_WATER (4u << 20)
#define RT_LOW_WATER (1u << 20)

struct msg {
    struct msg *next;
    size_t length;
    int binary;
    unsigned char bytes[];  // LWS_PRE free bytes, then the message
};

struct queue {
    struct msg *head, *tail;
    size_t bytes;
};

/// The message being received from one side, fragment by fragment.
struct partial {
    unsigned char *bytes;
    size_t length, capacity;
};

int rtq_push(struct queue *q, const unsigned char *bytes, size_t length, int binary);
void rtq_queue_free(struct queue *q);
int rtq_drain(struct lws *wsi, struct queue *q);
int rtq_gather(struct lws *wsi, struct partial *p, const void *in, size_t length, size_t limit);
void rtq_shrink(struct partial *p);
int rtq_forward(struct lws *from_wsi, struct partial *from, struct queue *queue, struct lws *to, int *paused);
int rtq_writable(struct lws *wsi, struct queue *queue, struct lws *other, int *other_paused, int close_code);

#endif
