// LD_PRELOAD library for the tests: counts heap allocations and prints the count to stderr
// ("allocation-counter: N") on SIGUSR2 and at exit. The hot-path test samples it twice under load.
#ifndef ALLOCATION_COUNTER_H
#define ALLOCATION_COUNTER_H
unsigned long allocation_counter_value(void);
#endif
