"""Documented experiment scripts whose printed figures go into issues and the README."""
