"""The dev cloud's schema set-up commands survive any generated password."""

import argparse

import pytest

from hepsdesk_devcloud.databases import _redact, keystone_bootstrap_args


def keystone_bootstrap_parser() -> argparse.ArgumentParser:
    """The options of ``keystone-manage bootstrap`` that take a value (argparse, like keystone)."""
    parser = argparse.ArgumentParser(prog="keystone-manage bootstrap", exit_on_error=False)
    for name in ("password", "admin-url", "public-url", "internal-url", "region-id"):
        parser.add_argument(f"--bootstrap-{name}")
    return parser


@pytest.mark.parametrize("password", ["-Ab3_x", "--bootstrap-region-id", "plain", "a=b"])
def test_bootstrap_password_reaches_keystone_whole(password):
    args = keystone_bootstrap_args(password, "http://127.0.0.1:5000/v3/", "RegionOne")
    assert args[0] == "bootstrap"
    parsed = keystone_bootstrap_parser().parse_args(args[1:])
    assert parsed.bootstrap_password == password
    assert parsed.bootstrap_region_id == "RegionOne"


def test_passwords_are_redacted_in_both_forms():
    argv = ["keystone-manage", *keystone_bootstrap_args("-secret", "http://u/", "R"),
            "--database_connection", "mysql+pymysql://openstack:pw@localhost/x"]
    shown = " ".join(_redact(argv))
    assert "secret" not in shown and "pw@" not in shown
    assert "--bootstrap-password=***" in shown and "--database_connection ***" in shown
