"""Zima in the robot-learning ecosystem: LeRobot datasets both ways and the rerun viewer.

Nothing here runs on the robot; the `ecosystem` extra brings pyarrow, PyAV, rerun and Gymnasium.
"""
