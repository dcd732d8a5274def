/* pair_style hessdistill: see pair_hessdistill.h for the scheme. */

#include "pair_hessdistill.h"
#include "block_cache.h"
#include "units.h"

#include "atom.h"
#include "comm.h"
#include "domain.h"
#include "error.h"
#include "force.h"
#include "memory.h"
#include "neigh_list.h"
#include "neighbor.h"
#include "update.h"
#include "utils.h"

#include <ATen/Parallel.h>
#include <torch/cuda.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>
#include <fstream>

using namespace LAMMPS_NS;

namespace {

const char *const FORMAT = "hessdistill-student-1";
const char *const SETTINGS_SYNTAX = "pair_style hessdistill [device cpu|cuda] [threads N] [memory cache|system] "
                                   "[committee K [drive mean|first]]";

std::string first_line(const std::string &text)
{
  return text.substr(0, text.find('\n'));
}

std::string join(const std::vector<std::string> &words)
{
  std::string out;
  for (const auto &w : words) out += (out.empty() ? "" : " ") + w;
  return out;
}

// This rank's index among the ranks of `world` on its node (collective). An MPI before 3.0 (LAMMPS' serial STUBS
// library) has no MPI_Comm_split_type: its one rank is rank 0 of its node.
int node_local_rank(MPI_Comm world)
{
#if defined(MPI_VERSION) && MPI_VERSION >= 3
  MPI_Comm node;
  MPI_Comm_split_type(world, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node);
  int rank = 0;
  MPI_Comm_rank(node, &rank);
  MPI_Comm_free(&node);
  return rank;
#else
  int rank = 0;
  MPI_Comm_rank(world, &rank);
  return rank;
#endif
}

// Host float64 copy of a result tensor.
torch::Tensor to_host(const torch::Tensor &t)
{
  return t.detach().to(torch::kCPU, torch::kFloat64).contiguous();
}

}    // namespace

PairHessdistill::PairHessdistill(LAMMPS *lmp) :
    Pair(lmp), device(torch::kCPU), device_given(false), nthreads(0), cache_attached(false), committee_k(1),
    drive_mean(true), cutoff(0.0), num_interactions(0), interaction_range(0.0), evaluations(0), deviation_of(-1),
    member_f(nullptr), member_f_rows(0), energy_factor(1.0)
{
  node_rank = node_local_rank(world);    // here: every rank constructs the pair style, settings() may come later
  single_enable = 0;
  restartinfo = 0;
  one_coeff = 1;
  manybody_flag = 1;
  no_virial_fdotr_compute = 1;    // compute() accumulates the virial itself, including image shifts
  centroidstressflag = CENTROID_SAME;    // per-atom virial is a pairwise split over edges
  // `compute ID all pair hessdistill`: c_ID[1], c_ID[2] = nodes and edges the student evaluated in the last
  // step, summed over ranks by the compute (this rank's share here)
  nextra = 2;
  pvector = new double[nextra]();
}

PairHessdistill::~PairHessdistill()
{
  if (copymode) return;
  delete[] pvector;
  memory->destroy(member_f);
  if (cache_attached) hessdistill::BlockCache::instance().detach();
  if (allocated) {
    memory->destroy(setflag);
    memory->destroy(cutsq);
  }
}

void PairHessdistill::allocate()
{
  allocated = 1;
  const int n = atom->ntypes + 1;
  memory->create(setflag, n, n, "pair:setflag");
  memory->create(cutsq, n, n, "pair:cutsq");
  for (int i = 0; i < n; i++)
    for (int j = 0; j < n; j++) setflag[i][j] = 0;
}

/* pair_style hessdistill [device cpu|cuda] [threads N] [memory cache|system]
   (default: cuda when torch sees a GPU; torch's thread count and CPU allocator left as they are) */

void PairHessdistill::settings(int narg, char **arg)
{
  // the ranks on a node share its visible GPUs round robin
  auto cuda = [&]() { return torch::Device(torch::kCUDA, node_rank % (int) torch::cuda::device_count()); };
  device = torch::cuda::is_available() ? cuda() : torch::Device(torch::kCPU);
  device_given = false;
  nthreads = 0;
  bool use_block_cache = false;
  int k_given = 1;
  bool drive_given = false;
  for (int iarg = 0; iarg < narg; iarg += 2) {
    const std::string key = arg[iarg];
    if (iarg + 1 >= narg)
      error->all(FLERR, "pair_style hessdistill: keyword '{}' needs a value; expected: {}", key,
                 SETTINGS_SYNTAX);
    const std::string value = arg[iarg + 1];
    if (key == "device") device_given = true;
    if (key == "device" && value == "cpu") {
      device = torch::Device(torch::kCPU);
    } else if (key == "device" && value == "cuda") {
      if (!torch::cuda::is_available())    // a rank's own view of its node: error->one
        error->one(FLERR, "pair_style hessdistill: device cuda requested but torch sees no CUDA device");
      device = cuda();
    } else if (key == "device") {
      error->all(FLERR, "pair_style hessdistill: unknown device '{}'; expected: {}", value, SETTINGS_SYNTAX);
    } else if (key == "memory" && (value == "cache" || value == "system")) {
      use_block_cache = value == "cache";
    } else if (key == "memory") {
      error->all(FLERR, "pair_style hessdistill: memory must be cache or system, got '{}'", value);
    } else if (key == "committee") {
      k_given = utils::inumeric(FLERR, value, false, lmp);
      if (k_given < 2)
        error->all(FLERR, "pair_style hessdistill: committee K needs K >= 2 students, got {}", k_given);
    } else if (key == "drive" && (value == "mean" || value == "first")) {
      drive_mean = value == "mean";
      drive_given = true;
    } else if (key == "drive") {
      error->all(FLERR, "pair_style hessdistill: drive must be mean or first, got '{}'", value);
    } else if (key == "threads") {
      nthreads = utils::inumeric(FLERR, value, false, lmp);
      if (nthreads < 1) error->all(FLERR, "pair_style hessdistill: threads must be >= 1, got {}", nthreads);
    } else {
      error->all(FLERR, "pair_style hessdistill: unknown keyword '{}'; expected: {}", key, SETTINGS_SYNTAX);
    }
  }
  if (drive_given && k_given == 1)
    error->all(FLERR, "pair_style hessdistill: drive {} needs a committee (committee K); expected: {}",
               drive_mean ? "mean" : "first", SETTINGS_SYNTAX);
  if (!drive_given) drive_mean = true;
  if (!members.empty() && k_given != committee_k)
    error->all(FLERR, "pair_style hessdistill: committee size changed from {} to {} after pair_coeff; give "
               "pair_style before pair_coeff", committee_k, k_given);
  committee_k = k_given;
  // each member's force on every atom travels back to its owner for the deviation (3 doubles per member)
  comm_reverse = committee_k > 1 ? 3 * committee_k : 0;

  // process-wide, so only on request: an input without `threads` keeps the host program's setting
  if (nthreads > 0) at::set_num_threads(nthreads);
  // `memory cache`: large CPU tensors reuse last step's blocks (block_cache.h); GPU tensors have torch's own cache
  use_block_cache = use_block_cache && device.is_cpu();
  // settings() runs again when an input repeats pair_style: attach or detach only on a change
  if (use_block_cache != cache_attached) {
    if (use_block_cache)
      hessdistill::BlockCache::instance().attach();
    else
      hessdistill::BlockCache::instance().detach();
    cache_attached = use_block_cache;
  }
  if (device.is_cuda()) {
    // edge counts change every step: GPU fusers should compile shape-generic kernels, not re-specialize
    torch::jit::FusionStrategy strategy = {{torch::jit::FusionBehavior::DYNAMIC, 10}};
    torch::jit::setFusionStrategy(strategy);
  }
  // pair_style repeated after pair_coeff: the students move to the (new) device by loading them again there
  if (!members.empty()) {
    std::vector<std::string> paths;
    for (const auto &m : members) paths.push_back(m.path);
    load_members(paths);
  }
}

/* pair_coeff * * student.pt Si O ...   (one element name per atom type)
   pair_coeff * * s0.pt s1.pt ... Si O   (committee K: K student files first) */

void PairHessdistill::coeff(int narg, char **arg)
{
  const int ntypes = atom->ntypes, k = committee_k;
  const std::string files = k == 1 ? "<student file>" : fmt::format("<student 1> ... <student {}>", k);
  const std::string syntax = fmt::format("expected: pair_coeff * * {} <element of type 1>{}", files,
                                         ntypes == 1 ? "" : fmt::format(" ... <element of type {}>", ntypes));
  if (narg < 2 + k || strcmp(arg[0], "*") != 0 || strcmp(arg[1], "*") != 0)
    error->all(FLERR, "Incorrect pair_coeff for pair_style hessdistill{}; {}",
               k == 1 ? "" : fmt::format(" committee {}", k), syntax);
  if (!allocated) allocate();

  if (k > 1 && narg - 2 != k + ntypes)
    error->all(FLERR, "pair_coeff hessdistill: committee {} needs {} student files and {} element name(s), got {} "
               "word(s) after '* *'; {}", k, k, ntypes, narg - 2, syntax);
  load_members(std::vector<std::string>(arg + 2, arg + 2 + k));

  if (narg - 2 - k != ntypes)
    error->all(FLERR, "pair_coeff hessdistill: {} element name(s) for {} atom type(s); {}; student {} covers {}",
               narg - 2 - k, ntypes, syntax, members[0].path, join(type_names));
  species_of_type.assign(ntypes + 1, -1);
  for (int t = 1; t <= ntypes; t++) {
    const std::string name = arg[1 + k + t];
    for (size_t k = 0; k < type_names.size(); k++)
      if (type_names[k] == name) species_of_type[t] = (int64_t) k;
    if (species_of_type[t] < 0)
      error->all(FLERR, "pair_coeff hessdistill: element '{}' (atom type {}) is not covered by student {}, "
                 "which covers {}; {}", name, t, members[0].path, join(type_names), syntax);
  }
  for (int i = 1; i <= ntypes; i++)
    for (int j = i; j <= ntypes; j++) setflag[i][j] = 1;
}

/* Load one student, TorchScript or .pt2 (student_runner.h), and check its metadata (formats/torchscript.py).
   Every rank reads the file: opening and loading it can fail on one rank alone (its file system, its device, its
   CPU), so those are error->one; the metadata of a loaded file is the same on every rank (error->all). */

PairHessdistill::Member PairHessdistill::load_student(const std::string &path)
{
  if (!std::ifstream(path).good())
    error->one(FLERR, "pair_coeff hessdistill: cannot open student file '{}' (missing or unreadable)", path);

  Member m;
  m.path = path;
  try {
    m.runner = hessdistill::open_student(path, device, device_given);
  } catch (const hessdistill::StudentFileError &e) {
    error->one(FLERR, "pair_coeff hessdistill: {}", e.what());
  } catch (const std::exception &e) {
    error->one(FLERR, "pair_coeff hessdistill: cannot load '{}': {}", path, first_line(e.what()));
  }
  auto &meta = m.runner->metadata;
  if (meta["format"] != FORMAT)
    error->all(FLERR, "pair_coeff hessdistill: '{}' is not a hessdistill student (format '{}', expected '{}'); "
               "write one with hessdistill.formats.save_student", path, meta["format"], FORMAT);
  if (meta["energy_unit"] != "eV" || meta["length_unit"] != "A")
    error->all(FLERR, "pair_coeff hessdistill: '{}' uses units {} / {}; expected eV / A", path,
               meta["energy_unit"], meta["length_unit"]);

  if (meta["dtype"] == "float64")
    m.dtype = torch::kFloat64;
  else if (meta["dtype"] == "float32")
    m.dtype = torch::kFloat32;
  else
    error->all(FLERR, "pair_coeff hessdistill: '{}' has dtype '{}'; expected float32 or float64", path,
               meta["dtype"]);
  try {
    m.cutoff = std::stod(meta["cutoff"]);
    m.num_interactions = std::stoi(meta["num_interactions"]);
    m.interaction_range = meta["interaction_range"].empty() ? m.num_interactions * m.cutoff
                                                            : std::stod(meta["interaction_range"]);
  } catch (const std::exception &) {
    error->all(FLERR, "pair_coeff hessdistill: '{}' has unreadable metadata cutoff='{}' num_interactions='{}'",
               path, meta["cutoff"], meta["num_interactions"]);
  }
  m.type_names = utils::split_words(meta["type_names"]);
  if (!(m.cutoff > 0.0) || m.num_interactions < 1 || m.type_names.empty())
    error->all(FLERR, "pair_coeff hessdistill: '{}' has invalid metadata: cutoff {}, num_interactions {}, "
               "type_names '{}'", path, m.cutoff, m.num_interactions, meta["type_names"]);

  if (comm->me == 0)
    utils::logmesg(lmp, "pair hessdistill: student {} ({}, {}), elements {}, cutoff {} A, {} interactions, {}, "
                   "device {}, {} thread(s)\n", path, m.runner->format(), meta["architecture"],
                   join(m.type_names), m.cutoff, m.num_interactions, meta["dtype"], m.runner->device.str(),
                   at::get_num_threads());
  return m;
}

/* The students of pair_coeff: one, or a committee that shares elements (in one order: one species tensor serves
   all) and a device; the graph reaches as far as the farthest-reaching member. */

void PairHessdistill::load_members(const std::vector<std::string> &paths)
{
  members.clear();
  for (const auto &path : paths) members.push_back(load_student(path));
  const Member &first = members[0];
  device = first.runner->device;
  type_names = first.type_names;
  cutoff = interaction_range = 0.0;
  num_interactions = 0;
  for (const auto &m : members) {
    if (m.type_names != first.type_names)
      error->all(FLERR, "pair_coeff hessdistill: committee members must cover the same elements in the same order: "
                 "{} covers {}, {} covers {}", first.path, join(first.type_names), m.path, join(m.type_names));
    if (m.runner->device != device)    // devices are per rank
      error->one(FLERR, "pair_coeff hessdistill: committee members must run on one device: {} runs on {}, {} on {}",
                 first.path, device.str(), m.path, m.runner->device.str());
    cutoff = std::max(cutoff, m.cutoff);
    num_interactions = std::max(num_interactions, m.num_interactions);
    interaction_range = std::max(interaction_range, m.interaction_range);
  }
  member_forces.assign(members.size(), torch::Tensor());
  deviation_of = -1;
  if (members.size() > 1 && comm->me == 0)
    utils::logmesg(lmp, "pair hessdistill: committee of {} students driven by {}; cutoff {} A, {} interactions "
                   "(largest over the members)\n", members.size(), drive_mean ? "their mean" : "the first",
                   cutoff, num_interactions);
}

void PairHessdistill::init_style()
{
  if (force->newton_pair == 0) error->all(FLERR, "Pair style hessdistill requires newton pair on");
  if (domain->dimension != 3) error->all(FLERR, "Pair style hessdistill requires a 3d simulation");
  if (atom->tag_enable == 0) error->all(FLERR, "Pair style hessdistill requires atom IDs");

  hessdistill::LammpsUnits units;
  if (!hessdistill::lammps_units(update->unit_style, units))
    error->all(FLERR, "Pair style hessdistill supports units metal (eV, Angstrom) and real (kcal/mol, "
               "Angstrom); this input uses units {}", update->unit_style);
  energy_factor = units.energy_per_ev;

  // One rank: every ghost is an image of a local atom and is folded onto it, so ghosts within cutoff + skin
  // suffice. Several ranks: a local energy depends on atoms interaction_range away, owned elsewhere. A strictly
  // local student (one interaction) needs only the ghosts within cutoff + skin, LAMMPS' default, and edges
  // centred on local atoms: no neighbor lists of ghosts. A deeper one needs ghosts out to interaction_range +
  // skin, with neighbor lists of their own (messages passed between ghosts reach local atoms).
  const bool strictly_local = num_interactions == 1;
  if (comm->nprocs == 1 || strictly_local) {
    neighbor->add_request(this, NeighConst::REQ_FULL);
    if (comm->nprocs == 1) return;
  } else {
    neighbor->add_request(this, NeighConst::REQ_FULL | NeighConst::REQ_GHOST);
  }
  if (comm->mode != Comm::SINGLE)
    error->all(FLERR, "Pair style hessdistill requires comm_modify mode single");
  const double needed = (strictly_local ? cutoff : interaction_range) + neighbor->skin;
  if (comm->style == Comm::TILED) {
    // comm_style tiled cannot bring ghosts from farther than one periodic box width
    const double *h = domain->h;    // xprd, yprd, zprd, yz, xz, xy
    const double width[3] = {
        h[0] * h[1] * h[2] / std::sqrt(std::pow(h[1] * h[2], 2) + std::pow(h[5] * h[2], 2) +
                                       std::pow(h[5] * h[3] - h[1] * h[4], 2)),
        h[1] * h[2] / std::sqrt(h[2] * h[2] + h[3] * h[3]), h[2]};
    const int periodic[3] = {domain->xperiodic, domain->yperiodic, domain->zperiodic};
    for (int d = 0; d < 3; d++)
      if (periodic[d] && needed > width[d])
        error->all(FLERR, "Pair style hessdistill: ghost atoms are needed out to {:.4g} A (interaction range + "
                   "skin = {} + {}), more than the periodic box width {:.4g} A along {}; comm_style tiled "
                   "cannot do that: use comm_style brick or a larger box",
                   needed, needed - neighbor->skin, neighbor->skin, width[d], "xyz"[d]);
  }
  if (strictly_local) return;    // the pair cutoff already sets the ghost cutoff to cutoff + skin
  if (comm->cutghostuser < needed) {
    comm->cutghostuser = needed;
    if (comm->me == 0)
      utils::logmesg(lmp, "pair hessdistill: communication cutoff set to {:.4g} A (num_interactions x cutoff "
                     "+ skin) for message passing across {} ranks\n", needed, comm->nprocs);
  }
}

double PairHessdistill::init_one(int, int)
{
  return cutoff;
}

/* Graph of this step. Nodes: local atoms (same index), then ghosts owned by other ranks that lie fewer than
   num_interactions + 1 hops from a local atom. A ghost that is a periodic image of a local atom becomes that atom,
   its edges carrying the image shift. Edges: pairs closer than the student's cutoff, centred on nodes fewer than
   num_interactions hops from a local atom (only those messages reach a local energy). A strictly local student
   (one interaction) has edges centred on local atoms only, so it needs no neighbor lists of ghosts (gnum = 0). */

void PairHessdistill::build_graph()
{
  const int nlocal = atom->nlocal;
  const int nall = nlocal + atom->nghost;
  double **x = atom->x;
  tagint *tag = atom->tag;

  // owner[a]: the local atom that atom a is (an image of), or -1 for a ghost owned by another rank
  local_of_tag.clear();
  for (int i = 0; i < nlocal; i++) local_of_tag[tag[i]] = i;
  owner.resize(nall);
  for (int a = 0; a < nall; a++) {
    auto it = a < nlocal ? local_of_tag.end() : local_of_tag.find(tag[a]);
    owner[a] = a < nlocal ? a : (it == local_of_tag.end() ? -1 : it->second);
  }
  auto rep = [&](int a) { return owner[a] >= 0 ? owner[a] : a; };    // atom standing for a's node

  // candidate edges within the cutoff; images of local atoms need no edges of their own
  const double cutsq_student = cutoff * cutoff;
  cand_i.clear();
  cand_j.clear();
  const int ncentres = list->inum + list->gnum;
  for (int ii = 0; ii < ncentres; ii++) {
    const int i = list->ilist[ii];
    if (i >= nlocal && owner[i] >= 0) continue;
    const int *jlist = list->firstneigh[i];
    for (int jj = 0; jj < list->numneigh[i]; jj++) {
      const int j = jlist[jj] & NEIGHMASK;
      const double dx = x[j][0] - x[i][0], dy = x[j][1] - x[i][1], dz = x[j][2] - x[i][2];
      if (dx * dx + dy * dy + dz * dz < cutsq_student) {
        cand_i.push_back(i);
        cand_j.push_back(j);
      }
    }
  }

  // hops from the local atoms (breadth first, one pass over the edges per hop)
  hop.assign(nall, INT_MAX);
  for (int i = 0; i < nlocal; i++) hop[i] = 0;
  if (list->gnum > 0)
    for (int k = 0; k + 1 < num_interactions; k++)
      for (size_t e = 0; e < cand_i.size(); e++)
        if (hop[cand_i[e]] == k && hop[rep(cand_j[e])] > k + 1) hop[rep(cand_j[e])] = k + 1;

  // nodes and edges
  node_of.assign(nall, -1);
  node_atom.resize(nlocal);
  for (int i = 0; i < nlocal; i++) node_of[i] = node_atom[i] = i;
  auto node = [&](int a) {
    if (node_of[a] < 0) {
      node_of[a] = (int) node_atom.size();
      node_atom.push_back(a);
    }
    return node_of[a];
  };
  edge_src.clear();
  edge_dst.clear();
  edge_shift.clear();
  edge_role.clear();
  // a shift's first component beyond 1e-6 A is positive: of an atom's two edges to its own image +-s, one is
  // (formats/evaluate.py pair_records, same rule)
  auto positive = [](const double *s) {
    for (int d = 0; d < 3; d++)
      if (std::fabs(s[d]) > 1e-6) return s[d] > 0;
    return false;
  };
  for (size_t e = 0; e < cand_i.size(); e++) {
    const int i = cand_i[e], j = cand_j[e], rj = rep(j);
    if (hop[i] >= num_interactions) continue;
    const int64_t a = node(i), b = node(rj);
    edge_src.push_back(a);
    edge_dst.push_back(b);
    double s[3];
    for (int d = 0; d < 3; d++) edge_shift.push_back(s[d] = x[j][d] - x[rj][d]);
    // the reverse edge is in the graph when rj is a centre, except from a remote ghost to a folded image of a
    // local atom (the reverse, from that atom, leads to another ghost of the remote one: another node)
    const bool remote_centre = i >= nlocal && owner[i] < 0;
    const bool reverse = hop[rj] < num_interactions && !(remote_centre && j != rj);
    edge_role.push_back(!reverse ? hessdistill::ONE_WAY
                        : (a < b || (a == b && positive(s))) ? hessdistill::BOTH_WAYS
                                                              : hessdistill::COVERED);
  }
  pvector[0] = (double) node_atom.size();
  pvector[1] = (double) edge_src.size();
}

/* One force evaluation: preprocess (this step's graph and the students' inputs), run the student(s), scatter the
   results into LAMMPS' forces, energies and virial. */

void PairHessdistill::compute(int eflag, int vflag)
{
  ev_init(eflag, vflag);
  if (cache_attached) hessdistill::BlockCache::instance().step_boundary();
  build_graph();
  make_inputs();
  scatter(run_committee(vflag_either != 0));
}

/* The students' inputs for this step's graph, built on the host in float64 and cast per member to its dtype and
   the device (run_member). Every tensor owns its data: the graph's vectors are rebuilt next step, while inputs
   serves deviation() until then. */

void PairHessdistill::make_inputs()
{
  const int nlocal = atom->nlocal;
  const int64_t nnodes = (int64_t) node_atom.size();
  const int64_t nedges = (int64_t) edge_src.size();
  double **x = atom->x;
  int *type = atom->type;

  auto host_f64 = torch::TensorOptions().dtype(torch::kFloat64);
  auto host_i64 = torch::TensorOptions().dtype(torch::kInt64);
  torch::Tensor x_nodes = torch::empty({nnodes, 3}, host_f64);
  torch::Tensor species = torch::empty({nnodes}, host_i64);
  double *xp = x_nodes.data_ptr<double>();
  int64_t *sp = species.data_ptr<int64_t>();
  for (int64_t n = 0; n < nnodes; n++) {
    const int a = node_atom[n];
    for (int d = 0; d < 3; d++) xp[3 * n + d] = x[a][d];
    sp[n] = species_of_type[type[a]];
  }
  // from_blob views of the vectors live only in this expression: stack and clone copy them
  torch::Tensor edge_index_host = torch::stack({torch::from_blob(edge_src.data(), {nedges}, host_i64),
                                                torch::from_blob(edge_dst.data(), {nedges}, host_i64)});
  torch::Tensor shifts_host = torch::from_blob(edge_shift.data(), {nedges, 3}, host_f64).clone();
  torch::Tensor role = torch::from_blob(edge_role.data(), {nedges}, host_i64).clone();
  torch::Tensor local = torch::arange(nnodes, host_i64).lt(nlocal);
  inputs = {x_nodes, species.to(device), edge_index_host, edge_index_host.to(device), shifts_host, role.to(device),
            local.to(device)};
}

/* The five outputs of formats/evaluate.py, from either format: of the one student, of member 0 (drive first; the
   others wait for deviation()), or the mean of all members on the host in float64 (drive mean; every output is
   linear in them). Each member's forces are kept for deviation(). */

hessdistill::StudentOutputs PairHessdistill::run_committee(bool need_virial)
{
  evaluations += 1;
  const int nrun = drive_mean ? (int) members.size() : 1;
  hessdistill::StudentOutputs out;
  for (int k = 0; k < (int) members.size(); k++) member_forces[k] = torch::Tensor();
  for (int k = 0; k < nrun; k++) {
    hessdistill::StudentOutputs o = run_member(k, need_virial);
    if (members.size() > 1) member_forces[k] = to_host(o.forces).clone();    // eV/A, kept from the unit scaling below
    if (nrun == 1) {
      out = o;
    } else if (k == 0) {    // copies: to_host returns a float64 CPU tensor itself, and member_forces keeps it
      out = {to_host(o.energy).clone(), to_host(o.energies).clone(), to_host(o.forces).clone(),
             to_host(o.shift_forces).clone(), to_host(o.virial).clone()};
    } else {
      out.energy += to_host(o.energy);
      out.energies += to_host(o.energies);
      out.forces += to_host(o.forces);
      out.shift_forces += to_host(o.shift_forces);
      out.virial += to_host(o.virial);
    }
  }
  if (nrun > 1)
    for (torch::Tensor *t : {&out.energy, &out.energies, &out.forces, &out.shift_forces, &out.virial})
      t->div_((double) nrun);
  return out;
}

/* The outputs (eV, A) in LAMMPS' units: forces on nodes (local atoms and remote ghosts, whose forces LAMMPS
   reverse-communicates), the local energy, per-atom energies and the virial, global and per atom. */

void PairHessdistill::scatter(const hessdistill::StudentOutputs &out)
{
  const int nlocal = atom->nlocal;
  const int64_t nnodes = inputs.x_host.size(0);
  double **f = atom->f;
  torch::Tensor forces = to_host(out.forces).mul(energy_factor);
  const double *fp = forces.data_ptr<double>();
  const double e_local = to_host(out.energy).item<double>();

  // a non-finite energy or force means the run has left what the student can describe: stop, saying so
  int bad = std::isfinite(e_local) ? 0 : 1;
  for (int64_t k = 0; k < 3 * nnodes && !bad; k++) bad = std::isfinite(fp[k]) ? 0 : 1;
  int any_bad = 0;
  MPI_Allreduce(&bad, &any_bad, 1, MPI_INT, MPI_MAX, world);
  if (any_bad)
    error->all(FLERR, "pair hessdistill: the student gave a non-finite energy or force at step {}; the run is "
               "unstable (timestep too large, atoms too close, or far from the training data)", update->ntimestep);

  for (int64_t n = 0; n < nnodes; n++)
    for (int d = 0; d < 3; d++) f[node_atom[n]][d] += fp[3 * n + d];
  if (eflag_global) eng_vdwl += energy_factor * e_local;
  if (eflag_atom) {
    torch::Tensor e = to_host(out.energies.narrow(0, 0, nlocal));
    const double *ep = e.data_ptr<double>();
    for (int i = 0; i < nlocal; i++) eatom[i] += energy_factor * ep[i];
  }
  if (!vflag_either) return;

  // virial W = sum_nodes x f^T + sum_edges shift f_shift^T (f_shift = -dE/dshift): the strain derivative of E
  const int64_t voigt[6][2] = {{0, 0}, {1, 1}, {2, 2}, {0, 1}, {0, 2}, {1, 2}};
  if (vflag_global) {
    torch::Tensor w = to_host(out.virial).mul(energy_factor);
    const double *wp = w.data_ptr<double>();
    for (int k = 0; k < 6; k++) virial[k] += wp[3 * voigt[k][0] + voigt[k][1]];
  }
  if (vflag_atom) {
    torch::Tensor fshift = to_host(out.shift_forces).mul(energy_factor);
    // pairwise split: edge e adds r_e f_shift_e^T, half to each end (sums to the global virial)
    torch::Tensor src = inputs.edge_index_host[0], dst = inputs.edge_index_host[1];
    torch::Tensor r = inputs.x_host.index_select(0, dst) - inputs.x_host.index_select(0, src) + inputs.shifts_host;
    std::vector<torch::Tensor> parts;
    for (auto &ab : voigt) parts.push_back(r.select(1, ab[0]) * fshift.select(1, ab[1]));
    torch::Tensor half = torch::stack(parts, 1).mul_(0.5);
    torch::Tensor v = torch::zeros({nnodes, 6}, torch::TensorOptions().dtype(torch::kFloat64))
                          .index_add_(0, src, half)
                          .index_add_(0, dst, half);
    const double *vp = v.data_ptr<double>();
    for (int64_t n = 0; n < nnodes; n++)
      for (int k = 0; k < 6; k++) vatom[node_atom[n]][k] += vp[6 * n + k];
  }
}

/* Member k on this step's graph (inputs): its five outputs. A member whose cutoff is below the graph's sees only
   the edges within its own cutoff; its shift forces are put back in the graph's edge order. */

hessdistill::StudentOutputs PairHessdistill::run_member(int k, bool need_virial)
{
  const Member &m = members[k];
  const int64_t nnodes = inputs.x_host.size(0), nedges = inputs.shifts_host.size(0);
  auto host_f64 = torch::TensorOptions().dtype(torch::kFloat64);
  if (nnodes == 0)    // a rank without atoms has nothing to ask for
    return {torch::zeros({}, host_f64), torch::zeros({0}, host_f64), torch::zeros({0, 3}, host_f64),
            torch::zeros({nedges, 3}, host_f64), torch::zeros({3, 3}, host_f64)};
  torch::Tensor edge_index = inputs.edge_index, shifts_host = inputs.shifts_host, role = inputs.role, kept;
  if (m.cutoff < cutoff) {
    const torch::Tensor &ei = inputs.edge_index_host;
    torch::Tensor r = inputs.x_host.index_select(0, ei[1]) - inputs.x_host.index_select(0, ei[0]) + shifts_host;
    kept = r.mul(r).sum(1).lt(m.cutoff * m.cutoff).nonzero().squeeze(1);
    edge_index = ei.index_select(1, kept).to(device);
    role = role.index_select(0, kept.to(role.device()));    // the cutoff keeps or drops an edge with its reverse
    shifts_host = shifts_host.index_select(0, kept);
  }
  hessdistill::StudentOutputs out;
  try {
    out = m.runner->run(inputs.x_host.to(device, m.dtype, false, true), inputs.species, edge_index,
                        shifts_host.to(device, m.dtype, false, true), role, inputs.local, need_virial);
  } catch (const std::exception &e) {
    error->one(FLERR, "pair hessdistill: student {} evaluation failed: {}", m.path, first_line(e.what()));
  }
  if (kept.defined())
    out.shift_forces = torch::zeros({nedges, 3}, host_f64).index_copy_(0, kept, to_host(out.shift_forces));
  return out;
}

/* The committee's force deviation of the last force evaluation (pair_hessdistill.h). Members that did not run in
   compute() (drive first) run now on the same graph; each member's forces on ghost atoms are reverse-communicated
   to their owners, so every local atom has its total force from every member, as on one rank. */

const PairHessdistill::Deviation &PairHessdistill::deviation(const char *caller)
{
  const int nk = (int) members.size();
  if (nk < 2)
    error->all(FLERR, "{} needs pair_style hessdistill ... committee K (K >= 2 students); this pair style has one "
               "student", caller);
  if (evaluations == 0)
    error->all(FLERR, "{}: no forces have been computed yet (use it during or after a run)", caller);
  if (deviation_of == evaluations) return dev;

  for (int k = 0; k < nk; k++)
    if (!member_forces[k].defined()) member_forces[k] = to_host(run_member(k, false).forces);

  const int nlocal = atom->nlocal, nall = nlocal + atom->nghost;
  if (atom->nmax > member_f_rows) {
    memory->destroy(member_f);
    member_f_rows = atom->nmax;
    memory->create(member_f, member_f_rows, 3 * nk, "pair:member_f");
  }
  for (int a = 0; a < nall; a++)
    for (int c = 0; c < 3 * nk; c++) member_f[a][c] = 0.0;
  for (int k = 0; k < nk; k++) {
    const double *fk = member_forces[k].data_ptr<double>();
    for (size_t n = 0; n < node_atom.size(); n++)
      for (int d = 0; d < 3; d++) member_f[node_atom[n]][3 * k + d] += fk[3 * n + d];
  }
  comm->reverse_comm(this);

  dev.devi_f.resize(nlocal);
  for (int i = 0; i < nlocal; i++) dev.devi_f[i] = hessdistill::atom_force_deviation(member_f[i], nk);
  dev.summary = hessdistill::summarise_deviation(dev.devi_f, (double) atom->natoms, world);
  deviation_of = evaluations;
  return dev;
}

int PairHessdistill::pack_reverse_comm(int n, int first, double *buf)
{
  int m = 0;
  for (int i = first; i < first + n; i++)
    for (int c = 0; c < comm_reverse; c++) buf[m++] = member_f[i][c];
  return m;
}

void PairHessdistill::unpack_reverse_comm(int n, int *list, double *buf)
{
  int m = 0;
  for (int i = 0; i < n; i++)
    for (int c = 0; c < comm_reverse; c++) member_f[list[i]][c] += buf[m++];
}
