/* Pareto dominance and the non-dominated filter (see core/pareto.h). O(n² k):
 * fronts here hold the trials of one study (hundreds to thousands). */
#include "core/pareto.h"

#include <math.h>

int ba_pareto_dominates(const double *a, const double *b, int k) {
    int better = 0;
    for (int j = 0; j < k; j++) {
        if (a[j] > b[j]) return 0;
        if (a[j] < b[j]) better = 1;
    }
    return better;
}

static int finite_row(const double *r, int k) {
    for (int j = 0; j < k; j++)
        if (!isfinite(r[j])) return 0;
    return 1;
}

ba_status ba_pareto_mask(const double *v, int n, int k, int *on_front, ba_error *err) {
    if (n < 0 || k < 1) return ba_error_set(err, BA_ERR_INPUT, "pareto: %d points of %d objectives", n, k);
    for (int i = 0; i < n; i++) on_front[i] = finite_row(v + (size_t)i * k, k);
    for (int i = 0; i < n; i++) {
        if (!on_front[i]) continue;
        for (int j = 0; j < n; j++)
            if (j != i && finite_row(v + (size_t)j * k, k) &&
                ba_pareto_dominates(v + (size_t)j * k, v + (size_t)i * k, k)) {
                on_front[i] = 0;
                break;
            }
    }
    return BA_OK;
}
