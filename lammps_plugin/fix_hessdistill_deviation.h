/* fix hessdistill/deviation: the committee deviation monitor of hessdistill inside LAMMPS.

   fix ID all hessdistill/deviation N [file deviation.csv|none] [max_devi_f X|none] [action stop|flag]
                                      [flagged frames.extxyz|none]

   The same monitor as hessdistill.monitor.deviation.DeviationMonitor for a committee: every N steps (and at the
   start of the first run) it takes the committee's force deviation of pair_style hessdistill ... committee K
   (PairHessdistill::deviation(), committee.h), writes a row of `file` (the columns of
   hessdistill.monitor.deviation.COLUMNS; the teacher columns stay empty: LAMMPS runs no teacher) and, when
   max_devi_f > X (eV/A):
   - action stop (default): an ERROR in the words of the Python monitor,
       hessdistill/deviation: committee force deviation max_devi_f = 0.412 eV/A at step 40 exceeds
       max_force_deviation 0.3: the student is outside its training data here; rows so far are in deviation.csv
   - action flag: the frame is appended to `flagged` (extxyz as DeviationMonitor writes it: species, positions,
     per-atom devi_f; step, time_ps, max_devi_f in the comment line) and the run goes on.
   Output for thermo and variables (on multiples of N): vector [1] max_devi_f, [2] min_devi_f, [3] mean_devi_f of
   the last sample, [4] frames flagged so far. Rank 0 writes the files, flushed every row. */

#ifndef LMP_FIX_HESSDISTILL_DEVIATION_H
#define LMP_FIX_HESSDISTILL_DEVIATION_H

#include "fix.h"

#include <cstdio>
#include <string>

namespace LAMMPS_NS {

class FixHessdistillDeviation : public Fix {
 public:
  FixHessdistillDeviation(class LAMMPS *, int, char **);
  ~FixHessdistillDeviation() override;
  int setmask() override;
  void init() override;
  void setup(int) override;
  void end_of_step() override;
  double compute_vector(int) override;

 private:
  void sample();
  void write_frame(double time_ps);

  std::string path, flagged_path;
  FILE *fp;
  double threshold;    // eV/A; < 0: report only
  bool stop;
  double to_ps;
  class PairHessdistill *pair;
  bigint last_step;
  double last[3];
  int n_flagged;
};

}    // namespace LAMMPS_NS

#endif
