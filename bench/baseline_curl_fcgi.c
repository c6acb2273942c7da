/* The floor for any FastCGI + libcurl gateway: a threaded libfcgi program that forwards each
 * request body to the upstream with one reused libcurl handle per thread and relays the answer,
 * doing nothing else (no auth, no accounting, no JSON). The bench measures it next to
 * chatazure-fcgi to show what the design itself costs on this machine. */
#include <curl/curl.h>
#include <fcgiapp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int listen_sock;
static const char *upstream;

struct buffer { char *data; size_t length, capacity; };

static size_t collect(char *ptr, size_t size, size_t count, void *user) {
    struct buffer *out = user;
    size_t n = size * count;
    if (out->length + n > out->capacity) {
        out->capacity = (out->length + n) * 2;
        out->data = realloc(out->data, out->capacity);
    }
    memcpy(out->data + out->length, ptr, n);
    out->length += n;
    return n;
}

static void *serve(void *unused) {
    (void)unused;
    FCGX_Request request;
    FCGX_InitRequest(&request, listen_sock, 0);
    CURL *curl = curl_easy_init();
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    headers = curl_slist_append(headers, "api-key: bench-azure-key");
    headers = curl_slist_append(headers, "Expect:");
    struct buffer in = {malloc(65536), 0, 65536}, out = {malloc(65536), 0, 65536};
    while (FCGX_Accept_r(&request) >= 0) {
        in.length = 0;
        int n;
        char chunk[16384];
        while ((n = FCGX_GetStr(chunk, sizeof chunk, request.in)) > 0) collect(chunk, 1, (size_t)n, &in);
        out.length = 0;
        curl_easy_setopt(curl, CURLOPT_URL, upstream);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, in.data);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE, (long)in.length);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, &out);
        long status = 502;
        if (curl_easy_perform(curl) == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        /* libfcgi's printf has no %zu */
        FCGX_FPrintF(request.out, "Status: %ld\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n",
                     status, (int)out.length);
        FCGX_PutStr(out.data, (int)out.length, request.out);
        FCGX_Finish_r(&request);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s SOCKET THREADS UPSTREAM_URL\n", argv[0]);
        return 2;
    }
    upstream = argv[3];
    signal(SIGPIPE, SIG_IGN);
    curl_global_init(CURL_GLOBAL_ALL);
    FCGX_Init();
    listen_sock = FCGX_OpenSocket(argv[1], 1024);
    if (listen_sock < 0) { fprintf(stderr, "cannot listen on %s\n", argv[1]); return 1; }
    int threads = atoi(argv[2]);
    pthread_t ids[1024];
    for (int i = 0; i < threads && i < 1024; i++) pthread_create(&ids[i], NULL, serve, NULL);
    for (int i = 0; i < threads && i < 1024; i++) pthread_join(ids[i], NULL);
    return 0;
}
