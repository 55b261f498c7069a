"""Zima in MuJoCo: robot model, scenes, scripted demonstrations and evaluation."""
