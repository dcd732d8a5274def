/* pair_style hessdistill: a hessdistill student (message-passing potential) as a LAMMPS pair style.

   pair_style hessdistill [device cpu|cuda] [threads N] [memory cache|system]
                          (default: cuda when available; torch's thread count as it is; memory system)
   pair_coeff * * student.pt Si O ...      (one element name per LAMMPS atom type)

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

   Process-wide settings change only when the input asks: `threads N` sets torch's intra-op thread count for the
   whole process (at::set_num_threads), `memory cache` installs the block cache as torch's CPU allocator while the
   pair style lives (block_cache.h). On CUDA the pair style sets the TorchScript fuser to shape-generic kernels
   (torch::jit::setFusionStrategy, also process-wide): edge counts change every step. */

#ifndef LMP_PAIR_HESSDISTILL_H
#define LMP_PAIR_HESSDISTILL_H

#include "pair.h"

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

 private:
  void allocate();
  void load_student(const std::string &path);
  void build_graph();

  torch::Device device;
  bool device_given;      // pair_style ... device X: a .pt2 for another device is refused, not followed
  int nthreads;           // from `threads N`; 0: torch's thread count left as it is
  bool cache_attached;    // a user of the block cache: large CPU tensors reuse last step's blocks (block_cache.h)

  // the student and its metadata
  std::unique_ptr<hessdistill::StudentRunner> student;
  std::string student_path;
  torch::ScalarType dtype;
  double cutoff;
  int num_interactions;
  double interaction_range;    // num_interactions x cutoff: how far one atom's energy reaches
  std::vector<std::string> type_names;

  std::vector<int64_t> species_of_type;    // LAMMPS type (1..ntypes) -> student type index
  double energy_factor;                    // eV -> LAMMPS energy unit

  // graph of the current step, rebuilt by build_graph()
  std::vector<int> node_atom;                   // node -> LAMMPS atom index (local atoms first, same index)
  std::vector<int64_t> edge_src, edge_dst;      // node indices: centre, neighbour
  std::vector<double> edge_shift;               // 3 per edge: image shift of the neighbour (0 unless folded)
  std::vector<int> owner, hop, node_of;         // per LAMMPS atom (scratch)
  std::vector<int> cand_i, cand_j;              // candidate edges, LAMMPS atom indices (scratch)
  std::unordered_map<tagint, int> local_of_tag;    // scratch
};

}    // namespace LAMMPS_NS

#endif
