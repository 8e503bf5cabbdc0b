"""Whole-hand radiographs: find the finger joints, cut matching crops at every visit."""

from .types import JOINT_NAMES, MCP_JOINTS, Hand, Joint

__all__ = ["JOINT_NAMES", "MCP_JOINTS", "Hand", "Joint"]
