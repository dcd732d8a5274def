/* fix hessdistill/deviation: see fix_hessdistill_deviation.h. Rows and messages mirror
   hessdistill/monitor/deviation.py (DeviationMonitor.record, _save); change them together. */

#include "fix_hessdistill_deviation.h"
#include "pair_hessdistill.h"
#include "units.h"

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "update.h"
#include "utils.h"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

using namespace LAMMPS_NS;
using namespace FixConst;

namespace {

const char *const NAME = "fix hessdistill/deviation";
const char *const SYNTAX = "fix ID all hessdistill/deviation N [file deviation.csv|none] [max_devi_f X|none] "
                           "[action stop|flag] [flagged frames.extxyz|none]";
// hessdistill.monitor.deviation.COLUMNS
const char *const HEADER = "step,time_ps,max_devi_f,min_devi_f,mean_devi_f,teacher_force_mae,"
                           "teacher_force_max_error\n";

}    // namespace

FixHessdistillDeviation::FixHessdistillDeviation(LAMMPS *lmp, int narg, char **arg) :
    Fix(lmp, narg, arg), fp(nullptr), threshold(-1.0), stop(true), to_ps(1.0), pair(nullptr), last_step(-1),
    last{0.0, 0.0, 0.0}, n_flagged(0)
{
  if (narg < 4) error->all(FLERR, "{}: N (steps between samples) is missing; expected: {}", NAME, SYNTAX);
  if (strcmp(arg[1], "all") != 0)
    error->all(FLERR, "{}: group must be all (the deviation is a property of the whole system), got '{}'; "
               "expected: {}", NAME, arg[1], SYNTAX);
  nevery = utils::inumeric(FLERR, arg[3], false, lmp);
  if (nevery < 1) error->all(FLERR, "{}: N must be >= 1, got {}; expected: {}", NAME, nevery, SYNTAX);
  for (int iarg = 4; iarg < narg; iarg += 2) {
    const std::string key = arg[iarg];
    if (iarg + 1 >= narg) error->all(FLERR, "{}: keyword '{}' needs a value; expected: {}", NAME, key, SYNTAX);
    const std::string value = arg[iarg + 1];
    if (key == "file") {
      path = value == "none" ? "" : value;
    } else if (key == "flagged") {
      flagged_path = value == "none" ? "" : value;
    } else if (key == "max_devi_f") {
      char *end = nullptr;
      threshold = value == "none" ? -1.0 : std::strtod(value.c_str(), &end);
      if (value != "none" && (*end != '\0' || !(threshold > 0.0) || !std::isfinite(threshold)))
        error->all(FLERR, "{}: max_devi_f must be a positive number (eV/A) or none, got '{}'", NAME, value);
    } else if (key == "action" && (value == "stop" || value == "flag")) {
      stop = value == "stop";
    } else if (key == "action") {
      error->all(FLERR, "{}: action must be stop or flag, got '{}'", NAME, value);
    } else {
      error->all(FLERR, "{}: unknown keyword '{}'; expected: {}", NAME, key, SYNTAX);
    }
  }
  hessdistill::LammpsUnits units;
  if (!hessdistill::lammps_units(update->unit_style, units))
    error->all(FLERR, "{}: units {} not supported; use units metal or real", NAME, update->unit_style);
  to_ps = units.ps_per_time;

  vector_flag = 1;
  size_vector = 4;
  global_freq = nevery;
  extvector = 0;

  if (comm->me == 0) {
    if (!path.empty()) {
      fp = fopen(path.c_str(), "w");
      if (fp == nullptr) error->one(FLERR, "{}: cannot open file {}: {}", NAME, path, strerror(errno));
      fputs(HEADER, fp);
      fflush(fp);
    }
    // frames of an earlier run in the same file are not this run's (as DeviationMonitor)
    if (!stop && !flagged_path.empty()) remove(flagged_path.c_str());
  }
}

FixHessdistillDeviation::~FixHessdistillDeviation()
{
  if (fp) fclose(fp);
}

int FixHessdistillDeviation::setmask()
{
  return END_OF_STEP;
}

void FixHessdistillDeviation::init()
{
  pair = dynamic_cast<PairHessdistill *>(force->pair_match("^hessdistill", 0));
  if (pair == nullptr || pair->committee_size() < 2)
    error->all(FLERR, "{} needs pair_style hessdistill ... committee K (K >= 2 students)", NAME);
}

// the first sample at the start of the first run, as the Python engines report step 0
void FixHessdistillDeviation::setup(int)
{
  const bigint step = update->ntimestep;
  if (last_step < 0 || (step % nevery == 0 && step > last_step)) sample();
}

void FixHessdistillDeviation::end_of_step()
{
  if (update->ntimestep > last_step) sample();
}

// DeviationMonitor.record for a committee without teacher checks
void FixHessdistillDeviation::sample()
{
  const bigint step = update->ntimestep;
  const double time_ps = (update->atime + (update->ntimestep - update->atimestep) * update->dt) * to_ps;
  const auto &s = pair->deviation(NAME).summary;
  last[0] = s.max_devi_f;
  last[1] = s.min_devi_f;
  last[2] = s.mean_devi_f;
  last_step = step;
  if (fp) {
    // {} writes the shortest text that reads back as the same double (as Python's csv module does)
    fputs(fmt::format("{},{},{},{},{},,\n", step, time_ps, last[0], last[1], last[2]).c_str(), fp);
    fflush(fp);
  }
  if (!(threshold > 0.0) || !(last[0] > threshold)) return;
  if (stop) {
    // every rank has the same summary (Allreduce), so error->all is collective
    error->all(FLERR, "hessdistill/deviation: committee force deviation max_devi_f = {:.4g} eV/A at step {} "
               "exceeds max_force_deviation {:g}: the student is outside its training data here{}", last[0], step,
               threshold, path.empty() ? "" : "; rows so far are in " + path);
  }
  n_flagged += 1;
  if (!flagged_path.empty()) write_frame(time_ps);
}

/* Append this frame to the flagged extxyz file: every rank sends (tag, type, x, y, z, devi_f) of its atoms to rank
   0, which writes them in tag order. Positions are in LAMMPS' frame (as trajectory.lammpstrj). */

void FixHessdistillDeviation::write_frame(double time_ps)
{
  const int nlocal = atom->nlocal, width = 6;
  const auto &devi = pair->deviation(NAME).devi_f;
  std::vector<double> mine(width * nlocal);
  for (int i = 0; i < nlocal; i++) {
    double row[width] = {(double) atom->tag[i], (double) atom->type[i], atom->x[i][0], atom->x[i][1],
                         atom->x[i][2], devi[i]};
    std::copy(row, row + width, mine.begin() + width * i);
  }
  int count = width * nlocal;
  std::vector<int> counts(comm->nprocs), offsets(comm->nprocs, 0);
  MPI_Gather(&count, 1, MPI_INT, counts.data(), 1, MPI_INT, 0, world);
  for (int r = 1; r < comm->nprocs; r++) offsets[r] = offsets[r - 1] + counts[r - 1];
  std::vector<double> all(comm->me == 0 ? offsets.back() + counts.back() : 0);
  MPI_Gatherv(mine.data(), count, MPI_DOUBLE, all.data(), counts.data(), offsets.data(), MPI_DOUBLE, 0, world);
  if (comm->me != 0) return;

  const int n = (int) all.size() / width;
  std::vector<int> order(n);
  for (int k = 0; k < n; k++) order[k] = k;
  std::sort(order.begin(), order.end(), [&](int a, int b) { return all[width * a] < all[width * b]; });
  const double *h = domain->h;    // xprd, yprd, zprd, yz, xz, xy: a = (xprd, 0, 0), b = (xy, yprd, 0), c = (xz, yz, zprd)
  auto tf = [](int periodic) { return periodic ? "T" : "F"; };
  std::string text = fmt::format("{}\nLattice=\"{} 0 0 {} {} 0 {} {} {}\" Properties=species:S:1:pos:R:3:devi_f:R:1 "
                                 "step={} time_ps={} max_devi_f={} pbc=\"{} {} {}\"\n",
                                 n, h[0], h[5], h[1], h[4], h[3], h[2], update->ntimestep, time_ps, last[0],
                                 tf(domain->xperiodic), tf(domain->yperiodic), tf(domain->zperiodic));
  for (int k : order) {
    const double *r = &all[width * k];
    text += fmt::format("{} {} {} {} {}\n", pair->element_of_type((int) r[1]), r[2], r[3], r[4], r[5]);
  }
  FILE *out = fopen(flagged_path.c_str(), "a");
  if (out == nullptr) error->one(FLERR, "{}: cannot open file {}: {}", NAME, flagged_path, strerror(errno));
  fputs(text.c_str(), out);
  fclose(out);
}

double FixHessdistillDeviation::compute_vector(int i)
{
  return i < 3 ? last[i] : (double) n_flagged;
}
