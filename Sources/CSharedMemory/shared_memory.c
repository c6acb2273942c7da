#include "CSharedMemory.h"

#include <errno.h>
#include <pthread.h>

size_t chz_mutex_size(void) {
    return sizeof(pthread_mutex_t);
}

int chz_mutex_init(void *mutex) {
    pthread_mutexattr_t attributes;
    int code = pthread_mutexattr_init(&attributes);
    if (code != 0) return code;
    // Shared by every process mapping the file; robust, so a holder killed with -9 hands it on.
    code = pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
    if (code == 0) code = pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
    if (code == 0) code = pthread_mutex_init((pthread_mutex_t *)mutex, &attributes);
    pthread_mutexattr_destroy(&attributes);
    return code;
}

int chz_mutex_lock(void *mutex) {
    int code = pthread_mutex_lock((pthread_mutex_t *)mutex);
    if (code == EOWNERDEAD) {
        pthread_mutex_consistent((pthread_mutex_t *)mutex);
        return 1;
    }
    return code == 0 ? 0 : -code;
}

void chz_mutex_unlock(void *mutex) {
    pthread_mutex_unlock((pthread_mutex_t *)mutex);
}
