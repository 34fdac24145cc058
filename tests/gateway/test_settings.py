"""The configuration: every setting from a TOML file, LICENSOR_* variables and flags, in that order of precedence,
validated with an error naming the setting and where its value came from; `licensor config show` without secrets;
`licensor serve --config` listening where the file says."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import urllib.request
from dataclasses import fields
from pathlib import Path

import pytest
from licensor.gateway.settings import OPTIONS, RateLimit, SettingError, Settings, load_configuration
from licensor.testing import free_port

MASTER_KEY = base64.urlsafe_b64encode(bytes(range(32))).decode().rstrip("=")


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_every_setting_has_a_file_key_an_environment_variable_and_a_flag_but_the_master_key() -> None:
    assert {option.name for option in OPTIONS} == {f.name for f in fields(Settings)}
    assert len({option.env for option in OPTIONS}) == len(OPTIONS)
    assert len({option.path for option in OPTIONS}) == len(OPTIONS)
    assert [option.name for option in OPTIONS if not option.flag] == ["master_key", "metrics_token"]  # never in ps
    assert [option.name for option in OPTIONS if not option.in_file] == ["master_key"]


def test_flags_beat_the_environment_which_beats_the_file_which_beats_the_defaults(tmp_path: Path) -> None:
    config = write(
        tmp_path / "licensor.toml",
        """
        [server]
        port = 9000
        host = "0.0.0.0"
        workers = 2
        [store]
        database_url = "postgresql://licensor@db:5432/licensor"
        [rate_limits]
        key_failures = "5/1m"
        churn = "off"
        [proxy]
        trusted_proxies = ["10.0.0.1", "192.168.0.0/16"]
        [log]
        format = "json"
        """,
    )
    environ = {"LICENSOR_PORT": "9100", "LICENSOR_HOST": "127.0.0.1", "LICENSOR_MASTER_KEY": MASTER_KEY}
    loaded = load_configuration({"port": "9200"}, environ, config)
    settings = loaded.settings
    assert (settings.port, settings.host, settings.workers) == (9200, "127.0.0.1", 2)
    assert settings.rate_limit_key_failures == RateLimit(5, 60.0) and settings.rate_limit_churn is None
    assert settings.rate_limit_address == Settings().rate_limit_address  # untouched: the default
    assert settings.trusted_proxies == ("10.0.0.1/32", "192.168.0.0/16") and settings.log_format == "json"
    assert settings.master_key == bytes(range(32))
    assert loaded.sources["port"] == "--port" and loaded.sources["host"] == "LICENSOR_HOST"
    assert loaded.sources["workers"] == f"{config} [server] workers" and "mail" not in loaded.sources
    # LICENSOR_CONFIG names the file when --config does not.
    assert load_configuration({}, {"LICENSOR_CONFIG": config}).settings.port == 9000


@pytest.mark.parametrize(
    ("file", "environ", "flags", "message"),
    [
        (
            "",
            {"LICENSOR_PORT": "eighty"},
            {},
            "setting server.port (LICENSOR_PORT): must be an integer from 1 to 65535, not 'eighty'",
        ),
        ("", {}, {"port": "0"}, "setting server.port (--port): must be an integer"),
        ("[server]\nport = true\n", {}, {}, "[server] port): must be an integer"),
        ("[rate_limits]\naddress = '10 per minute'\n", {}, {}, "setting rate_limits.address"),
        ("", {"LICENSOR_RATE_LIMIT_CHURN": "0/1d"}, {}, "setting rate_limits.churn (LICENSOR_RATE_LIMIT_CHURN)"),
        ("", {"LICENSOR_TRUSTED_PROXIES": "10.0.0.1, proxy.local"}, {}, "'proxy.local' is not an address"),
        ("", {"LICENSOR_LOG_FORMAT": "xml"}, {}, "must be one of text, json"),
        ("", {"LICENSOR_PUBLIC_URL": "ftp://x"}, {}, "setting server.public_url"),
        ("", {"LICENSOR_DATABASE_URL": "mysql://x"}, {}, "setting store.database_url"),
        ("", {"LICENSOR_WEBHOOK_ALLOW_PRIVATE": "maybe"}, {}, "must be true or false"),
        ("", {}, {"workers": "4"}, "setting server.workers (--workers): 4 workers need PostgreSQL"),
        ("[server]\nprot = 1\n", {}, {}, "unknown setting server.prot"),
        ("[security]\nmaster_key = 'x'\n", {}, {}, "unknown setting security.master_key"),  # environment only
        ("port = 1\n", {}, {}, "port must be a [section]"),
        ("[server\n", {}, {}, "is not valid TOML"),
        ("", {"LICENSOR_DATABASE_URL": "postgresql://u:p@db:fivefour/x"}, {}, "names a port that is not a number"),
        ("", {"LICENSOR_DATABASE_URL": "postgresql://u@db1:5432,db2:x/x"}, {}, "names a port that is not a number"),
        ("", {"LICENSOR_DATABASE_URL": "postgresql://u@db1:5432,,db2/x"}, {}, "names an empty host"),
        ("", {"LICENSOR_DATABASE_URL": "postgresql://u@db1,db2/x?target_session_attrs=rw"}, {}, "must be one of any,"),
        ("", {"LICENSOR_IDEMPOTENCY_RETENTION_HOURS": "2"}, {}, "shorter than the longest lease"),
        (
            "",
            {"LICENSOR_WORKERS": "4", "LICENSOR_DATABASE_URL": "postgresql://db/x", "LICENSOR_RATE_LIMIT_CHURN": "2/1d"},
            {},
            "cannot be shared by 4 workers",
        ),
    ],
)
def test_a_bad_value_is_refused_naming_the_setting_and_where_it_came_from(
    tmp_path: Path, file: str, environ: dict[str, str], flags: dict[str, str], message: str
) -> None:
    config = write(tmp_path / "licensor.toml", file) if file else None
    with pytest.raises(SettingError) as refused:
        load_configuration(flags, environ, config)
    assert message in str(refused.value)


def test_a_file_that_is_not_utf8_is_refused_naming_it(tmp_path: Path) -> None:
    config = tmp_path / "latin1.toml"
    config.write_bytes("[server]\nhost = 'caf\u00e9'\n".encode("latin-1"))
    with pytest.raises(SettingError, match="is not valid TOML"):
        load_configuration({}, {}, str(config))


def test_a_database_password_is_masked_wherever_the_url_holds_it() -> None:
    for url, shown in (
        ("postgresql://u:hunter2@db:5432/x", "postgresql://u:***@db:5432/x"),
        ("postgresql://u@db/x?password=hunter2&sslmode=require", "postgresql://u@db/x?password=***&sslmode=require"),
        ("postgresql://u:hunter2@[::1]:5432/x", "postgresql://u:***@[::1]:5432/x"),
        (
            "postgresql://u:hunter2@10.0.0.1:5432,10.0.0.2:5433/x?target_session_attrs=read-write",
            "postgresql://u:***@10.0.0.1:5432,10.0.0.2:5433/x?target_session_attrs=read-write",
        ),
        ("postgresql://u@db1,[::1]:5433/x?password=hunter2", "postgresql://u@db1,[::1]:5433/x?password=***"),
    ):
        loaded = load_configuration({"database_url": url}, {})
        assert f'database_url = "{shown}"' in loaded.show() and "hunter2" not in repr(loaded.settings)


def test_a_secret_is_never_repeated_in_an_error() -> None:
    with pytest.raises(SettingError) as refused:
        load_configuration({}, {"LICENSOR_MASTER_KEY": "c2VjcmV0LWJ1dC10b28tc2hvcnQ"})
    assert "security.master_key (LICENSOR_MASTER_KEY)" in str(refused.value)
    assert "c2VjcmV0" not in str(refused.value)


def test_durations_and_budgets_read_as_an_operator_writes_them() -> None:
    budgets = {"600/1m": RateLimit(600, 60.0), "20 / 10m": RateLimit(20, 600.0), "100/1d": RateLimit(100, 86400.0)}
    for text, budget in budgets.items():
        assert load_configuration({}, {"LICENSOR_RATE_LIMIT_TENANT": text}).settings.rate_limit_tenant == budget
        assert str(budget) == text.replace(" ", "")
    assert load_configuration({}, {"LICENSOR_WEBHOOK_RETRY_BASE_S": "0.5"}).settings.webhook_retry_base_s == 0.5


def _cli(*arguments: str, environ: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LICENSOR_") or k == "LICENSOR_PURE_PYTHON"}
    return subprocess.run(
        [sys.executable, "-m", "licensor.cli", *arguments],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, **(environ or {})},
    )


def test_config_show_prints_the_effective_settings_and_their_sources_never_a_secret(tmp_path: Path) -> None:
    config = write(tmp_path / "licensor.toml", '[store]\ndatabase_url = "postgresql://licensor:hunter2@db/licensor"\n')
    shown = _cli("config", "show", "--config", config, "--port", "9300", environ={"LICENSOR_MASTER_KEY": MASTER_KEY})
    assert shown.returncode == 0, shown.stderr
    assert "port = 9300  # --port" in shown.stdout
    assert 'database_url = "postgresql://licensor:***@db/licensor"' in shown.stdout
    assert '# master_key = "(set, not shown)"  # LICENSOR_MASTER_KEY' in shown.stdout
    assert '# token = "(not set)"  # default' in shown.stdout  # a placeholder pasted into a file sets no secret
    assert "hunter2" not in shown.stdout and MASTER_KEY not in shown.stdout
    refused = _cli("config", "show", "--rate-limit-address", "lots")
    assert refused.returncode == 2 and refused.stderr.startswith("error: setting rate_limits.address (--rate-limit-address)")


def test_serve_listens_where_the_configuration_file_says(tmp_path: Path) -> None:
    port = free_port()
    config = write(tmp_path / "licensor.toml", f'[server]\nport = {port}\n[store]\ndata_dir = "{tmp_path / "var"}"\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("LICENSOR_") or k == "LICENSOR_PURE_PYTHON"}
    with subprocess.Popen(
        [sys.executable, "-m", "licensor.cli", "serve", "--config", config],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as server:
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as answer:
                        assert answer.status == 200
                        break
                except OSError:
                    assert server.poll() is None and time.monotonic() < deadline, "licensor serve did not start"
                    time.sleep(0.1)
        finally:
            server.terminate()
            server.wait(10)
    assert (tmp_path / "var" / "licensor.db").exists() and (tmp_path / "var" / "master.key").exists()


def test_the_configuration_guide_lists_every_setting() -> None:
    guide = (Path(__file__).parents[2] / "docs" / "configuration.md").read_text()
    for option in OPTIONS:
        assert f"`{option.env}`" in guide, option.env
        assert not option.in_file or f"`[{option.section}] {option.key}`" in guide, option.path
