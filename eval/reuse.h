/* eval/-private side of the reuse cache (ba_eval_reuse_t, evaluate.h). */
#ifndef BA_EVAL_REUSE_H
#define BA_EVAL_REUSE_H

#include "eval/evaluate.h"

/* Clears r when hook (NULL: none) is not the one of its entries. */
void ba_eval_reuse_hook(ba_eval_reuse_t *r, const ba_eval_hook_t *hook);

#endif
