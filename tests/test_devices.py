"""The one device rule (hessdistill.devices), with the GPU's presence given as a parameter, so every branch of
where models and OpenMM run is exercised on a machine without one; and the components that place models follow it."""

import pytest
import torch

from conftest import make_student
from hessdistill.devices import openmm_platform_name, resolve_device
from hessdistill.errors import ConfigError
from hessdistill.formats import export_student
from hessdistill.formats.torchscript import StudentFile
from hessdistill.teachers.analytic import MorseTeacher


@pytest.mark.parametrize("cuda", [False, True])
def test_auto_is_cuda_exactly_when_a_gpu_is_there(cuda):
    want = torch.device("cuda" if cuda else "cpu")
    assert resolve_device(None, cuda=cuda) == want and resolve_device("auto", cuda=cuda) == want
    assert resolve_device("cpu", cuda=cuda) == torch.device("cpu")
    assert resolve_device(torch.device("cpu"), cuda=cuda) == torch.device("cpu")


def test_requested_devices_are_checked():
    assert resolve_device("cuda:1", cuda=True) == torch.device("cuda", 1)
    for name in ("cuda", "cuda:0"):
        with pytest.raises(ConfigError, match=r"^device cuda(:0)? requested but torch sees no CUDA device here"):
            resolve_device(name, cuda=False)
    for bad in ("tpu", "gpu", "meta", ""):
        with pytest.raises(ConfigError, match="device must be auto, cpu, cuda or cuda:N"):
            resolve_device(bad, cuda=True)


@pytest.mark.parametrize("available, students_only, cuda, want", [
    (("Reference", "CPU", "CUDA", "OpenCL"), True, True, "CUDA"),     # GPU: the student runs there too
    (("Reference", "CPU", "CUDA", "OpenCL"), False, True, "CUDA"),
    (("Reference", "CPU", "CUDA"), True, False, "Reference"),         # OpenMM's CUDA without torch's: not chosen
    (("Reference", "CPU", "CUDA"), False, False, "CPU"),
    (("Reference", "CPU"), False, True, "CPU"),                      # torch's GPU without OpenMM's CUDA platform
    (("Reference", "CPU"), True, False, "Reference"),                # students only: Reference's step is cheaper
    (("Reference",), False, False, "Reference"),
])
def test_openmm_platform_rule(available, students_only, cuda, want):
    assert openmm_platform_name(available, students_only, cuda=cuda) == want


def test_components_place_models_by_the_rule(tmp_path):
    here = resolve_device()
    assert MorseTeacher().device == here
    path = export_student(make_student(), tmp_path / "s.pt")
    assert StudentFile(path).device == here
    assert StudentFile(path, device="cpu").device == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA device"):
            StudentFile(path, device="cuda")
