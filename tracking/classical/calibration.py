"""Per-proposer score calibration of the classical backend (see :mod:`memstream.tracking.classical.proposers`).

``CALIBRATION[proposer] = (a, b_score, b_raw, b_agree)``: ``logit P(IoU > 0.5) = a + b_score s + b_raw raw
+ b_agree agree`` of a candidate whose verified match score is ``s``, whose proposer's own confidence is
``raw`` and on which ``agree`` other proposers put a box (IoU > 0.5). ``CALIBRATION["reference"] =
(a, b)``: the template matcher's own line at ``agree = 0`` (its ``a`` and ``b_score``), the scale every
candidate is written back onto, so a template peak no other proposer agrees with keeps its score.

Written by ``benchmarks/fit_classical_calibration.py``; the data it was fitted on is in ``FIT``. Tuning data
only: game footage seeds 300-310 (``make_game_footage.py --first-seed 300``) and synthetic seeds 0-1; the
benchmarks evaluate on game seeds 100-112 and synthetic seeds 10-14. The trace was collected with the
backend as it stood while the proposers were being built (all four proposers always on); the cascade
(followers join only when the template alone reports absent), ``follower_lift``, the prompt-fitted mask
threshold and ``follower_memory_gate`` came after, and the fit has not been repeated under them.
"""

from __future__ import annotations

CALIBRATION: dict[str, tuple[float, ...]] = {'colour': (-6.8977, 1.7447, -0.2639, 3.0467),
 'correlation': (-4.9357, 1.7106, -0.0, 1.7062),
 'flow': (-6.6222, 3.7995, -1.3983, 2.5088),
 'reference': (-7.8123, 6.2541),
 'template': (-7.8123, 6.2541, 0.0, 1.7149),
 'colour/affinity': (-4.0435, 7.7728, -0.5939),
 'correlation/affinity': (-3.3818, 5.2333, -0.0),
 'flow/affinity': (-6.0289, 7.2178, 2.0728),
 'reference/affinity': (-9.9182, 13.0011),
 'template/affinity': (-9.9182, 13.0011, 0.0)}

FIT: dict[str, object] = {'fitted': True,
 'game_sequences': ['basic-306',
                    'basic-310',
                    'defend_the_center-300',
                    'defend_the_center-304',
                    'defend_the_center-308',
                    'defend_the_line-307'],
 'synthetic_presets': ['distractors', 'occlusion', 'fast_motion', 'camera_motion'],
 'synthetic_seeds': '0-1',
 'codecs': ['raw', 'crf18'],
 'label': 'IoU with the ground truth > 0.5',
 'l2': 1.0,
 'round': 1,
 'samples': {'colour': {'samples': 412, 'positives': 199},
             'correlation': {'samples': 222, 'positives': 71},
             'flow': {'samples': 1447, 'positives': 1033},
             'template': {'samples': 43029, 'positives': 806}}}
