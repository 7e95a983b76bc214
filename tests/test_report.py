"""The weekly HTML report: numbers match gold, the file is self-contained, the e-mail goes out
through the Airflow SMTP connection (a local test SMTP server) or is skipped with a log line."""

from __future__ import annotations

import datetime as dt
import email
import json
import logging
import re
import socketserver
import threading

import duckdb
import pytest

from retailpulse.report import email_report, render_weekly_report
from retailpulse.serving import serving_file
from tests.consumption_fixtures import END


def gold_one(settings, sql, params=()):
    con = duckdb.connect(str(serving_file(settings)), read_only=True)
    try:
        return con.execute(sql, list(params)).fetchall()[0]
    finally:
        con.close()


@pytest.fixture(scope="module")
def report(gold_serving):
    return render_weekly_report(gold_serving)


def test_default_week_is_the_last_week_with_data(report, gold_serving):
    assert report.parent == gold_serving.reports_path
    assert report.name == f"retailpulse_weekly_{END:%Y-%m-%d}.html"
    text = report.read_text()
    start = END - dt.timedelta(days=6)
    assert f"{start:%a %d %b %Y}" in text and f"{END:%a %d %b %Y}" in text


def test_kpis_match_gold(report, gold_serving):
    text = report.read_text()
    start, p_start, p_end = END - dt.timedelta(days=6), END - dt.timedelta(days=13), END - dt.timedelta(days=7)
    now, before = gold_one(gold_serving, """
        select sum(net_revenue) filter (where order_date between ? and ?), sum(net_revenue) filter (where order_date between ? and ?)
        from gold.fct_orders where is_paid or is_return""", [start, END, p_start, p_end])
    returns = gold_one(gold_serving, "select sum(net_revenue) from gold.fct_orders where is_return and order_date between ? and ?",
                       [start, END])[0]
    assert returns < 0  # the fixture has imported returns in the last week: they lower revenue
    row = re.search(r"<tr><td>Net revenue</td><td>([^<]+)</td><td>([^<]+)</td><td[^>]*>([^<]+)</td>", text)
    assert row, "net revenue row missing"
    assert row.group(1) == f"{now:,.2f} USD" and row.group(2) == f"{before:,.2f} USD"
    assert row.group(3) == f"{(now - before) / before:+.1%}"
    orders = gold_one(gold_serving, "select count(*) from gold.fct_orders where is_paid and order_date between ? and ?",
                      [start, END])[0]
    assert re.search(rf"<tr><td>Orders</td><td>{orders:,}</td>", text)


def test_report_is_self_contained(report):
    text = report.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert text.count("<svg") >= 2  # daily revenue + channels (+ segments)
    assert "<script" not in text and "<link" not in text and "<img" not in text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text)
    assert "@import" not in text and "url(" not in text


def test_explicit_week_and_partial_data_note(gold_serving):
    path = render_weekly_report(gold_serving, "2025-06-15")
    assert path.name == "retailpulse_weekly_2025-06-15.html"
    later = render_weekly_report(gold_serving, END + dt.timedelta(days=3))
    assert "have no data yet" in later.read_text()


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_email_is_skipped_with_a_log_line(gold_serving):
    path = render_weekly_report(gold_serving)
    logger, handler = logging.getLogger("retailpulse.report"), _Lines()
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        assert email_report(gold_serving, path) is False
        s = gold_serving.model_copy(update={"report_email_to": "cmo@example.com",
                                            "report_smtp_conn_id": "retailpulse_test_no_such_smtp"})
        assert email_report(s, path) is False
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert "no recipients" in handler.lines[0]
    assert "no Airflow SMTP connection 'retailpulse_test_no_such_smtp'" in handler.lines[1]


class _SMTPHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP (RFC 5321) for smtplib: EHLO/HELO, MAIL, RCPT, DATA, QUIT."""

    def reply(self, line: str) -> None:
        self.wfile.write((line + "\r\n").encode())

    def handle(self) -> None:
        self.reply("220 localhost test SMTP")
        mail = {"rcpt": [], "data": b""}
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.decode(errors="replace").strip()
            verb = cmd.split(" ", 1)[0].upper()
            if verb == "EHLO":
                self.reply("250-localhost")
                self.reply("250 8BITMIME")
            elif verb in ("HELO", "NOOP", "RSET"):
                self.reply("250 OK")
            elif verb == "MAIL":
                mail["from"] = cmd
                self.reply("250 OK")
            elif verb == "RCPT":
                mail["rcpt"].append(cmd)
                self.reply("250 OK")
            elif verb == "DATA":
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                chunks = []
                while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                    chunks.append(chunk[1:] if chunk.startswith(b"..") else chunk)
                mail["data"] = b"".join(chunks)
                self.server.messages.append(dict(mail))  # type: ignore[attr-defined]
                self.reply("250 OK queued")
            elif verb == "QUIT":
                self.reply("221 Bye")
                return
            else:
                self.reply("502 not implemented")


@pytest.fixture
def smtp_server():
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _SMTPHandler)
    server.daemon_threads = True
    server.messages = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_email_goes_through_the_airflow_smtp_connection(gold_serving, smtp_server, monkeypatch):
    port = smtp_server.server_address[1]
    conn = {"conn_type": "smtp", "host": "127.0.0.1", "port": port,
            "extra": {"disable_tls": True, "disable_ssl": True, "from_email": "retailpulse@example.com",
                      "retry_limit": 0, "timeout": 10}}
    monkeypatch.setenv("AIRFLOW_CONN_RETAILPULSE_TEST_SMTP", json.dumps(conn))
    s = gold_serving.model_copy(update={"report_email_to": "cmo@example.com, analyst@example.com",
                                        "report_smtp_conn_id": "retailpulse_test_smtp"})
    path = render_weekly_report(s)
    assert email_report(s, path) is True
    assert len(smtp_server.messages) == 1
    m = smtp_server.messages[0]
    assert any("cmo@example.com" in r for r in m["rcpt"]) and any("analyst@example.com" in r for r in m["rcpt"])
    msg = email.message_from_bytes(m["data"])
    assert "RetailPulse weekly report" in msg["Subject"]
    parts = {p.get_content_type(): p for p in msg.walk()}
    assert "text/html" in parts
    attached = [p for p in msg.walk() if p.get_filename() == path.name]
    assert attached and attached[0].get_payload(decode=True).decode() == path.read_text()


def test_weekly_dag_reads_the_serving_copy_only():
    from airflow.dag_processing.dagbag import DagBag

    from retailpulse.airflow_setup import POOL
    from tests.conftest import REPO

    bag = DagBag(dag_folder=str(REPO / "dags" / "retailpulse_weekly_report.py"))
    assert bag.import_errors == {}
    dag = bag.dags["retailpulse_weekly_report"]
    assert {t.task_id for t in dag.tasks} == {"render_report", "email_report"}
    assert dag.get_task("email_report").upstream_task_ids == {"render_report"}
    for t in dag.tasks:
        assert t.retries >= 1 and t.execution_timeout is not None
        assert t.pool != POOL  # reads the published copy: no warehouse slot
