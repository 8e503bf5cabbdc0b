"""Synthetic radiographs with known motions, for tests and benchmarks.

Each phantom keeps sampling apart from rendering: ``sample_params(rng)`` draws every random
number into a frozen parameter object, and ``render(params)`` turns it deterministically into
images with their ground truth.

* :mod:`jsnq.phantom.joint`: one MCP joint crop at two visits, with a known narrowing
  (its parameters, nested as bone shape, texture and acquisition, in :mod:`jsnq.phantom.params`);
  :func:`apply_bone_motions` moves the bones of a real crop.
* :mod:`jsnq.phantom.hand`: a whole hand (19 bones, 14 finger joints) at several visits, with
  known joint positions, global hand motions and per-joint narrowing.
"""

from .hand import HandParams, HandPhantom, make_hand, render_hand, sample_hand_params
from .joint import BLEND_PX, PhantomPair, apply_bone_motions, make_pair, render, side_weight
from .params import Acquisition, BoneShape, PhantomParams, Texture, sample_params

__all__ = ["PhantomParams", "BoneShape", "Texture", "Acquisition", "PhantomPair", "sample_params", "render",
           "make_pair", "apply_bone_motions", "BLEND_PX", "side_weight", "HandParams", "HandPhantom", "sample_hand_params", "render_hand", "make_hand"]
