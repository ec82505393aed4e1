"""Tables that never cut an identifier: a Rich table when it fits the terminal, else one `column: value` line per
cell, so a model version, a landmark slug or an object key is always printed whole (and can be copied)."""

from __future__ import annotations

from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

UNBOUNDED = 1_000_000  # measure the table's natural width, not the width it would be squeezed into


def print_table(console: Console, table: Table) -> None:
    """The table as it is when its widest rendering fits ``console.width``; otherwise the plain listing (Rich would
    shorten cells to ``v0001-2026…`` or fold them across lines)."""
    if Measurement.get(console, console.options.update_width(UNBOUNDED), table).maximum <= console.width:
        console.print(table)
        return
    if table.title:
        console.print(table.title, soft_wrap=True)
    headers = [str(column.header) for column in table.columns]
    rows = zip(*(list(column.cells) for column in table.columns), strict=True)
    for i, row in enumerate(rows):
        if i:
            console.print()
        for header, cell in zip(headers, row, strict=True):
            lines = str(cell).splitlines() or [""]
            label = header or "-"
            console.print(f"{label}: {lines[0]}", soft_wrap=True)
            for line in lines[1:]:
                console.print(f"{' ' * (len(label) + 2)}{line}", soft_wrap=True)
