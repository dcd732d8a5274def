/* fix hessdistill/monitor: the energy-conservation monitor of hessdistill inside LAMMPS.

   fix ID all hessdistill/monitor N [file monitor.csv] [max_drift X|none] [max_deviation Y|none] [min_points M]
                                    [window_ps W|none] [error hard|soft]

   The same monitor as hessdistill.monitor.EnergyMonitor (same definitions, same arithmetic; the tests feed both
   one energy series): it samples the total energy at the start of the first run after it is defined and then
   every N steps, writes one CSV row per sample (columns of hessdistill.monitor.COLUMNS, eV and ps in units metal
   and real, flushed every row by rank 0), and stops the run when the energy stops being conserved:
   - a non-finite energy or force;
   - deviation |E/atom - E0/atom| > max_deviation (eV/atom; default 0.05);
   - |drift| > max_drift (eV/atom/ps; default 0.01) once min_points finite samples (default 20) exist, where the
     drift is the least-squares slope of E/atom against time over every sample (or the last window_ps ps) kept from
     running sums of the samples shifted by the first one (hessdistill/monitor/drift.py, RunningSlope).
   error hard (default) stops LAMMPS with an ERROR; error soft ends the run like fix halt ... error soft (the
   input script goes on, later runs do not step). The message is the one the Python monitor raises:
     hessdistill/monitor: energy drift 0.0123 eV/atom/ps at step 400 exceeds max_drift 0.01; rows so far are in ...
   Output for thermo, variables, fix ave/time: scalar = drift; vector [1] drift, [2] deviation of the last sample,
   [3] largest deviation so far, [4] finite samples. Energies from the thermo_pe and thermo_temp computes
   (kinetic = 1/2 dof kB T as thermo's ke). Its running sums are not written to restart files. */

#ifndef LMP_FIX_HESSDISTILL_MONITOR_H
#define LMP_FIX_HESSDISTILL_MONITOR_H

#include "fix.h"

#include <cstdio>
#include <deque>
#include <string>
#include <utility>

namespace hessdistill {

// Least-squares slope of y against x from running sums: hessdistill.monitor.drift.RunningSlope, operation for
// operation (same shift by the first sample, same window and rebase), so both give the same doubles.
class RunningSlope {
 public:
  explicit RunningSlope(double window = -1.0);    // window <= 0: every sample so far
  void add(double x, double y);
  double slope() const;

 private:
  void reset_sums();
  void accumulate(double dx, double dy, double sign);
  void rebase();

  double window;
  std::deque<std::pair<double, double>> samples;    // only with a window
  long left;
  bool started;
  double x0, y0;
  long n;
  double s_x, s_y, s_xx, s_xy;
};

}    // namespace hessdistill

namespace LAMMPS_NS {

class FixHessdistillMonitor : public Fix {
 public:
  FixHessdistillMonitor(class LAMMPS *, int, char **);
  ~FixHessdistillMonitor() override;
  int setmask() override;
  void init() override;
  void setup(int) override;
  void end_of_step() override;
  void post_run() override;
  double compute_scalar() override;
  double compute_vector(int) override;

 private:
  void sample();
  void stop(const std::string &reason);
  void schedule_next();

  std::string path;    // CSV path ("" for none)
  FILE *fp;
  double max_drift, max_deviation, window_ps;    // < 0: not set
  int min_points;
  bool hard;
  double to_ev, to_ps;    // energy and time of the unit style in eV and ps
  class Compute *pe, *temperature;

  hessdistill::RunningSlope fit;
  bool have_e0;
  double e0;
  bigint n_samples, last_step;
  double deviation, drift, max_abs_deviation;
  bool stopped;
};

}    // namespace LAMMPS_NS

#endif
