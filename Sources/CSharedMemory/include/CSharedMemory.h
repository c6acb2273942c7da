// What Swift cannot do on memory mapped by several processes: atomic operations on a plain
// address (Synchronization's Atomic must own its storage) and a process-shared, robust
// pthread mutex. The atomics are inline, so a counter's add compiles to one locked instruction.
#ifndef CSHAREDMEMORY_H
#define CSHAREDMEMORY_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t chz_add_u64(uint64_t *address, uint64_t value) {
    return __atomic_fetch_add(address, value, __ATOMIC_RELAXED);
}

static inline uint64_t chz_load_u64(const uint64_t *address) {
    return __atomic_load_n(address, __ATOMIC_ACQUIRE);
}

static inline void chz_store_u64(uint64_t *address, uint64_t value) {
    __atomic_store_n(address, value, __ATOMIC_RELEASE);
}

static inline int32_t chz_load_i32(const int32_t *address) {
    return __atomic_load_n(address, __ATOMIC_RELAXED);
}

static inline void chz_store_i32(int32_t *address, int32_t value) {
    __atomic_store_n(address, value, __ATOMIC_RELAXED);
}

/// Bytes a mutex takes in the mapping.
size_t chz_mutex_size(void);

/// Makes `mutex` process-shared and robust; 0 or an errno.
int chz_mutex_init(void *mutex);

/// 0 when locked; 1 when locked after its holder died holding it (made consistent again, the
/// state it guards possibly half-written); a negative errno when it could not be locked.
int chz_mutex_lock(void *mutex);

void chz_mutex_unlock(void *mutex);

#endif
