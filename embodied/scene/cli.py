"""``memstream query RUN_DIR "where cup"``: ask a run's scene memory (finished or still running).

    memstream query runs/room "where ball"
    memstream query runs/room "last moved cup" --json
    memstream query runs/room "near 0.5,1.2,4 within 1 at 3.5"

The run folder's ``scene.json`` is read (the ``scene`` stage writes it as the run goes); nothing in
the folder is changed. The grammar is :mod:`memstream.embodied.scene.query`'s.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

GRAMMAR_HELP = (
    "where OBJ [at T] | trajectory OBJ [from T0] [to T1] | last moved OBJ | first seen OBJ | "
    "last seen OBJ | visible [at T] | near X,Y,Z|OBJ [within R] [at T] | frames OBJ [K] | objects"
)


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Entry point of the ``memstream.commands`` group."""
    query = sub.add_parser(
        "query",
        help="ask a run's scene memory: where is the cup, when did it last move",
        description=f"Questions: {GRAMMAR_HELP}. OBJ: a name or an id; T: seconds or mm:ss.",
    )
    query.add_argument("run", type=Path, help="the --out folder of a run with the scene stage")
    query.add_argument("question", nargs="+", help='e.g. "where cup" or "last moved cup"')
    query.add_argument("--json", action="store_true", help="print the answer as JSON (the query's result)")
    query.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    query.set_defaults(handler=cmd_query)


def cmd_query(args: argparse.Namespace) -> int:
    from memstream.embodied.scene.query import ask
    from memstream.embodied.scene.stage import load_scene

    memory = load_scene(args.run)
    answer = ask(memory, " ".join(args.question))
    print(json.dumps(answer.as_dict(), indent=2) if args.json else answer.text)
    return 0
