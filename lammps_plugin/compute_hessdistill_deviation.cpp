/* compute hessdistill/deviation: see compute_hessdistill_deviation.h. */

#include "compute_hessdistill_deviation.h"
#include "pair_hessdistill.h"

#include "atom.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "update.h"

#include <cstring>

using namespace LAMMPS_NS;

namespace {
const char *const NAME = "compute hessdistill/deviation";
}

ComputeHessdistillDeviation::ComputeHessdistillDeviation(LAMMPS *lmp, int narg, char **arg) :
    Compute(lmp, narg, arg), pair(nullptr), nmax(0)
{
  if (narg != 3 || strcmp(arg[1], "all") != 0)
    error->all(FLERR, "Illegal compute hessdistill/deviation; expected: compute ID all hessdistill/deviation "
               "(the deviation is a property of the whole system: group all)");
  vector_flag = 1;
  size_vector = 3;
  extvector = 0;
  peratom_flag = 1;
  size_peratom_cols = 0;
  vector = new double[3]();
  vector_atom = nullptr;
}

ComputeHessdistillDeviation::~ComputeHessdistillDeviation()
{
  delete[] vector;
  memory->destroy(vector_atom);
}

void ComputeHessdistillDeviation::init()
{
  pair = dynamic_cast<PairHessdistill *>(force->pair_match("^hessdistill", 0));
  if (pair == nullptr || pair->committee_size() < 2)
    error->all(FLERR, "{} needs pair_style hessdistill ... committee K (K >= 2 students)", NAME);
}

void ComputeHessdistillDeviation::compute_vector()
{
  invoked_vector = update->ntimestep;
  const auto &s = pair->deviation(NAME).summary;
  vector[0] = s.max_devi_f;
  vector[1] = s.min_devi_f;
  vector[2] = s.mean_devi_f;
}

void ComputeHessdistillDeviation::compute_peratom()
{
  invoked_peratom = update->ntimestep;
  if (atom->nmax > nmax) {
    memory->destroy(vector_atom);
    nmax = atom->nmax;
    memory->create(vector_atom, nmax, "hessdistill/deviation:devi_f");
  }
  const auto &d = pair->deviation(NAME).devi_f;
  for (int i = 0; i < atom->nlocal; i++) vector_atom[i] = d[i];
}

double ComputeHessdistillDeviation::memory_usage()
{
  return (double) nmax * sizeof(double);
}
