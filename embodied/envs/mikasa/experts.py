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
* Intercept: the expert knows the ball's position and velocity and the goal's position. It stops
  the rolling ball with the hand, turns the fingers' flat faces to the goal's line, gets behind
  the ball on that line and kicks it through the zone. Measured: 80 % of 20 episodes (failures:
  the ball bounces back off the hand out of reach, or the turn, ~0.04 rad per step, comes late).

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
TOUCH_HEIGHT_M = 0.035  # tip above the cube's centre (half size 0.02 m; success within 0.05 m)
CONE_LIFT_M = 0.08
ALIGN_TOL_M = 0.02
BALL_RADIUS_M = 0.02
TIP_Z_M = 0.025
BEHIND_M = 0.05  # tip behind the ball centre before a kick (radius 0.02 + half the closed fingers)
BLOCK_Y_M = -0.55  # the farthest the hand reaches down the ball's path in time
BLOCK_Y_MAX_M = -0.30  # every goal lies beyond it
BLOCK_STEP = 20  # the hand is down on the path by then
YAW_TOL_RAD = 0.08
ROT_STEP_RAD = 0.1  # pd_ee_delta_pose: radians asked for by a rotation component of 1
MOVING_M_S = 0.08
KICK_TOL_M = 0.02
KICK_THROUGH_M = 0.15
KICK_GAIN = 2.0
CLOSED = -1.0


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
    """float32 (7,): one step of stopping the rolling ball and kicking it through the goal zone.

    Inputs are metres and m/s in the world frame: the tip, the ball's centre and velocity, the
    goal's centre; ``hand_y_axis`` is the hand's y axis in the world (the closed fingers' flat
    faces point along it: a push with them sends the ball along it), ``step`` the episode's step.

    1. The ball rolls toward +y: put the hand on its path where the ball will be at step
       :data:`BLOCK_STEP` (no nearer than :data:`BLOCK_Y_M`); it stops there.
    2. The ball is (nearly) still: turn the finger faces toward the goal's line, lift, move
       :data:`BEHIND_M` behind the ball on that line, come down.
    3. Behind it: drive through its centre toward the goal (a kick; it rolls on with little loss).
    4. The ball rolls toward the goal: lift away.
    """
    tcp, ball = np.asarray(tcp_xyz, float), np.asarray(ball_xyz, float)
    velocity, goal = np.asarray(ball_velocity, float)[:2], np.asarray(goal_xyz, float)
    speed = float(np.linalg.norm(velocity))
    to_goal = goal[:2] - ball[:2]
    d = to_goal / max(float(np.linalg.norm(to_goal)), 1e-6)
    rolling_in = speed > MOVING_M_S and velocity[1] > MOVING_M_S
    if rolling_in and ball[1] < tcp[1] - 0.03:
        planned_y = ball[1] + velocity[1] * CONTROL_DT_S * max(BLOCK_STEP - step, 0)
        block_y = float(np.clip(planned_y, BLOCK_Y_M, BLOCK_Y_MAX_M))
        cross_x = ball[0] + velocity[0] * (tcp[1] - ball[1]) / velocity[1]
        if tcp[2] < TIP_Z_M + 0.02 and abs(tcp[0] - cross_x) < 0.03:
            block_y = tcp[1]  # down on the path already: wait there
        cross_x = ball[0] + velocity[0] * (block_y - ball[1]) / velocity[1]
        return _descend_to(tcp, np.array([cross_x, block_y]))
    if speed > MOVING_M_S and velocity @ d > 0.7 * speed:
        return _move(tcp, np.array([tcp[0], tcp[1], CRUISE_Z_M]))
    turn = _yaw_error(np.asarray(hand_y_axis, float), d)
    behind = ball[:2] - d * BEHIND_M
    aligned = abs(turn) < YAW_TOL_RAD
    if aligned and np.linalg.norm(tcp[:2] - behind) < KICK_TOL_M and tcp[2] < TIP_Z_M + 0.015:
        return _move(tcp, np.array([*(ball[:2] + d * KICK_THROUGH_M), TIP_Z_M]), KICK_GAIN)
    action = _descend_to(tcp, behind) if aligned or tcp[2] > CRUISE_Z_M - 0.03 else \
        _move(tcp, np.array([tcp[0], tcp[1], CRUISE_Z_M]))
    action[5] = np.clip(-turn / ROT_STEP_RAD, -1.0, 1.0)  # the action turns about the hand's z, which points down
    return action


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
