/* The committee force deviation of pair_style hessdistill ... committee K (DeePMD's max_devi_f).

   devi_f,i = sqrt( mean_k | F_k,i - mean_k F_k,i |^2 )   (population std of atom i's force vector over K members)

   summarised per frame by its max, min and mean over atoms. This mirrors hessdistill.monitor.deviation
   (per_atom_force_deviation, force_deviation) operation for operation: the same sums in the same order (members
   in order, then x, y, z), the same divisions by K; compiled with -ffp-contract=off so no fused multiply-add makes
   the doubles differ from NumPy's. Change both together (tests/test_lammps_committee.py compares them).

   Used by `compute ID all hessdistill/deviation` and `fix ID all hessdistill/deviation` through
   PairHessdistill::deviation(), which gathers every member's total force on each local atom (contributions on
   ghosts reverse-communicated) before calling these. */

#ifndef LMP_HESSDISTILL_COMMITTEE_H
#define LMP_HESSDISTILL_COMMITTEE_H

#include <mpi.h>

#include <vector>

namespace hessdistill {

// devi_f of one atom from its K >= 2 force vectors f[3 k + d] (member k, component d), any force unit.
double atom_force_deviation(const double *f, int nmembers);

// max, min and mean devi_f over the atoms of all ranks (natoms in total; NaN for none).
struct DeviationSummary {
  double max_devi_f, min_devi_f, mean_devi_f;
};
DeviationSummary summarise_deviation(const std::vector<double> &local_devi, double natoms, MPI_Comm world);

}    // namespace hessdistill

#endif
