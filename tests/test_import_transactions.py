"""import-transactions: a messy UCI-style log, date/number formats, encodings and bad input."""

from __future__ import annotations

import datetime as dt
import json

import pandas as pd
import pytest

from ingestion.transactions import (
    ColumnMapping,
    TransactionImportError,
    import_transactions_command,
    parse_numbers,
    parse_timestamps,
)
from retailpulse.warehouse import get_warehouse

NOW = dt.datetime(2025, 1, 1, tzinfo=dt.timezone.utc)
UCI_HEADER = "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"
UCI_LINES = [
    "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,12/1/2010 8:26,2.55,17850,United Kingdom",
    "536365,71053,WHITE METAL LANTERN,6,12/1/2010 8:26,3.39,17850,United Kingdom",
    "536365,71053,WHITE METAL LANTERN,6,12/1/2010 8:26,3.39,17850,United Kingdom",       # duplicate line
    "536366,22633,HAND WARMER UNION JACK,6,12/13/2010 8:28,1.85,17850.0,United Kingdom",   # id read as float
    "C536379,D,Discount,-1,12/1/2010 9:41,27.5,14527,United Kingdom",                      # return
    "536414,22139,,56,12/1/2010 11:52,0,,United Kingdom",                                  # no customer (and 0)
    "536415,22140,FREEBIE,2,12/1/2010 11:53,0,14000,United Kingdom",                       # zero value
    '536416,22141,"LAMP, RED \u00a3",1,notadate,1.25,14001,France',                        # bad date
    "536417,22142,BIG,1,12/1/2010 11:55,99999999999,14002,France",                         # huge value
    "536418,22143,FUTURE,1,12/1/2031 11:55,1.00,14003,France",                             # future date
    "536420,22145,X,1,12/2/2010 10:00,abc,14004,France",                                   # not a number
    "536421,22146,A,1,12/2/2010 10:00,2.00,14005,France",                                  # one order id,
    "536421,22147,B,1,12/2/2010 10:00,2.00,14006,France",                                  # two customers
]


def _write(tmp_path, name, lines, encoding="utf-8"):
    p = tmp_path / name
    p.write_bytes("\n".join(lines).encode(encoding) + b"\n")
    return p


def test_uci_log_every_line_is_counted_and_accounted_for(settings, tmp_path):
    path = _write(tmp_path, "online_retail.csv", [UCI_HEADER] + UCI_LINES, encoding="cp1252")
    report = import_transactions_command(settings, path, currency="GBP", now=NOW, max_reject_fraction=0.9)
    assert report.encoding == "cp1252" and report.delimiter == ","
    assert report.columns == {"customer": "CustomerID", "timestamp": "InvoiceDate", "unit_price": "UnitPrice",
                              "quantity": "Quantity", "order_id": "InvoiceNo", "country": "Country"}
    assert report.date_format.startswith("month-first M/D/Y")
    c = report.counts
    assert (c["kept"], c["returns"], c["duplicates"], c["missing_customer"], c["zero_value"]) == (4, 1, 1, 1, 1)
    assert (c["unparseable_dates"], c["out_of_range"], c["future_dates"], c["unparseable_amounts"],
            c["conflicting_orders"]) == (1, 1, 1, 1, 2)
    assert sum(v for k, v in c.items() if k not in ("returns",)) == len(UCI_LINES)
    wh = get_warehouse(settings)
    rows = wh.query_df("select * from bronze.transactions__imported order by transaction_id")
    assert list(rows["transaction_id"]) == ["536365", "536366", "C536379"]
    inv = rows.set_index("transaction_id")
    assert inv.loc["536365", "amount"] == pytest.approx(6 * 2.55 + 6 * 3.39) and inv.loc["536365", "line_count"] == 2
    assert inv.loc["536366", "customer_ref"] == "17850" and inv.loc["536366", "currency"] == "GBP"
    assert inv.loc["C536379", "amount"] == pytest.approx(-27.5) and bool(inv.loc["C536379", "is_return"])
    assert str(rows["ordered_at"].dtype).startswith("datetime64") and set(rows["source_file"]) == {"online_retail.csv"}
    assert inv.loc["536366", "ordered_at"] == pd.Timestamp("2010-12-13 08:28", tz="UTC")
    # every rejected line is in rejected_records with its reason and original values
    rejects = wh.query_df("select rule, record from bronze.rejected_records where source = 'transactions'")
    recs = [json.loads(r) for r in rejects["record"]]
    statuses = sorted(r["import_status"] for r in recs)
    assert statuses == sorted(["duplicate_line", "missing_customer", "zero_value", "unparseable_date",
                               "amount_out_of_range", "future_date", "unparseable_amount", "conflicting_order_id"])
    assert all("import_status" in rule for rule in rejects["rule"])
    lines = sum(len(r["source_lines"]) for r in recs)
    assert lines + 4 == len(UCI_LINES)  # 4 kept lines in 3 transactions
    bad_date = next(r for r in recs if r["import_status"] == "unparseable_date")["source_lines"][0]
    assert bad_date["line"] == 9 and bad_date["Description"] == "LAMP, RED \u00a3"   # line 1 is the header
    audit = wh.query("select extracted, loaded, rejected from ops.load_audit where source = 'transactions'")
    assert audit == [(3 + len(recs), 3, len(recs))]
    # importing the same file again replaces its batch
    again = import_transactions_command(settings, path, currency="GBP", now=NOW, max_reject_fraction=0.9)
    assert again.interval_key == report.interval_key
    assert wh.scalar("select count(*) from bronze.transactions__imported") == 3
    assert "kept 4 (returns 1), duplicates 1, zero-value 1, unparseable dates 1, missing customer 1" in \
        "\n".join(report.lines())


def test_parquet_without_order_ids_and_explicit_mapping(settings, tmp_path):
    frame = pd.DataFrame({
        "client": [101.0, 102.0, None, 101.0, 101.0],
        "when": pd.to_datetime(["2024-03-01 10:00", "2024-03-02 11:00", "2024-03-03 00:00", "2024-03-04 00:00", "2024-03-04 00:00"]),
        "total": [19.99, 5.0, 3.0, -4.0, 7.5],
        "ccy": ["eur", "EUR", "EUR", "EUR", "usd"],
    })
    path = tmp_path / "log.parquet"
    frame.to_parquet(path)
    report = import_transactions_command(
        settings, path, ColumnMapping(customer="client", timestamp="when", amount="total", currency="ccy"),
        timezone="Europe/Berlin", now=NOW)
    assert report.file_format == "parquet" and report.date_format == "native timestamps"
    assert (report.counts["kept"], report.counts["returns"], report.counts["missing_customer"]) == (4, 1, 1)
    rows = get_warehouse(settings).query_df("select * from bronze.transactions__imported order by ordered_at")
    assert list(rows["customer_ref"]) == ["101", "102", "101", "101"]
    assert rows["transaction_id"].str.startswith("tx_").all() and rows["transaction_id"].is_unique
    assert rows["ordered_at"].iloc[0] == pd.Timestamp("2024-03-01 09:00", tz="UTC")   # Berlin is UTC+1
    assert list(rows["currency"]) == ["EUR", "EUR", "EUR", "USD"] and rows["quantity"].isna().all()


def test_semicolon_decimal_comma_day_first(settings, tmp_path):
    path = _write(tmp_path, "export.csv", ["Kunde;Datum;Betrag;Bestellung",
                                           "k1;05.01.2024 10:00;12,50;A1", "k2;13.01.2024;1.234,50;A2",
                                           "k1;06.01.2024;-3,00;A3", "k3;07.01.2024;0,00;A4"])
    report = import_transactions_command(settings, path, {"customer": "Kunde", "timestamp": "Datum", "amount": "Betrag",
                                                          "order_id": "Bestellung"}, currency="eur", now=NOW)
    assert report.delimiter == ";" and report.date_format.startswith("day-first")
    assert report.counts["zero_value"] == 1 and report.counts["kept"] == 3
    got = dict(get_warehouse(settings).query("select transaction_id, amount from bronze.transactions__imported"))
    assert got == {"A1": 12.5, "A2": 1234.5, "A3": -3.0}


def test_date_and_number_parsing():
    ts, how, warnings = parse_timestamps(pd.Series(
        ["2024-01-05", "2024-01-05T10:00:00+02:00", "25/12/2024 18:30", "45292.5", "1704067200", "1704067200000",
         "Jan 5, 2024", "", "31/02/2024", "5/1/24 9:05 PM"]))
    assert list(ts.iloc[:4]) == [pd.Timestamp("2024-01-05", tz="UTC"), pd.Timestamp("2024-01-05 08:00", tz="UTC"),
                                 pd.Timestamp("2024-12-25 18:30", tz="UTC"), pd.Timestamp("2024-01-01 12:00", tz="UTC")]
    assert ts.iloc[4] == ts.iloc[5] == pd.Timestamp("2024-01-01", tz="UTC")
    assert ts.iloc[6] == pd.Timestamp("2024-01-05", tz="UTC") and pd.isna(ts.iloc[7]) and pd.isna(ts.iloc[8])
    assert ts.iloc[9] == pd.Timestamp("2024-01-05 21:05", tz="UTC")
    assert "Excel serial days (1)" in how and not warnings
    us, how, _ = parse_timestamps(pd.Series(["12/13/2010 8:26", "1/2/2011 10:00"]))
    assert how.startswith("month-first") and us.iloc[1] == pd.Timestamp("2011-01-02 10:00", tz="UTC")
    amb, _, warnings = parse_timestamps(pd.Series(["01/02/2024", "03/04/2024"]))
    assert amb.iloc[0] == pd.Timestamp("2024-02-01", tz="UTC") and "ambiguous" in warnings[0]
    forced, _, _ = parse_timestamps(pd.Series(["01/02/2024"]), day_first=False)
    assert forced.iloc[0] == pd.Timestamp("2024-01-02", tz="UTC")
    nums = parse_numbers(pd.Series(["1,234.50", "(3.00)", "\u00a34.99", "$1,200", "7", "", "x"]))
    assert list(nums.iloc[:5]) == [1234.5, -3.0, 4.99, 1200.0, 7.0] and nums.iloc[5:].isna().all()


@pytest.mark.parametrize("content, kwargs, message", [
    (b"", {}, "is empty"),
    (b"customer_id,order_date,total\n", {}, "has a header but no rows"),
    (b"a,b,c\n1,2,3\n", {}, "columns found: a, b, c"),
    (b"a,b,c\n1,2,3\n", {"mapping": {"customer": "cust"}}, "column 'cust' (for customer) is not in the file"),
    (b"a,b,c\n1,2,3\n", {"mapping": {"shop": "a"}}, "unknown mapping roles"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00", {}, "binary file"),
    (b"PK\x03\x04rest", {}, "save it as CSV"),
    ("customer_id,order_date,total\nc\u00e9,2024-01-01,1\n".encode("cp1252"), {"encoding": "utf-8"},
     "not valid utf-8"),
    (b"customer_id,order_date,total\nc1,someday,1\nc2,never,2\n", {}, "no importable line"),
    (b"customer_id,order_date,total\nc1,2024-01-01,1\n,2024-01-02,2\n,2024-01-03,3\n", {}, "import refused"),
    (b"customer_id,order_date,total\nc1,2024-01-01,1\n", {"currency": "dollars"}, "3-letter code"),
    (b'customer_id,order_date,total\nc1,2024-01-01,"10\n', {}, "not well-formed CSV"),
])
def test_bad_input_is_one_clear_error(settings, tmp_path, content, kwargs, message):
    path = tmp_path / "in.csv"
    path.write_bytes(content)
    with pytest.raises(TransactionImportError) as err:
        import_transactions_command(settings, path, now=NOW, **kwargs)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_encoding_fallback_and_malformed_lines(settings, tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("customer_id,order_date,total,note\nc1,2024-01-01,10,caf\u00e9\nc2,2024-01-02,20,x,EXTRA\n"
                     "c3,2024-01-03,30,ok\n".encode("latin-1"))
    report = import_transactions_command(settings, path, now=NOW)
    assert report.encoding in ("cp1252", "latin-1") and report.counts["malformed_lines"] == 1
    assert report.loaded == 2 and any("wrong number of fields" in w for w in report.warnings)
    assert any("no currency column" in w for w in report.warnings)
    rec = json.loads(get_warehouse(settings).scalar(
        "select record from bronze.rejected_records where record like '%malformed_line%'"))
    assert rec["source_lines"][0]["line"] == 3 and "EXTRA" in rec["source_lines"][0]["raw"]
    with pytest.raises(TransactionImportError, match="no such file"):
        import_transactions_command(settings, tmp_path / "missing.csv")
