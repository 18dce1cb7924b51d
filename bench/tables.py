"""The benches' tables: Markdown for docs/benchmarks.md, or aligned plain text for a terminal."""

from __future__ import annotations


def render(header: list[str], rows: list[list[str]], markdown: bool) -> str:
    """``rows`` under ``header``: a Markdown table, or columns padded to their widest cell (bold marks dropped)."""
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    cells = [[c.replace("**", "") for c in r] for r in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)
