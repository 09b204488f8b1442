"""`milepost import`: bad rows named by file and line and skipped, good rows in, re-run harmless."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import create_engine, select
from typer.testing import CliRunner

from crm.models import Customer, ServiceVisit, Vehicle, table
from worker.cli import app
from worker.runtime import Runtime

CUSTOMERS = """code,name,phone,email,birthday,language,segment
C1,王伟,138 0013 8000,wang@example.com,1980-02-29,zh,private
C2,Li Na,+8613900139000,,1990-05-01,en,taxi
C3,张三,12345,,1985-01-01,zh,private
"""
VEHICLES = """vin,customer_code,make,model,year,delivered_at
LSVAA2BR5MN000001,C1,BYD,Han,2024,2024-03-01 10:00
ABC,C2,BYD,Qin,2024,2024-03-01 10:00
LSVAA2BR5MN000002,C9,BYD,Qin,2024,2024-03-01 10:00
LSVAA2BR5MN000003,C2,Toyota,Corolla,2023,2023-06-01 09:00
"""
VISITS = """order_no,vin,day,odometer_km,kind
RO1,LSVAA2BR5MN000001,2024-09-01,5000,first
RO2,LSVAA2BR5MN000001,2025-03-01,4000,periodic
RO3,LSVAA2BR5MN000003,2024-01-01,9000,first
"""


def exports(folder: Path) -> Path:
    folder.mkdir()
    (folder / "customers.csv").write_text(CUSTOMERS, encoding="utf-8")
    (folder / "vehicles.csv").write_text(VEHICLES, encoding="utf-8")
    (folder / "service_visits.csv").write_text(VISITS, encoding="utf-8")
    return folder


def test_bad_rows_are_named_and_skipped_and_good_rows_go_in(
    runtime: Runtime, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["import", str(exports(tmp_path / "x"))])

    assert result.exit_code == 1
    out = result.output
    assert "customers.csv:4: phone '12345'" in out
    assert "vehicles.csv:3: VIN 'ABC'" in out
    assert "vehicles.csv:4: unknown customer 'C9'" in out
    assert "service_visits.csv:3:" in out and "odometer" in out
    assert "Imported 3 files" in out
    with runtime.engine.connect() as conn:
        people = dict(conn.execute(select(table(Customer).c.code, table(Customer).c.phone)).all())
        vins = set(conn.execute(select(table(Vehicle).c.vin)).scalars())
        visits = set(conn.execute(select(table(ServiceVisit).c.order_no)).scalars())
    assert people == {"C1": "+8613800138000", "C2": "+8613900139000"}
    assert vins == {"LSVAA2BR5MN000001", "LSVAA2BR5MN000003"}
    assert visits == {"RO1", "RO3"}


def test_importing_the_same_files_again_changes_nothing(runtime: Runtime, tmp_path: Path) -> None:
    folder = exports(tmp_path / "x")
    runner = CliRunner()
    runner.invoke(app, ["import", str(folder)])
    engine = create_engine(runtime.settings.database_url)
    with engine.connect() as conn:
        before = conn.execute(select(table(Customer))).all()

    again = runner.invoke(app, ["import", str(folder)])

    assert "0 rows added or changed" in again.output
    with engine.connect() as conn:
        assert conn.execute(select(table(Customer))).all() == before
    engine.dispose()


def test_the_import_reports_its_progress_through_every_file_to_its_end(
    runtime: Runtime, tmp_path: Path
) -> None:
    from crm.demo import write_csv
    from crm.importer import import_dir

    folder = tmp_path / "big"
    write_csv(folder, customers=1500, today=date(2026, 11, 23))
    seen: dict[str, list[int]] = {}

    import_dir(
        folder,
        runtime.settings.database_url,
        tz="Asia/Shanghai",
        progress=lambda name, read: seen.setdefault(name, []).append(read),
    )

    sizes = {p.name: p.stat().st_size for p in folder.glob("*.csv")}
    assert set(seen) == set(sizes)
    assert all(reads == sorted(reads) and reads[-1] == sizes[n] for n, reads in seen.items())
    assert len(seen["service_visits.csv"]) > 1  # along the way, not only at the end


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("code,name\r\nC1,\xd6\xdc\r\n".encode("latin-1"), "not UTF-8"),
        (b"id,nom\nC1,x\n", "customers.csv:1:"),
    ],
)
def test_an_unreadable_file_is_refused_whole(
    runtime: Runtime, tmp_path: Path, content: bytes, message: str
) -> None:
    folder = tmp_path / "x"
    folder.mkdir()
    (folder / "customers.csv").write_bytes(content)

    result = CliRunner().invoke(app, ["import", str(folder)])

    assert result.exit_code == 1 and message in result.output


def test_a_folder_without_import_files_says_what_it_expects(
    runtime: Runtime, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["import", str(tmp_path)])
    assert result.exit_code == 1
    assert "customers.csv" in result.output and "docs/import.md" in result.output


def test_the_import_documentation_matches_the_specification() -> None:
    from crm.csvdoc import markdown

    doc = Path(__file__).resolve().parents[1] / "docs" / "import.md"
    assert doc.read_text(encoding="utf-8") == markdown(), (
        "run: python -m crm.csvdoc > docs/import.md"
    )


def test_the_readme_lists_every_file_and_column_the_import_reads() -> None:
    from crm.csvdoc import summary

    readme = Path(__file__).resolve().parents[1] / "README.md"
    assert summary() in readme.read_text(encoding="utf-8"), (
        "paste python -c 'from crm.csvdoc import summary; print(summary())' into the README"
    )
