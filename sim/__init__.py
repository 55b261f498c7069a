"""Zima in MuJoCo: robot model, scenes, scripted demonstrations and evaluation.

Modules, in reading order: ``robot`` (the robot's MJCF and its track/encoder arithmetic),
``scenes`` (the scene registry and the MJCF of a whole world), ``randomize`` (domain
randomisation from a seed), ``effects`` (camera image effects), ``env`` (:class:`ZimaEnv`,
the task and its success test), ``expert`` (the scripted demonstrator and its evaluation),
``video`` (the one writer of every film), ``hil`` (hardware in the loop, with
``hil_config``, ``hil_world``, ``hil_cameras``, ``hil_telemetry``, ``hil_arm``), ``cli``
(`zima sim`), ``gym_env`` (the task as the Gymnasium environment ``Zima/FindCube-v0``),
``pick`` and ``pick_expert`` (the pick-up task and its scripted expert).
"""

import os

# MuJoCo picks its OpenGL backend when it is first imported. Without a GPU only Mesa's
# software EGL renders offscreen here (OSMesa did not work; ARCHITECTURE.md, decision 8).
# A user who exports MUJOCO_GL themselves keeps their choice.
os.environ.setdefault("MUJOCO_GL", "egl")

# Gymnasium comes with the operator's `ecosystem` extra, not the robot's: register the task
# only where it is installed. The entry point is a string, so MuJoCo loads at gymnasium.make.
try:
    import gymnasium
except ImportError:
    pass
else:
    if "Zima/FindCube-v0" not in gymnasium.registry:
        gymnasium.register(id="Zima/FindCube-v0", entry_point="zima.sim.gym_env:FindCubeEnv")
