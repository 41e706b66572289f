/* Shared helpers for the Criterion suite. */
#include "tests/helpers.h"
