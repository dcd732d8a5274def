/* Student runners: see student_runner.h. */

#include "student_runner.h"

#include <ATen/cpu/Utils.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/csrc/autograd/autograd.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/cuda.h>
#include <torch/version.h>

#include <sys/utsname.h>

#include <sstream>
#include <vector>

namespace hessdistill {

namespace {

// the keys of formats/torchscript.py METADATA_KEYS that the pair style reads
const char *const METADATA_KEYS[] = {"format", "architecture", "cutoff", "num_interactions", "interaction_range",
                                     "type_names", "energy_unit", "length_unit", "dtype"};
// formats/pt2.py: PT2_KEYS and SIGNATURE ("2": these inputs, outputs named by the `outputs` key)
const char *const PT2_KEYS[] = {"package", "pt2_signature", "inputs", "outputs", "torch_version", "device",
                                "cpu_isa"};
const char *const PT2_SIGNATURE = "2";
const char *const PT2_INPUTS = "positions species pairs shifts both local";
const char *const OUTPUTS[] = {"energy", "energies", "forces", "shift_forces", "virial"};

std::string first_line(const std::string &text)
{
  return text.substr(0, text.find('\n'));
}

std::string what(const std::exception &e)
{
  auto *c10_error = dynamic_cast<const c10::Error *>(&e);
  return first_line(c10_error ? c10_error->what_without_backtrace() : e.what());
}

std::vector<std::string> words(const std::string &text)
{
  std::istringstream in(text);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

std::string before_plus(const std::string &version)
{
  return version.substr(0, version.find('+'));    // +cpu / +cu128 builds of one torch share the ABI
}

std::string machine()
{
  struct utsname u;
  return uname(&u) == 0 ? u.machine : "";
}

// formats/pt2.py _missing_cpu_features: the package's machine and CPU features this CPU lacks
std::vector<std::string> missing_cpu_features(const std::string &cpu_isa)
{
  std::vector<std::string> want = words(cpu_isa), missing;
  if (want.empty() || want[0] != machine()) return {want.empty() ? std::string("(no machine)") : want[0]};
  for (size_t k = 1; k < want.size(); k++) {
    const std::string &f = want[k];
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 12)
    // torch 2.12 replaced at::cpu::is_*_supported by one map of cpuinfo's names
    static const auto caps = at::cpu::get_cpu_capabilities();
    const auto it = caps.find(f == "avx512" ? std::string("avx512_f") : f);
    const bool have = it != caps.end() && it->second.isBool() && it->second.toBool();
#else
    const bool have = f == "avx2"          ? at::cpu::is_avx2_supported()
                      : f == "avx512"      ? at::cpu::is_avx512_supported()
                      : f == "avx512_bf16" ? at::cpu::is_avx512_bf16_supported()
                      : f == "amx_tile"    ? at::cpu::is_amx_tile_supported()
                      : f == "amx_fp16"    ? at::cpu::is_amx_fp16_supported()
                                           : false;
#endif
    if (!have) missing.push_back(f);
  }
  return missing;
}

std::string join(const std::vector<std::string> &items, const char *sep)
{
  std::string out;
  for (const auto &s : items) out += (out.empty() ? "" : sep) + s;
  return out;
}

/* TorchScript: forward, then autograd of the local energy (formats/evaluate.py student_outputs). */

class TorchScriptRunner : public StudentRunner {
 public:
  TorchScriptRunner(const std::string &path, const torch::Device &dev)
  {
    for (const char *key : METADATA_KEYS) metadata[key] = "";
    try {
      module = torch::jit::load(path, dev, metadata);
    } catch (const std::exception &e) {
      throw StudentFileError("cannot load '" + path + "' as a student (neither a .pt2 package nor TorchScript): " +
                             what(e));
    }
    module.eval();
    device = dev;
  }

  const char *format() const override { return "TorchScript"; }

  StudentOutputs run(const torch::Tensor &positions, const torch::Tensor &species, const torch::Tensor &edge_index,
                     const torch::Tensor &shifts, const torch::Tensor &, const torch::Tensor &local,
                     bool need_virial) override
  {
    torch::Tensor pos = positions.detach().requires_grad_(true);
    torch::Tensor sh = shifts.detach().requires_grad_(need_virial);
    torch::Tensor energies = module.forward({pos, species, edge_index, sh}).toTensor();
    torch::Tensor energy = torch::where(local, energies, torch::zeros_like(energies)).sum();
    std::vector<torch::Tensor> inputs{pos};
    if (need_virial) inputs.push_back(sh);
    auto grads = torch::autograd::grad({energy}, inputs, {}, false, false, true);    // allow_unused
    // an input no energy depends on (no edges) has no gradient: its force is zero
    torch::Tensor forces = grads[0].defined() ? grads[0].neg() : torch::zeros_like(pos);
    torch::Tensor shift_forces =
        need_virial && grads[1].defined() ? grads[1].neg() : torch::zeros_like(sh, torch::MemoryFormat::Contiguous);
    torch::Tensor virial = need_virial ? pos.detach().t().mm(forces) + sh.detach().t().mm(shift_forces)
                                       : torch::zeros({3, 3}, pos.options().requires_grad(false));
    return {energy.detach(), energies.detach(), forces, shift_forces.detach(), virial};
  }

 private:
  torch::jit::Module module;
};

/* .pt2: the compiled package; every output is already there, no autograd. */

class Pt2Runner : public StudentRunner {
 public:
  Pt2Runner(const std::string &path, const torch::Device &requested, bool device_given)
  {
    auto fail = [&](const std::string &why) { throw StudentFileError("'" + path + "' " + why); };
    try {
      // one runner, not single-threaded; the index picks the GPU of a cuda package (ignored for cpu)
      loader = std::make_unique<torch::inductor::AOTIModelPackageLoader>(
          path, "model", false, 1, requested.is_cuda() ? requested.index() : (c10::DeviceIndex) -1);
      metadata = loader->get_metadata();
    } catch (const std::exception &e) {
      fail("cannot be loaded as a .pt2 package: " + what(e));
    }
    std::vector<std::string> missing;
    for (const char *key : METADATA_KEYS)
      if (!metadata.count(key)) missing.push_back(key);
    for (const char *key : PT2_KEYS)
      if (!metadata.count(key)) missing.push_back(key);
    if (!missing.empty()) fail("is not a hessdistill .pt2 student: metadata lacks " + join(missing, ", "));

    // the same checks, in the same order, as formats/pt2.py Pt2StudentFile
    const std::string built = metadata["device"];
    const bool cuda_ok = torch::cuda::is_available();
    if (built != "cpu" && built != "cuda") fail("was compiled for device '" + built + "'; expected cpu or cuda");
    const std::string asked = requested.is_cuda() ? "cuda" : "cpu";
    if (device_given && asked != built)
      fail("was compiled for " + built + " and runs only there; pair_style asked for device " + asked +
           " (export it again with device " + asked + ", or leave out the device keyword)");
    if (built == "cuda" && !cuda_ok) fail("was compiled for cuda and runs only there; torch sees no CUDA device");
    if (before_plus(metadata["torch_version"]) != before_plus(TORCH_VERSION))
      fail("was compiled by torch " + metadata["torch_version"] + "; this plugin is built with torch " +
           TORCH_VERSION + ": export it again with this torch");
    if (metadata["pt2_signature"] != PT2_SIGNATURE)
      fail("has pt2 signature '" + metadata["pt2_signature"] + "'; this plugin reads '" + PT2_SIGNATURE +
           "': export it again");
    if (metadata["inputs"] != PT2_INPUTS)
      fail("takes inputs '" + metadata["inputs"] + "'; expected '" + PT2_INPUTS + "'");
    if (built == "cpu") {
      auto lacks = missing_cpu_features(metadata["cpu_isa"]);
      if (!lacks.empty())
        fail("was compiled for a CPU with " + metadata["cpu_isa"] + "; this " + machine() + " CPU lacks " +
             join(lacks, ", ") + ": export it again here");
    }
    // outputs come back in the order the `outputs` key names them
    const auto names = words(metadata["outputs"]);
    for (int k = 0; k < 5; k++) {
      position[k] = -1;
      for (size_t j = 0; j < names.size(); j++)
        if (names[j] == OUTPUTS[k]) position[k] = (int) j;
      if (position[k] < 0)
        fail("has outputs '" + metadata["outputs"] + "', without '" + OUTPUTS[k] + "'");
    }
    noutputs = names.size();
    device = built == "cpu" ? torch::Device(torch::kCPU)
             : requested.is_cuda() ? requested
                                   : torch::Device(torch::kCUDA, 0);
  }

  const char *format() const override { return ".pt2 package"; }

  StudentOutputs run(const torch::Tensor &positions, const torch::Tensor &species, const torch::Tensor &edge_index,
                     const torch::Tensor &shifts, const torch::Tensor &role, const torch::Tensor &local,
                     bool) override
  {
    torch::Tensor kept = role.ne(COVERED).nonzero().squeeze(1);
    torch::Tensor both = role.index_select(0, kept).eq(BOTH_WAYS).to(shifts.scalar_type());
    std::vector<torch::Tensor> out =
        loader->run({positions, species, edge_index.index_select(1, kept), shifts.index_select(0, kept), both, local});
    if (out.size() != noutputs)
      throw std::runtime_error("the package returned " + std::to_string(out.size()) + " outputs, its metadata names " +
                               std::to_string(noutputs));
    // per-record shift forces back on the graph's edges (zero on a covered edge: the energy reads its shift once)
    torch::Tensor shift_forces = torch::zeros_like(shifts).index_copy_(0, kept, out[position[3]]);
    return {out[position[0]], out[position[1]], out[position[2]], shift_forces, out[position[4]]};
  }

 private:
  std::unique_ptr<torch::inductor::AOTIModelPackageLoader> loader;
  int position[5];    // index in run()'s result of energy, energies, forces, shift_forces, virial
  size_t noutputs = 0;
};

}    // namespace

bool is_pt2_package(const std::string &path)
{
  try {
    caffe2::serialize::PyTorchStreamReader reader(path);    // records are named without the archive's root folder
    if (!reader.hasRecord("archive_format")) return false;
    auto [data, size] = reader.getRecord("archive_format");
    return std::string(static_cast<const char *>(data.get()), size) == "pt2";
  } catch (const std::exception &) {
    return false;    // not a zip, or not a torch archive: not a package (the TorchScript loader says why)
  }
}

std::unique_ptr<StudentRunner> open_student(const std::string &path, const torch::Device &device,
                                            bool device_given)
{
  if (is_pt2_package(path)) return std::make_unique<Pt2Runner>(path, device, device_given);
  return std::make_unique<TorchScriptRunner>(path, device);
}

}    // namespace hessdistill
