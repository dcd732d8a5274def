/* Committee force deviation: see committee.h. Mirrors hessdistill/monitor/deviation.py line by line. */

#include "committee.h"

#include <cmath>
#include <limits>

namespace hessdistill {

double atom_force_deviation(const double *f, int nmembers)
{
  // f.mean(axis=0): members summed in order, then divided by K
  double mean[3] = {0.0, 0.0, 0.0};
  for (int k = 0; k < nmembers; k++)
    for (int d = 0; d < 3; d++) mean[d] += f[3 * k + d];
  for (int d = 0; d < 3; d++) mean[d] /= nmembers;
  // np.sum((f - mean) ** 2, axis=2) summed x, y, z; np.mean over members; np.sqrt
  double sum = 0.0;
  for (int k = 0; k < nmembers; k++) {
    const double dx = f[3 * k] - mean[0], dy = f[3 * k + 1] - mean[1], dz = f[3 * k + 2] - mean[2];
    sum += dx * dx + dy * dy + dz * dz;
  }
  return std::sqrt(sum / nmembers);
}

DeviationSummary summarise_deviation(const std::vector<double> &local_devi, double natoms, MPI_Comm world)
{
  const double inf = std::numeric_limits<double>::infinity();
  double local[3] = {-inf, inf, 0.0}, global[3];
  for (double d : local_devi) {
    local[0] = std::fmax(local[0], d);
    local[1] = std::fmin(local[1], d);
    local[2] += d;
  }
  MPI_Allreduce(&local[0], &global[0], 1, MPI_DOUBLE, MPI_MAX, world);
  MPI_Allreduce(&local[1], &global[1], 1, MPI_DOUBLE, MPI_MIN, world);
  MPI_Allreduce(&local[2], &global[2], 1, MPI_DOUBLE, MPI_SUM, world);
  if (!(natoms > 0)) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    return {nan, nan, nan};
  }
  return {global[0], global[1], global[2] / natoms};
}

}    // namespace hessdistill
