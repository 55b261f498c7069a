"""The pick-up task (zima.sim.pick) and its scripted expert (zima.sim.pick_expert), in
MuJoCo: the free cube, the binned arm jog, the success rule, the failure classes, and the
expert on a handful of seeds (its held-out figures: `zima sim pick-expert`)."""

import math
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zima.contract import DEFAULT, Action
from zima.episodes import Outcome
from zima.onboard.arm_policy import JOG_LIMITS
from zima.onboard.arm_poses import GRIPPER_MAX_OPENING_M
from zima.onboard.kinematics import ARM, ToolPose
from zima.sim.env import EnvConfig
from zima.sim.pick import (
    ARM_DIMS,
    ARM_HOLD,
    HOLD_BIN,
    JOG_LEVELS,
    ArmAction,
    PickConfig,
    PickEnv,
    PickFailure,
)
from zima.sim.pick_expert import (
    GRASP_PITCH_RAD,
    Phase,
    PickExpert,
    PickExpertConfig,
    evaluate_pick_expert,
    jog_toward,
    run_pick_episode,
    square_roll,
)

FAST = PickConfig(env=EnvConfig(render=False, time_limit_s=50.0))


@pytest.fixture
def env() -> Iterator[PickEnv]:
    made = PickEnv("arena", FAST)
    yield made
    made.close()


def test_a_cube_wider_than_the_open_gripper_is_refused() -> None:
    with pytest.raises(ValueError, match="narrower than the open gripper"):
        PickConfig(cube_m=0.057)  # the find task's cube
    assert PickConfig().cube_m < GRIPPER_MAX_OPENING_M


def test_arm_actions_are_bins_of_the_consoles_jog() -> None:
    assert ARM_HOLD.velocity() == (0.0,) * ARM_DIMS
    with pytest.raises(ValueError, match="bins"):
        ArmAction((HOLD_BIN,) * (ARM_DIMS - 1))
    with pytest.raises(ValueError, match="bins"):
        ArmAction((len(JOG_LEVELS),) + (HOLD_BIN,) * (ARM_DIMS - 1))
    fast_x = ArmAction((len(JOG_LEVELS) - 1,) + (HOLD_BIN,) * (ARM_DIMS - 1))
    assert fast_x.velocity()[0] == JOG_LIMITS[0]
    assert ArmAction.nearest(fast_x.velocity()) == fast_x


@given(st.tuples(*[st.integers(0, len(JOG_LEVELS) - 1)] * ARM_DIMS))
def test_an_arm_actions_velocity_bins_back_to_itself(bins: tuple[int, ...]) -> None:
    action = ArmAction(bins)
    assert ArmAction.nearest(action.velocity()) == action


@settings(max_examples=200)
@given(st.floats(-1.4, 1.4), st.floats(-math.pi, math.pi), st.floats(0.14, 0.2))
def test_square_roll_closes_the_fingers_across_two_faces(heading: float, cube_yaw: float,
                                                         reach_m: float) -> None:
    roll = square_roll(heading, cube_yaw)
    assert abs(roll) <= math.pi / 4 + 1e-12
    pose = ToolPose(reach_m * math.cos(heading), reach_m * math.sin(heading), -0.06,
                    GRASP_PITCH_RAD, roll)
    _, rot = ARM.fk(ARM.ik(pose, (heading, 0.9, -0.2, 0.9, 0.0)))
    closing_yaw = math.atan2(rot[1, 1], rot[0, 1])  # the hand's y axis: the fingers close on it
    assert abs(math.remainder(closing_yaw - cube_yaw, math.pi / 2)) < 1e-6


def test_the_cube_is_free_on_the_floor_and_the_arm_jogs(env: PickEnv) -> None:
    obs = env.reset(3)
    assert obs.images is None
    assert obs.arm_history.shape == (DEFAULT.action_history, ARM_DIMS)
    for _ in range(5):
        env.step(Action.STOP)
    assert abs(env.world.cube_bottom_m()) < 1e-3  # rests on the floor (it collides with it)
    assert not env.world.held()
    start = env.tool
    up = ArmAction((HOLD_BIN, HOLD_BIN, len(JOG_LEVELS) - 1) + (HOLD_BIN,) * 3)
    result = env.step(Action.STOP, up)
    assert not result.arm_refused
    assert env.tool.z == pytest.approx(start.z + JOG_LIMITS[2] / DEFAULT.control_hz)
    assert result.observation.arm_history[-1].tolist() == list(up.bins)
    # Far beyond reach: the step is refused and the commanded pose holds.
    away = ArmAction((len(JOG_LEVELS) - 1,) + (HOLD_BIN,) * (ARM_DIMS - 1))
    for _ in range(40):
        result = env.step(Action.STOP, away)
    assert result.arm_refused
    assert env.tool.x < 0.4


def test_jog_toward_picks_the_nearest_step() -> None:
    dt = 1 / DEFAULT.control_hz
    action = jog_toward((0.02, -0.003, 0.0, 0.0, 0.0, -0.005), dt)
    assert action.bins == (4, 1, HOLD_BIN, HOLD_BIN, HOLD_BIN, 0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_expert_picks_the_cube_up(env: PickEnv, seed: int) -> None:
    result = run_pick_episode(env, seed)
    assert result.outcome is Outcome.SUCCESS, result
    assert result.failure is None
    assert result.grasps >= 1
    assert env.world.cube_bottom_m() >= env.config.lift_m
    assert env.world.held()


def test_same_seed_same_episode(env: PickEnv) -> None:
    assert run_pick_episode(env, 4) == run_pick_episode(env, 4)


def test_a_cube_let_go_in_the_air_is_dropped() -> None:
    env = PickEnv("arena", replace(FAST, env=replace(FAST.env, time_limit_s=30.0)))
    try:
        expert = PickExpert(env)
        env.reset(0)
        expert.reset(0)
        refused = False
        while not (expert.phase is Phase.LIFT and env.world.cube_bottom_m() > 0.02):
            drive, arm = expert.act(refused)
            result = env.step(drive, arm)
            refused = result.arm_refused
            assert not result.done, result
        open_wide = ArmAction((HOLD_BIN,) * (ARM_DIMS - 1) + (len(JOG_LEVELS) - 1,))
        result = env.step(Action.STOP, open_wide)
        while not result.done:
            result = env.step(Action.STOP, open_wide)
        assert result.outcome is Outcome.TIMEOUT
        assert result.failure is PickFailure.DROPPED
        assert env.world.cube_bottom_m() < 1e-3
    finally:
        env.close()


def test_standing_still_is_never_found_or_a_timeout() -> None:
    env = PickEnv("arena", replace(FAST, env=replace(FAST.env, time_limit_s=1.0)))
    try:
        env.reset(0)
        result = env.step(Action.STOP)
        while not result.done:
            result = env.step(Action.STOP)
        assert result.outcome is Outcome.TIMEOUT
        expected = PickFailure.TIMEOUT if env.world.target_seen else PickFailure.NEVER_FOUND
        assert result.failure is expected
    finally:
        env.close()


def test_the_rendered_task_matches_the_contract() -> None:
    env = PickEnv("arena", PickConfig(env=EnvConfig(time_limit_s=5.0)))
    try:
        obs = env.reset(0)
        assert obs.images is not None
        assert obs.images.shape == DEFAULT.image_shape
        result = env.step(Action.LEFT, ARM_HOLD)
        images = result.observation.images
        assert images is not None
        assert images.shape == DEFAULT.image_shape
        assert np.isfinite(images).all()
    finally:
        env.close()


def test_the_report_names_the_wilson_interval() -> None:
    report = evaluate_pick_expert("arena", 1, 0)
    assert report.successes == 1
    assert "1/1 = 100.0% (95 % Wilson 20.7%..100.0%)" in report.text()


def test_the_expert_opens_the_gripper_wide_while_driving(env: PickEnv) -> None:
    expert = PickExpert(env)
    env.reset(0)
    expert.reset(0)
    start = env.opening_m
    assert start < GRIPPER_MAX_OPENING_M  # the stowed arm is half open
    for _ in range(8):
        drive, arm = expert.act()
        assert expert.phase is Phase.DRIVE
        assert drive is not Action.STOP
        assert arm.bins[:-1] == (HOLD_BIN,) * (ARM_DIMS - 1)  # stowed: the pose holds
        env.step(drive, arm)
    assert env.opening_m == pytest.approx(GRIPPER_MAX_OPENING_M)
    _, arm = expert.act()
    assert arm.bins[-1] == HOLD_BIN  # wide open: held there


def test_labelling_a_policys_search_keeps_turning_the_way_the_robot_turns(
        env: PickEnv) -> None:
    # A DAgger label must be one the policy can see the reason for: where the cube is out
    # of view, the expert's per-episode search direction is not; the robot's last turn is.
    # (The pick expert once ignored it: a quarter of its DAgger labels turned against the
    # robot's last turn, and the policy trained on them dithered where it saw no cube.)
    for seed in range(20):
        env.reset(seed)
        if not env.world.target_in_view("forward"):
            break
    else:
        pytest.fail("no seed starts with the cube out of view")
    expert = PickExpert(env, labelling=True)
    expert.reset(seed)
    search = expert.driver.search
    other = Action.RIGHT if search is Action.LEFT else Action.LEFT
    assert expert.act()[0] is search  # its own episode: its own direction
    assert expert.act(last_action=other)[0] is other  # the robot turns the other way: on
    assert expert.act(last_action=Action.FORWARD)[0] is search  # not turning: its own


def test_labelling_a_policy_that_lost_the_cube_searches_again(env: PickEnv) -> None:
    # Seen once, then out of both cameras' views (pushed away, turned from): a policy
    # cannot see where the cube lies, so the label is the search's, not a turn toward it.
    for seed in range(20):
        env.reset(seed)
        if not any(env.world.target_in_view(c) for c in ("forward", "wrist")):
            break
    else:
        pytest.fail("no seed starts with the cube out of both views")
    own, labeller = PickExpert(env), PickExpert(env, labelling=True)
    for expert in (own, labeller):
        expert.reset(seed)
        expert.driver.acquired = True  # as if it had been seen before
    toward = Action.LEFT if env.world.target_bearing_rad() > 0 else Action.RIGHT
    away = Action.RIGHT if toward is Action.LEFT else Action.LEFT
    assert own.act(last_action=away)[0] is toward  # its own episode: it knows where it is
    assert labeller.act(last_action=away)[0] is away  # a policy's: keep turning its way
    assert labeller.act(last_action=Action.FORWARD)[0] is labeller.driver.search


def test_labelling_a_grasp_the_policy_made_early_lifts_it(env: PickEnv) -> None:
    # The expert's phases follow its own actions: where a policy closed the fingers on the
    # cube while the expert would still be reaching, the label is to lift, not to let go.
    expert = PickExpert(env)
    env.reset(0)
    expert.reset(0)
    refused = False
    for _ in range(600):
        drive, arm = expert.act(refused)
        refused = env.step(drive, arm).arm_refused
        if expert.phase is Phase.LIFT and env.world.held():
            break
    else:
        pytest.fail("the expert never held the cube")
    own, labeller = PickExpert(env), PickExpert(env, labelling=True)
    for other in (own, labeller):
        other.reset(0)
        other.phase = Phase.REACH  # as if the policy had grasped before it would have
    _, let_go = own.act()
    assert own.phase is Phase.REACH
    assert let_go.bins[-1] > HOLD_BIN  # its own phases: "open, back to the hover"
    _, lift = labeller.act()
    assert labeller.phase is Phase.LIFT
    assert lift.bins[-1] <= HOLD_BIN  # the fingers stay closed
    assert lift.bins[2] > HOLD_BIN  # and the tool goes up


def test_the_expert_can_still_open_at_the_reach(env: PickEnv) -> None:
    expert = PickExpert(env, PickExpertConfig(open_while_driving=False))
    env.reset(0)
    expert.reset(0)
    _, arm = expert.act()
    assert arm == ARM_HOLD
