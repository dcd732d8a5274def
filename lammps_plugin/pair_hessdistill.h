/* pair_style hessdistill: a hessdistill student (message-passing potential) as a LAMMPS pair style.

   pair_style hessdistill [device cpu|cuda] [threads N] [memory cache|system] [committee K [drive mean|first]]
                          (default: cuda when available; torch's thread count as it is; memory system; one student)
   pair_coeff * * student.pt Si O ...      (one element name per LAMMPS atom type)
   pair_coeff * * s0.pt s1.pt s2.pt Si O   (committee 3: K student files, then the element names)

   With device cuda, the ranks on one node share its visible GPUs round robin by their rank on the node.

   The student file is TorchScript or a compiled .pt2 package, told apart by content (student_runner.h); a .pt2
   runs on the device it was compiled for. Energies come from the student, forces and virial from autograd
   through it (TorchScript) or from the package's compiled derivatives (.pt2): the same five outputs either way
   (hessdistill.formats.evaluate), scattered by one compute(). The student sees a graph whose
   nodes are the local atoms plus the ghost atoms owned by other ranks; a ghost that is a periodic image of a local
   atom is folded onto that atom and its edges carry the image shift, so on one rank the student does exactly the
   work of a periodic evaluation. Only local energies are summed; forces on remote ghosts are reverse-communicated
   by LAMMPS (newton pair on). With several ranks, ghosts reach num_interactions x cutoff + skin, so every local
   energy is exact and results do not depend on the number of ranks. A strictly local student (num_interactions
   1) needs only LAMMPS' default ghost shell (cutoff + skin) and no neighbor lists of ghosts: a rank evaluates its
   local atoms, their neighbours and the edges centred on local atoms, about local atoms x neighbours.

   `compute ID all pair hessdistill` gives the nodes (c_ID[1]) and edges (c_ID[2]) the student evaluated in the
   last step, summed over ranks: divided by the one-rank numbers, the work that domain decomposition adds.

   A committee (K students that differ in training seed; same elements, each TorchScript or .pt2) runs on one
   graph built for the largest cutoff and interaction range of its members (a member with a smaller cutoff gets
   the edges within its own). `drive mean` (default): every member runs every step and the mean energy, forces,
   per-atom energies and virial drive the dynamics (the mean of conservative forces is conservative). `drive
   first`: member 0 alone drives; the others run only when the deviation is asked for on that step. The
   deviation (committee.h: devi_f per atom, max/min/mean over atoms, eV/A in any unit style) is computed lazily by
   deviation(), for `compute ID all hessdistill/deviation` and `fix ID all hessdistill/deviation`: each member's
   forces on ghosts are reverse-communicated (3 K doubles per atom) so every local atom has its total force from
   every member and the result does not depend on the number of ranks.

   Process-wide settings change only when the input asks: `threads N` sets torch's intra-op thread count for the
   whole process (at::set_num_threads), `memory cache` installs the block cache as torch's CPU allocator while the
   pair style lives (block_cache.h). On CUDA the pair style sets the TorchScript fuser to shape-generic kernels
   (torch::jit::setFusionStrategy, also process-wide): edge counts change every step. */

#ifndef LMP_PAIR_HESSDISTILL_H
#define LMP_PAIR_HESSDISTILL_H

#include "pair.h"

#include "committee.h"
#include "student_runner.h"

#include <memory>

#include <string>
#include <unordered_map>
#include <vector>

namespace LAMMPS_NS {

class PairHessdistill : public Pair {
 public:
  PairHessdistill(class LAMMPS *);
  ~PairHessdistill() override;

  void settings(int, char **) override;
  void coeff(int, char **) override;
  void init_style() override;
  double init_one(int, int) override;
  void compute(int, int) override;
  int pack_reverse_comm(int, int, double *) override;
  void unpack_reverse_comm(int, int *, double *) override;

  // The committee's force deviation for the configuration of the last force evaluation (collective: every rank
  // calls it). devi_f: per local atom; the summary over all atoms. Computed once per force evaluation.
  struct Deviation {
    std::vector<double> devi_f;
    hessdistill::DeviationSummary summary;
  };
  const Deviation &deviation(const char *caller);
  int committee_size() const { return (int) members.size(); }
  std::string element_of_type(int type) const { return type_names[species_of_type[type]]; }

 private:
  // one student of the committee (one without a committee)
  struct Member {
    std::unique_ptr<hessdistill::StudentRunner> runner;
    std::string path;
    torch::ScalarType dtype;
    double cutoff;
    int num_interactions;
    double interaction_range;
    std::vector<std::string> type_names;
  };
  // this step's graph as the students take it: host float64 positions and shifts, edge_index on the host and on
  // the device, the rest on the device. Each tensor owns its data (no view of the graph's vectors below).
  struct GraphInputs {
    torch::Tensor x_host, species, edge_index_host, edge_index, shifts_host, role, local;
  };

  void allocate();
  Member load_student(const std::string &path);
  void load_members(const std::vector<std::string> &paths);
  // compute(): build_graph and make_inputs (preprocess), run_committee (the students), scatter (into LAMMPS)
  void build_graph();
  void make_inputs();
  hessdistill::StudentOutputs run_committee(bool need_virial);
  hessdistill::StudentOutputs run_member(int k, bool need_virial);
  void scatter(const hessdistill::StudentOutputs &out);

  torch::Device device;
  int node_rank;          // this rank among the ranks on its node: picks the node's GPU (round robin)
  bool device_given;      // pair_style ... device X: a .pt2 for another device is refused, not followed
  int nthreads;           // from `threads N`; 0: torch's thread count left as it is
  bool cache_attached;    // a user of the block cache: large CPU tensors reuse last step's blocks (block_cache.h)

  // the students and what they share: largest cutoff and reach over the members, their common elements
  std::vector<Member> members;
  int committee_k;        // `committee K`: members expected in pair_coeff (1: a single student)
  bool drive_mean;        // `drive mean`: the members' mean drives; else member 0 alone
  double cutoff;
  int num_interactions;
  double interaction_range;    // num_interactions x cutoff: how far one atom's energy reaches
  std::vector<std::string> type_names;

  // committee state of the last force evaluation
  GraphInputs inputs;
  std::vector<torch::Tensor> member_forces;    // per member: host float64 (nodes, 3) eV/A; undefined: not run yet
  bigint evaluations, deviation_of;            // force evaluations so far; the one `dev` belongs to (-1: none)
  Deviation dev;
  double **member_f;                           // (nmax, 3 K): each member's forces per atom, for reverse comm
  int member_f_rows;

  std::vector<int64_t> species_of_type;    // LAMMPS type (1..ntypes) -> student type index
  double energy_factor;                    // eV -> LAMMPS energy unit

  // graph of the current step, rebuilt by build_graph(); make_inputs() copies it into `inputs`
  std::vector<int> node_atom;                   // node -> LAMMPS atom index (local atoms first, same index)
  std::vector<int64_t> edge_src, edge_dst;      // node indices: centre, neighbour
  std::vector<double> edge_shift;               // 3 per edge: image shift of the neighbour (0 unless folded)
  std::vector<int64_t> edge_role;               // hessdistill::EdgeRole per edge
  std::vector<int> owner, hop, node_of;         // per LAMMPS atom (scratch)
  std::vector<int> cand_i, cand_j;              // candidate edges, LAMMPS atom indices (scratch)
  std::unordered_map<tagint, int> local_of_tag;    // scratch
};

}    // namespace LAMMPS_NS

#endif
