// The Realtime relay's event loop over libwebsockets: one thread (`rt_loop_run`) serves every
// session of a process, both sides. The gateway does everything before the upgrade in Swift
// (the key, the model, the admission, the Azure handshake) and hands the loop only what is
// decided; the loop relays whole messages and reports what the gateway counts.
#ifndef CREALTIMERELAY_H
#define CREALTIMERELAY_H
#include <stddef.h>

typedef struct rt_loop rt_loop;
typedef struct rt_session rt_session;

/// What the loop reports, always on its own thread. `owner` is what `rt_session_connect` was given.
typedef struct rt_events {
    /// The Azure side's handshake ended: 101 when it is open, else Azure's HTTP status (0: no
    /// connection or no answer).
    void (*upstream_ready)(void *owner, int status);
    /// One whole message from Azure, before it is queued for the client. Returns how many
    /// responses are in progress after it (`response.created` adds one, `response.done` ends
    /// one), or -1 when it changed nothing.
    int (*upstream_message)(void *owner, const unsigned char *data, size_t length, int binary);
    /// The events that cancel every response in progress, one per line, written into `buffer`
    /// (at most `capacity` bytes); returns their length.
    size_t (*cancels)(void *owner, char *buffer, size_t capacity);
    /// Both sides are closed, for a session whose Azure side opened: the close code the session
    /// ended with and who ended it (RT_BY_CLIENT, RT_BY_UPSTREAM, RT_BY_GATEWAY). The last
    /// report for the session.
    void (*ended)(void *owner, int code, int by);
} rt_events;

enum { RT_BY_CLIENT = 1, RT_BY_UPSTREAM = 2, RT_BY_GATEWAY = 3 };

/// A loop; NULL when libwebsockets cannot make its context. `ca_file` NULL: the system's CAs.
/// `connect_timeout_s`: how long an Azure handshake may take.
rt_loop *rt_loop_create(const rt_events *events, const char *ca_file, int connect_timeout_s);
/// Serves until `rt_loop_stop`; then closes what is still open (1001, responses in progress
/// cancelled first) and returns. A loop lives as long as its process.
void rt_loop_run(rt_loop *loop);
void rt_loop_stop(rt_loop *loop);

/// A session; it holds two references: the loop's (dropped after its last report) and the
/// caller's (`rt_session_release`).
rt_session *rt_session_new(rt_loop *loop);
void rt_session_release(rt_session *session);

// Thread-safe requests, carried out on the loop's thread.
/// Opens the Azure side: ws(s)://host:port/path with `headers` ("name:", "value" pairs, then NULL),
/// reporting to `owner` from now on: `upstream_ready` once; when that is not 101 it is the last
/// report, else `ended` is (whether or not the client was adopted).
void rt_session_connect(rt_session *session, void *owner, const char *host, int port, int tls, const char *path,
                        const char *const *headers);
/// Hands the client's socket over once the Azure side is open: `handshake` is a minimal upgrade
/// request the gateway wrote (at most 2048 bytes), which libwebsockets answers with the 101.
/// The loop owns `fd` from here on.
void rt_session_adopt(rt_session *session, int fd, const char *handshake, size_t length);
/// Ends the session from the gateway: `text` (may be NULL) goes to the client first, then a close
/// frame with `code`; Azure's side gets a `response.cancel` for each response in progress (see
/// `cancels`) and its close once they ended, or after half a second.
void rt_session_close(rt_session *session, const char *text, int code);

#endif
