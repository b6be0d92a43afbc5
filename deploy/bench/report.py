"""The compact table `make bench` prints."""

from __future__ import annotations

from typing import Any


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1000:.1f}"


def _cpu(per_op: dict[str, float]) -> str:
    top = sorted(per_op.items(), key=lambda item: -item[1])[:5]
    return ", ".join(f"{name} {ms:.2f}" for name, ms in top)


def table(results: list[dict[str, Any]]) -> str:
    lines = [
        f"{'measure':<62} {'songda/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'err':>5} {'ref/s':>9} {'ratio':>6}",
    ]
    notes = []
    for row in results:
        if "error" in row:
            lines.append(f"{row['measure']:<62} failed: {row['error']}")
            continue
        if "cpu_percent_of_a_core" in row:
            share = ", ".join(f"{name} {pct:.2f}%" for name, pct in sorted(row["cpu_percent_of_a_core"].items()))
            notes.append(f"idle CPU over {row['seconds']} s (% of a core): {share}")
            continue
        songda, reference = row["songda"], row["reference"]
        ratio = "-" if row["ratio"] is None else f"{row['ratio']:.3f}"
        lines.append(
            f"{row['measure'][:62]:<62} {songda['rate']:>9.1f} {_ms(songda.get('p50')):>8} {_ms(songda.get('p99')):>8} "
            f"{songda['errors']:>5} {reference['rate']:>9.1f} {ratio:>6}"
        )
        extra = [f"ref: {reference['what']}, p50 {_ms(reference.get('p50'))} p99 {_ms(reference.get('p99'))} ms"]
        if "direct" in row:
            extra.append(
                f"direct {row['direct']['rate']:.0f}/s; added p50 {_ms(songda['p50_added'])} "
                f"p99 {_ms(songda['p99_added'])} ms"
            )
        if songda["errors"] and "statuses" in songda:
            extra.append(f"answers {songda['statuses']}")
        if "applied_rate" in songda:
            extra.append(
                f"applied {songda['applied_rate']:.1f}/s, the last {songda['applied_after_load_seconds']:.1f} s after"
                f" the load, outcomes {songda['outcomes']}"
            )
        if "cpu_seconds_per_lifecycle" in songda:
            extra.append(
                f"{songda['completed']} completed in {songda['seconds']:.0f} s, "
                f"{songda['cpu_seconds_per_lifecycle']:.3f} CPU s per lifecycle"
                f" ({songda['cpu_seconds_per_lifecycle_with_sandboxes']:.3f} with the sandboxes)"
            )
        lines.append("    " + "; ".join(extra))
        lines.append(f"    CPU ms/op: {_cpu(row['cpu_ms_per_op'])}")
        if row.get("reference_cpu_ms_per_op"):
            lines.append(f"    reference CPU ms/op: {_cpu(row['reference_cpu_ms_per_op'])}")
    return "\n".join(lines + notes)
