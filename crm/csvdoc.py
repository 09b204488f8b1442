"""docs/import.md, written from the import specification so the two can never disagree."""

from __future__ import annotations

from crm.csvspec import ENTITIES

INTRO = """# Importing dealer data

`milepost import DIR` reads one CSV file per entity from `DIR`, in the order below (customers
before what refers to them). Files are UTF-8 (a BOM is fine; a GBK export is refused with a hint),
comma-separated, with a header row naming the columns; columns may come in any order, and the
ones not marked required may be left out. Every row is validated; a bad row is reported as
`file:line: reason` and skipped, the good rows go in. Rows are upserted on their natural key, so
importing the same files again changes nothing. The command exits 1 when any row was rejected.

Dates are `YYYY-MM-DD`; date-times `YYYY-MM-DD HH:MM` in the dealer's time zone
(`MILEPOST_TIMEZONE`) or ISO 8601 with an offset. Phone numbers may be national
(read with `MILEPOST_PHONE_REGION`, default CN) or international; they are stored as E.164.

This file is generated from `crm/csvspec.py` (`python -m crm.csvdoc > docs/import.md`).
"""


def markdown() -> str:
    """The import documentation, one section per file."""
    parts = [INTRO]
    for entity in ENTITIES:
        parts.append(f"\n## {entity.filename}\n")
        refs = ", ".join(f"`{r.field}` must exist in {r.source}" for r in entity.refs)
        columns = {r.column: r.field for r in entity.refs}  # customer_id is customer_code in CSV
        key = ", ".join(f"`{columns.get(k, k)}`" for k in entity.key)
        parts.append(f"Natural key: {key}." + (f" References: {refs}." if refs else "") + "\n")
        parts.append("\n| column | required | meaning |\n|---|---|---|\n")
        for field in entity.fields:
            parts.append(f"| `{field.name}` | {'yes' if field.required else ''} | {field.doc} |\n")
    return "".join(parts)


def summary() -> str:
    """The README's table: each file's columns, required ones in bold."""
    rows = ["| file | columns (**required**) |", "|---|---|"]
    for entity in ENTITIES:
        names = (f"**{f.name}**" if f.required else f.name for f in entity.fields)
        rows.append(f"| `{entity.filename}` | {', '.join(names)} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
