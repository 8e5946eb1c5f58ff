/*
 * tiny-llm-rs: mlx-rs seeds its default random state with macOS's
 * mach_approximate_time(). Linux has no such symbol, so any mlx_rs::random
 * call made without an explicit key fails to link. This provides it:
 * nanoseconds from CLOCK_MONOTONIC.
 */
#include <stdint.h>
#include <time.h>

uint64_t mach_approximate_time(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (uint64_t)now.tv_sec * 1000000000ull + (uint64_t)now.tv_nsec;
}
