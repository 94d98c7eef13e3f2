"""Ratios against the targets, a side-by-side table, and a chart of one benchmark run."""

from __future__ import annotations

import statistics
from pathlib import Path

OURS = "our batch path"


def _find(rows: list[dict], path: str, size: int | None = None, launch: int | None = None) -> dict | None:
    return next(
        (r for r in rows if r["path"] == path and size in (None, r["rows"]) and launch in (None, r["launch"])),
        None,
    )


def _ratio(name: str, value: float | None, target: float | None, better: str = "higher") -> dict:
    met = None if value is None or target is None else (value >= target if better == "higher" else value <= target)
    return {"ratio": name, "value": None if value is None else round(value, 3), "target": target, "met": met}


def _launch_ratio(name: str, rows: list[dict], path: str, other: str, size: int, target: float | None) -> list[dict]:
    """path / other in rows/s within each launch that has both, and their median: two launches of
    the same engine can differ more than the paths do, so a ratio never spans launches."""
    per_launch = []
    for launch in sorted({r["launch"] for r in rows}):
        mine, theirs = _find(rows, path, size, launch), _find(rows, other, size, launch)
        if mine and theirs:
            per_launch.append(mine["rows_per_s"] / theirs["rows_per_s"])
    if not per_launch:
        return []
    out = _ratio(name, statistics.median(per_launch), target)
    if len(per_launch) > 1:
        out["ratio"] += f", median of {len(per_launch)} launches"
        out["per_launch"] = ", ".join(f"{v:.3f}" for v in per_launch)
    return [out]


def ratios(results: dict) -> list[dict]:
    out = []
    batch = results["batch"]
    for size in sorted({r["rows"] for r in batch}):
        # the targets in force (bench/README.md)
        for other, target in (("direct client", 1.0), ("offline LLM.chat", 0.95), ("stock DRUM vllm", None)):
            out += _launch_ratio(f"{size} rows: ours / {other} (rows/s)", batch, OURS, other, size, target)
    chat = results["chat"]
    for kind in ("plain", "streamed"):
        drum, direct = f"chat {kind}, through DRUM", f"chat {kind}, direct"
        for size in sorted({r["rows"] for r in chat if r["path"] == drum}):
            out += _launch_ratio(f"{size} {kind} chats: through DRUM / direct", chat, drum, direct, size, 0.97)
    for row in results["standin"]:
        out.append(_ratio(f"stand-in ceiling, {row['rows']} rows (rows/s)", row["rows_per_s"], 3000))
    mem = list(results["memory"].values())
    if len(mem) == 2:
        small, large = mem
        beyond_data = large["peak_rss_mib"] - 2 * large["csv_mib"]  # the prompts in, the same text out
        out.append(
            _ratio(
                "adapter peak RSS: large CSV beyond its data / small CSV",
                beyond_data / small["peak_rss_mib"],
                2.0,
                "lower",
            )
        )
    start = results["startup"]
    for state in ("cold", "warm"):
        ours, bare = start.get(f"our entrypoint ({state})"), start.get(f"bare vllm serve ({state})")
        if ours is not None and bare is not None:
            out.append(_ratio(f"time to ready, {state}: ours - bare vllm serve (s)", ours - bare, 1.0, "lower"))
    cold, bare = start.get("our entrypoint (cold)"), start.get("bare vllm serve (cold)")
    if cold is not None and bare is not None:
        out.append(_ratio("time to ready, cold: ours / bare vllm serve", cold / bare, 1.05, "lower"))
    if cold is not None and "our entrypoint (warm)" in start:
        warm = start["our entrypoint (warm)"]
        out.append(_ratio("restart with a persistent cache_dir: seconds saved", cold - warm, 0.0))
        out.append(_ratio("time to ready, warm / cold (ours)", warm / cold, 0.5, "lower"))
    return out


def _table(rows: list[dict], columns: list[str]) -> list[str]:
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    line = lambda values: "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True))  # noqa: E731
    return [line(columns), line(["-" * w for w in widths]), *(line(row) for row in cells)]


def _order(row: dict) -> tuple:
    return row["rows"], row["launch"]


def _engine_view(batch: list[dict]) -> list[str]:
    """The served runs as vLLM saw them (means per row); wall time less a row's mean time in vLLM is
    what the rows spent outside it plus how far apart they reached it."""
    served = [
        {**r, "seconds_less_vllm_e2e_mean": round(r["seconds"] - r["vllm_e2e_mean_s"], 3)}
        for r in sorted(batch, key=_order)
        if "vllm_e2e_mean_s" in r
    ]
    if not served:
        return []
    columns = ["launch", "path", "rows", "seconds", "vllm_queue_mean_s", "vllm_ttft_mean_s", "vllm_itl_mean_ms"]
    return [
        "",
        "vLLM's view of the served runs (means per row)",
        *_table(served, [*columns, "vllm_e2e_mean_s", "seconds_less_vllm_e2e_mean"]),
    ]


def text(results: dict) -> str:
    meta = results["meta"]
    lines = [
        f"model {meta['model']}  engine args {' '.join(meta['engine_args'])}",
        f"{meta['output_tokens']} output tokens per row (greedy), {meta['concurrency']} rows in flight, "
        f"median of {meta['repeats']} runs, {meta['launches']} launch(es), {meta['host']}",
        "",
    ]
    if results["batch"]:
        columns = ["launch", "path", "rows", "seconds", "rows_per_s", "output_tokens_per_s", "tokens_per_row"]
        columns.append("rows_differing_from_direct")
        lines += ["Batch", *_table(sorted(results["batch"], key=_order), columns)]
        lines += _engine_view(results["batch"])
    if results["chat"]:
        columns = ["launch", "path", "rows", "seconds", "rows_per_s", "client_cpu_s", "chunks"]
        lines += ["", "Chat", *_table(results["chat"], columns)]
    if results["standin"]:
        lines += ["", "Adapter ceiling (instant stand-in upstream, not vLLM)"]
        lines += _table(results["standin"], ["path", "rows", "seconds", "rows_per_s", "rows_not_echoed"])
    if results["memory"]:
        lines += ["", "Adapter memory (fresh DRUM worker per CSV)"]
        lines += _table(
            [{"csv": k, **v} for k, v in results["memory"].items()], ["csv", *next(iter(results["memory"].values()))]
        )
    if results["startup"]:
        lines += [
            "",
            "Time to ready (s)",
            *_table(
                [{"server": k, "seconds": round(v, 1)} for k, v in results["startup"].items()], ["server", "seconds"]
            ),
        ]
    for server, line in results.get("startup_phases", {}).items():
        lines += [f"{server}: {line}"]
    marks = {True: "met", False: "MISSED", None: "reported"}
    lines += [
        "",
        "Ratios",
        *_table(
            [{**r, "met": marks[r["met"]]} for r in results["ratios"]],
            ["ratio", "value", "target", "met", *(["per_launch"] if meta["launches"] > 1 else [])],
        ),
    ]
    return "\n".join(lines)


def chart(results: dict, path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(17, 5))
    batch = results["batch"]
    sizes = sorted({r["rows"] for r in batch})
    paths = list(dict.fromkeys(r["path"] for r in batch))
    width = 0.8 / max(1, len(paths))
    for i, name in enumerate(paths):
        xs = [s for s in range(len(sizes)) if _find(batch, name, sizes[s])]
        axes[0].bar(
            [x + i * width for x in xs], [_find(batch, name, sizes[x])["rows_per_s"] for x in xs], width, label=name
        )
    axes[0].set_xticks([x + width * (len(paths) - 1) / 2 for x in range(len(sizes))], [f"{s} rows" for s in sizes])
    axes[0].set_yscale("log")
    axes[0].set_ylabel("rows / s (log)")
    axes[0].set_title("Batch")
    axes[0].legend(fontsize=8)
    chat = results["chat"]
    axes[1].barh([r["path"] for r in chat], [r["rows_per_s"] for r in chat])
    axes[1].set_xlabel("requests / s")
    axes[1].set_title("Concurrent chat")
    start = results["startup"]
    axes[2].barh(list(start), list(start.values()))
    axes[2].set_xlabel("seconds")
    axes[2].set_title("Time to ready")
    meta = results["meta"]
    fig.suptitle(f"{Path(meta['model']).name}: {meta['output_tokens']} tokens/row, {meta['host']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
