"""Generate the sample data (deterministic, stdlib only): ``python scripts/make_sample_data.py [OUT_DIR]``.

``anomaly.db``  SQLite, table ``time_series(ts TEXT, val REAL)``: 480 hourly readings from
                2023-01-01 00:00 (a daily cycle plus bounded noise) with EXACTLY 7 planted anomalies
                under the 3-sigma rule (|val - mean| > 3 * sample std, as anomaly_detection computes it).
                Every planted point is beyond 4 sigma and every normal point within 2.5 sigma, so the
                count does not depend on sample vs population std.
``sales.csv``   monthly sales 2023-01 .. 2024-12 for 4 regions (96 rows):
                month, region, units, unit_price, revenue.

Written to ``sample_data/`` at the repository root unless OUT_DIR is given; same bytes every run.
"""
from __future__ import annotations

import csv
import math
import random
import sqlite3
import statistics
import sys
from datetime import datetime, timedelta
from pathlib import Path

SEED = 20231101
ROWS = 480
PLANTED_ANOMALIES = 7
ANOMALY_ROWS = (37, 92, 150, 211, 288, 350, 433)  # positions of the planted spikes and dips
REGIONS = ("North", "South", "East", "West")


def time_series(rng: random.Random) -> list[tuple[str, float]]:
    """Hourly values: a daily sine (amplitude 5 around 50) plus uniform noise, with spikes and dips planted."""
    start = datetime(2023, 1, 1)
    rows = []
    for i in range(ROWS):
        value = 50 + 5 * math.sin(2 * math.pi * i / 24) + rng.uniform(-1.5, 1.5)
        if i in ANOMALY_ROWS:
            value += rng.choice((-1, 1)) * rng.uniform(22, 28)  # far outside 3 sigma (sigma is about 4)
        rows.append(((start + timedelta(hours=i)).strftime("%Y-%m-%d %H:%M:%S"), round(value, 3)))
    return rows


def check_planted(rows: list[tuple[str, float]]) -> None:
    values = [v for _, v in rows]
    mean, std = statistics.fmean(values), statistics.stdev(values)
    z = [abs(v - mean) / std for v in values]
    flagged = [i for i, score in enumerate(z) if score > 3]
    assert flagged == list(ANOMALY_ROWS), f"3-sigma flags rows {flagged}, planted {ANOMALY_ROWS}"
    assert len(flagged) == PLANTED_ANOMALIES
    assert min(z[i] for i in ANOMALY_ROWS) > 4, "a planted anomaly is too close to the threshold"
    assert max(s for i, s in enumerate(z) if i not in ANOMALY_ROWS) < 2.5, "a normal point is too close"


def write_db(path: Path, rows: list[tuple[str, float]]) -> None:
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("CREATE TABLE time_series (ts TEXT NOT NULL, val REAL NOT NULL)")
        conn.executemany("INSERT INTO time_series (ts, val) VALUES (?, ?)", rows)
    conn.execute("VACUUM")
    conn.close()


def sales(rng: random.Random) -> list[dict[str, object]]:
    rows = []
    for year in (2023, 2024):
        for month in range(1, 13):
            season = 1 + 0.25 * math.sin(2 * math.pi * (month - 3) / 12)
            for index, region in enumerate(REGIONS):
                units = int(round((120 + 30 * index) * season * (1.06 if year == 2024 else 1) + rng.randint(-15, 15)))
                unit_price = round(19.99 + 2.5 * index + rng.choice((0, 0, 1)), 2)
                rows.append({"month": f"{year}-{month:02d}", "region": region, "units": units,
                             "unit_price": unit_price, "revenue": round(units * unit_price, 2)})
    return rows


def write_csv(path: Path, rows: list[dict[str, object]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


def main(out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(SEED)
    rows = time_series(rng)
    check_planted(rows)
    write_db(out_dir / "anomaly.db", rows)
    write_csv(out_dir / "sales.csv", sales(rng))
    print(f"wrote {out_dir / 'anomaly.db'} ({ROWS} rows, {PLANTED_ANOMALIES} anomalies) and {out_dir / 'sales.csv'}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "sample_data")
