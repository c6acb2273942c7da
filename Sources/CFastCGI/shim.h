#ifndef CFASTCGI_SHIM_H
#define CFASTCGI_SHIM_H
#include <fcgiapp.h>
#include <sys/socket.h>
#include <signal.h>
#include <pthread.h>

/// FCGX_PutStr takes a non-const char*; a typed wrapper keeps Swift call sites clean.
static inline int cf_put(const void *bytes, int n, FCGX_Stream *stream) {
    return FCGX_PutStr((const char *)bytes, n, stream);
}
#endif
