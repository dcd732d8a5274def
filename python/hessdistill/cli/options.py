"""Option types checked at parse time: each raises ``argparse.ArgumentTypeError`` naming what it accepts, and the
command's parser prints that as one line (:class:`OneLineParser`)."""

from __future__ import annotations

import argparse
import math



class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line on stderr (exit status 2), like hessdistill's other errors;
    ``--help`` still shows the usage."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(text: str, kind, what: str):
    try:
        value = kind(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from exc
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return value


def _at_least(kind, low, strict: bool, what: str):
    """An option type: a number of ``kind`` above ``low`` (``strict``) or at least ``low``."""

    def parse(text: str):
        value = _number(text, kind, what)
        if value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


def finite_float(text: str) -> float:
    return _number(text, float, "a finite number")


positive_float = _at_least(float, 0, True, "a number > 0")
nonnegative_float = _at_least(float, 0, False, "a number >= 0")
positive_int = _at_least(int, 1, False, "a whole number >= 1")
nonnegative_int = _at_least(int, 0, False, "a whole number >= 0")


def rows(text: str):
    """``full`` or a whole number >= 1 of Hessian rows."""
    if text == "full":
        return "full"
    try:
        value = int(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected 'full' or a whole number >= 1, got {text!r}") from exc
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 'full' or a whole number >= 1, got {text!r}")
    return value


def fractions(text: str) -> tuple:
    """Three comma-separated non-negative numbers summing to 1 (train,val,test)."""
    try:
        values = tuple(float(x) for x in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or not all(math.isfinite(v) and v >= 0 for v in values) or abs(sum(values) - 1) > 1e-6:
        raise argparse.ArgumentTypeError(f"expected three fractions train,val,test >= 0 summing to 1 (0.8,0.1,0.1), "
                                         f"got {text!r}")
    return values


def temperatures(text: str) -> list:
    """K, or a comma list of K, each > 0."""
    try:
        values = [float(t) for t in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(t) and t > 0 for t in values):
        raise argparse.ArgumentTypeError(f"expected a temperature > 0 K or a comma list of them (300,600), got "
                                         f"{text!r}")
    return values


def device(text: str) -> str:
    """cpu, cuda or cuda:N; cuda only where torch sees a GPU."""
    if text != "cpu" and text != "cuda" and not (text.startswith("cuda:") and text[5:].isdigit()):
        raise argparse.ArgumentTypeError(f"expected cpu, cuda or cuda:N, got {text!r}")
    if text.startswith("cuda"):
        from ..devices import cuda_available

        if not cuda_available():
            raise argparse.ArgumentTypeError(f"{text}: no CUDA device is available here; use cpu")
    return text


def duration(text: str) -> str:
    """A positive duration: 90s, 30m, 1.5h (a bare number is seconds)."""
    from ..distill.config import parse_duration
    from ..errors import ConfigError

    try:
        parse_duration(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(f"expected a positive duration like 90s, 30m or 2h, got {text!r}") from exc
    return text


def student_sizes(text: str) -> list:
    """A comma list of student sizes FEATURESxLAYERS[bBASIS][@CUTOFF] (:func:`hessdistill.distill.sizes.parse_sizes`)."""
    from ..distill.sizes import parse_sizes
    from ..errors import ConfigError

    try:
        return parse_sizes(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc
