#ifndef CCURL_SHIM_H
#define CCURL_SHIM_H
#include <curl/curl.h>

/* curl_easy_setopt and curl_easy_getinfo are variadic, which Swift cannot call.
   One typed shim per argument kind. */
typedef size_t (*ccurl_data_fn)(char *ptr, size_t size, size_t nmemb, void *userdata);

static inline CURLcode ccurl_setopt_long(CURL *h, CURLoption opt, long v) {
    return curl_easy_setopt(h, opt, v);
}
static inline CURLcode ccurl_setopt_off(CURL *h, CURLoption opt, curl_off_t v) {
    return curl_easy_setopt(h, opt, v);
}
static inline CURLcode ccurl_setopt_string(CURL *h, CURLoption opt, const char *v) {
    return curl_easy_setopt(h, opt, v);
}
static inline CURLcode ccurl_setopt_pointer(CURL *h, CURLoption opt, void *v) {
    return curl_easy_setopt(h, opt, v);
}
static inline CURLcode ccurl_setopt_slist(CURL *h, CURLoption opt, struct curl_slist *v) {
    return curl_easy_setopt(h, opt, v);
}
static inline CURLcode ccurl_setopt_datafn(CURL *h, CURLoption opt, ccurl_data_fn v) {
    return curl_easy_setopt(h, opt, v);
}
typedef int (*ccurl_seek_fn)(void *userdata, curl_off_t offset, int origin);
static inline CURLcode ccurl_setopt_seekfn(CURL *h, ccurl_seek_fn v) {
    return curl_easy_setopt(h, CURLOPT_SEEKFUNCTION, v);
}
/* curl_share_setopt is variadic too. */
typedef void (*ccurl_lock_fn)(CURL *handle, curl_lock_data data, curl_lock_access access, void *userptr);
typedef void (*ccurl_unlock_fn)(CURL *handle, curl_lock_data data, void *userptr);
static inline CURLSHcode ccurl_share_setopt_long(CURLSH *s, CURLSHoption opt, long v) {
    return curl_share_setopt(s, opt, v);
}
static inline CURLSHcode ccurl_share_setopt_pointer(CURLSH *s, CURLSHoption opt, void *v) {
    return curl_share_setopt(s, opt, v);
}
static inline CURLSHcode ccurl_share_setopt_lockfn(CURLSH *s, ccurl_lock_fn v) {
    return curl_share_setopt(s, CURLSHOPT_LOCKFUNC, v);
}
static inline CURLSHcode ccurl_share_setopt_unlockfn(CURLSH *s, ccurl_unlock_fn v) {
    return curl_share_setopt(s, CURLSHOPT_UNLOCKFUNC, v);
}
static inline CURLcode ccurl_getinfo_long(CURL *h, CURLINFO info, long *v) {
    return curl_easy_getinfo(h, info, v);
}
/* The result of the transfer that ended on `m` (one easy handle per multi handle). */
static inline CURLcode ccurl_multi_done_result(CURLM *m) {
    int queued = 0;
    CURLMsg *msg;
    CURLcode result = CURLE_OK;
    while ((msg = curl_multi_info_read(m, &queued)) != NULL) {
        if (msg->msg == CURLMSG_DONE) result = msg->data.result;
    }
    return result;
}

#endif
