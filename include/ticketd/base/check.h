// Always-on invariant checks (they stay in release builds, TigerBeetle style):
// an impossible state stops the process before it can write a wrong byte.
#pragma once

#include <cstdio>
#include <cstdlib>

#define TICKETD_CHECK(cond)                                                        \
  do {                                                                             \
    if (__builtin_expect(!(cond), 0)) {                                            \
      std::fprintf(stderr, "ticketd: check failed: %s at %s:%d\n", #cond, __FILE__, \
                   __LINE__);                                                      \
      std::abort();                                                                \
    }                                                                              \
  } while (0)

#define TICKETD_CHECK_MSG(cond, msg)                                                   \
  do {                                                                                 \
    if (__builtin_expect(!(cond), 0)) {                                                \
      std::fprintf(stderr, "ticketd: check failed: %s (%s) at %s:%d\n", #cond, (msg), \
                   __FILE__, __LINE__);                                                \
      std::abort();                                                                    \
    }                                                                                  \
  } while (0)
