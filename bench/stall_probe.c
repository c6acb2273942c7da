/* Stall probe: tells when this machine could not run an ordinary thread on time.
 *
 *   stall_probe CPU PERIOD_US LATE_US
 *
 * Pinned to CPU, under SCHED_FIFO above the bench's timing client, it sleeps PERIOD_US at a time.
 * Nothing the bench runs (nginx, the gateway, the emulator, the client) can hold it back, so a
 * wake-up more than LATE_US late means the machine itself stalled that CPU: the hypervisor took the
 * virtual CPU (steal) or the kernel did not let it run. Each such stall is printed as one line,
 * "START_NS END_NS" in CLOCK_REALTIME (the clock of the kernel's receive stamps the stream timing
 * uses), from when the wake-up was due to when it came. The first line says which scheduling
 * policy it got ("policy fifo" or, where SCHED_FIFO is not permitted, "policy normal").
 * Runs until SIGTERM. */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static volatile sig_atomic_t stop;
static void on_term(int sig) { (void)sig; stop = 1; }

static long long ns(clockid_t clock) {
    struct timespec t;
    clock_gettime(clock, &t);
    return t.tv_sec * 1000000000LL + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: stall_probe CPU PERIOD_US LATE_US\n");
        return 2;
    }
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(atoi(argv[1]), &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0) { perror("sched_setaffinity"); return 1; }
    struct sched_param priority = { .sched_priority = 2 };  /* the client runs at 1 */
    int fifo = sched_setscheduler(0, SCHED_FIFO, &priority) == 0;
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("policy %s\n", fifo ? "fifo" : "normal");
    long long period = atoll(argv[2]) * 1000LL, late = atoll(argv[3]) * 1000LL;
    signal(SIGTERM, on_term);
    struct timespec nap = { .tv_sec = period / 1000000000LL, .tv_nsec = period % 1000000000LL };
    while (!stop) {
        long long before = ns(CLOCK_MONOTONIC), before_real = ns(CLOCK_REALTIME);
        nanosleep(&nap, NULL);
        long long overslept = ns(CLOCK_MONOTONIC) - before - period;
        if (overslept > late)
            printf("%lld %lld\n", before_real + period, before_real + period + overslept);
    }
    return 0;
}
