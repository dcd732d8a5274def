/* compute hessdistill/deviation: the committee force deviation of pair_style hessdistill ... committee K.

   compute ID all hessdistill/deviation

   Global vector of 3: c_ID[1] max_devi_f, c_ID[2] min_devi_f, c_ID[3] mean_devi_f over all atoms; per-atom vector:
   devi_f (committee.h: sqrt(mean_k |F_k,i - mean_k F_k,i|^2), eV/A in any unit style, as deviation.csv and
   hessdistill.monitor.deviation). Values belong to the configuration of the last force evaluation; with `drive
   first` the other members run only on steps where this compute (or fix hessdistill/deviation) is invoked. */

#ifndef LMP_COMPUTE_HESSDISTILL_DEVIATION_H
#define LMP_COMPUTE_HESSDISTILL_DEVIATION_H

#include "compute.h"

namespace LAMMPS_NS {

class ComputeHessdistillDeviation : public Compute {
 public:
  ComputeHessdistillDeviation(class LAMMPS *, int, char **);
  ~ComputeHessdistillDeviation() override;
  void init() override;
  void compute_vector() override;
  void compute_peratom() override;
  double memory_usage() override;

 private:
  class PairHessdistill *pair;
  int nmax;
};

}    // namespace LAMMPS_NS

#endif
