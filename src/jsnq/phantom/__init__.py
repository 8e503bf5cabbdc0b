"""Synthetic radiographs with known motions, for tests and benchmarks.

Each phantom keeps sampling apart from rendering: ``sample_params(rng)`` draws every random
number into a frozen parameter object, and ``render(params)`` turns it deterministically into
images with their ground truth.

* :mod:`jsnq.phantom.joint`: one MCP joint crop at two visits, with a known narrowing;
  :func:`apply_bone_motions` moves the bones of a real crop.
"""

from .joint import PhantomPair, PhantomParams, apply_bone_motions, make_pair, render, sample_params, side_weight

__all__ = ["PhantomParams", "PhantomPair", "sample_params", "render", "make_pair", "apply_bone_motions",
           "side_weight"]
