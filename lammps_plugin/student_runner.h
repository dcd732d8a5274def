/* A loaded student file, TorchScript or compiled .pt2 package, behind one call: the five outputs of
   hessdistill.formats.evaluate.student_outputs (energy, energies, forces, shift_forces, virial) for the pair style's
   graph inputs (positions, species, edge_index, shifts, local). The pair style builds the graph and scatters the
   outputs the same way for either format; only run() differs:

   - TorchScriptRunner: the scripted student's forward, then autograd (what student_outputs does in Python);
   - Pt2Runner: torch::inductor::AOTIModelPackageLoader::run, the same function compiled with its autograd, on the
     graph's pair records (each edge's EdgeRole, which the pair style marks).

   open_student() picks the runner from the file's content (a zip entry <root>/archive_format holding "pt2", the
   test hessdistill.formats.file_format makes), never from the suffix alone. Problems with a file are thrown as
   StudentFileError with a one-line message. */

#ifndef LMP_HESSDISTILL_STUDENT_RUNNER_H
#define LMP_HESSDISTILL_STUDENT_RUNNER_H

#include <torch/script.h>

#include <memory>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace hessdistill {

// One line saying what is wrong with a student file (the pair style turns it into a LAMMPS error).
struct StudentFileError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// formats/evaluate.py: energy (), energies (N), forces (N, 3), shift_forces (E, 3), virial (3, 3); eV and A, in
// the student's dtype, on its device. shift_forces and virial may be zeros when run() was told no virial is needed.
struct StudentOutputs {
  torch::Tensor energy, energies, forces, shift_forces, virial;
};

// A .pt2 package reads pair records (formats/pt2.py, StudentBase.forward_pairs): an edge whose reverse is in the
// graph is a record for both (the pair's one edge marked BOTH_WAYS, the other COVERED); an edge without its reverse
// in the graph (into nodes that pass no messages on, or a remote ghost's edge to a folded image) is ONE_WAY.
enum EdgeRole : int64_t { COVERED = 0, BOTH_WAYS = 1, ONE_WAY = 2 };

class StudentRunner {
 public:
  virtual ~StudentRunner() = default;
  // local: bool (N,), the nodes whose energy counts. role: int64 (E,), how the edge enters a .pt2 package's pair
  // records (EdgeRole; TorchScript reads every edge). need_virial false lets a runner skip shift_forces and virial.
  virtual StudentOutputs run(const torch::Tensor &positions, const torch::Tensor &species,
                             const torch::Tensor &edge_index, const torch::Tensor &shifts, const torch::Tensor &role,
                             const torch::Tensor &local, bool need_virial) = 0;
  virtual const char *format() const = 0;    // "TorchScript" or ".pt2 package", for messages

  std::unordered_map<std::string, std::string> metadata;    // formats/torchscript.py METADATA_KEYS (+ pt2 keys)
  torch::Device device{torch::kCPU};                         // where the student runs
};

// True when `path` is an AOTInductor package (zip entry archive_format = pt2).
bool is_pt2_package(const std::string &path);

// The student in `path` on `device`. A .pt2 package runs only on the device it was compiled for: unless
// `device_given` (pair_style ... device X), a package for cpu runs on cpu even where `device` defaults to cuda.
std::unique_ptr<StudentRunner> open_student(const std::string &path, const torch::Device &device,
                                            bool device_given);

}    // namespace hessdistill

#endif
