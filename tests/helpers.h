/* Shared helpers for the Criterion suite. */
#ifndef BA_TESTS_HELPERS_H
#define BA_TESTS_HELPERS_H

#include "bitalloc.h"

#endif
