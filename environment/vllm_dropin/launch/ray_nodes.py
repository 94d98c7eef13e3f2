"""What the Ray cluster has alive, asked in vLLM's Python where Ray lives
(`<vLLM's python> -m vllm_dropin.launch.ray_nodes count|watch N`, RAY_ADDRESS set).

  count    one JSON line {"nodes": N, "gpus": G}: the supervisor polls it until every node joined.
  watch N  a supervised child while serving: once a node it saw leaves (or fewer than N are alive)
           it prints one line naming the nodes that left and exits 1. vLLM's workers on a lost node
           are gone and an idle engine would not notice until its next request; this stops the
           deployment at once, naming the node, so the platform restarts the group.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence

WATCH_S = 2.0
LOST = "RayNodeError: "  # the line's start: the supervisor's failure summary reads it as the cause


def alive(nodes: Sequence[Mapping]) -> dict[str, Mapping]:
    """Alive nodes by node id (ray.nodes() keeps dead ones, marked)."""
    return {n["NodeID"]: n for n in nodes if n.get("Alive")}


def census(nodes: Sequence[Mapping]) -> dict[str, int]:
    living = alive(nodes).values()
    return {"nodes": len(living), "gpus": int(sum(n.get("Resources", {}).get("GPU", 0) for n in living))}


def lost_line(known: Mapping[str, Mapping], nodes: Sequence[Mapping], needed: int) -> str | None:
    """The error line once a `known` node is no longer alive (vLLM's workers there are gone, whoever
    joins instead) or fewer than `needed` nodes are."""
    living = alive(nodes)
    gone = sorted(n.get("NodeManagerAddress", node_id) for node_id, n in known.items() if node_id not in living)
    if not gone and len(living) >= needed:
        return None
    who = ", ".join(gone) or "a node"
    return f"{LOST}Ray node {who} left the cluster: {len(living)} of {max(needed, len(known))} nodes alive"


def _nodes() -> list[dict]:
    import ray  # only in vLLM's Python; the supervisor's Python may not have it

    if not ray.is_initialized():
        ray.init(address="auto", logging_level="ERROR", log_to_driver=False)
    return ray.nodes()


def watch(needed: int) -> int:
    known = alive(_nodes())
    # Stopped with the deployment: exit quietly (Ray's own handler would log a stack as if it crashed).
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    while True:
        try:
            nodes = _nodes()
        except Exception as exc:  # the head itself gone: as fatal as a node, said as such
            print(f"{LOST}the Ray head is unreachable ({type(exc).__name__}: {exc})", flush=True)
            return 1
        line = lost_line(known, nodes, needed)
        if line is not None:
            print(line, flush=True)
            return 1
        known.update(alive(nodes))
        time.sleep(WATCH_S)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="ray_nodes")
    sub = p.add_subparsers(dest="what", required=True)
    sub.add_parser("count")
    sub.add_parser("watch").add_argument("needed", type=int)
    args = p.parse_args(argv)
    if args.what == "count":
        print(json.dumps(census(_nodes())), flush=True)
        return 0
    return watch(args.needed)


if __name__ == "__main__":
    sys.exit(main())
