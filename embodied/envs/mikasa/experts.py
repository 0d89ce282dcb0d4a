"""Scripted experts for the MIKASA-Robo tasks, from privileged simulator state (pure numpy).

Actions are the suite's ``pd_ee_delta_pose``: float32 (7,) in [-1, 1], ``[dx, dy, dz, drx, dry, drz,
gripper]``; a position component of 1 asks for 0.1 m in the robot base frame (whose axes are the
world's: the Panda's base sits at (-0.615, 0, 0) unrotated); a rotation component of 1 asks for
0.1 rad about the hand's axes (its z points down). The gripper keeps pointing down (the intercept
expert only turns it about the vertical); gripper -1 closes the fingers (a narrow tip).

* RememberColor: the expert knows the colour shown (``true_color_indices``) and where each cube is.
  During the cue and empty phases the suite freezes actions anyway; afterwards it flies to
  :data:`TOUCH_HEIGHT_M` above the target cube's centre along a cone and holds still (success
  needs the tip within 5 cm of the cube and joint speeds under 0.2).
* Intercept: the expert knows the ball's position and velocity and the goal's position. It puts
  the hand on the rolling ball's path and *catches* it (gives way along the ball's motion just
  before the contact, so the ball stops instead of bouncing back out of reach), turns the fingers'
  flat faces to the goal's line (already on the way down), gets :data:`RUN_UP_M` behind the ball on
  that line and runs up along it into the ball, and pushes again until the ball's path crosses the
  goal circle (the suite's success: the centre inside it at any step). Measured: 100 / 100 episodes
  (seeds 0-99, cameras off). The run-up spreads the push over ~4 steps: the expert before stop 41
  kicked from 5 cm behind in one step (50 / 50), and a policy trained on its demonstrations fired
  that kick a step early or at 0.6 of its strength (benchmarks/MIKASA.md).

Example:
    >>> a = remember_color_action(np.array([0.0, 0.0, 0.3]), np.array([0.1, 0.0, 0.02]))
    >>> a.shape, bool(a[0] > 0), float(a[6])
    ((7,), True, -1.0)
"""

from __future__ import annotations

import numpy as np

STEP_M = 0.1  # pd_ee_delta_pose: metres asked for by an action component of 1
CONTROL_DT_S = 0.05  # the suites' 20 Hz control
CRUISE_Z_M = 0.10
OBJECT_CENTRE_Z_M = 0.02  # the suite's cubes (half size 0.02 m) and balls (radius 0.02 m) rest with their centre here
# tip above the cube's centre (half size 0.02 m; success within 0.05 m of it). 2.8 cm, 0.8 cm over the
# top face: the expert succeeds on 30 / 30 RememberColor3 and RememberColor9 seeds at 2.5-3.5 cm and
# 28 / 30 at 2.2 (the fingers press the cube). Stop 38 lowered it from 3.5 cm: trained policies stop
# 0-2 cm above their demonstrations' height and spread 2-4 cm horizontally (std), and the 5 cm
# sphere leaves 3.6 cm of horizontal room at 3.5 cm, 4.2 at 2.8 (benchmarks/MIKASA.md).
TOUCH_HEIGHT_M = 0.028
CONE_LIFT_M = 0.08
ALIGN_TOL_M = 0.02
BALL_RADIUS_M = 0.02
TIP_Z_M = 0.025
# the push: the tip lines up RUN_UP_M behind the ball on the goal's line, then runs along the line at
# PUSH_SPEED (an action component, 1 = 0.1 m a step asked for) while it stays within LINE_TOL_M of it,
# steering its sideways error out with LINE_GAIN. Measured on seeds 0-99 (cameras off,
# benchmarks/diag_mikasa_push.py expert): run-up 0.11 m 1.00 (3.8 push steps), 0.14 m 0.97 (4.6),
# 0.08 m 1.00 (2.8), 0.05 m 0.96 (1.7); speed 0.7 at 0.14 m 0.92; a draft without the steering (aiming
# through a point beyond the ball) 0.88 of 50 at 0.11 m.
RUN_UP_M = 0.11
PUSH_SPEED = 0.8
LINE_TOL_M = 0.015
LINE_GAIN = 2.5
# low beside or behind the ball but off the run-up point (a hand that came down a few centimetres off
# the goal's line): slide there on the table when the straight way keeps this far from the ball's
# centre (ball radius 0.02 m + the closed fingers' half width ~0.01 m + margin); otherwise lift and
# pass over. Before stop 50 every such miss lifted the hand, passed over and came down again, and
# DAgger taught the policies those lifts from the states they reach; the expert's own success is the
# same either way (100 / 100), and one DAgger round of the slide's labels beside five older rounds did
# not lift the policy (benchmarks/MIKASA.md, stop 50).
LOW_CLEAR_M = 0.055
BLOCK_Y_M = -0.55  # the farthest the hand reaches down the ball's path in time
BLOCK_Y_MAX_M = -0.30  # every goal lies beyond it
BLOCK_STEP = 20  # the hand is down on the path by then
YAW_TOL_RAD = 0.08
ROT_STEP_RAD = 0.1  # pd_ee_delta_pose: radians asked for by a rotation component of 1
MOVING_M_S = 0.08
KICK_TOL_M = 0.012  # how far past the run-up point the push may start
CLOSED = -1.0
CONTACT_M = 0.037  # tip-to-ball-centre distance when the closed fingers touch the ball (measured)
CATCH_LEAD_STEPS = 2.0  # the hand starts giving way this many steps before the contact
CATCH_RATIO = 0.45  # of the ball's speed: e / (1 + e) for the measured restitution e ~ 0.8
LAG_GAIN = 2.5  # the arm covers ~0.4 of a commanded delta per step: command 1 / 0.4 of a wanted move
LEAD_STEPS = 3.0  # the ball's position is predicted this many steps ahead when aiming a push
GOAL_RADIUS_M = 0.1  # the suite's GOAL_RADIUS
COURSE_MARGIN_M = 0.04
MIN_COURSE_SPEED_M_S = 0.1
EPISODE_STEPS = 60


def _move(tcp: np.ndarray, target: np.ndarray, gain: float = 1.0) -> np.ndarray:
    delta = np.clip(gain * (np.asarray(target, float) - np.asarray(tcp, float)) / STEP_M, -1.0, 1.0)
    return np.concatenate([delta, np.zeros(3), [CLOSED]]).astype(np.float32)


def remember_color_action(tcp_xyz: np.ndarray, cube_xyz: np.ndarray) -> np.ndarray:
    """float32 (7,): one step toward touching the cube at ``cube_xyz`` (its centre, metres).

    The tip flies straight at a point above the cube whose height shrinks with the horizontal
    distance left (a cone, so it never sweeps the neighbouring cubes), then stops
    :data:`TOUCH_HEIGHT_M` above the centre: fingers clear the top face, the tip is within 5 cm.
    """
    tcp, cube = np.asarray(tcp_xyz, float), np.asarray(cube_xyz, float)
    left_m = float(np.linalg.norm(tcp[:2] - cube[:2]))
    lift = 0.0 if left_m < ALIGN_TOL_M else min(left_m, CONE_LIFT_M)
    return _move(tcp, cube + np.array([0.0, 0.0, TOUCH_HEIGHT_M + lift]))


def intercept_action(tcp_xyz: np.ndarray, ball_xyz: np.ndarray, ball_velocity: np.ndarray,
                     goal_xyz: np.ndarray, hand_y_axis: np.ndarray, step: int) -> np.ndarray:
    """float32 (7,): one step of stopping the rolling ball and pushing it through the goal zone.

    Inputs are metres and m/s in the world frame: the tip, the ball's centre and velocity, the
    goal's centre; ``hand_y_axis`` is the hand's y axis in the world (the closed fingers' flat
    faces point along it: a push with them sends the ball along it), ``step`` the episode's step.

    The suite counts a success when the ball's centre is inside the goal circle at any step, so:

    0. The ball's path already crosses the goal circle (:func:`on_course`) with time to get there:
       lift away and leave it alone.
    1. The ball rolls in (+y): put the hand on its path where the ball will be at step
       :data:`BLOCK_STEP` (no nearer than :data:`BLOCK_Y_M`), then *catch* it: just before the
       contact the hand gives way along +y at :data:`CATCH_RATIO` of the ball's speed, so the ball
       does not bounce back off a rigid hand out of reach (restitution ~0.8).
    2. Otherwise (still, slow, or rolling off line): turn the finger faces toward the goal's line,
       go :data:`RUN_UP_M` behind where the ball will be on that line (sliding there on the table
       when the hand is down and the straight way clears the ball, :func:`low_path_clear`; over the
       ball when it is in the way), come down, and run along the line into the ball at
       :data:`PUSH_SPEED`, steering back onto the line while within :data:`LINE_TOL_M` of it. The
       push is scaled as one vector (per-axis clipping turned diagonal kicks off line). If the ball
       still misses, the next steps come back to step 2 and push again.
    """
    tcp, ball = np.asarray(tcp_xyz, float), np.asarray(ball_xyz, float)
    velocity, goal = np.asarray(ball_velocity, float)[:2], np.asarray(goal_xyz, float)
    if on_course(ball, velocity, goal, step):
        return _move(tcp, np.array([tcp[0], tcp[1], CRUISE_Z_M]))
    if ball_rolls_in(tcp, ball, velocity):
        planned_y = ball[1] + velocity[1] * CONTROL_DT_S * max(BLOCK_STEP - step, 0)
        block_y = float(np.clip(planned_y, BLOCK_Y_M, BLOCK_Y_MAX_M))
        cross_x = ball[0] + velocity[0] * (tcp[1] - ball[1]) / velocity[1]
        down = tcp[2] < TIP_Z_M + 0.02 and abs(tcp[0] - cross_x) < 0.03
        if down:
            gap_steps = (tcp[1] - ball[1] - CONTACT_M) / (velocity[1] * CONTROL_DT_S)
            if gap_steps < CATCH_LEAD_STEPS:  # give way: the ball lands on a hand moving with it
                give = CATCH_RATIO * velocity[1] * CONTROL_DT_S * LAG_GAIN
                return _move(tcp, np.array([cross_x, tcp[1] + give, TIP_Z_M]))  # no turn while catching
            block_y = tcp[1]  # down on the path already: wait there
        cross_x = ball[0] + velocity[0] * (block_y - ball[1]) / velocity[1]
        action = _descend_to(tcp, np.array([cross_x, block_y]))
        # turn the faces toward the goal's line from the block point already (the arm turns slowly)
        to_goal = goal[:2] - np.array([cross_x, block_y])
        action[5] = np.clip(-_yaw_error(np.asarray(hand_y_axis, float), to_goal) / ROT_STEP_RAD, -1.0, 1.0)
        return action
    ahead = ball[:2] + velocity * CONTROL_DT_S * LEAD_STEPS  # where the ball will be when the hand gets there
    to_goal = goal[:2] - ahead
    d = to_goal / max(float(np.linalg.norm(to_goal)), 1e-6)
    turn = _yaw_error(np.asarray(hand_y_axis, float), d)
    behind = ahead - d * RUN_UP_M
    aligned = abs(turn) < YAW_TOL_RAD
    low = tcp[2] < TIP_Z_M + 0.015
    to_ball = ahead - tcp[:2]
    along = float(to_ball @ d)
    sideways = to_ball - along * d  # the tip's offset from the goal's line, as the move that removes it
    if aligned and low and float(np.linalg.norm(sideways)) < LINE_TOL_M and CONTACT_M - 0.02 < along < RUN_UP_M + KICK_TOL_M:
        push = d * PUSH_SPEED + sideways * LINE_GAIN / STEP_M  # run along the line, steering back onto it
        push = push / max(1.0, float(np.abs(push).max()))  # one scale for both axes: the direction stays
        action = np.concatenate([push, [(TIP_Z_M - tcp[2]) / STEP_M], np.zeros(3), [CLOSED]]).astype(np.float32)
        action[5] = -turn / ROT_STEP_RAD
        return np.clip(action, -1.0, 1.0)
    wrong_side = float((tcp[:2] - ahead) @ d) > -RUN_UP_M * 0.5
    far = float(np.linalg.norm(tcp[:2] - behind)) > ALIGN_TOL_M
    if low and far and low_path_clear(tcp[:2], behind, ahead):
        action = _move(tcp, np.array([*behind, TIP_Z_M]))  # slide there low: a miss of the line put right in place
    elif low and wrong_side and far:  # on the goal side of the ball (or beside it): pass over it, not through it
        action = _move(tcp, np.array([tcp[0], tcp[1], CRUISE_Z_M]))
    elif aligned or low:
        action = _descend_to(tcp, behind)  # low and not yet turned: stays low near the point, turning
    else:
        action = _move(tcp, np.array([*behind, CRUISE_Z_M]))  # over the point, waiting for the turn
    action[5] = np.clip(-turn / ROT_STEP_RAD, -1.0, 1.0)  # the action turns about the hand's z, which points down
    return action


def low_path_clear(tip_xy: np.ndarray, target_xy: np.ndarray, ball_xy: np.ndarray) -> bool:
    """Whether the tip can slide on the table straight from ``tip_xy`` to ``target_xy`` without
    touching the ball at ``ball_xy``: the path comes no nearer the ball's centre than
    :data:`LOW_CLEAR_M`, or than the tip is now (backing away from a ball it touches is clear)."""
    tip, target, ball = (np.asarray(v, float)[:2] for v in (tip_xy, target_xy, ball_xy))
    path = target - tip
    t = float(np.clip((ball - tip) @ path / max(float(path @ path), 1e-12), 0.0, 1.0))
    closest = float(np.linalg.norm(tip + t * path - ball))
    return closest >= min(LOW_CLEAR_M, float(np.linalg.norm(tip - ball)) - 1e-3)


def ball_rolls_in(tcp_xyz: np.ndarray, ball_xyz: np.ndarray, ball_velocity: np.ndarray) -> bool:
    """Whether the ball rolls toward the robot (+y, over :data:`MOVING_M_S`) and is still short of the
    tip by 3 cm: the case where :func:`intercept_action` blocks and catches it."""
    velocity = np.asarray(ball_velocity, float)[:2]
    return bool(np.linalg.norm(velocity) > MOVING_M_S and velocity[1] > MOVING_M_S
                and float(ball_xyz[1]) < float(tcp_xyz[1]) - 0.03)


def on_course(ball_xyz: np.ndarray, ball_velocity: np.ndarray, goal_xyz: np.ndarray, step: int) -> bool:
    """Whether the rolling ball's straight path enters the goal circle (with :data:`COURSE_MARGIN_M`
    to spare) before the episode's time limit (:data:`EPISODE_STEPS`)."""
    velocity = np.asarray(ball_velocity, float)[:2]
    speed = float(np.linalg.norm(velocity))
    if speed < MIN_COURSE_SPEED_M_S:
        return False
    rel = np.asarray(goal_xyz, float)[:2] - np.asarray(ball_xyz, float)[:2]
    along = float(rel @ velocity) / speed
    if along < 0:
        return float(np.linalg.norm(rel)) < GOAL_RADIUS_M - COURSE_MARGIN_M  # inside already
    miss = float(np.linalg.norm(rel - velocity / speed * along))
    reach = GOAL_RADIUS_M - COURSE_MARGIN_M
    if miss > reach:
        return False
    entry = along - np.sqrt(reach ** 2 - miss ** 2)
    return entry / speed < (EPISODE_STEPS - step - 2) * CONTROL_DT_S


def _yaw_error(axis_xy: np.ndarray, d: np.ndarray) -> float:
    """Radians to turn about +z so the line of ``axis_xy`` (either sign) points along ``d``."""
    error = float(np.arctan2(d[1], d[0]) - np.arctan2(axis_xy[1], axis_xy[0]))
    return float((error + np.pi / 2) % np.pi - np.pi / 2)


def _descend_to(tcp: np.ndarray, target_xy: np.ndarray) -> np.ndarray:
    """Over ``target_xy`` at cruise height, then down to the tip height (lift first when far and low)."""
    far = np.linalg.norm(tcp[:2] - target_xy) > ALIGN_TOL_M + 0.01
    if far and tcp[2] < CRUISE_Z_M - 0.03:
        return _move(tcp, np.array([tcp[0], tcp[1], CRUISE_Z_M]))
    return _move(tcp, np.array([*target_xy, CRUISE_Z_M if far else TIP_Z_M]))
