/* The physical-limit baseline: a threaded libfcgi program (after fcgi2's examples/threaded.c)
 * answering every request with the same fixed chat-completion body. The bench puts it behind
 * the same nginx as chatazure-fcgi, so the difference is what the gateway itself costs. */
#include <fcgiapp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *body;
static int listen_sock;

static void *serve(void *unused) {
    (void)unused;
    FCGX_Request request;
    FCGX_InitRequest(&request, listen_sock, 0);
    char buffer[16384];
    while (FCGX_Accept_r(&request) >= 0) {
        while (FCGX_GetStr(buffer, sizeof buffer, request.in) > 0) {}
        FCGX_FPrintF(request.out, "Status: 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
                     (int)strlen(body), body);  /* libfcgi's printf has no %zu */
        FCGX_Finish_r(&request);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s SOCKET THREADS BODYFILE\n", argv[0]);
        return 2;
    }
    FILE *file = fopen(argv[3], "rb");
    if (!file) { perror(argv[3]); return 1; }
    static char content[65536];
    size_t length = fread(content, 1, sizeof content - 1, file);
    content[length] = 0;
    fclose(file);
    body = content;
    signal(SIGPIPE, SIG_IGN);
    FCGX_Init();
    listen_sock = FCGX_OpenSocket(argv[1], 1024);
    if (listen_sock < 0) { fprintf(stderr, "cannot listen on %s\n", argv[1]); return 1; }
    int threads = atoi(argv[2]);
    pthread_t ids[1024];
    for (int i = 0; i < threads && i < 1024; i++) pthread_create(&ids[i], NULL, serve, NULL);
    for (int i = 0; i < threads && i < 1024; i++) pthread_join(ids[i], NULL);
    return 0;
}
