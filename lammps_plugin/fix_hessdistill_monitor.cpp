/* fix hessdistill/monitor: see fix_hessdistill_monitor.h. The arithmetic mirrors hessdistill/monitor/drift.py and
   energy.py line by line (change them together); this file is compiled with -ffp-contract=off so no fused
   multiply-add makes its doubles differ from Python's. */

#include "fix_hessdistill_monitor.h"
#include "units.h"

#include "atom.h"
#include "comm.h"
#include "compute.h"
#include "error.h"
#include "force.h"
#include "group.h"
#include "modify.h"
#include "timer.h"
#include "update.h"
#include "utils.h"

#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

using namespace LAMMPS_NS;
using namespace FixConst;

namespace {

const char *const SYNTAX = "fix ID all hessdistill/monitor N [file monitor.csv] [max_drift X|none] "
                           "[max_deviation Y|none] [min_points M] [window_ps W|none] [error hard|soft]";
// the columns of hessdistill.monitor.COLUMNS
const char *const HEADER = "step,time_ps,potential_eV,kinetic_eV,total_eV,temperature_K,total_per_atom_eV,"
                           "deviation_per_atom_eV,drift_eV_per_atom_ps\n";
const double NaN = std::numeric_limits<double>::quiet_NaN();

// A positive number, or -1 for "none" where allowed; false when the text is neither.
bool parse_threshold(const std::string &text, bool allow_none, double &value)
{
  if (allow_none && text == "none") {
    value = -1.0;
    return true;
  }
  char *end = nullptr;
  errno = 0;
  value = std::strtod(text.c_str(), &end);
  return !text.empty() && *end == '\0' && errno == 0 && std::isfinite(value) && value > 0.0;
}

bool parse_count(const std::string &text, long low, long &value)
{
  char *end = nullptr;
  errno = 0;
  value = std::strtol(text.c_str(), &end, 10);
  return !text.empty() && *end == '\0' && errno == 0 && value >= low && value <= INT_MAX;
}

}    // namespace

/* ---- RunningSlope: hessdistill.monitor.drift.RunningSlope ---- */

hessdistill::RunningSlope::RunningSlope(double window_) :
    window(window_), left(0), started(false), x0(0.0), y0(0.0)
{
  reset_sums();
}

void hessdistill::RunningSlope::reset_sums()
{
  n = 0;
  s_x = s_y = s_xx = s_xy = 0.0;
}

void hessdistill::RunningSlope::accumulate(double dx, double dy, double sign)
{
  n += sign > 0 ? 1 : -1;
  s_x += sign * dx;
  s_y += sign * dy;
  s_xx += sign * (dx * dx);
  s_xy += sign * (dx * dy);
}

void hessdistill::RunningSlope::add(double x, double y)
{
  if (!started) {
    x0 = x;
    y0 = y;
    started = true;
  }
  if (window <= 0.0) {
    accumulate(x - x0, y - y0, 1.0);
    return;
  }
  samples.emplace_back(x, y);
  accumulate(x - x0, y - y0, 1.0);
  while (samples.front().first < x - window) {
    const auto old = samples.front();
    samples.pop_front();
    accumulate(old.first - x0, old.second - y0, -1.0);
    left += 1;
  }
  // rebuilt from the kept samples once as many have left as are kept: O(1) amortised, no round-off pile-up
  if (left >= (long) samples.size()) rebase();
}

void hessdistill::RunningSlope::rebase()
{
  x0 = samples.front().first;
  y0 = samples.front().second;
  reset_sums();
  for (const auto &s : samples) accumulate(s.first - x0, s.second - y0, 1.0);
  left = 0;
}

double hessdistill::RunningSlope::slope() const
{
  if (n < 2) return 0.0;
  const double mean_x = s_x / n, mean_y = s_y / n;
  const double var_x = s_xx / n - mean_x * mean_x;
  if (!(var_x > 0)) return 0.0;
  return (s_xy / n - mean_x * mean_y) / var_x;
}

/* ---- the fix ---- */

FixHessdistillMonitor::FixHessdistillMonitor(LAMMPS *lmp, int narg, char **arg) :
    Fix(lmp, narg, arg), fp(nullptr), max_drift(0.01), max_deviation(0.05), window_ps(-1.0), min_points(20),
    hard(true), to_ev(1.0), to_ps(1.0), pe(nullptr), temperature(nullptr), have_e0(false), e0(0.0), n_samples(0),
    last_step(-1), deviation(0.0), drift(0.0), max_abs_deviation(0.0), stopped(false)
{
  if (narg < 4)
    error->all(FLERR, "fix hessdistill/monitor: N (steps between samples) is missing; expected: {}", SYNTAX);
  if (strcmp(arg[1], "all") != 0)
    error->all(FLERR, "fix hessdistill/monitor: group must be all (it monitors the energy of the whole system), "
               "got '{}'; expected: {}", arg[1], SYNTAX);
  long every = 0;
  if (!parse_count(arg[3], 1, every))
    error->all(FLERR, "fix hessdistill/monitor: N (steps between samples) must be an integer >= 1, got '{}'; "
               "expected: {}", arg[3], SYNTAX);
  nevery = (int) every;

  for (int iarg = 4; iarg < narg; iarg += 2) {
    const std::string key = arg[iarg];
    if (iarg + 1 >= narg)
      error->all(FLERR, "fix hessdistill/monitor: keyword '{}' needs a value; expected: {}", key, SYNTAX);
    const std::string value = arg[iarg + 1];
    long count = 0;
    if (key == "file") {
      path = value == "none" ? "" : value;
    } else if (key == "max_drift" || key == "max_deviation" || key == "window_ps") {
      double number = 0.0;
      if (!parse_threshold(value, true, number))
        error->all(FLERR, "fix hessdistill/monitor: {} must be a positive number or none, got '{}'; expected: {}",
                   key, value, SYNTAX);
      (key == "max_drift" ? max_drift : key == "max_deviation" ? max_deviation : window_ps) = number;
    } else if (key == "min_points") {
      if (!parse_count(value, 0, count))
        error->all(FLERR, "fix hessdistill/monitor: min_points must be an integer >= 0, got '{}'; expected: {}",
                   value, SYNTAX);
      min_points = (int) count;
    } else if (key == "error" && (value == "hard" || value == "soft")) {
      hard = value == "hard";
    } else if (key == "error") {
      error->all(FLERR, "fix hessdistill/monitor: error must be hard or soft, got '{}'; expected: {}", value,
                 SYNTAX);
    } else {
      error->all(FLERR, "fix hessdistill/monitor: unknown keyword '{}'; expected: {}", key, SYNTAX);
    }
  }

  hessdistill::LammpsUnits units;
  if (!hessdistill::lammps_units(update->unit_style, units))
    error->all(FLERR, "fix hessdistill/monitor: units {} not supported; use units metal or real (the monitor "
               "reports eV and ps)", update->unit_style);
  to_ev = 1.0 / units.energy_per_ev;
  to_ps = units.ps_per_time;
  fit = hessdistill::RunningSlope(window_ps);

  scalar_flag = 1;
  vector_flag = 1;
  size_vector = 4;
  global_freq = nevery;
  extscalar = 0;
  extvector = 0;

  if (comm->me == 0 && !path.empty()) {
    fp = fopen(path.c_str(), "w");
    if (fp == nullptr)
      error->one(FLERR, "fix hessdistill/monitor: cannot open file {}: {}", path, strerror(errno));
    fputs(HEADER, fp);
    fflush(fp);
  }
}

FixHessdistillMonitor::~FixHessdistillMonitor()
{
  if (fp) fclose(fp);
}

int FixHessdistillMonitor::setmask()
{
  return END_OF_STEP | POST_RUN;
}

void FixHessdistillMonitor::init()
{
  // thermo's own computes: pe of every atom, temperature with thermo's degrees of freedom (3N - 3 by default)
  pe = modify->get_compute_by_id("thermo_pe");
  temperature = modify->get_compute_by_id("thermo_temp");
  if (pe == nullptr || temperature == nullptr)
    error->all(FLERR, "fix hessdistill/monitor: needs LAMMPS' computes thermo_pe and thermo_temp (was one "
               "uncomputed?)");
}

void FixHessdistillMonitor::setup(int)
{
  // The first sample (E0, t0) at the start of the first run; later runs start on a step already sampled at the
  // end of the previous one (or off the N-step grid). Energy is tallied on the first step of a run unless
  // "run ... pre no" skipped it.
  const bigint step = update->ntimestep;
  const bool due = last_step < 0 || (step % nevery == 0 && step > last_step);
  if (!stopped && due && update->eflag_global == step) sample();
  schedule_next();
}

void FixHessdistillMonitor::end_of_step()
{
  if (!stopped && update->ntimestep > last_step) sample();
  schedule_next();
}

void FixHessdistillMonitor::post_run()
{
  if (fp) fflush(fp);
}

// thermo_pe can only be evaluated on steps where energy was tallied: ask for the next sample's step
void FixHessdistillMonitor::schedule_next()
{
  pe->addstep((update->ntimestep / nevery) * nevery + nevery);
}

void FixHessdistillMonitor::sample()
{
  const bigint step = update->ntimestep;
  const double time_ps = (update->atime + (update->ntimestep - update->atimestep) * update->dt) * to_ps;
  const double potential = pe->compute_scalar() * to_ev;
  double kinetic = temperature->compute_scalar();
  const double temp_K = kinetic;
  kinetic *= 0.5 * temperature->dof * force->boltz;    // as thermo's ke
  kinetic *= to_ev;

  int bad = 0;
  double **f = atom->f;
  for (int i = 0; i < atom->nlocal && !bad; i++)
    bad = !(std::isfinite(f[i][0]) && std::isfinite(f[i][1]) && std::isfinite(f[i][2]));
  int bad_any = 0;
  MPI_Allreduce(&bad, &bad_any, 1, MPI_INT, MPI_MAX, world);

  // hessdistill.monitor.energy.EnergyMonitor.record
  const double total = potential + kinetic;
  const double per_atom = total / (double) atom->natoms;
  const bool finite = std::isfinite(total) && !bad_any;
  if (finite) {
    fit.add(time_ps, per_atom);
    n_samples += 1;
    if (!have_e0) {
      e0 = per_atom;
      have_e0 = true;
    }
    deviation = std::fabs(per_atom - e0);
    if (deviation > max_abs_deviation) max_abs_deviation = deviation;
    drift = fit.slope();
  } else {
    deviation = drift = NaN;
  }
  last_step = step;
  if (fp) {
    // {} writes the shortest text that reads back as the same double (as Python's csv module does)
    fputs(fmt::format("{},{},{},{},{},{},{},{},{}\n", step, time_ps, potential, kinetic, total, temp_K, per_atom,
                      deviation, drift).c_str(), fp);
    fflush(fp);
  }
  if (!finite) {
    stop(fmt::format("non-finite {} at step {} (t = {:.4f} ps)", std::isfinite(total) ? "forces" : "energy", step,
                     time_ps));
  } else if (max_deviation > 0 && deviation > max_deviation) {
    stop(fmt::format("|E - E0| = {:.4g} eV/atom at step {} exceeds max_deviation {:g}", deviation, step,
                     max_deviation));
  } else if (max_drift > 0 && n_samples >= min_points && std::fabs(drift) > max_drift) {
    stop(fmt::format("energy drift {:.4g} eV/atom/ps at step {} exceeds max_drift {:g}", drift, step, max_drift));
  }
}

// Every rank reaches this with the same numbers (the energies are global), so error->all is collective.
void FixHessdistillMonitor::stop(const std::string &reason)
{
  std::string message = "hessdistill/monitor: " + reason;
  if (!path.empty()) message += "; rows so far are in " + path;
  if (fp) fflush(fp);
  if (hard) error->all(FLERR, message);
  if (comm->me == 0) utils::logmesg(lmp, message + "\n");
  stopped = true;
  timer->force_timeout();    // as fix halt ... error soft: the run loop ends before the next step
}

double FixHessdistillMonitor::compute_scalar()
{
  return drift;
}

double FixHessdistillMonitor::compute_vector(int i)
{
  switch (i) {
    case 0: return drift;
    case 1: return deviation;
    case 2: return max_abs_deviation;
    default: return (double) n_samples;
  }
}
